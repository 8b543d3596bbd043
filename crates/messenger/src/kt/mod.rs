//! Key transparency: the messenger's auditable key directory.
//!
//! Every account's device list (device ids and public identity keys, the
//! [`DeviceList`] of `accord-messenger-wire`) is published into an `akd`
//! directory in WhatsApp's configuration (`WhatsAppV1Configuration`),
//! labelled by the account id, never by a phone number. Each publication
//! is an epoch; the directory's root for it is signed with the
//! messenger's ed25519 root key, and lookup, history and append-only
//! (audit) proofs are served from it (`http/routes/kt.rs`). A device
//! verifies the lookup proof of every peer it encrypts to (`accord-client`),
//! so a device the messenger slips into an account's list outside the
//! directory is refused, and one it publishes is visible to the account's
//! own devices and to auditors.
//!
//! Persistence: the directory itself (akd's tree) is held in memory and
//! rebuilt on start by replaying the log of what was published
//! (`accord_storage::KtStore`): the same VRF key and the same updates in
//! the same order give the same roots, and each rebuilt root must equal
//! the one signed at the time, or the messenger refuses to start. The VRF
//! key and the root-signing key live in files under the key directory
//! (`--kt-key-dir`, by default the data directory), mode 0600, never in
//! the database: a copy of the database can neither forge a root nor
//! recompute labels.
//!
//! Publishing: [`KeyDirectory::publish`] takes the new values of some
//! accounts, drops those that did not change, and makes one epoch of the
//! rest: the log first (so a crash is replayed), then akd, then the
//! signed root. Publications are serialised; lookups wait for a running
//! publication to end, so a proof always comes with its signed root.
//!
//! - `keys`: the two key files.

mod keys;

use accord_domain::{AccountId, Clock};
use accord_messenger_wire::{
    root_message, DeviceList, KtAudit, KtHistory, KtKeys, KtLookup, SignedRoot,
};
use accord_storage::{KtStore, StoreError};
use akd::ecvrf::{VRFKeyStorage, VrfError};
use akd::storage::memory::AsyncInMemoryDatabase;
use akd::storage::StorageManager;
use akd::{AkdLabel, AkdValue, AzksParallelismConfig, EpochHash, HistoryParams};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use protobuf::Message;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::RwLock;
use zeroize::Zeroizing;

pub use keys::{ROOT_KEY_FILE, VRF_KEY_FILE};

/// Tries of a publication whose epoch number another node took first.
const PUBLISH_ATTEMPTS: usize = 5;

/// Why the log is applied: on start (sign what a crash left unsigned) or
/// to catch up with another node (stop at its publication in flight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Replay {
    Start,
    CatchUp,
}

/// The directory's configuration: WhatsApp's.
pub type KtConfig = akd::WhatsAppV1Configuration;
type Akd = akd::Directory<KtConfig, AsyncInMemoryDatabase, FileVrf>;

/// Why the key directory failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KtError {
    #[error("key directory storage: {0}")]
    Store(#[from] StoreError),
    #[error("key directory: {0}")]
    Akd(String),
    #[error("key directory key files: {0}")]
    Keys(String),
    #[error("the key directory's log gives another root for epoch {0} than the one signed: the log was altered")]
    RootMismatch(u64),
    #[error("account not in the key directory")]
    NotFound,
    #[error("bad epoch range: {0}")]
    BadRange(String),
}

impl From<akd::errors::AkdError> for KtError {
    fn from(e: akd::errors::AkdError) -> Self {
        KtError::Akd(e.to_string())
    }
}

/// The VRF private key, read once from its file.
#[derive(Clone)]
struct FileVrf {
    key: Arc<Zeroizing<[u8; 32]>>,
}

#[async_trait::async_trait]
impl VRFKeyStorage for FileVrf {
    async fn retrieve(&self) -> Result<Vec<u8>, VrfError> {
        Ok(self.key.to_vec())
    }
}

struct State {
    /// Signed roots, epoch `i + 1` at index `i`.
    roots: Vec<SignedRoot>,
    /// The last value published for each account (label).
    published: HashMap<AccountId, Vec<u8>>,
}

struct Inner {
    akd: Akd,
    store: Arc<dyn KtStore>,
    clock: Arc<dyn Clock>,
    signing: SigningKey,
    keys: KtKeys,
    /// Held for writing by a publication, for reading by proofs.
    state: RwLock<State>,
}

/// The key directory. Cheap to clone.
#[derive(Clone)]
pub struct KeyDirectory {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KeyDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyDirectory")
            .field("keys", &self.inner.keys)
            .finish_non_exhaustive()
    }
}

fn label(account: AccountId) -> AkdLabel {
    AkdLabel(account.0.as_bytes().to_vec())
}

