//! The group-commit writer: one task takes every mailbox write (sends and
//! acks) from a channel, commits whatever has queued up (up to
//! `max_batch`) in one transaction, then answers each caller and hands
//! the stored items to the connections of their devices
//! ([`super::wake`]). Durability is per commit (`synchronous=FULL` on
//! SQLite), and nobody is answered before the commit that holds its
//! write, so a 202 always means "on disk".

use super::wake::Wake;
use super::RelayError;
use accord_storage::mailbox::{Ack, NewSend, WriteBatch};
use accord_storage::MailboxStore;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

enum Job {
    Send(NewSend, oneshot::Sender<Result<bool, String>>),
    Ack(Ack, oneshot::Sender<Result<u64, String>>),
}

/// The handle of the writer task; the task ends when every handle is gone.
#[derive(Clone, Debug)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    metrics: CommitMetrics,
}

/// What the writer records of each group commit, for the messenger's
/// metrics: writes per batch (sends and acks) and the commit's duration.
#[derive(Clone, Debug)]
pub struct CommitMetrics {
    pub batch_size: Histogram,
    pub duration_seconds: Histogram,
}

impl Default for CommitMetrics {
    fn default() -> Self {
        CommitMetrics {
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            duration_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
        }
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Writer {
    pub fn spawn(store: Arc<dyn MailboxStore>, wake: Arc<dyn Wake>, max_batch: usize) -> Self {
        let (tx, mut rx) = mpsc::channel::<Job>(max_batch.max(1) * 4);
        let metrics = CommitMetrics::default();
        let recorded = metrics.clone();
        tokio::spawn(async move {
            let mut jobs = Vec::with_capacity(max_batch);
            while rx.recv_many(&mut jobs, max_batch.max(1)).await > 0 {
                let mut batch = WriteBatch::default();
                let mut send_replies = Vec::new();
                let mut ack_replies = Vec::new();
                for job in jobs.drain(..) {
                    match job {
                        Job::Send(s, r) => {
                            batch.sends.push(s);
                            send_replies.push(r);
                        }
                        Job::Ack(a, r) => {
                            batch.acks.push(a);
                            ack_replies.push(r);
                        }
                    }
                }
                let started = Instant::now();
                let committed = store.commit_batch(&batch).await;
                recorded
                    .duration_seconds
                    .observe(started.elapsed().as_secs_f64());
                recorded
                    .batch_size
                    .observe((batch.sends.len() + batch.acks.len()) as f64);
                match committed {
                    Ok(out) => {
                        for (r, dup) in send_replies.into_iter().zip(out.duplicate) {
                            let _ = r.send(Ok(dup));
                        }
                        for (r, n) in ack_replies.into_iter().zip(out.acked) {
                            let _ = r.send(Ok(n));
                        }
                        wake.deliver(out.items);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "mailbox group commit failed");
                        let msg = e.to_string();
                        for r in send_replies {
                            let _ = r.send(Err(msg.clone()));
                        }
                        for r in ack_replies {
                            let _ = r.send(Err(msg.clone()));
                        }
                    }
                }
            }
        });
        Writer { tx, metrics }
    }

    /// The histograms of this writer's commits.
    pub fn metrics(&self) -> &CommitMetrics {
        &self.metrics
    }

    /// Stores a send; `true` if it was a duplicate. Returns after commit.
    pub async fn send(&self, s: NewSend) -> Result<bool, RelayError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job::Send(s, tx))
            .await
            .map_err(|_| RelayError::Unavailable)?;
        rx.await
            .map_err(|_| RelayError::Unavailable)?
            .map_err(|_| RelayError::Unavailable)
    }

    /// Applies an ack; how many items it acked. Returns after commit.
    pub async fn ack(&self, a: Ack) -> Result<u64, RelayError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job::Ack(a, tx))
            .await
            .map_err(|_| RelayError::Unavailable)?;
        rx.await
            .map_err(|_| RelayError::Unavailable)?
            .map_err(|_| RelayError::Unavailable)
    }
}
