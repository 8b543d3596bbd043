//! The partner's store: what the coordination feed delivered (by
//! pseudonym and purpose), the partner's own users, links between the two,
//! and the contact edges behind friend suggestions.
//!
//! Sign-up with a verified number (`partner_registrations`: the code as a
//! salted HMAC), several tokens per user (`partner_tokens`), and meters:
//! rolling-day counts (hourly buckets, `accord_domain::keyd`'s window and
//! rules) checked and charged in one transaction per charge, for each
//! user's OPRF quota and the sign-up limits.
//!
//! **Architecture invariant:** nothing here holds a phone number: the
//! partner's users give theirs as a `coordination` pseudonym obtained by
//! blinded evaluation, the feed delivers pseudonyms only, and a number
//! being verified is known only by its `number_tag` (an HMAC under a key
//! kept outside this database).
//!
//! Pseudonyms are [`PseudonymId`]s (their 32 bytes, stored as such); the
//! `[u8; 32]`s left here are hashes: number tags and token hashes.

use crate::db::{Backend, Db};
use crate::error::{Result, StoreError};
use crate::sql::{bytes32, parse_uuid, pseudonym as pseudonym_col, uuid_text};
use accord_domain::coordination::{EventResult, LedgerRef};
use accord_domain::keyd::{check_charge, hour_of, WINDOW_HOURS};
use accord_domain::transparency::SignedCheckpoint;
use accord_domain::{DeviceInfo, PseudonymId, Purpose, Timestamp};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// A feed event with its pseudonym decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingEvent {
    pub event_id: u64,
    pub pseudonym: PseudonymId,
    pub key_version: u32,
    pub purposes: BTreeSet<Purpose>,
    pub devices: Vec<DeviceInfo>,
    /// The checked citation of each purpose the event shares.
    pub citations: BTreeMap<Purpose, LedgerRef>,
}

/// What the partner holds of one pseudonym for one purpose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub pseudonym: PseudonymId,
    pub purpose: Purpose,
    pub devices: Vec<DeviceInfo>,
    pub ledger_ref: Option<LedgerRef>,
    pub received_at: Timestamp,
}

/// A user of the partner (social) service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartnerUser {
    pub id: Uuid,
    pub name: String,
    pub phone_pseudonym: Option<PseudonymId>,
    pub ads_personalisation: bool,
    pub created_at: Timestamp,
}

pub use crate::keyd::ChargeError;

/// A sign-up waiting for its code. The number is not here: only its tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRegistration {
    pub id: Uuid,
    /// HMAC-SHA256 of the number under the partner's number key.
    pub number_tag: [u8; 32],
    pub salt: Vec<u8>,
    pub code_digest: Vec<u8>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub attempts: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PartnerStats {
    pub subjects: u64,
    pub records: BTreeMap<String, u64>,
    pub users: u64,
    pub links: u64,
    pub contact_edges: u64,
    pub denied_reads: BTreeMap<String, u64>,
}

