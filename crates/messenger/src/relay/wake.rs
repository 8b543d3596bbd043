//! Handing committed mailbox items to the connections of their devices.
//!
//! The durable mailbox in the database is the truth; this module is a
//! shortcut past it. After each group commit the writer gives [`Wake`]
//! the items it stored (with their ids); a connected device's
//! [`Subscription`] hands them to its connection without a database read.
//! Whenever the shortcut cannot vouch for completeness, it says
//! [`Pending::Refetch`] and the connection reads the mailbox instead:
//! - a connection that fell more than [`MAX_RETAINED`] items behind;
//! - a wake-up from another node ([`NatsWake`]), which carries no data.
//!
//! Why nothing is lost or sent twice: a connection subscribes *before*
//! its first mailbox read; every commit after the subscription is pushed
//! to it, every commit before is in that read, and it skips items whose id
//! is not above the last one it sent. On one node all mailbox writes go
//! through the single writer, so commits, ids and pushes share one order.
//!
//! Memory: a device's slot keeps only items some subscription of it has
//! not taken yet (at most [`MAX_RETAINED`]); a device nobody listens to
//! has no slot.

use accord_domain::DeviceId;
use accord_storage::mailbox::MailItem;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Items kept per device for its slowest subscription before that one
/// is told to re-read the mailbox.
pub const MAX_RETAINED: usize = 1024;

/// Hands committed items to the connections of their devices.
pub trait Wake: Send + Sync + std::fmt::Debug + 'static {
    /// Starts listening for `device`; take the subscription before the
    /// first mailbox read.
    fn subscribe(&self, device: DeviceId) -> Subscription;
    /// Items that were just committed, in id order (taken, not copied:
    /// this is the hot path of every message).
    fn deliver(&self, items: Vec<(DeviceId, MailItem)>);
    /// How often a connection should re-read its mailbox anyway: `None`
    /// when every commit reaches it in memory (one node); with wake-ups
    /// from other nodes, which can be lost, a bound on how long a lost one
    /// delays a delivery.
    fn resync_every(&self) -> Option<std::time::Duration> {
        None
    }
}

/// What a subscription has for its connection.
#[derive(Debug)]
pub enum Pending {
    /// Items committed since the last take, in id order (maybe none).
    Items(Vec<Arc<MailItem>>),
    /// Read the mailbox: something may have been committed that is not
    /// here.
    Refetch,
}

#[derive(Debug, Default)]
struct SlotState {
    /// Sequence number of the last entry pushed (0: none yet).
    head: u64,
    /// Entries `head - len + 1 ..= head`; `None` means "re-read".
    entries: VecDeque<Option<Arc<MailItem>>>,
    /// Per subscription: the last sequence number it took.
    cursors: HashMap<u64, u64>,
    next_subscription: u64,
}

impl SlotState {
    /// Drops entries every subscription has taken.
    fn prune(&mut self) {
        let seen = self.cursors.values().copied().min().unwrap_or(self.head);
        let oldest = self.head + 1 - self.entries.len() as u64;
        let drop = seen
            .saturating_sub(oldest - 1)
            .min(self.entries.len() as u64);
        self.entries.drain(..drop as usize);
    }

    fn push(&mut self, entry: Option<Arc<MailItem>>) {
        self.head += 1;
        self.entries.push_back(entry);
        if self.entries.len() > MAX_RETAINED {
            self.entries.pop_front();
        }
    }
}

#[derive(Debug)]
struct Slot {
    state: Mutex<SlotState>,
    notify: watch::Sender<u64>,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One listener of a device (a WebSocket or a long poll).
#[derive(Debug)]
pub struct Subscription {
    slot: Arc<Slot>,
    rx: watch::Receiver<u64>,
    id: u64,
}

impl Subscription {
    /// Resolves when something was pushed since the last [`Self::take`].
    pub async fn changed(&mut self) {
        // The slot holds the sender as long as this subscription lives.
        let _ = self.rx.changed().await;
    }

    /// Whether something was pushed since the last [`Self::take`].
    pub fn has_changed(&self) -> bool {
        self.rx.has_changed().unwrap_or(true)
    }

