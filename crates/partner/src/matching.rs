//! The custom-audience match: a hash join of an upload's pseudonyms
//! against the eligible set, partitioned by pseudonym prefix.
//!
//! **The eligible set is a standing index** ([`EligibleIndex`]), held in
//! memory and kept current from the database: triggers mark the
//! partitions whose eligible entries change (migration `0006`), and the
//! index reads those partitions again before it is used. Each upload
//! batch is probed on arrival, and only its matched rows are staged; an
//! uploaded pseudonym that matches no one is never written. Reading the
//! eligible set once, rather than once an upload, is what makes the match
//! cost its probes: reading 10,000,000 eligible entries from SQLite takes
//! about 40 s, probing 1,300,000 pseudonyms a fraction of a second. A
//! fresh partner reads the whole set once before it takes a batch (503
//! `warming_up` meanwhile).
//!
//! Pseudonyms are OPRF outputs, uniform over 32 bytes, so partitioning by
//! the first byte splits both sides evenly into [`PARTITIONS`] parts.
//! Partitions are independent, so they can be refreshed and probed on
//! several cores, or held by several machines that each hold a range of
//! prefixes (the PostgreSQL member table is partitioned by the same byte).
//!
//! A partition keeps each eligible key as its 16 bytes after the
//! partition byte (136 bits with the partition; two distinct OPRF
//! outputs agree on them with probability 2^-136) and the member it names:
//! the key itself for a phone, or an index into the partition's list of
//! members for an email: a 20-byte slot, about 34 bytes an entry with the
//! table's free slots, against 64 for two whole pseudonyms. A false match
//! could only name an ineligible member, and the store keeps no candidate
//! that is not eligible.
//!
//! A row (one customer) matches if any of its pseudonyms matches; it
//! contributes one member, named by its first matching key in the row's
//! order (phone before email). Members are distinct people: a phone and an
//! email of the same person, in one row or in two, count once.
//!
//! The start slot of a probe is eight bytes of the pseudonym after the
//! partition byte: uniform for the eligible set, which is built from the
//! partner's own OPRF outputs. An uploader who sends crafted values
//! instead of OPRF outputs can only probe, never insert, so it cannot
//! make a run of slots long.

use accord_domain::PseudonymId;
use std::collections::{BTreeSet, HashMap};

/// Partitions: one per value of a pseudonym's first byte.
pub const PARTITIONS: usize = 256;

/// The partition of a pseudonym.
pub fn partition_of(p: &PseudonymId) -> u8 {
    p.as_bytes()[0]
}

/// A pseudonym's bytes 1 to 16: its key within its partition.
fn key_of(p: &PseudonymId) -> [u8; 16] {
    let mut k = [0u8; 16];
    k.copy_from_slice(&p.as_bytes()[1..17]);
    k
}

/// A slot of a partition's table: a key and what it names ([`SELF`], an
/// index into the partition's members, or [`EMPTY`]).
#[derive(Clone, Copy, Debug)]
struct Slot {
    key: [u8; 16],
    val: u32,
}

/// The member of an entry is the key itself.
const SELF: u32 = u32::MAX;
/// A free slot.
const EMPTY: u32 = u32::MAX - 1;

/// One partition of the eligible set: each pseudonym (of a phone number or
/// an email) and the member it names (the person's phone pseudonym).
///
/// An open-addressing table with linear probing, at most three quarters
/// full: a key and its value share a slot, so that a lookup usually costs
/// one cache miss (a general-purpose map keeps its control bytes apart,
/// which costs two). The start slot is the key's first eight bytes, which
/// are uniform (see the module docs).
#[derive(Debug)]
pub struct EligiblePartition {
    slots: Vec<Slot>,
    len: usize,
    /// Members named by keys that are not theirs (emails).
    others: Vec<PseudonymId>,
}

