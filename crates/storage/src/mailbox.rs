//! The messenger's E2E store: the key directory (device keys, one-time and
//! fallback keys), per-device mailboxes, idempotency records, blocks,
//! delivered-envelope records (for reports) and reports.
//!
//! The store knows nothing of Olm: keys are kept as the JSON the service
//! verified, ciphertext as opaque bytes. It lives in the messenger's own
//! database (migrations `0003_e2e`, `0005_mailbox_tombstones`).
//!
//! An ack drops an item's ciphertext and stamps it acked instead of
//! deleting it: the row is then the delivered record a report is checked
//! against, kept until the envelope's own expiry (an acked receipt expires
//! at once). One update per item instead of a delete and an insert into a
//! separate table; only unacked items are in the per-device index.
//!
//! Writes to mailboxes come in batches ([`MailboxStore::commit_batch`]):
//! one transaction for many sends and acks, so that a group-commit writer
//! pays one fsync for all of them.
//!
//! Mailbox ids come from one sequence (SQLite `AUTOINCREMENT`, PostgreSQL
//! identity), so they increase in insertion order and are never reused.

use crate::db::{Backend, Db};
use crate::error::{Result, StoreError};
use accord_domain::{AccountId, DeviceId, Timestamp};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use std::collections::{HashMap, HashSet};
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
    /// Per ack, in order: how many items were deleted.
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
    /// The sender of an envelope `device` received (queued or acked).
    async fn received_from(
        &self,
        device: DeviceId,
        envelope_id: u64,
    ) -> Result<Option<(AccountId, DeviceId)>>;
    async fn put_report(&self, report: &NewReport) -> Result<Uuid>;
    /// Reports stored (operator view, tests).
    async fn reports(&self) -> Result<Vec<NewReport>>;
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
        match db.backend {
            Backend::Sqlite => {
                sqlx::migrate!("./migrations/messenger/sqlite")
                    .run(&db.pool)
                    .await?
            }
            Backend::Postgres => {
                sqlx::migrate!("./migrations/messenger/postgres")
                    .run(&db.pool)
                    .await?
            }
        }
        Ok(SqlMailboxStore { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

fn text(u: Uuid) -> String {
    u.hyphenated().to_string()
}

fn uuid_of(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|_| StoreError::Corrupt("bad uuid".into()))
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

/// Rows per multi-row statement (at most 9 columns each: 9,000
/// parameters, under SQLite's 32,766 and PostgreSQL's 65,535). Few, large
/// statements: every statement is a round trip to the database thread,
/// and the group commit runs them one after another.
const ROWS_PER_INSERT: usize = 1000;
/// (device, id) pairs per ack UPDATE (two parameters each).
const ACK_PAIRS_PER_UPDATE: usize = 4000;

/// An envelope an ack marked delivered: its receipts follow.
struct AckedEnvelope {
    device: String,
    /// Index of the ack in the batch.
    ack: usize,
    sender_account: String,
    cmid: String,
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
}

/// Inserts `rows` and returns them as stored (ids assigned), in id order.
/// The database's `RETURNING` names each new row's id and identity
/// (mailbox, kind, peer device, client message id); SQL promises nothing
/// about the order of returned rows, so ids are matched to rows by that
/// identity. Two rows can share it only as two receipts of the same
/// (client message id, recipient device) to the same device, which are
/// identical but for the id, so either match is right.
async fn insert_items(
    backend: Backend,
    tx: &mut Transaction<'_, Any>,
    rows: Vec<MailRow>,
) -> Result<Vec<(DeviceId, MailItem)>> {
    type Key = (String, i64, String, String);
    let mut stored = Vec::with_capacity(rows.len());
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<MailRow> = rows.by_ref().take(ROWS_PER_INSERT).collect();
        let sql = format!(
            "INSERT INTO e2e_mailbox (device_id, kind, peer_account, peer_device, \
             client_message_id, message_type, body, at, expires_at) VALUES {} \
             RETURNING id, device_id, kind, peer_device, client_message_id",
            value_rows(backend, chunk.len(), 1, &[""; 9])
        );
        let mut q = sqlx::query(&sql);
        for r in &chunk {
            q = q
                .bind(r.device.clone())
                .bind(r.kind)
                .bind(r.peer_account.clone())
                .bind(r.peer_device.clone())
                .bind(r.cmid.clone())
                .bind(r.message_type)
                .bind(r.body.clone())
                .bind(r.at)
                .bind(r.expires_at);
        }
        let returned = q.fetch_all(&mut **tx).await?;
        let mut by_key: HashMap<Key, Vec<usize>> = HashMap::new();
        for (i, r) in chunk.iter().enumerate().rev() {
            let key = (
                r.device.clone(),
                r.kind,
                r.peer_device.clone(),
                r.cmid.clone(),
            );
            by_key.entry(key).or_default().push(i);
        }
        let mut slots: Vec<Option<MailRow>> = chunk.into_iter().map(Some).collect();
        for r in returned {
            let key: Key = (
                r.try_get("device_id")?,
                r.try_get("kind")?,
                r.try_get("peer_device")?,
                r.try_get("client_message_id")?,
            );
            let row = by_key
                .get_mut(&key)
                .and_then(Vec::pop)
                .and_then(|i| slots[i].take())
                .ok_or_else(|| StoreError::Corrupt("RETURNING named a row not inserted".into()))?;
            let id = r.try_get::<i64, _>("id")? as u64;
            stored.push((DeviceId(uuid_of(&row.device)?), row.into_item(id)?));
        }
        if slots.iter().any(Option::is_some) {
            return Err(StoreError::Corrupt(
                "an inserted row was not returned".into(),
            ));
        }
    }
    stored.sort_by_key(|(_, item)| item.id());
    Ok(stored)
}

impl MailRow {
    /// The item this row is (or was stored as), with its id.
    fn into_item(self, id: u64) -> Result<MailItem> {
        let peer_device = DeviceId(uuid_of(&self.peer_device)?);
        Ok(match self.kind {
            0 => MailItem::Envelope {
                id,
                sender_account: AccountId(uuid_of(&self.peer_account)?),
                sender_device: peer_device,
                client_message_id: self.cmid,
                server_ts: Timestamp(self.at),
                message_type: self.message_type as u8,
                ciphertext: self.body.unwrap_or_default(),
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
        .bind(text(device.0))
        .bind(text(account.0))
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
            .bind(text(device.0))
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
        .bind(text(account.0))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    DeviceId(uuid_of(&r.try_get::<String, _>(0)?)?),
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
        let d = text(device.0);
        let mut tx = self.db.pool.begin().await?;
        // Take the write lock first (SQLite) and serialise per device (PG).
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
        let d = text(device.0);
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
        let d = text(device.0);
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

    async fn commit_batch(&self, batch: &WriteBatch) -> Result<BatchOutcome> {
        let be = self.db.backend;
        let mut out = BatchOutcome::default();
        let mut tx = self.db.pool.begin().await?;
        let mut rows: Vec<MailRow> = Vec::new();

        // Idempotency: new (sender device, client message id) pairs only.
        // Repeats inside the batch are duplicates of the first; against
        // earlier batches, the insert's RETURNING says which are new.
        let mut first: HashSet<(DeviceId, &str)> = HashSet::new();
        let candidates: Vec<usize> = (0..batch.sends.len())
            .filter(|&i| {
                let s = &batch.sends[i];
                first.insert((s.sender_device, s.client_message_id.as_str()))
            })
            .collect();
        let mut inserted: HashSet<(String, String)> = HashSet::new();
        for chunk in candidates.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO e2e_sends (sender_device, client_message_id, at) VALUES {} \
                 ON CONFLICT (sender_device, client_message_id) DO NOTHING \
                 RETURNING sender_device, client_message_id",
                value_rows(be, chunk.len(), 1, &[""; 3])
            );
            let mut q = sqlx::query(&sql);
            for &i in chunk {
                let s = &batch.sends[i];
                q = q
                    .bind(text(s.sender_device.0))
                    .bind(s.client_message_id.clone())
                    .bind(s.at.0);
            }
            for r in q.fetch_all(&mut *tx).await? {
                inserted.insert((r.try_get(0)?, r.try_get(1)?));
            }
        }
        let mut contacts: HashSet<(AccountId, AccountId)> = HashSet::new();
        for s in &batch.sends {
            let sender_device = text(s.sender_device.0);
            let dup = !inserted.remove(&(sender_device.clone(), s.client_message_id.clone()));
            out.duplicate.push(dup);
            if dup {
                continue;
            }
            if s.sender_account != s.to_account {
                contacts.insert((s.sender_account, s.to_account));
            }
            let sender_account = text(s.sender_account.0);
            for e in &s.envelopes {
                rows.push(MailRow {
                    device: text(e.recipient_device.0),
                    kind: 0,
                    peer_account: sender_account.clone(),
                    peer_device: sender_device.clone(),
                    cmid: s.client_message_id.clone(),
                    message_type: e.message_type as i64,
                    body: Some(e.ciphertext.clone()),
                    at: s.at.0,
                    expires_at: s.expires_at.0,
                });
            }
        }
        let contacts: Vec<_> = contacts.into_iter().collect();
        for chunk in contacts.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO e2e_contacts (account_id, peer_account) VALUES {} \
                 ON CONFLICT (account_id, peer_account) DO NOTHING",
                value_rows(be, chunk.len(), 1, &[""; 2])
            );
            let mut q = sqlx::query(&sql);
            for (a, p) in chunk {
                q = q.bind(text(a.0)).bind(text(p.0));
            }
            q.execute(&mut *tx).await?;
        }

        // Acks: drop the ciphertext and stamp the row acked (it stays as
        // the delivered record, for reports, until it expires; an acked
        // receipt expires now), and queue a receipt for every device of
        // each sender.
        let ack_at = batch.acks.iter().map(|a| a.at.0).max().unwrap_or(0);
        // Every ack of the batch in as few UPDATEs as possible, each a
        // join of the mailbox with a list of (device, id) pairs: one
        // primary-key lookup per pair, the device checked on the row. (An
        // `OR` of `(device_id = ? AND id IN (..))` terms re-evaluated the
        // whole `OR` for every row found: six times slower per acked item
        // with a hundred acks in a batch.)
        let mut owner: HashMap<(String, i64), usize> = HashMap::new();
        let mut pairs: Vec<(String, i64)> = Vec::new();
        for (k, a) in batch.acks.iter().enumerate() {
            let d = text(a.device.0);
            for id in &a.ids {
                let key = (d.clone(), *id as i64);
                if let std::collections::hash_map::Entry::Vacant(v) = owner.entry(key.clone()) {
                    v.insert(k);
                    pairs.push(key);
                }
            }
        }
        let mut counts = vec![0u64; batch.acks.len()];
        let mut acked_envelopes: Vec<AckedEnvelope> = Vec::new();
        for chunk in pairs.chunks(ACK_PAIRS_PER_UPDATE) {
            // SQLite names the columns of a VALUES list column1, column2;
            // PostgreSQL takes the names given.
            let alias = match be {
                Backend::Sqlite => "v",
                Backend::Postgres => "v (column1, column2)",
            };
            let sql = format!(
                "UPDATE e2e_mailbox SET body = NULL, acked_at = {}, \
                 expires_at = CASE WHEN kind = 1 THEN {} ELSE expires_at END \
                 FROM (VALUES {}) AS {alias} \
                 WHERE e2e_mailbox.id = v.column2 AND e2e_mailbox.device_id = v.column1 \
                 AND e2e_mailbox.acked_at IS NULL \
                 RETURNING e2e_mailbox.id, e2e_mailbox.device_id, e2e_mailbox.kind, \
                 e2e_mailbox.peer_account, e2e_mailbox.client_message_id",
                ph(be, 1),
                ph(be, 2),
                value_rows(be, chunk.len(), 3, &["TEXT", "BIGINT"]),
            );
            let mut q = sqlx::query(&sql).bind(ack_at).bind(ack_at);
            for (d, id) in chunk {
                q = q.bind(d.clone()).bind(*id);
            }
            for r in q.fetch_all(&mut *tx).await? {
                let id: i64 = r.try_get("id")?;
                let d: String = r.try_get("device_id")?;
                let Some(&k) = owner.get(&(d.clone(), id)) else {
                    continue;
                };
                counts[k] += 1;
                if r.try_get::<i64, _>("kind")? != 0 {
                    continue;
                }
                acked_envelopes.push(AckedEnvelope {
                    device: d,
                    ack: k,
                    sender_account: r.try_get("peer_account")?,
                    cmid: r.try_get("client_message_id")?,
                });
            }
        }
        // Every device of every sender, in one query per chunk of senders.
        let mut sender_devices: HashMap<String, Vec<String>> = HashMap::new();
        let senders: Vec<&str> = acked_envelopes
            .iter()
            .map(|e| e.sender_account.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for chunk in senders.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "SELECT account_id, device_id FROM e2e_device_keys WHERE account_id IN {}",
                value_rows(be, 1, 1, &vec![""; chunk.len()])
            );
            let mut q = sqlx::query(&sql);
            for a in chunk {
                q = q.bind(a.to_string());
            }
            for r in q.fetch_all(&mut *tx).await? {
                sender_devices
                    .entry(r.try_get::<String, _>(0)?)
                    .or_default()
                    .push(r.try_get::<String, _>(1)?);
            }
        }
        for e in acked_envelopes {
            let a = &batch.acks[e.ack];
            for target in sender_devices.get(&e.sender_account).into_iter().flatten() {
                rows.push(MailRow {
                    device: target.clone(),
                    kind: 1,
                    peer_account: e.sender_account.clone(),
                    peer_device: e.device.clone(),
                    cmid: e.cmid.clone(),
                    message_type: 0,
                    body: None,
                    at: a.at.0,
                    expires_at: a.expires_at.0,
                });
            }
        }
        out.acked = counts;
        out.items = insert_items(be, &mut tx, rows).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn fetch(
        &self,
        device: DeviceId,
        after: u64,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<MailItem>> {
        let rows = sqlx::query(
            "SELECT id, kind, peer_account, peer_device, client_message_id, message_type, body, at \
             FROM e2e_mailbox WHERE device_id = $1 AND id > $2 AND expires_at > $3 AND acked_at IS NULL \
             ORDER BY id LIMIT $4",
        )
        .bind(text(device.0))
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
        // Delivered records (acked envelopes) and acked receipts.
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
                .bind(text(account.0))
                .bind(text(peer.0))
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
        .bind(text(account.0))
        .bind(text(blocked.0))
        .bind(at.0)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    async fn unblock(&self, account: AccountId, blocked: AccountId) -> Result<()> {
        sqlx::query("DELETE FROM e2e_blocks WHERE account_id = $1 AND blocked_account = $2")
            .bind(text(account.0))
            .bind(text(blocked.0))
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    async fn is_blocked(&self, account: AccountId, sender: AccountId) -> Result<bool> {
        Ok(
            sqlx::query("SELECT 1 FROM e2e_blocks WHERE account_id = $1 AND blocked_account = $2")
                .bind(text(account.0))
                .bind(text(sender.0))
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
        let d = text(device.0);
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
                AccountId(uuid_of(&r.try_get::<String, _>(0)?)?),
                DeviceId(uuid_of(&r.try_get::<String, _>(1)?)?),
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
        .bind(text(id))
        .bind(text(report.sender_account.0))
        .bind(text(report.sender_device.0))
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
                    sender_account: AccountId(uuid_of(&r.try_get::<String, _>(0)?)?),
                    sender_device: DeviceId(uuid_of(&r.try_get::<String, _>(1)?)?),
                    envelope_id: r.try_get::<i64, _>(2)? as u64,
                    plaintext: r.try_get(3)?,
                    at: Timestamp(r.try_get(4)?),
                })
            })
            .collect()
    }
}