    /// What was pushed since the last take.
    pub fn take(&mut self) -> Pending {
        self.rx.borrow_and_update();
        let mut st = self.slot.lock();
        let cursor = st.cursors.get(&self.id).copied().unwrap_or(0);
        let head = st.head;
        if cursor == head {
            return Pending::Items(Vec::new());
        }
        let oldest = head + 1 - st.entries.len() as u64;
        let pending = if cursor + 1 < oldest {
            Pending::Refetch
        } else {
            let fresh = st.entries.range((cursor + 1 - oldest) as usize..);
            match fresh.cloned().collect::<Option<Vec<_>>>() {
                Some(items) => Pending::Items(items),
                None => Pending::Refetch,
            }
        };
        st.cursors.insert(self.id, head);
        st.prune();
        pending
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut st = self.slot.lock();
        st.cursors.remove(&self.id);
        st.prune();
    }
}

/// The in-process hub of one node: one slot per device with a listener.
#[derive(Debug, Default)]
pub struct LocalWake {
    slots: Mutex<HashMap<DeviceId, Arc<Slot>>>,
}

impl LocalWake {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The slots of `devices` that have listeners; forgets the others.
    fn listening(&self, devices: impl Iterator<Item = DeviceId>) -> Vec<(DeviceId, Arc<Slot>)> {
        let mut slots = self.slots();
        let mut out = Vec::new();
        for d in devices {
            if let Some(slot) = slots.get(&d) {
                if slot.notify.receiver_count() == 0 {
                    slots.remove(&d);
                } else {
                    out.push((d, slot.clone()));
                }
            }
        }
        out
    }

    /// Tells the listeners of `devices` to re-read their mailboxes
    /// (a wake-up that carries no items).
    pub fn poke(&self, devices: &[DeviceId]) {
        for (_, slot) in self.listening(devices.iter().copied()) {
            let head = {
                let mut st = slot.lock();
                st.push(None);
                st.head
            };
            slot.notify.send_replace(head);
        }
    }
}

impl Wake for LocalWake {
    fn subscribe(&self, device: DeviceId) -> Subscription {
        let slot = {
            let mut slots = self.slots();
            // Forget devices nobody listens to any more, now and then.
            if slots.len() > 1024 && slots.len().is_power_of_two() {
                slots.retain(|_, s| s.notify.receiver_count() > 0);
            }
            slots
                .entry(device)
                .or_insert_with(|| {
                    Arc::new(Slot {
                        state: Mutex::new(SlotState::default()),
                        notify: watch::channel(0).0,
                    })
                })
                .clone()
        };
        let id = {
            let mut st = slot.lock();
            let id = st.next_subscription;
            st.next_subscription += 1;
            let head = st.head;
            st.cursors.insert(id, head);
            id
        };
        let rx = slot.notify.subscribe();
        Subscription { slot, rx, id }
    }

    fn deliver(&self, items: Vec<(DeviceId, MailItem)>) {
        let mut by_device: HashMap<DeviceId, Vec<MailItem>> = HashMap::new();
        for (d, item) in items {
            by_device.entry(d).or_default().push(item);
        }
        let listening = self.listening(by_device.keys().copied());
        for (d, slot) in listening {
            let head = {
                let mut st = slot.lock();
                for item in by_device.remove(&d).unwrap_or_default() {
                    st.push(Some(Arc::new(item)));
                }
                st.head
            };
            slot.notify.send_replace(head);
        }
    }
}

/// With NATS, how often a connection re-reads its mailbox in any case, by
/// default: core NATS delivers at most once, and this bounds the delay a
/// lost wake-up can cause.
pub const NATS_RESYNC: std::time::Duration = std::time::Duration::from_secs(15);

/// Where and how [`NatsWake`] connects.
#[derive(Clone, Debug)]
pub struct NatsConfig {
    /// e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// Wake-ups go to `<prefix>.<device>`; the nodes of one deployment
    /// share it (`accord.wake`; tests use unique ones).
    pub prefix: String,
    /// How often every connection re-reads its mailbox in any case
    /// ([`NATS_RESYNC`] by default).
    pub resync: std::time::Duration,
}

impl NatsConfig {
    /// The production prefix and resync for `url`.
    pub fn new(url: &str) -> Self {
        NatsConfig {
            url: url.to_owned(),
            prefix: "accord.wake".into(),
            resync: NATS_RESYNC,
        }
    }
}

/// Several nodes on one database, through NATS: each commit is pushed to
/// this node's own listeners, and an empty wake-up is published on
/// `<prefix>.<device>` with this node's id as payload. Every node
/// subscribes to `<prefix>.>` and tells its listeners of that device to
/// re-read the mailbox, unless the wake-up is its own. Core NATS subjects
/// are enough: a lost wake-up delays a delivery until the next one or a
/// reconnect, never loses it, since the mailbox is durable in the
/// database.
#[derive(Debug)]
pub struct NatsWake {
    local: Arc<LocalWake>,
    client: async_nats::Client,
    prefix: String,
    node: Vec<u8>,
    resync: std::time::Duration,
}

impl NatsWake {
    /// Connects to the NATS server of `config` and starts the subscriber
    /// task.
    pub async fn connect(config: &NatsConfig) -> Result<Arc<Self>, String> {
        use futures_util::StreamExt;
        let prefix = config.prefix.as_str();
        let valid = !prefix.is_empty()
            && prefix.split('.').all(|t| {
                !t.is_empty()
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        if !valid {
            return Err(format!(
                "the subject prefix {prefix:?} is not dot-separated tokens of [A-Za-z0-9_-]"
            ));
        }
        if config.resync.is_zero() {
            return Err("the resync interval must be above zero".into());
        }
        let client = async_nats::connect(&config.url)
            .await
            .map_err(|e| e.to_string())?;
        let mut sub = client
            .subscribe(format!("{prefix}.>"))
            .await
            .map_err(|e| e.to_string())?;
        // Make sure the server has the subscription before anyone wakes.
        client.flush().await.map_err(|e| e.to_string())?;
        let node = uuid::Uuid::new_v4().as_bytes().to_vec();
        let local = Arc::new(LocalWake::default());
        let weak = Arc::downgrade(&local);
        let cut = prefix.len() + 1;
        let own = node.clone();
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let Some(local) = weak.upgrade() else { return };
                if msg.payload.as_ref() == own.as_slice() {
                    continue;
                }
                if let Some(d) = msg.subject.get(cut..).and_then(DeviceId::parse) {
                    local.poke(&[d]);
                }
            }
        });
        Ok(Arc::new(NatsWake {
            local,
            client,
            prefix: prefix.to_owned(),
            node,
            resync: config.resync,
        }))
    }
}

