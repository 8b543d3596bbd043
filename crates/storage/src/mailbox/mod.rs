//! The messenger's E2E store: the key directory (device keys, one-time and
//! fallback keys), per-device mailboxes, idempotency records, blocks,
//! delivered-envelope records (for reports) and reports.
//!
//! The store knows nothing of Olm: keys are kept as the JSON the service
//! verified, ciphertext as opaque bytes. It lives in the messenger's own
//! database (migrations `0003_e2e`, `0005_mailbox_tombstones`).
//!
//! An ack drops an envelope's ciphertext and stamps it acked instead of
//! deleting it: the row is then the delivered record a report is checked
//! against, kept until the envelope's own expiry. One update per item
//! instead of a delete and an insert into a separate table; only unacked
//! items are in the per-device index. An acked receipt is deleted.
//!
//! Writes to mailboxes come in batches ([`MailboxStore::commit_batch`],
//! [`commit`]): one transaction for many sends and acks, so that a
//! group-commit writer pays one fsync for all of them.
//!
//! Mailbox ids come from one sequence (SQLite `AUTOINCREMENT`, PostgreSQL
//! identity), so they increase in insertion order and are never reused.

mod commit;
pub use commit::MAILBOX_ORDER_LOCK;

use crate::db::{Backend, Db};
use crate::error::{Result, StoreError};
use crate::sql::{parse_uuid, uuid_text};
use accord_domain::{AccountId, DeviceId, Timestamp};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

/// What happened to an upload of a device's identity keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutDeviceKeys {
    Stored,
    /// The very same keys were already there.
    Identical,
    /// Other keys are already registered for this device.
    Conflict,
}

/// One item of a mailbox, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailItem {
    Envelope {
        id: u64,
        sender_account: AccountId,
        sender_device: DeviceId,
        client_message_id: String,
        server_ts: Timestamp,
        message_type: u8,
        ciphertext: Vec<u8>,
        /// A business message's template and category (JSON, as the
        /// business API wrote it), on envelopes to the recipient's devices.
        business_meta: Option<String>,
    },
    Receipt {
        id: u64,
        client_message_id: String,
        recipient_device: DeviceId,
        delivered_at: Timestamp,
    },
}

impl MailItem {
    pub fn id(&self) -> u64 {
        match self {
            MailItem::Envelope { id, .. } | MailItem::Receipt { id, .. } => *id,
        }
    }
}

/// One envelope of a send, for one recipient device.
#[derive(Clone, Debug)]
pub struct NewEnvelope {
    pub recipient_device: DeviceId,
    pub message_type: u8,
    pub ciphertext: Vec<u8>,
    /// A business message's metadata for the recipient's client (only on
    /// envelopes to the recipient's devices).
    pub business_meta: Option<String>,
}

/// What the status record of a business's send says: a `sent` event is
/// written in the same commit as the send's envelopes.
#[derive(Clone, Debug)]
pub struct BusinessSend {
    /// `utility`, `authentication`, `marketing` or `service`.
    pub category: String,
    /// A business-initiated conversation (a template outside the
    /// customer-service window): what the messaging-limit tier counts.
    pub initiated: bool,
}

/// One accepted send: stored only if (sender device, client message id)
/// is new.
#[derive(Clone, Debug)]
pub struct NewSend {
    pub sender_account: AccountId,
    pub sender_device: DeviceId,
    pub client_message_id: String,
    /// The account written to (recorded as a contact of the sender).
    pub to_account: AccountId,
    pub envelopes: Vec<NewEnvelope>,
    pub at: Timestamp,
    pub expires_at: Timestamp,
    /// Set for a business's message: a `sent` status event is recorded
    /// with it.
    pub business: Option<BusinessSend>,
}

/// A device acknowledging items of its mailbox.
#[derive(Clone, Debug)]
pub struct Ack {
    pub device: DeviceId,
    pub ids: Vec<u64>,
    pub at: Timestamp,
    /// Expiry of the receipts this ack emits.
    pub expires_at: Timestamp,
}

/// One transaction's worth of writes.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    pub sends: Vec<NewSend>,
    pub acks: Vec<Ack>,
}

