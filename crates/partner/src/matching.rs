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
//! A partition keeps each eligible key as its 12 bytes after the
//! partition byte (104 bits with the partition) and the member it names:
//! the key itself for a phone, or an index into the partition's list of
//! members for an email: a 16-byte slot, so that no slot straddles two
//! cache lines; about 27 bytes an entry with the table's free slots,
//! against 64 for two whole pseudonyms. An uploaded pseudonym that is not
//! eligible but agrees with an eligible key on those bytes would match
//! that key's member: OPRF outputs are uniform, so for a million lookups
//! against 10,000,000 entries the chance of one such match is about
//! 10^-18.
//!
//! The tables of [`STRIPE`] partitions share one memory mapping, which
//! the kernel is asked to back with 2 MB pages (see `SlotArena`): a
//! refresh of a partition rebuilds its stripe, copying the others' tables.
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
use std::sync::Arc;

/// Partitions: one per value of a pseudonym's first byte.
pub const PARTITIONS: usize = 256;

/// The partition of a pseudonym.
pub fn partition_of(p: &PseudonymId) -> u8 {
    p.as_bytes()[0]
}

/// Key bytes a slot keeps: the pseudonym's bytes 1 to 12 (its first byte
/// is its partition's).
const KEY: usize = 12;

/// A pseudonym's key within its partition.
fn key_of(p: &PseudonymId) -> [u8; KEY] {
    let mut k = [0u8; KEY];
    k.copy_from_slice(&p.as_bytes()[1..=KEY]);
    k
}

/// A slot of a partition's table: a key and what it names ([`SELF`], one
/// plus an index into the partition's members, or [`EMPTY`]). Sixteen
/// bytes, so that a slot never straddles two cache lines (tables start
/// on a page).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Slot {
    key: [u8; KEY],
    val: u32,
}

/// The member of an entry is the key itself.
const SELF: u32 = u32::MAX;
/// A free slot: zero, what a fresh mapping holds.
const EMPTY: u32 = 0;

/// Partitions whose tables share one mapping (see [`build_together`]).
pub const STRIPE: usize = 16;
/// A huge page (x86-64, aarch64 with 4 KB pages).
const HUGE_PAGE: usize = 2 << 20;

/// Slots of one or more tables in one anonymous mapping: zeroed by the
/// kernel (every slot [`EMPTY`]), and advised to be backed by 2 MB pages
/// when large. A probe is a random read into hundreds of megabytes; with
/// 4 KB pages nearly every one also misses the TLB, and on a virtual
/// machine a page walk costs several more memory reads. Transparent huge
/// pages are only used on request on most distributions
/// (`/sys/kernel/mm/transparent_hugepage/enabled` = `madvise`), and a
/// region smaller than a huge page can never have one: hence a stripe
/// of partitions a mapping rather than one mapping each.
#[derive(Debug)]
struct SlotArena {
    map: Option<memmap2::MmapMut>,
    slots: usize,
}

impl SlotArena {
    fn zeroed(slots: usize) -> std::io::Result<Self> {
        let bytes = slots * std::mem::size_of::<Slot>();
        if bytes == 0 {
            return Ok(SlotArena {
                map: None,
                slots: 0,
            });
        }
        let huge = bytes >= HUGE_PAGE;
        let map = memmap2::MmapMut::map_anon(if huge {
            bytes.next_multiple_of(HUGE_PAGE)
        } else {
            bytes
        })?;
        if huge {
            // Advice only: without transparent huge pages the table works
            // on small pages, slower.
            if let Err(e) = map.advise(memmap2::Advice::HugePage) {
                tracing::debug!(error = %e, "no huge pages for the eligible index");
            }
        }
        Ok(SlotArena {
            map: Some(map),
            slots,
        })
    }

    fn slots(&self) -> &[Slot] {
        match &self.map {
            Some(m) => bytemuck::cast_slice(&m[..self.slots * std::mem::size_of::<Slot>()]),
            None => &[],
        }
    }

    fn slots_mut(&mut self) -> &mut [Slot] {
        let n = self.slots * std::mem::size_of::<Slot>();
        match &mut self.map {
            Some(m) => bytemuck::cast_slice_mut(&mut m[..n]),
            None => &mut [],
        }
    }
}

/// Slots for `n` entries: a power of two, at most three quarters full.
fn capacity_for(n: usize) -> usize {
    (n.saturating_mul(4) / 3 + 1).next_power_of_two().max(16)
}

/// The start slot of `key` in a table of `cap` slots.
fn start(key: &[u8; KEY], cap: usize) -> usize {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    (u64::from_le_bytes(b) as usize) & (cap - 1)
}

