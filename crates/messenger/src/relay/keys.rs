//! The key directory: each device's identity keys, its one-time and
//! fallback keys, and claims (one one-time key of every device of an
//! account, to start sessions with).

use super::{Relay, RelayError};
use accord_domain::{AccountId, DeviceId, PhoneNumber};
use accord_e2e::{
    decode_device_keys, decode_one_time_key, DeviceKeys, SignedOneTimeKey, WireError,
};
use accord_messenger_wire::{DeviceList, DirectoryDevice};
use accord_storage::mailbox::PutDeviceKeys;
use accord_storage::StoreError;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

/// The key directory's answers, as they cross the wire.
pub use accord_messenger_wire::{Claimed, ClaimedDevice, KeyCount};

/// Whom to claim keys of.
#[derive(Clone, Debug)]
pub enum ClaimTarget {
    Phone(PhoneNumber),
    Account(AccountId),
}

impl Relay {
    pub async fn put_device_keys(
        &self,
        account: AccountId,
        device: DeviceId,
        keys: DeviceKeys,
    ) -> Result<(), RelayError> {
        if keys.device_id != device {
            return Err(RelayError::DeviceMismatch);
        }
        keys.verify().map_err(|_| RelayError::InvalidSignature)?;
        let json = String::from_utf8(accord_e2e::encode(&keys)).expect("JSON is UTF-8");
        match self
            .inner
            .store
            .put_device_keys(account, device, &json, self.now())
            .await?
        {
            PutDeviceKeys::Stored | PutDeviceKeys::Identical => {
                self.inner.devices.remove(&account);
                // Also after `Identical`: a retry after a failed
                // publication publishes now (unchanged values are skipped).
                self.publish_accounts(&[account]).await
            }
            PutDeviceKeys::Conflict => Err(RelayError::DeviceKeysExist),
        }
    }

    async fn stored_keys(&self, device: DeviceId) -> Result<Option<DeviceKeys>, RelayError> {
        match self.inner.store.device_keys(device).await? {
            None => Ok(None),
            Some(json) => {
                Ok(Some(decode_device_keys(json.as_bytes()).map_err(|_| {
                    StoreError::Corrupt("stored device keys".into())
                })?))
            }
        }
    }

    pub async fn upload_one_time_keys(
        &self,
        device: DeviceId,
        keys: Vec<SignedOneTimeKey>,
        fallback: Option<SignedOneTimeKey>,
    ) -> Result<KeyCount, RelayError> {
        if keys.len() > accord_e2e::wire::MAX_ONE_TIME_KEYS_PER_UPLOAD {
            return Err(WireError::TooMany {
                field: "one_time_keys",
                limit: accord_e2e::wire::MAX_ONE_TIME_KEYS_PER_UPLOAD,
                actual: keys.len(),
            }
            .into());
        }
        let mut ids = BTreeSet::new();
        if !keys.iter().all(|k| ids.insert(k.key_id.clone())) {
            return Err(WireError::Duplicate {
                field: "one_time_keys",
            }
            .into());
        }
        if keys.iter().any(|k| k.fallback) || fallback.as_ref().is_some_and(|f| !f.fallback) {
            return Err(RelayError::BadRequest(
                "one_time_keys must have `fallback: false` and the fallback key `fallback: true`"
                    .into(),
            ));
        }
        let own = self
            .stored_keys(device)
            .await?
            .ok_or(RelayError::NoDeviceKeys)?;
        for k in keys.iter().chain(fallback.iter()) {
            k.verify(device, &own.ed25519)
                .map_err(|_| RelayError::InvalidSignature)?;
        }
        let enc = |k: &SignedOneTimeKey| String::from_utf8(accord_e2e::encode(k)).expect("UTF-8");
        let rows: Vec<(String, String)> = keys
            .iter()
            .map(|k| (k.key_id.as_str().to_owned(), enc(k)))
            .collect();
        let fb = fallback.as_ref().map(enc);
        let (remaining, has_fallback) = self
            .inner
            .store
            .add_one_time_keys(
                device,
                &rows,
                fb.as_deref(),
                self.inner.config.max_one_time_keys,
            )
            .await?;
        Ok(KeyCount {
            remaining,
            has_fallback,
        })
    }

    pub async fn key_count(&self, device: DeviceId) -> Result<KeyCount, RelayError> {
        let (remaining, has_fallback) = self.inner.store.one_time_key_count(device).await?;
        Ok(KeyCount {
            remaining,
            has_fallback,
        })
    }