#[async_trait]
pub trait PartnerStore: Send + Sync + std::fmt::Debug + 'static {
    /// Applies one feed event atomically (see `accord_domain::coordination`).
    async fn apply_event(&self, e: &IncomingEvent, now: Timestamp) -> Result<EventResult>;
    /// Keeps signed checkpoints of the messenger's log (idempotent).
    /// `Conflict("checkpoint")`, keeping nothing, if one has the shard and
    /// size of a kept one but another root: the messenger signed two
    /// different logs (equivocation).
    async fn keep_checkpoints(&self, cps: &[SignedCheckpoint], now: Timestamp) -> Result<()>;
    /// Every kept checkpoint, by shard and size.
    async fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>>;
    /// Deletes what is held of `pseudonym` for `purpose` (reconciliation),
    /// with links and edges when `purpose` is `product`.
    async fn delete_held(&self, pseudonym: &PseudonymId, purpose: Purpose) -> Result<bool>;
    /// Removes revocation tombstones older than `before`.
    async fn purge_tombstones(&self, before: Timestamp) -> Result<u64>;
    async fn record(&self, pseudonym: &PseudonymId, purpose: Purpose) -> Result<Option<Record>>;
    /// Every pseudonym held for `purpose`.
    async fn pseudonyms(&self, purpose: Purpose) -> Result<Vec<PseudonymId>>;
    async fn count_denied_read(&self, purpose: Purpose) -> Result<()>;

    async fn create_user(&self, user: &PartnerUser, token_hash: &[u8; 32]) -> Result<()>;
    async fn user_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<PartnerUser>>;
    async fn set_ads_personalisation(&self, user: Uuid, enabled: bool) -> Result<()>;
    /// Sets (or clears) the user's email pseudonym, matched by custom
    /// audiences as another key of the same person.
    async fn set_email_pseudonym(&self, user: Uuid, pseudonym: Option<&PseudonymId>) -> Result<()>;
    /// Sets the user's phone pseudonym, and links them if it is held for `product`.
    async fn set_phone_pseudonym(
        &self,
        user: Uuid,
        pseudonym: &PseudonymId,
        at: Timestamp,
    ) -> Result<()>;
    /// The messenger pseudonym `user` is linked to, if any.
    async fn link_of(&self, user: Uuid) -> Result<Option<PseudonymId>>;
    /// Keeps the uploaded contacts that match someone (a partner user's
    /// own pseudonym, or a pseudonym held for `product`); discards the
    /// rest. Returns how many were kept.
    async fn upload_contacts(&self, uploader: Uuid, contacts: &[PseudonymId]) -> Result<u64>;
    /// Partner users to suggest to `uploader`: whose own or linked
    /// pseudonym is among the uploader's kept contacts, and whose
    /// pseudonym is held for `product` (they granted it).
    async fn suggestions(&self, uploader: Uuid) -> Result<Vec<PartnerUser>>;
    async fn stats(&self) -> Result<PartnerStats>;
    /// Partner users (what the key-service quota is sized from; cheaper
    /// than [`PartnerStore::stats`], which counts every held record).
    async fn user_count(&self) -> Result<u64>;
    /// Remembers the nonce of a signed feed request seen at `at`, and
    /// forgets those seen before `forget_before`: `false` if it was seen
    /// already (a replay). Concurrent calls with one nonce: one `true`.
    async fn remember_nonce(
        &self,
        nonce: &str,
        at: Timestamp,
        forget_before: Timestamp,
    ) -> Result<bool>;

    async fn put_registration(&self, r: &PendingRegistration) -> Result<()>;
    async fn registration(&self, id: Uuid) -> Result<Option<PendingRegistration>>;
    /// Counts one attempt at the code of `id`, atomically, if fewer than
    /// `max` were made: the attempt's number (1-based), or `None` when
    /// the registration is unknown or its attempts are spent.
    async fn count_attempt(&self, id: Uuid, max: u32) -> Result<Option<u32>>;
    /// Deletes a registration; true for the one caller that deleted it.
    async fn take_registration(&self, id: Uuid) -> Result<bool>;
    /// The user of the number `number_tag` (created from `user` when the
    /// number has none yet), with one more token; true when created.
    async fn sign_up(
        &self,
        user: &PartnerUser,
        number_tag: &[u8; 32],
        token_hash: &[u8; 32],
    ) -> Result<(PartnerUser, bool)>;
    /// Charges `n` to the meter (`kind`, `subject`) if its rolling day's
    /// count plus `n` stays within `limit`; otherwise charges nothing and
    /// says when it would fit. Charges of one meter are serialised: N
    /// parallel charges never get more than `limit`.
    async fn charge_meter(
        &self,
        kind: &str,
        subject: &[u8],
        n: u64,
        limit: u64,
        now: Timestamp,
    ) -> std::result::Result<(), ChargeError>;
    /// A meter's count in the rolling day ending at `now`.
    async fn meter_used(&self, kind: &str, subject: &[u8], now: Timestamp) -> Result<u64>;
    /// The count of every meter of `kind` in the rolling day ending at `now`.
    async fn meter_total(&self, kind: &str, now: Timestamp) -> Result<u64>;
    /// Removes expired registrations and meter buckets out of the window.
    async fn purge_signups(&self, now: Timestamp) -> Result<u64>;
}

