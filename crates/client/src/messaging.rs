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
//!   the same client message id (the server makes retries idempotent);
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

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use accord_domain::{AccountId, Clock, DeviceId, PhoneNumber, SystemClock, Timestamp};
use accord_e2e::{
    ClientFrame, DeliveredEnvelope, DeviceKeys, E2eError, E2eMachine, PickleError, SendRequest,
    ServerFrame, SignedOneTimeKey, WireError,
};
use accord_messenger_wire::{
    AckRequest, AckResponse, ClaimRequest, Claimed, OneTimeKeysUpload, SendMessage, SendOutcome,
};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::{to_json, Client, ClientError};

/// The end-to-end types a caller of this module names.
pub use accord_e2e::payload::MAX_RECEIPT_IDS;
pub use accord_e2e::{ClientMessageId, EnvelopeId, PeerDevice, Plaintext, PlaintextKind};
/// How many one-time keys the server holds for this device.
pub use accord_messenger_wire::KeyCount;

/// Replenish one-time keys when the directory holds fewer than this.
pub const REPLENISH_BELOW: u32 = 20;
/// The state file's format name and version.
const STATE_FORMAT: &str = "accord-device-state/1";
/// Associated data of the sealed directory (the machine's pickle has its own).
const DIRECTORY_AAD: &[u8] = b"accord-device-directory/1";
/// Argon2id parameters for a passphrase (OWASP's minimum: 19 MiB, 2 passes).
const ARGON2_M_KIB: u32 = 19 * 1024;
const ARGON2_T: u32 = 2;
const ARGON2_P: u32 = 1;
/// Longest wait of one long-poll request (the HTTP client times out at 60 s).
const MAX_POLL_WAIT: Duration = Duration::from_secs(25);
/// How often a WebSocket connection sends a `ping` frame.
const PING_EVERY: Duration = Duration::from_secs(20);
/// How long a listen that stops waits for its last acks to commit.
const ACK_BARRIER_WAIT: Duration = Duration::from_secs(5);
/// Delivery receipts remembered to suppress repeats.
const MAX_SEEN_RECEIPTS: usize = 4_096;
/// Longest pause between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Consecutive WebSocket failures after which `listen` long-polls instead.
const WS_FAILURES_BEFORE_POLLING: u32 = 3;
/// While long-polling, the WebSocket is tried again every this many polls.
const POLLS_BETWEEN_WS_TRIES: u32 = 10;

/// Where the 32-byte key that seals the state comes from.
///
/// A key file suits servers and scripts, a passphrase file a key the user
/// can remember, the OS keyring a desktop: the key never touches the disk
/// outside the keyring, which the user's login unlocks.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// A file holding a passphrase (one trailing newline is ignored); the
    /// key is derived with Argon2id and a random salt kept in the state
    /// file.
    PassphraseFile(PathBuf),
    /// A file holding a random key (base64 of 32 bytes), created with mode
    /// 0600 when it does not exist and the state is new.
    KeyFile(PathBuf),
    /// A random key (base64 of 32 bytes) kept in the OS keyring under
    /// `service` and `user` (the CLI uses `accord` and the device id): the
    /// macOS Keychain, the Windows Credential Manager, or on Linux and the
    /// BSDs the freedesktop Secret Service (GNOME Keyring, KWallet) on the
    /// D-Bus session bus. Stored when the state is new (an entry already
    /// there is used, as an existing key file is); the state file records
    /// the entry's service and user, never the key.
    OsKeyring { service: String, user: String },
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::PassphraseFile(p) => write!(f, "PassphraseFile({})", p.display()),
            KeySource::KeyFile(p) => write!(f, "KeyFile({})", p.display()),
            KeySource::OsKeyring { service, user } => {
                write!(f, "OsKeyring({service:?}, {user:?})")
            }
        }
    }
}

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
    #[error("the recipient has no device that can receive messages")]
    NoDevices,
    #[error("the server's device list changed again while sending; try again")]
    StillStale,
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
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
            | MessagingError::Protocol(_) => false,
            _ => true,
        }
    }
}

pub type Result<T, E = MessagingError> = std::result::Result<T, E>;

fn io(e: std::io::Error) -> MessagingError {
    MessagingError::Io(e.to_string())
}

// ---------------------------------------------------------------------------
// Key sources and the state file
// ---------------------------------------------------------------------------

/// How the state's key was made, kept (without secrets) in the state file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum Kdf {
    Argon2id {
        salt: String,
        m_kib: u32,
        t: u32,
        p: u32,
    },
    KeyFile,
    /// The key is in the OS keyring, in the entry named here.
    OsKeyring {
        service: String,
        user: String,
    },
}

impl Kdf {
    fn fresh_for(source: &KeySource) -> Kdf {
        match source {
            KeySource::PassphraseFile(_) => {
                let salt: [u8; 16] = rand_bytes();
                Kdf::Argon2id {
                    salt: STANDARD_NO_PAD.encode(salt),
                    m_kib: ARGON2_M_KIB,
                    t: ARGON2_T,
                    p: ARGON2_P,
                }
            }
            KeySource::KeyFile(_) => Kdf::KeyFile,
            KeySource::OsKeyring { service, user } => Kdf::OsKeyring {
                service: service.clone(),
                user: user.clone(),
            },
        }
    }

