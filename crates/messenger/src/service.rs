//! The messenger's use cases, independent of HTTP.

use crate::auth_cache::AuthCache;
use crate::consent_writer::ConsentWriter;
use crate::keys::KeyAccess;
use crate::transparency::ConsentLog;
use crate::verifier::{Verifier, VerifierError};
use accord_crypto::oprf::{KeyVersion, OprfPurpose};
use accord_crypto::token::{self, BearerToken, TokenHash, VerificationCode};
use accord_domain::consent::{
    Access, ConsentChannel, ConsentCommand, ConsentError, ConsentState, SharingChoice,
};
use accord_domain::ledger::{
    consent_state_at, policies_at, ChainError, ChainVerifier, LedgerEntry, LedgerRecord,
};
use accord_domain::policy::{PolicyDraft, PolicyHistory, PolicyVersion};
use accord_domain::receipt::{ConsentReceipt, ReceiptContext};
use accord_domain::receipt::{LedgerProofs, ProvenEntry};
use accord_domain::time::MINUTE_MS;
use accord_domain::transparency::{
    check_against_checkpoints, LogKey, LogSigner, ShardTree, SignedCheckpoint, WitnessError, SHARDS,
};
use accord_domain::{
    AccountId, Clock, DeviceId, DeviceInfo, DeviceInfoError, PhoneError, PhoneNumber, PseudonymId,
    Timestamp,
};
/// The answers of the use cases that cross the wire as they are.
pub use accord_messenger_wire::{
    ConsentView, DiscoveryConfig, LedgerReport, PseudonymRefresh, Registered, RegistrationStarted,
    ShardReport,
};
use accord_storage::{
    Account, AttemptClaim, CodeRequest, ConsentWrite, Device, MessengerStore, NewDevice,
    PendingVerification, StoreError,
};
use serde::Serialize;
use std::net::IpAddr;
use std::sync::Arc;
use uuid::Uuid;

/// Tunables, with defaults for local use.
#[derive(Clone, Debug)]
pub struct MessengerConfig {
    /// How long a verification code is valid.
    pub code_ttl_ms: i64,
    /// Wrong codes allowed before the verification is void.
    pub max_code_attempts: u32,
    /// Codes a number may request per hour.
    pub codes_per_hour: u32,
    /// Codes one client address may request per hour, for any numbers.
    pub codes_per_client_per_hour: u32,
    /// Codes one number range (country code and carrier range, see
    /// `PhoneNumber::range_prefix`) may be sent per hour.
    pub codes_per_range_per_hour: u32,
    /// Codes sent per hour in all: the operator's SMS budget.
    pub codes_per_hour_total: u32,
    /// Who runs this messenger (the data controller), for receipts.
    pub controller_name: String,
    /// Who receives coordinated data, for receipts.
    pub partner_name: String,
}

impl Default for MessengerConfig {
    fn default() -> Self {
        MessengerConfig {
            code_ttl_ms: 10 * MINUTE_MS,
            max_code_attempts: 5,
            codes_per_hour: 5,
            codes_per_client_per_hour: 10,
            codes_per_range_per_hour: 1_000,
            codes_per_hour_total: 10_000,
            controller_name: "Accord Messenger".into(),
            partner_name: "Accord Partner (social and ads)".into(),
        }
    }
}