impl KeyDirectory {
    /// Opens the directory: reads (or creates) the key files in `key_dir`
    /// and replays the log, checking every rebuilt root against the signed
    /// one and signing any epoch a crash left without a root.
    pub async fn open(
        store: Arc<dyn KtStore>,
        key_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, KtError> {
        let (vrf_key, root_key) = keys::load_or_create(key_dir)?;
        let signing = SigningKey::from_bytes(&root_key);
        let vrf = FileVrf {
            key: Arc::new(vrf_key),
        };
        let akd = Akd::new(
            StorageManager::new_no_cache(AsyncInMemoryDatabase::new()),
            vrf,
            AzksParallelismConfig::default(),
        )
        .await?;
        let vrf_public = akd.get_public_key().await?;
        let keys = KtKeys {
            vrf_public_key: hex::encode(vrf_public.as_bytes()),
            signing_key: hex::encode(signing.verifying_key().as_bytes()),
        };
        let dir = KeyDirectory {
            inner: Arc::new(Inner {
                akd,
                store,
                clock,
                signing,
                keys,
                state: RwLock::new(State {
                    roots: Vec::new(),
                    published: HashMap::new(),
                }),
            }),
        };
        dir.replay().await?;
        Ok(dir)
    }

    async fn replay(&self) -> Result<(), KtError> {
        let mut state = self.inner.state.write().await;
        let applied = self.apply_log(&mut state, Replay::Start).await?;
        if applied > 0 {
            tracing::info!(
                epoch = state.roots.len(),
                "key directory rebuilt from its log"
            );
        }
        Ok(())
    }

    /// Brings this node's directory up to the log: the epochs another
    /// messenger node on the same database published since this one last
    /// looked. Every node must hold the same key files (`--kt-key-dir`):
    /// the same VRF key and updates give the same roots, which are checked
    /// against the ones the publishing node signed.
    async fn catch_up(&self) -> Result<(), KtError> {
        let local = self.inner.state.read().await.roots.len() as u64;
        if self.inner.store.epochs_after(local).await?.is_empty() {
            return Ok(());
        }
        let mut state = self.inner.state.write().await;
        self.apply_log(&mut state, Replay::CatchUp).await?;
        Ok(())
    }

    /// Applies the logged epochs after `state`'s newest; returns how many.
    /// On start an epoch without a root (a crash between the log and the
    /// signature) is signed; while running it is another node's
    /// publication in flight, and applying stops before it.
    async fn apply_log(&self, state: &mut State, mode: Replay) -> Result<usize, KtError> {
        let inner = &self.inner;
        let local = state.roots.len() as u64;
        let epochs = inner.store.epochs_after(local).await?;
        let Some(last) = epochs.last().map(|e| e.epoch) else {
            return Ok(0);
        };
        let mut updates = inner
            .store
            .updates(local + 1, last)
            .await?
            .into_iter()
            .peekable();
        let mut applied = 0;
        for (i, e) in epochs.iter().enumerate() {
            if e.epoch != local + i as u64 + 1 {
                return Err(KtError::Akd(format!(
                    "epoch {} is missing from the log",
                    local + i as u64 + 1
                )));
            }
            if mode == Replay::CatchUp && e.root.is_none() {
                break;
            }
            let mut batch = Vec::new();
            let mut values = Vec::new();
            while let Some(u) = updates.next_if(|u| u.epoch == e.epoch) {
                let account = uuid::Uuid::from_slice(&u.label)
                    .map(AccountId)
                    .map_err(|_| StoreError::Corrupt("key-transparency label".into()))?;
                values.push((account, u.value.clone()));
                batch.push((AkdLabel(u.label), AkdValue(u.value)));
            }
            let EpochHash(epoch, root) = inner.akd.publish(batch).await?;
            if epoch != e.epoch {
                return Err(KtError::Akd(format!(
                    "replay reached epoch {epoch} instead of {}",
                    e.epoch
                )));
            }
            let signed = match (&e.root, &e.signature) {
                (Some(stored), Some(sig)) => {
                    if stored.as_slice() != root.as_slice() {
                        return Err(KtError::RootMismatch(epoch));
                    }
                    SignedRoot {
                        epoch,
                        root_hash: hex::encode(root),
                        signature: hex::encode(sig),
                    }
                }
                _ => {
                    let signed = self.sign(epoch, &root);
                    inner
                        .store
                        .set_root(epoch, &root, &signature_bytes(&signed))
                        .await?;
                    signed
                }
            };
            state.published.extend(values);
            state.roots.push(signed);
            applied += 1;
        }
        Ok(applied)
    }

    fn sign(&self, epoch: u64, root: &[u8; 32]) -> SignedRoot {
        let signature = self.inner.signing.sign(&root_message(epoch, root));
        SignedRoot {
            epoch,
            root_hash: hex::encode(root),
            signature: hex::encode(signature.to_bytes()),
        }
    }

    /// The directory's public keys.
    pub fn keys(&self) -> &KtKeys {
        &self.inner.keys
    }

    /// Publishes the new values of `updates` as one epoch, leaving out the
    /// accounts whose value did not change. Returns the new epoch, or
    /// `None` when nothing changed.
    pub async fn publish(
        &self,
        updates: Vec<(AccountId, DeviceList)>,
    ) -> Result<Option<u64>, KtError> {
        for _ in 0..PUBLISH_ATTEMPTS {
            match self.publish_once(&updates).await {
                Err(KtError::Store(StoreError::Conflict(_))) => {
                    // Another node took this epoch number: apply its
                    // epochs and try again on top of them.
                    let mut state = self.inner.state.write().await;
                    self.apply_log(&mut state, Replay::CatchUp).await?;
                }
                other => return other,
            }
        }
        Err(KtError::Akd(
            "the key directory's epochs kept being taken by other nodes".into(),
        ))
    }

    async fn publish_once(
        &self,
        updates: &[(AccountId, DeviceList)],
    ) -> Result<Option<u64>, KtError> {
        self.catch_up().await?;
        let inner = &self.inner;
        let mut state = inner.state.write().await;
        let mut batch: HashMap<AccountId, Vec<u8>> = HashMap::new();
        for (account, list) in updates {
            let account = *account;
            let value = list.encode();
            // An account never published with no device has nothing to say.
            let unchanged = match state.published.get(&account) {
                Some(v) => *v == value,
                None => list.devices().is_empty(),
            };
            if !unchanged {
                batch.insert(account, value);
            } else {
                batch.remove(&account);
            }
        }
        if batch.is_empty() {
            return Ok(None);
        }
        let mut rows: Vec<(Vec<u8>, Vec<u8>)> = batch
            .iter()
            .map(|(a, v)| (a.0.as_bytes().to_vec(), v.clone()))
            .collect();
        rows.sort();
        let epoch = state.roots.len() as u64 + 1;
        inner
            .store
            .append_epoch(epoch, &rows, inner.clock.now())
            .await?;
        let EpochHash(got, root) = inner
            .akd
            .publish(
                rows.iter()
                    .map(|(l, v)| (AkdLabel(l.clone()), AkdValue(v.clone())))
                    .collect(),
            )
            .await?;
        if got != epoch {
            return Err(KtError::Akd(format!(
                "published epoch {got}, expected {epoch}"
            )));
        }
        let signed = self.sign(epoch, &root);
        inner
            .store
            .set_root(epoch, &root, &signature_bytes(&signed))
            .await?;
        state.roots.push(signed);
        state.published.extend(batch);
        Ok(Some(epoch))
    }

    /// The newest epoch (0 before the first publication).
    pub async fn latest_epoch(&self) -> u64 {
        self.inner.state.read().await.roots.len() as u64
    }

    /// The signed roots of epochs `from..` (at most `limit`).
    /// (Caught up with other nodes first, so an auditor that asks several
    /// nodes never sees the latest epoch go back.)
    pub async fn roots(&self, from: u64, limit: u64) -> Result<(u64, Vec<SignedRoot>), KtError> {
        self.catch_up().await?;
        let state = self.inner.state.read().await;
        let start = usize::try_from(from.max(1) - 1).unwrap_or(usize::MAX);
        let roots = state
            .roots
            .iter()
            .skip(start)
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .cloned()
            .collect();
        Ok((state.roots.len() as u64, roots))
    }

    /// The account's current value with its lookup proof.
    pub async fn lookup(&self, account: AccountId) -> Result<KtLookup, KtError> {
        self.catch_up().await?;
        let state = self.inner.state.read().await;
        if !state.published.contains_key(&account) {
            return Err(KtError::NotFound);
        }
        let (proof, EpochHash(epoch, _)) = self.inner.akd.lookup(label(account)).await?;
        let proof = akd::proto::specs::types::LookupProof::from(&proof);
        Ok(KtLookup {
            root: root_of(&state, epoch)?,
            proof: encode_proof(&proof)?,
        })
    }

    /// Every value the account had, with its history proof.
    pub async fn history(&self, account: AccountId) -> Result<KtHistory, KtError> {
        self.catch_up().await?;
        let state = self.inner.state.read().await;
        if !state.published.contains_key(&account) {
            return Err(KtError::NotFound);
        }
        let (proof, EpochHash(epoch, _)) = self
            .inner
            .akd
            .key_history(&label(account), HistoryParams::Complete)
            .await?;
        let proof = akd::proto::specs::types::HistoryProof::from(&proof);
        Ok(KtHistory {
            root: root_of(&state, epoch)?,
            proof: encode_proof(&proof)?,
        })
    }

    /// The append-only proof from epoch `from` to `to` (`1 <= from < to`,
    /// at most [`accord_messenger_wire::MAX_AUDIT_EPOCHS`] apart).
    pub async fn audit(&self, from: u64, to: u64) -> Result<KtAudit, KtError> {
        self.catch_up().await?;
        let state = self.inner.state.read().await;
        let latest = state.roots.len() as u64;
        if from == 0 || from >= to || to > latest {
            return Err(KtError::BadRange(format!(
                "need 1 <= from < to <= {latest} (the latest epoch)"
            )));
        }
        if to - from > accord_messenger_wire::MAX_AUDIT_EPOCHS {
            return Err(KtError::BadRange(format!(
                "at most {} epochs per proof",
                accord_messenger_wire::MAX_AUDIT_EPOCHS
            )));
        }
        let proof = self.inner.akd.audit(from, to).await?;
        let proof = akd::proto::specs::types::AppendOnlyProof::from(&proof);
        Ok(KtAudit {
            from,
            to,
            proof: encode_proof(&proof)?,
        })
    }
}

fn root_of(state: &State, epoch: u64) -> Result<SignedRoot, KtError> {
    usize::try_from(epoch)
        .ok()
        .and_then(|e| e.checked_sub(1))
        .and_then(|i| state.roots.get(i))
        .cloned()
        .ok_or_else(|| KtError::Akd(format!("no signed root for epoch {epoch}")))
}

fn signature_bytes(signed: &SignedRoot) -> Vec<u8> {
    hex::decode(&signed.signature).unwrap_or_default()
}

fn encode_proof(m: &impl Message) -> Result<String, KtError> {
    let bytes = m
        .write_to_bytes()
        .map_err(|e| KtError::Akd(format!("proof encoding: {e}")))?;
    Ok(STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use accord_domain::{DeviceId, SystemClock};
    use accord_messenger_wire::DirectoryDevice;
    use accord_storage::{Db, SqlKtStore};

    fn one_device() -> DeviceList {
        let id = DeviceId::random();
        let mut ed25519 = [0u8; 32];
        ed25519[..16].copy_from_slice(id.0.as_bytes());
        DeviceList::new(vec![DirectoryDevice {
            device_id: id,
            ed25519,
            curve25519: [7; 32],
        }])
    }

    /// Two messenger nodes over one database, with the same key files: each
    /// sees what the other published, in lookups, roots and audits, and
    /// their epochs interleave without a gap or a fork.
    #[tokio::test]
    async fn two_nodes_over_one_log_see_each_others_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_service(dir.path().to_str().unwrap(), "messenger")
            .await
            .unwrap();
        let store: Arc<dyn KtStore> = Arc::new(SqlKtStore::new(db).await.unwrap());
        let keys = dir.path().join("keys");
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let a = KeyDirectory::open(store.clone(), &keys, clock.clone())
            .await
            .unwrap();
        let b = KeyDirectory::open(store.clone(), &keys, clock)
            .await
            .unwrap();
        let (alice, bob) = (AccountId::random(), AccountId::random());
        assert_eq!(
            a.publish(vec![(alice, one_device())]).await.unwrap(),
            Some(1)
        );
        // B has not published anything, yet it proves A's epoch...
        let seen = b.lookup(alice).await.unwrap();
        assert_eq!(seen.root.epoch, 1);
        // ...and its own publication comes after it, not over it.
        assert_eq!(b.publish(vec![(bob, one_device())]).await.unwrap(), Some(2));
        let (latest, roots) = a.roots(1, 10).await.unwrap();
        assert_eq!((latest, roots.len()), (2, 2));
        assert_eq!(roots, b.roots(1, 10).await.unwrap().1);
        a.audit(1, 2).await.unwrap();
        assert_eq!(a.lookup(bob).await.unwrap().root.epoch, 2);
    }

    /// A node whose key files differ fails its catch-up instead of serving
    /// a view of its own.
    #[tokio::test]
    async fn a_node_with_other_keys_refuses_the_others_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_service(dir.path().to_str().unwrap(), "messenger")
            .await
            .unwrap();
        let store: Arc<dyn KtStore> = Arc::new(SqlKtStore::new(db).await.unwrap());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let a = KeyDirectory::open(store.clone(), &dir.path().join("a"), clock.clone())
            .await
            .unwrap();
        let b = KeyDirectory::open(store, &dir.path().join("b"), clock)
            .await
            .unwrap();
        let alice = AccountId::random();
        a.publish(vec![(alice, one_device())]).await.unwrap();
        let err = b.lookup(alice).await.unwrap_err();
        assert!(matches!(err, KtError::RootMismatch(1)), "{err}");
    }
}
