//! The custom-audience match: a hash join of an upload's pseudonyms
//! against the eligible set, one pseudonym-prefix partition at a time.
//!
//! Pseudonyms are OPRF outputs, uniform over 32 bytes, so partitioning by
//! the first byte splits both sides evenly into [`PARTITIONS`] parts: the
//! matcher holds one partition of the eligible set in memory (about
//! 1/256 of it: 40,000 entries of a 10,000,000-user partner), probes the
//! upload's pseudonyms of that partition, and moves on. Partitions are
//! independent, so they can run on several cores or on several machines
//! that each hold a range of prefixes (the PostgreSQL tables are
//! partitioned by the same byte).
//!
//! A row (one customer) matches if any of its pseudonyms matches; it
//! contributes one member, named by its first matching key in the row's
//! order (phone before email). Members are distinct people: a phone and an
//! email of the same person, in one row or in two, count once.
//!
//! The hash of a probe is eight bytes of the pseudonym after the
//! partition byte: uniform for the eligible set, which is built from the
//! partner's own OPRF outputs. An uploader who sends crafted values
//! instead of OPRF outputs can only probe, never insert, so it cannot
//! overload a bucket.

use accord_domain::PseudonymId;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// Partitions: one per value of a pseudonym's first byte.
pub const PARTITIONS: usize = 256;

/// The partition of a pseudonym.
pub fn partition_of(p: &PseudonymId) -> u8 {
    p.as_bytes()[0]
}

/// Hashes a pseudonym by its bytes 1 to 8 (see the module docs).
#[derive(Default)]
pub struct PseudonymHasher(u64);