/// What a committed batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Per send, in order: `true` if it was a duplicate (nothing stored).
    pub duplicate: Vec<bool>,
    /// Per ack, in order: how many items it acked (envelopes marked,
    /// receipts deleted).
    pub acked: Vec<u64>,
    /// The items stored, with their mailbox, in id order: what the relay
    /// pushes to connected devices without reading them back.
    pub items: Vec<(DeviceId, MailItem)>,
}

impl BatchOutcome {
    /// Devices whose mailboxes got new items, sorted.
    pub fn woken(&self) -> Vec<DeviceId> {
        let mut w: Vec<DeviceId> = self.items.iter().map(|(d, _)| *d).collect();
        w.sort();
        w.dedup();
        w
    }
}

/// A report of an envelope a device received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReport {
    pub sender_account: AccountId,
    pub sender_device: DeviceId,
    pub envelope_id: u64,
    pub plaintext: Option<String>,
    pub at: Timestamp,
}

#[async_trait]
pub trait MailboxStore: Send + Sync + std::fmt::Debug + 'static {
    // --- key directory ---
    async fn put_device_keys(
        &self,
        account: AccountId,
        device: DeviceId,
        keys_json: &str,
        at: Timestamp,
    ) -> Result<PutDeviceKeys>;
    async fn device_keys(&self, device: DeviceId) -> Result<Option<String>>;
    /// Every device of `account` with keys, in device id order.
    async fn account_device_keys(&self, account: AccountId) -> Result<Vec<(DeviceId, String)>>;
    /// Adds one-time keys (ids already present are ignored) up to `cap`
    /// stored keys, and replaces the fallback key if one is given. Returns
    /// (remaining one-time keys, has fallback).
    async fn add_one_time_keys(
        &self,
        device: DeviceId,
        keys: &[(String, String)],
        fallback: Option<&str>,
        cap: u32,
    ) -> Result<(u32, bool)>;
    async fn one_time_key_count(&self, device: DeviceId) -> Result<(u32, bool)>;
    /// Takes one one-time key of `device` (removed: never handed out
    /// twice), or else its fallback key. `(json, is_fallback)`.
    async fn claim_one_time_key(&self, device: DeviceId) -> Result<Option<(String, bool)>>;
    /// [`MailboxStore::claim_one_time_key`] for many devices in one
    /// transaction (one fsync), in order; a device named twice gets two
    /// keys.
    async fn claim_one_time_keys(
        &self,
        devices: &[DeviceId],
    ) -> Result<Vec<Option<(String, bool)>>>;

    // --- mailboxes ---
    /// Commits every send and ack of `batch` in one transaction.
    async fn commit_batch(&self, batch: &WriteBatch) -> Result<BatchOutcome>;
    /// Up to `limit` unexpired items of `device` with `id > after`, in id
    /// order.
    async fn fetch(
        &self,
        device: DeviceId,
        after: u64,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<MailItem>>;
    /// Removes expired items (delivered records among them), and
    /// idempotency records older than `records_before`; returns how many
    /// items went undelivered.
    async fn purge_expired(&self, now: Timestamp, records_before: Timestamp) -> Result<u64>;

    // --- contacts, blocks, reports ---
    /// Whether `account` ever wrote to `peer`.
    async fn has_written_to(&self, account: AccountId, peer: AccountId) -> Result<bool>;
    async fn block(&self, account: AccountId, blocked: AccountId, at: Timestamp) -> Result<()>;
    async fn unblock(&self, account: AccountId, blocked: AccountId) -> Result<()>;
    async fn is_blocked(&self, account: AccountId, sender: AccountId) -> Result<bool>;
    /// Everyone `account` blocked, with when, oldest first.
    async fn blocks_of(&self, account: AccountId) -> Result<Vec<(AccountId, Timestamp)>>;
    /// The sender of an envelope `device` received (queued or acked).
    async fn received_from(
        &self,
        device: DeviceId,
        envelope_id: u64,
    ) -> Result<Option<(AccountId, DeviceId)>>;
    async fn put_report(&self, report: &NewReport) -> Result<Uuid>;
    /// Reports stored (operator view, tests).
    async fn reports(&self) -> Result<Vec<NewReport>>;
    /// Items (envelopes and receipts) stored and not yet acked, over every
    /// device: the mailbox depth an operator watches.
    async fn pending_items(&self) -> Result<u64>;
}

