//! The audience match's probe rate on one partition at the scale of the
//! issue: 10,000,000 eligible users and 1,000,000 uploaded rows (phone
//! and email) give about 39,000 eligible entries and 7,800 probes per
//! partition (of 256), 30% of the rows matching. `cargo bench -p
//! accord-partner --bench matching`; criterion prints the probes per
//! second as `thrpt`. `probe_batch_whole_index` is the partner's shape:
//! an upload batch of 10,000 rows probed row by row against the whole
//! 10,000,000-entry index (256 partitions, far larger than the caches),
//! a different batch each iteration.

use accord_domain::PseudonymId;
use accord_partner::matching::{
    build_all, probe_rows, EligiblePartition, Match, RowKey, PARTITIONS,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::RngCore;

fn pseudonym(rng: &mut impl RngCore, partition: u8) -> PseudonymId {
    let mut b = [0u8; 32];
    rng.fill_bytes(&mut b);
    b[0] = partition;
    PseudonymId::from_bytes(b)
}

fn probes(c: &mut Criterion) {
    let mut rng = rand::thread_rng();
    let eligible_n = 10_000_000 / 256;
    let rows_n = 1_000_000 / 256;
    let members: Vec<PseudonymId> = (0..eligible_n).map(|_| pseudonym(&mut rng, 7)).collect();
    let eligible =
        EligiblePartition::build(members.iter().map(|p| (*p, *p)).collect()).expect("memory");
    let mut keys = Vec::with_capacity(rows_n * 2);
    for row in 0..rows_n as u64 {
        let phone = if row % 10 < 3 {
            members[(rng.next_u32() as usize) % members.len()]
        } else {
            pseudonym(&mut rng, 7)
        };
        keys.push(RowKey {
            row,
            slot: 0,
            pseudonym: phone,
        });
        keys.push(RowKey {
            row,
            slot: 1,
            pseudonym: pseudonym(&mut rng, 7),
        });
    }
    let mut g = c.benchmark_group("audience_match");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("probe_one_partition", |b| {
        b.iter(|| {
            let mut m = Match::default();
            m.probe(&eligible, &keys);
            m.matched_rows()
        })
    });
    g.finish();
}

fn whole_index(c: &mut Criterion) {
    let mut rng = rand::thread_rng();
    let per_part = 10_000_000 / PARTITIONS;
    let mut members = Vec::with_capacity(10_000_000);
    let mut entries = Vec::with_capacity(PARTITIONS);
    for p in 0..PARTITIONS {
        let keys: Vec<PseudonymId> = (0..per_part)
            .map(|_| pseudonym(&mut rng, p as u8))
            .collect();
        members.extend_from_slice(&keys);
        entries.push(keys.iter().map(|k| (*k, *k)).collect());
    }
    // In stripes, as the partner's index holds them.
    let parts = build_all(entries).expect("memory");
    // 100 batches, probed in turn, so that a batch's slots are not in the
    // cache from the last iteration (probing one batch over and over
    // measured 37 million lookups/s: a warm cache, not the partner's).
    let batches: Vec<Vec<Vec<PseudonymId>>> = (0..100)
        .map(|_| {
            (0..10_000u64)
                .map(|row| {
                    let phone = if row % 10 < 3 {
                        members[(rng.next_u32() as usize) % members.len()]
                    } else {
                        let p = rng.next_u32() as u8;
                        pseudonym(&mut rng, p)
                    };
                    let p = rng.next_u32() as u8;
                    vec![phone, pseudonym(&mut rng, p)]
                })
                .collect()
        })
        .collect();
    let lookups = probe_rows(&parts, &batches[0], 0).1;
    let mut g = c.benchmark_group("audience_match");
    g.throughput(Throughput::Elements(lookups));
    let mut i = 0;
    g.bench_function("probe_batch_whole_index", |b| {
        b.iter(|| {
            i = (i + 1) % batches.len();
            probe_rows(&parts, &batches[i], 0).0.len()
        })
    });
    g.finish();
}

criterion_group!(benches, probes, whole_index);
criterion_main!(benches);
