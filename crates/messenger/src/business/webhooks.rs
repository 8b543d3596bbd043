//! Status webhooks: the `business_events` outbox, drained by a
//! background pass (a second apart, or at once while there is more).
//!
//! Each pass takes up to 500 due events of businesses with a webhook and
//! posts them, up to 100 a request, in the envelope of the hosted
//! business APIs' status webhooks, signed with `X-Hub-Signature-256:
//! sha256=<hex>` (HMAC-SHA256 of the raw body under the webhook's
//! secret). A 2xx marks them delivered; anything else (an error status, a
//! timeout, a refused connection) retries them after 2^attempts seconds
//! (at most an hour) until 24 hours after the event, then gives up and
//! counts them. The outbox is in the database: a restart of either side
//! loses nothing, and delivery is at least once (receivers deduplicate on
//! `event_id`). The businesses of one pass are posted to concurrently,
//! and the pass is apart from message delivery, so a slow or failing
//! endpoint never slows a send.

use super::{Business, BusinessError, Result};
use accord_crypto::mac::{hub_signature, HUB_SIGNATURE_HEADER};
use accord_crypto::token::BearerToken;
use accord_domain::business::Refusal;
use accord_domain::{AccountId, Timestamp};
use accord_messenger_wire::{
    EventView, SetWebhook, WebhookChange, WebhookCreated, WebhookEntry, WebhookError,
    WebhookOutcome, WebhookPayload, WebhookStatusEvent, WebhookValue,
};
use accord_storage::business::{EventRow, WebhookRow};
use std::collections::BTreeMap;

/// Due events read per pass.
const EVENTS_PER_PASS: u32 = 500;
/// Events per request.
const EVENTS_PER_REQUEST: usize = 100;
/// Longest pause between two attempts.
const MAX_BACKOFF_MS: i64 = 3_600_000;

/// `https://`, or `http://` to loopback (a receiver on the same machine).
fn check_url(url: &str) -> Result<()> {
    let u = reqwest::Url::parse(url)
        .map_err(|_| BusinessError::BadRequest("the webhook URL does not parse".into()))?;
    let host = u.host_str().unwrap_or("");
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback());
    if url.len() > 2048 || !(u.scheme() == "https" || (u.scheme() == "http" && loopback)) {
        return Err(BusinessError::BadRequest(
            "a webhook URL is https://, or http:// to a loopback address, at most 2,048 characters"
                .into(),
        ));
    }
    Ok(())
}

fn status_event(e: &EventRow) -> WebhookStatusEvent {
    WebhookStatusEvent {
        event_id: format!("evt_{}", e.id),
        id: e.message_id.clone(),
        status: e.status.clone(),
        timestamp: (e.at.0 / 1000).to_string(),
        recipient_id: e.recipient.to_string(),
        category: e.category.clone(),
        errors: e
            .code
            .iter()
            .map(|c| {
                let r = Refusal::parse(c);
                WebhookError {
                    code: r.map_or(131_000, Refusal::number),
                    title: c.clone(),
                    message: r.map_or("failed", Refusal::message).to_owned(),
                }
            })
            .collect(),
        test: false,
    }
}

fn payload(business: AccountId, statuses: Vec<WebhookStatusEvent>) -> WebhookPayload {
    WebhookPayload {
        object: "accord_business_account".into(),
        entry: vec![WebhookEntry {
            id: business.to_string(),
            changes: vec![WebhookChange {
                field: "messages".into(),
                value: WebhookValue { statuses },
            }],
        }],
    }
}

impl Business {
    /// Registers (or replaces) the business's webhook; the secret is in
    /// the answer only.
    pub async fn set_webhook(&self, business: AccountId, s: SetWebhook) -> Result<WebhookCreated> {
        check_url(&s.url)?;
        let secret = BearerToken::generate().reveal().to_owned();
        self.inner
            .store
            .put_webhook(&WebhookRow {
                business,
                url: s.url.clone(),
                secret: secret.clone(),
                created_at: self.now(),
            })
            .await?;
        Ok(WebhookCreated { url: s.url, secret })
    }

    pub async fn delete_webhook(&self, business: AccountId) -> Result<()> {
        if !self.inner.store.delete_webhook(business).await? {
            return Err(BusinessError::NotFound);
        }
        Ok(())
    }

