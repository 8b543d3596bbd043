//! Batch evaluation on all cores.
//!
//! A batch is split into at most `workers` contiguous chunks (never smaller
//! than [`Pool::min_chunk`] elements, so small batches stay on one thread)
//! that run on tokio's blocking pool. A semaphore with one permit per
//! worker keeps the CPU-bound chunks of all concurrent requests to one per
//! core, served in arrival order, so the async workers stay free for I/O.
//!
//! Two passes, so that a batch is refused before any work is charged or
//! done: [`Pool::first_invalid`] checks every element, then
//! [`Pool::evaluate`] evaluates with `accord-crypto`'s
//! [`evaluate_batch`].

use crate::error::KeydError;
use accord_crypto::oprf::{
    evaluate_batch, BlindedElementBytes, EvaluatedElementBytes, OprfSecretKey,
};
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::traits::Identity;
use std::ops::Range;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Whether `e` is what `voprf` accepts as a blinded element: a canonical
/// ristretto255 encoding of a point other than the identity (`voprf`'s
/// `Ristretto255::deserialize_elem`, exactly).
pub(crate) fn is_valid_element(e: &BlindedElementBytes) -> bool {
    CompressedRistretto(e.0)
        .decompress()
        .is_some_and(|p| p != RistrettoPoint::identity())
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

    /// The index of the first element that is not a valid blinded element.
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
                    .position(|e| !is_valid_element(e))
                    .map(|i| start + i)
            })
            .await?;
        Ok(found.into_iter().flatten().min())
    }

    /// `BlindEvaluate` of every element, in order. The elements must have
    /// passed [`Pool::first_invalid`].
    pub(crate) async fn evaluate(
        &self,
        key: Arc<OprfSecretKey>,
        elements: Arc<Vec<BlindedElementBytes>>,
    ) -> Result<Vec<EvaluatedElementBytes>, KeydError> {
        let n = elements.len();
        let chunks = self
            .run(n, move |r| evaluate_batch(&key, &elements[r]))
            .await?;
        let mut out = Vec::with_capacity(n);
        for c in chunks {
            out.extend(c.map_err(KeydError::Crypto)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accord_crypto::oprf::blind;

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

    #[test]
    fn validity_matches_voprf() {
        let (_, e) = blind(b"phone:+15551234567").unwrap();
        assert!(is_valid_element(&e));
        // The identity (all zeros) and non-canonical encodings are refused,
        // and evaluate_batch agrees.
        let key = OprfSecretKey::generate();
        for bad in [[0u8; 32], [0xff; 32], {
            let mut b = e.0;
            b[31] ^= 0x80;
            b
        }] {
            let bad = BlindedElementBytes(bad);
            assert!(!is_valid_element(&bad));
            assert!(evaluate_batch(&key, &[bad]).is_err());
        }
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
        let got = pool.evaluate(key.clone(), elements.clone()).await.unwrap();
        assert_eq!(got, evaluate_batch(&key, &elements).unwrap());

        let mut bad = (*elements).clone();
        bad[21] = BlindedElementBytes([0; 32]);
        bad[17] = BlindedElementBytes([0xff; 32]);
        assert_eq!(pool.first_invalid(Arc::new(bad)).await.unwrap(), Some(17));
    }
}
