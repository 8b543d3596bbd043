//! The E2E relay: the server side of end-to-end messaging, a relay of
//! ciphertext.
//!
//! - [`Relay`] (this module): the handle and its construction. Its use
//!   cases, independent of HTTP, are in one file per concern:
//!   - `keys`: the key directory: device identity keys, one-time and
//!     fallback keys, claims ([`KeyCount`], [`Claimed`], [`ClaimTarget`]);
//!   - `messages`: sends, mailbox reads and acks ([`SendOutcome`],
//!     [`frame_of`]);
//!   - `blocks`: blocks and reports;
//!   - `config` ([`E2eConfig`]) and `error` ([`RelayError`]).
//! - [`writer`]: the group-commit writer task: every mailbox write (sends
//!   and acks) goes through one task that commits many of them in one
//!   transaction; each caller is answered only after its commit.
//! - [`wake`]: the [`Wake`] seam that hands committed items to a device's
//!   connections without a database read (the in-process [`LocalWake`];
//!   [`wake::NatsWake`] for several nodes, which also publishes a
//!   data-less wake-up on `accord.wake.<device>`).
//! - [`limit`]: rate limits ([`limit::TokenBuckets`]).
//! - [`claimer`]: one-time-key claims, many in one transaction.
//!
//! Wire types are `accord-e2e`'s; the relay never sees plaintext or a
//! private key: it verifies signatures over public keys and stores
//! ciphertext as opaque bytes.
//!
//! Decisions:
//! - **Unknown sender**: an account the recipient account has never sent a
//!   message to through this server. Sends from unknown senders also draw
//!   from a per-recipient rate limit, so a flood of new senders cannot
//!   fill a mailbox.
//! - **Blocks**: a send to an account that blocked the sender is answered
//!   exactly like any other; the blocker's devices get nothing, so no
//!   delivery receipt can ever come back.
//! - **Acks**: an acked envelope loses its ciphertext and is marked acked;
//!   its row stays, as the delivered record a report is checked against,
//!   until the envelope's expiry. An acked receipt is deleted.
//! - **Receipts** go to every device (with keys) of the sender's account
//!   when a recipient device acks; they share the mailbox id sequence and
//!   are acked the same way.
//! - Rate limits and caches are per node (in memory).

mod blocks;
pub mod claimer;
mod config;
mod error;
mod keys;
pub mod limit;
mod messages;
pub mod wake;
pub mod writer;

pub use config::E2eConfig;
pub use error::RelayError;
pub use keys::{ClaimTarget, Claimed, ClaimedDevice, KeyCount};
pub use messages::{frame_of, SendOutcome};

use crate::kt::KeyDirectory;
use crate::relay::limit::TokenBuckets;
use crate::relay::wake::{LocalWake, Wake};
use crate::relay::writer::Writer;
use crate::ttl_cache::TtlCache;
use accord_domain::{AccountId, Clock, DeviceId, Timestamp};
use accord_storage::{MailboxStore, MessengerStore};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

#[derive(Debug)]
struct Inner {
    store: Arc<dyn MailboxStore>,
    accounts: Arc<dyn MessengerStore>,
    clock: Arc<dyn Clock>,
    config: E2eConfig,
    wake: Arc<dyn Wake>,
    writer: Writer,
    claimer: claimer::Claimer,
    send_limits: TokenBuckets<DeviceId>,
    claim_limits: TokenBuckets<DeviceId>,
    unknown_limits: TokenBuckets<AccountId>,
    /// Devices with keys of an account (that still exist).
    devices: TtlCache<AccountId, Option<Arc<Vec<DeviceId>>>>,
    /// (blocker, sender) → blocked.
    blocks: TtlCache<(AccountId, AccountId), bool>,
    /// (account, peer) pairs where account wrote to peer: only grows.
    wrote: Mutex<HashSet<(AccountId, AccountId)>>,
    /// Pairs found not to have written, rechecked after the TTL.
    not_wrote: TtlCache<(AccountId, AccountId), ()>,
    /// The key directory every device-list change is published into
    /// (attached by the composition root).
    kt: OnceLock<KeyDirectory>,
}

/// The relay. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Relay {
    inner: Arc<Inner>,
}

impl Relay {
    /// Starts the relay on `store` with the in-process notifier: spawns
    /// the group-commit writer (the expiry purge is the messenger's
    /// background work, [`Relay::purge`]).
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
        let claimer = claimer::Claimer::spawn(store.clone());
        let relay = Relay {
            inner: Arc::new(Inner {
                send_limits: TokenBuckets::new(config.sends_per_s, config.send_burst),
                claim_limits: TokenBuckets::new(config.claims_per_s, config.claim_burst),
                unknown_limits: TokenBuckets::new(
                    config.unknown_sends_per_s,
                    config.unknown_send_burst,
                ),
                devices: TtlCache::new(Duration::from_secs(5)),
                blocks: TtlCache::new(Duration::from_secs(5)),
                wrote: Mutex::new(HashSet::new()),
                not_wrote: TtlCache::new(Duration::from_secs(2)),
                kt: OnceLock::new(),
                store,
                accounts,
                clock,
                config,
                wake,
                writer,
                claimer,
            }),
        };
        // Expired items are purged by the messenger's background work
        // (`Application::background`), which stops with the service.
        relay
    }

    /// Attaches the key directory: from now on every change of an
    /// account's device list is published into it, and claims carry the
    /// account's lookup proof. Only the first call counts.
    pub fn attach_key_directory(&self, kt: KeyDirectory) {
        let _ = self.inner.kt.set(kt);
    }

    pub fn key_directory(&self) -> Option<&KeyDirectory> {
        self.inner.kt.get()
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
}
