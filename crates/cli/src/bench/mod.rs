//! Load generators behind `accord bench` (see `cmd/bench.rs`).
//!
//! - [`oprf`]: `accord bench oprf`, the key service's batch endpoint
//!   against the cryptography's single-core speed.
//! - [`relay`]: `accord bench relay`, the messenger's E2E relay under
//!   load (throughput, send-to-delivery latency, idle connections).

pub mod oprf;
pub mod relay;
