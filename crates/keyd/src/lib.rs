//! # accord-keyd
//!
//! The key service (K in `shared/DESIGN.md`): an RFC 9497 OPRF
//! (ristretto255-SHA512, base mode) with one key per [`OprfPurpose`] and
//! version, per-client daily quotas, an audit log of counts, and key
//! rotation. It only ever sees blinded elements.
//!
//! Layers, one way:
//!
//! - [`service`]: [`KeyService`], the use cases. Loads or creates the
//!   sealed keys on start, authenticates clients, and evaluates a batch in
//!   three steps: validate every element, charge the quota atomically,
//!   evaluate on all cores. A rejected batch is neither charged nor
//!   evaluated. No HTTP here.
//! - [`http`]: the axum router (one module per endpoint family), the error
//!   type with stable codes, the caller extractors and the OpenAPI document.
//! - [`oprf`]: [`InProcessOprf`], the [`Oprf`] implementation for
//!   all-in-one deployments, which calls [`KeyService`] through the same
//!   quota charge as the HTTP handler.
//! - The client half lives in its own crate, `accord-keyd-client`, so that
//!   the SDK and the partner need neither axum nor sqlx: the [`Oprf`] trait
//!   (blind, evaluate in chunks of
//!   [`MAX_BATCH`](accord_crypto::oprf::MAX_BATCH), finalize), [`HttpOprf`],
//!   [`OprfClientError`], [`Pseudonym`] and the [`wire`] types. They are
//!   re-exported here under their old paths (`accord_keyd::wire`,
//!   `accord_keyd::pseudonym`, `accord_keyd::oprf::HttpOprf`, ...).
//!   [`InProcessOprf`] and [`HttpOprf`] share the trait's provided
//!   [`Oprf::pseudonyms`], so both take the same code path and the same
//!   quota charge.
//! - [`master_key`]: the master key that seals the OPRF keys at rest,
//!   read from (or created 0600 in) `<data-dir>/keyd.master.key`.
//! - [`startup`]: the composition root, [`Application::build`] from
//!   [`Settings`] ([`KeyService::open_at`] is the one way a key service
//!   is opened from configuration).
//!
//! The load generator of `accord bench oprf` lives in the CLI
//! (`crates/cli/src/bench/oprf.rs`), outside the service.
//!
//! **Architecture invariants:** no OPRF key or master key is ever logged,
//! returned by an endpoint, or stored unsealed; no blinded or evaluated
//! element is logged or stored (the audit log holds counts only); every
//! cryptographic operation is `accord-crypto`'s, except the validity check
//! of blinded elements, which mirrors `voprf`'s decoding so that a batch
//! can be refused before it is charged.

pub mod error;
pub(crate) mod eval;
pub mod http;
pub mod master_key;
pub mod oprf;
pub mod quota_use;
pub mod service;
pub mod startup;
pub mod web;

pub use accord_keyd_client::{pseudonym, wire};

pub use accord_crypto::oprf::{KeyVersion, OprfPurpose};
pub use accord_storage::keyd::{Client, ClientId, ClientKind, DailyUsage, KeyStore, SqlKeyStore};
pub use error::KeydError;
pub use http::{router, serve, AppState};
pub use oprf::{HttpOprf, InProcessOprf, Oprf, OprfClientError};
pub use pseudonym::Pseudonym;
pub use service::{Evaluated, KeyService, KeyVersions, KeydConfig};
pub use startup::{Application, Settings};
