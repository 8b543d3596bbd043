//! A business send's admission. In this order:
//!
//! 1. the business's throughput limit (`rate_limited`);
//! 2. the sending device is one of the business's, the recipient is
//!    someone else, and the metadata is well formed (400 otherwise);
//! 3. the template: approved (`template_not_approved`), not paused
//!    (`template_paused`), of the category the metadata names;
//! 4. the user's block (`blocked_by_user`);
//! 5. a `service` message inside the window (`outside_service_window`);
//!    a template with the user's opt-in, and marketing with the marketing
//!    opt-in (`not_opted_in`);
//! 6. the user's mutes (`muted_by_user`);
//! 7. quality: marketing is paused while it is red (`quality_paused`);
//! 8. the tier: a template outside the service window starts a
//!    conversation, and a business starts at most its tier's limit of
//!    them with unique users per rolling 24 hours (`tier_limit_reached`).
//!
//! Every refusal after step 2 is recorded as a `failed` status event with
//! its code (rate limits are not: a flood must not write), and nothing of
//! a refused send is stored. An admitted send goes to the relay with its
//! metadata; its `sent` event is committed with its envelopes.

use super::{Business, BusinessError, Result};
use accord_domain::business::{Category, Quality, Refusal, TIER_WINDOW_MS};
use accord_domain::{AccountId, Timestamp};
use accord_messenger_wire::{BusinessSend, BusinessSent};
use accord_storage::business::{BusinessRow, Controls, FailedEvent};
use accord_storage::mailbox::BusinessSend as SentStatus;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// How long a node trusts its count of a business's conversations in the
/// tier window before it reads it again (sends on this node in between
/// are counted in memory; other nodes' are seen at the next read).
const USAGE_REFRESH: Duration = Duration::from_secs(2);

/// A business's conversations started in the tier window, as this node
/// counts them.
pub(super) struct Usage {
    counted: u64,
    read_at: Instant,
    /// Users this node started conversations with since the read.
    extra: HashSet<AccountId>,
}

impl Business {
    /// Admits and sends one business message (see the module docs).
    pub async fn send(&self, business: &BusinessRow, s: BusinessSend) -> Result<BusinessSent> {
        let b = business.account;
        if self.inner.limits.take(&b).is_err() {
            return Err(BusinessError::Refused(Refusal::RateLimited));
        }
        let devices = self.inner.relay.devices_of(b).await?.unwrap_or_default();
        if !devices.contains(&s.device_id) {
            return Err(BusinessError::BadRequest(
                "device_id is not a device of this business".into(),
            ));
        }
        if s.to_account == b {
            return Err(BusinessError::BadRequest(
                "a business does not message itself".into(),
            ));
        }
        let category = s.meta.category;
        if (category == Category::Service) != s.meta.template.is_none() {
            return Err(BusinessError::BadRequest(
                "a service message names no template, and a template message is not service".into(),
            ));
        }
        let message_id = s.send.client_message_id().as_str().to_owned();
        match self.admit(business, &s).await {
            Ok(initiated) => {
                let out = self
                    .inner
                    .relay
                    .send_business(
                        b,
                        s.device_id,
                        s.to_account,
                        s.send,
                        &s.meta,
                        SentStatus {
                            category: category.as_str().to_owned(),
                            initiated,
                        },
                    )
                    .await?;
                Ok(BusinessSent {
                    message_id,
                    accepted: out.accepted,
                    duplicate: out.duplicate,
                })
            }
            Err(BusinessError::Refused(r)) => {
                self.inner
                    .store
                    .record_failed(&FailedEvent {
                        business: b,
                        message_id,
                        recipient: s.to_account,
                        category: Some(category.as_str().to_owned()),
                        code: r.code().to_owned(),
                        at: self.now(),
                    })
                    .await?;
                Err(BusinessError::Refused(r))
            }
            Err(e) => Err(e),
        }
    }

