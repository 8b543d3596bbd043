//! The consent ledger's hash chain.
//!
//! Each entry commits to the previous entry's hash, so editing, removing or
//! reordering any entry breaks every hash after it. [`ChainVerifier`] walks
//! the entries in order and names the first one that does not fit. The
//! storage layer keeps the head (count and last hash) in a separate row;
//! an operator can also anchor the printed head hash elsewhere, which is
//! what makes truncation of the tail evident even to someone who can
//! rewrite the whole database.
//!
//! **The ledger never holds a phone number**: entries name accounts by
//! their random [`AccountId`].

use crate::consent::ConsentEvent;
use crate::ids::AccountId;
use crate::policy::{ConsentProfile, Purpose};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

pub type Hash = [u8; 32];
pub const GENESIS: Hash = [0u8; 32];

/// What an entry records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LedgerEvent {
    PolicyPublished {
        version: u32,
        text_sha256: String,
        purposes: BTreeSet<Purpose>,
        profile: ConsentProfile,
        published_at: Timestamp,
        accept_by: Timestamp,
    },
    /// A consent event of one account (the entry's `account`).
    Consent { event: ConsentEvent },
    /// The recipient confirmed it received the account's data for these
    /// purposes (coordination feed event `event_id`).
    Propagated {
        recipient: String,
        purposes: BTreeSet<Purpose>,
        event_id: u64,
        key_version: u32,
    },
    /// The recipient confirmed it deleted everything of the account for
    /// these purposes.
    DeletionConfirmed {
        recipient: String,
        purposes: BTreeSet<Purpose>,
        event_id: u64,
        confirmed_at: Timestamp,
    },
}

impl LedgerEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            LedgerEvent::PolicyPublished { .. } => "policy_published",
            LedgerEvent::Consent { event } => event.kind(),
            LedgerEvent::Propagated { .. } => "propagated",
            LedgerEvent::DeletionConfirmed { .. } => "deletion_confirmed",
        }
    }
}

/// What a caller appends; the store assigns `seq` and the hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerRecord {
    pub at: Timestamp,
    pub account: Option<AccountId>,
    pub event: LedgerEvent,
}

impl LedgerRecord {
    pub fn consent(account: AccountId, event: ConsentEvent) -> Self {
        LedgerRecord {
            at: event.at(),
            account: Some(account),
            event: LedgerEvent::Consent { event },
        }
    }

    /// Seals the record as entry `seq` after `prev_hash`.
    pub fn seal(&self, seq: u64, prev_hash: Hash) -> LedgerEntry {
        let payload = serde_json::to_string(&self.event).expect("ledger events always serialise");
        let hash = entry_hash(
            &prev_hash,
            seq,
            self.at,
            self.account,
            self.event.kind(),
            &payload,
        );
        LedgerEntry {
            seq,
            at: self.at,
            account: self.account,
            kind: self.event.kind().to_owned(),
            payload,
            prev_hash,
            hash,
        }
    }
}

/// An entry as stored. `payload` is the exact JSON text that was hashed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub seq: u64,
    pub at: Timestamp,
    pub account: Option<AccountId>,
    pub kind: String,
    pub payload: String,
    #[serde(with = "hex_hash")]
    pub prev_hash: Hash,
    #[serde(with = "hex_hash")]
    pub hash: Hash,
}

impl LedgerEntry {
    pub fn event(&self) -> Result<LedgerEvent, serde_json::Error> {
        serde_json::from_str(&self.payload)
    }
    /// The consent event, if this entry is one.
    pub fn consent_event(&self) -> Option<ConsentEvent> {
        match self.event() {
            Ok(LedgerEvent::Consent { event }) => Some(event),
            _ => None,
        }
    }
}

/// The chain hash of one entry.
pub fn entry_hash(
    prev: &Hash,
    seq: u64,
    at: Timestamp,
    account: Option<AccountId>,
    kind: &str,
    payload: &str,
) -> Hash {
    let mut h = Sha256::new();
    h.update(b"accord-ledger-v1\0");
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(at.0.to_be_bytes());
    match account {
        Some(a) => {
            h.update([1u8]);
            h.update(a.0.as_bytes());
        }
        None => h.update([0u8]),
    }
    h.update((kind.len() as u64).to_be_bytes());
    h.update(kind.as_bytes());
    h.update((payload.len() as u64).to_be_bytes());
    h.update(payload.as_bytes());
    h.finalize().into()
}

