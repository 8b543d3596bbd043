//! The key service's use cases, independent of HTTP.
//!
//! [`KeyService`] holds the opened OPRF keys in memory (behind `Arc`s,
//! zeroised on drop), the master key that seals them, the store and the
//! clock. It is cheap to clone and shared by the HTTP handlers and
//! [`InProcessOprf`](crate::InProcessOprf).

use crate::error::KeydError;
use crate::eval::Pool;
use crate::master_key::load_or_create_master_key;
use accord_crypto::oprf::{BlindedElementBytes, KeyVersion, OprfPurpose, OprfSecretKey, MAX_BATCH};
use accord_crypto::sealed::MasterKey;
use accord_crypto::token::{BearerToken, TokenHash};
use accord_domain::{Clock, Timestamp};
use accord_storage::keyd::{
    ChargeError, Client, ClientId, ClientKind, DailyUsage, KeyStore, NewClient, SqlKeyStore,
    StoredKey, MAX_QUOTA,
};
use accord_storage::{Db, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// Tunables, with defaults for local use.
#[derive(Clone, Debug)]
pub struct KeydConfig {
    /// Daily quotas given to a new client of each kind for the purposes
    /// its creation does not name. A purpose missing here gets 0, which
    /// forbids it.
    pub default_quotas: BTreeMap<(ClientKind, OprfPurpose), u64>,
    /// Threads evaluating at once (default: every core).
    pub workers: usize,
    /// Batches smaller than this are not split across threads.
    pub min_chunk: usize,
}

impl Default for KeydConfig {
    fn default() -> Self {
        use ClientKind::*;
        use OprfPurpose::*;
        KeydConfig {
            default_quotas: BTreeMap::from([
                ((Messenger, Coordination), 10_000_000),
                ((Messenger, Contacts), 10_000_000),
                ((Partner, Coordination), 10_000_000),
                ((Business, Coordination), 100_000),
                // Issue 3: new contacts per device per day.
                ((Device, Contacts), 1_000),
            ]),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            min_chunk: 256,
        }
    }
}

pub use accord_keyd_client::{Evaluated, KeyVersions};

#[derive(Default)]
struct KeyRing {
    keys: HashMap<(OprfPurpose, KeyVersion), Arc<OprfSecretKey>>,
    active: HashMap<OprfPurpose, KeyVersion>,
}

struct Inner {
    store: Arc<dyn KeyStore>,
    clock: Arc<dyn Clock>,
    master: MasterKey,
    ring: RwLock<KeyRing>,
    pool: Pool,
    config: KeydConfig,
}

/// The key service. Clones share everything.
#[derive(Clone)]
pub struct KeyService {
    inner: Arc<Inner>,
}

impl fmt::Debug for KeyService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyService")
            .field("store", &self.inner.store)
            .field("keys", &"<redacted>")
            .field("workers", &self.inner.pool.workers())
            .finish()
    }
}

