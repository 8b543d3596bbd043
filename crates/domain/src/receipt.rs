//! Consent receipts, in the spirit of the Kantara Initiative Consent
//! Receipt Specification v1.1: who consented, to what, under which policy
//! text (by hash), when and how; plus the ledger entry that proves it.

use crate::consent::{ConsentState, PurposeState};
use crate::ids::AccountId;
use crate::ledger::{consent_state_at, LedgerEntry};
use crate::policy::{PolicyVersion, Purpose};
use crate::time::Timestamp;
use crate::transparency::{Inclusion, LogKey, ProofError, SignedCheckpoint};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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
    /// Where the ledger proves it: the principal's entries, each with its
    /// inclusion proof against a signed checkpoint of its shard.
    pub ledger: LedgerProofs,
}

/// Ledger entries with their inclusion proofs, and the signed checkpoints
/// the proofs are against: checkable offline with the log's public key,
/// and a witness, outside the messenger's database, of what its log held.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LedgerProofs {
    /// The messenger's log key (ed25519, hex), for convenience: pin it
    /// (`--key`) rather than trust the copy in the receipt.
    pub log_key: String,
    pub checkpoints: Vec<SignedCheckpoint>,
    pub entries: Vec<ProvenEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProvenEntry {
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub entry: LedgerEntry,
    pub inclusion: Inclusion,
}

/// Why a receipt does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    #[error(transparent)]
    Proof(#[from] ProofError),
    #[error("entry {seq} of shard {shard} cites no checkpoint in the receipt")]
    NoCheckpoint { shard: u16, seq: u64 },
    #[error("the receipt's principal id is not an account id")]
    BadPrincipal,
    #[error("purpose {purpose}: the receipt says {claimed} but its ledger entries say {proven}")]
    Claim {
        purpose: String,
        claimed: String,
        proven: String,
    },
}

/// What an intact receipt proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptCheck {
    pub entries: usize,
    pub checkpoints: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PiiController {
    pub pii_controller: String,
    pub on_behalf: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReceiptService {
    pub service: String,
    pub purposes: Vec<ReceiptPurpose>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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
    pub controller: &'a str,
    pub partner: &'a str,
    pub proofs: LedgerProofs,
}

impl ConsentReceipt {
    pub fn build(state: &ConsentState, ctx: ReceiptContext<'_>) -> Self {
        let acc = state.accepted.as_ref();
        let purposes = ctx
            .policy
            .purposes
            .iter()
            .map(|p| {
                let (consent_type, since) = consent_type(state, *p);
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
                ctx.account,
                ctx.policy.version,
                ctx.proofs.entries.len()
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
            ledger: ctx.proofs,
        }
    }

    /// Checks the receipt offline against the log's public key `key`:
    /// every checkpoint's signature, every entry's inclusion in its
    /// shard's checkpoint, and that each purpose's stated consent is what
    /// the proven entries give.
    pub fn verify(&self, key: &LogKey) -> Result<ReceiptCheck, ReceiptError> {
        for c in &self.ledger.checkpoints {
            key.verify(c)?;
        }
        for p in &self.ledger.entries {
            let c = self
                .ledger
                .checkpoints
                .iter()
                .find(|c| c.checkpoint.shard == p.inclusion.shard)
                .ok_or(ReceiptError::NoCheckpoint {
                    shard: p.inclusion.shard,
                    seq: p.entry.seq,
                })?;
            p.inclusion.verify(&p.entry, &c.checkpoint)?;
        }
        let account = uuid::Uuid::parse_str(&self.pii_principal_id)
            .map(AccountId)
            .map_err(|_| ReceiptError::BadPrincipal)?;
        let state = consent_state_at(
            self.ledger.entries.iter().map(|p| &p.entry),
            account,
            Timestamp(i64::MAX),
        );
        for service in &self.services {
            for claim in &service.purposes {
                let Ok(purpose) = claim.purpose.parse::<Purpose>() else {
                    continue;
                };
                let (proven, _) = consent_type(&state, purpose);
                if proven != claim.consent_type {
                    return Err(ReceiptError::Claim {
                        purpose: claim.purpose.clone(),
                        claimed: claim.consent_type.clone(),
                        proven: proven.to_owned(),
                    });
                }
            }
        }
        Ok(ReceiptCheck {
            entries: self.ledger.entries.len(),
            checkpoints: self.ledger.checkpoints.len(),
        })
    }
}

/// How a purpose's state reads in a receipt, and since when.
fn consent_type(state: &ConsentState, p: Purpose) -> (&'static str, Option<String>) {
    match state.purposes.get(&p) {
        Some(PurposeState::Granted { at, pre_ticked, .. }) => (
            if *pre_ticked { "IMPLIED" } else { "EXPLICIT" },
            Some(at.to_rfc3339()),
        ),
        Some(PurposeState::Refused { at, .. }) => ("REFUSED", Some(at.to_rfc3339())),
        Some(PurposeState::Withdrawn { at, .. }) => ("WITHDRAWN", Some(at.to_rfc3339())),
        None => ("NOT_ASKED", None),
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