/// Puts `key` in `slots`; `true` if it was not there.
fn put(slots: &mut [Slot], key: [u8; KEY], val: u32) -> bool {
    let mask = slots.len() - 1;
    let mut i = start(&key, slots.len());
    loop {
        let s = &mut slots[i];
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

/// One partition of the eligible set: each pseudonym (of a phone number or
/// an email) and the member it names (the person's phone pseudonym).
///
/// An open-addressing table with linear probing, at most three quarters
/// full, in a region of a [`SlotArena`] it may share with the other
/// partitions of its stripe: a key and its value share a slot, so that a
/// lookup usually costs one cache miss (a general-purpose map keeps its
/// control bytes apart, which costs two). The start slot is the key's
/// first eight bytes, which are uniform (see the module docs). Built
/// whole and never changed: a refresh builds a new one.
#[derive(Debug)]
pub struct EligiblePartition {
    arena: Arc<SlotArena>,
    /// The table: `cap` slots of the arena from `first`.
    first: usize,
    cap: usize,
    len: usize,
    /// Members named by keys that are not theirs (emails).
    others: Arc<Vec<PseudonymId>>,
}

impl Default for EligiblePartition {
    fn default() -> Self {
        EligiblePartition::build(Vec::new()).expect("an empty table needs no memory")
    }
}

/// Where a partition of a stripe comes from when the stripe is built.
#[derive(Debug)]
pub enum PartitionSource {
    /// Its entries (key, member), read from the store; a key given twice
    /// names its last member.
    Entries(Vec<(PseudonymId, PseudonymId)>),
    /// Its table as it is (copied slot for slot).
    Keep(Arc<EligiblePartition>),
}

/// Builds the partitions of a stripe (up to [`STRIPE`]) in one mapping,
/// in order: new tables from entries, and unchanged ones copied, so that
/// a refresh of one partition rebuilds its stripe, never the index.
pub fn build_together(sources: Vec<PartitionSource>) -> std::io::Result<Vec<EligiblePartition>> {
    let caps: Vec<usize> = sources
        .iter()
        .map(|s| match s {
            PartitionSource::Entries(e) => capacity_for(e.len()),
            PartitionSource::Keep(p) => p.cap,
        })
        .collect();
    let mut arena = SlotArena::zeroed(caps.iter().sum())?;
    let mut tables = Vec::with_capacity(sources.len());
    let mut first = 0;
    for (source, cap) in sources.into_iter().zip(caps) {
        let region = &mut arena.slots_mut()[first..first + cap];
        let (len, others) = match source {
            PartitionSource::Keep(p) => {
                region.copy_from_slice(p.slots());
                (p.len, Arc::clone(&p.others))
            }
            PartitionSource::Entries(entries) => {
                let mut others = Vec::new();
                let mut len = 0;
                for (key, member) in entries {
                    let val = if key == member || others.len() >= (SELF - 1) as usize {
                        SELF
                    } else {
                        others.push(member);
                        others.len() as u32
                    };
                    if put(region, key_of(&key), val) {
                        len += 1;
                    }
                }
                (len, Arc::new(others))
            }
        };
        tables.push((first, cap, len, others));
        first += cap;
    }
    let arena = Arc::new(arena);
    Ok(tables
        .into_iter()
        .map(|(first, cap, len, others)| EligiblePartition {
            arena: Arc::clone(&arena),
            first,
            cap,
            len,
            others,
        })
        .collect())
}

/// A partition's table as plain slices: what a lookup reads, found once
/// a batch rather than through the partition's mapping each time.
#[derive(Clone, Copy)]
struct Table<'a> {
    slots: &'a [Slot],
    others: &'a [PseudonymId],
}

impl Table<'_> {
    /// Reads `key`'s first slot (to bring it into the cache; see
    /// [`probe_rows`]).
    fn touch(&self, key: &PseudonymId) -> u32 {
        self.slots[start(&key_of(key), self.slots.len())].val
    }

    fn get(&self, key: &PseudonymId) -> Option<PseudonymId> {
        let k = key_of(key);
        let mask = self.slots.len() - 1;
        let mut i = start(&k, self.slots.len());
        loop {
            let s = &self.slots[i];
            if s.val == EMPTY {
                return None;
            }
            if s.key == k {
                return match s.val {
                    SELF => Some(*key),
                    i => self.others.get(i as usize - 1).copied(),
                };
            }
            i = (i + 1) & mask;
        }
    }
}

/// Builds every partition from its entries (`entries[p]` for first byte
/// `p`, [`PARTITIONS`] of them), in stripes, as the index holds them.
pub fn build_all(
    entries: Vec<Vec<(PseudonymId, PseudonymId)>>,
) -> std::io::Result<Vec<EligiblePartition>> {
    let mut parts = Vec::with_capacity(entries.len());
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let stripe = entries
            .by_ref()
            .take(STRIPE)
            .map(PartitionSource::Entries)
            .collect();
        parts.extend(build_together(stripe)?);
    }
    Ok(parts)
}