impl Hasher for PseudonymHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `PseudonymId` hashes as its 32-byte array (a length prefix
        // first, which is skipped: it is not 32 bytes long).
        if bytes.len() == 32 {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[1..9]);
            self.0 = u64::from_le_bytes(b);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

type Build = BuildHasherDefault<PseudonymHasher>;

/// One partition of the eligible set: each pseudonym (of a phone number or
/// an email) and the member it names (the person's phone pseudonym).
#[derive(Debug, Default)]
pub struct EligiblePartition {
    map: HashMap<PseudonymId, PseudonymId, Build>,
}

impl EligiblePartition {
    pub fn with_capacity(n: usize) -> Self {
        EligiblePartition {
            map: HashMap::with_capacity_and_hasher(n, Build::default()),
        }
    }

    pub fn insert(&mut self, key: PseudonymId, member: PseudonymId) {
        self.map.insert(key, member);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// One pseudonym of an uploaded row: the row, the key's place in the row
/// (0 for the phone, 1 for the email), the pseudonym.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowKey {
    pub row: u64,
    pub slot: u8,
    pub pseudonym: PseudonymId,
}

/// A match in progress, over partitions.
#[derive(Debug, Default)]
pub struct Match {
    /// Each matched row: the slot that matched first and its member.
    rows: HashMap<u64, (u8, PseudonymId)>,
    /// Probes made.
    pub lookups: u64,
}

impl Match {
    /// Probes `keys` (all of `eligible`'s partition) against it.
    pub fn probe(&mut self, eligible: &EligiblePartition, keys: &[RowKey]) {
        self.lookups += keys.len() as u64;
        for k in keys {
            if let Some(member) = eligible.map.get(&k.pseudonym) {
                // The first slot wins; on a tie (never in a real upload:
                // one phone and one email a row), the smaller member, so
                // that the order of partitions never matters.
                let e = self.rows.entry(k.row).or_insert((k.slot, *member));
                if (k.slot, *member) < *e {
                    *e = (k.slot, *member);
                }
            }
        }
    }

    /// Rows that matched.
    pub fn matched_rows(&self) -> usize {
        self.rows.len()
    }

    /// The distinct members: what the partner stores, and all it stores.
    pub fn members(&self) -> BTreeSet<PseudonymId> {
        self.rows.values().map(|(_, m)| *m).collect()
    }
}

/// Splits keys by partition.
pub fn partition_keys(keys: impl IntoIterator<Item = RowKey>) -> Vec<Vec<RowKey>> {
    let mut parts = vec![Vec::new(); PARTITIONS];
    for k in keys {
        parts[usize::from(partition_of(&k.pseudonym))].push(k);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(first: u8, rest: u8) -> PseudonymId {
        let mut b = [rest; 32];
        b[0] = first;
        PseudonymId::from_bytes(b)
    }

    fn run(eligible: &[(PseudonymId, PseudonymId)], keys: &[RowKey]) -> Match {
        let mut parts: Vec<EligiblePartition> = (0..PARTITIONS)
            .map(|_| EligiblePartition::default())
            .collect();
        for (k, m) in eligible {
            parts[usize::from(partition_of(k))].insert(*k, *m);
        }
        let mut m = Match::default();
        for (i, ks) in partition_keys(keys.iter().copied()).iter().enumerate() {
            m.probe(&parts[i], ks);
        }
        m
    }

    #[test]
    fn a_person_counts_once_whatever_matched() {
        // Ana: phone p(1,1), email p(200,2). Bo: phone p(3,3).
        let (ana, ana_mail, bo) = (p(1, 1), p(200, 2), p(3, 3));
        let eligible = [(ana, ana), (ana_mail, ana), (bo, bo)];
        let keys = [
            // Row 0: Ana by phone and email.
            RowKey {
                row: 0,
                slot: 0,
                pseudonym: ana,
            },
            RowKey {
                row: 0,
                slot: 1,
                pseudonym: ana_mail,
            },
            // Row 1: Ana again, by email only.
            RowKey {
                row: 1,
                slot: 1,
                pseudonym: ana_mail,
            },
            // Row 2: a stranger.
            RowKey {
                row: 2,
                slot: 0,
                pseudonym: p(9, 9),
            },
            // Row 3: a phone that is not eligible, then an email that
            // names Bo: the row matches Bo.
            RowKey {
                row: 3,
                slot: 0,
                pseudonym: p(7, 7),
            },
            RowKey {
                row: 3,
                slot: 1,
                pseudonym: bo,
            },
        ];
        let m = run(&eligible, &keys);
        assert_eq!(m.lookups, 6);
        assert_eq!(m.matched_rows(), 3);
        assert_eq!(m.members(), [ana, bo].into_iter().collect());
    }

    #[test]
    fn a_row_naming_two_people_counts_its_phone() {
        let (ana, bo) = (p(1, 1), p(2, 2));
        let keys = [
            RowKey {
                row: 0,
                slot: 1,
                pseudonym: bo,
            },
            RowKey {
                row: 0,
                slot: 0,
                pseudonym: ana,
            },
        ];
        let m = run(&[(ana, ana), (bo, bo)], &keys);
        assert_eq!(m.members(), [ana].into_iter().collect());
    }

    fn pseudonym() -> impl Strategy<Value = PseudonymId> {
        // Few distinct values, so that matches happen.
        (0u8..4, 0u8..4).prop_map(|(a, b)| p(a, b))
    }

    proptest! {
            /// The partitioned join finds what a plain lookup of every key
        /// finds.
        #[test]
        fn partitioned_equals_naive(
            eligible in proptest::collection::vec((pseudonym(), pseudonym()), 0..20),
            keys in proptest::collection::vec((0u64..10, 0u8..2, pseudonym()), 0..40),
        ) {
            let keys: Vec<RowKey> = keys
                .into_iter()
                .map(|(row, slot, pseudonym)| RowKey { row, slot, pseudonym })
                .collect();
            let m = run(&eligible, &keys);
            let map: HashMap<PseudonymId, PseudonymId> = eligible.iter().copied().collect();
            let mut naive: HashMap<u64, (u8, PseudonymId)> = HashMap::new();
            for k in &keys {
                if let Some(member) = map.get(&k.pseudonym) {
                    let e = naive.entry(k.row).or_insert((k.slot, *member));
                    if (k.slot, *member) < *e {
                        *e = (k.slot, *member);
                    }
                }
            }
            let members: BTreeSet<PseudonymId> = naive.values().map(|(_, m)| *m).collect();
            prop_assert_eq!(m.matched_rows(), naive.len());
            prop_assert_eq!(m.members(), members);
        }
    }
}
