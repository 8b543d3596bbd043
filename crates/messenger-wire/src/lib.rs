//! # accord-messenger-wire
//!
//! The JSON bodies of the messenger's HTTP API, in one place: the server's
//! handlers (`accord-messenger`) read and write them, the client SDK
//! (`accord-client`) writes and reads the same types, and the OpenAPI
//! document is derived from them (feature `openapi`, enabled by the
//! messenger only, so the SDK builds without utoipa, axum or sqlx).
//!
//! - [`account`]: registration, number change, policy acceptance, the
//!   caller's consent and account;
//! - [`admin`]: the operator's policy publication, ledger paging, the
//!   simulated clock and pseudonym refresh;
//! - [`business`]: business messaging: registration and API keys,
//!   templates and their review, the business send, status, events,
//!   webhooks (and their payload) and users' controls per business;
//! - [`contacts`]: contact discovery's configuration and buckets;
//! - [`e2e`]: the key directory, claims, sends, the long-poll fetch and
//!   ack, reports. The frames and keys themselves are `accord-e2e`'s.
//! - [`kt`]: key transparency: signed roots, lookup, history and audit
//!   proofs, and the directory's value for an account ([`DeviceList`]).
//!
//! Each type says exactly what the server sends or accepts: request
//! bodies refuse unknown fields as the server does; optional fields the
//! server omits are `Option`s that default to `None`.

pub mod account;
pub mod admin;
pub mod business;
pub mod contacts;
pub mod e2e;
pub mod kt;
pub mod transparency;

pub use account::*;
pub use admin::*;
pub use business::*;
pub use contacts::*;
pub use e2e::*;
pub use kt::*;
pub use transparency::*;