impl Wake for NatsWake {
    fn subscribe(&self, device: DeviceId) -> Subscription {
        self.local.subscribe(device)
    }

    fn resync_every(&self) -> Option<std::time::Duration> {
        Some(self.resync)
    }

    fn deliver(&self, items: Vec<(DeviceId, MailItem)>) {
        let mut devices: Vec<DeviceId> = items.iter().map(|(d, _)| *d).collect();
        devices.sort();
        devices.dedup();
        self.local.deliver(items);
        let client = self.client.clone();
        let subjects: Vec<String> = devices
            .iter()
            .map(|d| format!("{}.{d}", self.prefix))
            .collect();
        let node = self.node.clone();
        tokio::spawn(async move {
            for s in subjects {
                if let Err(e) = client.publish(s, node.clone().into()).await {
                    tracing::warn!(error = %e, "NATS wake-up not published");
                }
            }
            // The client buffers outgoing messages; a wake-up that waits
            // in a buffer is a delivery that waits. One flush per commit.
            if let Err(e) = client.flush().await {
                tracing::warn!(error = %e, "NATS wake-ups not flushed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accord_domain::Timestamp;

    fn receipt(id: u64) -> MailItem {
        MailItem::Receipt {
            id,
            client_message_id: "m".into(),
            recipient_device: DeviceId::random(),
            delivered_at: Timestamp(0),
        }
    }

    fn ids(p: Pending) -> Option<Vec<u64>> {
        match p {
            Pending::Items(v) => Some(v.iter().map(|i| i.id()).collect()),
            Pending::Refetch => None,
        }
    }

    #[test]
    fn each_subscription_takes_what_came_after_it() {
        let hub = LocalWake::default();
        let d = DeviceId::random();
        let other = DeviceId::random();
        let mut a = hub.subscribe(d);
        hub.deliver(vec![(d, receipt(1)), (other, receipt(2)), (d, receipt(3))]);
        let mut b = hub.subscribe(d);
        hub.deliver(vec![(d, receipt(4))]);
        assert!(a.has_changed() && b.has_changed());
        assert_eq!(ids(a.take()), Some(vec![1, 3, 4]));
        assert_eq!(ids(b.take()), Some(vec![4]));
        assert_eq!(ids(a.take()), Some(vec![]));
        assert!(!a.has_changed());
        // Everything taken by both: nothing retained.
        assert!(hub.slots()[&d].lock().entries.is_empty());
    }

    #[test]
    fn a_slow_subscription_or_a_remote_wake_up_means_refetch() {
        let hub = LocalWake::default();
        let d = DeviceId::random();
        let mut slow = hub.subscribe(d);
        let mut fast = hub.subscribe(d);
        for i in 0..(MAX_RETAINED as u64 + 5) {
            hub.deliver(vec![(d, receipt(i + 1))]);
            assert_eq!(ids(fast.take()), Some(vec![i + 1]));
        }
        assert!(ids(slow.take()).is_none(), "fell behind: re-read");
        assert_eq!(ids(slow.take()), Some(vec![]));
        hub.poke(&[d]);
        assert!(ids(fast.take()).is_none());
        assert!(ids(slow.take()).is_none());
        drop((slow, fast));
        hub.deliver(vec![(d, receipt(9999))]);
        assert!(hub.slots().get(&d).is_none(), "no listener, no slot");
    }
}
