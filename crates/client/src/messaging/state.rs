//! The sealed state file: public metadata (format, key derivation,
//! account and device ids) in clear, the machine's pickle and the
//! [`Directory`] each sealed with XChaCha20-Poly1305; written atomically
//! (temporary file, fsync, rename) with mode 0600, under an exclusive
//! lock on `<state>.lock`.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use accord_domain::{AccountId, DeviceId};
use accord_e2e::{
    ClientMessageId, DeviceKeys, E2eError, E2eMachine, EnvelopeId, PeerDevice, PickleError,
};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::{io, MessagingError, Result};
use super::key_source::Kdf;

/// The state file's format name and version.
pub(super) const STATE_FORMAT: &str = "accord-device-state/1";
/// Associated data of the sealed directory (the machine's pickle has its own).
const DIRECTORY_AAD: &[u8] = b"accord-device-directory/1";

/// Writes `bytes` to `path` readable by its owner only: a temporary file
/// beside it, fsync, rename.
pub(super) fn write_private_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
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

pub(super) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The state file: public metadata in clear, the rest sealed.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StateFile {
    pub(super) format: String,
    pub(super) kdf: Kdf,
    pub(super) account_id: AccountId,
    pub(super) device_id: DeviceId,
    /// The machine's sealed pickle, base64.
    pub(super) machine: String,
    /// The sealed [`Directory`], base64.
    pub(super) directory: String,
}

/// Whether this device's keys are in the server's directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Publication {
    #[default]
    Unpublished,
    Published,
}

/// What a device remembers about others. Sealed at rest: who one writes to
/// is private.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Directory {
    pub(super) publication: Publication,
    /// The device list of each account as last claimed (own account too).
    pub(super) accounts: BTreeMap<AccountId, Vec<DeviceKeys>>,
    /// E.164 number → account, for the numbers written to.
    pub(super) phones: BTreeMap<String, AccountId>,
    /// The delivery receipts already handed to the caller, newest last
    /// (at most [`MAX_SEEN_RECEIPTS`]): the server may push one again.
    #[serde(default)]
    pub(super) seen_receipts: VecDeque<(ClientMessageId, DeviceId)>,
    /// The newest envelope handled (ids grow within a mailbox): one pushed
    /// again because its ack was lost is acked without being handed over
    /// twice (its message keys are used up anyway).
    #[serde(default)]
    pub(super) last_envelope: Option<EnvelopeId>,
    /// Key transparency: the pinned directory keys, peers' proven lists
    /// and whether they are verified, this account's accepted devices.
    #[serde(default)]
    pub(super) kt: super::trust::TrustState,
    /// The messenger's log key (hex), pinned the first time a business
    /// template was checked: template bodies are signed with it.
    #[serde(default)]
    pub(super) log_key: Option<String>,
}

impl Directory {
    pub(super) fn keys_of(&self, peer: &PeerDevice) -> Option<&DeviceKeys> {
        self.accounts
            .get(&peer.account)?
            .iter()
            .find(|k| k.device_id == peer.device)
    }
}

pub(super) fn seal_directory(dir: &Directory, key: &[u8; 32]) -> String {
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

/// An exclusive lock on `<state>.lock`, released on drop.
pub(super) struct StateLock {
    _file: File,
}

pub(super) fn lock(path: &Path) -> Result<StateLock> {
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

pub(super) fn read_state_file(path: &Path) -> Result<StateFile> {
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

pub(super) fn unseal(file: &StateFile, key: &[u8; 32]) -> Result<(E2eMachine, Directory)> {
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
    use crate::messaging::{Device, KeySource};

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
}