    /// Steps 3 to 8; `Ok(true)` when the send starts a conversation.
    async fn admit(&self, business: &BusinessRow, s: &BusinessSend) -> Result<bool> {
        let b = business.account;
        let category = s.meta.category;
        if let Some(t) = &s.meta.template {
            let row = self
                .template(b, &t.name, &t.language, t.version)
                .await?
                .ok_or(BusinessError::Refused(Refusal::TemplateNotApproved))?;
            match row.status.as_str() {
                "approved" => {}
                "paused" => return Err(BusinessError::Refused(Refusal::TemplatePaused)),
                _ => return Err(BusinessError::Refused(Refusal::TemplateNotApproved)),
            }
            if row.category != category.as_str() {
                return Err(BusinessError::BadRequest(format!(
                    "template {} version {} is {}, not {}",
                    row.name,
                    row.version,
                    row.category,
                    category.as_str()
                )));
            }
        }
        let now = self.now();
        let state = self.recipient_state(b, s.to_account).await?;
        if state.blocked {
            return Err(BusinessError::Refused(Refusal::BlockedByUser));
        }
        let window_open = state
            .last_inbound_at
            .is_some_and(|t| now.0 - t.0 < accord_domain::business::SERVICE_WINDOW_MS);
        let controls = state
            .controls
            .unwrap_or_else(|| Controls::none(s.to_account, b));
        match category {
            Category::Service => {
                if !window_open {
                    return Err(BusinessError::Refused(Refusal::OutsideServiceWindow));
                }
            }
            Category::Marketing => {
                if !(controls.opted_in && controls.marketing) {
                    return Err(BusinessError::Refused(Refusal::NotOptedIn));
                }
            }
            Category::Utility | Category::Authentication => {
                if !controls.opted_in {
                    return Err(BusinessError::Refused(Refusal::NotOptedIn));
                }
            }
        }
        if controls.muted.iter().any(|m| m == category.as_str()) {
            return Err(BusinessError::Refused(Refusal::MutedByUser));
        }
        if category == Category::Marketing && business.quality == Quality::Red.as_str() {
            return Err(BusinessError::Refused(Refusal::QualityPaused));
        }
        let initiated = category != Category::Service && !window_open;
        if initiated && !state.started {
            self.count_conversation(business, s.to_account).await?;
            self.note_started(b, s.to_account);
        }
        Ok(initiated)
    }

    /// Counts a new conversation against the tier's limit, or refuses it.
    async fn count_conversation(&self, business: &BusinessRow, to: AccountId) -> Result<()> {
        let Some(limit) = self.inner.config.tiers.limit(business.tier as usize) else {
            return Ok(());
        };
        let b = business.account;
        let fresh = {
            let usage = self.inner.usage.lock().unwrap_or_else(|e| e.into_inner());
            usage
                .get(&b)
                .is_some_and(|u| u.read_at.elapsed() < USAGE_REFRESH)
        };
        if !fresh {
            let now = self.now();
            let since = Timestamp(now.0 - TIER_WINDOW_MS);
            let counted = self.inner.store.started_since(b, since).await?;
            let mut usage = self.inner.usage.lock().unwrap_or_else(|e| e.into_inner());
            usage.insert(
                b,
                Usage {
                    counted,
                    read_at: Instant::now(),
                    extra: HashSet::new(),
                },
            );
        }
        let mut usage = self.inner.usage.lock().unwrap_or_else(|e| e.into_inner());
        let u = usage.get_mut(&b).expect("inserted above");
        if u.extra.contains(&to) {
            return Ok(());
        }
        if u.counted + u.extra.len() as u64 >= limit {
            return Err(BusinessError::Refused(Refusal::TierLimitReached));
        }
        u.extra.insert(to);
        Ok(())
    }

    /// The keys of `target`'s devices, for a business's device: only for a
    /// user who opted in to the business or wrote to it in the service
    /// window, or the business itself; `UnknownRecipient` for anyone else,
    /// user or not. Counted against the business's throughput limit.
    pub async fn claim(
        &self,
        business: &BusinessRow,
        target: crate::relay::ClaimTarget,
    ) -> Result<accord_messenger_wire::Claimed> {
        let b = business.account;
        if self.inner.limits.take(&b).is_err() {
            return Err(BusinessError::Refused(Refusal::RateLimited));
        }
        let account = match self.inner.relay.claim_target(target).await {
            Ok(a) => a,
            Err(crate::relay::RelayError::NotFound) => return Err(BusinessError::UnknownRecipient),
            Err(e) => return Err(e.into()),
        };
        if account != b {
            let now = self.now();
            let state = self.recipient_state(b, account).await?;
            let opted_in = state.controls.as_ref().is_some_and(|c| c.opted_in);
            let window_open = state
                .last_inbound_at
                .is_some_and(|t| now.0 - t.0 < accord_domain::business::SERVICE_WINDOW_MS);
            if !opted_in && !window_open {
                return Err(BusinessError::UnknownRecipient);
            }
        }
        // `claim_target` found the account: no second read.
        Ok(self.inner.relay.claim_devices(account).await?)
    }
}
