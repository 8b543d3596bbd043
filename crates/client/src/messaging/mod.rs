//! End-to-end messaging as a device does it: the I/O shell around
//! [`accord_e2e::E2eMachine`].
//!
//! A [`Device`] owns one device's [`E2eMachine`] and a small directory (the
//! last known device keys of each peer account, and the accounts of the
//! phone numbers it has written to). Both are kept in one state file, each
//! sealed with XChaCha20-Poly1305 under a 32-byte key from a [`KeySource`]
//! (a key file, a passphrase file, or a random key kept in the OS keyring):
//! the machine as its own sealed pickle, the directory beside it. Neither the
//! plaintext pickle nor the directory ever touches the disk.
//!
//! Every operation that changes the state takes an exclusive lock on
//! `<state>.lock`, re-reads the state file, works, and writes it back
//! atomically (temporary file, fsync, rename), so a `listen` and a `send` of
//! the same device in two processes do not overwrite each other's sessions.
//!
//! Talking to the messenger (bearer token of the device):
//! - key directory: `PUT /v1/keys/device`, `POST /v1/keys/one-time`,
//!   `GET /v1/keys/one-time/count`, `POST /v1/keys/claim`;
//! - sending: `POST /v1/messages` with one envelope per device of the
//!   recipient account and of the sender's own other devices; a 409
//!   `stale_devices` is answered by claiming again and retrying once with
//!   the same client message id (the server makes retries idempotent); an
//!   empty device list is never trusted from the cache but claimed again,
//!   with a backoff per account kept in memory;
//! - receiving: the `GET /v1/stream` WebSocket, falling back to the
//!   `GET /v1/messages?wait_s=` long-poll; envelopes are acked once
//!   decrypted and the new state is on disk.
//!
//! Read receipts are ordinary end-to-end messages
//! ([`PlaintextKind::ReadReceipt`]); the server cannot tell them from texts.
//! Server delivery receipts carry no mailbox id, so they cannot be acked:
//! a device remembers the ones it has reported (sealed, in the directory)
//! and hands each to its caller once, and drops the receipts of its own
//! acks.
//!
//! **Architecture Invariant:** no plaintext, private key or pickle is
//! written unsealed; the only secrets in clear on disk are the key file or
//! passphrase file the user chose. With the OS keyring the key is in the
//! keyring only; the state file names the entry (service, user).
//!
//! The module, by concern:
//! - `key_source`: [`KeySource`]: a passphrase file (Argon2id), a key
//!   file, or the OS keyring; how the key is made is kept in the state file.
//! - `state`: the sealed state file, its directory of peers, the lock and
//!   the atomic write.
//! - `device`: [`Device`]: create, open, the locked read-modify-write of
//!   every change; publishing and replenishing keys.
//! - `send`: [`Recipient`], [`Sent`]: fan-out, claims (and the backoff of
//!   claims that found no device), the retry on `stale_devices`.
//! - `listen`: [`Event`], [`ListenOptions`]: the WebSocket and the
//!   long-poll, acks, delivery receipts.
//! - `trust`: key transparency on every claim (lookup proofs checked
//!   against the pinned directory keys; unproven devices refused),
//!   verified peers and their safety numbers ([`SafetyNumber`],
//!   [`PeerStatus`]), and the audit of this device's own account
//!   ([`OwnAudit`]).
//! - `business`: business messages as a user sees them: the signed,
//!   approved template rendered with the message's parameters, or
//!   unverified with the reason ([`BusinessMessage`], [`Rendered`]);
//!   sending as a business's device is [`Device::send_business`].
//! - `agent`: [`BusinessDevice`], a held business device for many
//!   concurrent sends (what `accord business agent` runs).
//! - `error`: [`MessagingError`], with stable codes.

mod agent;
mod business;
mod device;
mod error;
mod key_source;
mod listen;
mod send;
mod state;
mod trust;

/// The end-to-end types a caller of this module names.
pub use accord_e2e::payload::MAX_RECEIPT_IDS;
pub use accord_e2e::{ClientMessageId, EnvelopeId, PeerDevice, Plaintext, PlaintextKind};
/// How many one-time keys the server holds for this device.
pub use accord_messenger_wire::KeyCount;

pub use agent::BusinessDevice;
pub use business::{BusinessMessage, Rendered};
pub use device::{Device, REPLENISH_BELOW};
pub use error::{MessagingError, Result};
pub use key_source::KeySource;
pub use listen::{Event, ListenEnd, ListenOptions, Transport};
pub use send::{Recipient, Sent, EMPTY_CLAIM_BACKOFF, EMPTY_CLAIM_BACKOFF_MAX};
pub use trust::{OwnAudit, OwnWarning, PeerStatus, SafetyNumber};
