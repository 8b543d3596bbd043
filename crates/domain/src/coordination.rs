//! The coordination feed's wire format (messenger → partner).
//!
//! The feed is **state-based**: each event tells the partner exactly which
//! purposes it may hold for a pseudonym from now on (empty: nothing; a
//! revocation). So a duplicated event changes nothing, and an event older
//! than the last one applied for the same pseudonym (by `event_id`, which
//! grows per user) is ignored: delivery is at least once, idempotent, and
//! ordered per user whatever the network does.
//!
//! Pseudonyms are [`PseudonymId`]s, 64 lowercase hex digits on the wire.

use crate::consent::ConsentEvent;
use crate::device::DeviceInfo;
use crate::ids::AccountId;
use crate::ledger::LedgerEntry;
use crate::policy::Purpose;
use crate::pseudonym::PseudonymId;
use crate::time::Timestamp;
use crate::transparency::{Inclusion, ProofError, SignedCheckpoint};
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
    /// Signed checkpoints of the ledger's shards (at least every shard a
    /// citation of the batch is in). The partner checks their signatures,
    /// keeps every one (a witness outside the messenger's database), and
    /// checks the citations' proofs against them.
    #[serde(default)]
    pub checkpoints: Vec<SignedCheckpoint>,
}

/// Where the decision behind a record is in the messenger's ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerRef {
    /// Absent in records kept before the ledger was sharded: shard 0.
    #[serde(default)]
    pub shard: u16,
    pub seq: u64,
    pub hash: String,
}

/// The ledger entry that allows sharing one purpose (a grant of that
/// purpose), with its inclusion proof against a checkpoint of the batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Citation {
    pub purpose: Purpose,
    pub entry: LedgerEntry,
    pub inclusion: Inclusion,
}

/// Why a share's citations do not allow it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CitationError {
    #[error("purpose {0} is shared without a citation of the grant that allows it")]
    Missing(Purpose),
    #[error("purpose {purpose} cites ledger entry {seq}, a {kind}, not a grant")]
    NotAGrant {
        purpose: Purpose,
        seq: u64,
        kind: String,
    },
    #[error("purpose {purpose} cites ledger entry {seq}, a grant of {granted}")]
    OtherPurpose {
        purpose: Purpose,
        seq: u64,
        granted: Purpose,
    },
    #[error("the citations of one event name different accounts")]
    MixedAccounts,
    #[error("purpose {purpose} cites an entry of shard {shard}, of which the batch carries no checkpoint")]
    NoCheckpoint { purpose: Purpose, shard: u16 },
    #[error("purpose {purpose}: {error}")]
    Proof { purpose: Purpose, error: ProofError },
}

impl CitationError {
    /// A stable code for logs and answers.
    pub fn code(&self) -> &'static str {
        match self {
            CitationError::Missing(_) => "citation_missing",
            CitationError::NotAGrant { .. } => "citation_not_a_grant",
            CitationError::OtherPurpose { .. } => "citation_other_purpose",
            CitationError::MixedAccounts => "citation_mixed_accounts",
            CitationError::NoCheckpoint { .. } => "citation_no_checkpoint",
            CitationError::Proof { .. } => "citation_proof_invalid",
        }
    }
}

impl FeedEvent {
    /// Checks that every purpose the event shares cites a grant of that
    /// purpose, proven against one of `checkpoints` (whose signatures the
    /// caller has checked). Returns each purpose's ledger reference.
    pub fn check_citations(
        &self,
        checkpoints: &[SignedCheckpoint],
    ) -> Result<std::collections::BTreeMap<Purpose, LedgerRef>, CitationError> {
        let mut refs = std::collections::BTreeMap::new();
        let mut account: Option<Option<AccountId>> = None;
        for &purpose in &self.purposes {
            let c = self
                .citations
                .iter()
                .find(|c| c.purpose == purpose)
                .ok_or(CitationError::Missing(purpose))?;
            match c.entry.event() {
                Ok(crate::ledger::LedgerEvent::Consent {
                    event: ConsentEvent::Granted { purpose: p, .. },
                }) if p == purpose => {}
                Ok(crate::ledger::LedgerEvent::Consent {
                    event: ConsentEvent::Granted { purpose: p, .. },
                }) => {
                    return Err(CitationError::OtherPurpose {
                        purpose,
                        seq: c.entry.seq,
                        granted: p,
                    })
                }
                _ => {
                    return Err(CitationError::NotAGrant {
                        purpose,
                        seq: c.entry.seq,
                        kind: c.entry.kind.clone(),
                    })
                }
            }
            if *account.get_or_insert(c.entry.account) != c.entry.account {
                return Err(CitationError::MixedAccounts);
            }
            let shard = c.inclusion.shard;
            let cp = checkpoints
                .iter()
                .find(|k| k.checkpoint.shard == shard && k.checkpoint.size == c.inclusion.size)
                .ok_or(CitationError::NoCheckpoint { purpose, shard })?;
            c.inclusion
                .verify(&c.entry, &cp.checkpoint)
                .map_err(|error| CitationError::Proof { purpose, error })?;
            refs.insert(
                purpose,
                LedgerRef {
                    shard,
                    seq: c.entry.seq,
                    hash: hex::encode(c.entry.hash),
                },
            );
        }
        Ok(refs)
    }
}

