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

/// [`FeedEvent::reason`] of an event that gives the purposes the partner
/// may hold under the account's current pseudonym.
pub const REASON_SHARE: &str = "share";
/// [`FeedEvent::reason`] of an event that takes everything back from a
/// pseudonym: nothing is granted any more (a withdrawal, a lapsed grant,
/// a deleted account), or a new pseudonym replaces it (a number change).
pub const REASON_REVOKE: &str = "revoke";

/// The partner's feed endpoints, as the messenger signs them
/// (`accord_crypto::mac::SignedRequest::path`).
pub const INGEST_PATH: &str = "/v1/feed/ingest";
pub const DIGESTS_PATH: &str = "/v1/feed/reconcile/digests";
pub const RECONCILE_BUCKET_PATH: &str = "/v1/feed/reconcile/bucket";

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
    /// What the event does, for the partner's logs: [`REASON_SHARE`] or
    /// [`REASON_REVOKE`]. The partner does not act on it (`purposes` alone
    /// says what it may hold) and accepts any string. Why the messenger
    /// sent it (a consent change, a new device, ...) stays in the
    /// messenger's outbox.
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

/// A reconciliation bucket: the pseudonyms whose first byte is this
/// number. (Not the 16-bit prefix buckets of contact discovery.)
pub type ReconcileBucket = u8;

/// How many reconciliation buckets there are per purpose.
pub const RECONCILE_BUCKETS: usize = 256;

/// Reconciliation, step 1: per purpose, a digest of every reconciliation
/// bucket of what the messenger believes the partner holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Digests {
    /// purpose → [`RECONCILE_BUCKETS`] lowercase-hex SHA-256 digests,
    /// bucket 0 first.
    pub digests: std::collections::BTreeMap<Purpose, Vec<String>>,
}

/// The reconciliation buckets whose digests differ at the partner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mismatches {
    pub buckets: Vec<(Purpose, ReconcileBucket)>,
}

/// Reconciliation, step 2: the full list of one mismatched
/// reconciliation bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileBucketList {
    pub purpose: Purpose,
    pub bucket: ReconcileBucket,
    pub pseudonyms: Vec<String>,
}

/// What the partner did with a [`ReconcileBucketList`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileBucketOutcome {
    /// Held but not listed: deleted (with derived data).
    pub deleted: u64,
    /// Listed but not held: the messenger should resync these.
    pub missing: Vec<String>,
}

/// The digest of one reconciliation bucket: SHA-256 over its sorted
/// pseudonyms.
pub fn reconcile_bucket_digest(sorted: &[[u8; 32]]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"accord-reconcile-v1\0");
    for p in sorted {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// The digest of every reconciliation bucket of a set of pseudonyms,
/// bucket 0 first.
pub fn digests_of(pseudonyms: &[[u8; 32]]) -> Vec<String> {
    let mut buckets: Vec<Vec<[u8; 32]>> = vec![Vec::new(); RECONCILE_BUCKETS];
    for p in pseudonyms {
        buckets[p[0] as usize].push(*p);
    }
    buckets
        .iter_mut()
        .map(|b| {
            b.sort_unstable();
            b.dedup();
            reconcile_bucket_digest(b)
        })
        .collect()
}
