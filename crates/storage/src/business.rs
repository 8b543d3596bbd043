//! [`BusinessStore`]: business messaging's tables in the messenger's
//! database (migration 0010): businesses, their API keys (hashes only),
//! templates and their review, users' controls per business, the
//! customer-service windows, the status events (the webhook outbox) and
//! the webhooks. The `sent` and `delivered` events are written by the
//! mailbox group commit (`mailbox/commit.rs`) in the transaction of the
//! send or the ack; this store writes `failed` events and drains the
//! outbox.

use crate::db::Db;
use crate::error::{Result, StoreError};
use crate::sql::{conflict_on_unique, parse_uuid, uuid_text};
use accord_crypto::token::TokenHash;
use accord_domain::{AccountId, Timestamp};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

/// A business, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessRow {
    pub account: AccountId,
    pub display_name: String,
    pub verified_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub tier: u32,
    pub tier_changed_at: Timestamp,
    pub tier_reason: String,
    /// `green`, `yellow` or `red`.
    pub quality: String,
    pub quality_changed_at: Timestamp,
    pub quality_reason: String,
    pub created_at: Timestamp,
}

/// An API key of a business (its hash only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub business: AccountId,
    pub hash: TokenHash,
    pub label: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// A template, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateRow {
    pub id: Uuid,
    pub business: AccountId,
    pub name: String,
    pub language: String,
    pub version: u32,
    pub category: String,
    pub body: String,
    pub params: u32,
    /// `pending`, `approved`, `rejected` or `paused`.
    pub status: String,
    pub reason: Option<String>,
    pub submitted_at: Timestamp,
    pub reviewed_at: Option<Timestamp>,
}

/// A template submission (its version is the next for its name and
/// language).
#[derive(Clone, Debug)]
pub struct NewTemplate {
    pub business: AccountId,
    pub name: String,
    pub language: String,
    pub category: String,
    pub body: String,
    pub params: u32,
    pub at: Timestamp,
}

/// A user's controls for one business.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Controls {
    pub account: AccountId,
    pub business: AccountId,
    pub opted_in: bool,
    pub marketing: bool,
    /// Muted categories, by name.
    pub muted: Vec<String>,
    pub updated_at: Timestamp,
}

impl Controls {
    /// What a user who never set anything has: nothing allowed, nothing
    /// muted.
    pub fn none(account: AccountId, business: AccountId) -> Self {
        Controls {
            account,
            business,
            opted_in: false,
            marketing: false,
            muted: Vec::new(),
            updated_at: Timestamp(0),
        }
    }
}

/// A status event, as the console shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    pub id: i64,
    pub business: AccountId,
    pub message_id: String,
    pub recipient: AccountId,
    /// `sent`, `delivered` or `failed`.
    pub status: String,
    pub category: Option<String>,
    pub code: Option<String>,
    pub at: Timestamp,
    /// 0 due, 1 delivered to the webhook, 2 given up, 3 no webhook.
    pub hook_state: i64,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// A `failed` event (a refused send).
#[derive(Clone, Debug)]
pub struct FailedEvent {
    pub business: AccountId,
    pub message_id: String,
    pub recipient: AccountId,
    pub category: Option<String>,
    pub code: String,
    pub at: Timestamp,
}

/// A registered webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookRow {
    pub business: AccountId,
    pub url: String,
    /// The HMAC-SHA256 key the events are signed with. The messenger must
    /// hold it to sign; it is shown to the business once.
    pub secret: String,
    pub created_at: Timestamp,
}

/// The webhook outbox's counts for one business.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookStats {
    pub due: u64,
    /// Due events that failed at least once.
    pub failing: u64,
    pub delivered: u64,
    pub given_up: u64,
}

/// What admission needs to know of one recipient, read in one round trip.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecipientState {
    pub controls: Option<Controls>,
    /// When the user last wrote to the business.
    pub last_inbound_at: Option<Timestamp>,
    /// The business started a conversation with the user since the
    /// `since` asked for.
    pub started: bool,
    pub blocked: bool,
}

/// What the quality rating and the tier are computed from, over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Signals {
    pub delivered: u64,
    pub blocks: u64,
    pub reports: u64,
    /// Unique users the business started conversations with.
    pub started: u64,
}