/// The entry that allows sharing `purpose` for an account: its latest
/// grant of that purpose, from its entries in order (`None` if it never
/// granted it).
pub fn grant_entry<'a>(
    entries: impl IntoIterator<Item = &'a (u16, LedgerEntry)>,
    account: AccountId,
    purpose: Purpose,
) -> Option<&'a (u16, LedgerEntry)> {
    entries
        .into_iter()
        .filter(|(_, e)| e.account == Some(account))
        .filter(|(_, e)| {
            matches!(
                e.consent_event(),
                Some(ConsentEvent::Granted { purpose: p, .. }) if p == purpose
            )
        })
        .last()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedEvent {
    /// Unique, and increasing per user.
    pub event_id: u64,
    /// The `coordination` pseudonym, 32 bytes as lowercase hex.
    pub pseudonym: PseudonymId,
    pub key_version: u32,
    /// Purposes the partner may hold from now on; empty revokes everything.
    pub purposes: BTreeSet<Purpose>,
    /// Device information of the user's devices (empty when `purposes` is).
    pub devices: Vec<DeviceInfo>,
    /// One per purpose shared: the grant that allows it, with its proof.
    #[serde(default)]
    pub citations: Vec<Citation>,
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

/// A reconciliation bucket: the pseudonyms whose first byte is this
/// number ([`PseudonymId::reconcile_bucket`]). (Not the 16-bit prefix
/// buckets of contact discovery.)
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
    pub pseudonyms: Vec<PseudonymId>,
}

/// What the partner did with a [`ReconcileBucketList`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileBucketOutcome {
    /// Held but not listed: deleted (with derived data).
    pub deleted: u64,
    /// Listed but not held: the messenger should resync these.
    pub missing: Vec<PseudonymId>,
}

/// The digest of one reconciliation bucket: SHA-256 over its sorted
/// pseudonyms.
pub fn reconcile_bucket_digest(sorted: &[PseudonymId]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"accord-reconcile-v1\0");
    for p in sorted {
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The digest of every reconciliation bucket of a set of pseudonyms,
/// bucket 0 first.
pub fn digests_of(pseudonyms: &[PseudonymId]) -> Vec<String> {
    let mut buckets: Vec<Vec<PseudonymId>> = vec![Vec::new(); RECONCILE_BUCKETS];
    for p in pseudonyms {
        buckets[p.reconcile_bucket() as usize].push(*p);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire is what it was when pseudonyms were hex strings.
    #[test]
    fn pseudonyms_are_lowercase_hex_on_the_wire() {
        let p = PseudonymId::from_bytes([0xAB; 32]);
        let hex = "ab".repeat(32);
        let e = FeedEvent {
            event_id: 7,
            pseudonym: p,
            key_version: 1,
            purposes: BTreeSet::new(),
            devices: vec![],
            citations: vec![],
            reason: REASON_REVOKE.into(),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"event_id":7,"pseudonym":"{hex}","key_version":1,"purposes":[],"devices":[],"citations":[],"reason":"revoke"}}"#
            )
        );
        assert_eq!(serde_json::from_str::<FeedEvent>(&json).unwrap(), e);
        let l = ReconcileBucketList {
            purpose: Purpose::Ads,
            bucket: p.reconcile_bucket(),
            pseudonyms: vec![p],
        };
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            format!(r#"{{"purpose":"ads","bucket":171,"pseudonyms":["{hex}"]}}"#)
        );
        let o = ReconcileBucketOutcome {
            deleted: 0,
            missing: vec![p],
        };
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            format!(r#"{{"deleted":0,"missing":["{hex}"]}}"#)
        );
    }

    #[test]
    fn digests_bucket_by_first_byte() {
        let a = PseudonymId::from_bytes([0; 32]);
        let b = PseudonymId::from_bytes([5; 32]);
        let d = digests_of(&[b, a, b]);
        assert_eq!(d.len(), RECONCILE_BUCKETS);
        assert_eq!(d[0], reconcile_bucket_digest(&[a]));
        assert_eq!(d[5], reconcile_bucket_digest(&[b]));
        assert_eq!(d[1], reconcile_bucket_digest(&[]));
    }
}
