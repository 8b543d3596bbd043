//! # accord-crypto
//!
//! Every cryptographic operation Accord performs, as thin, typed wrappers
//! over reviewed crates. Nothing is hand-rolled: the OPRF is `voprf`
//! (RFC 9497, ristretto255-SHA512), hashing is `sha2`, MACs are `hmac`,
//! sealing is `chacha20poly1305`. No I/O happens here.
//!
//! - [`token`]: bearer tokens and verification codes: generation, and the
//!   hashes under which the server stores them.
//! - [`mac`]: HMAC-SHA256 signatures of the coordination feed.
//! - [`oprf`]: the client (blind, finalize) and server (evaluate) halves of
//!   the OPRF that turns identifiers into pseudonyms.
//! - [`sealed`]: secrets (OPRF keys) encrypted at rest under a master key
//!   with XChaCha20-Poly1305.

pub mod mac;
pub mod oprf;
pub mod sealed;
pub mod token;
