//! What can go wrong, with stable codes.

use std::path::PathBuf;

use accord_e2e::E2eError;

use crate::ClientError;

/// Why a messaging operation failed. Messages never carry a key, a
/// passphrase, a phone number or a message body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessagingError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("end-to-end: {0}")]
    E2e(#[from] E2eError),
    #[error("the state file does not open with this passphrase or key (wrong key, or the file was altered)")]
    WrongKey,
    #[error("the state file {0} was sealed with another kind of key source")]
    KeySourceMismatch(PathBuf),
    #[error("cannot use the key source: {0}")]
    KeySource(String),
    #[error("no device state at {0}")]
    NoState(PathBuf),
    #[error("device state at {0} already exists")]
    StateExists(PathBuf),
    #[error("the state file is not valid: {0}")]
    BadState(String),
    #[error("the state file belongs to another device")]
    OtherDevice,
    #[error("state file I/O: {0}")]
    Io(String),
    #[error("this device already published other identity keys (its state was lost?): register a new device")]
    DeviceKeysExist,
    /// No device of the recipient has published its keys (yet): ask again
    /// later (see `send` for when the SDK claims again).
    #[error("the recipient has no device that can receive messages (none has published its keys yet); try again later")]
    NoDevices,
    #[error("the server's device list changed again while sending; try again")]
    StillStale,
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// The server handed out a device (or keys) of `account` that the key
    /// directory does not prove: nothing is sent to it.
    #[error("the server gave device {device} of account {account}, which the key directory does not prove: refusing to send (the server may be substituting keys)")]
    Unproven {
        account: accord_domain::AccountId,
        device: accord_domain::DeviceId,
    },
    /// A verified peer's device list changed: accept the change first.
    #[error("the keys of verified account {account} changed: compare safety numbers again, or accept the change (`accord msg accept`), before sending")]
    PeerChanged { account: accord_domain::AccountId },
    #[error("key transparency: {0}")]
    KeyTransparency(#[from] crate::kt::KtError),
}

impl MessagingError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &str {
        match self {
            MessagingError::Client(e) => e.code().unwrap_or("transport"),
            MessagingError::E2e(e) => e.code(),
            MessagingError::WrongKey => "wrong_key",
            MessagingError::KeySourceMismatch(_) => "key_source_mismatch",
            MessagingError::KeySource(_) => "key_source",
            MessagingError::NoState(_) => "no_state",
            MessagingError::StateExists(_) => "state_exists",
            MessagingError::BadState(_) => "bad_state",
            MessagingError::OtherDevice => "other_device",
            MessagingError::Io(_) => "io",
            MessagingError::DeviceKeysExist => "device_keys_exist",
            MessagingError::NoDevices => "no_devices",
            MessagingError::StillStale => "stale_devices",
            MessagingError::Protocol(_) => "protocol",
            MessagingError::Unproven { .. } => "unproven_device",
            MessagingError::PeerChanged { .. } => "peer_keys_changed",
            MessagingError::KeyTransparency(e) => e.code(),
        }
    }

    /// Whether the user (input, key, state) rather than the system is at
    /// fault: the CLI exits 2 for these.
    pub fn is_input(&self) -> bool {
        match self {
            MessagingError::Client(e) => e.status().is_some_and(|s| (400..500).contains(&s)),
            MessagingError::E2e(_)
            | MessagingError::Io(_)
            | MessagingError::StillStale
            | MessagingError::Protocol(_)
            | MessagingError::Unproven { .. }
            | MessagingError::KeyTransparency(_) => false,
            _ => true,
        }
    }
}

pub type Result<T, E = MessagingError> = std::result::Result<T, E>;

pub(super) fn io(e: std::io::Error) -> MessagingError {
    MessagingError::Io(e.to_string())
}