/// The first place where the chain does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    #[error("entry {seq} was altered: its contents do not match its hash")]
    Altered { seq: u64 },
    #[error("entry {seq} does not link to the entry before it (an entry before it was removed or replaced)")]
    BrokenLink { seq: u64 },
    #[error("entry {expected} is missing (the next entry found is {found})")]
    Missing { expected: u64, found: u64 },
    #[error("entry {seq} has a payload that does not parse or does not match its kind")]
    Unparseable { seq: u64 },
    #[error("the ledger ends at entry {found_count} but its head records {head_count} entries: entries at the end were removed")]
    Truncated { head_count: u64, found_count: u64 },
    #[error("entry {seq} and any after it are not counted by the head: they were appended outside the ledger's own writes")]
    Unrecorded { seq: u64 },
    #[error("the ledger head does not match the last entry (head hash {head_hash}, last entry hash {last_hash})")]
    HeadMismatch {
        head_hash: String,
        last_hash: String,
    },
}

impl ChainError {
    /// The sequence number of the first entry that does not fit, if one is named.
    pub fn seq(&self) -> Option<u64> {
        match self {
            ChainError::Altered { seq }
            | ChainError::BrokenLink { seq }
            | ChainError::Unparseable { seq }
            | ChainError::Unrecorded { seq } => Some(*seq),
            ChainError::Missing { expected, .. } => Some(*expected),
            ChainError::Truncated { found_count, .. } => Some(found_count + 1),
            ChainError::HeadMismatch { .. } => None,
        }
    }
}

/// Walks entries in `seq` order (starting at 1) and checks the chain.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_seq: u64,
    prev: Hash,
}

/// What an intact chain looks like.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainReport {
    pub entries: u64,
    pub head_hash: String,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            expected_seq: 1,
            prev: GENESIS,
        }
    }
}

impl ChainVerifier {
    pub fn feed(&mut self, e: &LedgerEntry) -> Result<(), ChainError> {
        if e.seq != self.expected_seq {
            return Err(ChainError::Missing {
                expected: self.expected_seq,
                found: e.seq,
            });
        }
        if e.prev_hash != self.prev {
            return Err(ChainError::BrokenLink { seq: e.seq });
        }
        let h = entry_hash(&e.prev_hash, e.seq, e.at, e.account, &e.kind, &e.payload);
        if h != e.hash {
            return Err(ChainError::Altered { seq: e.seq });
        }
        match e.event() {
            Ok(ev) if ev.kind() == e.kind => {}
            _ => return Err(ChainError::Unparseable { seq: e.seq }),
        }
        self.prev = e.hash;
        self.expected_seq += 1;
        Ok(())
    }

    /// Ends the walk, checking against the stored head `(count, hash)`.
    pub fn finish(self, head: Option<(u64, Hash)>) -> Result<ChainReport, ChainError> {
        let count = self.expected_seq - 1;
        if let Some((head_count, head_hash)) = head {
            if head_count > count {
                return Err(ChainError::Truncated {
                    head_count,
                    found_count: count,
                });
            }
            if head_count < count {
                return Err(ChainError::Unrecorded {
                    seq: head_count + 1,
                });
            }
            if head_hash != self.prev {
                return Err(ChainError::HeadMismatch {
                    head_hash: hex::encode(head_hash),
                    last_hash: hex::encode(self.prev),
                });
            }
        }
        Ok(ChainReport {
            entries: count,
            head_hash: hex::encode(self.prev),
        })
    }
}

/// Reconstructs one account's consent state at `at` from its entries alone.
pub fn consent_state_at<'a>(
    entries: impl IntoIterator<Item = &'a LedgerEntry>,
    account: AccountId,
    at: Timestamp,
) -> crate::consent::ConsentState {
    let mut state = crate::consent::ConsentState::default();
    for e in entries {
        if e.account != Some(account) || e.at > at {
            continue;
        }
        if let Some(ev) = e.consent_event() {
            state.apply(&ev);
        }
    }
    state
}

