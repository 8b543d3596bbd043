//! The one-time-key claimer: one task takes every claim of a device's
//! one-time key from a channel and claims whatever has queued up (up to
//! 256) in one transaction, so that a burst of new sessions (a business
//! starting conversations) pays one commit for many keys instead of one
//! each. Each caller is answered after the commit that removed its key.

use accord_domain::DeviceId;
use accord_storage::MailboxStore;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Claims per transaction.
const MAX_BATCH: usize = 256;

type Answer = oneshot::Sender<Result<Option<(String, bool)>, String>>;

/// The handle of the claimer task; the task ends when every handle is gone.
#[derive(Clone, Debug)]
pub struct Claimer {
    tx: mpsc::Sender<(DeviceId, Answer)>,
}

impl Claimer {
    pub fn spawn(store: Arc<dyn MailboxStore>) -> Self {
        let (tx, mut rx) = mpsc::channel::<(DeviceId, Answer)>(MAX_BATCH * 4);
        tokio::spawn(async move {
            let mut jobs = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
                let devices: Vec<DeviceId> = jobs.iter().map(|(d, _)| *d).collect();
                match store.claim_one_time_keys(&devices).await {
                    Ok(keys) => {
                        for ((_, answer), key) in jobs.drain(..).zip(keys) {
                            let _ = answer.send(Ok(key));
                        }
                    }
                    Err(e) => {
                        let e = e.to_string();
                        for (_, answer) in jobs.drain(..) {
                            let _ = answer.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Claimer { tx }
    }

    /// A one-time key of `device` (or its fallback key, `true`), removed
    /// once committed; `None` when it has neither.
    pub async fn claim(&self, device: DeviceId) -> Result<Option<(String, bool)>, String> {
        let (answer, rx) = oneshot::channel();
        self.tx
            .send((device, answer))
            .await
            .map_err(|_| "the claimer stopped".to_owned())?;
        rx.await.map_err(|_| "the claimer stopped".to_owned())?
    }
}
