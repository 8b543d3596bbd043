//! # accord-keyd-client
//!
//! The client half of the key service (K in `shared/DESIGN.md`): what a
//! device, a business tool, the partner or a messenger needs to turn
//! identifiers into pseudonyms through a key service, and nothing of the
//! server. No axum, no sqlx, no `accord-storage`: the SDK
//! (`accord-client`) and the partner depend on this crate, not on
//! `accord-keyd`, which depends on it and re-exports its items under their
//! old paths.
//!
//! Modules:
//!
//! - [`oprf`]: the [`Oprf`] trait (blind on all cores, evaluate in chunks
//!   of [`MAX_BATCH`](accord_crypto::oprf::MAX_BATCH), finalize on all
//!   cores; implementations supply only the evaluation round trip),
//!   [`HttpOprf`] over HTTP, and [`OprfClientError`]. The server's
//!   `accord_keyd::InProcessOprf` implements the same trait, so both take
//!   the same code path.
//! - [`pseudonym`]: [`Pseudonym`], 32 bytes plus a [`KeyVersion`], which
//!   only [`Oprf::pseudonyms`] can construct; [`Pseudonym::id`] gives its
//!   value as stored and sent, an `accord_domain::PseudonymId`.
//! - [`wire`]: the JSON bodies of the public endpoints, shared by the
//!   server and [`HttpOprf`] (`utoipa` schemas behind the `openapi`
//!   feature).
//!
//! **Architecture invariants:** no blinded or evaluated element and no
//! API token is logged or put in an error (tokens are `SecretString`s and
//! `Debug` redacts them); every cryptographic operation is
//! `accord-crypto`'s.

pub mod oprf;
pub mod pseudonym;
pub mod wire;

pub use accord_crypto::oprf::{KeyVersion, OprfPurpose};
pub use oprf::{Evaluated, HttpOprf, Oprf, OprfClientError};
pub use pseudonym::Pseudonym;
pub use wire::KeyVersions;
