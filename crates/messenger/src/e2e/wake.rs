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
