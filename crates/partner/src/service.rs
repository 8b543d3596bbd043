//! The partner's use cases, independent of HTTP.

use crate::verifier::{Verifier, VerifierError};
use accord_crypto::mac;
use accord_crypto::token::{self, BearerToken, TokenHash, VerificationCode};
use accord_domain::coordination::{
    digests_of, CitationError, Digests, FeedAck, FeedBatch, Mismatches, ReconcileBucketList,
    ReconcileBucketOutcome, DIGESTS_PATH, INGEST_PATH, RECONCILE_BUCKETS, RECONCILE_BUCKET_PATH,
};
use accord_domain::time::MINUTE_MS;
use accord_domain::transparency::{LogKey, ProofError, SignedCheckpoint};
use accord_domain::{Clock, PhoneError, PhoneNumber, PseudonymId, Purpose, Timestamp};
use accord_storage::partner::{
    ChargeError, IncomingEvent, PartnerStats, PartnerStore, PartnerUser, PendingRegistration,
    Record,
};
use accord_storage::StoreError;
use secrecy::{ExposeSecret, SecretSlice};
use serde::Serialize;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use uuid::Uuid;

/// At most this many events per ingest batch.
pub const MAX_BATCH: usize = 1000;

/// At most this many blinded elements per evaluation request.
pub const MAX_EVALUATE: usize = 1000;

/// Meter kinds (`accord_storage::partner` meters).
const OPRF_METER: &str = "oprf";
const ADDRESS_METER: &str = "signup_address";
const GLOBAL_METER: &str = "signup_global";
const NUMBER_METER: &str = "signup_number";

/// The partner's limits. Every count is per rolling day (the last 24
/// hourly buckets, as the key service's quotas).
#[derive(Clone, Debug)]
pub struct PartnerConfig {
    /// Blinded evaluations a partner user (a person: all its tokens) may
    /// have per rolling day: its own number and an address book.
    pub user_oprf_quota: u64,
    /// Sign-ups (codes requested) per client address.
    pub signups_per_address: u64,
    /// Sign-ups (codes requested) in all.
    pub signups_per_day: u64,
    /// Codes requested per phone number.
    pub codes_per_number: u64,
    /// How long a code is valid.
    pub code_ttl_ms: i64,
    /// Attempts at a code (the right one included).
    pub max_code_attempts: u32,
    /// Alert when the partner's key-service usage reaches this share of
    /// its key-service quota, in percent.
    pub keyd_alert_percent: u64,
}

impl Default for PartnerConfig {
    fn default() -> Self {
        PartnerConfig {
            user_oprf_quota: 1 + 2_000,
            signups_per_address: 10,
            signups_per_day: 10_000,
            codes_per_number: 10,
            code_ttl_ms: 10 * MINUTE_MS,
            max_code_attempts: 5,
            keyd_alert_percent: 80,
        }
    }
}

impl PartnerConfig {
    /// The key-service quota the partner needs with `users` users: every
    /// user's quota, and a quarter more (at least 100 users' worth) as
    /// headroom for those who sign up before the next sizing (a minute).
    pub fn keyd_quota_for(&self, users: u64) -> u64 {
        users
            .saturating_add((users / 4).max(100))
            .saturating_mul(self.user_oprf_quota)
    }
}

/// Sets the partner's daily `coordination` quota at the key service
/// (the operator's side of the key service; in `accord serve`, in process).
#[async_trait::async_trait]
pub trait KeydQuota: Send + Sync + std::fmt::Debug {
    async fn set_daily(&self, daily: u64) -> Result<(), String>;
}

/// A started sign-up, as answered to the client.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RegistrationStarted {
    pub registration_id: Uuid,
    #[schema(value_type = i64)]
    pub expires_at: Timestamp,
    /// Only when the partner runs with the dev verifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev_code: Option<String>,
}

