//! The coordination feed's wire format (messenger → partner).
//!
//! The feed is **state-based**: each event tells the partner exactly which
//! purposes it may hold for a pseudonym from now on (empty: nothing; a
//! revocation). So a duplicated event changes nothing, and an event older
//! than the last one applied for the same pseudonym (by `event_id`, which
//! grows per user) is ignored: delivery is at least once, idempotent, and
//! ordered per user whatever the network does.

use crate::device::DeviceInfo;
use crate::policy::Purpose;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The name the messenger's ledger gives the partner as a recipient.
pub const PARTNER: &str = "partner";

/// A batch, as posted to the partner's ingest endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedBatch {
    pub events: Vec<FeedEvent>,
}

/// Where the decision behind an event is in the messenger's ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerRef {
    pub seq: u64,
    pub hash: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedEvent {
    /// Unique, and increasing per user.
    pub event_id: u64,
    /// The `coordination` pseudonym, 32 bytes as lowercase hex.
    pub pseudonym: String,
    pub key_version: u32,
    /// Purposes the partner may hold from now on; empty revokes everything.
    pub purposes: BTreeSet<Purpose>,
    /// Device information of the user's devices (empty when `purposes` is).
    pub devices: Vec<DeviceInfo>,
    pub ledger_ref: Option<LedgerRef>,
    /// Why: `registered`, `consent_changed`, `device_added`,
    /// `account_deleted`, `deadline`, `resync`, `rekey`.
    pub reason: String,
}

/// The partner's answer to a batch: one result per event, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedAck {
    pub results: Vec<EventResult>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventResult {
    pub event_id: u64,
    /// False when the event was a duplicate or older than one applied.
    pub applied: bool,
    /// What the partner holds of the pseudonym after this event.
    pub held: BTreeSet<Purpose>,
    /// Purposes whose data the partner deleted for this event (with every
    /// link and suggestion derived from it): the deletion confirmation.
    pub deleted: BTreeSet<Purpose>,
    pub confirmed_at: Timestamp,
}

/// 32 bytes ↔ lowercase hex.
pub fn pseudonym_hex(p: &[u8; 32]) -> String {
    hex::encode(p)
}

pub fn parse_pseudonym_hex(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}
