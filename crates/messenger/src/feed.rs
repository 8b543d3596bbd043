//! The coordination feed's dispatcher (messenger → partner).
//!
//! The outbox (`feed_outbox`) is written in the same transaction as every
//! consent, device or account change. The dispatcher takes the accounts
//! with pending rows, and for each computes **at send time** what the
//! partner may hold: the purposes with an active grant in the ledger-backed
//! consent state now (default deny: unknown, deleted or restricted means
//! nothing), under the account's current `coordination` pseudonym. It
//! sends that state (see `accord_domain::coordination`), HMAC-signed, and
//! on the partner's answer records in one transaction the new holding, the
//! ledger entries (every propagation and every confirmed deletion) and the
//! removal of the outbox rows it covered. A failed delivery keeps the rows
//! and backs off; nothing is lost across restarts of either side.
//!
//! Each pass also sweeps the holdings: a grant that lapsed without an
//! event (a new policy's deadline passed) is queued for revocation.

use crate::service::{Messenger, ServiceError};
use accord_crypto::mac;
use accord_crypto::oprf::{KeyVersion, OprfPurpose};
use accord_domain::coordination::{
    digests_of, grant_entry, Citation, Digests, EventResult, FeedAck, FeedBatch, FeedEvent,
    Mismatches, ReconcileBucketList, ReconcileBucketOutcome, DIGESTS_PATH, INGEST_PATH, PARTNER,
    REASON_REVOKE, REASON_SHARE, RECONCILE_BUCKETS, RECONCILE_BUCKET_PATH,
};
use accord_domain::ledger::LedgerRecord;
use accord_domain::time::{HOUR_MS, SECOND_MS};
use accord_domain::transparency::SignedCheckpoint;
use accord_domain::{AccountId, LedgerEvent, PseudonymId, Purpose, Timestamp};
use accord_storage::{FeedDue, PartnerHolding};
use secrecy::{ExposeSecret, SecretSlice};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Where the partner is and how to sign for it.
#[derive(Clone)]
pub struct FeedConfig {
    /// Base URL of the partner service.
    pub partner_url: String,
    /// Shared HMAC secret.
    pub secret: Arc<SecretSlice<u8>>,
    /// Accounts per batch.
    pub batch: u32,
    /// A deletion still unconfirmed after this raises an alert.
    pub deletion_deadline_ms: i64,
    /// When set, every signed request sent is also recorded here, exactly
    /// as it went on the wire: for audits, and for tests that replay
    /// deliveries out of order.
    pub tap: Option<Arc<std::sync::Mutex<Vec<SentBatch>>>>,
}

/// A signed request exactly as it went on the wire.
#[derive(Clone, Debug)]
pub struct SentBatch {
    /// The partner's path (`accord_domain::coordination::INGEST_PATH`, …).
    pub path: &'static str,
    pub timestamp_ms: i64,
    pub nonce: String,
    pub signature: String,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for FeedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedConfig")
            .field("partner_url", &self.partner_url)
            .finish_non_exhaustive()
    }
}

impl FeedConfig {
    pub fn new(partner_url: impl Into<String>, secret: Vec<u8>) -> Self {
        FeedConfig {
            partner_url: partner_url.into().trim_end_matches('/').to_owned(),
            secret: Arc::new(SecretSlice::from(secret)),
            batch: 200,
            deletion_deadline_ms: 24 * HOUR_MS,
            tap: None,
        }
    }
}

/// What a reconciliation found and did. The buckets are reconciliation
/// buckets (pseudonyms by first byte, per purpose).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ReconcileReport {
    /// Reconciliation buckets compared.
    pub buckets_checked: usize,
    /// Reconciliation buckets whose digests differed.
    pub mismatched_buckets: usize,
    /// Records the partner held without a grant, now deleted.
    pub deleted_at_partner: u64,
    /// Accounts queued for resync (the partner lacked them).
    pub resync_requested: u64,
}

/// What one pass did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PassReport {
    pub accounts: usize,
    pub events_sent: usize,
    pub shared: usize,
    pub deletions_confirmed: usize,
    pub postponed: usize,
    pub swept: usize,
    pub failed: bool,
}

