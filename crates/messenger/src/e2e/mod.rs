//! The server side of end-to-end messaging: a relay of ciphertext.
//!
//! - [`Relay`]: the use cases (key directory, claims, sends, mailbox
//!   reads and acks, blocks, reports), independent of HTTP.
//! - [`writer`]: the group-commit writer task: every mailbox write (sends
//!   and acks) goes through one task that commits many of them in one
//!   transaction; each caller is answered only after its commit.
//! - [`wake`]: the [`Wake`] seam that hands committed items to a device's
//!   connections without a database read (the in-process [`LocalWake`];
//!   [`wake::NatsWake`] for several nodes, which also publishes a
//!   data-less wake-up on `accord.wake.<device>`).
//! - [`limit`]: token buckets.
//!
//! Wire types are `accord-e2e`'s; the relay never sees plaintext or a
//! private key: it verifies signatures over public keys and stores
//! ciphertext as opaque bytes.
//!
//! Decisions:
//! - **Unknown sender**: an account the recipient account has never sent a
//!   message to through this server. Sends from unknown senders also draw
//!   from a per-recipient bucket, so a flood of new senders cannot fill a
//!   mailbox.
//! - **Blocks**: a send to an account that blocked the sender is answered
//!   exactly like any other; the blocker's devices get nothing, so no
//!   delivery receipt can ever come back.
//! - **Receipts** go to every device (with keys) of the sender's account
//!   when a recipient device acks; they share the mailbox id sequence and
//!   are acked the same way.
//! - Rate limits and caches are per node (in memory).

pub mod limit;
pub mod wake;
pub mod writer;

use crate::e2e::limit::Buckets;
use crate::e2e::wake::{LocalWake, Wake};
use crate::e2e::writer::Writer;
use accord_domain::{AccountId, Clock, DeviceId, PhoneNumber, Timestamp};
use accord_e2e::{
    decode_device_keys, decode_one_time_key, Ciphertext, ClientMessageId, DeliveredEnvelope,
    DeviceKeys, EnvelopeId, OlmMessageType, SendRequest, ServerFrame, SignedOneTimeKey, WireError,
};
use accord_storage::mailbox::{Ack, MailItem, NewEnvelope, NewReport, NewSend, PutDeviceKeys};
use accord_storage::{MailboxStore, MessengerStore, StoreError};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The relay's answers, as they cross the wire.
pub use accord_messenger_wire::{Claimed, ClaimedDevice, KeyCount, SendOutcome};
pub use wake::Wake as WakeTrait;

const DAY_MS: i64 = 86_400_000;

/// Tunables, with defaults for local use.
#[derive(Clone, Copy, Debug)]
pub struct E2eConfig {
    /// How long an undelivered envelope (or receipt) is kept.
    pub envelope_ttl_ms: i64,
    /// Most one-time keys stored per device.
    pub max_one_time_keys: u32,
    /// Claims per requesting device: per second and burst.
    pub claims_per_s: f64,
    pub claim_burst: f64,
    /// Sends per sender device: per second and burst.
    pub sends_per_s: f64,
    pub send_burst: f64,
    /// Sends from unknown senders per recipient account.
    pub unknown_sends_per_s: f64,
    pub unknown_send_burst: f64,
    /// Most sends and acks in one group commit.
    pub max_batch: usize,
    /// Longest plaintext a report may carry, in bytes.
    pub max_report_plaintext: usize,
}

impl Default for E2eConfig {
    fn default() -> Self {
        E2eConfig {
            envelope_ttl_ms: 30 * DAY_MS,
            max_one_time_keys: 200,
            claims_per_s: 1.0,
            claim_burst: 60.0,
            sends_per_s: 20.0,
            send_burst: 200.0,
            unknown_sends_per_s: 0.5,
            unknown_send_burst: 30.0,
            max_batch: 1024,
            max_report_plaintext: 64 * 1024,
        }
    }
}

