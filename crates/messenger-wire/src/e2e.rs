//! End-to-end messaging's HTTP bodies: the key directory, claims, sends,
//! the long-poll fetch and its ack, reports. Keys, envelopes and frames
//! are `accord-e2e`'s (with their strict decoders); the long-poll fetch
//! answers a JSON array of `accord_e2e::ServerFrame`, the same frames as
//! on the `/v1/stream` WebSocket.

use accord_domain::{AccountId, DeviceId};
use accord_e2e::{DeviceKeys, EnvelopeId, SendRequest, SignedOneTimeKey};
use serde::{Deserialize, Serialize};

/// How many one-time keys the server holds for a device
/// (`POST /v1/keys/one-time`, `GET /v1/keys/one-time/count`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyCount {
    /// One-time keys left (the server keeps at most a configured number,
    /// 200 by default).
    pub remaining: u32,
    /// Whether a fallback key is published: claims never come back empty
    /// while there is one.
    pub has_fallback: bool,
}

/// `POST /v1/keys/one-time`: signed one-time keys and, optionally, a new
/// fallback key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OneTimeKeysUpload {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub one_time_keys: Vec<SignedOneTimeKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub fallback: Option<SignedOneTimeKey>,
}

/// `POST /v1/keys/claim`: whose keys, by exactly one of `phone` and
/// `account_id` (the server refuses both or neither with 400).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// E.164 or another international format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub account_id: Option<AccountId>,
}

impl ClaimRequest {
    /// The keys of the account of this number.
    pub fn phone(phone: impl Into<String>) -> Self {
        ClaimRequest {
            phone: Some(phone.into()),
            account_id: None,
        }
    }
    /// The keys of this account.
    pub fn account(account: AccountId) -> Self {
        ClaimRequest {
            phone: None,
            account_id: Some(account),
        }
    }
}

/// One device of a claimed account: its identity keys and a key to start
/// a session with, a one-time key or, when those ran out, its fallback
/// key. A device that published no keys, or has neither a one-time nor a
/// fallback key left, is not listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClaimedDevice {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub device_id: DeviceId,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub device_keys: DeviceKeys,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub one_time_key: SignedOneTimeKey,
}

/// The answer to a claim (sent with `Cache-Control: no-store`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Claimed {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub account_id: AccountId,
    pub devices: Vec<ClaimedDevice>,
    /// The account's device list as the key directory holds it, with its
    /// proof: the client uses no device that is not in it. Absent when
    /// the account was never published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kt: Option<crate::kt::KtLookup>,
}

/// `POST /v1/messages`: one message, an envelope for every device of
/// `to_account` and every other device of the sender's account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub to_account: AccountId,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub send: SendRequest,
}

/// The answer to a send (202).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendOutcome {
    /// Envelopes queued (0 for a duplicate).
    pub accepted: u32,
    /// This client message id was already sent by this device: nothing new
    /// was queued.
    pub duplicate: bool,
}

/// `?wait_s=` of `GET /v1/messages`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct FetchQuery {
    /// Seconds to wait for something to arrive when the mailbox is empty (0 to 30).
    #[serde(default)]
    pub wait_s: u64,
}

/// `POST /v1/messages/ack`: envelope and receipt ids of this device's
/// mailbox (1 to `accord_e2e::MAX_ACK_IDS`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<u64>))]
    pub ids: Vec<EnvelopeId>,
}

/// The answer to an ack. An ack marks the envelopes it names acked and
/// drops their ciphertext (the row stays until its expiry, so a repeated
/// ack is harmless; they are never delivered again); acked receipts go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AckResponse {
    /// Items this ack took (ids already acked, or not this device's, are
    /// not counted).
    pub acked: u64,
}

/// `POST /v1/reports`: an envelope this device received, and its
/// plaintext only if the user chose to include it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub envelope_id: EnvelopeId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<String>,
}

/// The answer to a report (202).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportAccepted {
    pub reported: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_claim_names_exactly_one_target() {
        let a = AccountId::random();
        assert_eq!(
            serde_json::to_value(ClaimRequest::account(a)).unwrap(),
            json!({ "account_id": a })
        );
        assert_eq!(
            serde_json::to_value(ClaimRequest::phone("+6281200000001")).unwrap(),
            json!({ "phone": "+6281200000001" })
        );
        assert!(serde_json::from_value::<ClaimRequest>(json!({"who": "x"})).is_err());
    }

    #[test]
    fn key_counts_and_acks_are_what_the_server_sends() {
        let c: KeyCount =
            serde_json::from_value(json!({"remaining": 7, "has_fallback": true})).unwrap();
        assert_eq!(c.remaining, 7);
        assert_eq!(
            serde_json::to_value(AckResponse { acked: 2 }).unwrap(),
            json!({"acked": 2})
        );
        assert!(serde_json::from_value::<AckRequest>(json!({"ids": [1], "x": 0})).is_err());
    }
}