impl Default for EligiblePartition {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl EligiblePartition {
    pub fn with_capacity(n: usize) -> Self {
        let cap = (n.saturating_mul(4) / 3 + 1).next_power_of_two().max(16);
        EligiblePartition {
            slots: vec![
                Slot {
                    key: [0; 16],
                    val: EMPTY
                };
                cap
            ],
            len: 0,
            others: Vec::new(),
        }
    }

    fn start(&self, key: &[u8; 16]) -> usize {
        let mut b = [0u8; 8];
        b.copy_from_slice(&key[..8]);
        (u64::from_le_bytes(b) as usize) & (self.slots.len() - 1)
    }

    pub fn insert(&mut self, key: PseudonymId, member: PseudonymId) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            let mut bigger = EligiblePartition::with_capacity(self.slots.len());
            for s in self.slots.iter().filter(|s| s.val != EMPTY) {
                bigger.put(s.key, s.val);
            }
            self.slots = bigger.slots;
        }
        let val = if key == member || self.others.len() >= EMPTY as usize {
            SELF
        } else {
            self.others.push(member);
            (self.others.len() - 1) as u32
        };
        if self.put(key_of(&key), val) {
            self.len += 1;
        }
    }

    /// Puts `key`; `true` if it was not there.
    fn put(&mut self, key: [u8; 16], val: u32) -> bool {
        let mask = self.slots.len() - 1;
        let mut i = self.start(&key);
        loop {
            let s = &mut self.slots[i];
            if s.val == EMPTY {
                *s = Slot { key, val };
                return true;
            }
            if s.key == key {
                s.val = val;
                return false;
            }
            i = (i + 1) & mask;
        }
    }

    /// Reads `key`'s first slot (to bring it into the cache; see
    /// [`probe_rows`]).
    fn touch(&self, key: &PseudonymId) -> u32 {
        self.slots[self.start(&key_of(key))].val
    }

    /// The member `key` names, if it is eligible.
    pub fn get(&self, key: &PseudonymId) -> Option<PseudonymId> {
        let k = key_of(key);
        let mask = self.slots.len() - 1;
        let mut i = self.start(&k);
        loop {
            let s = &self.slots[i];
            if s.val == EMPTY {
                return None;
            }
            if s.key == k {
                return match s.val {
                    SELF => Some(*key),
                    i => self.others.get(i as usize).copied(),
                };
            }
            i = (i + 1) & mask;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held (the table's slots and the members list).
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.others.capacity() * std::mem::size_of::<PseudonymId>()
    }
}

impl AsRef<EligiblePartition> for EligiblePartition {
    fn as_ref(&self) -> &EligiblePartition {
        self
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

/// A match in progress, over partitions: the join by key, whatever the
/// order of rows and partitions. The partner probes row by row
/// ([`probe_rows`]); this is the reference its tests hold it to, and the
/// one-partition bench's subject.
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
            if let Some(member) = eligible.get(&k.pseudonym) {
                // The first slot wins; on a tie (never in a real upload:
                // one phone and one email a row), the smaller member, so
                // that the order of partitions never matters.
                let e = self.rows.entry(k.row).or_insert((k.slot, member));
                if (k.slot, member) < *e {
                    *e = (k.slot, member);
                }
            }
        }
    }

    /// Each matched row and its member.
    pub fn matched(&self) -> impl Iterator<Item = (u64, PseudonymId)> + '_ {
        self.rows.iter().map(|(row, (_, m))| (*row, *m))
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

/// CPU time of the calling thread (Linux `CLOCK_THREAD_CPUTIME_ID`): what
/// a synchronous section cost in work, apart from the time the thread
/// waited for a core (the match's probes share two cores with everything
/// else in the bench). Zero where the clock is unavailable.
pub fn thread_cpu_time() -> std::time::Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec for the call's duration.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    if r != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Rows whose keys are touched together before they are probed.
const PROBE_GROUP: usize = 16;

/// Probes the rows of one upload batch, numbered from `first_row`,
/// against the eligible index's partitions (`parts`, one a first byte):
/// each row's keys in order, stopping at the first that matches (the
/// rule of [`Match`], one row at a time). Returns each matched row with
/// its member, and the lookups made.
pub fn probe_rows(
    parts: &[impl AsRef<EligiblePartition>],
    rows: &[Vec<PseudonymId>],
    first_row: u64,
) -> (Vec<(u64, PseudonymId)>, u64) {
    let mut matched = Vec::with_capacity(rows.len() / 2);
    let mut lookups = 0u64;
    for (g, group) in rows.chunks(PROBE_GROUP).enumerate() {
        // Touch every key's first slot of the group before probing: the
        // loads are independent, so the CPU has them all in flight at
        // once instead of waiting for memory one lookup at a time (the
        // table is far larger than the caches).
        let mut touched = 0u32;
        for key in group.iter().flatten() {
            touched ^= parts[usize::from(partition_of(key))].as_ref().touch(key);
        }
        std::hint::black_box(touched);
        for (j, row) in group.iter().enumerate() {
            for key in row {
                lookups += 1;
                let part = parts[usize::from(partition_of(key))].as_ref();
                if let Some(member) = part.get(key) {
                    matched.push((first_row + (g * PROBE_GROUP + j) as u64, member));
                    break;
                }
            }
        }
    }
    (matched, lookups)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits keys by partition.
    pub fn partition_keys(keys: impl IntoIterator<Item = RowKey>) -> Vec<Vec<RowKey>> {
        let mut parts = vec![Vec::new(); PARTITIONS];
        for k in keys {
            parts[usize::from(partition_of(&k.pseudonym))].push(k);
        }
        parts
    }
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
    fn the_table_grows_and_finds_every_key_and_no_other() {
        use rand::RngCore;
        let mut rng = rand::thread_rng();
        let mut random = || {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            PseudonymId::from_bytes(b)
        };
        let mut part = EligiblePartition::with_capacity(0);
        let entries: Vec<(PseudonymId, PseudonymId)> = (0..20_000)
            .map(|i| {
                let k = random();
                // Every third names someone else (an email).
                (k, if i % 3 == 0 { random() } else { k })
            })
            .collect();
        for (k, m) in &entries {
            part.insert(*k, *m);
        }
        assert_eq!(part.len(), entries.len());
        for (k, m) in &entries {
            assert_eq!(part.get(k), Some(*m));
        }
        for _ in 0..20_000 {
            assert_eq!(part.get(&random()), None);
        }
        // A key inserted again names its new member, and is counted once.
        let (k, _) = entries[1];
        let other = random();
        part.insert(k, other);
        assert_eq!(part.get(&k), Some(other));
        assert_eq!(part.len(), entries.len());
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
        /// A batch probed row by row matches what the partitioned join
        /// matches for the same rows.
        #[test]
        fn row_by_row_equals_the_join(
            eligible in proptest::collection::vec((pseudonym(), pseudonym()), 0..20),
            rows in proptest::collection::vec(proptest::collection::vec(pseudonym(), 1..3), 0..20),
        ) {
            let mut parts: Vec<EligiblePartition> = (0..PARTITIONS)
                .map(|_| EligiblePartition::default())
                .collect();
            for (k, m) in &eligible {
                parts[usize::from(partition_of(k))].insert(*k, *m);
            }
            let keys: Vec<RowKey> = rows
                .iter()
                .enumerate()
                .flat_map(|(i, r)| r.iter().enumerate().map(move |(slot, p)| RowKey {
                    row: 100 + i as u64,
                    slot: slot as u8,
                    pseudonym: *p,
                }))
                .collect();
            let m = run(&eligible, &keys);
            let (matched, lookups) = probe_rows(&parts, &rows, 100);
            prop_assert!(lookups <= keys.len() as u64);
            let mut joined: Vec<(u64, PseudonymId)> = m.matched().collect();
            joined.sort();
            let mut by_rows = matched.clone();
            by_rows.sort();
            prop_assert_eq!(by_rows, joined);
        }

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
