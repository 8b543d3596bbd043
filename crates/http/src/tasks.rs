//! A service's running parts: its server and its background loops, all
//! stopped by one signal, and the one loop helper every background job
//! uses (the feed dispatcher, pseudonym refresh, credential revocations,
//! mailbox expiry).

use axum::Router;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A running part: it ends with `Ok` when stopped, or a server's I/O error.
pub type Task = tokio::task::JoinHandle<std::io::Result<()>>;

/// Sends the stop signal (also when dropped).
#[derive(Debug)]
pub struct Stopper(watch::Sender<bool>);

/// Receives the stop signal; cheap to clone.
#[derive(Clone, Debug)]
pub struct Stop(watch::Receiver<bool>);

/// A new signal, not yet sent.
pub fn stop_signal() -> (Stopper, Stop) {
    let (tx, rx) = watch::channel(false);
    (Stopper(tx), Stop(rx))
}

impl Stopper {
    /// Tells every task to stop.
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl Stop {
    /// Whether the signal was sent (or its sender is gone).
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once the signal is sent (or its sender is gone).
    pub async fn stopped(mut self) {
        while !*self.0.borrow_and_update() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Runs `step` until `stop`: again at once while it reports more work
/// (`true`), else after `every`. A step is never cut off in the middle;
/// the loop ends between steps.
pub fn spawn_loop<F, Fut>(every: Duration, stop: Stop, mut step: F) -> Task
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    tokio::spawn(async move {
        loop {
            let more = step().await;
            if stop.is_stopped() {
                return Ok(());
            }
            if more {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.clone().stopped() => return Ok(()),
            }
        }
    })
}

/// Serves `router` on `listener` until `stop`, then drains.
pub fn spawn_server(listener: TcpListener, router: Router, stop: Stop) -> Task {
    tokio::spawn(crate::serve(listener, router, stop.stopped()))
}
