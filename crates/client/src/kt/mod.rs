//! Key transparency on the client side: checking what the messenger's key
//! directory proves, auditing it, and safety numbers.
//!
//! - [`verify`]: the checks, pure functions over the wire bodies and the
//!   pinned [`DirectoryKeys`]: a signed root, a lookup proof (the device
//!   list of an account at an epoch), a history proof, an append-only
//!   proof between epochs.
//! - [`audit`]: [`audit::Auditor`], what `accord audit keys` runs: it
//!   keeps every root it has seen (a state file), so a history rewritten
//!   or forked after it looked contradicts what it holds.
//! - [`safety`]: safety numbers: a fingerprint of both accounts' identity
//!   keys, in the grouped-digit form people read aloud.
//!
//! Proofs are akd's (`akd::client`, `akd::auditor`) in WhatsApp's
//! configuration; nothing here builds a tree or a VRF of its own.

pub mod audit;
pub mod safety;
pub mod verify;

pub use audit::{AuditReport, Auditor};
pub use safety::{fingerprint, safety_number};
pub use verify::{DirectoryKeys, KtError, Proven};