fn registration_row(r: &AnyRow) -> Result<PendingRegistration> {
    Ok(PendingRegistration {
        id: parse_uuid(&r.try_get::<String, _>("id")?)?,
        number_tag: bytes32(r.try_get("number_tag")?, "number tag")?,
        salt: r.try_get("salt")?,
        code_digest: r.try_get("code_digest")?,
        created_at: Timestamp(r.try_get("created_at")?),
        expires_at: Timestamp(r.try_get("expires_at")?),
        attempts: r.try_get::<i64, _>("attempts")?.clamp(0, u32::MAX as i64) as u32,
    })
}

/// Removes the person `$1` (a phone pseudonym) from every audience, and
/// from the matched rows of uploads in progress, unless they are still
/// eligible for ads: a partner user of that number with ad
/// personalisation on, or `ads` held for it (issue 13). Run in the
/// transaction that took their consent away, through [`drop_ineligible`].
const DROP_INELIGIBLE: [&str; 2] = [
    "DELETE FROM audience_members WHERE member = $1 \
     AND NOT EXISTS (SELECT 1 FROM partner_users WHERE phone_pseudonym = $1 AND ads_personalisation = 1) \
     AND NOT EXISTS (SELECT 1 FROM records WHERE pseudonym = $1 AND purpose = 'ads')",
    "DELETE FROM audience_candidates WHERE member = $1 \
     AND NOT EXISTS (SELECT 1 FROM partner_users WHERE phone_pseudonym = $1 AND ads_personalisation = 1) \
     AND NOT EXISTS (SELECT 1 FROM records WHERE pseudonym = $1 AND purpose = 'ads')",
];

