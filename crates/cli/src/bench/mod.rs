//! Load generators behind `accord bench` (see `cmd/bench.rs`).
//!
//! - [`audience`]: `accord bench audience`, a customer-list upload
//!   through the real key service and partner, stage by stage, against
//!   the OPRF floor of `bench oprf`.
//! - [`business`]: `accord bench business`, one business agent sending
//!   utility templates to many opted-in recipients through the messenger.
//! - [`consent`]: `accord bench consent`, consent changes through the
//!   messenger's HTTP API (SQLite or PostgreSQL).
//! - [`kt`]: `accord bench kt`, the key directory: publishing epochs,
//!   one lookup and its verification, proof sizes.
//! - [`oprf`]: `accord bench oprf`, the key service's batch endpoint
//!   against the cryptography's single-core speed.
//! - [`pages`]: `accord bench pages`, the messenger's pages rendered
//!   with many users in the database.
//! - [`relay`]: `accord bench relay`, the messenger's E2E relay under
//!   load (throughput, send-to-delivery latency, idle connections).

pub mod audience;
pub mod business;
pub mod consent;
pub mod kt;
pub mod oprf;
pub mod pages;
pub mod relay;
