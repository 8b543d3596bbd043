//! # accord-messenger
//!
//! The messenger service. Three layers, one way:
//!
//! - [`service`]: the use cases (register, accept, grant, withdraw,
//!   export, delete, publish, reconstruct, verify). Takes a store, a clock
//!   and a verifier; decides with `accord-domain`'s state machine; writes
//!   state and ledger in one transaction. No HTTP here.
//! - [`http`]: the axum router: one module per endpoint family under
//!   [`http::routes`], the error type that maps every failure to a status
//!   and a stable `code`, the caller extractors (device token, admin
//!   token), and the OpenAPI document generated from the handlers.
//! - [`transparency`]: the consent ledger as sharded Merkle logs on this
//!   node (trees caught up from the database, signed checkpoints,
//!   proofs); [`consent_writer`]: the group commit of consent changes.
//! - [`feed`]: the coordination feed's dispatcher to the partner
//!   (transactional outbox, decided at send time, HMAC-signed,
//!   propagations and confirmed deletions recorded in the ledger).
//! - [`keys`]: the messenger's access to the key service: its own OPRF
//!   client (pseudonyms of its users) and the issuer of each device's
//!   key-service credential (contact discovery).
//! - [`verifier`]: how verification codes reach a phone: the dev verifier
//!   (codes returned in the API response, only with `--dev`) or a webhook
//!   to an SMS gateway.
//!
//! - [`business`]: business messaging: registration and API keys,
//!   templates and their review, admission of business sends, users'
//!   controls, quality and tiers, status webhooks.
//! - [`relay`]: the E2E relay: key directory, per-device mailboxes with a
//!   group-commit writer, WebSocket and long-poll delivery, receipts,
//!   blocks and reports. Ciphertext only. ([`accord_e2e`], re-exported,
//!   is the E2E crate itself: wire types and the client's sessions.)
//!
//! - [`kt`]: key transparency: the auditable key directory (akd) that
//!   every account's device list is published into, its signed epoch
//!   roots, and its lookup, history and audit proofs.
//!
//! - [`startup`]: the composition root, [`Application::build`] from
//!   [`Settings`]: what `accord serve`, `accord demo`, the benches and the
//!   tests all start.
//!
//! [`serve`] runs the router on a listener with graceful shutdown.
//!
//! **Architecture invariant:** no handler logs a request body, a phone
//! number, a code or a token; spans carry the method and the route
//! template only.

pub mod auth_cache;
pub mod business;
pub mod consent_writer;
pub mod feed;
pub mod http;
pub mod keys;
pub mod kt;
pub mod relay;
pub mod service;
pub mod startup;
pub mod transparency;
pub(crate) mod ttl_cache;
pub mod verifier;
pub mod web;

pub use accord_e2e;
pub use http::{router, serve, AppState};
pub use service::{Messenger, MessengerConfig, ServiceError};
pub use startup::{Application, Settings, StartupError};