/// [`DROP_INELIGIBLE`] for the phone pseudonym `phone`, in `tx`, after
/// the change that may have ended its eligibility.
pub(crate) async fn drop_ineligible(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    phone: &[u8],
) -> Result<()> {
    for sql in DROP_INELIGIBLE {
        sqlx::query(sql)
            .bind(phone.to_vec())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

fn count_of(v: i64) -> u64 {
    v.max(0) as u64
}

/// The phone pseudonym `user` has, in `tx`.
async fn phone_pseudonym_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user: Uuid,
) -> Result<Option<Vec<u8>>> {
    let p: Option<Option<Vec<u8>>> =
        sqlx::query_scalar("SELECT phone_pseudonym FROM partner_users WHERE id = $1")
            .bind(uuid_text(user))
            .fetch_optional(&mut **tx)
            .await?;
    Ok(p.flatten())
}

/// [`drop_ineligible`] for `phone` if there is one.
async fn drop_ineligible_member(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    phone: Option<Vec<u8>>,
) -> Result<()> {
    match phone {
        Some(p) => drop_ineligible(tx, &p).await,
        None => Ok(()),
    }
}

#[derive(Clone, Debug)]
pub struct SqlPartnerStore {
    db: Db,
}

impl SqlPartnerStore {
    pub async fn new(db: Db) -> Result<Self> {
        match db.backend {
            Backend::Sqlite => {
                sqlx::migrate!("./migrations/partner/sqlite")
                    .run(&db.pool)
                    .await?
            }
            Backend::Postgres => {
                sqlx::migrate!("./migrations/partner/postgres")
                    .run(&db.pool)
                    .await?
            }
        }
        Ok(SqlPartnerStore { db })
    }
    pub fn db(&self) -> &Db {
        &self.db
    }
}

fn purpose_of(s: &str) -> Result<Purpose> {
    s.parse().map_err(|_| StoreError::Corrupt("purpose".into()))
}

fn user_row(r: &AnyRow) -> Result<PartnerUser> {
    let p: Option<Vec<u8>> = r.try_get("phone_pseudonym")?;
    Ok(PartnerUser {
        id: parse_uuid(&r.try_get::<String, _>("id")?)?,
        name: r.try_get("name")?,
        phone_pseudonym: p.map(|v| pseudonym_col(v, "pseudonym")).transpose()?,
        ads_personalisation: r.try_get::<i64, _>("ads_personalisation")? != 0,
        created_at: Timestamp(r.try_get("created_at")?),
    })
}

#[async_trait]
impl PartnerStore for SqlPartnerStore {
    async fn keep_checkpoints(&self, cps: &[SignedCheckpoint], now: Timestamp) -> Result<()> {
        if cps.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.pool.begin().await?;
        for c in cps {
            let cp = &c.checkpoint;
            let kept: Option<String> = sqlx::query_scalar(
                "SELECT root FROM witnessed_checkpoints WHERE shard = $1 AND size = $2",
            )
            .bind(cp.shard as i64)
            .bind(cp.size as i64)
            .fetch_optional(&mut *tx)
            .await?;
            match kept {
                Some(root) if root == cp.root => {}
                Some(_) => return Err(StoreError::Conflict("checkpoint")),
                None => {
                    sqlx::query(
                        "INSERT INTO witnessed_checkpoints (shard, size, root, at, signature, received_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (shard, size) DO NOTHING",
                    )
                    .bind(cp.shard as i64)
                    .bind(cp.size as i64)
                    .bind(&cp.root)
                    .bind(cp.at.0)
                    .bind(&c.signature)
                    .bind(now.0)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>> {
        let rows = sqlx::query("SELECT * FROM witnessed_checkpoints ORDER BY shard, size")
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter().map(crate::sql::checkpoint_row).collect()
    }

    async fn apply_event(&self, e: &IncomingEvent, now: Timestamp) -> Result<EventResult> {
        let p = e.pseudonym.as_bytes().to_vec();
        let mut tx = self.db.pool.begin().await?;
        // First statement is a write: serialises appliers (SQLite write
        // lock; PostgreSQL row lock when the subject exists).
        sqlx::query("UPDATE subjects SET updated_at = updated_at WHERE pseudonym = $1")
            .bind(p.clone())
            .execute(&mut *tx)
            .await?;
        let last: Option<i64> =
            sqlx::query_scalar("SELECT last_event_id FROM subjects WHERE pseudonym = $1")
                .bind(p.clone())
                .fetch_optional(&mut *tx)
                .await?;
        let held: BTreeSet<Purpose> =
            sqlx::query_scalar::<_, String>("SELECT purpose FROM records WHERE pseudonym = $1")
                .bind(p.clone())
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|s| purpose_of(s))
                .collect::<Result<_>>()?;
        if last.is_some_and(|l| l >= e.event_id as i64) {
            // A duplicate or an older event: already superseded.
            tx.commit().await?;
            return Ok(EventResult {
                event_id: e.event_id,
                applied: false,
                held,
                deleted: BTreeSet::new(),
                confirmed_at: now,
            });
        }
        let deleted: BTreeSet<Purpose> = held.difference(&e.purposes).copied().collect();
        for purpose in &deleted {
            sqlx::query("DELETE FROM records WHERE pseudonym = $1 AND purpose = $2")
                .bind(p.clone())
                .bind(purpose.as_str())
                .execute(&mut *tx)
                .await?;
        }
        if deleted.contains(&Purpose::Ads) {
            drop_ineligible(&mut tx, &p).await?;
        }
        if !e.purposes.contains(&Purpose::Product) {
            // Links and suggestion edges are derived from `product`.
            sqlx::query("DELETE FROM links WHERE pseudonym = $1")
                .bind(p.clone())
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM contact_edges WHERE pseudonym = $1")
                .bind(p.clone())
                .execute(&mut *tx)
                .await?;
        }
        let devices = serde_json::to_string(&e.devices).expect("devices serialise");
        for purpose in &e.purposes {
            let ledger_ref =
                serde_json::to_string(&e.citations.get(purpose)).expect("ledger ref serialises");
            sqlx::query("DELETE FROM records WHERE pseudonym = $1 AND purpose = $2")
                .bind(p.clone())
                .bind(purpose.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO records (pseudonym, purpose, devices, ledger_ref, received_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(p.clone())
            .bind(purpose.as_str())
            .bind(&devices)
            .bind(&ledger_ref)
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        }
        if e.purposes.contains(&Purpose::Product) {
            // Recognise the same person on both services.
            sqlx::query(
                "INSERT INTO links (partner_user_id, pseudonym, linked_at) \
                 SELECT id, phone_pseudonym, $2 FROM partner_users WHERE phone_pseudonym = $1 \
                 ON CONFLICT (partner_user_id) DO NOTHING",
            )
            .bind(p.clone())
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM subjects WHERE pseudonym = $1")
            .bind(p.clone())
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO subjects (pseudonym, key_version, last_event_id, updated_at) VALUES ($1, $2, $3, $4)")
            .bind(p)
            .bind(e.key_version as i64)
            .bind(e.event_id as i64)
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.db.note_eligible_write();
        Ok(EventResult {
            event_id: e.event_id,
            applied: true,
            held: e.purposes.clone(),
            deleted,
            confirmed_at: now,
        })
    }

    async fn delete_held(&self, pseudonym: &PseudonymId, purpose: Purpose) -> Result<bool> {
        let mut tx = self.db.pool.begin().await?;
        let r = sqlx::query("DELETE FROM records WHERE pseudonym = $1 AND purpose = $2")
            .bind(pseudonym.as_bytes().to_vec())
            .bind(purpose.as_str())
            .execute(&mut *tx)
            .await?;
        if purpose == Purpose::Ads {
            drop_ineligible(&mut tx, pseudonym.as_bytes()).await?;
        }
        if purpose == Purpose::Product {
            for table in ["links", "contact_edges"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE pseudonym = $1"))
                    .bind(pseudonym.as_bytes().to_vec())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        self.db.note_eligible_write();
        Ok(r.rows_affected() > 0)
    }

    async fn purge_tombstones(&self, before: Timestamp) -> Result<u64> {
        let r = sqlx::query(
            "DELETE FROM subjects WHERE updated_at < $1 AND NOT EXISTS (SELECT 1 FROM records r WHERE r.pseudonym = subjects.pseudonym)",
        )
        .bind(before.0)
        .execute(&self.db.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn record(&self, pseudonym: &PseudonymId, purpose: Purpose) -> Result<Option<Record>> {
        let row = sqlx::query("SELECT * FROM records WHERE pseudonym = $1 AND purpose = $2")
            .bind(pseudonym.as_bytes().to_vec())
            .bind(purpose.as_str())
            .fetch_optional(&self.db.pool)
            .await?;
        row.map(|r| {
            Ok(Record {
                pseudonym: pseudonym_col(r.try_get("pseudonym")?, "pseudonym")?,
                purpose,
                devices: serde_json::from_str(&r.try_get::<String, _>("devices")?)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                ledger_ref: serde_json::from_str(&r.try_get::<String, _>("ledger_ref")?)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                received_at: Timestamp(r.try_get("received_at")?),
            })
        })
        .transpose()
    }

    async fn pseudonyms(&self, purpose: Purpose) -> Result<Vec<PseudonymId>> {
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT pseudonym FROM records WHERE purpose = $1 ORDER BY pseudonym",
        )
        .bind(purpose.as_str())
        .fetch_all(&self.db.pool)
        .await?;
        rows.into_iter()
            .map(|v| pseudonym_col(v, "pseudonym"))
            .collect()
    }

    async fn count_denied_read(&self, purpose: Purpose) -> Result<()> {
        let mut tx = self.db.pool.begin().await?;
        let r = sqlx::query("UPDATE denied_reads SET count = count + 1 WHERE purpose = $1")
            .bind(purpose.as_str())
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            sqlx::query("INSERT INTO denied_reads (purpose, count) VALUES ($1, 1)")
                .bind(purpose.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn create_user(&self, u: &PartnerUser, token_hash: &[u8; 32]) -> Result<()> {
        let mut tx = self.db.pool.begin().await?;
        sqlx::query(
            "INSERT INTO partner_users (id, name, token_hash, phone_pseudonym, ads_personalisation, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(uuid_text(u.id))
        .bind(&u.name)
        .bind(token_hash.to_vec())
        .bind(u.phone_pseudonym.map(|p| p.as_bytes().to_vec()))
        .bind(u.ads_personalisation as i64)
        .bind(u.created_at.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO partner_tokens (token_hash, user_id, created_at) VALUES ($1, $2, $3)",
        )
        .bind(token_hash.to_vec())
        .bind(uuid_text(u.id))
        .bind(u.created_at.0)
        .execute(&mut *tx)
        .await?;
        if let Some(p) = u.phone_pseudonym {
            sqlx::query(
                "INSERT INTO links (partner_user_id, pseudonym, linked_at) \
                 SELECT $1, pseudonym, $3 FROM records WHERE pseudonym = $2 AND purpose = 'product'",
            )
            .bind(uuid_text(u.id))
            .bind(p.as_bytes().to_vec())
            .bind(u.created_at.0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.db.note_eligible_write();
        Ok(())
    }

    async fn user_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<PartnerUser>> {
        sqlx::query(
            "SELECT u.* FROM partner_tokens t JOIN partner_users u ON u.id = t.user_id WHERE t.token_hash = $1",
        )
            .bind(token_hash.to_vec())
            .fetch_optional(&self.db.pool)
            .await?
            .as_ref()
            .map(user_row)
            .transpose()
    }

    async fn set_ads_personalisation(&self, user: Uuid, enabled: bool) -> Result<()> {
        let mut tx = self.db.pool.begin().await?;
        sqlx::query("UPDATE partner_users SET ads_personalisation = $1 WHERE id = $2")
            .bind(enabled as i64)
            .bind(uuid_text(user))
            .execute(&mut *tx)
            .await?;
        if !enabled {
            let phone = phone_pseudonym_in(&mut tx, user).await?;
            drop_ineligible_member(&mut tx, phone).await?;
        }
        tx.commit().await?;
        self.db.note_eligible_write();
        Ok(())
    }

    async fn set_email_pseudonym(&self, user: Uuid, pseudonym: Option<&PseudonymId>) -> Result<()> {
        sqlx::query("UPDATE partner_users SET email_pseudonym = $1 WHERE id = $2")
            .bind(pseudonym.map(|p| p.as_bytes().to_vec()))
            .bind(uuid_text(user))
            .execute(&self.db.pool)
            .await?;
        self.db.note_eligible_write();
        Ok(())
    }

    async fn set_phone_pseudonym(
        &self,
        user: Uuid,
        pseudonym: &PseudonymId,
        at: Timestamp,
    ) -> Result<()> {
        let id = uuid_text(user);
        let mut tx = self.db.pool.begin().await?;
        let old = phone_pseudonym_in(&mut tx, user).await?;
        sqlx::query("UPDATE partner_users SET phone_pseudonym = $1 WHERE id = $2")
            .bind(pseudonym.as_bytes().to_vec())
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        // The old number's person leaves audiences unless still eligible.
        if old.as_deref() != Some(pseudonym.as_bytes().as_slice()) {
            drop_ineligible_member(&mut tx, old).await?;
        }
        sqlx::query("DELETE FROM links WHERE partner_user_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO links (partner_user_id, pseudonym, linked_at) \
             SELECT $1, pseudonym, $3 FROM records WHERE pseudonym = $2 AND purpose = 'product'",
        )
        .bind(&id)
        .bind(pseudonym.as_bytes().to_vec())
        .bind(at.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.db.note_eligible_write();
        Ok(())
    }

    async fn link_of(&self, user: Uuid) -> Result<Option<PseudonymId>> {
        let v: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT pseudonym FROM links WHERE partner_user_id = $1")
                .bind(uuid_text(user))
                .fetch_optional(&self.db.pool)
                .await?;
        v.map(|v| pseudonym_col(v, "pseudonym")).transpose()
    }

    async fn upload_contacts(&self, uploader: Uuid, contacts: &[PseudonymId]) -> Result<u64> {
        let mut tx = self.db.pool.begin().await?;
        let mut kept = 0;
        for c in contacts {
            let matches: i64 = sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM partner_users WHERE phone_pseudonym = $1) \
                      + (SELECT COUNT(*) FROM records WHERE pseudonym = $1 AND purpose = 'product')",
            )
            .bind(c.as_bytes().to_vec())
            .fetch_one(&mut *tx)
            .await?;
            if matches > 0 {
                let r = sqlx::query(
                    "INSERT INTO contact_edges (uploader, pseudonym) VALUES ($1, $2) ON CONFLICT (uploader, pseudonym) DO NOTHING",
                )
                .bind(uuid_text(uploader))
                .bind(c.as_bytes().to_vec())
                .execute(&mut *tx)
                .await?;
                kept += r.rows_affected();
            }
        }
        tx.commit().await?;
        Ok(kept)
    }

    async fn suggestions(&self, uploader: Uuid) -> Result<Vec<PartnerUser>> {
        let rows = sqlx::query(
            "SELECT DISTINCT u.* FROM contact_edges e \
             JOIN partner_users u ON (u.phone_pseudonym = e.pseudonym \
                  OR u.id IN (SELECT l.partner_user_id FROM links l WHERE l.pseudonym = e.pseudonym)) \
             WHERE e.uploader = $1 AND u.id <> $1 \
               AND EXISTS (SELECT 1 FROM records r WHERE r.pseudonym = e.pseudonym AND r.purpose = 'product') \
             ORDER BY u.id",
        )
        .bind(uuid_text(uploader))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(user_row).collect()
    }

    async fn user_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM partner_users")
            .fetch_one(&self.db.pool)
            .await?;
        Ok(count_of(n))
    }

    async fn stats(&self) -> Result<PartnerStats> {
        let count = |sql: &'static str| async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&self.db.pool)
                .await
                .map(|n| n as u64)
        };
        let mut records = BTreeMap::new();
        for r in sqlx::query("SELECT purpose, COUNT(*) AS n FROM records GROUP BY purpose")
            .fetch_all(&self.db.pool)
            .await?
        {
            records.insert(
                r.try_get::<String, _>("purpose")?,
                r.try_get::<i64, _>("n")? as u64,
            );
        }
        let mut denied_reads = BTreeMap::new();
        for r in sqlx::query("SELECT purpose, count FROM denied_reads")
            .fetch_all(&self.db.pool)
            .await?
        {
            denied_reads.insert(
                r.try_get::<String, _>("purpose")?,
                r.try_get::<i64, _>("count")? as u64,
            );
        }
        Ok(PartnerStats {
            subjects: count("SELECT COUNT(*) FROM subjects").await?,
            records,
            users: count("SELECT COUNT(*) FROM partner_users").await?,
            links: count("SELECT COUNT(*) FROM links").await?,
            contact_edges: count("SELECT COUNT(*) FROM contact_edges").await?,
            denied_reads,
        })
    }

    async fn put_registration(&self, r: &PendingRegistration) -> Result<()> {
        sqlx::query(
            "INSERT INTO partner_registrations (id, number_tag, salt, code_digest, created_at, expires_at, attempts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(uuid_text(r.id))
        .bind(r.number_tag.to_vec())
        .bind(r.salt.clone())
        .bind(r.code_digest.clone())
        .bind(r.created_at.0)
        .bind(r.expires_at.0)
        .bind(r.attempts as i64)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    async fn registration(&self, id: Uuid) -> Result<Option<PendingRegistration>> {
        sqlx::query("SELECT * FROM partner_registrations WHERE id = $1")
            .bind(uuid_text(id))
            .fetch_optional(&self.db.pool)
            .await?
            .as_ref()
            .map(registration_row)
            .transpose()
    }

    async fn count_attempt(&self, id: Uuid, max: u32) -> Result<Option<u32>> {
        // One statement: the check and the count cannot be separated.
        let n: Option<i64> = sqlx::query_scalar(
            "UPDATE partner_registrations SET attempts = attempts + 1 \
             WHERE id = $1 AND attempts < $2 RETURNING attempts",
        )
        .bind(uuid_text(id))
        .bind(max as i64)
        .fetch_optional(&self.db.pool)
        .await?;
        Ok(n.map(|n| n.clamp(0, u32::MAX as i64) as u32))
    }

    async fn take_registration(&self, id: Uuid) -> Result<bool> {
        let r = sqlx::query("DELETE FROM partner_registrations WHERE id = $1")
            .bind(uuid_text(id))
            .execute(&self.db.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn sign_up(
        &self,
        u: &PartnerUser,
        number_tag: &[u8; 32],
        token_hash: &[u8; 32],
    ) -> Result<(PartnerUser, bool)> {
        let mut tx = self.db.pool.begin().await?;
        let created = sqlx::query(
            "INSERT INTO partner_users (id, name, token_hash, phone_pseudonym, ads_personalisation, created_at, number_tag) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (number_tag) DO NOTHING",
        )
        .bind(uuid_text(u.id))
        .bind(&u.name)
        .bind(token_hash.to_vec())
        .bind(u.phone_pseudonym.map(|p| p.as_bytes().to_vec()))
        .bind(u.ads_personalisation as i64)
        .bind(u.created_at.0)
        .bind(number_tag.to_vec())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let user = sqlx::query("SELECT * FROM partner_users WHERE number_tag = $1")
            .bind(number_tag.to_vec())
            .fetch_one(&mut *tx)
            .await?;
        let user = user_row(&user)?;
        sqlx::query(
            "INSERT INTO partner_tokens (token_hash, user_id, created_at) VALUES ($1, $2, $3)",
        )
        .bind(token_hash.to_vec())
        .bind(uuid_text(user.id))
        .bind(u.created_at.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.db.note_eligible_write();
        Ok((user, created))
    }

    async fn charge_meter(
        &self,
        kind: &str,
        subject: &[u8],
        n: u64,
        limit: u64,
        now: Timestamp,
    ) -> std::result::Result<(), ChargeError> {
        let mut tx = self.db.pool.begin().await?;
        // First a write to the meter's own row: serialises its charges.
        sqlx::query(
            "INSERT INTO meters (kind, subject, charged_at) VALUES ($1, $2, $3) \
             ON CONFLICT (kind, subject) DO UPDATE SET charged_at = excluded.charged_at",
        )
        .bind(kind)
        .bind(subject.to_vec())
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        let hour = hour_of(now);
        let rows = sqlx::query(
            "SELECT hour, n FROM meter_hourly WHERE kind = $1 AND subject = $2 AND hour > $3",
        )
        .bind(kind)
        .bind(subject.to_vec())
        .bind(hour - WINDOW_HOURS)
        .fetch_all(&mut *tx)
        .await?;
        let buckets = rows
            .iter()
            .map(|r| Ok((r.try_get::<i64, _>(0)?, count_of(r.try_get(1)?))))
            .collect::<Result<Vec<_>>>()?;
        // Dropping `tx` on refusal rolls back: nothing is charged.
        check_charge(&buckets, limit, n, now)?;
        sqlx::query(
            "INSERT INTO meter_hourly (kind, subject, hour, n) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind, subject, hour) DO UPDATE SET n = meter_hourly.n + excluded.n",
        )
        .bind(kind)
        .bind(subject.to_vec())
        .bind(hour)
        .bind(n.min(i64::MAX as u64) as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn meter_used(&self, kind: &str, subject: &[u8], now: Timestamp) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM meter_hourly \
             WHERE kind = $1 AND subject = $2 AND hour > $3",
        )
        .bind(kind)
        .bind(subject.to_vec())
        .bind(hour_of(now) - WINDOW_HOURS)
        .fetch_one(&self.db.pool)
        .await?;
        Ok(count_of(n))
    }

    async fn meter_total(&self, kind: &str, now: Timestamp) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM meter_hourly WHERE kind = $1 AND hour > $2",
        )
        .bind(kind)
        .bind(hour_of(now) - WINDOW_HOURS)
        .fetch_one(&self.db.pool)
        .await?;
        Ok(count_of(n))
    }

    async fn purge_signups(&self, now: Timestamp) -> Result<u64> {
        let r = sqlx::query("DELETE FROM partner_registrations WHERE expires_at <= $1")
            .bind(now.0)
            .execute(&self.db.pool)
            .await?;
        sqlx::query("DELETE FROM meter_hourly WHERE hour <= $1")
            .bind(hour_of(now) - WINDOW_HOURS)
            .execute(&self.db.pool)
            .await?;
        sqlx::query("DELETE FROM meters WHERE charged_at < $1")
            .bind(now.0 - WINDOW_HOURS * accord_domain::time::HOUR_MS)
            .execute(&self.db.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn remember_nonce(
        &self,
        nonce: &str,
        at: Timestamp,
        forget_before: Timestamp,
    ) -> Result<bool> {
        sqlx::query("DELETE FROM feed_nonces WHERE seen_at < $1")
            .bind(forget_before.0)
            .execute(&self.db.pool)
            .await?;
        match sqlx::query("INSERT INTO feed_nonces (nonce, seen_at) VALUES ($1, $2)")
            .bind(nonce)
            .bind(at.0)
            .execute(&self.db.pool)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if crate::sql::is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
