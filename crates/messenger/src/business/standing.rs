//! A business's standing: its quality rating (blocks and reports per
//! delivered message over 7 days) and its messaging-limit tier (up with
//! volume and quality not red, down on red), re-evaluated by the
//! messenger's background work every minute and whenever the business or
//! an operator reads its status. Each change is stored with its reason.

use super::{profile_of, Business, BusinessError, Result};
use accord_domain::business::{Quality, QUALITY_WINDOW_MS, TIER_WINDOW_MS};
use accord_domain::{AccountId, Timestamp};
use accord_messenger_wire::{BusinessStatus, WebhookStatus};

/// How long status events are kept once no webhook delivery is due: the
/// quality window (7 days) needs them, the console shows them, and 30
/// days is what the mailbox keeps an envelope.
pub const EVENT_RETENTION_MS: i64 = 30 * 24 * 3_600_000;

impl Business {
    /// Re-rates `business`, moves its tier if the rules say so, and gives
    /// its status.
    pub async fn evaluate(&self, business: AccountId) -> Result<BusinessStatus> {
        let row = self
            .inner
            .store
            .business(business)
            .await?
            .ok_or(BusinessError::UnknownBusiness)?;
        let now = self.now();
        let week = Timestamp(now.0 - QUALITY_WINDOW_MS);
        let day = Timestamp(now.0 - TIER_WINDOW_MS);
        let s7 = self.inner.store.signals(business, week).await?;
        let started_24h = self.inner.store.started_since(business, day).await?;
        let (quality, reason) = self
            .inner
            .config
            .quality
            .rate(s7.delivered, s7.blocks, s7.reports);
        let mut changed = false;
        if quality.as_str() != row.quality || reason != row.quality_reason {
            // The reason's counts change with every message; only a new
            // rating moves `quality_changed_at`.
            let at = if quality.as_str() != row.quality {
                now
            } else {
                row.quality_changed_at
            };
            self.inner
                .store
                .set_quality(business, quality.as_str(), &reason, at)
                .await?;
            changed = true;
        }
        if let Some(m) = self.inner.config.tiers.evaluate(
            row.tier as usize,
            quality,
            s7.started,
            row.tier_changed_at,
            now,
        ) {
            self.inner
                .store
                .set_tier(business, m.to as u32, &m.reason, now)
                .await?;
            self.inner
                .usage
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&business);
            changed = true;
        }
        if changed {
            self.forget(business);
        }
        let row = self
            .inner
            .store
            .business(business)
            .await?
            .ok_or(BusinessError::UnknownBusiness)?;
        let webhook = match self.inner.store.webhook(business).await? {
            None => None,
            Some(w) => {
                let h = self.inner.store.hook_stats(business).await?;
                Some(WebhookStatus {
                    url: w.url,
                    due: h.due,
                    failing: h.failing,
                    delivered: h.delivered,
                    given_up: h.given_up,
                })
            }
        };
        let quality = Quality::parse(&row.quality)?;
        let profile = profile_of(&row);
        Ok(BusinessStatus {
            business,
            display_name: row.display_name.clone(),
            verified: profile.verified,
            revoked: profile.revoked,
            quality,
            quality_reason: row.quality_reason.clone(),
            quality_changed_at: row.quality_changed_at,
            tier: row.tier,
            tier_limit: self.inner.config.tiers.limit(row.tier as usize),
            tier_reason: row.tier_reason.clone(),
            tier_changed_at: row.tier_changed_at,
            started_24h,
            delivered_7d: s7.delivered,
            blocks_7d: s7.blocks,
            reports_7d: s7.reports,
            marketing_paused: quality == Quality::Red,
            webhook,
        })
    }

    /// Re-evaluates every business (the background pass), and removes
    /// status events older than [`EVENT_RETENTION_MS`] that need no more
    /// webhook delivery; gives how many businesses it rated.
    pub async fn evaluate_all(&self) -> Result<usize> {
        let before = Timestamp(self.now().0 - EVENT_RETENTION_MS);
        self.inner.store.purge_events(before).await?;
        let all = self.inner.store.businesses().await?;
        for b in &all {
            self.evaluate(b.account).await?;
        }
        Ok(all.len())
    }
}