impl KeyService {
    /// Opens the service over `store`: opens every stored key with
    /// `master` and creates (generates, seals, stores) version 1 of every
    /// purpose that has none. Fails if `master` does not open a stored key.
    pub async fn open(
        store: Arc<dyn KeyStore>,
        master: MasterKey,
        clock: Arc<dyn Clock>,
        config: KeydConfig,
    ) -> Result<Self, KeydError> {
        let pool = Pool::new(config.workers, config.min_chunk);
        let svc = KeyService {
            inner: Arc::new(Inner {
                store,
                clock,
                master,
                ring: RwLock::new(KeyRing::default()),
                pool,
                config,
            }),
        };
        svc.reload_keys().await?;
        for purpose in OprfPurpose::ALL {
            if svc.active_version(purpose).is_none() {
                match svc.add_key(purpose, KeyVersion(1)).await {
                    Ok(()) | Err(KeydError::Store(StoreError::Conflict(_))) => {
                        svc.reload_keys().await?
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(svc)
    }

    /// Opens the key service's own database at `location` (a data
    /// directory, SQLite `<dir>/keyd.db`, or a PostgreSQL URL), its keys
    /// sealed under `master`, or else under the master key of
    /// `<key_dir>/keyd.master.key` (created 0600 on first start). The one
    /// way a key service is opened from configuration (`Application`,
    /// `accord serve`, the benches and the tests all come here).
    pub async fn open_at(
        location: &str,
        key_dir: &Path,
        master: Option<MasterKey>,
        clock: Arc<dyn Clock>,
        config: KeydConfig,
    ) -> Result<Self, KeydError> {
        let master = match master {
            Some(m) => m,
            None => load_or_create_master_key(key_dir)?,
        };
        let db = Db::open_service(location, "keyd").await?;
        let store = SqlKeyStore::new(db).await?;
        Self::open(Arc::new(store), master, clock, config).await
    }

    /// [`KeyService::open_at`] for the embedded default: SQLite and the
    /// master key file both in `data_dir`.
    pub async fn open_data_dir(
        data_dir: &Path,
        master: Option<MasterKey>,
        clock: Arc<dyn Clock>,
        config: KeydConfig,
    ) -> Result<Self, KeydError> {
        let location = data_dir
            .to_str()
            .ok_or(KeydError::Internal("data directory is not UTF-8"))?;
        Self::open_at(location, data_dir, master, clock, config).await
    }

    /// The id of the client named `name` of `kind`, created (with the
    /// kind's default quotas) on first use: how a service in the same
    /// process gets its credential.
    pub async fn client_named(&self, name: &str, kind: ClientKind) -> Result<ClientId, KeydError> {
        if let Some(c) = self
            .clients()
            .await?
            .into_iter()
            .find(|c| c.kind == kind && c.name == name)
        {
            return Ok(c.id);
        }
        Ok(self.create_client(name, kind, &BTreeMap::new()).await?.0.id)
    }

    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.inner.store
    }

    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    // --- keys ---

    /// Reads every key from the store and opens it, replacing the ring.
    /// Cheap; also how one instance learns of another's rotation.
    pub async fn reload_keys(&self) -> Result<(), KeydError> {
        let stored = self.inner.store.keys().await?;
        let mut ring = KeyRing::default();
        for k in &stored {
            ring.keys
                .insert((k.purpose, k.version), Arc::new(self.open_key(k)?));
            if k.state == accord_storage::keyd::KeyState::Active {
                ring.active.insert(k.purpose, k.version);
            }
        }
        *self.inner.ring.write().expect("key ring lock") = ring;
        Ok(())
    }

    fn open_key(&self, k: &StoredKey) -> Result<OprfSecretKey, KeydError> {
        OprfSecretKey::open(&self.inner.master, &k.sealed, k.purpose, k.version).map_err(|_| {
            KeydError::MasterKey(format!(
                "cannot open the stored {} key version {}: wrong master key, or the database was altered",
                k.purpose, k.version
            ))
        })
    }

    async fn add_key(&self, purpose: OprfPurpose, version: KeyVersion) -> Result<(), KeydError> {
        let key = OprfSecretKey::generate();
        let sealed = key.seal(&self.inner.master, purpose, version);
        self.inner
            .store
            .add_active_key(purpose, version, &sealed, self.now())
            .await?;
        tracing::info!(%purpose, %version, "created OPRF key");
        let mut ring = self.inner.ring.write().expect("key ring lock");
        ring.keys.insert((purpose, version), Arc::new(key));
        ring.active.insert(purpose, version);
        Ok(())
    }

    fn active_version(&self, purpose: OprfPurpose) -> Option<KeyVersion> {
        self.inner
            .ring
            .read()
            .expect("key ring lock")
            .active
            .get(&purpose)
            .copied()
    }

    /// The purpose's versions.
    pub fn key_versions(&self, purpose: OprfPurpose) -> Result<KeyVersions, KeydError> {
        let ring = self.inner.ring.read().expect("key ring lock");
        let active = *ring
            .active
            .get(&purpose)
            .ok_or(KeydError::Internal("purpose without a key"))?;
        let mut versions: Vec<_> = ring
            .keys
            .keys()
            .filter(|(p, _)| *p == purpose)
            .map(|(_, v)| *v)
            .collect();
        versions.sort();
        Ok(KeyVersions {
            purpose,
            active,
            versions,
        })
    }

    /// Introduces the next version of `purpose`'s key and makes it active.
    /// Older versions stay evaluable by explicit version, so services can
    /// re-pseudonymise in the background.
    pub async fn rotate(&self, purpose: OprfPurpose) -> Result<KeyVersions, KeydError> {
        // The store is the authority on versions (another instance may
        // have rotated); a lost race is a Conflict.
        self.reload_keys().await?;
        let current = self
            .active_version(purpose)
            .ok_or(KeydError::Internal("purpose without a key"))?;
        let next = current
            .next()
            .ok_or(KeydError::Internal("key version overflow"))?;
        let added = self.add_key(purpose, next).await;
        if added.is_err() {
            self.reload_keys().await?;
        }
        added?;
        self.key_versions(purpose)
    }

    /// The key for `(purpose, version)`, or the active one; reloads once
    /// from the store when the version is unknown here.
    async fn key(
        &self,
        purpose: OprfPurpose,
        version: Option<KeyVersion>,
    ) -> Result<(KeyVersion, Arc<OprfSecretKey>), KeydError> {
        let lookup = |svc: &Self| {
            let ring = svc.inner.ring.read().expect("key ring lock");
            let v = version.or_else(|| ring.active.get(&purpose).copied())?;
            ring.keys.get(&(purpose, v)).map(|k| (v, k.clone()))
        };
        if let Some(found) = lookup(self) {
            return Ok(found);
        }
        self.reload_keys().await?;
        lookup(self).ok_or(KeydError::UnknownKeyVersion {
            purpose,
            version: version.unwrap_or_default(),
        })
    }

    // --- clients ---

    /// The client a presented API token belongs to.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Client>, KeydError> {
        Ok(self
            .inner
            .store
            .client_by_token(&TokenHash::of(token))
            .await?)
    }

    /// Registers a client. Purposes missing from `quotas` get the
    /// configured default for `kind`. The token is returned once and
    /// stored only as its hash.
    pub async fn create_client(
        &self,
        name: &str,
        kind: ClientKind,
        quotas: &BTreeMap<OprfPurpose, u64>,
    ) -> Result<(Client, BearerToken), KeydError> {
        self.create_client_as(ClientId::random(), name, kind, quotas, None)
            .await
    }

    /// [`Self::create_client`] under an id the caller chose (the messenger
    /// gives a device's credential the device's id, so that it can revoke
    /// it when the device's account is deleted), optionally in a quota
    /// group whose clients share one meter (the messenger puts the devices
    /// of one account in the account's group: a quota is per person, not
    /// per device). A taken id is a conflict.
    pub async fn create_client_as(
        &self,
        id: ClientId,
        name: &str,
        kind: ClientKind,
        quotas: &BTreeMap<OprfPurpose, u64>,
        quota_group: Option<ClientId>,
    ) -> Result<(Client, BearerToken), KeydError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(KeydError::InvalidName("empty"));
        }
        if name.chars().count() > 200 {
            return Err(KeydError::InvalidName("longer than 200 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(KeydError::InvalidName("control characters"));
        }
        let quotas = OprfPurpose::ALL
            .into_iter()
            .map(|p| {
                let q = quotas
                    .get(&p)
                    .copied()
                    .or_else(|| self.inner.config.default_quotas.get(&(kind, p)).copied());
                (p, q.unwrap_or(0).min(MAX_QUOTA))
            })
            .collect();
        let token = BearerToken::generate();
        let client = self
            .inner
            .store
            .create_client(&NewClient {
                id,
                name: name.to_owned(),
                kind,
                token_hash: token.hash(),
                created_at: self.now(),
                quotas,
                quota_group,
            })
            .await?;
        tracing::info!(client = %client.id, kind = kind.as_str(), "created key service client");
        Ok((client, token))
    }

    /// Revokes a client: its token no longer authenticates. `false` if
    /// there is no such client or it was revoked already.
    pub async fn revoke_client(&self, id: ClientId) -> Result<bool, KeydError> {
        let revoked = self.inner.store.revoke_client(id, self.now()).await?;
        if revoked {
            tracing::info!(client = %id, "revoked key service client");
        }
        Ok(revoked)
    }

    pub async fn client(&self, id: ClientId) -> Result<Client, KeydError> {
        self.inner
            .store
            .client(id)
            .await?
            .ok_or(KeydError::UnknownClient)
    }

    pub async fn clients(&self) -> Result<Vec<Client>, KeydError> {
        Ok(self.inner.store.clients().await?)
    }

    /// Sets a client's daily quota for `purpose` (0 forbids the purpose).
    pub async fn set_quota(
        &self,
        id: ClientId,
        purpose: OprfPurpose,
        daily: u64,
    ) -> Result<Client, KeydError> {
        match self.inner.store.set_quota(id, purpose, daily).await {
            Err(StoreError::NotFound(_)) => return Err(KeydError::UnknownClient),
            r => r?,
        }
        tracing::info!(client = %id, %purpose, daily, "set quota");
        self.client(id).await
    }

    /// The audit log: elements evaluated per client, purpose and UTC day.
    pub async fn audit(
        &self,
        client: Option<ClientId>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<DailyUsage>, KeydError> {
        Ok(self.inner.store.usage_by_day(client, from, to).await?)
    }

    // --- evaluation ---

    /// Evaluates a batch for `client`: checks its size, the purpose, the
    /// key version and every element, then charges the quota (atomically),
    /// then evaluates on all cores. A batch refused at any step is neither
    /// charged nor evaluated.
    pub async fn evaluate(
        &self,
        client: &Client,
        purpose: OprfPurpose,
        version: Option<KeyVersion>,
        elements: Vec<BlindedElementBytes>,
    ) -> Result<Evaluated, KeydError> {
        let n = elements.len();
        if n == 0 {
            return Err(KeydError::EmptyBatch);
        }
        if n > MAX_BATCH {
            return Err(KeydError::BatchTooLarge { max: MAX_BATCH });
        }
        let quota = client.quota(purpose);
        if quota == 0 {
            return Err(KeydError::PurposeNotAllowed { purpose });
        }
        let (key_version, key) = self.key(purpose, version).await?;
        // Decoded once here; refuses the batch (uncharged) on a bad element.
        let batch = self.inner.pool.validate(Arc::new(elements)).await?;
        match self
            .inner
            .store
            .charge(client.meter(), purpose, n as u64, self.now(), quota)
            .await
        {
            Ok(()) => {}
            Err(ChargeError::QuotaExceeded(q)) => {
                tracing::info!(client = %client.id, %purpose, requested = n, used = q.used, quota, "quota exceeded");
                return Err(KeydError::QuotaExceeded(q));
            }
            Err(ChargeError::Store(e)) => return Err(e.into()),
            Err(_) => return Err(KeydError::Internal("unexpected charge error")),
        }
        let evaluated = self.inner.pool.evaluate(key, batch).await?;
        tracing::info!(client = %client.id, %purpose, version = %key_version, elements = n, "evaluated batch");
        Ok(Evaluated {
            key_version,
            elements: evaluated,
        })
    }

    /// The index of the first element that is not a valid blinded element.
    pub(crate) async fn first_invalid(
        &self,
        elements: Vec<BlindedElementBytes>,
    ) -> Result<Option<usize>, KeydError> {
        self.inner.pool.first_invalid(Arc::new(elements)).await
    }

    /// [`KeyService::evaluate`] for a client known by id (in-process use).
    pub async fn evaluate_as(
        &self,
        client: ClientId,
        purpose: OprfPurpose,
        version: Option<KeyVersion>,
        elements: Vec<BlindedElementBytes>,
    ) -> Result<Evaluated, KeydError> {
        let client = self.client(client).await?;
        self.evaluate(&client, purpose, version, elements).await
    }
}