#[derive(Debug, Clone)]
pub struct Dispatcher {
    pub messenger: Messenger,
    pub config: FeedConfig,
    http: reqwest::Client,
}

/// One account's part of a batch.
struct Planned {
    due: FeedDue,
    holding: Option<PartnerHolding>,
    /// Purposes with an active grant now.
    granted: BTreeSet<Purpose>,
    /// (pseudonym, key version, purposes) the partner may hold now.
    desired: Option<(PseudonymId, KeyVersion, BTreeSet<Purpose>)>,
    revoke_id: Option<u64>,
    share_id: Option<u64>,
}

impl Dispatcher {
    pub fn new(messenger: Messenger, config: FeedConfig) -> Self {
        Dispatcher {
            messenger,
            config,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("reqwest client builds"),
        }
    }

    /// Queues a revocation for every holding whose grant lapsed.
    async fn sweep(&self, now: Timestamp) -> Result<usize, ServiceError> {
        let store = &self.messenger.store;
        let policies = store.policies().await?;
        let mut after = None;
        let mut n = 0;
        loop {
            let page = store.partner_holdings(after, 500).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(*last);
            for (account, h) in &page {
                let granted = match store.account(*account).await? {
                    Some(a) => a.consent.granted_purposes(&policies, now),
                    None => BTreeSet::new(),
                };
                if granted != h.purposes {
                    store.feed_enqueue(*account, "deadline", now).await?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    async fn plan(
        &self,
        due: FeedDue,
        version: Option<KeyVersion>,
        now: Timestamp,
    ) -> Result<Planned, ServiceError> {
        let store = &self.messenger.store;
        let policies = store.policies().await?;
        let holding = store.partner_holding(due.account).await?;
        let granted = match store.account(due.account).await? {
            Some(a) => a.consent.granted_purposes(&policies, now),
            None => BTreeSet::new(),
        };
        let desired = match version {
            Some(v) if !granted.is_empty() => store
                .pseudonym_of(due.account, OprfPurpose::Coordination, v)
                .await?
                .map(|p| (p, v, granted.clone())),
            _ => None,
        };
        Ok(Planned {
            due,
            holding,
            granted,
            desired,
            revoke_id: None,
            share_id: None,
        })
    }

    /// One pass: sweep, then deliver what is due. Returns what it did.
    pub async fn run_once(&self) -> Result<PassReport, ServiceError> {
        let store = &self.messenger.store;
        let now = self.messenger.now();
        let mut report = PassReport {
            swept: self.sweep(now).await?,
            ..Default::default()
        };
        let due = store.feed_due(now, self.config.batch).await?;
        if due.is_empty() {
            return Ok(report);
        }
        let version = match &self.messenger.keys {
            Some(k) => k.oprf.active_version(OprfPurpose::Coordination).await.ok(),
            None => None,
        };
        let mut plans = Vec::new();
        let mut events = Vec::new();
        let mut checkpoints = Vec::new();
        for d in due {
            let mut p = self.plan(d, version, now).await?;
            if !p.granted.is_empty() && p.desired.is_none() {
                // Granted, but the pseudonym is not computed yet: wait.
                store
                    .feed_postpone(p.due.account, now.plus_millis(5 * SECOND_MS))
                    .await?;
                report.postponed += 1;
                continue;
            }
            let base = (p.due.upto as u64) * 2;
            if let Some(h) = &p.holding {
                let same = p
                    .desired
                    .as_ref()
                    .is_some_and(|(ps, _, _)| *ps == h.pseudonym);
                if !same {
                    p.revoke_id = Some(base);
                    events.push(FeedEvent {
                        event_id: base,
                        pseudonym: h.pseudonym,
                        key_version: h.key_version.0,
                        purposes: BTreeSet::new(),
                        devices: vec![],
                        citations: vec![],
                        reason: REASON_REVOKE.into(),
                    });
                }
            }
            if let Some((ps, v, purposes)) = &p.desired {
                let devices = store
                    .devices(p.due.account)
                    .await?
                    .into_iter()
                    .map(|d| d.info)
                    .collect();
                let (purposes, citations) =
                    self.cite(p.due.account, purposes, &mut checkpoints).await?;
                p.share_id = Some(base + 1);
                events.push(FeedEvent {
                    event_id: base + 1,
                    pseudonym: *ps,
                    key_version: v.0,
                    purposes,
                    devices,
                    citations,
                    reason: REASON_SHARE.into(),
                });
            }
            plans.push(p);
        }
        report.accounts = plans.len();
        report.events_sent = events.len();
        let results = if events.is_empty() {
            BTreeMap::new()
        } else {
            // Every batch carries the newest checkpoint of every shard too,
            // so the partner witnesses the whole log as it grows.
            for c in self.messenger.log.checkpoints().await? {
                if !checkpoints.contains(&c) {
                    checkpoints.push(c);
                }
            }
            match self
                .post(
                    &FeedBatch {
                        events,
                        checkpoints,
                    },
                    now,
                )
                .await
            {
                Ok(ack) => ack.results.into_iter().map(|r| (r.event_id, r)).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "coordination feed delivery failed; will retry");
                    for p in &plans {
                        let backoff = (1i64 << p.due.attempts.min(8)) * SECOND_MS;
                        store
                            .feed_postpone(
                                p.due.account,
                                now.plus_millis(backoff.min(300 * SECOND_MS)),
                            )
                            .await?;
                    }
                    report.failed = true;
                    return Ok(report);
                }
            }
        };
        for p in plans {
            let (records, holding) = self.outcome(&p, &results)?;
            report.shared += records
                .iter()
                .filter(|r| matches!(r.event, LedgerEvent::Propagated { .. }))
                .count();
            report.deletions_confirmed += records
                .iter()
                .filter(|r| matches!(r.event, LedgerEvent::DeletionConfirmed { .. }))
                .count();
            store
                .feed_delivered(p.due.account, p.due.upto, holding.as_ref(), &records, now)
                .await?;
        }
        Ok(report)
    }

    /// The citations of a share of `purposes` for `account`: each
    /// purpose's latest grant, with its inclusion proof against a
    /// checkpoint signed now (added to `checkpoints`). A purpose whose
    /// grant is not in the ledger is not shared (unknown means deny).
    async fn cite(
        &self,
        account: AccountId,
        purposes: &BTreeSet<Purpose>,
        checkpoints: &mut Vec<SignedCheckpoint>,
    ) -> Result<(BTreeSet<Purpose>, Vec<Citation>), ServiceError> {
        let entries = self.messenger.store.ledger_for_account(account).await?;
        let mut cited = BTreeSet::new();
        let mut citations = Vec::new();
        for &purpose in purposes {
            let Some((shard, entry)) = grant_entry(&entries, account, purpose) else {
                tracing::error!(account = %account, purpose = %purpose, "granted, but no grant in the ledger: not shared");
                continue;
            };
            let (c, mut proofs) = self.messenger.log.prove(*shard, &[entry.seq]).await?;
            if !checkpoints.contains(&c) {
                checkpoints.push(c);
            }
            cited.insert(purpose);
            citations.push(Citation {
                purpose,
                entry: entry.clone(),
                inclusion: proofs.pop().expect("one proof per entry"),
            });
        }
        Ok((cited, citations))
    }

    /// The ledger records and new holding for one account, from the
    /// partner's answers. State-based, so a duplicate answer still gives
    /// the right records.
    #[allow(clippy::type_complexity)]
    fn outcome(
        &self,
        p: &Planned,
        results: &BTreeMap<u64, EventResult>,
    ) -> Result<(Vec<LedgerRecord>, Option<PartnerHolding>), ServiceError> {
        let account = p.due.account;
        let mut records = Vec::new();
        let get = |id: Option<u64>| -> Result<Option<&EventResult>, ServiceError> {
            match id {
                None => Ok(None),
                Some(id) => results.get(&id).map(Some).ok_or_else(|| {
                    ServiceError::Partner(format!("the partner did not answer event {id}"))
                }),
            }
        };
        let confirm =
            |records: &mut Vec<LedgerRecord>, r: &EventResult, purposes: BTreeSet<Purpose>| {
                if !purposes.is_empty() {
                    records.push(LedgerRecord {
                        at: r.confirmed_at,
                        account: Some(account),
                        event: LedgerEvent::DeletionConfirmed {
                            recipient: PARTNER.into(),
                            purposes,
                            event_id: r.event_id,
                            confirmed_at: r.confirmed_at,
                        },
                    });
                }
            };
        if let (Some(h), Some(r)) = (&p.holding, get(p.revoke_id)?) {
            confirm(
                &mut records,
                r,
                h.purposes.difference(&r.held).copied().collect(),
            );
        }
        let mut holding = None;
        if let (Some((ps, v, _)), Some(r)) = (&p.desired, get(p.share_id)?) {
            let before: BTreeSet<Purpose> = match &p.holding {
                Some(h) if h.pseudonym == *ps => h.purposes.clone(),
                _ => BTreeSet::new(),
            };
            confirm(
                &mut records,
                r,
                before.difference(&r.held).copied().collect(),
            );
            let new: BTreeSet<Purpose> = r.held.difference(&before).copied().collect();
            if !new.is_empty() {
                records.push(LedgerRecord {
                    at: r.confirmed_at,
                    account: Some(account),
                    event: LedgerEvent::Propagated {
                        recipient: PARTNER.into(),
                        purposes: new,
                        event_id: r.event_id,
                        key_version: v.0,
                    },
                });
            }
            if !r.held.is_empty() {
                holding = Some(PartnerHolding {
                    pseudonym: *ps,
                    key_version: *v,
                    purposes: r.held.clone(),
                });
            }
        } else if let (Some(h), None) = (&p.holding, p.revoke_id) {
            // Nothing sent: the holding stands as it was.
            holding = Some(h.clone());
        }
        Ok((records, holding))
    }

    async fn post(&self, batch: &FeedBatch, now: Timestamp) -> Result<FeedAck, String> {
        let body = serde_json::to_vec(batch).map_err(|e| e.to_string())?;
        let ack: FeedAck = self.send_signed(INGEST_PATH, body, now).await?;
        if ack.results.len() != batch.events.len() {
            return Err("the partner answered a different number of events".into());
        }
        Ok(ack)
    }

    async fn post_signed<T: serde::de::DeserializeOwned>(
        &self,
        path: &'static str,
        body: &impl Serialize,
    ) -> Result<T, String> {
        let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        self.send_signed(path, body, self.messenger.now()).await
    }

    /// POSTs `body` to the partner's `path`, signed over the method, the
    /// path, the time, a fresh nonce and the body: every call (a retry
    /// too) is a new request, which the partner accepts once.
    async fn send_signed<T: serde::de::DeserializeOwned>(
        &self,
        path: &'static str,
        body: Vec<u8>,
        now: Timestamp,
    ) -> Result<T, String> {
        let nonce = mac::nonce();
        let request = mac::SignedRequest {
            method: "POST",
            path,
            timestamp_ms: now.0,
            nonce: &nonce,
            body: &body,
        };
        let sig = mac::sign(self.config.secret.expose_secret(), &request);
        if let Some(tap) = &self.config.tap {
            tap.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(SentBatch {
                    path,
                    timestamp_ms: now.0,
                    nonce: nonce.clone(),
                    signature: sig.clone(),
                    body: body.clone(),
                });
        }
        let r = self
            .http
            .post(format!("{}{path}", self.config.partner_url))
            .header(mac::SIGNATURE_HEADER, sig)
            .header(mac::TIMESTAMP_HEADER, now.0.to_string())
            .header(mac::NONCE_HEADER, nonce)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !r.status().is_success() {
            return Err(format!("partner answered {}", r.status()));
        }
        r.json().await.map_err(|e| e.to_string())
    }

    /// Reconciliation: compares the digests of every reconciliation
    /// bucket (pseudonyms by first byte) of what the partner should hold
    /// with what it holds; the partner deletes what it should
    /// not hold, and what it lacks is queued for resync.
    pub async fn reconcile(&self) -> Result<ReconcileReport, ServiceError> {
        let store = &self.messenger.store;
        let mut by_purpose: BTreeMap<Purpose, Vec<(PseudonymId, AccountId)>> = BTreeMap::new();
        let mut after = None;
        loop {
            let page = store.partner_holdings(after, 1000).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(*last);
            for (a, h) in page {
                for p in &h.purposes {
                    by_purpose.entry(*p).or_default().push((h.pseudonym, a));
                }
            }
        }
        let digests = Digests {
            digests: Purpose::ALL
                .into_iter()
                .map(|p| {
                    let ps: Vec<PseudonymId> = by_purpose
                        .get(&p)
                        .map(|v| v.iter().map(|(x, _)| *x).collect())
                        .unwrap_or_default();
                    (p, digests_of(&ps))
                })
                .collect(),
        };
        let fail = |e: String| {
            ServiceError::Partner(format!("reconciliation with the partner failed: {e}"))
        };
        let mismatches: Mismatches = self
            .post_signed(DIGESTS_PATH, &digests)
            .await
            .map_err(fail)?;
        let mut report = ReconcileReport {
            buckets_checked: RECONCILE_BUCKETS * Purpose::ALL.len(),
            mismatched_buckets: mismatches.buckets.len(),
            ..Default::default()
        };
        let now = self.messenger.now();
        for (purpose, bucket) in mismatches.buckets {
            let members: Vec<&(PseudonymId, AccountId)> = by_purpose
                .get(&purpose)
                .map(|v| {
                    v.iter()
                        .filter(|(p, _)| p.reconcile_bucket() == bucket)
                        .collect()
                })
                .unwrap_or_default();
            let list = ReconcileBucketList {
                purpose,
                bucket,
                pseudonyms: members.iter().map(|(p, _)| *p).collect(),
            };
            let out: ReconcileBucketOutcome = self
                .post_signed(RECONCILE_BUCKET_PATH, &list)
                .await
                .map_err(fail)?;
            report.deleted_at_partner += out.deleted;
            for m in &out.missing {
                if let Some((_, a)) = members.iter().find(|(p, _)| p == m) {
                    store.feed_enqueue(*a, "resync", now).await?;
                    report.resync_requested += 1;
                }
            }
        }
        if report.mismatched_buckets > 0 {
            tracing::warn!(?report, "reconciliation found differences");
        }
        Ok(report)
    }

    /// Delivers until nothing is due (bounded), for tests and operators.
    pub async fn drain(&self, max_passes: usize) -> Result<PassReport, ServiceError> {
        let mut total = PassReport::default();
        for _ in 0..max_passes {
            let r = self.run_once().await?;
            let idle = r.events_sent == 0 && r.accounts == 0 && r.postponed == 0;
            total.accounts += r.accounts;
            total.events_sent += r.events_sent;
            total.shared += r.shared;
            total.deletions_confirmed += r.deletions_confirmed;
            total.postponed += r.postponed;
            total.swept += r.swept;
            total.failed |= r.failed;
            if idle || r.failed {
                break;
            }
        }
        Ok(total)
    }

    /// One pass of the dispatcher as `accord serve` runs it every second
    /// (`Application::background`): a reconciliation first when
    /// `reconcile`, then a delivery pass; it raises an alert (error log)
    /// while any work is unconfirmed past the deletion deadline. Failures
    /// are logged and retried on the next tick.
    pub async fn tick(&self, reconcile: bool) {
        if reconcile {
            if let Err(e) = self.reconcile().await {
                tracing::warn!(error = %e, "reconciliation failed");
            }
        }
        if let Err(e) = self.run_once().await {
            tracing::warn!(error = %e, "coordination feed pass failed");
        }
        if let Ok(s) = self.messenger.store.feed_stats().await {
            if let Some(oldest) = s.oldest_pending_at {
                if self.messenger.now().0 - oldest.0 > self.config.deletion_deadline_ms {
                    tracing::error!(
                        pending_accounts = s.pending_accounts,
                        "ALERT: coordination feed work unconfirmed past the deletion deadline"
                    );
                }
            }
        }
    }
}