#[async_trait]
pub trait BusinessStore: Send + Sync + std::fmt::Debug + 'static {
    /// `Conflict("business")` if the account is a business already.
    async fn create_business(&self, account: AccountId, name: &str, at: Timestamp) -> Result<()>;
    async fn business(&self, account: AccountId) -> Result<Option<BusinessRow>>;
    async fn businesses(&self) -> Result<Vec<BusinessRow>>;
    /// Verifies (`Some`) or unverifies; `false` if no such business.
    async fn set_verified(&self, account: AccountId, at: Option<Timestamp>) -> Result<bool>;
    async fn set_revoked(&self, account: AccountId, at: Option<Timestamp>) -> Result<bool>;
    async fn set_quality(
        &self,
        account: AccountId,
        quality: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<()>;
    async fn set_tier(
        &self,
        account: AccountId,
        tier: u32,
        reason: &str,
        at: Timestamp,
    ) -> Result<()>;

    async fn put_api_key(&self, key: &ApiKeyRow) -> Result<()>;
    async fn api_key(&self, hash: &TokenHash) -> Result<Option<ApiKeyRow>>;
    async fn api_keys(&self, business: AccountId) -> Result<Vec<ApiKeyRow>>;
    /// `false` if the business has no such key (or it was revoked).
    async fn revoke_api_key(&self, business: AccountId, id: Uuid, at: Timestamp) -> Result<bool>;

    /// Stores a submission as the next version of its name and language.
    async fn put_template(&self, t: &NewTemplate) -> Result<TemplateRow>;
    async fn template(&self, id: Uuid) -> Result<Option<TemplateRow>>;
    async fn templates(&self, business: AccountId) -> Result<Vec<TemplateRow>>;
    /// Every template in `status` (the operator's review queue).
    async fn templates_in(&self, status: &str) -> Result<Vec<TemplateRow>>;
    async fn template_version(
        &self,
        business: AccountId,
        name: &str,
        language: &str,
        version: u32,
    ) -> Result<Option<TemplateRow>>;
    /// Moves a template from `from` to `to`; `false` if it was not in
    /// `from` any more (a concurrent review).
    async fn review_template(
        &self,
        id: Uuid,
        from: &str,
        to: &str,
        reason: Option<&str>,
        at: Timestamp,
    ) -> Result<bool>;

    async fn controls(&self, account: AccountId, business: AccountId) -> Result<Option<Controls>>;
    /// Every business `account` has controls for.
    async fn controls_of(&self, account: AccountId) -> Result<Vec<Controls>>;
    async fn put_controls(&self, c: &Controls) -> Result<()>;

    /// The user wrote to the business at `at`.
    async fn touch_window(
        &self,
        business: AccountId,
        account: AccountId,
        at: Timestamp,
    ) -> Result<()>;
    /// Every business `account` wrote to since `since`, with when.
    async fn windows_of(
        &self,
        account: AccountId,
        since: Timestamp,
    ) -> Result<Vec<(AccountId, Timestamp)>>;

    async fn record_failed(&self, e: &FailedEvent) -> Result<()>;
    /// The newest `limit` events of a business.
    async fn events(&self, business: AccountId, limit: u32) -> Result<Vec<EventRow>>;
    /// Delivered messages, blocks, reports and conversations started
    /// (unique recipients of initiated sends) since `since`, in one query.
    async fn signals(&self, business: AccountId, since: Timestamp) -> Result<Signals>;
    /// Unique users the business started conversations with since `since`.
    async fn started_since(&self, business: AccountId, since: Timestamp) -> Result<u64>;

    /// Controls, window, a conversation started since `since`, and a
    /// block, of `account` towards `business`, in one query.
    async fn recipient_state(
        &self,
        business: AccountId,
        account: AccountId,
        since: Timestamp,
    ) -> Result<RecipientState>;

    async fn put_webhook(&self, w: &WebhookRow) -> Result<()>;
    async fn webhook(&self, business: AccountId) -> Result<Option<WebhookRow>>;
    async fn delete_webhook(&self, business: AccountId) -> Result<bool>;
    /// Due events of businesses with a webhook, oldest first, and the
    /// webhook each goes to. Marks due events of businesses without one
    /// as such first.
    async fn due_events(&self, now: Timestamp, limit: u32) -> Result<Vec<(EventRow, WebhookRow)>>;
    async fn mark_hooked(&self, ids: &[i64]) -> Result<()>;
    /// A failed attempt: try again at `next` (or give up when `None`).
    async fn reschedule(&self, ids: &[i64], next: Option<Timestamp>, error: &str) -> Result<()>;
    async fn hook_stats(&self, business: AccountId) -> Result<HookStats>;
    /// Removes events from before `before` that need no more webhook
    /// delivery (delivered, given up, or with no webhook); returns how many.
    async fn purge_events(&self, before: Timestamp) -> Result<u64>;
}

