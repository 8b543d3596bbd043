//! The messenger's own series, next to the request series of the shared
//! layer. What an operator pages on:
//!
//! - the coordination feed (read from the store before each scrape):
//!   `feed_pending_events`, `feed_pending_accounts`,
//!   `feed_failing_accounts`, `feed_held_accounts`, and `feed_lag_seconds`,
//!   the age of the oldest event the partner has not confirmed: every
//!   withdrawal and deletion is such an event until the partner confirms
//!   its deletion, so this is also the age of the oldest unconfirmed
//!   deletion (alert past 24 h, as `GET /v1/admin/feed` does);
//! - `credential_revocations_pending`: deleted devices whose key-service
//!   credential is not yet revoked (counted up to 10,000);
//! - `mailbox_pending_items`: envelopes and receipts not yet acked;
//! - the group commit, recorded by the writer as it commits:
//!   `mailbox_commit_batch_size` (writes per transaction) and
//!   `mailbox_commit_duration_seconds`.
//!
//! No label here carries an account, device or number.

use super::AppState;
use accord_http::metrics::count;
use accord_http::{Metrics, MetricsBuilder};
use prometheus_client::metrics::gauge::Gauge;

#[derive(Clone)]
struct Gauges {
    pending_events: Gauge,
    pending_accounts: Gauge,
    failing_accounts: Gauge,
    held_accounts: Gauge,
    lag_seconds: Gauge,
    revocations_pending: Gauge,
    mailbox_pending: Gauge,
}

/// The messenger's registry: the shared request series and its own.
pub fn build(state: &AppState) -> Metrics {
    let mut b = MetricsBuilder::new("messenger");
    let g = Gauges {
        pending_events: b.gauge("feed_pending_events", "Coordination feed events not yet confirmed by the partner"),
        pending_accounts: b.gauge("feed_pending_accounts", "Accounts with feed events not yet confirmed"),
        failing_accounts: b.gauge("feed_failing_accounts", "Pending accounts whose delivery failed at least once"),
        held_accounts: b.gauge("feed_held_accounts", "Accounts the partner holds something of"),
        lag_seconds: b.gauge("feed_lag_seconds", "Age of the oldest feed event (share, withdrawal or deletion) the partner has not confirmed"),
        revocations_pending: b.gauge("credential_revocations_pending", "Deleted devices whose key-service credential is not revoked yet (up to 10,000)"),
        mailbox_pending: b.gauge("mailbox_pending_items", "Envelopes and receipts stored and not yet acked"),
    };
    let r = b.registry();
    let commits = state.e2e.commit_metrics();
    r.register(
        "mailbox_commit_batch_size",
        "Writes (sends and acks) per mailbox group commit",
        commits.batch_size.clone(),
    );
    r.register(
        "mailbox_commit_duration_seconds",
        "Duration of a mailbox group commit",
        commits.duration_seconds.clone(),
    );
    let state = state.clone();
    b.on_scrape(move || {
        let (state, g) = (state.clone(), g.clone());
        async move {
            if let Err(e) = refresh(&state, &g).await {
                tracing::warn!(error = %e, "messenger metrics not refreshed");
            }
        }
    });
    b.build()
}

async fn refresh(s: &AppState, g: &Gauges) -> Result<(), Box<dyn std::error::Error>> {
    let store = &s.messenger.store;
    let stats = store.feed_stats().await?;
    let now = s.messenger.now();
    g.pending_events.set(count(stats.pending_events));
    g.pending_accounts.set(count(stats.pending_accounts));
    g.failing_accounts.set(count(stats.failing_accounts));
    g.held_accounts.set(count(stats.held_accounts));
    g.lag_seconds.set(
        stats
            .oldest_pending_at
            .map_or(0, |t| (now.0 - t.0).max(0) / 1000),
    );
    g.revocations_pending
        .set(count(store.pending_revocations(10_000).await?.len() as u64));
    g.mailbox_pending.set(count(s.e2e.pending_items().await?));
    Ok(())
}
