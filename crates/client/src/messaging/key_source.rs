//! Where the key that seals a device's state comes from: a passphrase
//! file (Argon2id, salt and parameters in the state file), a key file
//! (created on first use, mode 0600), or a random key in the OS keyring.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::OsRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::{MessagingError, Result};
use super::state::write_private_atomic;

/// Argon2id parameters for a passphrase (OWASP's minimum: 19 MiB, 2 passes).
const ARGON2_M_KIB: u32 = 19 * 1024;
const ARGON2_T: u32 = 2;
const ARGON2_P: u32 = 1;

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

/// How the state's key was made, kept (without secrets) in the state file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum Kdf {
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
    pub(super) fn fresh_for(source: &KeySource) -> Kdf {
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
    pub(super) fn derive(
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