/// Rebuilds the policy history at `at` from `policy_published` entries.
/// (The texts are not in the ledger, only their hashes: the returned
/// versions carry an empty `text`.)
pub fn policies_at<'a>(
    entries: impl IntoIterator<Item = &'a LedgerEntry>,
    at: Timestamp,
) -> crate::policy::PolicyHistory {
    let mut versions = Vec::new();
    for e in entries {
        if let Ok(LedgerEvent::PolicyPublished {
            version,
            text_sha256,
            purposes,
            profile,
            published_at,
            accept_by,
        }) = e.event()
        {
            if published_at <= at {
                versions.push(crate::policy::PolicyVersion {
                    version,
                    text: String::new(),
                    text_sha256,
                    purposes,
                    profile,
                    published_at,
                    accept_by,
                });
            }
        }
    }
    crate::policy::PolicyHistory::new(versions)
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(s).map_err(serde::de::Error::custom)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("hash must be 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<LedgerEntry> {
        let acct = AccountId::random();
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let e = LedgerRecord::consent(
                    acct,
                    ConsentEvent::Registered {
                        at: Timestamp(seq as i64),
                    },
                )
                .seal(seq, prev);
                prev = e.hash;
                e
            })
            .collect()
    }

    fn verify(
        entries: &[LedgerEntry],
        head: Option<(u64, Hash)>,
    ) -> Result<ChainReport, ChainError> {
        let mut v = ChainVerifier::default();
        for e in entries {
            v.feed(e)?;
        }
        v.finish(head)
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        let head = Some((5, c[4].hash));
        assert_eq!(verify(&c, head).unwrap().entries, 5);
    }

    #[test]
    fn any_edit_is_found_at_its_entry() {
        for i in 0..5 {
            let mut c = chain(5);
            c[i].payload = c[i].payload.replace("registered", "account_deleted");
            assert_eq!(verify(&c, None).unwrap_err().seq(), Some(i as u64 + 1));
            let mut c = chain(5);
            c[i].at = Timestamp(999);
            assert_eq!(
                verify(&c, None),
                Err(ChainError::Altered { seq: i as u64 + 1 })
            );
        }
    }

    #[test]
    fn removal_and_truncation_are_found() {
        let mut c = chain(5);
        let head = Some((5, c[4].hash));
        c.remove(2);
        assert_eq!(
            verify(&c, head),
            Err(ChainError::Missing {
                expected: 3,
                found: 4
            })
        );
        let mut c = chain(5);
        c.truncate(3);
        assert_eq!(
            verify(&c, head),
            Err(ChainError::Truncated {
                head_count: 5,
                found_count: 3
            })
        );
    }

    proptest::proptest! {
        /// Invariant: `verify` finds any edit, and names the edited entry.
        #[test]
        fn any_single_edit_is_found_and_named(n in 2u64..40, pick in 0usize..1000, field in 0u8..6, byte in 0usize..64) {
            let mut c = chain(n);
            let head = Some((n, c[c.len() - 1].hash));
            let i = pick % c.len();
            let e = &mut c[i];
            match field {
                0 => e.at = Timestamp(e.at.0 ^ 1),
                1 => e.account = Some(AccountId::random()),
                2 => e.kind.push('x'),
                3 => { let b = byte % e.payload.len(); let mut p = e.payload.clone().into_bytes(); p[b] ^= 0x01; e.payload = String::from_utf8_lossy(&p).into_owned(); }
                4 => e.prev_hash[byte % 32] ^= 1,
                _ => e.hash[byte % 32] ^= 1,
            }
            let err = verify(&c, head).unwrap_err();
            match field {
                // A changed hash is caught where it is used: the next link, or the head.
                5 if i + 1 < c.len() => proptest::prop_assert_eq!(err.seq(), Some(i as u64 + 1)),
                5 => {
                    let found = matches!(err, ChainError::Altered { .. } | ChainError::HeadMismatch { .. });
                    proptest::prop_assert!(found);
                }
                _ => proptest::prop_assert_eq!(err.seq(), Some(i as u64 + 1)),
            }
        }
    }

    #[test]
    fn rehashing_one_entry_breaks_the_next_link() {
        let mut c = chain(4);
        c[1].at = Timestamp(77);
        c[1].hash = entry_hash(
            &c[1].prev_hash,
            2,
            c[1].at,
            c[1].account,
            &c[1].kind,
            &c[1].payload,
        );
        assert_eq!(verify(&c, None), Err(ChainError::BrokenLink { seq: 3 }));
    }
}
