//! The client side of the OPRF, as one trait.
//!
//! [`Oprf::pseudonyms`] is the whole client path: blind every input (on
//! all cores), have the key service evaluate the blinded elements in
//! chunks of [`MAX_BATCH`], finalize (on all cores). Implementations only
//! supply the evaluation step, [`Oprf::evaluate_blinded`]:
//!
//! - [`HttpOprf`] (here) posts to a key service over HTTP;
//! - `accord_keyd::InProcessOprf` (in the server crate, since it needs the
//!   server's `KeyService`) calls a key service in the same process,
//!   through the same quota charge as the HTTP handler.
//!
//! So both take the same code path, and neither can produce a
//! [`Pseudonym`] any other way.

mod http;

pub use http::HttpOprf;

use crate::Pseudonym;
use accord_crypto::oprf::{
    blind_many, finalize_many, input_for_phone, BlindedElementBytes, Blinding,
    EvaluatedElementBytes, KeyVersion, OprfError, OprfPurpose, MAX_BATCH,
};
use accord_domain::PhoneNumber;
use async_trait::async_trait;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// Why the client side failed. Carries no input and no element.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OprfClientError {
    /// Input `index` is empty or longer than 65535 bytes.
    #[error("input {index} is empty or too long")]
    InvalidInput { index: usize },
    /// The client's quota is spent; nothing of the refused chunk was
    /// evaluated or charged. Earlier chunks of a large call were.
    #[error("quota exceeded; retry after {retry_after_s} s")]
    QuotaExceeded { retry_after_s: u64 },
    /// The key service answered with an error (its stable `code`).
    #[error("the key service refused the request ({status} {code}): {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach the key service: {0}")]
    Transport(String),
    /// The answer does not fit the request (count, encoding, version).
    #[error("malformed answer from the key service: {0}")]
    Protocol(&'static str),
    /// The in-process service failed (for `accord_keyd::InProcessOprf`, a
    /// `KeydError`, which `downcast_ref` recovers).
    #[error(transparent)]
    Service(Box<dyn std::error::Error + Send + Sync + 'static>),
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// The answer to one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluated {
    pub key_version: KeyVersion,
    pub elements: Vec<EvaluatedElementBytes>,
}

/// Turns identifiers into [`Pseudonym`]s through the key service.
#[async_trait]
pub trait Oprf: Send + Sync + fmt::Debug {
    /// One round trip to the key service: 1 to [`MAX_BATCH`] blinded
    /// elements under `purpose`'s key `version` (the active one if `None`).
    async fn evaluate_blinded(
        &self,
        purpose: OprfPurpose,
        version: Option<KeyVersion>,
        elements: Vec<BlindedElementBytes>,
    ) -> Result<Evaluated, OprfClientError>;

    /// The version used when a request names none.
    async fn active_version(&self, purpose: OprfPurpose) -> Result<KeyVersion, OprfClientError>;

    /// The pseudonyms of `inputs` (already domain-tagged, see
    /// [`input_for_phone`]), in order, all under one key version.
    ///
    /// Inputs are evaluated in chunks of [`MAX_BATCH`], each charged to the
    /// quota on its own: if a later chunk is refused, the earlier ones
    /// stay charged.
    async fn pseudonyms(
        &self,
        purpose: OprfPurpose,
        version: Option<KeyVersion>,
        inputs: &[Vec<u8>],
    ) -> Result<Vec<Pseudonym>, OprfClientError> {
        let n = inputs.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let inputs: Arc<Vec<Vec<u8>>> = Arc::new(inputs.to_vec());
        let pieces = split(n);

        // Blind, on all cores.
        let tasks: Vec<_> = pieces
            .iter()
            .cloned()
            .map(|r| {
                let inputs = inputs.clone();
                tokio::task::spawn_blocking(move || {
                    blind_many(&inputs[r.clone()]).map_err(|e| offset(e, r.start))
                })
            })
            .collect();
        let mut blindings = Vec::with_capacity(n);
        let mut blinded = Vec::with_capacity(n);
        for t in tasks {
            let (b, e) = t
                .await
                .map_err(|_| OprfClientError::Internal("OPRF worker panicked"))??;
            blindings.extend(b);
            blinded.extend(e);
        }

        // Evaluate, MAX_BATCH at a time, all under the version of the first chunk.
        let mut version = version;
        let mut evaluated = Vec::with_capacity(n);
        for chunk in blinded.chunks(MAX_BATCH) {
            let answer = self
                .evaluate_blinded(purpose, version, chunk.to_vec())
                .await?;
            if answer.elements.len() != chunk.len() {
                return Err(OprfClientError::Protocol(
                    "wrong number of evaluated elements",
                ));
            }
            if version.is_some_and(|v| v != answer.key_version) {
                return Err(OprfClientError::Protocol(
                    "evaluated under another key version",
                ));
            }
            version = Some(answer.key_version);
            evaluated.extend(answer.elements);
        }
        let key_version = version.ok_or(OprfClientError::Internal("nothing evaluated"))?;

        // Finalize, on all cores.
        let mut blindings = blindings.into_iter();
        let tasks: Vec<_> = pieces
            .into_iter()
            .map(|r| {
                let (inputs, bs): (_, Vec<Blinding>) =
                    (inputs.clone(), blindings.by_ref().take(r.len()).collect());
                let es: Vec<EvaluatedElementBytes> = evaluated[r.clone()].to_vec();
                tokio::task::spawn_blocking(move || {
                    finalize_many(bs, &inputs[r.clone()], &es)
                        .map(|outs| {
                            outs.iter()
                                .map(|o| Pseudonym::from_output(o, key_version))
                                .collect::<Vec<_>>()
                        })
                        .map_err(|e| offset(e, r.start))
                })
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        for t in tasks {
            out.extend(
                t.await
                    .map_err(|_| OprfClientError::Internal("OPRF worker panicked"))??,
            );
        }
        Ok(out)
    }

    /// [`Oprf::pseudonyms`] of phone numbers.
    async fn phone_pseudonyms(
        &self,
        purpose: OprfPurpose,
        version: Option<KeyVersion>,
        phones: &[PhoneNumber],
    ) -> Result<Vec<Pseudonym>, OprfClientError> {
        let inputs: Vec<Vec<u8>> = phones.iter().map(input_for_phone).collect();
        self.pseudonyms(purpose, version, &inputs).await
    }
}

fn offset(e: OprfError, start: usize) -> OprfClientError {
    match e {
        OprfError::InvalidInput { index } => OprfClientError::InvalidInput {
            index: start + index,
        },
        OprfError::InvalidElement { .. } => OprfClientError::Protocol("invalid evaluated element"),
        _ => OprfClientError::Internal("OPRF client failure"),
    }
}

/// `0..n` in contiguous pieces, one per core, none smaller than 256.
fn split(n: usize) -> Vec<Range<usize>> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let count = n.div_ceil(256).clamp(1, cores);
    let size = n.div_ceil(count).max(1);
    (0..n).step_by(size).map(|s| s..(s + size).min(n)).collect()
}