    /// The key, from `source`. `create` allows making a missing key file
    /// or keyring entry.
    fn derive(
        &self,
        source: &KeySource,
        state: &Path,
        create: bool,
    ) -> Result<Zeroizing<[u8; 32]>> {
        match (self, source) {
            (Kdf::Argon2id { salt, m_kib, t, p }, KeySource::PassphraseFile(path)) => {
                let passphrase = read_passphrase(path)?;
                let salt = STANDARD_NO_PAD
                    .decode(salt)
                    .map_err(|_| MessagingError::BadState("salt is not base64".into()))?;
                let params = argon2::Params::new(*m_kib, *t, *p, Some(32))
                    .map_err(|e| MessagingError::BadState(format!("Argon2 parameters: {e}")))?;
                let argon = argon2::Argon2::new(
                    argon2::Algorithm::Argon2id,
                    argon2::Version::V0x13,
                    params,
                );
                let mut key = Zeroizing::new([0u8; 32]);
                argon
                    .hash_password_into(passphrase.as_bytes(), &salt, &mut *key)
                    .map_err(|e| MessagingError::BadState(format!("Argon2: {e}")))?;
                Ok(key)
            }
            (Kdf::KeyFile, KeySource::KeyFile(path)) => read_or_create_key_file(path, create),
            (
                Kdf::OsKeyring { service, user },
                KeySource::OsKeyring {
                    service: s,
                    user: u,
                },
            ) => {
                if (service, user) != (s, u) {
                    return Err(MessagingError::KeySource(format!(
                        "the state file {} was sealed under the OS keyring entry of service {service:?}, user {user:?}, not service {s:?}, user {u:?}",
                        state.display()
                    )));
                }
                os_keyring::read_or_create(service, user, create)
            }
            _ => Err(MessagingError::KeySourceMismatch(state.to_owned())),
        }
    }
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    use chacha20poly1305::aead::rand_core::RngCore;
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

fn read_passphrase(path: &Path) -> Result<Zeroizing<String>> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        MessagingError::KeySource(format!(
            "cannot read passphrase file {}: {e}",
            path.display()
        ))
    })?);
    let trimmed = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if trimmed.is_empty() {
        return Err(MessagingError::KeySource(format!(
            "passphrase file {} is empty",
            path.display()
        )));
    }
    Ok(Zeroizing::new(trimmed.to_owned()))
}

fn read_or_create_key_file(path: &Path, create: bool) -> Result<Zeroizing<[u8; 32]>> {
    match std::fs::read_to_string(path) {
        Ok(text) => decode_key(&Zeroizing::new(text)).ok_or_else(|| {
            MessagingError::KeySource(format!(
                "key file {} does not hold a key (base64 of 32 bytes)",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let key = Zeroizing::new(rand_bytes::<32>());
            let text = Zeroizing::new(format!("{}\n", STANDARD_NO_PAD.encode(*key)));
            write_private_atomic(path, text.as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(MessagingError::KeySource(format!(
            "cannot read key file {}: {e}",
            path.display()
        ))),
    }
}

/// The OS keyring through the `keyring` crate. Its calls block; on Linux
/// they run on zbus's own single-threaded tokio runtime, which panics when
/// entered from a thread that already runs a runtime (and may deadlock on
/// one that blocks it). So each call runs on a thread of its own, and the
/// caller waits for it, as it waits for the state file's I/O.
mod os_keyring {
    use std::sync::mpsc;
    use std::time::Duration;

    use base64::engine::general_purpose::STANDARD_NO_PAD;
    use base64::Engine;
    use keyring::Error as KeyringError;
    use zeroize::Zeroizing;

    use super::{rand_bytes, MessagingError, Result};

    /// How long a keyring call may take: long enough for the user to type
    /// a password into an unlock prompt, short enough that a keyring that
    /// never answers does not hang the caller for good.
    const KEYRING_TIMEOUT: Duration = Duration::from_secs(120);

    /// The key kept under `service`/`user`; a missing entry is made (with a
    /// fresh random key) only when `create`.
    pub(super) fn read_or_create(
        service: &str,
        user: &str,
        create: bool,
    ) -> Result<Zeroizing<[u8; 32]>> {
        let (service, user) = (service.to_owned(), user.to_owned());
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("accord-keyring".into())
            .spawn(move || {
                // The receiver may have given up: nothing to do then.
                let _ = tx.send(blocking(&service, &user, create));
            })
            .map_err(|e| {
                MessagingError::KeySource(format!("cannot start the OS keyring thread: {e}"))
            })?;
        match rx.recv_timeout(KEYRING_TIMEOUT) {
            Ok(out) => {
                let _ = thread.join();
                out
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(MessagingError::KeySource(format!(
                "the OS keyring did not answer within {} s (is it locked, waiting for a password prompt?)",
                KEYRING_TIMEOUT.as_secs()
            ))),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(MessagingError::KeySource(
                "the OS keyring call failed unexpectedly".into(),
            )),
        }
    }

    fn blocking(service: &str, user: &str, create: bool) -> Result<Zeroizing<[u8; 32]>> {
        let entry = keyring::Entry::new(service, user).map_err(|e| describe(e, service, user))?;
        match entry.get_password() {
            Ok(text) => decode(Zeroizing::new(text), service, user),
            Err(KeyringError::NoEntry) if create => {
                let key = Zeroizing::new(rand_bytes::<32>());
                let text = Zeroizing::new(STANDARD_NO_PAD.encode(*key));
                entry
                    .set_password(&text)
                    .map_err(|e| describe(e, service, user))?;
                Ok(key)
            }
            Err(e) => Err(describe(e, service, user)),
        }
    }

    fn decode(text: Zeroizing<String>, service: &str, user: &str) -> Result<Zeroizing<[u8; 32]>> {
        super::decode_key(&text).ok_or_else(|| {
            MessagingError::KeySource(format!(
                "the OS keyring entry of service {service:?}, user {user:?} does not hold a key (base64 of 32 bytes)"
            ))
        })
    }

    /// A keyring failure as a message without secrets: the store's own
    /// errors name D-Bus or platform failures, never an item's secret; a
    /// badly encoded secret is not shown.
    fn describe(e: KeyringError, service: &str, user: &str) -> MessagingError {
        let entry = format!("service {service:?}, user {user:?}");
        MessagingError::KeySource(match e {
            KeyringError::NoEntry => format!(
                "the OS keyring has no entry for {entry}: the key of this state was deleted from the keyring, or the state was made on another machine or login"
            ),
            KeyringError::NoStorageAccess(e) => format!(
                "the OS keyring is locked or refused access to {entry} (unlock it, e.g. by logging in to the desktop): {e}"
            ),
            KeyringError::PlatformFailure(e) => format!(
                "cannot reach the OS keyring{}: {e}",
                if cfg!(any(target_os = "linux", target_os = "freebsd", target_os = "openbsd")) {
                    " (the Secret Service on the D-Bus session bus: is GNOME Keyring or KWallet running, and DBUS_SESSION_BUS_ADDRESS set?)"
                } else {
                    ""
                }
            ),
            KeyringError::BadEncoding(_) => {
                format!("the OS keyring entry of {entry} is not text")
            }
            KeyringError::Ambiguous(items) => format!(
                "the OS keyring holds {} entries for {entry}; remove all but one",
                items.len()
            ),
            KeyringError::TooLong(attr, max) => {
                format!("the OS keyring's {attr} is limited to {max} characters")
            }
            KeyringError::Invalid(attr, why) => format!("OS keyring {attr}: {why}"),
            e => format!("OS keyring: {e}"),
        })
    }
}

/// A 32-byte key from its base64 text (padding and surrounding
/// whitespace allowed), as key files and keyring entries hold it.
fn decode_key(text: &str) -> Option<Zeroizing<[u8; 32]>> {
    let bytes = Zeroizing::new(
        STANDARD_NO_PAD
            .decode(text.trim().trim_end_matches('='))
            .ok()?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    (bytes.len() == 32).then(|| {
        key.copy_from_slice(&bytes);
        key
    })
}

/// Writes `bytes` to `path` readable by its owner only: a temporary file
/// beside it, fsync, rename.
fn write_private_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = sibling(path, ".tmp");
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The state file: public metadata in clear, the rest sealed.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format: String,
    kdf: Kdf,
    account_id: AccountId,
    device_id: DeviceId,
    /// The machine's sealed pickle, base64.
    machine: String,
    /// The sealed [`Directory`], base64.
    directory: String,
}

/// Whether this device's keys are in the server's directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Publication {
    #[default]
    Unpublished,
    Published,
}

/// What a device remembers about others. Sealed at rest: who one writes to
/// is private.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Directory {
    publication: Publication,
    /// The device list of each account as last claimed (own account too).
    accounts: BTreeMap<AccountId, Vec<DeviceKeys>>,
    /// E.164 number → account, for the numbers written to.
    phones: BTreeMap<String, AccountId>,
    /// The delivery receipts already handed to the caller, newest last
    /// (at most [`MAX_SEEN_RECEIPTS`]): the server may push one again.
    #[serde(default)]
    seen_receipts: VecDeque<(ClientMessageId, DeviceId)>,
    /// The newest envelope handled (ids grow within a mailbox): one pushed
    /// again because its ack was lost is acked without being handed over
    /// twice (its message keys are used up anyway).
    #[serde(default)]
    last_envelope: Option<EnvelopeId>,
}

impl Directory {
    fn keys_of(&self, peer: &PeerDevice) -> Option<&DeviceKeys> {
        self.accounts
            .get(&peer.account)?
            .iter()
            .find(|k| k.device_id == peer.device)
    }
}

fn seal_directory(dir: &Directory, key: &[u8; 32]) -> String {
    let json = Zeroizing::new(serde_json::to_vec(dir).expect("the directory serialises"));
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: &json,
                aad: DIRECTORY_AAD,
            },
        )
        .expect("XChaCha20-Poly1305 encrypts any in-memory buffer");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    STANDARD_NO_PAD.encode(out)
}

fn open_directory(b64: &str, key: &[u8; 32]) -> Result<Directory> {
    let bytes = STANDARD_NO_PAD
        .decode(b64)
        .map_err(|_| MessagingError::BadState("directory is not base64".into()))?;
    if bytes.len() < 24 + 16 {
        return Err(MessagingError::BadState("directory is too short".into()));
    }
    let (nonce, sealed) = bytes.split_at(24);
    let cipher = XChaCha20Poly1305::new(key.into());
    let json = Zeroizing::new(
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: DIRECTORY_AAD,
                },
            )
            .map_err(|_| MessagingError::WrongKey)?,
    );
    serde_json::from_slice(&json).map_err(|_| MessagingError::BadState("directory content".into()))
}

