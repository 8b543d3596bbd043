//! The group-commit writer of consent changes: callers hand over a
//! decided change and wait; one task writes whatever has queued since its
//! last commit in one transaction (`MessengerStore::record_consents`),
//! then answers each caller. Under load a commit carries many decisions,
//! so the cost of a transaction (an fsync on SQLite, a round trip on
//! PostgreSQL) is shared, as the mailbox's writer does for sends.
//!
//! With the ledger sharded, a batch locks only the head rows of the
//! shards it writes; writers of other nodes on other shards do not wait.

use accord_storage::{ConsentWrite, MessengerStore, StoreError};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The most changes one transaction carries.
pub const MAX_BATCH: usize = 512;

type Reply = oneshot::Sender<Result<(), StoreError>>;

/// A handle to the writer task (cheap to clone).
#[derive(Clone, Debug)]
pub struct ConsentWriter {
    tx: mpsc::Sender<(ConsentWrite, Reply)>,
}

impl ConsentWriter {
    /// Starts `writers` writer tasks over `store` (one suffices on SQLite,
    /// which has one writer; on PostgreSQL several overlap their commits).
    /// They stop when the last handle is dropped.
    pub fn start(store: Arc<dyn MessengerStore>, writers: usize) -> Self {
        let (tx, rx) = mpsc::channel::<(ConsentWrite, Reply)>(MAX_BATCH * 4);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..writers.max(1) {
            let rx = rx.clone();
            let store = store.clone();
            tokio::spawn(async move {
                loop {
                    let mut batch = Vec::new();
                    {
                        let mut rx = rx.lock().await;
                        match rx.recv().await {
                            Some(job) => batch.push(job),
                            None => return,
                        }
                        while batch.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(job) => batch.push(job),
                                Err(_) => break,
                            }
                        }
                    }
                    let (writes, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    match store.record_consents(&writes).await {
                        Ok(results) => {
                            for (reply, r) in replies.into_iter().zip(results) {
                                let _ = reply.send(r);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, changes = writes.len(), "consent group commit failed");
                            let message = e.to_string();
                            for reply in replies {
                                let _ = reply.send(Err(StoreError::WriteFailed(message.clone())));
                            }
                        }
                    }
                }
            });
        }
        ConsentWriter { tx }
    }

    /// Writes `w` in the next commit and waits for it.
    pub async fn write(&self, w: ConsentWrite) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let gone = || StoreError::WriteFailed("the consent writer stopped".into());
        self.tx.send((w, reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}
