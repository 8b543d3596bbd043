//! Business messaging: the use cases behind `/v1/business/*` (the
//! business API, authenticated by a business's API key),
//! `/v1/businesses/*` and `/v1/me/businesses/*` (users), and the
//! operator's reviews. By concern:
//!
//! - this file: the [`Business`] handle, its configuration and errors,
//!   registration, API keys, templates and their review, profiles, users'
//!   controls;
//! - `admission`: a business send, checked against the rules in the
//!   order [`Refusal`]s are listed in `admission.rs`, then handed to the
//!   relay with its metadata;
//! - `standing`: the quality rating and the messaging-limit tier;
//! - `webhooks`: the status events' outbox and its dispatcher.
//!
//! Decisions:
//! - A business is a messenger account (its number, its E2E devices) with
//!   a `businesses` row. Its devices send through `POST
//!   /v1/business/messages` only; `POST /v1/messages` refuses them (403
//!   `use_business_api`), so no business message escapes admission.
//! - A business resolves a number or account to keys only for users who
//!   opted in to it or wrote to it in the last 24 hours; anyone else,
//!   user or not, is `unknown_recipient` alike, so a business cannot
//!   learn who has an account by trying numbers.
//! - Templates are signed with the consent log's key under their own
//!   origin line (`accord business template v1`), so the one key a user's
//!   client pins for receipts also vouches for template bodies.
//! - Caches are per node and short (one second); another node's change
//!   (an opt-out, a block, a review) is seen within it.

mod admission;
mod standing;
pub mod webhooks;

use crate::relay::limit::TokenBuckets;
use crate::relay::{Relay, RelayError};
use crate::transparency::ConsentLog;
use crate::ttl_cache::TtlCache;
use accord_crypto::token::{BearerToken, TokenHash};
use accord_domain::business::{
    self as rules, Category, QualityRules, Refusal, TemplateContent, TemplateStatus, TierRules,
};
use accord_domain::{AccountId, Clock, Timestamp};
use accord_messenger_wire::{
    ApiKeyCreated, ApiKeyView, BusinessControl, BusinessProfile, ReviewTemplate, SetControls,
    SignedTemplate, SubmitTemplate, TemplateView,
};
use accord_storage::business::{
    ApiKeyRow, BusinessRow, BusinessStore, Controls, NewTemplate, TemplateRow,
};
use accord_storage::StoreError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Business messaging's tunables.
#[derive(Clone, Debug)]
pub struct BusinessConfig {
    pub quality: QualityRules,
    pub tiers: TierRules,
    /// Each business's throughput limit, messages per second, and burst.
    pub messages_per_s: f64,
    pub burst: f64,
    /// How long one webhook request may take.
    pub webhook_timeout: Duration,
    /// Events are retried with exponential backoff for this long.
    pub webhook_give_up_ms: i64,
}

impl Default for BusinessConfig {
    fn default() -> Self {
        BusinessConfig {
            quality: QualityRules::default(),
            tiers: TierRules::default(),
            messages_per_s: 1_000.0,
            burst: 1_000.0,
            webhook_timeout: Duration::from_secs(10),
            webhook_give_up_ms: 24 * 3_600_000,
        }
    }
}

/// Why a business operation failed. The HTTP layer maps each to a status
/// and a stable code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusinessError {
    #[error("{}", .0.message())]
    Refused(Refusal),
    #[error("this account is not a business")]
    NotABusiness,
    #[error("this account is a business already")]
    AlreadyBusiness,
    #[error("the API key is unknown")]
    ApiKeyInvalid,
    #[error("the API key expired; create a new one")]
    ApiKeyExpired,
    #[error("the API key was revoked")]
    ApiKeyRevoked,
    #[error("this business was revoked by the operator and can no longer send")]
    BusinessRevoked,
    #[error("no such template")]
    UnknownTemplate,
    #[error("no such business")]
    UnknownBusiness,
    #[error("no user of this number or account may receive messages from this business: they have not opted in to it or written to it")]
    UnknownRecipient,
    #[error("a business's devices send through POST /v1/business/messages")]
    UseBusinessApi,
    #[error("{0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rules::BusinessError> for BusinessError {
    fn from(e: rules::BusinessError) -> Self {
        BusinessError::BadRequest(e.to_string())
    }
}

type Result<T> = std::result::Result<T, BusinessError>;