/// The SQL implementation, on the messenger's database.
#[derive(Clone, Debug)]
pub struct SqlBusinessStore {
    db: Db,
}

impl SqlBusinessStore {
    /// On a database whose messenger migrations have run
    /// (`SqlMessengerStore::new` runs them).
    pub fn new(db: Db) -> Self {
        SqlBusinessStore { db }
    }
}

fn ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp)
}

fn business_row(r: &AnyRow) -> Result<BusinessRow> {
    Ok(BusinessRow {
        account: AccountId(parse_uuid(&r.try_get::<String, _>("account_id")?)?),
        display_name: r.try_get("display_name")?,
        verified_at: ts(r.try_get("verified_at")?),
        revoked_at: ts(r.try_get("revoked_at")?),
        tier: r.try_get::<i64, _>("tier")? as u32,
        tier_changed_at: Timestamp(r.try_get("tier_changed_at")?),
        tier_reason: r.try_get("tier_reason")?,
        quality: r.try_get("quality")?,
        quality_changed_at: Timestamp(r.try_get("quality_changed_at")?),
        quality_reason: r.try_get("quality_reason")?,
        created_at: Timestamp(r.try_get("created_at")?),
    })
}

fn key_row(r: &AnyRow) -> Result<ApiKeyRow> {
    let hash: Vec<u8> = r.try_get("token_hash")?;
    Ok(ApiKeyRow {
        id: parse_uuid(&r.try_get::<String, _>("id")?)?,
        business: AccountId(parse_uuid(&r.try_get::<String, _>("business")?)?),
        hash: TokenHash(crate::sql::bytes32(hash, "token_hash")?),
        label: r.try_get("label")?,
        created_at: Timestamp(r.try_get("created_at")?),
        expires_at: ts(r.try_get("expires_at")?),
        revoked_at: ts(r.try_get("revoked_at")?),
    })
}

fn template_row(r: &AnyRow) -> Result<TemplateRow> {
    Ok(TemplateRow {
        id: parse_uuid(&r.try_get::<String, _>("id")?)?,
        business: AccountId(parse_uuid(&r.try_get::<String, _>("business")?)?),
        name: r.try_get("name")?,
        language: r.try_get("language")?,
        version: r.try_get::<i64, _>("version")? as u32,
        category: r.try_get("category")?,
        body: r.try_get("body")?,
        params: r.try_get::<i64, _>("params")? as u32,
        status: r.try_get("status")?,
        reason: r.try_get("reason")?,
        submitted_at: Timestamp(r.try_get("submitted_at")?),
        reviewed_at: ts(r.try_get("reviewed_at")?),
    })
}

fn controls_row(r: &AnyRow) -> Result<Controls> {
    let muted: String = r.try_get("muted")?;
    Ok(Controls {
        account: AccountId(parse_uuid(&r.try_get::<String, _>("account_id")?)?),
        business: AccountId(parse_uuid(&r.try_get::<String, _>("business")?)?),
        opted_in: r.try_get::<i64, _>("opted_in")? != 0,
        marketing: r.try_get::<i64, _>("marketing")? != 0,
        muted: muted
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        updated_at: Timestamp(r.try_get("updated_at")?),
    })
}

