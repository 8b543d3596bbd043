//! # accord-storage
//!
//! One storage trait per service, each served by one SQL implementation
//! that runs on two backends through `sqlx`'s `Any` driver:
//!
//! - **SQLite** (WAL mode) in a data directory: the embedded default,
//!   created on first start.
//! - **PostgreSQL**, for scale-out: the same trait, the same conformance
//!   suite (`tests/conformance.rs`).
//!
//! Queries are written once, in the SQL both backends understand (`$n`
//! placeholders, `BIGINT` times in milliseconds, UUIDs as text, JSON as
//! text); only the DDL differs, in `migrations/sqlite` and
//! `migrations/postgres`, numbered and never edited once landed.
//!
//! Modules:
//! - [`db`]: opening a database by URL, pragmas, migrations.
//! - [`keyd`]: [`KeyStore`](keyd::KeyStore), the key service's sealed
//!   OPRF keys, API clients, quotas and usage (quota window and audit).
//!   SQL only: the quota window's rules and the client kinds are
//!   `accord_domain::keyd`'s (re-exported there).
//! - [`messenger`]: [`MessengerStore`](messenger::MessengerStore), the
//!   messenger's accounts, devices, policies and consent ledger; one file
//!   per concern under `messenger/` (listed in its docs).
//! - [`kt`]: [`KtStore`](kt::KtStore), the messenger's key-transparency
//!   log: the updates it published into its key directory, epoch by
//!   epoch, and each epoch's signed root.
//! - [`mailbox`]: [`MailboxStore`](mailbox::MailboxStore), the messenger's
//!   E2E key directory, per-device mailboxes (group-committed batches),
//!   blocks and reports.
//! - [`business`]: [`BusinessStore`](business::BusinessStore), business
//!   messaging in the messenger's database: businesses, API keys (hashes),
//!   templates, users' controls, service windows, status events (the
//!   webhook outbox) and webhooks.
//! - [`partner`]: [`PartnerStore`](partner::PartnerStore), what the
//!   coordination feed delivered, partner users, links, contact edges.
//! - [`audience`]: [`AudienceStore`](audience::AudienceStore), custom
//!   audiences in the partner's database: advertisers, audiences,
//!   uploads staged until matched, members, campaigns, impressions.
//! - [`error`]: the storage error type, `StoreError`.
//! - `sql` (crate-private): the helpers every store shares: UUIDs as
//!   text, 32-byte and JSON columns, uniqueness violations as
//!   `StoreError::Conflict`.
//!
//! **Architecture invariant:** every service has its own database; no
//! store here opens another service's tables.

pub mod audience;
pub mod business;
pub mod db;
pub mod error;
pub mod keyd;
pub mod kt;
pub mod mailbox;
pub mod messenger;
pub mod partner;
mod sql;

pub use business::{BusinessStore, SqlBusinessStore};
pub use db::{Backend, Db};
pub use error::StoreError;
pub use kt::{KtStore, SqlKtStore};
pub use mailbox::{MailboxStore, SqlMailboxStore};
pub use messenger::{
    Account, AttemptClaim, CodeRequest, ConsentWrite, Device, FeedDue, FeedStats, MessengerStore,
    NewDevice, PartnerHolding, PendingVerification, RequestCounts, SqlMessengerStore,
};
