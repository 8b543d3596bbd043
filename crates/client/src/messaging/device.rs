//! A device: its state bound to the state file (create, open, the
//! locked read-modify-write of every change), and the publication of its
//! identity, one-time and fallback keys.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use accord_domain::{AccountId, Clock, DeviceId, SystemClock};
use accord_e2e::E2eMachine;
use accord_messenger_wire::{KeyCount, OneTimeKeysUpload};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use reqwest::Method;
use zeroize::Zeroizing;

use super::error::{MessagingError, Result};
use super::key_source::{Kdf, KeySource};
use super::send::EmptyClaims;
use super::state::{
    lock, read_state_file, seal_directory, unseal, write_private_atomic, Directory, Publication,
    StateFile, STATE_FORMAT,
};
use crate::{to_json, Client};

/// Replenish one-time keys when the directory holds fewer than this.
pub const REPLENISH_BELOW: u32 = 20;

/// One device's end-to-end state, bound to its state file.
pub struct Device {
    pub(super) path: PathBuf,
    pub(super) kdf: Kdf,
    pub(super) key: Zeroizing<[u8; 32]>,
    pub(super) account: AccountId,
    pub(super) machine: E2eMachine,
    pub(super) dir: Directory,
    /// Stamps `sent_at` on outgoing payloads, and times the backoff of
    /// claims that found no device.
    pub(super) clock: Arc<dyn Clock>,
    /// The accounts whose last claim found no device, and when to ask
    /// again (in memory only: see `send`).
    pub(super) empty_claims: HashMap<AccountId, EmptyClaims>,
    /// Held by [`Device::hold`]: this process alone owns the state, keeps
    /// it in memory and writes it on [`Device::flush`] (and on drop).
    pub(super) held: Option<super::state::StateLock>,
    /// Changes not yet written (only while held).
    pub(super) dirty: bool,
}

/// A held device writes what it has not written yet.
impl Drop for Device {
    fn drop(&mut self) {
        if self.held.is_some() && self.dirty {
            let _ = self.save();
        }
    }
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
            empty_claims: HashMap::new(),
            held: None,
            dirty: false,
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
            empty_claims: HashMap::new(),
            held: None,
            dirty: false,
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

    pub(super) fn save(&self) -> Result<()> {
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

    /// Takes the state for this process alone (a long-running sender such
    /// as a business agent): the file lock is held until the device is
    /// dropped, the state is re-read once, and from then on changes stay in
    /// memory until [`Device::flush`] (or drop) writes them. Each change
    /// then costs no file read and write. What a crash loses: the outbound
    /// sessions since the last flush (the next message to those devices
    /// claims a key and starts a new session; what was sent is already
    /// decryptable by its recipients).
    pub fn hold(&mut self) -> Result<()> {
        if self.held.is_some() {
            return Ok(());
        }
        let guard = lock(&self.path)?;
        let file = read_state_file(&self.path)?;
        let (machine, dir) = unseal(&file, &self.key)?;
        self.machine = machine;
        self.dir = dir;
        self.held = Some(guard);
        Ok(())
    }

    /// Writes a held device's changes (nothing when none).
    pub fn flush(&mut self) -> Result<()> {
        if self.dirty {
            self.save()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Runs `f` on the current state under the file lock: reloads the state
    /// file first (another process may have changed it) and writes it back
    /// after. A held device changes its state in memory only.
    pub(super) fn locked<T>(
        &mut self,
        f: impl FnOnce(&mut E2eMachine, &mut Directory) -> T,
    ) -> Result<T> {
        if self.held.is_some() {
            self.dirty = true;
            return Ok(f(&mut self.machine, &mut self.dir));
        }
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
        // Pin the key directory's keys now, while this device is new (trust
        // on first use; later claims are checked against them).
        self.directory_keys(client).await?;
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
}