/// Why a use case failed. The HTTP layer maps each to a status and a code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    #[error(transparent)]
    Phone(#[from] PhoneError),
    #[error(transparent)]
    DeviceInfo(#[from] DeviceInfoError),
    #[error(transparent)]
    Consent(#[from] ConsentError),
    #[error("the verification is unknown or has expired; request a new code")]
    VerificationExpired,
    #[error("the code is wrong")]
    WrongCode { attempts_left: u32 },
    #[error("too many wrong codes; request a new code")]
    TooManyAttempts,
    #[error("too many codes requested for this number; try again later")]
    RateLimited { retry_after_s: u64 },
    #[error("could not send the code")]
    Verifier(#[from] VerifierError),
    #[error("the current policy must be accepted first")]
    Restricted { version: u32 },
    #[error("{0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error("the ledger failed verification: {0}")]
    LedgerTampered(ChainError),
    #[error("the key service failed: {0}")]
    KeyService(String),
    /// The partner did not answer the coordination feed or a
    /// reconciliation as it must.
    #[error("the partner failed: {0}")]
    Partner(String),
    #[error("contact discovery is not available: this messenger runs without a key service")]
    NoKeyService,
    #[error("that number already has an account")]
    PhoneTaken,
    #[error("no Accord account uses this number; register in the app first")]
    NoAccountForNumber,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a device presents to verify a code.
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    pub code: String,
    pub device: DeviceInfo,
    /// Acceptance of the current policy, for new accounts.
    pub accept: Option<(u32, SharingChoice)>,
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: Account,
    pub device: DeviceId,
    pub access: Access,
}

/// Everything the messenger holds about a user.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Export {
    #[schema(value_type = String)]
    pub account_id: AccountId,
    pub phone_number: String,
    #[schema(value_type = i64)]
    pub created_at: Timestamp,
    #[schema(value_type = Vec<Object>)]
    pub devices: Vec<ExportDevice>,
    pub consent: ConsentState,
    #[schema(value_type = Vec<Object>)]
    pub ledger: Vec<LedgerEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportDevice {
    pub device_id: DeviceId,
    pub info: DeviceInfo,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
}

impl From<Device> for ExportDevice {
    fn from(d: Device) -> Self {
        ExportDevice {
            device_id: d.id,
            info: d.info,
            created_at: d.created_at,
            last_seen_at: d.last_seen_at,
        }
    }
}

/// The messenger's use cases.
#[derive(Debug, Clone)]
pub struct Messenger {
    pub(crate) store: Arc<dyn MessengerStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) verifier: Arc<dyn Verifier>,
    pub(crate) config: MessengerConfig,
    /// The key service, for pseudonyms and contact discovery. Without it
    /// the messenger runs, but computes no pseudonyms.
    pub(crate) keys: Option<KeyAccess>,
    /// Who recent tokens are (see [`crate::auth_cache`]).
    pub(crate) auth_cache: Arc<AuthCache>,
    /// The ledger's Merkle trees and checkpoint signer on this node.
    pub(crate) log: Arc<ConsentLog>,
    /// The group commit of consent changes.
    pub(crate) consent_writer: ConsentWriter,
}

const CONSENT_RETRIES: usize = 5;

/// Pending credential revocations tried per run.
const REVOCATIONS_PER_RUN: u32 = 100;
/// How often `accord serve` retries pending credential revocations.
pub const REVOCATION_RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// What one run of [`Messenger::revoke_pending_credentials`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevocationRun {
    /// Credentials the key service confirmed revoked.
    pub revoked: u32,
    /// A revocation failed; the rest stay queued.
    pub failed: bool,
}

impl Messenger {
    /// The use cases over `store`; `keys` is the key service, if any.
    /// (Services are built by [`crate::Application::build`]; this is its
    /// part, and the benches' and tests' when they need the use cases
    /// without a server.)
    pub fn new(
        store: Arc<dyn MessengerStore>,
        clock: Arc<dyn Clock>,
        verifier: Arc<dyn Verifier>,
        config: MessengerConfig,
        keys: Option<KeyAccess>,
        signer: LogSigner,
        consent_writers: usize,
    ) -> Self {
        Messenger {
            log: Arc::new(ConsentLog::new(store.clone(), clock.clone(), signer)),
            consent_writer: ConsentWriter::start(store.clone(), consent_writers),
            store,
            clock,
            verifier,
            config,
            keys,
            auth_cache: Default::default(),
        }
    }

    /// The consent ledger's transparency log on this node.
    pub fn log(&self) -> &Arc<ConsentLog> {
        &self.log
    }

    /// The messenger's store (operators' reads, tests).
    pub fn store(&self) -> &Arc<dyn MessengerStore> {
        &self.store
    }

    /// The key service, when one is configured.
    pub fn keys(&self) -> Option<&KeyAccess> {
        self.keys.as_ref()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    // ---- registration -------------------------------------------------

    pub async fn start_registration(
        &self,
        raw_phone: &str,
        region: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<RegistrationStarted, ServiceError> {
        let phone = PhoneNumber::parse(raw_phone, region)?;
        let now = self.now();
        self.store
            .purge_verifications(now, now.plus_millis(-24 * 60 * MINUTE_MS))
            .await?;
        // Counted per request, not per stored code: using or burning a code
        // never frees a slot; a refused request counts too.
        let client = client.map(|a| a.to_string());
        let counts = self
            .store
            .record_code_request(
                &CodeRequest {
                    phone: &phone,
                    client: client.as_deref(),
                    prefix: &phone.range_prefix(),
                    at: now,
                },
                now.plus_millis(-60 * MINUTE_MS),
            )
            .await?;
        let c = &self.config;
        let refused = [
            (counts.number, c.codes_per_hour, "number"),
            (counts.client, c.codes_per_client_per_hour, "client"),
            (counts.prefix, c.codes_per_range_per_hour, "range"),
            (counts.all, c.codes_per_hour_total, "total"),
        ]
        .into_iter()
        .find(|(n, limit, _)| n > limit);
        if let Some((_, _, limit)) = refused {
            tracing::warn!(limit, "verification code refused: hourly limit reached");
            return Err(ServiceError::RateLimited {
                retry_after_s: 3600,
            });
        }
        let code = VerificationCode::generate();
        let salt = token::random_salt();
        let v = PendingVerification {
            id: Uuid::new_v4(),
            phone: phone.clone(),
            salt: salt.to_vec(),
            code_digest: token::code_digest(&salt, code.reveal()).to_vec(),
            created_at: now,
            expires_at: now.plus_millis(self.config.code_ttl_ms),
            attempts: 0,
        };
        self.verifier.send(&phone, &code).await?;
        self.store.put_verification(&v).await?;
        tracing::info!(registration = %v.id, "verification code issued");
        Ok(RegistrationStarted {
            registration_id: v.id,
            expires_at: v.expires_at,
            dev_code: self.verifier.dev_code(&code),
        })
    }

    pub async fn verify_registration(
        &self,
        id: Uuid,
        req: VerifyRequest,
    ) -> Result<Registered, ServiceError> {
        let device_info = req.device.validated()?;
        let v = self.use_code(id, &req.code).await?;
        match self.register_device(&v, device_info, req.accept).await {
            Ok(r) => Ok(r),
            Err(e) => {
                self.restore_code(&v).await;
                Err(e)
            }
        }
    }

    /// A device for the number of a used verification: a new account, or
    /// another device of the existing one.
    async fn register_device(
        &self,
        v: &PendingVerification,
        device_info: DeviceInfo,
        accept: Option<(u32, SharingChoice)>,
    ) -> Result<Registered, ServiceError> {
        let now = self.now();
        let existing = self.store.account_by_phone(&v.phone).await?;
        let account_id = existing.as_ref().map_or_else(AccountId::random, |a| a.id);
        // The device's own key-service credential first, in its account's
        // quota group (one quota per person): if the key service cannot
        // issue one, nothing is stored.
        let device_id = DeviceId::random();
        let keyd_token = match &self.keys {
            Some(k) => Some(
                k.devices
                    .issue(device_id, account_id)
                    .await
                    .map_err(|e| ServiceError::KeyService(e.to_string()))?,
            ),
            None => None,
        };
        let token = BearerToken::generate();
        let device = NewDevice {
            id: device_id,
            info: device_info,
            token_hash: token.hash(),
            at: now,
        };
        let new_account = match existing {
            Some(existing) => {
                self.store.add_device(existing.id, &device).await?;
                false
            }
            None => {
                let policies = self.store.policies().await?;
                let events = ConsentState::default().decide(
                    &ConsentCommand::Register { accept },
                    &policies,
                    now,
                )?;
                let state = ConsentState::from_events(&events);
                let records: Vec<_> = events
                    .into_iter()
                    .map(|e| LedgerRecord::consent(account_id, e))
                    .collect();
                self.store
                    .create_account(account_id, &v.phone, &state, &device, &records)
                    .await?;
                true
            }
        };
        tracing::info!(account = %account_id, device = %device.id, new_account, "device registered");
        if new_account && self.keys.is_some() {
            // Best effort: the background refresh catches up if this fails.
            if let Err(e) = self.refresh_pseudonyms(100).await {
                tracing::warn!(error = %e, "pseudonyms not computed yet");
            }
        }
        Ok(Registered {
            account_id,
            device_id: device.id,
            token: token.reveal().to_owned(),
            new_account,
            keyd_token,
            keyd_url: self.keys.as_ref().map(|k| k.public_url.clone()),
        })
    }

    /// Checks a code against a pending verification and uses it up. The
    /// attempt is counted before the comparison, in one statement with
    /// the expiry and attempt checks, so that concurrent guesses compare
    /// at most `max_code_attempts` codes; a right code is then consumed by
    /// exactly one caller, so that one code registers one device. The
    /// caller puts it back ([`Self::restore_code`]) if what it verifies
    /// then fails.
    async fn use_code(&self, id: Uuid, code: &str) -> Result<PendingVerification, ServiceError> {
        let max = self.config.max_code_attempts;
        let v = match self.store.claim_attempt(id, self.now(), max).await? {
            AttemptClaim::Counted(v) => v,
            AttemptClaim::Exhausted => return Err(ServiceError::TooManyAttempts),
            AttemptClaim::Gone => return Err(ServiceError::VerificationExpired),
        };
        let matched = token::code_matches(&v.salt, code, &v.code_digest);
        tracing::info!(registration = %id, attempt = v.attempts, matched, "verification code compared");
        if !matched {
            if v.attempts >= max {
                self.store.delete_verification(id).await?;
                return Err(ServiceError::TooManyAttempts);
            }
            return Err(ServiceError::WrongCode {
                attempts_left: max - v.attempts,
            });
        }
        if !self.store.consume_verification(id).await? {
            // Another request used the same code a moment ago.
            return Err(ServiceError::VerificationExpired);
        }
        Ok(v)
    }

    /// A sign-in to the pages: the account of the number that code `id`
    /// verified. No device is added; a number without an account is
    /// refused (accounts are created by the app, which holds the keys).
    pub async fn sign_in_with_code(&self, id: Uuid, code: &str) -> Result<AccountId, ServiceError> {
        let v = self.use_code(id, code).await?;
        match self.store.account_by_phone(&v.phone).await? {
            Some(a) if a.consent.is_active() => {
                tracing::info!(account = %a.id, "signed in to the privacy centre");
                Ok(a.id)
            }
            _ => Err(ServiceError::NoAccountForNumber),
        }
    }

    /// An account and what it may do now, for a page session (which has
    /// no device). `None` once the account is gone or deleted.
    pub async fn account_access(
        &self,
        id: AccountId,
    ) -> Result<Option<(Account, Access)>, ServiceError> {
        let Some(account) = self.store.account(id).await? else {
            return Ok(None);
        };
        let policies = self.cached_policies().await?;
        let access = account.consent.access(&policies, self.now());
        Ok(match access {
            Access::Deleted | Access::Unregistered => None,
            _ => Some((account, access)),
        })
    }

    /// Puts a used code back after what it verified failed (a key service
    /// that could not issue a credential, a store error), so that the user
    /// can retry with the same code. Best effort.
    async fn restore_code(&self, v: &PendingVerification) {
        if let Err(e) = self.store.put_verification(v).await {
            tracing::warn!(error = %e, "a used verification code was not restored");
        }
    }

    /// Moves `account` to the number verified by `id`: its pseudonyms are
    /// recomputed, and the feed revokes the old pseudonym at the partner
    /// and shares the new one (if anything is granted).
    pub async fn change_number(
        &self,
        account: AccountId,
        id: Uuid,
        code: &str,
    ) -> Result<(), ServiceError> {
        let v = self.use_code(id, code).await?;
        let changed = async {
            if self.store.account_by_phone(&v.phone).await?.is_some() {
                return Err(ServiceError::PhoneTaken);
            }
            self.store
                .change_phone(account, &v.phone, self.now())
                .await
                .map_err(|e| match e {
                    StoreError::Conflict("phone") => ServiceError::PhoneTaken,
                    other => other.into(),
                })
        };
        if let Err(e) = changed.await {
            self.restore_code(&v).await;
            return Err(e);
        }
        self.auth_cache.invalidate();
        tracing::info!(account = %account, "number changed");
        if self.keys.is_some() {
            if let Err(e) = self.refresh_pseudonyms(100).await {
                tracing::warn!(error = %e, "pseudonyms not computed yet");
            }
        }
        Ok(())
    }

    // ---- callers ------------------------------------------------------

    /// Resolves a bearer token to its account and access. `None` for an
    /// unknown, forged or revoked token.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<Caller>, ServiceError> {
        if !TokenHash::well_formed(presented) {
            return Ok(None);
        }
        let now = self.now();
        let hash = TokenHash::of(presented);
        let cache = &self.auth_cache;
        let (account, device) = match cache.token(&hash) {
            Some(hit) => hit,
            None => {
                let stamp = cache.stamp();
                let Some((account_id, device)) = self.store.authenticate(&hash, now).await? else {
                    return Ok(None);
                };
                let Some(account) = self.store.account(account_id).await? else {
                    return Ok(None);
                };
                cache.put_token(stamp, &hash, account.clone(), device);
                (account, device)
            }
        };
        let policies = self.cached_policies().await?;
        let access = account.consent.access(&policies, now);
        Ok(Some(Caller {
            account,
            device,
            access,
        }))
    }

    async fn cached_policies(&self) -> Result<Arc<PolicyHistory>, ServiceError> {
        if let Some(p) = self.auth_cache.policies() {
            return Ok(p);
        }
        let stamp = self.auth_cache.stamp();
        let p = Arc::new(self.store.policies().await?);
        self.auth_cache.put_policies(stamp, p.clone());
        Ok(p)
    }

    // ---- policies and consent -----------------------------------------

    pub async fn policies(&self) -> Result<PolicyHistory, ServiceError> {
        Ok(self.store.policies().await?)
    }

    pub async fn current_policy(&self) -> Result<Option<PolicyVersion>, ServiceError> {
        let now = self.now();
        Ok(self.store.policies().await?.current_at(now).cloned())
    }

    pub async fn publish_policy(&self, draft: PolicyDraft) -> Result<PolicyVersion, ServiceError> {
        let p = self.store.publish_policy(draft, self.now()).await?;
        self.auth_cache.invalidate();
        tracing::info!(version = p.version, profile = %p.profile, "policy published");
        Ok(p)
    }

    /// Decides and records a consent command for `account`, retrying on a
    /// concurrent change. Returns the view after the change.
    pub async fn consent_command(
        &self,
        account: AccountId,
        cmd: ConsentCommand,
    ) -> Result<ConsentView, ServiceError> {
        self.record_command(account, None, cmd).await
    }

    /// [`Self::consent_command`] for an authenticated caller: the first
    /// attempt decides on the account as authentication read it (perhaps
    /// from the cache), which saves a read; the write is conditional on
    /// its `consent_rev`, so a stale copy only costs a retry on a fresh
    /// read.
    pub async fn consent_command_by(
        &self,
        caller: &Account,
        cmd: ConsentCommand,
    ) -> Result<ConsentView, ServiceError> {
        self.record_command(caller.id, Some(caller.clone()), cmd)
            .await
    }

    async fn record_command(
        &self,
        account: AccountId,
        mut known: Option<Account>,
        cmd: ConsentCommand,
    ) -> Result<ConsentView, ServiceError> {
        for _ in 0..CONSENT_RETRIES {
            let acct = match known.take() {
                Some(acct) => acct,
                None => self
                    .store
                    .account(account)
                    .await?
                    .ok_or(ServiceError::NotFound)?,
            };
            // The node's policy cache: a publication on this node clears
            // it; one on another node is seen within a second (a command
            // naming the new version before then is refused as unknown).
            let policies = self.cached_policies().await?;
            let now = self.now();
            let events = acct.consent.decide(&cmd, &policies, now)?;
            let mut next = acct.consent.clone();
            events.iter().for_each(|e| next.apply(e));
            let records: Vec<_> = events
                .into_iter()
                .map(|e| LedgerRecord::consent(account, e))
                .collect();
            let result = if matches!(cmd, ConsentCommand::Delete) {
                self.store
                    .delete_account(
                        account,
                        acct.consent_rev,
                        records.first().expect("delete yields one event"),
                    )
                    .await
            } else if records.is_empty() {
                Ok(())
            } else {
                self.consent_writer
                    .write(ConsentWrite {
                        account,
                        expected_rev: acct.consent_rev,
                        consent: next.clone(),
                        records: records.clone(),
                    })
                    .await
            };
            match result {
                Ok(()) => {
                    if matches!(cmd, ConsentCommand::Delete) {
                        self.auth_cache.invalidate();
                    } else if !records.is_empty() {
                        self.auth_cache.account_written(Account {
                            consent: next.clone(),
                            consent_rev: acct.consent_rev + 1,
                            ..acct.clone()
                        });
                    }
                    tracing::info!(account = %account, events = records.len(), "consent recorded");
                    if matches!(cmd, ConsentCommand::Delete) {
                        // The deletion stands either way: what is not
                        // revoked now stays queued for the retry loop.
                        if let Err(e) = self.revoke_pending_credentials().await {
                            tracing::warn!(error = %e, "pending credential revocations not read; will retry");
                        }
                    }
                    return Ok(view(account, next, &policies, now));
                }
                Err(StoreError::Conflict("consent_rev")) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Store(StoreError::Conflict("consent_rev")))
    }

    pub async fn accept(
        &self,
        account: AccountId,
        version: u32,
        choice: SharingChoice,
    ) -> Result<ConsentView, ServiceError> {
        self.consent_command(
            account,
            ConsentCommand::Accept {
                version,
                choice,
                channel: ConsentChannel::AcceptanceScreen,
            },
        )
        .await
    }

    pub async fn consent_view(&self, account: &Account) -> Result<ConsentView, ServiceError> {
        let policies = self.store.policies().await?;
        Ok(view(
            account.id,
            account.consent.clone(),
            &policies,
            self.now(),
        ))
    }

    /// The consent state of `account` at `at`, rebuilt from the ledger
    /// alone (policies included), never from the live tables.
    pub async fn consent_at(
        &self,
        account: AccountId,
        at: Timestamp,
    ) -> Result<ConsentView, ServiceError> {
        let entries: Vec<LedgerEntry> = self
            .store
            .ledger_for_account(account)
            .await?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        if !entries.iter().any(|e| e.account == Some(account)) {
            return Err(ServiceError::NotFound);
        }
        let state = consent_state_at(&entries, account, at);
        let policies = policies_at(&entries, at);
        Ok(view(account, state, &policies, at))
    }

    pub async fn receipt(&self, account: &Account) -> Result<ConsentReceipt, ServiceError> {
        let policies = self.store.policies().await?;
        let accepted = account
            .consent
            .accepted_version()
            .and_then(|v| policies.get(v))
            .ok_or(ServiceError::BadRequest(
                "no policy has been accepted yet, so there is no consent to give a receipt for"
                    .into(),
            ))?;
        let proofs = self.ledger_proofs(account.id).await?;
        Ok(ConsentReceipt::build(
            &account.consent,
            ReceiptContext {
                account: account.id,
                policy: accepted,
                issued_at: self.now(),
                controller: &self.config.controller_name,
                partner: &self.config.partner_name,
                proofs,
            },
        ))
    }

    /// The account's own ledger entries (and every policy publication),
    /// each with its inclusion proof against a checkpoint signed now: what
    /// a receipt carries so that its holder can check it offline and keep
    /// it as a witness against a later rewrite.
    pub async fn ledger_proofs(&self, account: AccountId) -> Result<LedgerProofs, ServiceError> {
        let entries = self.store.ledger_for_account(account).await?;
        let mut by_shard: std::collections::BTreeMap<u16, Vec<u64>> = Default::default();
        for (shard, e) in &entries {
            by_shard.entry(*shard).or_default().push(e.seq);
        }
        let mut checkpoints = Vec::new();
        let mut proofs = std::collections::BTreeMap::new();
        for (shard, seqs) in by_shard {
            let (c, ps) = self.log.prove(shard, &seqs).await?;
            checkpoints.push(c);
            for p in ps {
                proofs.insert((shard, p.seq), p);
            }
        }
        let entries = entries
            .into_iter()
            .map(|(shard, entry)| {
                let inclusion = proofs
                    .remove(&(shard, entry.seq))
                    .expect("a proof for every entry");
                ProvenEntry { entry, inclusion }
            })
            .collect();
        Ok(LedgerProofs {
            log_key: self.log.public_key().to_hex(),
            checkpoints,
            entries,
        })
    }

    pub async fn export(&self, account: &Account) -> Result<Export, ServiceError> {
        let devices = self.store.devices(account.id).await?;
        let ledger = self
            .store
            .ledger_for_account(account.id)
            .await?
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| e.account == Some(account.id))
            .collect();
        Ok(Export {
            account_id: account.id,
            phone_number: account.phone.e164().to_owned(),
            created_at: account.created_at,
            devices: devices.into_iter().map(Into::into).collect(),
            consent: account.consent.clone(),
            ledger,
        })
    }

    /// Revokes the key-service credentials of deleted devices that are
    /// still pending (queued by the deletion, in its transaction): each
    /// one the key service confirms leaves the queue. The first failure
    /// ends the run (the key service is likely unreachable) and leaves the
    /// rest for the next run: `accord serve` runs this every
    /// [`REVOCATION_RETRY_EVERY`], and every deletion runs it at once.
    /// Without a key service nothing is revoked and the queue is kept (a
    /// later start with one revokes them). Logs carry account ids only.
    pub async fn revoke_pending_credentials(&self) -> Result<RevocationRun, ServiceError> {
        let mut run = RevocationRun::default();
        let Some(keys) = &self.keys else {
            return Ok(run);
        };
        for (device, account) in self.store.pending_revocations(REVOCATIONS_PER_RUN).await? {
            match keys.devices.revoke(device).await {
                Ok(()) => {
                    self.store.revocation_done(device).await?;
                    run.revoked += 1;
                }
                Err(e) => {
                    run.failed = true;
                    tracing::warn!(account = %account, error = %e, "key-service credential of a deleted device not revoked; will retry");
                    break;
                }
            }
        }
        if run.revoked > 0 {
            tracing::info!(
                revoked = run.revoked,
                "key-service credentials of deleted devices revoked"
            );
        }
        Ok(run)
    }

    pub async fn delete(&self, account: AccountId) -> Result<(), ServiceError> {
        self.consent_command(account, ConsentCommand::Delete)
            .await
            .map(|_| ())
    }

    // ---- pseudonyms and contact discovery ------------------------------

    /// Computes missing pseudonyms (every purpose, active key version), at
    /// most `batch` accounts per purpose, and once a purpose is complete,
    /// drops the pseudonyms of superseded versions (re-pseudonymisation
    /// after a key rotation). Safe to run concurrently and repeatedly.
    pub async fn refresh_pseudonyms(&self, batch: u32) -> Result<PseudonymRefresh, ServiceError> {
        let keys = self.keys.as_ref().ok_or(ServiceError::NoKeyService)?;
        let mut report = PseudonymRefresh::default();
        for purpose in OprfPurpose::ALL {
            let version = keys.oprf.active_version(purpose).await.map_err(key_err)?;
            let missing = self
                .store
                .accounts_missing_pseudonym(purpose, version, batch)
                .await?;
            if !missing.is_empty() {
                let phones: Vec<PhoneNumber> = missing.iter().map(|(_, p)| p.clone()).collect();
                let ps = keys
                    .oprf
                    .phone_pseudonyms(purpose, Some(version), &phones)
                    .await
                    .map_err(key_err)?;
                let mut n = 0;
                for ((account, _), p) in missing.iter().zip(&ps) {
                    match self
                        .store
                        .put_pseudonym(*account, purpose, p.key_version(), &p.id())
                        .await
                    {
                        Ok(()) => n += 1,
                        // Deleted meanwhile: nothing to keep.
                        Err(StoreError::NotFound(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                report.computed.insert(purpose.as_str().into(), n);
            }
            if missing.len() < batch as usize {
                let dropped = self
                    .store
                    .drop_other_pseudonym_versions(purpose, version)
                    .await?;
                if dropped > 0 {
                    tracing::info!(
                        purpose = purpose.as_str(),
                        version = version.0,
                        dropped,
                        "re-pseudonymised"
                    );
                    report.dropped.insert(purpose.as_str().into(), dropped);
                }
            } else {
                report.remaining = true;
            }
        }
        Ok(report)
    }

    /// What a device needs to discover its contacts.
    pub async fn discovery_config(&self) -> Result<DiscoveryConfig, ServiceError> {
        let keys = self.keys.as_ref().ok_or(ServiceError::NoKeyService)?;
        // Catch up first, so that the bucket of the active version is whole.
        let _ = self.refresh_pseudonyms(1000).await?;
        let version = keys
            .oprf
            .active_version(OprfPurpose::Contacts)
            .await
            .map_err(key_err)?;
        Ok(DiscoveryConfig {
            key_version: version.0,
            keyd_url: keys.public_url.clone(),
            prefix_bits: 16,
        })
    }

    /// The registered users' `contacts` pseudonyms whose first 16 bits are
    /// `prefix`. The device tests its own contacts against them locally:
    /// the messenger learns 16 bits of a pseudonym, never a number.
    pub async fn contacts_bucket(
        &self,
        version: KeyVersion,
        prefix: u16,
    ) -> Result<Vec<PseudonymId>, ServiceError> {
        if self.keys.is_none() {
            return Err(ServiceError::NoKeyService);
        }
        Ok(self
            .store
            .pseudonym_bucket(OprfPurpose::Contacts, version, prefix)
            .await?)
    }

    // ---- ledger -------------------------------------------------------

    pub async fn ledger_page(
        &self,
        shard: u16,
        after: u64,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, ServiceError> {
        if shard >= SHARDS {
            return Err(ServiceError::BadRequest(format!(
                "shard must be below {SHARDS}"
            )));
        }
        Ok(self
            .store
            .ledger_page(shard, after, limit.clamp(1, 1000))
            .await?)
    }

    /// Walks every shard's chain. `Ok` for intact chains; otherwise the
    /// first entry that does not fit.
    pub async fn verify_ledger(&self) -> Result<LedgerReport, ServiceError> {
        Ok(verify_ledger(&*self.store, &[], None).await?)
    }
}

/// Why a ledger failed verification, naming the shard.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerVerifyError {
    #[error("shard {shard}: {error}")]
    Chain { shard: u16, error: ChainError },
    #[error("{0}")]
    Witness(#[from] WitnessError),
    #[error("checkpoints were given but no log key to check their signatures")]
    NoKey,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<LedgerVerifyError> for ServiceError {
    fn from(e: LedgerVerifyError) -> Self {
        match e {
            LedgerVerifyError::Chain { error, .. } => ServiceError::LedgerTampered(error),
            LedgerVerifyError::Store(e) => ServiceError::Store(e),
            other => ServiceError::BadRequest(other.to_string()),
        }
    }
}

/// Walks a store's whole ledger, shard by shard and page by page: each
/// chain against its head row, then each shard's Merkle tree against the
/// signed `checkpoints` held outside the database (their signatures
/// checked with `key`). A truncation or a rewrite with the chain and
/// heads recomputed passes the first check and fails the second.
pub async fn verify_ledger(
    store: &dyn MessengerStore,
    checkpoints: &[SignedCheckpoint],
    key: Option<&LogKey>,
) -> Result<LedgerReport, LedgerVerifyError> {
    if !checkpoints.is_empty() && key.is_none() {
        return Err(LedgerVerifyError::NoKey);
    }
    let mut report = LedgerReport {
        entries: 0,
        shards: Vec::new(),
        checkpoints_checked: 0,
    };
    for (shard, count, hash) in store.ledger_heads().await? {
        let mut v = ChainVerifier::default();
        let mut leaves = Vec::new();
        let mut after = 0;
        loop {
            let page = store.ledger_page(shard, after, 1000).await?;
            if page.is_empty() {
                break;
            }
            for e in &page {
                v.feed(e)
                    .map_err(|error| LedgerVerifyError::Chain { shard, error })?;
                leaves.push(e.hash);
                after = e.seq;
            }
        }
        let chain = v
            .finish(Some((count, hash)))
            .map_err(|error| LedgerVerifyError::Chain { shard, error })?;
        if let Some(key) = key {
            report.checkpoints_checked +=
                check_against_checkpoints(key, shard, &leaves, checkpoints)?;
        }
        let mut tree = ShardTree::default();
        leaves.iter().for_each(|h| tree.push(*h));
        report.entries += chain.entries;
        report.shards.push(ShardReport {
            shard,
            entries: chain.entries,
            head_hash: chain.head_hash,
            root: tree.root(),
        });
    }
    Ok(report)
}

fn view(
    account: AccountId,
    state: ConsentState,
    policies: &PolicyHistory,
    now: Timestamp,
) -> ConsentView {
    ConsentView {
        account_id: account,
        at: now,
        granted_now: state.granted_purposes(policies, now).into_iter().collect(),
        access: state.access(policies, now),
        pending_policy: state.pending_policy(policies, now).map(|p| p.version),
        state,
    }
}

fn key_err(e: accord_keyd::OprfClientError) -> ServiceError {
    ServiceError::KeyService(e.to_string())
}