/// The SQL implementation, on SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub struct SqlMailboxStore {
    db: Db,
}

impl SqlMailboxStore {
    /// Wraps the messenger's database and applies its migrations (the
    /// mailbox tables are migration `0003_e2e` of the messenger).
    pub async fn new(db: Db) -> Result<Self> {
        crate::messenger::migrate(&db).await?;
        Ok(SqlMailboxStore { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// A fetched item (the fetch selects neither the mailbox nor the expiry).
fn mail_row(r: &AnyRow) -> Result<MailItem> {
    MailRow {
        device: String::new(),
        kind: r.try_get("kind")?,
        peer_account: r.try_get("peer_account")?,
        peer_device: r.try_get("peer_device")?,
        cmid: r.try_get("client_message_id")?,
        message_type: r.try_get("message_type")?,
        body: r.try_get("body")?,
        at: r.try_get("at")?,
        expires_at: 0,
        business_meta: r.try_get("business_meta")?,
    }
    .into_item(r.try_get::<i64, _>("id")? as u64)
}

/// The `n`th (1-based) placeholder. SQLite gets anonymous `?`: sqlx
/// resolves each `$n` by name, which SQLite looks up linearly, so a
/// statement with thousands of `$n` costs quadratic time.
fn ph(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => "?".to_owned(),
        Backend::Postgres => format!("${n}"),
    }
}

/// `rows` parenthesised tuples of placeholders, numbered from `first`:
/// `(?,?),(?,?)` on SQLite, `($3,$4),($5,$6)` on PostgreSQL. `casts` has
/// one entry per column; a non-empty one is appended as `::TYPE` on
/// PostgreSQL, which cannot infer the types of a bare `VALUES` list.
fn value_rows(backend: Backend, rows: usize, first: usize, casts: &[&str]) -> String {
    let mut sql = String::new();
    let mut n = first;
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        for (k, cast) in casts.iter().enumerate() {
            if k > 0 {
                sql.push(',');
            }
            sql.push_str(&ph(backend, n));
            if backend == Backend::Postgres && !cast.is_empty() {
                sql.push_str("::");
                sql.push_str(cast);
            }
            n += 1;
        }
        sql.push(')');
    }
    sql
}

/// A row of `e2e_mailbox`, as written (and, with the fetched columns
/// only, as read back).
struct MailRow {
    device: String,
    kind: i64,
    peer_account: String,
    peer_device: String,
    cmid: String,
    message_type: i64,
    body: Option<Vec<u8>>,
    at: i64,
    expires_at: i64,
    business_meta: Option<String>,
}

impl MailRow {
    /// The item this row is (or was stored as), with its id.
    fn into_item(self, id: u64) -> Result<MailItem> {
        let peer_device = DeviceId(parse_uuid(&self.peer_device)?);
        Ok(match self.kind {
            0 => MailItem::Envelope {
                id,
                sender_account: AccountId(parse_uuid(&self.peer_account)?),
                sender_device: peer_device,
                client_message_id: self.cmid,
                server_ts: Timestamp(self.at),
                message_type: self.message_type as u8,
                ciphertext: self.body.unwrap_or_default(),
                business_meta: self.business_meta,
            },
            1 => MailItem::Receipt {
                id,
                client_message_id: self.cmid,
                recipient_device: peer_device,
                delivered_at: Timestamp(self.at),
            },
            _ => return Err(StoreError::Corrupt("mailbox item kind".into())),
        })
    }
}

#[async_trait]
impl MailboxStore for SqlMailboxStore {
    async fn put_device_keys(
        &self,
        account: AccountId,
        device: DeviceId,
        keys_json: &str,
        at: Timestamp,
    ) -> Result<PutDeviceKeys> {
        let inserted = sqlx::query(
            "INSERT INTO e2e_device_keys (device_id, account_id, keys_json, uploaded_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (device_id) DO NOTHING",
        )
        .bind(uuid_text(device.0))
        .bind(uuid_text(account.0))
        .bind(keys_json)
        .bind(at.0)
        .execute(&self.db.pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(PutDeviceKeys::Stored);
        }
        match self.device_keys(device).await? {
            Some(existing) if existing == keys_json => Ok(PutDeviceKeys::Identical),
            _ => Ok(PutDeviceKeys::Conflict),
        }
    }

    async fn device_keys(&self, device: DeviceId) -> Result<Option<String>> {
        let row = sqlx::query("SELECT keys_json FROM e2e_device_keys WHERE device_id = $1")
            .bind(uuid_text(device.0))
            .fetch_optional(&self.db.pool)
            .await?;
        row.map(|r| r.try_get::<String, _>(0).map_err(Into::into))
            .transpose()
    }

    async fn account_device_keys(&self, account: AccountId) -> Result<Vec<(DeviceId, String)>> {
        let rows = sqlx::query(
            "SELECT device_id, keys_json FROM e2e_device_keys WHERE account_id = $1 \
             ORDER BY device_id",
        )
        .bind(uuid_text(account.0))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    DeviceId(parse_uuid(&r.try_get::<String, _>(0)?)?),
                    r.try_get::<String, _>(1)?,
                ))
            })
            .collect()
    }

    async fn add_one_time_keys(
        &self,
        device: DeviceId,
        keys: &[(String, String)],
        fallback: Option<&str>,
        cap: u32,
    ) -> Result<(u32, bool)> {
        let d = uuid_text(device.0);
        let mut tx = self.db.pool.begin().await?;
        // Take the write lock first (SQLite) and serialise per device (PG):
        // a SQLite transaction that reads first and writes later cannot
        // wait for the lock (its snapshot may be stale), and fails with
        // SQLITE_BUSY at once when another connection wrote meanwhile. So
        // the first statement writes, even when there is no fallback key
        // to store (found by `accord bench business`, whose one-time-key
        // uploads met the key directory's writes).
        sqlx::query("UPDATE e2e_fallback_keys SET device_id = device_id WHERE device_id = $1")
            .bind(&d)
            .execute(&mut *tx)
            .await?;
        if let Some(fb) = fallback {
            sqlx::query(
                "INSERT INTO e2e_fallback_keys (device_id, key_json) VALUES ($1, $2) \
                 ON CONFLICT (device_id) DO UPDATE SET key_json = $2",
            )
            .bind(&d)
            .bind(fb)
            .execute(&mut *tx)
            .await?;
        }
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM e2e_one_time_keys WHERE device_id = $1")
            .bind(&d)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let mut room = (cap as i64 - count).max(0);
        for (id, json) in keys {
            if room == 0 {
                break;
            }
            let n = sqlx::query(
                "INSERT INTO e2e_one_time_keys (device_id, key_id, key_json) VALUES ($1, $2, $3) \
                 ON CONFLICT (device_id, key_id) DO NOTHING",
            )
            .bind(&d)
            .bind(id)
            .bind(json)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            room -= n as i64;
        }
        tx.commit().await?;
        self.one_time_key_count(device).await
    }

    async fn one_time_key_count(&self, device: DeviceId) -> Result<(u32, bool)> {
        let d = uuid_text(device.0);
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM e2e_one_time_keys WHERE device_id = $1), \
                    (SELECT COUNT(*) FROM e2e_fallback_keys WHERE device_id = $1)",
        )
        .bind(&d)
        .fetch_one(&self.db.pool)
        .await?;
        Ok((
            row.try_get::<i64, _>(0)? as u32,
            row.try_get::<i64, _>(1)? > 0,
        ))
    }

    async fn claim_one_time_key(&self, device: DeviceId) -> Result<Option<(String, bool)>> {
        let d = uuid_text(device.0);
        // Pick a candidate, then delete exactly that row: whoever deletes
        // it (rows_affected = 1) owns it; a loser of a race tries the next.
        for _ in 0..64 {
            let row = sqlx::query(
                "SELECT key_id, key_json FROM e2e_one_time_keys WHERE device_id = $1 \
                 ORDER BY key_id LIMIT 1",
            )
            .bind(&d)
            .fetch_optional(&self.db.pool)
            .await?;
            let Some(row) = row else { break };
            let key_id: String = row.try_get(0)?;
            let json: String = row.try_get(1)?;
            let n =
                sqlx::query("DELETE FROM e2e_one_time_keys WHERE device_id = $1 AND key_id = $2")
                    .bind(&d)
                    .bind(&key_id)
                    .execute(&self.db.pool)
                    .await?
                    .rows_affected();
            if n == 1 {
                return Ok(Some((json, false)));
            }
        }
        let fb = sqlx::query("SELECT key_json FROM e2e_fallback_keys WHERE device_id = $1")
            .bind(&d)
            .fetch_optional(&self.db.pool)
            .await?;
        fb.map(|r| Ok((r.try_get::<String, _>(0)?, true)))
            .transpose()
    }

    async fn claim_one_time_keys(
        &self,
        devices: &[DeviceId],
    ) -> Result<Vec<Option<(String, bool)>>> {
        // One transaction for all: the write lock first (the first
        // statement deletes), behind the same in-process gate as the
        // mailbox group commit on SQLite.
        let _gate = match self.db.backend {
            Backend::Sqlite => Some(self.db.write_gate().await),
            Backend::Postgres => None,
        };
        let mut tx = self.db.pool.begin().await?;
        let mut out = Vec::with_capacity(devices.len());
        for device in devices {
            let d = uuid_text(device.0);
            let mut got = None;
            // The smallest key id of the device, deleted and returned; a
            // concurrent claim on another node may take it first (PG), then
            // the next one is tried.
            for _ in 0..64 {
                let row = sqlx::query(
                    "DELETE FROM e2e_one_time_keys WHERE device_id = $1 AND key_id = \
                     (SELECT key_id FROM e2e_one_time_keys WHERE device_id = $1 \
                      ORDER BY key_id LIMIT 1) RETURNING key_json",
                )
                .bind(&d)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = row {
                    got = Some((row.try_get::<String, _>(0)?, false));
                    break;
                }
                let left: i64 =
                    sqlx::query("SELECT COUNT(*) FROM e2e_one_time_keys WHERE device_id = $1")
                        .bind(&d)
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get(0)?;
                if left == 0 {
                    break;
                }
            }
            if got.is_none() {
                got = sqlx::query("SELECT key_json FROM e2e_fallback_keys WHERE device_id = $1")
                    .bind(&d)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| Ok::<_, StoreError>((r.try_get::<String, _>(0)?, true)))
                    .transpose()?;
            }
            out.push(got);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn commit_batch(&self, batch: &WriteBatch) -> Result<BatchOutcome> {
        match self.db.backend {
            Backend::Sqlite => commit::commit_sqlite(&self.db, batch).await,
            Backend::Postgres => commit::commit_postgres(&self.db.pool, batch).await,
        }
    }

    async fn fetch(
        &self,
        device: DeviceId,
        after: u64,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<MailItem>> {
        let rows = sqlx::query(
            "SELECT id, kind, peer_account, peer_device, client_message_id, message_type, body, at, \
             business_meta FROM e2e_mailbox WHERE device_id = $1 AND id > $2 AND expires_at > $3 AND acked_at IS NULL \
             ORDER BY id LIMIT $4",
        )
        .bind(uuid_text(device.0))
        .bind(after as i64)
        .bind(now.0)
        .bind(limit as i64)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(mail_row).collect()
    }

    async fn purge_expired(&self, now: Timestamp, records_before: Timestamp) -> Result<u64> {
        let n = sqlx::query("DELETE FROM e2e_mailbox WHERE expires_at <= $1 AND acked_at IS NULL")
            .bind(now.0)
            .execute(&self.db.pool)
            .await?
            .rows_affected();
        // Delivered records (acked envelopes), and receipts acked before
        // acked receipts were deleted at once (they got expires_at = the
        // ack time).
        sqlx::query("DELETE FROM e2e_mailbox WHERE expires_at <= $1")
            .bind(now.0)
            .execute(&self.db.pool)
            .await?;
        sqlx::query("DELETE FROM e2e_sends WHERE at < $1")
            .bind(records_before.0)
            .execute(&self.db.pool)
            .await?;
        sqlx::query("DELETE FROM e2e_delivered WHERE at < $1")
            .bind(records_before.0)
            .execute(&self.db.pool)
            .await?;
        Ok(n)
    }

    async fn has_written_to(&self, account: AccountId, peer: AccountId) -> Result<bool> {
        Ok(
            sqlx::query("SELECT 1 FROM e2e_contacts WHERE account_id = $1 AND peer_account = $2")
                .bind(uuid_text(account.0))
                .bind(uuid_text(peer.0))
                .fetch_optional(&self.db.pool)
                .await?
                .is_some(),
        )
    }

    async fn block(&self, account: AccountId, blocked: AccountId, at: Timestamp) -> Result<()> {
        sqlx::query(
            "INSERT INTO e2e_blocks (account_id, blocked_account, at) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id, blocked_account) DO NOTHING",
        )
        .bind(uuid_text(account.0))
        .bind(uuid_text(blocked.0))
        .bind(at.0)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    async fn unblock(&self, account: AccountId, blocked: AccountId) -> Result<()> {
        sqlx::query("DELETE FROM e2e_blocks WHERE account_id = $1 AND blocked_account = $2")
            .bind(uuid_text(account.0))
            .bind(uuid_text(blocked.0))
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    async fn blocks_of(&self, account: AccountId) -> Result<Vec<(AccountId, Timestamp)>> {
        sqlx::query(
            "SELECT blocked_account, at FROM e2e_blocks WHERE account_id = $1 ORDER BY at, blocked_account",
        )
        .bind(uuid_text(account.0))
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                AccountId(parse_uuid(r.try_get("blocked_account")?)?),
                Timestamp(r.try_get("at")?),
            ))
        })
        .collect()
    }

    async fn is_blocked(&self, account: AccountId, sender: AccountId) -> Result<bool> {
        Ok(
            sqlx::query("SELECT 1 FROM e2e_blocks WHERE account_id = $1 AND blocked_account = $2")
                .bind(uuid_text(account.0))
                .bind(uuid_text(sender.0))
                .fetch_optional(&self.db.pool)
                .await?
                .is_some(),
        )
    }

    async fn received_from(
        &self,
        device: DeviceId,
        envelope_id: u64,
    ) -> Result<Option<(AccountId, DeviceId)>> {
        let d = uuid_text(device.0);
        let row = sqlx::query(
            "SELECT sender_account, sender_device FROM e2e_delivered \
             WHERE device_id = $1 AND envelope_id = $2",
        )
        .bind(&d)
        .bind(envelope_id as i64)
        .fetch_optional(&self.db.pool)
        .await?;
        let row = match row {
            Some(r) => Some(r),
            None => {
                sqlx::query(
                    "SELECT peer_account AS sender_account, peer_device AS sender_device \
                     FROM e2e_mailbox WHERE device_id = $1 AND id = $2 AND kind = 0",
                )
                .bind(&d)
                .bind(envelope_id as i64)
                .fetch_optional(&self.db.pool)
                .await?
            }
        };
        row.map(|r| {
            Ok((
                AccountId(parse_uuid(&r.try_get::<String, _>(0)?)?),
                DeviceId(parse_uuid(&r.try_get::<String, _>(1)?)?),
            ))
        })
        .transpose()
    }

    async fn put_report(&self, report: &NewReport) -> Result<Uuid> {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO e2e_reports (id, sender_account, sender_device, envelope_id, plaintext, at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(uuid_text(id))
        .bind(uuid_text(report.sender_account.0))
        .bind(uuid_text(report.sender_device.0))
        .bind(report.envelope_id as i64)
        .bind(report.plaintext.clone())
        .bind(report.at.0)
        .execute(&self.db.pool)
        .await?;
        Ok(id)
    }

    async fn reports(&self) -> Result<Vec<NewReport>> {
        let rows = sqlx::query(
            "SELECT sender_account, sender_device, envelope_id, plaintext, at FROM e2e_reports \
             ORDER BY at, id",
        )
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NewReport {
                    sender_account: AccountId(parse_uuid(&r.try_get::<String, _>(0)?)?),
                    sender_device: DeviceId(parse_uuid(&r.try_get::<String, _>(1)?)?),
                    envelope_id: r.try_get::<i64, _>(2)? as u64,
                    plaintext: r.try_get(3)?,
                    at: Timestamp(r.try_get(4)?),
                })
            })
            .collect()
    }

    async fn pending_items(&self) -> Result<u64> {
        // Counted over the partial index of unacked items (migration 0005).
        let n: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM e2e_mailbox WHERE acked_at IS NULL",
        )
        .fetch_one(&self.db.pool)
        .await?;
        Ok(n.max(0) as u64)
    }
}