/// Why a relay operation failed. The HTTP layer maps each to a status and
/// a stable code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("the signature does not verify")]
    InvalidSignature,
    #[error("the keys are not this device's")]
    DeviceMismatch,
    #[error("other keys are already registered for this device")]
    DeviceKeysExist,
    #[error("this device has not uploaded its identity keys")]
    NoDeviceKeys,
    #[error("{0}")]
    BadRequest(String),
    #[error("no such account")]
    NotFound,
    #[error("the device list is stale")]
    StaleDevices {
        missing: Vec<DeviceId>,
        extra: Vec<DeviceId>,
    },
    #[error("too many requests; try again later")]
    RateLimited { retry_after_s: u64 },
    #[error("the relay is shutting down")]
    Unavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whom to claim keys of.
#[derive(Clone, Debug)]
pub enum ClaimTarget {
    Phone(PhoneNumber),
    Account(AccountId),
}

/// A small map whose entries live `ttl`.
#[derive(Debug)]
struct TtlCache<K, V> {
    ttl: Duration,
    map: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    fn new(ttl: Duration) -> Self {
        TtlCache {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }
    fn get(&self, k: &K) -> Option<V> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(k)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }
    fn put(&self, k: K, v: V) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            map.clear();
        }
        map.insert(k, (Instant::now(), v));
    }
    fn remove(&self, k: &K) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(k);
    }
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn MailboxStore>,
    accounts: Arc<dyn MessengerStore>,
    clock: Arc<dyn Clock>,
    config: E2eConfig,
    wake: Arc<dyn Wake>,
    writer: Writer,
    send_limits: Buckets<DeviceId>,
    claim_limits: Buckets<DeviceId>,
    unknown_limits: Buckets<AccountId>,
    /// Devices with keys of an account (that still exist).
    devices: TtlCache<AccountId, Option<Arc<Vec<DeviceId>>>>,
    /// (blocker, sender) → blocked.
    blocks: TtlCache<(AccountId, AccountId), bool>,
    /// (account, peer) pairs where account wrote to peer: only grows.
    wrote: Mutex<HashSet<(AccountId, AccountId)>>,
    /// Pairs found not to have written, rechecked after the TTL.
    not_wrote: TtlCache<(AccountId, AccountId), ()>,
}

/// The relay. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Relay {
    inner: Arc<Inner>,
}

/// One frame of a device's mailbox, as delivered.
pub fn frame_of(item: MailItem) -> Option<ServerFrame> {
    Some(match item {
        MailItem::Envelope {
            id,
            sender_account,
            sender_device,
            server_ts,
            message_type,
            ciphertext,
            ..
        } => ServerFrame::Envelope(DeliveredEnvelope {
            id: EnvelopeId(id),
            sender_account,
            sender_device,
            server_ts,
            message_type: OlmMessageType::from_u8(message_type)?,
            ciphertext: Ciphertext::from_bytes(ciphertext).ok()?,
        }),
        MailItem::Receipt {
            id,
            client_message_id,
            recipient_device,
            delivered_at,
        } => ServerFrame::Receipt {
            id: EnvelopeId(id),
            client_message_id: ClientMessageId::parse(&client_message_id).ok()?,
            recipient_device,
            delivered_at,
        },
    })
}

impl Relay {
    /// Starts the relay on `store` with the in-process notifier: spawns
    /// the group-commit writer and the expiry purge.
    pub fn start(
        store: Arc<dyn MailboxStore>,
        accounts: Arc<dyn MessengerStore>,
        clock: Arc<dyn Clock>,
        config: E2eConfig,
    ) -> Self {
        Self::start_with(
            store,
            accounts,
            clock,
            config,
            Arc::new(LocalWake::default()),
        )
    }

    /// [`Relay::start`] with another [`Wake`] (several nodes).
    pub fn start_with(
        store: Arc<dyn MailboxStore>,
        accounts: Arc<dyn MessengerStore>,
        clock: Arc<dyn Clock>,
        config: E2eConfig,
        wake: Arc<dyn Wake>,
    ) -> Self {
        let writer = Writer::spawn(store.clone(), wake.clone(), config.max_batch);
        let relay = Relay {
            inner: Arc::new(Inner {
                send_limits: Buckets::new(config.sends_per_s, config.send_burst),
                claim_limits: Buckets::new(config.claims_per_s, config.claim_burst),
                unknown_limits: Buckets::new(config.unknown_sends_per_s, config.unknown_send_burst),
                devices: TtlCache::new(Duration::from_secs(5)),
                blocks: TtlCache::new(Duration::from_secs(5)),
                wrote: Mutex::new(HashSet::new()),
                not_wrote: TtlCache::new(Duration::from_secs(2)),
                store,
                accounts,
                clock,
                config,
                wake,
                writer,
            }),
        };
        // Expired items are purged by the messenger's background work
        // (`Application::background`), which stops with the service.
        relay
    }

    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    pub fn config(&self) -> &E2eConfig {
        &self.inner.config
    }

