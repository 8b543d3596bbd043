//! Load generators behind `accord bench` (see `cmd/bench.rs`).
//!
//! - [`oprf`]: `accord bench oprf`, the key service's batch endpoint
//!   against the cryptography's single-core speed.

pub mod oprf;