    /// The business's newest events, as its console shows them.
    pub async fn events(&self, business: AccountId, limit: u32) -> Result<Vec<EventView>> {
        Ok(self
            .inner
            .store
            .events(business, limit.clamp(1, 500))
            .await?
            .into_iter()
            .map(|e| EventView {
                event_id: format!("evt_{}", e.id),
                webhook: match e.hook_state {
                    0 => "due",
                    1 => "delivered",
                    2 => "given_up",
                    _ => "no_webhook",
                }
                .into(),
                message_id: e.message_id,
                recipient: e.recipient,
                status: e.status,
                category: e.category,
                code: e.code,
                at: e.at,
                attempts: e.attempts,
                last_error: e.last_error,
            })
            .collect())
    }

    /// Posts one signed test event to the business's webhook now.
    pub async fn test_webhook(&self, business: AccountId) -> Result<WebhookOutcome> {
        let w = self
            .inner
            .store
            .webhook(business)
            .await?
            .ok_or(BusinessError::NotFound)?;
        let event_id = format!("evt_test_{}", uuid::Uuid::new_v4().simple());
        let body = payload(
            business,
            vec![WebhookStatusEvent {
                event_id: event_id.clone(),
                id: "test".into(),
                status: "sent".into(),
                timestamp: (self.now().0 / 1000).to_string(),
                recipient_id: business.to_string(),
                category: None,
                errors: Vec::new(),
                test: true,
            }],
        );
        let (status, error) = self.post(&w, &body).await;
        Ok(WebhookOutcome {
            url: w.url,
            event_id,
            delivered: status.is_some_and(|s| (200..300).contains(&s)),
            status,
            error,
        })
    }

    /// One signed POST; the status if the receiver answered, and what went
    /// wrong otherwise.
    async fn post(&self, w: &WebhookRow, body: &WebhookPayload) -> (Option<u16>, Option<String>) {
        let bytes = serde_json::to_vec(body).expect("a payload serialises");
        let sig = hub_signature(w.secret.as_bytes(), &bytes);
        let r = self
            .inner
            .http
            .post(&w.url)
            .header("content-type", "application/json")
            .header(HUB_SIGNATURE_HEADER, sig)
            .body(bytes)
            .send()
            .await;
        match r {
            Ok(resp) => {
                let s = resp.status().as_u16();
                let err =
                    (!resp.status().is_success()).then(|| format!("the receiver answered {s}"));
                (Some(s), err)
            }
            Err(e) if e.is_timeout() => (None, Some("the receiver did not answer in time".into())),
            Err(e) if e.is_connect() => (None, Some("could not connect to the receiver".into())),
            Err(_) => (None, Some("the request failed".into())),
        }
    }

    /// One pass of the dispatcher; `true` when it may have left due events
    /// behind (run again at once).
    pub async fn dispatch_webhooks(&self) -> Result<bool> {
        let now = self.now();
        let due = self.inner.store.due_events(now, EVENTS_PER_PASS).await?;
        let more = due.len() as u32 == EVENTS_PER_PASS;
        let mut by_business: BTreeMap<AccountId, (WebhookRow, Vec<EventRow>)> = BTreeMap::new();
        for (e, w) in due {
            by_business
                .entry(e.business)
                .or_insert_with(|| (w, Vec::new()))
                .1
                .push(e);
        }
        let runs = by_business.into_values().map(|(w, events)| async move {
            for chunk in events.chunks(EVENTS_PER_REQUEST) {
                let body = payload(w.business, chunk.iter().map(status_event).collect());
                let ids: Vec<i64> = chunk.iter().map(|e| e.id).collect();
                let (status, error) = self.post(&w, &body).await;
                if status.is_some_and(|s| (200..300).contains(&s)) {
                    self.inner.store.mark_hooked(&ids).await?;
                    continue;
                }
                let error = error.unwrap_or_else(|| "failed".into());
                let mut retry = Vec::new();
                let mut give_up = Vec::new();
                let mut next = now;
                for e in chunk {
                    if now.0 - e.at.0 >= self.inner.config.webhook_give_up_ms {
                        give_up.push(e.id);
                    } else {
                        let backoff = (1_000i64 << e.attempts.min(22)).min(MAX_BACKOFF_MS);
                        next = Timestamp(now.0 + backoff);
                        retry.push(e.id);
                    }
                }
                self.inner
                    .store
                    .reschedule(&retry, Some(next), &error)
                    .await?;
                self.inner.store.reschedule(&give_up, None, &error).await?;
                // The rest of this business's events wait for the retry.
                break;
            }
            Ok::<(), BusinessError>(())
        });
        for r in futures_util::future::join_all(runs).await {
            r?;
        }
        Ok(more)
    }
}
