//! # accord-domain
//!
//! The rules of Accord, with no I/O: no async runtime, no database, no HTTP.
//! Every other crate builds on these types, so the invariants in
//! `shared/DESIGN.md` are enforced here where they can be, by construction.
//!
//! - [`identity`]: [`PhoneNumber`](identity::PhoneNumber) (E.164) and
//!   [`Email`](identity::Email). Private fields; `parse` is the only way in,
//!   and `Debug` never prints the value.
//! - [`time`]: [`Timestamp`](time::Timestamp) and the injected
//!   [`Clock`](time::Clock), real or simulated, so 30-day windows are tested
//!   in microseconds.
//! - [`ids`]: account and device identifiers.
//! - [`device`]: device information shared (with consent) with the partner.
//! - [`policy`]: policy versions, purposes and consent profiles.
//! - [`consent`]: the consent state machine. Commands go in, ledger events
//!   come out; folding events gives the state. The same fold reconstructs
//!   the state at any past instant from the ledger alone.
//! - [`pseudonym`]: [`PseudonymId`](pseudonym::PseudonymId), a
//!   pseudonym's 32 bytes as stored and sent (redacted `Debug`, no
//!   `Display`, hex on the wire), with its contact-discovery prefix bucket
//!   and reconciliation bucket.
//! - [`coordination`]: the coordination feed's wire format (state-based,
//!   idempotent, ordered per user).
//! - [`keyd`]: the key service's rules: its client ids and kinds, and the
//!   quota window (a rolling day of 24 hourly buckets, when to retry),
//!   shared by the key service and its store.
//! - [`ledger`]: the hash chain over ledger entries, and its verifier.
//! - [`transparency`]: the ledger as sharded RFC 6962 Merkle logs:
//!   shards, signed checkpoints, inclusion and consistency proofs, and
//!   checking a chain against checkpoints held outside the database.
//! - [`business`]: business messaging's rules: categories, templates and
//!   their rendering, the quality rating, the messaging-limit tiers and
//!   the refusal codes.
//! - [`receipt`]: consent receipts in the spirit of the Kantara Consent
//!   Receipt specification.

pub mod audience;
pub mod business;
pub mod consent;
pub mod coordination;
pub mod device;
pub mod identity;
pub mod ids;
pub mod keyd;
pub mod ledger;
pub mod policy;
pub mod pseudonym;
pub mod receipt;
pub mod time;
pub mod transparency;

pub use consent::{Access, ConsentCommand, ConsentError, ConsentEvent, ConsentState};
pub use device::{DeviceInfo, DeviceInfoError};
pub use identity::{Email, EmailError, PhoneError, PhoneNumber};
pub use ids::{AccountId, DeviceId};
pub use ledger::{ChainError, LedgerEntry, LedgerEvent, LedgerRecord};
pub use policy::{ConsentProfile, PolicyDraft, PolicyError, PolicyVersion, Purpose};
pub use pseudonym::PseudonymId;
pub use time::{Clock, SimulatedClock, SystemClock, Timestamp};