struct Inner {
    store: Arc<dyn BusinessStore>,
    relay: Relay,
    clock: Arc<dyn Clock>,
    log: Arc<ConsentLog>,
    config: BusinessConfig,
    limits: TokenBuckets<AccountId>,
    rows: TtlCache<AccountId, Option<Arc<BusinessRow>>>,
    keys: TtlCache<TokenHash, Option<ApiKeyRow>>,
    templates: TtlCache<(AccountId, String, String, u32), Option<Arc<TemplateRow>>>,
    /// (business, user) → the user's side, as admission reads it: a claim
    /// and the send right after it read it once.
    recipients: TtlCache<(AccountId, AccountId), accord_storage::business::RecipientState>,
    usage: Mutex<HashMap<AccountId, admission::Usage>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Business").finish_non_exhaustive()
    }
}

/// Business messaging on this node. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Business {
    inner: Arc<Inner>,
}

const CACHE_TTL: Duration = Duration::from_secs(1);

impl Business {
    pub fn new(
        store: Arc<dyn BusinessStore>,
        relay: Relay,
        clock: Arc<dyn Clock>,
        log: Arc<ConsentLog>,
        config: BusinessConfig,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.webhook_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS backend is built in");
        Business {
            inner: Arc::new(Inner {
                limits: TokenBuckets::new(config.messages_per_s, config.burst),
                rows: TtlCache::new(CACHE_TTL),
                keys: TtlCache::new(CACHE_TTL),
                templates: TtlCache::new(CACHE_TTL),
                recipients: TtlCache::new(CACHE_TTL),
                usage: Mutex::new(HashMap::new()),
                http,
                store,
                relay,
                clock,
                log,
                config,
            }),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    pub fn config(&self) -> &BusinessConfig {
        &self.inner.config
    }

    pub fn store(&self) -> &Arc<dyn BusinessStore> {
        &self.inner.store
    }

    /// The business of `account`, if it is one (cached briefly).
    pub async fn row(&self, account: AccountId) -> Result<Option<Arc<BusinessRow>>> {
        if let Some(r) = self.inner.rows.get(&account) {
            return Ok(r);
        }
        let r = self.inner.store.business(account).await?.map(Arc::new);
        self.inner.rows.put(account, r.clone());
        Ok(r)
    }

    pub async fn is_business(&self, account: AccountId) -> Result<bool> {
        Ok(self.row(account).await?.is_some())
    }

    fn forget(&self, account: AccountId) {
        self.inner.rows.remove(&account);
    }

    /// The user's side towards a business as admission needs it (its
    /// controls, window, block, and whether a conversation was started in
    /// the tier window), cached briefly; a change through
    /// [`Business::set_controls`] on this node is seen at once.
    pub(crate) async fn recipient_state(
        &self,
        business: AccountId,
        account: AccountId,
    ) -> Result<accord_storage::business::RecipientState> {
        let key = (business, account);
        if let Some(s) = self.inner.recipients.get(&key) {
            return Ok(s);
        }
        let since = self.now().plus_millis(-rules::TIER_WINDOW_MS);
        let s = self
            .inner
            .store
            .recipient_state(business, account, since)
            .await?;
        self.inner.recipients.put(key, s.clone());
        Ok(s)
    }

    /// Notes that admission started a conversation (the cached state must
    /// say so, or the next send would count it again).
    pub(crate) fn note_started(&self, business: AccountId, account: AccountId) {
        let key = (business, account);
        if let Some(mut s) = self.inner.recipients.get(&key) {
            s.started = true;
            self.inner.recipients.put(key, s);
        }
    }

    // ---- registration and API keys --------------------------------------

    /// Makes `account` a business named `name`, and gives its first API
    /// key.
    pub async fn register(&self, account: AccountId, name: &str) -> Result<ApiKeyCreated> {
        let name = rules::check_display_name(name)?;
        match self
            .inner
            .store
            .create_business(account, &name, self.now())
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Err(BusinessError::AlreadyBusiness),
            Err(e) => return Err(e.into()),
        }
        self.forget(account);
        self.create_key(account, "first key", None).await
    }

    /// A new API key of `business`; the secret is in the answer only.
    pub async fn create_key(
        &self,
        business: AccountId,
        label: &str,
        expires_in_days: Option<u32>,
    ) -> Result<ApiKeyCreated> {
        if self.row(business).await?.is_none() {
            return Err(BusinessError::NotABusiness);
        }
        if label.chars().count() > 64 || label.chars().any(char::is_control) {
            return Err(BusinessError::BadRequest(
                "a label is at most 64 characters without control characters".into(),
            ));
        }
        if expires_in_days == Some(0) || expires_in_days.is_some_and(|d| d > 3_650) {
            return Err(BusinessError::BadRequest(
                "expires_in_days must be 1 to 3650".into(),
            ));
        }
        let token = BearerToken::generate();
        let secret = format!("acb_{}", token.reveal());
        let now = self.now();
        let row = ApiKeyRow {
            id: Uuid::new_v4(),
            business,
            hash: TokenHash::of(&secret),
            label: label.to_owned(),
            created_at: now,
            expires_at: expires_in_days.map(|d| now.plus_millis(i64::from(d) * 86_400_000)),
            revoked_at: None,
        };
        self.inner.store.put_api_key(&row).await?;
        Ok(ApiKeyCreated {
            business,
            key_id: row.id,
            api_key: secret,
            expires_at: row.expires_at,
        })
    }

    pub async fn keys(&self, business: AccountId) -> Result<Vec<ApiKeyView>> {
        if self.row(business).await?.is_none() {
            return Err(BusinessError::NotABusiness);
        }
        Ok(self
            .inner
            .store
            .api_keys(business)
            .await?
            .into_iter()
            .map(|k| ApiKeyView {
                key_id: k.id,
                label: k.label,
                created_at: k.created_at,
                expires_at: k.expires_at,
                revoked_at: k.revoked_at,
            })
            .collect())
    }

    pub async fn revoke_key(&self, business: AccountId, id: Uuid) -> Result<()> {
        if !self
            .inner
            .store
            .revoke_api_key(business, id, self.now())
            .await?
        {
            return Err(BusinessError::NotFound);
        }
        // This node forgets its cached keys now; every other node within
        // the cache's second.
        self.inner.keys.clear();
        Ok(())
    }

    /// The business an API key belongs to, if the key is valid now and the
    /// business not revoked.
    pub async fn authenticate(&self, api_key: &str) -> Result<Arc<BusinessRow>> {
        self.authenticate_hash(TokenHash::of(api_key)).await
    }

    /// [`Self::authenticate`] by the key's hash (a console session holds
    /// the hash of the key it signed in with, so that revoking the key
    /// ends the session).
    pub async fn authenticate_hash(&self, hash: TokenHash) -> Result<Arc<BusinessRow>> {
        let key = match self.inner.keys.get(&hash) {
            Some(k) => k,
            None => {
                let k = self.inner.store.api_key(&hash).await?;
                self.inner.keys.put(hash, k.clone());
                k
            }
        };
        let key = key.ok_or(BusinessError::ApiKeyInvalid)?;
        if key.revoked_at.is_some() {
            return Err(BusinessError::ApiKeyRevoked);
        }
        if key.expires_at.is_some_and(|t| t <= self.now()) {
            return Err(BusinessError::ApiKeyExpired);
        }
        let row = self
            .row(key.business)
            .await?
            .ok_or(BusinessError::ApiKeyInvalid)?;
        if row.revoked_at.is_some() {
            return Err(BusinessError::BusinessRevoked);
        }
        Ok(row)
    }

    // ---- operator ---------------------------------------------------------

    pub async fn set_verified(&self, business: AccountId, verified: bool) -> Result<()> {
        let at = verified.then(|| self.now());
        if !self.inner.store.set_verified(business, at).await? {
            return Err(BusinessError::UnknownBusiness);
        }
        self.forget(business);
        Ok(())
    }

    pub async fn set_revoked(&self, business: AccountId, revoked: bool) -> Result<()> {
        let at = revoked.then(|| self.now());
        if !self.inner.store.set_revoked(business, at).await? {
            return Err(BusinessError::UnknownBusiness);
        }
        self.forget(business);
        Ok(())
    }

    pub async fn all(&self) -> Result<Vec<BusinessRow>> {
        Ok(self.inner.store.businesses().await?)
    }

    // ---- templates --------------------------------------------------------

    pub async fn submit_template(
        &self,
        business: AccountId,
        t: SubmitTemplate,
    ) -> Result<TemplateView> {
        rules::check_template_name(&t.name)?;
        rules::check_language(&t.language)?;
        if !t.category.is_template_category() {
            return Err(BusinessError::BadRequest(
                "a template's category is utility, authentication or marketing".into(),
            ));
        }
        let params = rules::parse_body(&t.body)?;
        let row = self
            .inner
            .store
            .put_template(&NewTemplate {
                business,
                name: t.name,
                language: t.language,
                category: t.category.as_str().to_owned(),
                body: t.body,
                params: params as u32,
                at: self.now(),
            })
            .await?;
        template_view(row)
    }

    pub async fn templates(&self, business: AccountId) -> Result<Vec<TemplateView>> {
        self.inner
            .store
            .templates(business)
            .await?
            .into_iter()
            .map(template_view)
            .collect()
    }

    /// The operator's queue: templates in `status`.
    pub async fn templates_in(&self, status: TemplateStatus) -> Result<Vec<TemplateView>> {
        self.inner
            .store
            .templates_in(status.as_str())
            .await?
            .into_iter()
            .map(template_view)
            .collect()
    }

    pub async fn review(&self, id: Uuid, r: ReviewTemplate) -> Result<TemplateView> {
        let t = self
            .inner
            .store
            .template(id)
            .await?
            .ok_or(BusinessError::UnknownTemplate)?;
        let from = TemplateStatus::parse(&t.status)?;
        let to = r.decision.apply(from)?;
        if let Some(reason) = &r.reason {
            if reason.chars().count() > 512 {
                return Err(BusinessError::BadRequest(
                    "a reason is at most 512 characters".into(),
                ));
            }
        }
        if !self
            .inner
            .store
            .review_template(
                id,
                from.as_str(),
                to.as_str(),
                r.reason.as_deref(),
                self.now(),
            )
            .await?
        {
            return Err(BusinessError::BadRequest(
                "the template was reviewed meanwhile; read it again".into(),
            ));
        }
        self.inner
            .templates
            .remove(&(t.business, t.name.clone(), t.language.clone(), t.version));
        let t = self
            .inner
            .store
            .template(id)
            .await?
            .ok_or(BusinessError::UnknownTemplate)?;
        template_view(t)
    }

    /// A template version (cached briefly).
    async fn template(
        &self,
        business: AccountId,
        name: &str,
        language: &str,
        version: u32,
    ) -> Result<Option<Arc<TemplateRow>>> {
        let key = (business, name.to_owned(), language.to_owned(), version);
        if let Some(t) = self.inner.templates.get(&key) {
            return Ok(t);
        }
        let t = self
            .inner
            .store
            .template_version(business, name, language, version)
            .await?
            .map(Arc::new);
        self.inner.templates.put(key, t.clone());
        Ok(t)
    }

    /// An approved (or since paused) template's content, signed, for a
    /// recipient's client to render.
    pub async fn signed_template(
        &self,
        business: AccountId,
        name: &str,
        language: &str,
        version: u32,
    ) -> Result<SignedTemplate> {
        let t = self
            .template(business, name, language, version)
            .await?
            .ok_or(BusinessError::UnknownTemplate)?;
        if !matches!(t.status.as_str(), "approved" | "paused") {
            return Err(BusinessError::UnknownTemplate);
        }
        let content = TemplateContent {
            business,
            name: t.name.clone(),
            language: t.language.clone(),
            version: t.version,
            category: Category::parse(&t.category)?,
            body: t.body.clone(),
        };
        let signature = self.inner.log.sign_message(&content.signed_message());
        Ok(SignedTemplate {
            content,
            signature,
            key: self.inner.log.public_key().to_hex(),
        })
    }

    // ---- profiles and users' controls -------------------------------------

    pub async fn profile(&self, business: AccountId) -> Result<BusinessProfile> {
        let row = self
            .row(business)
            .await?
            .ok_or(BusinessError::UnknownBusiness)?;
        Ok(profile_of(&row))
    }

    /// Every business the user has controls for or wrote to in the last
    /// 24 hours: what it may send now, and why.
    pub async fn controls_for(&self, account: AccountId) -> Result<Vec<BusinessControl>> {
        let now = self.now();
        let mut businesses: Vec<AccountId> = self
            .inner
            .store
            .controls_of(account)
            .await?
            .into_iter()
            .map(|c| c.business)
            .collect();
        for (b, _) in self
            .inner
            .store
            .windows_of(account, now.plus_millis(-rules::SERVICE_WINDOW_MS))
            .await?
        {
            if !businesses.contains(&b) {
                businesses.push(b);
            }
        }
        let mut out = Vec::new();
        for b in businesses {
            if let Some(c) = self.control(account, b).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// One business's control view for `account` (`None`: not a business).
    pub async fn control(
        &self,
        account: AccountId,
        business: AccountId,
    ) -> Result<Option<BusinessControl>> {
        let Some(row) = self.row(business).await? else {
            return Ok(None);
        };
        let now = self.now();
        let state = self
            .inner
            .store
            .recipient_state(business, account, now)
            .await?;
        let c = state
            .controls
            .unwrap_or_else(|| Controls::none(account, business));
        let muted: Vec<Category> = c
            .muted
            .iter()
            .filter_map(|m| Category::parse(m).ok())
            .collect();
        let window_until = state
            .last_inbound_at
            .map(|t| t.plus_millis(rules::SERVICE_WINDOW_MS))
            .filter(|t| *t > now);
        let mut may = Vec::new();
        let mut why = Vec::new();
        if state.blocked {
            why.push("you blocked this business: nothing it sends reaches you".into());
        } else {
            if c.opted_in {
                why.push(
                    "you opted in to its messages (receipts, reservations, deliveries, codes)"
                        .to_owned(),
                );
                may.extend([Category::Utility, Category::Authentication]);
                if c.marketing {
                    why.push("you opted in to its marketing".into());
                    may.push(Category::Marketing);
                }
            } else {
                why.push("you have not opted in: it cannot start a conversation with you".into());
            }
            if let Some(until) = window_until {
                why.push(format!(
                    "you wrote to it: it may reply freely until {}",
                    until.to_rfc3339()
                ));
                may.push(Category::Service);
            }
            if !muted.is_empty() {
                why.push(format!(
                    "you muted: {}",
                    muted
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            may.retain(|m| !muted.contains(m));
        }
        Ok(Some(BusinessControl {
            business: profile_of(&row),
            opted_in: c.opted_in,
            marketing: c.marketing,
            muted,
            blocked: state.blocked,
            service_window_until: window_until,
            may_send: may,
            why,
        }))
    }

    /// Changes `account`'s controls for `business`.
    pub async fn set_controls(
        &self,
        account: AccountId,
        business: AccountId,
        s: SetControls,
    ) -> Result<BusinessControl> {
        if account == business {
            return Err(BusinessError::BadRequest(
                "a business has no controls over itself".into(),
            ));
        }
        if self.row(business).await?.is_none() {
            return Err(BusinessError::UnknownBusiness);
        }
        let now = self.now();
        let mut c = self
            .inner
            .store
            .controls(account, business)
            .await?
            .unwrap_or_else(|| Controls::none(account, business));
        if let Some(o) = s.opted_in {
            c.opted_in = o;
            if !o {
                c.marketing = false;
            }
        }
        if let Some(m) = s.marketing {
            if m && !c.opted_in {
                return Err(BusinessError::BadRequest(
                    "opt in to the business first (opted_in: true) to opt in to its marketing"
                        .into(),
                ));
            }
            c.marketing = m;
        }
        for m in s.mute {
            if !c.muted.iter().any(|x| x == m.as_str()) {
                c.muted.push(m.as_str().to_owned());
            }
        }
        c.muted
            .retain(|x| !s.unmute.iter().any(|u| u.as_str() == x.as_str()));
        c.muted.sort();
        c.updated_at = now;
        self.inner.store.put_controls(&c).await?;
        self.inner.recipients.remove(&(business, account));
        match s.blocked {
            Some(true) => self.inner.relay.block(account, business).await?,
            Some(false) => self.inner.relay.unblock(account, business).await?,
            None => {}
        }
        self.control(account, business)
            .await?
            .ok_or(BusinessError::UnknownBusiness)
    }

    /// A user wrote to `to`: if it is a business, its customer-service
    /// window with the user opens for 24 hours.
    pub async fn note_user_message(&self, from: AccountId, to: AccountId) -> Result<()> {
        if from != to && self.is_business(to).await? && !self.is_business(from).await? {
            self.inner.store.touch_window(to, from, self.now()).await?;
            self.inner.recipients.remove(&(to, from));
        }
        Ok(())
    }
}

pub(crate) fn profile_of(row: &BusinessRow) -> BusinessProfile {
    let verified = row.verified_at.is_some();
    BusinessProfile {
        business: row.account,
        verified,
        display_name: verified.then(|| row.display_name.clone()),
        revoked: row.revoked_at.is_some(),
    }
}

fn template_view(t: TemplateRow) -> Result<TemplateView> {
    Ok(TemplateView {
        id: t.id,
        business: t.business,
        category: Category::parse(&t.category)?,
        name: t.name,
        language: t.language,
        version: t.version,
        body: t.body,
        params: t.params,
        status: t.status,
        reason: t.reason,
        submitted_at: t.submitted_at,
        reviewed_at: t.reviewed_at,
    })
}
