//! Consent receipts, in the spirit of the Kantara Initiative Consent
//! Receipt Specification v1.1: who consented, to what, under which policy
//! text (by hash), when and how; plus the ledger entry that proves it.

use crate::consent::{ConsentState, PurposeState};
use crate::ids::AccountId;
use crate::policy::{PolicyVersion, Purpose};
use crate::time::Timestamp;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConsentReceipt {
    /// Specification this receipt follows.
    pub version: String,
    pub jurisdiction: String,
    pub consent_timestamp: String,
    pub collection_method: String,
    pub consent_receipt_id: String,
    pub language: String,
    pub pii_principal_id: String,
    pub pii_controllers: Vec<PiiController>,
    pub policy_version: u32,
    pub policy_sha256: String,
    pub services: Vec<ReceiptService>,
    pub sensitive: bool,
    /// Where the ledger proves it: the entry count and head hash at issue.
    pub ledger_entries: u64,
    pub ledger_head_hash: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PiiController {
    pub pii_controller: String,
    pub on_behalf: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReceiptService {
    pub service: String,
    pub purposes: Vec<ReceiptPurpose>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReceiptPurpose {
    pub purpose: String,
    pub description: String,
    /// `EXPLICIT`, `IMPLIED` (a pre-ticked box left ticked), `REFUSED`,
    /// `WITHDRAWN`, or `NOT_ASKED`.
    pub consent_type: String,
    pub since: Option<String>,
    pub pii_category: Vec<String>,
    pub primary_purpose: bool,
    pub termination: String,
    pub third_party_disclosure: bool,
    pub third_party_name: String,
}

/// Inputs that do not come from the consent state.
#[derive(Debug, Clone)]
pub struct ReceiptContext<'a> {
    pub account: AccountId,
    pub policy: &'a PolicyVersion,
    pub issued_at: Timestamp,
    pub ledger_entries: u64,
    pub ledger_head_hash: String,
    pub controller: &'a str,
    pub partner: &'a str,
}

impl ConsentReceipt {
    pub fn build(state: &ConsentState, ctx: ReceiptContext<'_>) -> Self {
        let acc = state.accepted.as_ref();
        let purposes = ctx
            .policy
            .purposes
            .iter()
            .map(|p| {
                let (consent_type, since) = match state.purposes.get(p) {
                    Some(PurposeState::Granted { at, pre_ticked, .. }) => (
                        if *pre_ticked { "IMPLIED" } else { "EXPLICIT" },
                        Some(at.to_rfc3339()),
                    ),
                    Some(PurposeState::Refused { at, .. }) => ("REFUSED", Some(at.to_rfc3339())),
                    Some(PurposeState::Withdrawn { at, .. }) => {
                        ("WITHDRAWN", Some(at.to_rfc3339()))
                    }
                    None => ("NOT_ASKED", None),
                };
                ReceiptPurpose {
                    purpose: p.as_str().to_owned(),
                    description: p.describe().to_owned(),
                    consent_type: consent_type.to_owned(),
                    since,
                    pii_category: vec![
                        "phone number (as a keyed pseudonym)".to_owned(),
                        "device information".to_owned(),
                    ],
                    primary_purpose: false,
                    termination: termination(acc.and_then(|a| a.opt_out_until), *p),
                    third_party_disclosure: true,
                    third_party_name: ctx.partner.to_owned(),
                }
            })
            .collect();
        ConsentReceipt {
            version: "KI-CR-v1.1.0".to_owned(),
            jurisdiction: "EU".to_owned(),
            consent_timestamp: acc.map(|a| a.at).unwrap_or(ctx.issued_at).to_rfc3339(),
            collection_method: acc
                .map(|a| format!("policy acceptance ({})", a.profile))
                .unwrap_or_else(|| "none".to_owned()),
            consent_receipt_id: format!(
                "{}:{}:{}",
                ctx.account, ctx.policy.version, ctx.ledger_entries
            ),
            language: "en".to_owned(),
            pii_principal_id: ctx.account.to_string(),
            pii_controllers: vec![PiiController {
                pii_controller: ctx.controller.to_owned(),
                on_behalf: false,
            }],
            policy_version: ctx.policy.version,
            policy_sha256: ctx.policy.text_sha256.clone(),
            services: vec![ReceiptService {
                service: "account coordination".to_owned(),
                purposes,
            }],
            sensitive: false,
            ledger_entries: ctx.ledger_entries,
            ledger_head_hash: ctx.ledger_head_hash,
        }
    }
}

fn termination(opt_out_until: Option<Timestamp>, _p: Purpose) -> String {
    match opt_out_until {
        Some(t) => format!(
            "opt-out possible until {}; afterwards only by deleting the account",
            t.to_rfc3339()
        ),
        None => "withdrawable at any time in the privacy centre".to_owned(),
    }
}
