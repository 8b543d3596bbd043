//! Waking the connections of a device when its mailbox changes.
//!
//! [`Wake`] is the seam: [`LocalWake`] is the in-process notifier of one
//! node; a multi-node deployment puts a NATS (JetStream) implementation
//! behind the same trait (publish on `accord.wake.<device>`, and a
//! subscriber that calls the local notifier), so a send on one node wakes
//! the connection held by another. A wake-up carries no data: the woken
//! connection reads the durable mailbox, so a lost wake-up delays a
//! delivery until the next one or the next reconnect, never loses it.

use accord_domain::DeviceId;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

/// Wakes the connections of devices whose mailbox got new items.
pub trait Wake: Send + Sync + std::fmt::Debug + 'static {
    /// A receiver that changes whenever `device` is woken.
    fn subscribe(&self, device: DeviceId) -> watch::Receiver<u64>;
    fn wake(&self, devices: &[DeviceId]);
}

/// The in-process notifier: one `watch` channel per device with a
/// listener (a counter; receivers see every change since they last
/// looked, so no wake-up between a read and a wait is lost).
#[derive(Debug, Default)]
pub struct LocalWake {
    devices: Mutex<HashMap<DeviceId, watch::Sender<u64>>>,
}

impl Wake for LocalWake {
    fn subscribe(&self, device: DeviceId) -> watch::Receiver<u64> {
        let mut map = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        // Forget devices nobody listens to any more, now and then.
        if map.len() > 1024 && map.len().is_power_of_two() {
            map.retain(|_, tx| tx.receiver_count() > 0);
        }
        map.entry(device)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn wake(&self, devices: &[DeviceId]) {
        let mut map = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        for d in devices {
            if let Some(tx) = map.get(d) {
                if tx.receiver_count() == 0 {
                    map.remove(d);
                } else {
                    tx.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        }
    }
}

/// Wake-ups across nodes through NATS: a wake publishes an empty message on
/// `<prefix>.<device>`; every node subscribes to `<prefix>.>` and wakes its
/// own connections of that device. Core NATS subjects are enough here: a
/// wake-up carries no data and a lost one is made good by the next one or
/// by a reconnect, since the mailbox itself is durable in the database.
#[derive(Debug)]
pub struct NatsWake {
    local: std::sync::Arc<LocalWake>,
    client: async_nats::Client,
    prefix: String,
}

impl NatsWake {
    /// Connects to `url` (e.g. `nats://127.0.0.1:4222`) and starts the
    /// subscriber task. `prefix` is `accord.wake` in production; tests use
    /// a unique one.
    pub async fn connect(url: &str, prefix: &str) -> Result<std::sync::Arc<Self>, String> {
        use futures_util::StreamExt;
        let client = async_nats::connect(url).await.map_err(|e| e.to_string())?;
        let mut sub = client
            .subscribe(format!("{prefix}.>"))
            .await
            .map_err(|e| e.to_string())?;
        // Make sure the server has the subscription before anyone wakes.
        client.flush().await.map_err(|e| e.to_string())?;
        let local = std::sync::Arc::new(LocalWake::default());
        let weak = std::sync::Arc::downgrade(&local);
        let cut = prefix.len() + 1;
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let Some(local) = weak.upgrade() else { return };
                if let Some(d) = msg.subject.get(cut..).and_then(DeviceId::parse) {
                    local.wake(&[d]);
                }
            }
        });
        Ok(std::sync::Arc::new(NatsWake {
            local,
            client,
            prefix: prefix.to_owned(),
        }))
    }
}

impl Wake for NatsWake {
    fn subscribe(&self, device: DeviceId) -> watch::Receiver<u64> {
        self.local.subscribe(device)
    }

    fn wake(&self, devices: &[DeviceId]) {
        let client = self.client.clone();
        let subjects: Vec<String> = devices
            .iter()
            .map(|d| format!("{}.{d}", self.prefix))
            .collect();
        tokio::spawn(async move {
            for s in subjects {
                if let Err(e) = client.publish(s, Default::default()).await {
                    tracing::warn!(error = %e, "NATS wake-up not published");
                }
            }
        });
    }
}