// ---------------------------------------------------------------------------
// Claims
// ---------------------------------------------------------------------------

/// One claim: the account's devices and a key to start a session with each.
struct Claim {
    account: AccountId,
    devices: Vec<(DeviceKeys, SignedOneTimeKey)>,
}

impl Claim {
    fn from_response(r: Claimed) -> Result<Self> {
        let mut devices = Vec::with_capacity(r.devices.len());
        for d in r.devices {
            if d.device_keys.device_id != d.device_id {
                return Err(MessagingError::Protocol(
                    "claimed device keys name another device".into(),
                ));
            }
            devices.push((d.device_keys, d.one_time_key));
        }
        Ok(Claim {
            account: r.account_id,
            devices,
        })
    }

    fn one_time_key(&self, device: DeviceId) -> Option<&SignedOneTimeKey> {
        self.devices
            .iter()
            .find(|(k, _)| k.device_id == device)
            .map(|(_, otk)| otk)
    }
}

/// Who a message is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    Phone(PhoneNumber),
    Account(AccountId),
}

/// The outcome of a send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub client_message_id: ClientMessageId,
    pub to_account: AccountId,
    /// Envelopes sent: the recipient's devices plus this account's other
    /// devices.
    pub devices: usize,
    /// The server had already accepted this message id (a retry).
    pub duplicate: bool,
}

/// What `listen` hands to its caller.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A decrypted message (a text or a read receipt).
    Message {
        envelope_id: EnvelopeId,
        from: PeerDevice,
        server_ts: Timestamp,
        plaintext: Plaintext,
    },
    /// The server's delivery receipt: `recipient_device` acked the envelope
    /// of `client_message_id`.
    Delivered {
        client_message_id: ClientMessageId,
        recipient_device: DeviceId,
        delivered_at: Timestamp,
    },
    /// An envelope that could not be decrypted (it is acked all the same,
    /// so it does not block the mailbox).
    Undecryptable {
        envelope_id: EnvelopeId,
        from: PeerDevice,
        code: &'static str,
    },
    /// The server reported an error on the stream.
    ServerError { code: String, message: String },
}

/// How `listen` receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket, long-poll when it fails.
    Auto,
    /// Long-poll only.
    LongPoll,
}

#[derive(Clone, Copy, Debug)]
pub struct ListenOptions {
    /// Stop after this long (`None`: until the handler stops).
    pub timeout: Option<Duration>,
    pub transport: Transport,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            timeout: None,
            transport: Transport::Auto,
        }
    }
}

/// Why `listen` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenEnd {
    /// The handler returned `ControlFlow::Break`.
    Stopped,
    /// The timeout passed.
    TimedOut,
}

// ---------------------------------------------------------------------------
// The device
// ---------------------------------------------------------------------------