fn event_row(r: &AnyRow) -> Result<EventRow> {
    Ok(EventRow {
        id: r.try_get("id")?,
        business: AccountId(parse_uuid(&r.try_get::<String, _>("business")?)?),
        message_id: r.try_get("message_id")?,
        recipient: AccountId(parse_uuid(&r.try_get::<String, _>("recipient")?)?),
        status: r.try_get("status")?,
        category: r.try_get("category")?,
        code: r.try_get("code")?,
        at: Timestamp(r.try_get("at")?),
        hook_state: r.try_get("hook_state")?,
        attempts: r.try_get::<i64, _>("attempts")? as u32,
        last_error: r.try_get("last_error")?,
    })
}

fn webhook_row(r: &AnyRow) -> Result<WebhookRow> {
    Ok(WebhookRow {
        business: AccountId(parse_uuid(&r.try_get::<String, _>("business")?)?),
        url: r.try_get("url")?,
        secret: r.try_get("secret")?,
        created_at: Timestamp(r.try_get("created_at")?),
    })
}

const TEMPLATE_COLUMNS: &str = "id, business, name, language, version, category, body, params, \
                                status, reason, submitted_at, reviewed_at";
const EVENT_COLUMNS: &str = "id, business, message_id, recipient, status, category, code, at, \
                             hook_state, attempts, last_error";

/// `($1,$2,...)` for ids from `$first`.
fn id_params(first: usize, n: usize) -> String {
    let v: Vec<String> = (0..n).map(|i| format!("${}", first + i)).collect();
    format!("({})", v.join(","))
}

#[async_trait]
impl BusinessStore for SqlBusinessStore {
    async fn create_business(&self, account: AccountId, name: &str, at: Timestamp) -> Result<()> {
        sqlx::query(
            "INSERT INTO businesses (account_id, display_name, verified_at, revoked_at, tier, \
             tier_changed_at, tier_reason, quality, quality_changed_at, quality_reason, created_at) \
             VALUES ($1, $2, NULL, NULL, 0, $3, 'a new business starts on the first tier', \
             'green', $3, 'a new business starts green', $3)",
        )
        .bind(uuid_text(account.0))
        .bind(name.to_owned())
        .bind(at.0)
        .execute(&self.db.pool)
        .await
        .map_err(conflict_on_unique("business"))?;
        Ok(())
    }

    async fn business(&self, account: AccountId) -> Result<Option<BusinessRow>> {
        sqlx::query("SELECT * FROM businesses WHERE account_id = $1")
            .bind(uuid_text(account.0))
            .fetch_optional(&self.db.pool)
            .await?
            .as_ref()
            .map(business_row)
            .transpose()
    }

    async fn businesses(&self) -> Result<Vec<BusinessRow>> {
        sqlx::query("SELECT * FROM businesses ORDER BY created_at, account_id")
            .fetch_all(&self.db.pool)
            .await?
            .iter()
            .map(business_row)
            .collect()
    }