/// The partner's use of its key-service quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KeydBudget {
    /// The daily quota the partner has (last sized) at the key service.
    pub quota: u64,
    /// What its users' evaluations took in the rolling day.
    pub used: u64,
    /// What it needs for its current users (see [`PartnerConfig::keyd_quota_for`]).
    pub needed: u64,
    /// `used` reached the alert share of `quota`.
    pub alert: bool,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PartnerError {
    #[error("feed signature: {0}")]
    Signature(#[from] mac::MacError),
    #[error("invalid feed batch: {0}")]
    BadBatch(String),
    /// A share whose citation does not allow it (nothing of the batch
    /// is stored).
    #[error("event {event_id}: {error}")]
    Citation { event_id: u64, error: CitationError },
    /// A checkpoint of the batch is not signed by the messenger's log key.
    #[error("a checkpoint of the batch does not verify: {0}")]
    Checkpoint(ProofError),
    /// The messenger signed two different logs of the same shard and size.
    #[error("the messenger signed a checkpoint that contradicts one this partner keeps (shard and size equal, root different): its log was rewritten or forked")]
    Equivocation,
    /// Shares cannot be checked without the messenger's log key.
    #[error("this partner has no messenger log key configured, so it cannot check citations; shares are refused")]
    NoLogKey,
    #[error("purpose `{0}` was not granted for this person")]
    PurposeNotGranted(Purpose),
    #[error("{0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Unavailable(&'static str),
    /// The eligible index of custom audiences is being built (a fresh
    /// partner); retry after this many seconds.
    #[error("the partner is reading its eligible users into memory; retry in {0} s")]
    WarmingUp(u64),
    /// A name taken already (`audience_exists`).
    #[error("already exists: {0}")]
    Conflict(&'static str),
    #[error("there is no audience named {0:?}; create it first")]
    UnknownAudience(String),
    #[error("the upload is being matched or was matched; nothing can be added to it: start a new upload")]
    UploadClosed,
    #[error("the upload has {received} of its {declared} batches; send the rest or discard it")]
    UploadIncomplete { received: u64, declared: u64 },
    #[error("the key service is not available: {0}")]
    KeyService(String),
    #[error(transparent)]
    Phone(#[from] PhoneError),
    #[error("the verification is unknown or has expired; request a new code")]
    VerificationExpired,
    #[error("the code is wrong")]
    WrongCode { attempts_left: u32 },
    #[error("too many wrong codes; request a new code")]
    TooManyAttempts,
    #[error("too many sign-ups {0}; try again later")]
    RateLimited(&'static str, u64),
    #[error("your daily quota of evaluations is spent: {used} of {quota} used in the last 24 hours, {requested} requested")]
    QuotaExceeded {
        retry_after_s: u64,
        quota: u64,
        used: u64,
        requested: u64,
    },
    #[error("could not send the code")]
    Verifier(#[from] VerifierError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The authentication headers of a feed request.
#[derive(Clone, Debug)]
pub struct FeedAuth {
    pub timestamp_ms: i64,
    pub nonce: String,
    pub signature: String,
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
    pub config: PartnerConfig,
    verifier: Arc<dyn Verifier>,
    /// Keys the tags of numbers and addresses (HMAC-SHA256); kept outside
    /// the database.
    number_key: Arc<SecretSlice<u8>>,
    keyd_quota: Option<Arc<dyn KeydQuota>>,
    /// The messenger's consent-log key: feed checkpoints are verified
    /// against it, and shares' citations against those checkpoints.
    log_key: Option<LogKey>,
    /// The key-service quota as last sized (or configured).
    keyd_daily: Arc<AtomicU64>,
    alerting: Arc<AtomicBool>,
    refused_devices: Arc<AtomicU64>,
    /// Custom audiences (`crate::audience`), when configured.
    pub(crate) audiences: Option<crate::audience::Audiences>,
}

impl std::fmt::Debug for PartnerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerService").finish_non_exhaustive()
    }
}

impl PartnerService {
    /// A partner with the dev verifier, default limits and a random
    /// number key (see [`PartnerService::with_signup`]).
    pub fn new(store: Arc<dyn PartnerStore>, clock: Arc<dyn Clock>, feed_secret: Vec<u8>) -> Self {
        PartnerService {
            store,
            clock,
            oprf: None,
            feed_secret: Arc::new(SecretSlice::from(feed_secret)),
            config: PartnerConfig::default(),
            verifier: Arc::new(crate::verifier::DevVerifier),
            number_key: Arc::new(SecretSlice::from(token::random_salt().repeat(2))),
            keyd_quota: None,
            log_key: None,
            keyd_daily: Arc::new(AtomicU64::new(0)),
            alerting: Arc::new(AtomicBool::new(false)),
            refused_devices: Arc::new(AtomicU64::new(0)),
            audiences: None,
        }
    }

    /// Custom audiences: their store (in the partner's database) and rules.
    pub fn with_audiences(mut self, audiences: crate::audience::Audiences) -> Self {
        self.audiences = Some(audiences);
        self
    }

    /// Sign-up: the verifier, the limits, and the key that tags numbers
    /// and addresses.
    pub fn with_signup(
        mut self,
        verifier: Arc<dyn Verifier>,
        config: PartnerConfig,
        number_key: Vec<u8>,
    ) -> Self {
        self.verifier = verifier;
        self.config = config;
        self.number_key = Arc::new(SecretSlice::from(number_key));
        self
    }

    /// Who sizes the partner's quota at the key service, and the quota it
    /// has until the first sizing (0: unknown, sized at start).
    pub fn with_keyd_quota(mut self, sizer: Option<Arc<dyn KeydQuota>>, daily: u64) -> Self {
        self.keyd_quota = sizer;
        self.keyd_daily.store(daily, Ordering::Relaxed);
        self
    }

    /// The messenger's consent-log key (required to accept shares).
    pub fn with_log_key(mut self, key: Option<LogKey>) -> Self {
        self.log_key = key;
        self
    }

    /// Every checkpoint of the messenger's log this partner kept.
    pub async fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>, PartnerError> {
        Ok(self.store.checkpoints().await?)
    }

    fn tag(&self, what: &str) -> [u8; 32] {
        token::code_digest(self.number_key.expose_secret(), what)
    }

    /// Device records refused at ingest (they held an identifier or broke
    /// a format), since start.
    pub fn refused_device_records(&self) -> u64 {
        self.refused_devices.load(Ordering::Relaxed)
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Checks a feed request: its signature over method, `path`,
    /// timestamp, nonce and body, its freshness, and that its nonce was
    /// not seen before (a replay within the window is refused). Only an
    /// authentic request leaves its nonce behind.
    async fn check_feed(
        &self,
        path: &str,
        auth: &FeedAuth,
        body: &[u8],
    ) -> Result<(), PartnerError> {
        let now = self.now();
        let request = mac::SignedRequest {
            method: "POST",
            path,
            timestamp_ms: auth.timestamp_ms,
            nonce: &auth.nonce,
            body,
        };
        mac::verify(
            self.feed_secret.expose_secret(),
            &request,
            now.0,
            &auth.signature,
        )?;
        let forget_before = now.plus_millis(-2 * mac::MAX_SKEW_MS);
        if !self
            .store
            .remember_nonce(&auth.nonce, now, forget_before)
            .await?
        {
            tracing::warn!("a feed request was replayed; refused");
            return Err(mac::MacError::Replayed.into());
        }
        Ok(())
    }

    /// Verifies and applies a signed batch, in order.
    pub async fn ingest(&self, auth: &FeedAuth, body: &[u8]) -> Result<FeedAck, PartnerError> {
        let now = self.now();
        self.check_feed(INGEST_PATH, auth, body).await?;
        let batch: FeedBatch =
            serde_json::from_slice(body).map_err(|e| PartnerError::BadBatch(e.to_string()))?;
        if batch.events.len() > MAX_BATCH {
            return Err(PartnerError::BadBatch(format!(
                "more than {MAX_BATCH} events"
            )));
        }
        // Check every checkpoint and citation before applying anything.
        let shares = batch.events.iter().any(|e| !e.purposes.is_empty());
        match &self.log_key {
            Some(key) => {
                for c in &batch.checkpoints {
                    key.verify(c).map_err(PartnerError::Checkpoint)?;
                }
            }
            None if shares || !batch.checkpoints.is_empty() => return Err(PartnerError::NoLogKey),
            None => {}
        }
        let mut citations = Vec::with_capacity(batch.events.len());
        for e in &batch.events {
            citations.push(
                e.check_citations(&batch.checkpoints)
                    .map_err(|error| {
                        tracing::warn!(event = e.event_id, code = error.code(), error = %error, "share refused: its citation does not allow it");
                        PartnerError::Citation {
                            event_id: e.event_id,
                            error,
                        }
                    })?,
            );
        }
        self.store
            .keep_checkpoints(&batch.checkpoints, now)
            .await
            .map_err(|e| match e {
                StoreError::Conflict("checkpoint") => {
                    tracing::error!(
                        "the messenger's log equivocated: a checkpoint contradicts a kept one"
                    );
                    PartnerError::Equivocation
                }
                e => e.into(),
            })?;
        let events: Vec<IncomingEvent> = batch
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                if !e.purposes.is_empty() && e.devices.is_empty() {
                    return Err(PartnerError::BadBatch(format!(
                        "event {i}: a share carries device information"
                    )));
                }
                // Checked again here, as where it enters the messenger: a
                // device record that breaks a format or holds a phone number
                // or an e-mail address is refused (not stored); the event's
                // purposes still apply.
                let devices = if e.purposes.is_empty() {
                    vec![]
                } else {
                    e.devices
                        .iter()
                        .filter_map(|d| match d.clone().validated() {
                            Ok(d) => Some(d),
                            Err(err) => {
                                self.refused_devices.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(event = e.event_id, code = err.code(), error = %err, "device record refused");
                                None
                            }
                        })
                        .collect()
                };
                Ok(IncomingEvent {
                    event_id: e.event_id,
                    pseudonym: e.pseudonym,
                    key_version: e.key_version,
                    purposes: e.purposes.clone(),
                    devices,
                    citations: citations[i].clone(),
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
        auth: &FeedAuth,
        body: &[u8],
    ) -> Result<Mismatches, PartnerError> {
        self.check_feed(DIGESTS_PATH, auth, body).await?;
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
        auth: &FeedAuth,
        body: &[u8],
    ) -> Result<ReconcileBucketOutcome, PartnerError> {
        self.check_feed(RECONCILE_BUCKET_PATH, auth, body).await?;
        let l: ReconcileBucketList =
            serde_json::from_slice(body).map_err(|e| PartnerError::BadBatch(e.to_string()))?;
        let listed: std::collections::BTreeSet<PseudonymId> =
            l.pseudonyms.iter().copied().collect();
        let held: std::collections::BTreeSet<PseudonymId> = self
            .store
            .pseudonyms(l.purpose)
            .await?
            .into_iter()
            .filter(|p| p.reconcile_bucket() == l.bucket)
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
            missing: listed.difference(&held).copied().collect(),
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
        pseudonym: &PseudonymId,
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

    /// Sign-up, step 1: a code to the number, through the partner's own
    /// verifier. Limited per client address, per number and in all, per
    /// rolling day, each counted atomically before anything is sent. The
    /// number itself is handed to the verifier and forgotten: what is
    /// stored is its tag (HMAC under the number key).
    pub async fn start_registration(
        &self,
        raw_phone: &str,
        region: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<RegistrationStarted, PartnerError> {
        let phone = PhoneNumber::parse(raw_phone, region)?;
        let now = self.now();
        self.store.purge_signups(now).await?;
        let address = self.tag(&match client {
            Some(ip) => format!("addr:{ip}"),
            None => "addr:unknown".to_owned(),
        });
        let number_tag = self.tag(&format!("phone:{}", phone.e164()));
        let c = &self.config;
        for (kind, subject, limit, what) in [
            (
                ADDRESS_METER,
                &address[..],
                c.signups_per_address,
                "from this address",
            ),
            (
                NUMBER_METER,
                &number_tag[..],
                c.codes_per_number,
                "for this number",
            ),
            (GLOBAL_METER, &[][..], c.signups_per_day, "today"),
        ] {
            match self.store.charge_meter(kind, subject, 1, limit, now).await {
                Ok(()) => {}
                Err(ChargeError::QuotaExceeded(q)) => {
                    tracing::warn!(limit = kind, "sign-up refused: limit reached");
                    return Err(PartnerError::RateLimited(what, q.retry_after_s));
                }
                Err(ChargeError::Store(e)) => return Err(e.into()),
                Err(e) => return Err(PartnerError::Store(StoreError::Corrupt(e.to_string()))),
            }
        }
        let code = VerificationCode::generate();
        let salt = token::random_salt();
        let r = PendingRegistration {
            id: Uuid::new_v4(),
            number_tag,
            salt: salt.to_vec(),
            code_digest: token::code_digest(&salt, code.reveal()).to_vec(),
            created_at: now,
            expires_at: now.plus_millis(self.config.code_ttl_ms),
            attempts: 0,
        };
        self.verifier.send(&phone, &code).await?;
        drop(phone);
        self.store.put_registration(&r).await?;
        tracing::info!(registration = %r.id, "partner sign-up code issued");
        Ok(RegistrationStarted {
            registration_id: r.id,
            expires_at: r.expires_at,
            dev_code: self.verifier.dev_code(&code),
        })
    }

    /// Sign-up, step 2: the code. Every attempt is counted atomically
    /// before the comparison (the right code included), so N parallel
    /// guesses never get more than `max_code_attempts`. A number that
    /// already has a partner user gets a new token of that user (one
    /// person, one user, one quota); otherwise a user named `name` is
    /// made. Returns the user, its new token, and whether it is new.
    pub async fn verify_registration(
        &self,
        id: Uuid,
        code: &str,
        name: &str,
    ) -> Result<(PartnerUser, String, bool), PartnerError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(PartnerError::BadRequest(
                "name must be 1 to 100 printable characters".into(),
            ));
        }
        let now = self.now();
        let r = self
            .store
            .registration(id)
            .await?
            .filter(|r| r.expires_at > now)
            .ok_or(PartnerError::VerificationExpired)?;
        let max = self.config.max_code_attempts;
        let Some(n) = self.store.count_attempt(id, max).await? else {
            self.store.take_registration(id).await?;
            return Err(PartnerError::TooManyAttempts);
        };
        if !token::code_matches(&r.salt, code, &r.code_digest) {
            if n >= max {
                self.store.take_registration(id).await?;
                return Err(PartnerError::TooManyAttempts);
            }
            return Err(PartnerError::WrongCode {
                attempts_left: max - n,
            });
        }
        // A code is good once.
        if !self.store.take_registration(id).await? {
            return Err(PartnerError::VerificationExpired);
        }
        let token = BearerToken::generate();
        let user = PartnerUser {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            phone_pseudonym: None,
            ads_personalisation: false,
            created_at: now,
        };
        let (user, created) = self
            .store
            .sign_up(&user, &r.number_tag, &token.hash().0)
            .await?;
        tracing::info!(user = %user.id, created, "partner user verified");
        Ok((user, token.reveal().to_owned(), created))
    }

    /// Blinded evaluation for a partner user, charged to its own quota
    /// first (atomically; refused with nothing charged when it does not
    /// fit), then forwarded under the partner's key-service client.
    pub async fn evaluate(
        &self,
        user: &PartnerUser,
        version: Option<accord_crypto::oprf::KeyVersion>,
        elements: Vec<accord_crypto::oprf::BlindedElementBytes>,
    ) -> Result<accord_keyd_client::Evaluated, PartnerError> {
        let oprf = self.oprf.clone().ok_or_else(|| {
            PartnerError::KeyService("this partner runs without a key service".into())
        })?;
        let n = elements.len() as u64;
        let now = self.now();
        match self
            .store
            .charge_meter(
                OPRF_METER,
                user.id.as_bytes(),
                n,
                self.config.user_oprf_quota,
                now,
            )
            .await
        {
            Ok(()) => {}
            Err(ChargeError::QuotaExceeded(q)) => {
                return Err(PartnerError::QuotaExceeded {
                    retry_after_s: q.retry_after_s,
                    quota: q.quota,
                    used: q.used,
                    requested: q.requested,
                })
            }
            Err(ChargeError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(PartnerError::Store(StoreError::Corrupt(e.to_string()))),
        }
        let r = oprf
            .evaluate_blinded(
                accord_crypto::oprf::OprfPurpose::Coordination,
                version,
                elements,
            )
            .await
            .map_err(|e| PartnerError::KeyService(e.to_string()));
        if let Err(e) = self.keyd_budget().await {
            tracing::warn!(error = %e, "key-service budget not checked");
        }
        r
    }

    /// The partner's use of its key-service quota; logs an error when it
    /// crosses the alert share (once, until it falls back below).
    pub async fn keyd_budget(&self) -> Result<KeydBudget, PartnerError> {
        let now = self.now();
        let used = self.store.meter_total(OPRF_METER, now).await?;
        let users = self.store.user_count().await?;
        let quota = self.keyd_daily.load(Ordering::Relaxed);
        let alert = quota > 0
            && used.saturating_mul(100) >= quota.saturating_mul(self.config.keyd_alert_percent);
        if alert && !self.alerting.swap(true, Ordering::Relaxed) {
            tracing::error!(
                used,
                quota,
                percent = self.config.keyd_alert_percent,
                "the partner's key-service quota is nearly spent"
            );
        } else if !alert {
            self.alerting.store(false, Ordering::Relaxed);
        }
        Ok(KeydBudget {
            quota,
            used,
            needed: self.config.keyd_quota_for(users),
            alert,
        })
    }

    /// Sizes the partner's key-service quota from its user count (with a
    /// sizer; without one the operator sets it, and the `needed` gauge
    /// says to what).
    pub async fn size_keyd_quota(&self) -> Result<u64, PartnerError> {
        let users = self.store.user_count().await?;
        let needed = self.config.keyd_quota_for(users);
        if let Some(sizer) = &self.keyd_quota {
            if self.keyd_daily.load(Ordering::Relaxed) != needed {
                sizer
                    .set_daily(needed)
                    .await
                    .map_err(PartnerError::KeyService)?;
                self.keyd_daily.store(needed, Ordering::Relaxed);
                tracing::info!(users, daily = needed, "partner key-service quota sized");
            }
        }
        Ok(needed)
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
        let ps: Vec<PseudonymId> = hex
            .iter()
            .enumerate()
            .map(|(i, h)| {
                PseudonymId::from_hex(h).ok_or_else(|| {
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