/// One device's end-to-end state, bound to its state file.
pub struct Device {
    path: PathBuf,
    kdf: Kdf,
    key: Zeroizing<[u8; 32]>,
    account: AccountId,
    machine: E2eMachine,
    dir: Directory,
    /// Stamps `sent_at` on outgoing payloads.
    clock: Arc<dyn Clock>,
}

/// Prints ids and counts only.
impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("path", &self.path)
            .field("account", &self.account)
            .field("device", &self.machine.device_id())
            .field("known_accounts", &self.dir.accounts.len())
            .finish_non_exhaustive()
    }
}

/// An exclusive lock on `<state>.lock`, released on drop.
struct StateLock {
    _file: File,
}

impl Device {
    /// Creates the state of a new device (fresh identity keys, nothing
    /// published) and writes it. Fails if `path` exists.
    pub fn create(
        path: &Path,
        source: &KeySource,
        account: AccountId,
        device: DeviceId,
    ) -> Result<Device> {
        let _lock = lock(path)?;
        if path.exists() {
            return Err(MessagingError::StateExists(path.to_owned()));
        }
        let kdf = Kdf::fresh_for(source);
        let key = kdf.derive(source, path, true)?;
        let device = Device {
            path: path.to_owned(),
            kdf,
            key,
            account,
            machine: E2eMachine::new(device),
            dir: Directory::default(),
            clock: Arc::new(SystemClock),
        };
        device.save()?;
        Ok(device)
    }

    /// Opens an existing state file.
    pub fn open(path: &Path, source: &KeySource) -> Result<Device> {
        let _lock = lock(path)?;
        let file = read_state_file(path)?;
        let key = file.kdf.derive(source, path, false)?;
        let (machine, dir) = unseal(&file, &key)?;
        Ok(Device {
            path: path.to_owned(),
            kdf: file.kdf,
            key,
            account: file.account_id,
            machine,
            dir,
            clock: Arc::new(SystemClock),
        })
    }

    /// Opens the state of `device`, creating it when there is none.
    pub fn open_or_create(
        path: &Path,
        source: &KeySource,
        account: AccountId,
        device: DeviceId,
    ) -> Result<Device> {
        let d = if path.exists() {
            Device::open(path, source)?
        } else {
            Device::create(path, source, account, device)?
        };
        if d.account != account || d.machine.device_id() != device {
            return Err(MessagingError::OtherDevice);
        }
        Ok(d)
    }