    /// The group commit's histograms (batch size, duration).
    pub fn commit_metrics(&self) -> &writer::CommitMetrics {
        self.inner.writer.metrics()
    }

    /// Items stored and not yet acked, over every device.
    pub async fn pending_items(&self) -> Result<u64, RelayError> {
        Ok(self.inner.store.pending_items().await?)
    }

    pub fn wake(&self) -> &Arc<dyn Wake> {
        &self.inner.wake
    }

    /// Purges expired items now (tests, operators).
    pub async fn purge(&self) -> Result<u64, RelayError> {
        let now = self.now();
        let before = Timestamp(now.0 - self.inner.config.envelope_ttl_ms);
        Ok(self.inner.store.purge_expired(now, before).await?)
    }

    // ---- key directory ------------------------------------------------

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
                Ok(())
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
    async fn devices_of(
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
        let live: HashSet<DeviceId> = self
            .inner
            .accounts
            .devices(account)
            .await?
            .into_iter()
            .map(|d| d.id)
            .collect();
        let with_keys: Vec<DeviceId> = self
            .inner
            .store
            .account_device_keys(account)
            .await?
            .into_iter()
            .map(|(d, _)| d)
            .filter(|d| live.contains(d))
            .collect();
        let v = Some(Arc::new(with_keys));
        self.inner.devices.put(account, v.clone());
        Ok(v)
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
        let account = match target {
            ClaimTarget::Account(a) => self.inner.accounts.account(a).await?,
            ClaimTarget::Phone(p) => self.inner.accounts.account_by_phone(&p).await?,
        }
        .ok_or(RelayError::NotFound)?;
        let mut devices = Vec::new();
        let devices_of = self.devices_of(account.id).await?.unwrap_or_default();
        for d in devices_of.iter() {
            let Some(keys) = self.stored_keys(*d).await? else {
                continue;
            };
            let Some((json, _)) = self.inner.store.claim_one_time_key(*d).await? else {
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
        Ok(Claimed {
            account_id: account.id,
            devices,
        })
    }

    // ---- sending ------------------------------------------------------

    async fn blocked(&self, blocker: AccountId, sender: AccountId) -> Result<bool, RelayError> {
        if let Some(b) = self.inner.blocks.get(&(blocker, sender)) {
            return Ok(b);
        }
        let b = self.inner.store.is_blocked(blocker, sender).await?;
        self.inner.blocks.put((blocker, sender), b);
        Ok(b)
    }

    async fn wrote_to(&self, account: AccountId, peer: AccountId) -> Result<bool, RelayError> {
        let known = self
            .inner
            .wrote
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(account, peer));
        if known {
            return Ok(true);
        }
        if self.inner.not_wrote.get(&(account, peer)).is_some() {
            return Ok(false);
        }
        let w = self.inner.store.has_written_to(account, peer).await?;
        if !w {
            self.inner.not_wrote.put((account, peer), ());
        }
        if w {
            let mut set = self.inner.wrote.lock().unwrap_or_else(|e| e.into_inner());
            if set.len() > 1_000_000 {
                set.clear();
            }
            set.insert((account, peer));
        }
        Ok(w)
    }

    pub async fn send(
        &self,
        sender_account: AccountId,
        sender_device: DeviceId,
        to_account: AccountId,
        request: SendRequest,
    ) -> Result<SendOutcome, RelayError> {
        self.inner
            .send_limits
            .take(&sender_device)
            .map_err(|retry_after_s| RelayError::RateLimited { retry_after_s })?;
        let recipients = if to_account == sender_account {
            Arc::new(Vec::new())
        } else {
            self.devices_of(to_account)
                .await?
                .ok_or(RelayError::NotFound)?
        };
        let own = self.devices_of(sender_account).await?.unwrap_or_default();
        let expected: BTreeSet<DeviceId> = recipients
            .iter()
            .chain(own.iter().filter(|d| **d != sender_device))
            .copied()
            .collect();
        let got: BTreeSet<DeviceId> = request
            .envelopes()
            .iter()
            .map(|e| e.recipient_device)
            .collect();
        if expected != got {
            return Err(RelayError::StaleDevices {
                missing: expected.difference(&got).copied().collect(),
                extra: got.difference(&expected).copied().collect(),
            });
        }
        let blocked =
            to_account != sender_account && self.blocked(to_account, sender_account).await?;
        if to_account != sender_account && !self.wrote_to(to_account, sender_account).await? {
            self.inner
                .unknown_limits
                .take(&to_account)
                .map_err(|retry_after_s| RelayError::RateLimited { retry_after_s })?;
        }
        let accepted = request.envelopes().len() as u32;
        let (cmid, envelopes) = request.into_parts();
        let recipient_set: HashSet<DeviceId> = recipients.iter().copied().collect();
        let now = self.now();
        let send = NewSend {
            sender_account,
            sender_device,
            client_message_id: cmid.as_str().to_owned(),
            to_account,
            envelopes: envelopes
                .into_iter()
                .filter(|e| !(blocked && recipient_set.contains(&e.recipient_device)))
                .map(|e| NewEnvelope {
                    recipient_device: e.recipient_device,
                    message_type: e.message_type.as_u8(),
                    ciphertext: e.ciphertext.into_bytes(),
                })
                .collect(),
            at: now,
            expires_at: Timestamp(now.0 + self.inner.config.envelope_ttl_ms),
        };
        let duplicate = self.inner.writer.send(send).await?;
        Ok(SendOutcome {
            accepted,
            duplicate,
        })
    }

    // ---- mailboxes ----------------------------------------------------

    /// Up to `limit` frames of `device`'s mailbox after `after`, and the
    /// last id read.
    pub async fn fetch(
        &self,
        device: DeviceId,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<ServerFrame>, u64, usize), RelayError> {
        let items = self
            .inner
            .store
            .fetch(device, after, self.now(), limit)
            .await?;
        let n = items.len();
        let last = items.last().map_or(after, MailItem::id);
        Ok((items.into_iter().filter_map(frame_of).collect(), last, n))
    }

    /// Deletes acked items of `device`'s mailbox (after commit) and
    /// queues the receipts; returns how many items went.
    pub async fn ack(&self, device: DeviceId, ids: Vec<EnvelopeId>) -> Result<u64, RelayError> {
        let now = self.now();
        self.inner
            .writer
            .ack(Ack {
                device,
                ids: ids.into_iter().map(|i| i.0).collect(),
                at: now,
                expires_at: Timestamp(now.0 + self.inner.config.envelope_ttl_ms),
            })
            .await
    }

    // ---- blocks and reports --------------------------------------------

    pub async fn block(&self, account: AccountId, blocked: AccountId) -> Result<(), RelayError> {
        self.inner.store.block(account, blocked, self.now()).await?;
        self.inner.blocks.remove(&(account, blocked));
        Ok(())
    }

    pub async fn unblock(&self, account: AccountId, blocked: AccountId) -> Result<(), RelayError> {
        self.inner.store.unblock(account, blocked).await?;
        self.inner.blocks.remove(&(account, blocked));
        Ok(())
    }

    /// Reports an envelope `device` received. `NotFound` otherwise.
    pub async fn report(
        &self,
        device: DeviceId,
        envelope_id: EnvelopeId,
        plaintext: Option<String>,
    ) -> Result<(), RelayError> {
        if plaintext
            .as_ref()
            .is_some_and(|p| p.len() > self.inner.config.max_report_plaintext)
        {
            return Err(RelayError::BadRequest(format!(
                "plaintext is longer than {} bytes",
                self.inner.config.max_report_plaintext
            )));
        }
        let (sender_account, sender_device) = self
            .inner
            .store
            .received_from(device, envelope_id.0)
            .await?
            .ok_or(RelayError::NotFound)?;
        self.inner
            .store
            .put_report(&NewReport {
                sender_account,
                sender_device,
                envelope_id: envelope_id.0,
                plaintext,
                at: self.now(),
            })
            .await?;
        Ok(())
    }
}
