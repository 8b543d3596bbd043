//! Hot paths of the OPRF: client blinding and finalizing, and the key
//! service's evaluation, singly and as a 1,000-element batch (in one call,
//! and as its two phases: validation, then evaluation of the validated batch).
//!
//! `cargo bench -p accord-crypto --bench oprf`

use accord_crypto::oprf::{self, OprfSecretKey};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const INPUT: &[u8] = b"phone:+447700900123";

fn bench_client(c: &mut Criterion) {
    let key = OprfSecretKey::generate();

    c.bench_function("blind", |b| {
        b.iter(|| oprf::blind(black_box(INPUT)).unwrap())
    });

    c.bench_function("finalize", |b| {
        b.iter_batched(
            || {
                let (blinding, element) = oprf::blind(INPUT).unwrap();
                let evaluated = oprf::evaluate_batch(&key, &[element]).unwrap();
                (blinding, evaluated[0])
            },
            |(blinding, evaluated)| oprf::finalize(blinding, black_box(INPUT), &evaluated).unwrap(),
            BatchSize::SmallInput,
        )
    });
}

fn bench_server(c: &mut Criterion) {
    let key = OprfSecretKey::generate();
    let (_, element) = oprf::blind(INPUT).unwrap();

    let mut single = c.benchmark_group("blind_evaluate");
    single.throughput(Throughput::Elements(1));
    single.bench_function("one_element", |b| {
        b.iter(|| oprf::evaluate_batch(&key, black_box(&[element])).unwrap())
    });
    single.finish();

    let inputs: Vec<Vec<u8>> = (0..1_000u32)
        .map(|i| format!("phone:+4477009{i:05}").into_bytes())
        .collect();
    let (_, elements) = oprf::blind_many(&inputs).unwrap();
    let mut batch = c.benchmark_group("evaluate_batch");
    batch.throughput(Throughput::Elements(elements.len() as u64));
    batch.sample_size(10);
    batch.bench_function("1000_elements", |b| {
        b.iter(|| oprf::evaluate_batch(&key, black_box(&elements)).unwrap())
    });
    batch.finish();

    // The two phases the key service runs separately: decode and check
    // once, then evaluate the decoded elements.
    let mut phases = c.benchmark_group("validated_batch");
    phases.throughput(Throughput::Elements(elements.len() as u64));
    phases.sample_size(10);
    phases.bench_function("validate_1000_elements", |b| {
        b.iter(|| oprf::validate_batch(black_box(&elements)).unwrap())
    });
    let validated = oprf::validate_batch(&elements).unwrap();
    phases.bench_function("evaluate_validated_1000_elements", |b| {
        b.iter(|| oprf::evaluate_validated(&key, black_box(&validated), 0..validated.len()))
    });
    phases.finish();
}

criterion_group!(benches, bench_client, bench_server);
criterion_main!(benches);