    /// Uses `clock` (instead of the system clock) to stamp messages.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn account_id(&self) -> AccountId {
        self.account
    }

    pub fn device_id(&self) -> DeviceId {
        self.machine.device_id()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this device's keys are known to be in the key directory.
    pub fn is_published(&self) -> bool {
        self.dir.publication == Publication::Published
    }

    fn save(&self) -> Result<()> {
        let file = StateFile {
            format: STATE_FORMAT.to_owned(),
            kdf: self.kdf.clone(),
            account_id: self.account,
            device_id: self.machine.device_id(),
            machine: STANDARD_NO_PAD.encode(self.machine.pickle(&self.key)),
            directory: seal_directory(&self.dir, &self.key),
        };
        let json = serde_json::to_vec_pretty(&file).expect("the state file serialises");
        write_private_atomic(&self.path, &json)
    }

    /// Runs `f` on the current state under the file lock: reloads the state
    /// file first (another process may have changed it) and writes it back
    /// after.
    fn locked<T>(&mut self, f: impl FnOnce(&mut E2eMachine, &mut Directory) -> T) -> Result<T> {
        let _lock = lock(&self.path)?;
        let file = read_state_file(&self.path)?;
        if file.kdf != self.kdf
            || file.account_id != self.account
            || file.device_id != self.machine.device_id()
        {
            return Err(MessagingError::OtherDevice);
        }
        let (machine, dir) = unseal(&file, &self.key)?;
        self.machine = machine;
        self.dir = dir;
        let out = f(&mut self.machine, &mut self.dir);
        self.save()?;
        Ok(out)
    }

    // ---- keys -----------------------------------------------------------

    /// Publishes this device's identity keys, one-time keys and a fallback
    /// key, once. Does nothing when they are already published.
    pub async fn setup(&mut self, client: &Client) -> Result<KeyCount> {
        if self.is_published() {
            return self.key_count(client).await;
        }
        let keys = self.machine.device_keys();
        match client
            .request_raw(
                Method::PUT,
                "/v1/keys/device",
                Some(&serde_json::to_value(&keys).expect("keys serialise")),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some("device_keys_exist") => {
                return Err(MessagingError::DeviceKeysExist)
            }
            Err(e) => return Err(e.into()),
        }
        let target = self.one_time_key_target();
        let count = self.upload_keys(client, target, true).await?;
        self.locked(|_, dir| dir.publication = Publication::Published)?;
        Ok(count)
    }

    /// How many one-time keys the server should hold: half of what the
    /// account keeps, so that a claimed key's private half is never pushed
    /// out by newer ones before it is used.
    fn one_time_key_target(&self) -> usize {
        (self.machine.max_one_time_keys() / 2).max(1)
    }

    /// Generates (or reuses unpublished) keys, saves the state, uploads,
    /// then marks them published. The private halves are on disk before the
    /// public halves leave.
    async fn upload_keys(
        &mut self,
        client: &Client,
        count: usize,
        fallback: bool,
    ) -> Result<KeyCount> {
        let (otks, fb) = self.locked(|m, _| {
            let mut otks = m.one_time_keys();
            if otks.len() < count {
                otks = m.generate_one_time_keys(count - otks.len());
            }
            let fb = match (fallback, m.fallback_key()) {
                (false, _) => None,
                (true, Some(pending)) => Some(pending),
                (true, None) => Some(m.generate_fallback_key()),
            };
            (otks, fb)
        })?;
        let upload = OneTimeKeysUpload {
            one_time_keys: otks,
            fallback: fb,
        };
        let count: KeyCount = client
            .request(Method::POST, "/v1/keys/one-time", Some(&to_json(&upload)))
            .await?;
        self.locked(|m, _| m.mark_published())?;
        Ok(count)
    }

    pub async fn key_count(&self, client: &Client) -> Result<KeyCount> {
        Ok(client
            .request(Method::GET, "/v1/keys/one-time/count", None)
            .await?)
    }

    /// Uploads one-time keys when fewer than [`REPLENISH_BELOW`] are left,
    /// and a fallback key when there is none.
    pub async fn replenish(&mut self, client: &Client) -> Result<KeyCount> {
        let count = self.setup(client).await?;
        let target = self.one_time_key_target();
        let threshold = usize::try_from(REPLENISH_BELOW).map_or(target, |r| r.min(target));
        let remaining = usize::try_from(count.remaining).unwrap_or(usize::MAX);
        if remaining >= threshold && count.has_fallback {
            return Ok(count);
        }
        let wanted = target.saturating_sub(remaining).max(1);
        self.upload_keys(client, wanted, !count.has_fallback).await
    }

    // ---- sending --------------------------------------------------------

    /// Sends a text to every device of `to` and to this account's other
    /// devices. Returns the client message id.
    pub async fn send_text(&mut self, client: &Client, to: &Recipient, text: &str) -> Result<Sent> {
        self.send(
            client,
            to,
            PlaintextKind::Text {
                body: text.to_owned(),
            },
        )
        .await
    }

    /// Tells `to` (every device of it, and this account's other devices)
    /// that these messages were read: an end-to-end message.
    pub async fn send_read_receipt(
        &mut self,
        client: &Client,
        to: AccountId,
        read: Vec<ClientMessageId>,
    ) -> Result<Sent> {
        self.send(
            client,
            &Recipient::Account(to),
            PlaintextKind::ReadReceipt {
                client_message_ids: read,
            },
        )
        .await
    }

    /// Sends one payload with a fresh client message id.
    pub async fn send(
        &mut self,
        client: &Client,
        to: &Recipient,
        kind: PlaintextKind,
    ) -> Result<Sent> {
        let plaintext = Plaintext {
            client_message_id: ClientMessageId::random(),
            sent_at: self.clock.now(),
            kind,
        };
        self.send_plaintext(client, to, &plaintext).await
    }

    /// Sends `plaintext` under its own client message id; calling it again
    /// with the same id after a failure is safe (the server delivers once).
    pub async fn send_plaintext(
        &mut self,
        client: &Client,
        to: &Recipient,
        plaintext: &Plaintext,
    ) -> Result<Sent> {
        if !self.is_published() {
            self.setup(client).await?;
        }
        for attempt in 0..2 {
            let fresh = attempt > 0;
            let mut claims: Vec<Claim> = Vec::new();
            let to_account = match to {
                Recipient::Account(a) => *a,
                Recipient::Phone(p) => match self.dir.phones.get(p.e164()) {
                    Some(a) if !fresh => *a,
                    _ => {
                        let claim = self.claim(client, &ClaimRequest::phone(p.e164())).await?;
                        let account = claim.account;
                        claims.push(claim);
                        let e164 = p.e164().to_owned();
                        self.locked(|_, dir| {
                            dir.phones.insert(e164, account);
                        })?;
                        account
                    }
                },
            };
            let own = self.account;
            for account in [to_account, own] {
                if claims.iter().any(|c| c.account == account) {
                    continue;
                }
                if fresh || self.needs_claim(account) {
                    claims.push(self.claim(client, &ClaimRequest::account(account)).await?);
                }
            }

            let own_device = self.device_id();
            let envelopes = self.locked(|m, dir| -> Result<Vec<_>> {
                for c in &claims {
                    dir.accounts.insert(
                        c.account,
                        c.devices.iter().map(|(k, _)| k.clone()).collect(),
                    );
                }
                let mut out = Vec::new();
                let mut targets = vec![to_account];
                if own != to_account {
                    targets.push(own);
                }
                for account in targets {
                    let claim = claims.iter().find(|c| c.account == account);
                    for keys in dir.accounts.get(&account).into_iter().flatten() {
                        if keys.device_id == own_device {
                            continue;
                        }
                        let otk = claim.and_then(|c| c.one_time_key(keys.device_id));
                        out.push(m.encrypt_for(account, keys, otk, plaintext)?);
                    }
                }
                Ok(out)
            })??;
            if envelopes.is_empty() {
                return Err(MessagingError::NoDevices);
            }
            let devices = envelopes.len();
            let request = SendRequest::new(plaintext.client_message_id.clone(), envelopes)
                .map_err(|e: WireError| MessagingError::Protocol(e.to_string()))?;
            let body = SendMessage {
                to_account,
                send: request,
            };
            match client
                .request::<SendOutcome>(Method::POST, "/v1/messages", Some(&to_json(&body)))
                .await
            {
                Ok(outcome) => {
                    return Ok(Sent {
                        client_message_id: plaintext.client_message_id.clone(),
                        to_account,
                        devices,
                        duplicate: outcome.duplicate,
                    })
                }
                Err(e) if e.code() == Some("stale_devices") => {
                    if fresh {
                        return Err(MessagingError::StillStale);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(MessagingError::StillStale)
    }

    /// Whether sending to `account` needs a claim first: its device list is
    /// unknown, or a device of it has no session yet.
    fn needs_claim(&self, account: AccountId) -> bool {
        let own_device = self.device_id();
        match self.dir.accounts.get(&account) {
            None => true,
            Some(devices) => devices.iter().any(|k| {
                k.device_id != own_device
                    && !self.machine.has_session(&PeerDevice {
                        account,
                        device: k.device_id,
                    })
            }),
        }
    }

    async fn claim(&self, client: &Client, body: &ClaimRequest) -> Result<Claim> {
        let r: Claimed = client
            .request(Method::POST, "/v1/keys/claim", Some(&to_json(body)))
            .await?;
        Claim::from_response(r)
    }

    // ---- receiving ------------------------------------------------------

    /// Receives until `handler` breaks or the timeout passes: decrypts each
    /// envelope, saves the state, hands the event over, then acks. Reconnects
    /// with backoff; long-polls when the WebSocket fails.
    pub async fn listen<F>(
        &mut self,
        client: &Client,
        opts: ListenOptions,
        mut handler: F,
    ) -> Result<ListenEnd>
    where
        F: FnMut(Event) -> ControlFlow<()>,
    {
        let deadline = opts.timeout.map(|t| Instant::now() + t);
        self.replenish(client).await?;
        let mut backoff = Duration::from_millis(200);
        let mut ws_failures = 0u32;
        let mut polls = 0u32;
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(ListenEnd::TimedOut);
            }
            let use_ws = opts.transport == Transport::Auto
                && (ws_failures < WS_FAILURES_BEFORE_POLLING
                    || polls > 0 && polls.is_multiple_of(POLLS_BETWEEN_WS_TRIES));
            let outcome = if use_ws {
                match self.listen_ws(client, deadline, &mut handler).await {
                    Ok(r) => {
                        ws_failures = 0;
                        polls = 0;
                        Ok(r)
                    }
                    Err(Failure::Fatal(e)) => return Err(e),
                    Err(Failure::Retry) => {
                        ws_failures += 1;
                        if ws_failures >= WS_FAILURES_BEFORE_POLLING {
                            // Long-poll for a while before the next try.
                            polls = 0;
                        }
                        Err(())
                    }
                    Err(Failure::Unavailable) => {
                        ws_failures = WS_FAILURES_BEFORE_POLLING;
                        polls = 0;
                        Err(())
                    }
                }
            } else {
                polls += 1;
                match self.poll_once(client, deadline, &mut handler).await {
                    Ok(r) => Ok(r),
                    Err(Failure::Fatal(e)) => return Err(e),
                    Err(_) => Err(()),
                }
            };
            match outcome {
                Ok(Some(end)) => return Ok(end),
                Ok(None) => {
                    backoff = Duration::from_millis(200);
                    if use_ws {
                        // The server closed the stream: reconnect, not at once.
                        let pause = match deadline {
                            Some(d) => backoff.min(d.saturating_duration_since(Instant::now())),
                            None => backoff,
                        };
                        tokio::time::sleep(pause).await;
                    }
                }
                Err(()) => {
                    // Wait before the next attempt (a poll straight after a
                    // refused upgrade needs no wait).
                    if !(ws_failures == WS_FAILURES_BEFORE_POLLING && use_ws) {
                        let pause = match deadline {
                            Some(d) => backoff.min(d.saturating_duration_since(Instant::now())),
                            None => backoff,
                        };
                        tokio::time::sleep(pause).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
    }

    /// One WebSocket connection, until it closes (`Ok(None)`), the handler
    /// stops or the deadline passes.
    async fn listen_ws<F>(
        &mut self,
        client: &Client,
        deadline: Option<Instant>,
        handler: &mut F,
    ) -> std::result::Result<Option<ListenEnd>, Failure>
    where
        F: FnMut(Event) -> ControlFlow<()>,
    {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
        use tokio_tungstenite::tungstenite::{Error as WsError, Message};

        let url = ws_url(client.base()) + "/v1/stream";
        let mut request = url
            .into_client_request()
            .map_err(|_| Failure::Unavailable)?;
        if let Some(token) = &client.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| Failure::Unavailable)?;
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        let connect = tokio_tungstenite::connect_async(request);
        let connected = match deadline {
            Some(d) => match tokio::time::timeout_at(d, connect).await {
                Ok(r) => r,
                Err(_) => return Ok(Some(ListenEnd::TimedOut)),
            },
            None => connect.await,
        };
        let (ws, _) = match connected {
            Ok(c) => c,
            // The upgrade was refused (no stream here, or 401): the long-poll
            // either works or reports the server's own error.
            Err(WsError::Http(_)) => return Err(Failure::Unavailable),
            Err(_) => return Err(Failure::Retry),
        };
        let (mut sink, mut stream) = ws.split();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            let next = async {
                tokio::select! {
                    m = stream.next() => Some(m),
                    _ = ping.tick() => None,
                }
            };
            let item = match deadline {
                Some(d) => match tokio::time::timeout_at(d, next).await {
                    Ok(i) => i,
                    Err(_) => {
                        let _ = sink.close().await;
                        return Ok(Some(ListenEnd::TimedOut));
                    }
                },
                None => next.await,
            };
            let message = match item {
                None => {
                    let frame = serde_json::to_string(&ClientFrame::Ping).expect("frame");
                    sink.send(Message::text(frame))
                        .await
                        .map_err(|_| Failure::Retry)?;
                    continue;
                }
                Some(None) | Some(Some(Err(_))) => return Err(Failure::Retry),
                Some(Some(Ok(m))) => m,
            };
            let bytes: Vec<u8> = match message {
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Binary(b) => b.to_vec(),
                Message::Close(_) => return Ok(None),
                _ => continue,
            };
            let frame = match accord_e2e::decode_server_frame(&bytes) {
                Ok(f) => f,
                Err(e) => {
                    return Err(Failure::Fatal(MessagingError::Protocol(format!(
                        "bad frame from the server: {e}"
                    ))))
                }
            };
            let (acks, flow) = self
                .handle_frames(client, vec![frame], handler)
                .await
                .map_err(Failure::Fatal)?;
            if !acks.is_empty() {
                let frame =
                    serde_json::to_string(&ClientFrame::Ack { envelope_ids: acks }).expect("frame");
                sink.send(Message::text(frame))
                    .await
                    .map_err(|_| Failure::Retry)?;
            }
            if flow.is_break() {
                // Acks commit in the background: wait for the pong that
                // follows them, so the next listen does not get these
                // envelopes again. Frames that come first are not handled
                // (not acked): they stay queued for the next listen.
                let frame = serde_json::to_string(&ClientFrame::Ping).expect("frame");
                if sink.send(Message::text(frame)).await.is_ok() {
                    let pong = async {
                        while let Some(Ok(m)) = stream.next().await {
                            let bytes: Vec<u8> = match m {
                                Message::Text(t) => t.as_bytes().to_vec(),
                                Message::Binary(b) => b.to_vec(),
                                _ => continue,
                            };
                            if matches!(
                                accord_e2e::decode_server_frame(&bytes),
                                Ok(ServerFrame::Pong)
                            ) {
                                return;
                            }
                        }
                    };
                    let _ = tokio::time::timeout(ACK_BARRIER_WAIT, pong).await;
                }
                let _ = sink.close().await;
                return Ok(Some(ListenEnd::Stopped));
            }
        }
    }

    /// One long-poll and its ack.
    async fn poll_once<F>(
        &mut self,
        client: &Client,
        deadline: Option<Instant>,
        handler: &mut F,
    ) -> std::result::Result<Option<ListenEnd>, Failure>
    where
        F: FnMut(Event) -> ControlFlow<()>,
    {
        let wait = match deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .min(MAX_POLL_WAIT),
            None => MAX_POLL_WAIT,
        };
        let frames: Vec<ServerFrame> = match client
            .request(
                Method::GET,
                // Whole seconds, rounded up: a wait of 0 would spin.
                &format!(
                    "/v1/messages?wait_s={}",
                    wait.as_millis().div_ceil(1000).max(1)
                ),
                None,
            )
            .await
        {
            Ok(f) => f,
            Err(e @ ClientError::Api { status, .. })
                if (400..500).contains(&status) && status != 429 =>
            {
                return Err(Failure::Fatal(e.into()))
            }
            Err(_) => return Err(Failure::Retry),
        };
        let (acks, flow) = self
            .handle_frames(client, frames, handler)
            .await
            .map_err(Failure::Fatal)?;
        if !acks.is_empty() {
            client
                .request::<AckResponse>(
                    Method::POST,
                    "/v1/messages/ack",
                    Some(&to_json(&AckRequest { ids: acks })),
                )
                .await
                .map_err(|_| Failure::Retry)?;
        }
        if flow.is_break() {
            return Ok(Some(ListenEnd::Stopped));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Some(ListenEnd::TimedOut));
        }
        Ok(None)
    }

    /// Decrypts and hands over frames in order, until the handler breaks.
    /// Returns the envelope ids to ack (those handled).
    async fn handle_frames<F>(
        &mut self,
        client: &Client,
        frames: Vec<ServerFrame>,
        handler: &mut F,
    ) -> Result<(Vec<EnvelopeId>, ControlFlow<()>)>
    where
        F: FnMut(Event) -> ControlFlow<()>,
    {
        let mut acks = Vec::new();
        let mut used_one_time_key = false;
        let mut flow = ControlFlow::Continue(());
        for frame in frames {
            let event = match frame {
                ServerFrame::Envelope(env) => {
                    used_one_time_key |= env.message_type == accord_e2e::OlmMessageType::PreKey;
                    acks.push(env.id);
                    match self.decrypt_envelope(client, &env).await? {
                        Some(event) => event,
                        None => continue,
                    }
                }
                ServerFrame::Receipt {
                    id,
                    client_message_id,
                    recipient_device,
                    delivered_at,
                } => {
                    // Acked whatever happens: the server keeps it until then.
                    acks.push(id);
                    // A receipt of this device's own ack, or one already
                    // reported, says nothing new.
                    if recipient_device == self.device_id() {
                        continue;
                    }
                    let key = (client_message_id, recipient_device);
                    let new = self.locked(|_, dir| {
                        if dir.seen_receipts.contains(&key) {
                            return false;
                        }
                        if dir.seen_receipts.len() >= MAX_SEEN_RECEIPTS {
                            dir.seen_receipts.pop_front();
                        }
                        dir.seen_receipts.push_back(key.clone());
                        true
                    })?;
                    if !new {
                        continue;
                    }
                    Event::Delivered {
                        client_message_id: key.0,
                        recipient_device,
                        delivered_at,
                    }
                }
                ServerFrame::Pong => continue,
                ServerFrame::Error { code, message } => Event::ServerError { code, message },
            };
            flow = handler(event);
            if flow.is_break() {
                break;
            }
        }
        if used_one_time_key {
            // Best effort: the next batch tries again.
            let _ = self.replenish(client).await;
        }
        Ok((acks, flow))
    }

    async fn decrypt_envelope(
        &mut self,
        client: &Client,
        env: &DeliveredEnvelope,
    ) -> Result<Option<Event>> {
        if self.dir.last_envelope.is_some_and(|last| env.id <= last) {
            return Ok(None);
        }
        let from = PeerDevice {
            account: env.sender_account,
            device: env.sender_device,
        };
        if self.dir.keys_of(&from).is_none() {
            // A device we have not seen: learn its keys from the directory.
            match self
                .claim(client, &ClaimRequest::account(from.account))
                .await
            {
                Ok(claim) => {
                    let devices: Vec<DeviceKeys> =
                        claim.devices.into_iter().map(|(k, _)| k).collect();
                    self.locked(|_, dir| {
                        dir.accounts.insert(claim.account, devices);
                    })?;
                }
                Err(MessagingError::Client(e)) if e.status().is_some() => {}
                Err(e) => return Err(e),
            }
        }
        let result = self.locked(|m, dir| {
            // Checked again under the lock: another process may have
            // handled it meanwhile.
            if dir.last_envelope.is_some_and(|last| env.id <= last) {
                return None;
            }
            dir.last_envelope = Some(env.id);
            Some(match dir.keys_of(&from) {
                None => Err(E2eError::NoSession),
                Some(keys) => {
                    let curve = keys.curve25519;
                    m.decrypt_delivered(&curve, env)
                }
            })
        })?;
        let Some(result) = result else {
            return Ok(None);
        };
        Ok(Some(match result {
            Ok(plaintext) => Event::Message {
                envelope_id: env.id,
                from,
                server_ts: env.server_ts,
                plaintext,
            },
            Err(e) => Event::Undecryptable {
                envelope_id: env.id,
                from,
                code: e.code(),
            },
        }))
    }
}

/// How one connection attempt failed.
enum Failure {
    /// Transient: try again after a pause.
    Retry,
    /// The server does not offer the WebSocket: long-poll.
    Unavailable,
    /// Stop listening with this error.
    Fatal(MessagingError),
}

fn ws_url(base: &str) -> String {
    if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    }
}

fn lock(path: &Path) -> Result<StateLock> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let f = opts.open(sibling(path, ".lock")).map_err(io)?;
    f.lock().map_err(io)?;
    Ok(StateLock { _file: f })
}