    async fn set_verified(&self, account: AccountId, at: Option<Timestamp>) -> Result<bool> {
        let r = sqlx::query("UPDATE businesses SET verified_at = $1 WHERE account_id = $2")
            .bind(at.map(|t| t.0))
            .bind(uuid_text(account.0))
            .execute(&self.db.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn set_revoked(&self, account: AccountId, at: Option<Timestamp>) -> Result<bool> {
        let r = sqlx::query("UPDATE businesses SET revoked_at = $1 WHERE account_id = $2")
            .bind(at.map(|t| t.0))
            .bind(uuid_text(account.0))
            .execute(&self.db.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn set_quality(
        &self,
        account: AccountId,
        quality: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE businesses SET quality = $1, quality_reason = $2, quality_changed_at = $3 \
             WHERE account_id = $4",
        )
        .bind(quality.to_owned())
        .bind(reason.to_owned())
        .bind(at.0)
        .bind(uuid_text(account.0))
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    async fn set_tier(
        &self,
        account: AccountId,
        tier: u32,
        reason: &str,
        at: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE businesses SET tier = $1, tier_reason = $2, tier_changed_at = $3 \
             WHERE account_id = $4",
        )
        .bind(i64::from(tier))
        .bind(reason.to_owned())
        .bind(at.0)
        .bind(uuid_text(account.0))
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    async fn put_api_key(&self, key: &ApiKeyRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO business_api_keys (id, business, token_hash, label, created_at, \
             expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(uuid_text(key.id))
        .bind(uuid_text(key.business.0))
        .bind(key.hash.0.to_vec())
        .bind(key.label.clone())
        .bind(key.created_at.0)
        .bind(key.expires_at.map(|t| t.0))
        .bind(key.revoked_at.map(|t| t.0))
        .execute(&self.db.pool)
        .await
        .map_err(conflict_on_unique("api_key"))?;
        Ok(())
    }

    async fn api_key(&self, hash: &TokenHash) -> Result<Option<ApiKeyRow>> {
        sqlx::query("SELECT * FROM business_api_keys WHERE token_hash = $1")
            .bind(hash.0.to_vec())
            .fetch_optional(&self.db.pool)
            .await?
            .as_ref()
            .map(key_row)
            .transpose()
    }

    async fn api_keys(&self, business: AccountId) -> Result<Vec<ApiKeyRow>> {
        sqlx::query("SELECT * FROM business_api_keys WHERE business = $1 ORDER BY created_at, id")
            .bind(uuid_text(business.0))
            .fetch_all(&self.db.pool)
            .await?
            .iter()
            .map(key_row)
            .collect()
    }

    async fn revoke_api_key(&self, business: AccountId, id: Uuid, at: Timestamp) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE business_api_keys SET revoked_at = $1 \
             WHERE id = $2 AND business = $3 AND revoked_at IS NULL",
        )
        .bind(at.0)
        .bind(uuid_text(id))
        .bind(uuid_text(business.0))
        .execute(&self.db.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn put_template(&self, t: &NewTemplate) -> Result<TemplateRow> {
        // The next version of (name, language); two concurrent submissions
        // of one name meet at the unique key, and the loser tries again.
        for _ in 0..5 {
            let (max,): (Option<i64>,) = sqlx::query_as(
                "SELECT MAX(version) FROM business_templates \
                 WHERE business = $1 AND name = $2 AND language = $3",
            )
            .bind(uuid_text(t.business.0))
            .bind(t.name.clone())
            .bind(t.language.clone())
            .fetch_one(&self.db.pool)
            .await?;
            let row = TemplateRow {
                id: Uuid::new_v4(),
                business: t.business,
                name: t.name.clone(),
                language: t.language.clone(),
                version: max.unwrap_or(0) as u32 + 1,
                category: t.category.clone(),
                body: t.body.clone(),
                params: t.params,
                status: "pending".into(),
                reason: None,
                submitted_at: t.at,
                reviewed_at: None,
            };
            let r = sqlx::query(&format!(
                "INSERT INTO business_templates ({TEMPLATE_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, NULL)"
            ))
            .bind(uuid_text(row.id))
            .bind(uuid_text(row.business.0))
            .bind(row.name.clone())
            .bind(row.language.clone())
            .bind(i64::from(row.version))
            .bind(row.category.clone())
            .bind(row.body.clone())
            .bind(i64::from(row.params))
            .bind(row.status.clone())
            .bind(row.submitted_at.0)
            .execute(&self.db.pool)
            .await;
            match r {
                Ok(_) => return Ok(row),
                Err(e) if crate::sql::is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict("template_version"))
    }

    async fn template(&self, id: Uuid) -> Result<Option<TemplateRow>> {
        sqlx::query(&format!(
            "SELECT {TEMPLATE_COLUMNS} FROM business_templates WHERE id = $1"
        ))
        .bind(uuid_text(id))
        .fetch_optional(&self.db.pool)
        .await?
        .as_ref()
        .map(template_row)
        .transpose()
    }

    async fn templates(&self, business: AccountId) -> Result<Vec<TemplateRow>> {
        sqlx::query(&format!(
            "SELECT {TEMPLATE_COLUMNS} FROM business_templates WHERE business = $1 \
             ORDER BY name, language, version"
        ))
        .bind(uuid_text(business.0))
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(template_row)
        .collect()
    }

    async fn templates_in(&self, status: &str) -> Result<Vec<TemplateRow>> {
        sqlx::query(&format!(
            "SELECT {TEMPLATE_COLUMNS} FROM business_templates WHERE status = $1 \
             ORDER BY submitted_at, id LIMIT 1000"
        ))
        .bind(status.to_owned())
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(template_row)
        .collect()
    }

    async fn template_version(
        &self,
        business: AccountId,
        name: &str,
        language: &str,
        version: u32,
    ) -> Result<Option<TemplateRow>> {
        sqlx::query(&format!(
            "SELECT {TEMPLATE_COLUMNS} FROM business_templates \
             WHERE business = $1 AND name = $2 AND language = $3 AND version = $4"
        ))
        .bind(uuid_text(business.0))
        .bind(name.to_owned())
        .bind(language.to_owned())
        .bind(i64::from(version))
        .fetch_optional(&self.db.pool)
        .await?
        .as_ref()
        .map(template_row)
        .transpose()
    }

    async fn review_template(
        &self,
        id: Uuid,
        from: &str,
        to: &str,
        reason: Option<&str>,
        at: Timestamp,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE business_templates SET status = $1, reason = $2, reviewed_at = $3 \
             WHERE id = $4 AND status = $5",
        )
        .bind(to.to_owned())
        .bind(reason.map(str::to_owned))
        .bind(at.0)
        .bind(uuid_text(id))
        .bind(from.to_owned())
        .execute(&self.db.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn controls(&self, account: AccountId, business: AccountId) -> Result<Option<Controls>> {
        sqlx::query("SELECT * FROM business_controls WHERE account_id = $1 AND business = $2")
            .bind(uuid_text(account.0))
            .bind(uuid_text(business.0))
            .fetch_optional(&self.db.pool)
            .await?
            .as_ref()
            .map(controls_row)
            .transpose()
    }

    async fn controls_of(&self, account: AccountId) -> Result<Vec<Controls>> {
        sqlx::query("SELECT * FROM business_controls WHERE account_id = $1 ORDER BY business")
            .bind(uuid_text(account.0))
            .fetch_all(&self.db.pool)
            .await?
            .iter()
            .map(controls_row)
            .collect()
    }

    async fn put_controls(&self, c: &Controls) -> Result<()> {
        sqlx::query(
            "INSERT INTO business_controls (account_id, business, opted_in, marketing, muted, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (account_id, business) DO UPDATE SET opted_in = excluded.opted_in, \
             marketing = excluded.marketing, muted = excluded.muted, \
             updated_at = excluded.updated_at",
        )
        .bind(uuid_text(c.account.0))
        .bind(uuid_text(c.business.0))
        .bind(i64::from(c.opted_in))
        .bind(i64::from(c.marketing))
        .bind(c.muted.join(","))
        .bind(c.updated_at.0)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    async fn touch_window(
        &self,
        business: AccountId,
        account: AccountId,
        at: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO business_windows (business, account_id, last_inbound_at) \
             VALUES ($1, $2, $3) ON CONFLICT (business, account_id) DO UPDATE \
             SET last_inbound_at = excluded.last_inbound_at \
             WHERE business_windows.last_inbound_at < excluded.last_inbound_at",
        )
        .bind(uuid_text(business.0))
        .bind(uuid_text(account.0))
        .bind(at.0)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    async fn windows_of(
        &self,
        account: AccountId,
        since: Timestamp,
    ) -> Result<Vec<(AccountId, Timestamp)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT business, last_inbound_at FROM business_windows \
             WHERE account_id = $1 AND last_inbound_at >= $2 ORDER BY business",
        )
        .bind(uuid_text(account.0))
        .bind(since.0)
        .fetch_all(&self.db.pool)
        .await?;
        rows.into_iter()
            .map(|(b, t)| Ok((AccountId(parse_uuid(&b)?), Timestamp(t))))
            .collect()
    }

    async fn record_failed(&self, e: &FailedEvent) -> Result<()> {
        sqlx::query(
            "INSERT INTO business_events (business, message_id, recipient, status, category, \
             initiated, code, at, hook_state, attempts, next_attempt_at) \
             VALUES ($1, $2, $3, 'failed', $4, 0, $5, $6, 0, 0, $6) \
             ON CONFLICT (business, message_id, recipient, status) DO NOTHING",
        )
        .bind(uuid_text(e.business.0))
        .bind(e.message_id.clone())
        .bind(uuid_text(e.recipient.0))
        .bind(e.category.clone())
        .bind(e.code.clone())
        .bind(e.at.0)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    async fn events(&self, business: AccountId, limit: u32) -> Result<Vec<EventRow>> {
        sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM business_events WHERE business = $1 \
             ORDER BY id DESC LIMIT $2"
        ))
        .bind(uuid_text(business.0))
        .bind(i64::from(limit))
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(event_row)
        .collect()
    }

    async fn signals(&self, business: AccountId, since: Timestamp) -> Result<Signals> {
        let (delivered, started, blocks, reports): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT \
             (SELECT COUNT(*) FROM business_events WHERE business = $1 AND status = 'delivered' \
              AND at >= $2), \
             (SELECT COUNT(DISTINCT recipient) FROM business_events WHERE business = $1 \
              AND status = 'sent' AND initiated = 1 AND at >= $2), \
             (SELECT COUNT(*) FROM e2e_blocks WHERE blocked_account = $1 AND at >= $2), \
             (SELECT COUNT(*) FROM e2e_reports WHERE sender_account = $1 AND at >= $2)",
        )
        .bind(uuid_text(business.0))
        .bind(since.0)
        .fetch_one(&self.db.pool)
        .await?;
        Ok(Signals {
            delivered: delivered as u64,
            blocks: blocks as u64,
            reports: reports as u64,
            started: started as u64,
        })
    }

    async fn started_since(&self, business: AccountId, since: Timestamp) -> Result<u64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(DISTINCT recipient) FROM business_events WHERE business = $1 \
             AND status = 'sent' AND initiated = 1 AND at >= $2",
        )
        .bind(uuid_text(business.0))
        .bind(since.0)
        .fetch_one(&self.db.pool)
        .await?;
        Ok(n as u64)
    }

    async fn recipient_state(
        &self,
        business: AccountId,
        account: AccountId,
        since: Timestamp,
    ) -> Result<RecipientState> {
        let b = uuid_text(business.0);
        let a = uuid_text(account.0);
        let r = sqlx::query(
            "SELECT \
             (SELECT opted_in FROM business_controls WHERE account_id = $2 AND business = $1) \
               AS opted_in, \
             (SELECT marketing FROM business_controls WHERE account_id = $2 AND business = $1) \
               AS marketing, \
             (SELECT muted FROM business_controls WHERE account_id = $2 AND business = $1) \
               AS muted, \
             (SELECT updated_at FROM business_controls WHERE account_id = $2 AND business = $1) \
               AS updated_at, \
             (SELECT last_inbound_at FROM business_windows WHERE business = $1 \
               AND account_id = $2) AS last_inbound_at, \
             (SELECT COUNT(*) FROM (SELECT 1 FROM business_events WHERE business = $1 \
               AND status = 'sent' AND initiated = 1 AND recipient = $2 AND at >= $3 LIMIT 1) s) \
               AS started, \
             (SELECT COUNT(*) FROM e2e_blocks WHERE account_id = $2 AND blocked_account = $1) \
               AS blocked",
        )
        .bind(b)
        .bind(a)
        .bind(since.0)
        .fetch_one(&self.db.pool)
        .await?;
        let opted_in: Option<i64> = r.try_get("opted_in")?;
        let controls = match opted_in {
            None => None,
            Some(o) => {
                let muted: String = r.try_get("muted")?;
                Some(Controls {
                    account,
                    business,
                    opted_in: o != 0,
                    marketing: r.try_get::<i64, _>("marketing")? != 0,
                    muted: muted
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    updated_at: Timestamp(r.try_get("updated_at")?),
                })
            }
        };
        Ok(RecipientState {
            controls,
            last_inbound_at: ts(r.try_get("last_inbound_at")?),
            started: r.try_get::<i64, _>("started")? > 0,
            blocked: r.try_get::<i64, _>("blocked")? > 0,
        })
    }

    async fn put_webhook(&self, w: &WebhookRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO business_webhooks (business, url, secret, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (business) DO UPDATE \
             SET url = excluded.url, secret = excluded.secret, created_at = excluded.created_at",
        )
        .bind(uuid_text(w.business.0))
        .bind(w.url.clone())
        .bind(w.secret.clone())
        .bind(w.created_at.0)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    async fn webhook(&self, business: AccountId) -> Result<Option<WebhookRow>> {
        sqlx::query("SELECT * FROM business_webhooks WHERE business = $1")
            .bind(uuid_text(business.0))
            .fetch_optional(&self.db.pool)
            .await?
            .as_ref()
            .map(webhook_row)
            .transpose()
    }

    async fn delete_webhook(&self, business: AccountId) -> Result<bool> {
        let r = sqlx::query("DELETE FROM business_webhooks WHERE business = $1")
            .bind(uuid_text(business.0))
            .execute(&self.db.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn due_events(&self, now: Timestamp, limit: u32) -> Result<Vec<(EventRow, WebhookRow)>> {
        sqlx::query(
            "UPDATE business_events SET hook_state = 3 WHERE hook_state = 0 \
             AND NOT EXISTS (SELECT 1 FROM business_webhooks w \
             WHERE w.business = business_events.business)",
        )
        .execute(&self.db.pool)
        .await?;
        let rows = sqlx::query(
            "SELECT e.id, e.business, e.message_id, e.recipient, e.status, e.category, e.code, \
             e.at, e.hook_state, e.attempts, e.last_error, w.url, w.secret, \
             w.created_at AS hook_created_at FROM business_events e \
             JOIN business_webhooks w ON w.business = e.business \
             WHERE e.hook_state = 0 AND e.next_attempt_at <= $1 ORDER BY e.id LIMIT $2",
        )
        .bind(now.0)
        .bind(i64::from(limit))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let e = event_row(r)?;
                let w = WebhookRow {
                    business: e.business,
                    url: r.try_get("url")?,
                    secret: r.try_get("secret")?,
                    created_at: Timestamp(r.try_get("hook_created_at")?),
                };
                Ok((e, w))
            })
            .collect()
    }

    async fn mark_hooked(&self, ids: &[i64]) -> Result<()> {
        for c in ids.chunks(1000) {
            let sql = format!(
                "UPDATE business_events SET hook_state = 1, attempts = attempts + 1, \
                 last_error = NULL WHERE id IN {}",
                id_params(1, c.len())
            );
            let mut q = sqlx::query(&sql);
            for id in c {
                q = q.bind(*id);
            }
            q.execute(&self.db.pool).await?;
        }
        Ok(())
    }

    async fn reschedule(&self, ids: &[i64], next: Option<Timestamp>, error: &str) -> Result<()> {
        for c in ids.chunks(1000) {
            let sql = format!(
                "UPDATE business_events SET hook_state = $1, attempts = attempts + 1, \
                 next_attempt_at = $2, last_error = $3 WHERE id IN {}",
                id_params(4, c.len())
            );
            let mut q = sqlx::query(&sql)
                .bind(if next.is_some() { 0i64 } else { 2 })
                .bind(next.map_or(0, |t| t.0))
                .bind(error.chars().take(200).collect::<String>());
            for id in c {
                q = q.bind(*id);
            }
            q.execute(&self.db.pool).await?;
        }
        Ok(())
    }

    async fn purge_events(&self, before: Timestamp) -> Result<u64> {
        let r = sqlx::query("DELETE FROM business_events WHERE at < $1 AND hook_state <> 0")
            .bind(before.0)
            .execute(&self.db.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn hook_stats(&self, business: AccountId) -> Result<HookStats> {
        let (due, failing, delivered, given_up): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT \
             COALESCE(SUM(CASE WHEN hook_state = 0 THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN hook_state = 0 AND attempts > 0 THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN hook_state = 1 THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN hook_state = 2 THEN 1 ELSE 0 END), 0) \
             FROM business_events WHERE business = $1",
        )
        .bind(uuid_text(business.0))
        .fetch_one(&self.db.pool)
        .await?;
        Ok(HookStats {
            due: due as u64,
            failing: failing as u64,
            delivered: delivered as u64,
            given_up: given_up as u64,
        })
    }
}
