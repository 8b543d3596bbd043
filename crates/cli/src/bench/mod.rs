//! Load generators behind `accord bench` (see `cmd/bench.rs`).
//!
//! - [`kt`]: `accord bench kt`, the key directory: publishing epochs,
//!   one lookup and its verification, proof sizes.
//! - [`oprf`]: `accord bench oprf`, the key service's batch endpoint
//!   against the cryptography's single-core speed.
//! - [`relay`]: `accord bench relay`, the messenger's E2E relay under
//!   load (throughput, send-to-delivery latency, idle connections).

pub mod kt;
pub mod oprf;
pub mod relay;