fn read_state_file(path: &Path) -> Result<StateFile> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(MessagingError::NoState(path.to_owned()))
        }
        Err(e) => return Err(io(e)),
    };
    let file: StateFile =
        serde_json::from_slice(&bytes).map_err(|e| MessagingError::BadState(e.to_string()))?;
    if file.format != STATE_FORMAT {
        return Err(MessagingError::BadState(format!(
            "unknown format {:?}",
            file.format
        )));
    }
    Ok(file)
}

fn unseal(file: &StateFile, key: &[u8; 32]) -> Result<(E2eMachine, Directory)> {
    let sealed = STANDARD_NO_PAD
        .decode(&file.machine)
        .map_err(|_| MessagingError::BadState("machine is not base64".into()))?;
    let machine = E2eMachine::from_pickle(&sealed, key).map_err(|e| match e {
        E2eError::Pickle(PickleError::WrongKeyOrCorrupt) => MessagingError::WrongKey,
        other => MessagingError::E2e(other),
    })?;
    if machine.device_id() != file.device_id {
        return Err(MessagingError::BadState("device id does not match".into()));
    }
    let dir = open_directory(&file.directory, key)?;
    Ok((machine, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn passphrase(dir: &Path, text: &str) -> KeySource {
        let p = dir.join("pass");
        std::fs::write(&p, text).unwrap();
        KeySource::PassphraseFile(p)
    }

    #[test]
    fn state_round_trips_with_a_passphrase_and_a_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let (account, device) = (AccountId::random(), DeviceId::random());
        for source in [
            passphrase(dir.path(), "correct horse battery staple\n"),
            KeySource::KeyFile(dir.path().join("key")),
        ] {
            let path = dir
                .path()
                .join(format!("state-{}", matches!(source, KeySource::KeyFile(_))));
            let mut d = Device::create(&path, &source, account, device).unwrap();
            let keys = d.machine.device_keys();
            let peer = AccountId::random();
            let pk = keys.clone();
            d.locked(|m, dir| {
                m.generate_one_time_keys(3);
                dir.accounts.insert(peer, vec![pk]);
                dir.phones.insert("+6281234567890".into(), peer);
                dir.publication = Publication::Published;
            })
            .unwrap();
            let unpublished = d.machine.one_time_keys();

            let again = Device::open(&path, &source).unwrap();
            assert_eq!(again.account_id(), account);
            assert_eq!(again.device_id(), device);
            assert_eq!(again.machine.device_keys(), keys);
            assert_eq!(again.machine.one_time_keys(), unpublished);
            assert!(again.is_published());
            assert_eq!(again.dir.phones.get("+6281234567890"), Some(&peer));
            assert_eq!(again.dir.accounts[&peer].len(), 1);

            // open_or_create refuses another device's state.
            assert!(matches!(
                Device::open_or_create(&path, &source, account, DeviceId::random()),
                Err(MessagingError::OtherDevice)
            ));
            // create refuses to overwrite.
            assert!(matches!(
                Device::create(&path, &source, account, device),
                Err(MessagingError::StateExists(_))
            ));
        }
        // The key file was created owner-only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in ["key", "state-true"] {
                let mode = std::fs::metadata(dir.path().join(f))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
        }
    }

    #[test]
    fn wrong_passphrase_or_key_or_source_kind_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let good = passphrase(dir.path(), "right");
        Device::create(&path, &good, AccountId::random(), DeviceId::random()).unwrap();
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "wrong").unwrap();
        assert!(matches!(
            Device::open(&path, &KeySource::PassphraseFile(bad)),
            Err(MessagingError::WrongKey)
        ));
        assert!(matches!(
            Device::open(&path, &KeySource::KeyFile(dir.path().join("k"))),
            Err(MessagingError::KeySourceMismatch(_))
        ));
        assert!(Device::open(&path, &good).is_ok());

        let path2 = dir.path().join("state2");
        let kf = KeySource::KeyFile(dir.path().join("k2"));
        Device::create(&path2, &kf, AccountId::random(), DeviceId::random()).unwrap();
        let other = dir.path().join("k3");
        std::fs::write(&other, format!("{}\n", STANDARD_NO_PAD.encode([9u8; 32]))).unwrap();
        assert!(matches!(
            Device::open(&path2, &KeySource::KeyFile(other)),
            Err(MessagingError::WrongKey)
        ));
        // A missing key file is not created for an existing state.
        assert!(matches!(
            Device::open(&path2, &KeySource::KeyFile(dir.path().join("nope"))),
            Err(MessagingError::KeySource(_))
        ));
        assert!(matches!(
            Device::open(&dir.path().join("missing"), &kf),
            Err(MessagingError::NoState(_))
        ));
    }

    #[test]
    fn no_plaintext_pickle_directory_or_passphrase_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let phrase = "a-very-distinctive-passphrase-4c1d";
        let source = passphrase(dir.path(), phrase);
        let mut d =
            Device::create(&path, &source, AccountId::random(), DeviceId::random()).unwrap();
        let peer = AccountId::random();
        let phone = "+6281299998888";
        d.locked(|m, dir| {
            m.generate_one_time_keys(5);
            m.generate_fallback_key();
            dir.phones.insert(phone.into(), peer);
        })
        .unwrap();
        let mut files = vec![];
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let p = entry.unwrap().path();
            if p.file_name().unwrap() != "pass" {
                files.push(std::fs::read(&p).unwrap());
            }
        }
        assert!(!files.is_empty());
        for bytes in &files {
            for needle in [
                phrase,
                phone,
                &peer.to_string(),
                "signing_key",
                "diffie_hellman_key",
                "one_time_keys",
                "publication",
            ] {
                assert!(!contains(bytes, needle.as_bytes()), "{needle} on disk");
            }
        }
        // No temporary file is left behind.
        assert!(!sibling(&path, ".tmp").exists());
    }

    #[test]
    fn two_handles_on_one_state_file_do_not_overwrite_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let source = KeySource::KeyFile(dir.path().join("key"));
        let (account, device) = (AccountId::random(), DeviceId::random());
        // As `listen` and `send` in two processes of the same device.
        let mut listening = Device::create(&path, &source, account, device).unwrap();
        let mut sending = Device::open(&path, &source).unwrap();
        let (a, b) = (AccountId::random(), AccountId::random());
        listening
            .locked(|_, dir| {
                dir.phones.insert("+6281200000001".into(), a);
            })
            .unwrap();
        sending
            .locked(|_, dir| {
                dir.phones.insert("+6281200000002".into(), b);
            })
            .unwrap();
        let both = Device::open(&path, &source).unwrap();
        assert_eq!(both.dir.phones.len(), 2, "an update was lost");
    }

    #[test]
    fn ws_url_follows_the_scheme() {
        assert_eq!(ws_url("http://127.0.0.1:8080"), "ws://127.0.0.1:8080");
        assert_eq!(ws_url("https://m.example"), "wss://m.example");
    }
}
