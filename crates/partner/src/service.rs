//! The partner's use cases, independent of HTTP.

use accord_crypto::mac;
use accord_crypto::token::{BearerToken, TokenHash};
use accord_domain::coordination::{
    digests_of, parse_pseudonym_hex, pseudonym_hex, Digests, FeedAck, FeedBatch, Mismatches,
    ReconcileBucketList, ReconcileBucketOutcome, RECONCILE_BUCKETS,
};
use accord_domain::{Clock, Purpose, Timestamp};
use accord_storage::partner::{IncomingEvent, PartnerStats, PartnerStore, PartnerUser, Record};
use accord_storage::StoreError;
use secrecy::{ExposeSecret, SecretSlice};
use std::sync::Arc;
use uuid::Uuid;

/// At most this many events per ingest batch.
pub const MAX_BATCH: usize = 1000;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PartnerError {
    #[error("feed signature: {0}")]
    Signature(#[from] mac::MacError),
    #[error("invalid feed batch: {0}")]
    BadBatch(String),
    #[error("purpose `{0}` was not granted for this person")]
    PurposeNotGranted(Purpose),
    #[error("{0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error("the key service is not available: {0}")]
    KeyService(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct PartnerService {
    pub store: Arc<dyn PartnerStore>,
    pub clock: Arc<dyn Clock>,
    /// The partner's client at the key service: it forwards its users'
    /// blinded elements (it never sees their numbers) under its own quota.
    pub oprf: Option<Arc<dyn accord_keyd_client::Oprf>>,
    /// Shared with the messenger; authenticates the feed.
    feed_secret: Arc<SecretSlice<u8>>,
}

impl std::fmt::Debug for PartnerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerService").finish_non_exhaustive()
    }
}

impl PartnerService {
    pub fn new(store: Arc<dyn PartnerStore>, clock: Arc<dyn Clock>, feed_secret: Vec<u8>) -> Self {
        PartnerService {
            store,
            clock,
            oprf: None,
            feed_secret: Arc::new(SecretSlice::from(feed_secret)),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Verifies and applies a signed batch, in order.
    pub async fn ingest(
        &self,
        timestamp_ms: i64,
        signature: &str,
        body: &[u8],
    ) -> Result<FeedAck, PartnerError> {
        let now = self.now();
        mac::verify(
            self.feed_secret.expose_secret(),
            timestamp_ms,
            now.0,
            body,
            signature,
        )?;
        let batch: FeedBatch =
            serde_json::from_slice(body).map_err(|e| PartnerError::BadBatch(e.to_string()))?;
        if batch.events.len() > MAX_BATCH {
            return Err(PartnerError::BadBatch(format!(
                "more than {MAX_BATCH} events"
            )));
        }
        // Parse everything before applying anything.
        let events: Vec<IncomingEvent> = batch
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let pseudonym = parse_pseudonym_hex(&e.pseudonym).ok_or_else(|| {
                    PartnerError::BadBatch(format!("event {i}: pseudonym must be 64 hex digits"))
                })?;
                if !e.purposes.is_empty() && e.devices.is_empty() {
                    return Err(PartnerError::BadBatch(format!(
                        "event {i}: a share carries device information"
                    )));
                }
                Ok(IncomingEvent {
                    event_id: e.event_id,
                    pseudonym,
                    key_version: e.key_version,
                    purposes: e.purposes.clone(),
                    devices: if e.purposes.is_empty() {
                        vec![]
                    } else {
                        e.devices.clone()
                    },
                    ledger_ref: e.ledger_ref.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        let mut results = Vec::with_capacity(events.len());
        for e in &events {
            let r = self.store.apply_event(e, now).await?;
            if !r.deleted.is_empty() {
                tracing::info!(event = e.event_id, deleted = ?r.deleted, "deleted on revocation");
            }
            results.push(r);
        }
        // Tombstones only need to outlive the signature's freshness window.
        self.store
            .purge_tombstones(now.plus_millis(-3_600_000))
            .await?;
        Ok(FeedAck { results })
    }

    /// Reconciliation step 1: which reconciliation buckets (pseudonyms by
    /// first byte) differ from the messenger's.
    pub async fn compare_digests(
        &self,
        timestamp_ms: i64,
        signature: &str,
        body: &[u8],
    ) -> Result<Mismatches, PartnerError> {
        mac::verify(
            self.feed_secret.expose_secret(),
            timestamp_ms,
            self.now().0,
            body,
            signature,
        )?;
        let d: Digests =
            serde_json::from_slice(body).map_err(|e| PartnerError::BadBatch(e.to_string()))?;
        let mut buckets = Vec::new();
        for (purpose, theirs) in &d.digests {
            if theirs.len() != RECONCILE_BUCKETS {
                return Err(PartnerError::BadBatch(format!(
                    "{RECONCILE_BUCKETS} digests per purpose expected"
                )));
            }
            let ours = digests_of(&self.store.pseudonyms(*purpose).await?);
            for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
                if a != b {
                    buckets.push((*purpose, i as u8));
                }
            }
        }
        Ok(Mismatches { buckets })
    }

    /// Reconciliation step 2, for one reconciliation bucket: deletes what
    /// the messenger does not list, and names what it lists that is not
    /// held.
    pub async fn reconcile_bucket(
        &self,
        timestamp_ms: i64,
        signature: &str,
        body: &[u8],
    ) -> Result<ReconcileBucketOutcome, PartnerError> {
        mac::verify(
            self.feed_secret.expose_secret(),
            timestamp_ms,
            self.now().0,
            body,
            signature,
        )?;
        let l: ReconcileBucketList =
            serde_json::from_slice(body).map_err(|e| PartnerError::BadBatch(e.to_string()))?;
        let listed: std::collections::BTreeSet<[u8; 32]> = l
            .pseudonyms
            .iter()
            .map(|h| {
                parse_pseudonym_hex(h)
                    .ok_or_else(|| PartnerError::BadBatch("pseudonym must be 64 hex digits".into()))
            })
            .collect::<Result<_, _>>()?;
        let held: std::collections::BTreeSet<[u8; 32]> = self
            .store
            .pseudonyms(l.purpose)
            .await?
            .into_iter()
            .filter(|p| p[0] == l.bucket)
            .collect();
        let mut deleted = 0;
        for p in held.difference(&listed) {
            if self.store.delete_held(p, l.purpose).await? {
                deleted += 1;
            }
        }
        if deleted > 0 {
            tracing::warn!(
                purpose = l.purpose.as_str(),
                bucket = l.bucket,
                deleted,
                "reconciliation deleted records the messenger does not share"
            );
        }
        Ok(ReconcileBucketOutcome {
            deleted,
            missing: listed.difference(&held).map(pseudonym_hex).collect(),
        })
    }

    /// With a key-service client, for the blinded-evaluation proxy.
    pub fn with_oprf(mut self, oprf: Arc<dyn accord_keyd_client::Oprf>) -> Self {
        self.oprf = Some(oprf);
        self
    }

    /// A read of messenger-derived data, for a named purpose.
    pub async fn read(
        &self,
        pseudonym: &[u8; 32],
        purpose: Purpose,
    ) -> Result<Record, PartnerError> {
        match self.store.record(pseudonym, purpose).await? {
            Some(r) => Ok(r),
            None => {
                self.store.count_denied_read(purpose).await?;
                tracing::info!(
                    purpose = purpose.as_str(),
                    "read refused: purpose not granted"
                );
                Err(PartnerError::PurposeNotGranted(purpose))
            }
        }
    }

    /// Registers a partner user. `phone_pseudonym` is the user's
    /// `coordination` pseudonym, computed by their client through the key
    /// service (blinded); the partner never sees the number.
    pub async fn create_user(
        &self,
        name: &str,
        phone_pseudonym: Option<[u8; 32]>,
    ) -> Result<(PartnerUser, String), PartnerError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(PartnerError::BadRequest(
                "name must be 1 to 100 printable characters".into(),
            ));
        }
        let token = BearerToken::generate();
        let user = PartnerUser {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            phone_pseudonym,
            ads_personalisation: false,
            created_at: self.now(),
        };
        self.store.create_user(&user, &token.hash().0).await?;
        Ok((user, token.reveal().to_owned()))
    }

    pub async fn authenticate(&self, token: &str) -> Result<Option<PartnerUser>, PartnerError> {
        Ok(self.store.user_by_token(&TokenHash::of(token).0).await?)
    }

    pub async fn upload_contacts(
        &self,
        user: &PartnerUser,
        hex: &[String],
    ) -> Result<u64, PartnerError> {
        if hex.len() > 10_000 {
            return Err(PartnerError::BadRequest(
                "at most 10,000 contacts per upload".into(),
            ));
        }
        let ps: Vec<[u8; 32]> = hex
            .iter()
            .enumerate()
            .map(|(i, h)| {
                parse_pseudonym_hex(h).ok_or_else(|| {
                    PartnerError::BadRequest(format!("contact {i}: 64 hex digits expected"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(self.store.upload_contacts(user.id, &ps).await?)
    }

    pub async fn suggestions(&self, user: &PartnerUser) -> Result<Vec<PartnerUser>, PartnerError> {
        Ok(self.store.suggestions(user.id).await?)
    }

    pub async fn stats(&self) -> Result<PartnerStats, PartnerError> {
        Ok(self.store.stats().await?)
    }
}
