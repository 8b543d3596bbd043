//! Batch evaluation on all cores.
//!
//! A batch is split into at most `workers` contiguous chunks (never smaller
//! than [`Pool::min_chunk`] elements, so small batches stay on one thread)
//! that run on tokio's blocking pool. A semaphore with one permit per
//! worker keeps the CPU-bound chunks of all concurrent requests to one per
//! core, served in arrival order, so the async workers stay free for I/O.
//!
//! Two passes, so that a batch is refused before any work is charged or
//! done: [`Pool::validate`] decodes and checks every element once, in
//! parallel chunks, with `accord-crypto`'s [`validate_batch`], giving a
//! [`ValidatedBatch`]; then [`Pool::evaluate`] evaluates its decoded
//! elements in parallel chunks with [`evaluate_validated`], without
//! decoding them again.

use crate::error::KeydError;
use accord_crypto::oprf::{
    evaluate_validated, validate_batch, BlindedElementBytes, EvaluatedElementBytes, OprfError,
    OprfSecretKey, ValidatedBatch, MAX_BATCH,
};
use std::ops::Range;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The service's error for a refused batch.
fn refused(e: OprfError) -> KeydError {
    match e {
        OprfError::InvalidElement { index } => KeydError::InvalidElement { index },
        OprfError::EmptyBatch => KeydError::EmptyBatch,
        OprfError::BatchTooLarge { max } => KeydError::BatchTooLarge { max },
        e => KeydError::Crypto(e),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Pool {
    permits: Arc<Semaphore>,
    workers: usize,
    min_chunk: usize,
}

impl Pool {
    pub(crate) fn new(workers: usize, min_chunk: usize) -> Self {
        let workers = workers.max(1);
        Pool {
            permits: Arc::new(Semaphore::new(workers)),
            workers,
            min_chunk: min_chunk.max(1),
        }
    }

    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    fn chunks(&self, n: usize) -> Vec<Range<usize>> {
        let count = n.div_ceil(self.min_chunk).clamp(1, self.workers);
        let size = n.div_ceil(count).max(1);
        (0..n).step_by(size).map(|s| s..(s + size).min(n)).collect()
    }

    /// Runs `f` on every chunk of `0..n` in parallel; results in chunk order.
    async fn run<R, F>(&self, n: usize, f: F) -> Result<Vec<R>, KeydError>
    where
        R: Send + 'static,
        F: Fn(Range<usize>) -> R + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let tasks: Vec<_> = self
            .chunks(n)
            .into_iter()
            .map(|range| {
                let (f, permits) = (f.clone(), self.permits.clone());
                tokio::spawn(async move {
                    let _permit = permits
                        .acquire_owned()
                        .await
                        .map_err(|_| KeydError::Internal("worker pool closed"))?;
                    tokio::task::spawn_blocking(move || f(range))
                        .await
                        .map_err(|_| KeydError::Internal("evaluation worker panicked"))
                })
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(
                t.await
                    .map_err(|_| KeydError::Internal("evaluation task failed"))??,
            );
        }
        Ok(out)
    }

    /// Decodes and checks every element (1 to [`MAX_BATCH`] of them), in
    /// parallel chunks. An invalid element refuses the batch with
    /// [`KeydError::InvalidElement`] naming the first bad index.
    pub(crate) async fn validate(
        &self,
        elements: Arc<Vec<BlindedElementBytes>>,
    ) -> Result<Arc<ValidatedBatch>, KeydError> {
        let n = elements.len();
        if n == 0 {
            return Err(KeydError::EmptyBatch);
        }
        if n > MAX_BATCH {
            return Err(KeydError::BatchTooLarge { max: MAX_BATCH });
        }
        let parts = self
            .run(n, move |r| {
                let start = r.start;
                validate_batch(&elements[r]).map_err(|e| match e {
                    OprfError::InvalidElement { index } => OprfError::InvalidElement {
                        index: start + index,
                    },
                    e => e,
                })
            })
            .await?;
        // Chunks are in order, so the first refused chunk holds the first
        // bad index.
        let parts = parts
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(refused)?;
        ValidatedBatch::concat(parts).map(Arc::new).map_err(refused)
    }

    /// The index of the first element that is not a valid blinded element
    /// (for error reports; any number of elements, including none).
    pub(crate) async fn first_invalid(
        &self,
        elements: Arc<Vec<BlindedElementBytes>>,
    ) -> Result<Option<usize>, KeydError> {
        let n = elements.len();
        let found = self
            .run(n, move |r| {
                let start = r.start;
                elements[r]
                    .iter()
                    .position(|e| validate_batch(std::slice::from_ref(e)).is_err())
                    .map(|i| start + i)
            })
            .await?;
        Ok(found.into_iter().flatten().min())
    }

    /// `BlindEvaluate` of every element of a batch from [`Pool::validate`],
    /// in order, in parallel chunks. Nothing is decoded again.
    pub(crate) async fn evaluate(
        &self,
        key: Arc<OprfSecretKey>,
        batch: Arc<ValidatedBatch>,
    ) -> Result<Vec<EvaluatedElementBytes>, KeydError> {
        let n = batch.len();
        let chunks = self
            .run(n, move |r| evaluate_validated(&key, &batch, r))
            .await?;
        let mut out = Vec::with_capacity(n);
        for c in chunks {
            out.extend(c);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accord_crypto::oprf::{blind, evaluate_batch};

    #[test]
    fn chunks_cover_the_batch_in_order() {
        let pool = Pool::new(4, 100);
        assert_eq!(pool.chunks(1), vec![0..1]);
        assert_eq!(pool.chunks(100), vec![0..100]);
        assert_eq!(pool.chunks(250), vec![0..84, 84..168, 168..250]);
        let c = pool.chunks(10_000);
        assert_eq!(c.len(), 4);
        assert_eq!(c.first().unwrap().start, 0);
        assert_eq!(c.last().unwrap().end, 10_000);
        assert!(c.windows(2).all(|w| w[0].end == w[1].start));
    }

    fn bad_encodings(e: BlindedElementBytes) -> [BlindedElementBytes; 3] {
        let mut high_bit = e.0;
        high_bit[31] ^= 0x80;
        [[0u8; 32], [0xff; 32], high_bit].map(BlindedElementBytes)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn validity_matches_voprf() {
        // The identity (all zeros) and non-canonical encodings are refused
        // by both passes, and evaluate_batch agrees.
        let pool = Pool::new(2, 1);
        let (_, e) = blind(b"phone:+15551234567").unwrap();
        let key = OprfSecretKey::generate();
        for bad in bad_encodings(e) {
            let batch = Arc::new(vec![e, e, bad]);
            assert!(evaluate_batch(&key, &batch).is_err());
            assert_eq!(pool.first_invalid(batch.clone()).await.unwrap(), Some(2));
            assert!(matches!(
                pool.validate(batch).await,
                Err(KeydError::InvalidElement { index: 2 })
            ));
        }
        assert_eq!(pool.first_invalid(Arc::new(vec![])).await.unwrap(), None);
        assert!(matches!(
            pool.validate(Arc::new(vec![])).await,
            Err(KeydError::EmptyBatch)
        ));
        assert!(matches!(
            pool.validate(Arc::new(vec![e; MAX_BATCH + 1])).await,
            Err(KeydError::BatchTooLarge { max: MAX_BATCH })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_evaluation_equals_one_batch_and_finds_the_first_invalid() {
        let pool = Pool::new(3, 4);
        let key = Arc::new(OprfSecretKey::generate());
        let elements: Vec<_> = (0..23)
            .map(|i| blind(format!("x{i}").as_bytes()).unwrap().1)
            .collect();
        let elements = Arc::new(elements);
        assert_eq!(pool.first_invalid(elements.clone()).await.unwrap(), None);
        let batch = pool.validate(elements.clone()).await.unwrap();
        assert_eq!(batch.len(), 23);
        let got = pool.evaluate(key.clone(), batch).await.unwrap();
        assert_eq!(got, evaluate_batch(&key, &elements).unwrap());

        // The first bad index, whichever chunk (0..8, 8..16, 16..23) holds it.
        let [zero, ff, high] = bad_encodings(elements[0]);
        for (marks, first) in [
            (vec![(21, zero), (17, ff)], 17),
            (vec![(22, high), (9, zero), (3, ff)], 3),
            (vec![(0, high)], 0),
            (vec![(22, ff)], 22),
            (vec![(16, zero), (15, high)], 15),
        ] {
            let mut bad = (*elements).clone();
            for (i, b) in marks {
                bad[i] = b;
            }
            let bad = Arc::new(bad);
            assert_eq!(pool.first_invalid(bad.clone()).await.unwrap(), Some(first));
            assert!(matches!(
                pool.validate(bad).await,
                Err(KeydError::InvalidElement { index }) if index == first
            ));
        }
    }
}