impl EligiblePartition {
    /// One partition in a mapping of its own.
    pub fn build(entries: Vec<(PseudonymId, PseudonymId)>) -> std::io::Result<Self> {
        let mut one = build_together(vec![PartitionSource::Entries(entries)])?;
        Ok(one.pop().expect("one source, one table"))
    }

    fn slots(&self) -> &[Slot] {
        &self.arena.slots()[self.first..self.first + self.cap]
    }

    /// The table as slices, for many lookups (see [`probe_rows`]).
    fn table(&self) -> Table<'_> {
        Table {
            slots: self.slots(),
            others: &self.others,
        }
    }

    /// The member `key` names, if it is eligible.
    pub fn get(&self, key: &PseudonymId) -> Option<PseudonymId> {
        self.table().get(key)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held (the table's slots and the members list).
    pub fn heap_bytes(&self) -> usize {
        self.cap * std::mem::size_of::<Slot>()
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
    let tables: Vec<Table> = parts.iter().map(|p| p.as_ref().table()).collect();
    for (g, group) in rows.chunks(PROBE_GROUP).enumerate() {
        // Touch every key's first slot of the group before probing: the
        // loads are independent, so the CPU has them all in flight at
        // once instead of waiting for memory one lookup at a time (the
        // table is far larger than the caches).
        let mut touched = 0u32;
        for key in group.iter().flatten() {
            touched ^= tables[usize::from(partition_of(key))].touch(key);
        }
        std::hint::black_box(touched);
        for (j, row) in group.iter().enumerate() {
            for key in row {
                lookups += 1;
                if let Some(member) = tables[usize::from(partition_of(key))].get(key) {
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

    /// The eligible set's partitions, built in stripes as the index
    /// builds them.
    fn partitions(eligible: &[(PseudonymId, PseudonymId)]) -> Vec<EligiblePartition> {
        let mut entries = vec![Vec::new(); PARTITIONS];
        for (k, m) in eligible {
            entries[usize::from(partition_of(k))].push((*k, *m));
        }
        build_all(entries).unwrap()
    }

    fn run(eligible: &[(PseudonymId, PseudonymId)], keys: &[RowKey]) -> Match {
        let parts = partitions(eligible);
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
    fn a_table_finds_every_key_and_no_other_and_survives_a_stripe_rebuild() {
        use rand::RngCore;
        let mut rng = rand::thread_rng();
        let mut random = || {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            PseudonymId::from_bytes(b)
        };
        let mut entries: Vec<(PseudonymId, PseudonymId)> = (0..20_000)
            .map(|i| {
                let k = random();
                // Every third names someone else (an email).
                (k, if i % 3 == 0 { random() } else { k })
            })
            .collect();
        // A key given again names its last member, and is counted once.
        let (k, _) = entries[1];
        let other = random();
        entries.push((k, other));
        let part = EligiblePartition::build(entries.clone()).unwrap();
        assert_eq!(part.len(), entries.len() - 1);
        let expected: HashMap<PseudonymId, PseudonymId> = entries.iter().copied().collect();
        assert_eq!(expected[&k], other);
        for (k, m) in &expected {
            assert_eq!(part.get(k), Some(*m));
        }
        let strangers: Vec<PseudonymId> = (0..20_000).map(|_| random()).collect();
        for s in &strangers {
            assert_eq!(part.get(s), None);
        }
        // Rebuilt beside a new partition, the table is copied as it was;
        // the new one holds its own entries only.
        let kept = Arc::new(part);
        let fresh = (strangers[0], strangers[1]);
        let stripe = build_together(vec![
            PartitionSource::Entries(vec![fresh]),
            PartitionSource::Keep(Arc::clone(&kept)),
        ])
        .unwrap();
        assert_eq!(stripe[0].len(), 1);
        assert_eq!(stripe[0].get(&fresh.0), Some(fresh.1));
        assert_eq!(stripe[0].get(&k), None);
        assert_eq!(stripe[1].len(), kept.len());
        for (k, m) in &expected {
            assert_eq!(stripe[1].get(k), Some(*m));
        }
        assert_eq!(stripe[1].get(&fresh.0), None);
    }

    #[test]
    fn a_large_table_is_mapped_and_found() {
        // 200,000 entries: 262,144 slots, 4 MB, over a huge page.
        let entries: Vec<(PseudonymId, PseudonymId)> = (0..200_000u32)
            .map(|i| {
                let mut b = [0u8; 32];
                b[1..5].copy_from_slice(&i.to_le_bytes());
                b[5..9].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
                let k = PseudonymId::from_bytes(b);
                (k, k)
            })
            .collect();
        let part = EligiblePartition::build(entries.clone()).unwrap();
        assert!(part.heap_bytes() >= HUGE_PAGE);
        assert_eq!(part.len(), entries.len());
        assert!(entries.iter().all(|(k, _)| part.get(k) == Some(*k)));
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
            let parts = partitions(&eligible);
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