    /// The devices with keys of `account` that still exist, cached
    /// briefly; `None` if there is no such account.
    pub(crate) async fn devices_of(
        &self,
        account: AccountId,
    ) -> Result<Option<Arc<Vec<DeviceId>>>, RelayError> {
        if let Some(d) = self.inner.devices.get(&account) {
            return Ok(d);
        }
        if self.inner.accounts.account(account).await?.is_none() {
            self.inner.devices.put(account, None);
            return Ok(None);
        }
        Ok(Some(
            self.live_device_keys(account)
                .await?
                .iter()
                .map(|(d, _)| *d)
                .collect::<Vec<_>>()
                .into(),
        ))
    }

    /// The identity keys of `account`'s devices that exist and have keys
    /// (an account known to exist), read afresh; refreshes the cache of
    /// [`Relay::devices_of`]. Two reads instead of one per device.
    async fn live_device_keys(
        &self,
        account: AccountId,
    ) -> Result<Vec<(DeviceId, DeviceKeys)>, RelayError> {
        let live: HashSet<DeviceId> = self
            .inner
            .accounts
            .devices(account)
            .await?
            .into_iter()
            .map(|d| d.id)
            .collect();
        let mut with_keys = Vec::new();
        for (d, json) in self.inner.store.account_device_keys(account).await? {
            if live.contains(&d) {
                let keys = decode_device_keys(json.as_bytes())
                    .map_err(|_| StoreError::Corrupt("stored device keys".into()))?;
                with_keys.push((d, keys));
            }
        }
        let ids: Vec<DeviceId> = with_keys.iter().map(|(d, _)| *d).collect();
        self.inner.devices.put(account, Some(Arc::new(ids)));
        Ok(with_keys)
    }

    /// The device list the key directory should hold for `account`: its
    /// devices that exist and have identity keys, read afresh (empty for
    /// a deleted account).
    pub async fn directory_value(&self, account: AccountId) -> Result<DeviceList, RelayError> {
        self.inner.devices.remove(&account);
        let mut out = Vec::new();
        for d in self.devices_of(account).await?.unwrap_or_default().iter() {
            if let Some(k) = self.stored_keys(*d).await? {
                out.push(DirectoryDevice {
                    device_id: *d,
                    ed25519: *k.ed25519.as_bytes(),
                    curve25519: k.curve25519.to_bytes(),
                });
            }
        }
        Ok(DeviceList::new(out))
    }

    /// Publishes the current device lists of `accounts` into the key
    /// directory (one epoch; nothing when none changed or no directory is
    /// attached).
    pub async fn publish_accounts(&self, accounts: &[AccountId]) -> Result<(), RelayError> {
        let Some(kt) = self.inner.kt.get() else {
            return Ok(());
        };
        let mut updates = Vec::with_capacity(accounts.len());
        for a in accounts {
            updates.push((*a, self.directory_value(*a).await?));
        }
        kt.publish(updates).await?;
        Ok(())
    }

    pub async fn claim(
        &self,
        requester: DeviceId,
        target: ClaimTarget,
    ) -> Result<Claimed, RelayError> {
        self.inner
            .claim_limits
            .take(&requester)
            .map_err(|retry_after_s| RelayError::RateLimited { retry_after_s })?;
        let account = self.claim_target(target).await?;
        self.claim_devices(account).await
    }

    /// The account a claim names (`NotFound`: no such account).
    pub async fn claim_target(&self, target: ClaimTarget) -> Result<AccountId, RelayError> {
        Ok(match target {
            ClaimTarget::Account(a) => self.inner.accounts.account(a).await?,
            ClaimTarget::Phone(p) => self.inner.accounts.account_by_phone(&p).await?,
        }
        .ok_or(RelayError::NotFound)?
        .id)
    }

    /// One key per device of `account` (an account that exists), and the
    /// directory's proof, without the per-device claim limit: also a
    /// business's claims, which its API limits (and restricts to users who
    /// opted in to it or wrote to it) instead.
    pub(crate) async fn claim_devices(&self, account: AccountId) -> Result<Claimed, RelayError> {
        let mut devices = Vec::new();
        for (d, keys) in self.live_device_keys(account).await? {
            let d = &d;
            let claimed = self
                .inner
                .claimer
                .claim(*d)
                .await
                .map_err(|e| StoreError::WriteFailed(format!("one-time key claim: {e}")))?;
            let Some((json, _)) = claimed else {
                continue;
            };
            let otk = decode_one_time_key(json.as_bytes())
                .map_err(|_| StoreError::Corrupt("stored one-time key".into()))?;
            devices.push(ClaimedDevice {
                device_id: *d,
                device_keys: keys,
                one_time_key: otk,
            });
        }
        // The proof of what the directory holds for the account: the
        // client checks every device above against it.
        let kt = match self.inner.kt.get() {
            None => None,
            Some(kt) => match kt.lookup(account).await {
                Ok(l) => Some(l),
                Err(crate::kt::KtError::NotFound) => None,
                Err(e) => return Err(e.into()),
            },
        };
        Ok(Claimed {
            account_id: account,
            devices,
            kt,
        })
    }
}
