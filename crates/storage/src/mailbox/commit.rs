//! The group commit of a [`WriteBatch`]: many sends and acks in one
//! transaction, so that the writer pays one fsync for all of them.
//!
//! What a batch does, on either backend:
//! - a send is stored only if its (sender device, client message id) is
//!   new; a repeat inside the batch is a duplicate of the first;
//! - an ack takes the items it names that are still unacked in the
//!   acking device's own mailbox (each item once, for the first ack of
//!   the batch that names it). An acked envelope keeps its row, without
//!   the ciphertext, as the delivered record a report is checked
//!   against, until its own expiry; an acked receipt is deleted. Every
//!   device of the envelope's sender gets a receipt.
//!
//! Each backend has its own path, because what is dear differs:
//! - **SQLite.** sqlx runs each connection on a thread of its own, so
//!   every statement is a round trip to that thread and back to the
//!   waiting task. Under load a round trip waits about a millisecond
//!   (a bare `SELECT 1` took 1.1–2.0 ms inside `accord bench relay`),
//!   more than the statements of a batch take, and every row handed back
//!   costs about 15 µs. So the SQLite commit is two round trips of
//!   several statements each (`BEGIN IMMEDIATE` and the reads; the
//!   writes and `COMMIT`), and its reads come back as one row of JSON
//!   each. The write lock, taken by `BEGIN IMMEDIATE`, keeps what the
//!   first round trip read true until the commit, and makes the ids of
//!   an insert predictable (see [`insert_sql`]). A transaction that
//!   fails or is abandoned midway closes its connection instead of
//!   returning it to the pool ([`ScriptTx`]): closing rolls back.
//! - **PostgreSQL.** Rows are cheap and other nodes may write the same
//!   tables at the same time, so every write is a statement of its own
//!   whose `RETURNING` says what it did (the send records that were new,
//!   the items an ack took), atomic against the other nodes.

use super::{value_rows, MailRow};
use super::{BatchOutcome, NewSend, WriteBatch};
use crate::db::{Backend, Db};
use crate::error::{Result, StoreError};
use crate::sql::{parse_uuid, uuid_text};
use accord_domain::DeviceId;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Row};
use std::collections::{HashMap, HashSet};

/// Rows per multi-row insert (at most 10 columns each: 10,000 parameters,
/// under SQLite's 32,766 and PostgreSQL's 65,535).
const ROWS_PER_INSERT: usize = 1000;
/// Two-column rows (send keys, ack pairs) per statement.
const PAIRS_PER_STATEMENT: usize = 8000;
/// Ids per `id IN (...)` list.
const IDS_PER_STATEMENT: usize = 16000;

/// What a batch asks for, worked out before any SQL.
struct Plan<'a> {
    batch: &'a WriteBatch,
    /// (sender device, client message id) of each send that is the first
    /// in the batch with it, and when it was sent.
    candidates: Vec<(String, String)>,
    candidate_at: Vec<i64>,
    /// Acked (device, id) pairs, each once, with the ack (its index in
    /// the batch) that owns it.
    pairs: Vec<(String, i64)>,
    owner: HashMap<(String, i64), usize>,
}

impl<'a> Plan<'a> {
    fn new(batch: &'a WriteBatch) -> Self {
        let mut seen: HashSet<(DeviceId, &str)> = HashSet::new();
        let (candidates, candidate_at) = batch
            .sends
            .iter()
            .filter(|s| seen.insert((s.sender_device, s.client_message_id.as_str())))
            .map(|s| {
                (
                    (uuid_text(s.sender_device.0), s.client_message_id.clone()),
                    s.at.0,
                )
            })
            .unzip();
        let mut owner: HashMap<(String, i64), usize> = HashMap::new();
        let mut pairs = Vec::new();
        for (k, a) in batch.acks.iter().enumerate() {
            let d = uuid_text(a.device.0);
            for id in &a.ids {
                let key = (d.clone(), *id as i64);
                if let std::collections::hash_map::Entry::Vacant(v) = owner.entry(key.clone()) {
                    v.insert(k);
                    pairs.push(key);
                }
            }
        }
        Plan {
            batch,
            candidates,
            candidate_at,
            pairs,
            owner,
        }
    }

    /// The latest ack time of the batch: when its envelopes were acked.
    fn ack_at(&self) -> i64 {
        self.batch.acks.iter().map(|a| a.at.0).max().unwrap_or(0)
    }

    /// What the batch writes, given the candidate sends that are new and
    /// the items the acks took.
    fn writes(&self, mut new: HashSet<(String, String)>, taken: Vec<AckedItem>) -> Writes {
        let mut w = Writes::default();
        let mut contacts = HashSet::new();
        for s in &self.batch.sends {
            let sender_device = uuid_text(s.sender_device.0);
            let key = (sender_device, s.client_message_id.clone());
            let dup = !new.remove(&key);
            w.outcome.duplicate.push(dup);
            if dup {
                continue;
            }
            w.new_sends.push((key.0.clone(), key.1.clone(), s.at.0));
            if let Some(b) = &s.business {
                w.sent_events.push(SentEvent {
                    business: uuid_text(s.sender_account.0),
                    message_id: key.1,
                    recipient: uuid_text(s.to_account.0),
                    category: b.category.clone(),
                    initiated: b.initiated,
                    at: s.at.0,
                });
            }
            if s.sender_account != s.to_account {
                contacts.insert((uuid_text(s.sender_account.0), uuid_text(s.to_account.0)));
            }
            envelope_rows(s, &key.0, &mut w.rows);
        }
        w.contacts = contacts.into_iter().collect();
        w.outcome.acked = vec![0; self.batch.acks.len()];
        for item in taken {
            let Some(&k) = self.owner.get(&(item.device.clone(), item.id)) else {
                continue;
            };
            w.outcome.acked[k] += 1;
            if item.kind != 0 {
                w.acked_receipts.push(item.id);
                continue;
            }
            w.acked_envelopes.push(item.id);
            let ack = &self.batch.acks[k];
            for target in &item.sender_devices {
                w.rows.push(MailRow {
                    device: target.clone(),
                    kind: 1,
                    peer_account: item.peer_account.clone(),
                    peer_device: item.device.clone(),
                    cmid: item.cmid.clone(),
                    message_type: 0,
                    body: None,
                    at: ack.at.0,
                    expires_at: ack.expires_at.0,
                    business_meta: None,
                });
            }
        }
        w
    }
}

/// The rows of a new send's envelopes.
fn envelope_rows(s: &NewSend, sender_device: &str, rows: &mut Vec<MailRow>) {
    let sender_account = uuid_text(s.sender_account.0);
    for e in &s.envelopes {
        rows.push(MailRow {
            device: uuid_text(e.recipient_device.0),
            kind: 0,
            peer_account: sender_account.clone(),
            peer_device: sender_device.to_owned(),
            cmid: s.client_message_id.clone(),
            message_type: e.message_type as i64,
            body: Some(e.ciphertext.clone()),
            at: s.at.0,
            expires_at: s.expires_at.0,
            business_meta: e.business_meta.clone(),
        });
    }
}

/// An item an ack found unacked in its device's mailbox.
#[derive(serde::Deserialize)]
struct AckedItem {
    id: i64,
    device: String,
    kind: i64,
    /// The envelope's sender (or, for a receipt, the account it is from).
    peer_account: String,
    cmid: String,
    /// Every device of `peer_account`: where an envelope's receipts go.
    sender_devices: Vec<String>,
}

/// A business send's `sent` status event (a row of `business_events`).
struct SentEvent {
    business: String,
    message_id: String,
    recipient: String,
    category: String,
    initiated: bool,
    at: i64,
}

/// The insert of `n` `sent` events (due at once for the webhook; an
/// event already recorded is left alone).
fn sent_events_sql(backend: Backend, n: usize) -> String {
    format!(
        "INSERT INTO business_events (business, message_id, recipient, status, category, \
         initiated, code, at, hook_state, attempts, next_attempt_at) \
         SELECT v.column1, v.column2, v.column3, 'sent', v.column4, v.column5, NULL, v.column6, \
         0, 0, v.column7 FROM (VALUES {}) AS v \
         WHERE true ON CONFLICT (business, message_id, recipient, status) DO NOTHING;",
        value_rows(
            backend,
            n,
            1,
            &["TEXT", "TEXT", "TEXT", "TEXT", "BIGINT", "BIGINT", "BIGINT"]
        )
    )
}

fn bind_sent_events<'q>(mut q: AnyQuery<'q>, events: &[SentEvent]) -> AnyQuery<'q> {
    for e in events {
        q = q
            .bind(e.business.clone())
            .bind(e.message_id.clone())
            .bind(e.recipient.clone())
            .bind(e.category.clone())
            .bind(i64::from(e.initiated))
            .bind(e.at)
            .bind(e.at);
    }
    q
}

/// The `delivered` status events of the acked envelopes among `n` ids
/// that carry business metadata (envelopes to a business's recipient),
/// at the time bound first. One event per message and recipient account,
/// however many of its devices ack.
fn delivered_events_sql(backend: Backend, n: usize) -> String {
    let ids = match backend {
        Backend::Sqlite => id_list(n),
        Backend::Postgres => format!(
            "({})",
            (0..n)
                .map(|i| format!("${}", i + 3))
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    let (at, next) = match backend {
        Backend::Sqlite => ("?", "?"),
        Backend::Postgres => ("$1::BIGINT", "$2::BIGINT"),
    };
    format!(
        "INSERT INTO business_events (business, message_id, recipient, status, category, \
         initiated, code, at, hook_state, attempts, next_attempt_at) \
         SELECT DISTINCT m.peer_account, m.client_message_id, k.account_id, 'delivered', NULL, 0, \
         NULL, {at}, 0, 0, {next} FROM e2e_mailbox m JOIN e2e_device_keys k ON k.device_id = m.device_id \
         WHERE m.id IN {ids} AND m.business_meta IS NOT NULL \
         ON CONFLICT (business, message_id, recipient, status) DO NOTHING;"
    )
}

/// What a batch writes, and the outcome so far.
#[derive(Default)]
struct Writes {
    /// New send records: (sender device, client message id, at).
    new_sends: Vec<(String, String, i64)>,
    /// (account, peer) contacts.
    contacts: Vec<(String, String)>,
    /// Mailbox rows to insert: envelopes, then receipts.
    rows: Vec<MailRow>,
    /// The `sent` status events of new business sends.
    sent_events: Vec<SentEvent>,
    /// Ids of the acked receipts (deleted) and envelopes (marked).
    acked_receipts: Vec<i64>,
    acked_envelopes: Vec<i64>,
    /// Duplicates and ack counts; the items come with the ids.
    outcome: BatchOutcome,
}

impl Writes {
    /// The outcome, with the stored rows as items (`ids` in row order).
    fn finish(mut self, ids: Vec<i64>) -> Result<BatchOutcome> {
        if ids.len() != self.rows.len() {
            return Err(StoreError::Corrupt(format!(
                "{} ids for {} mailbox rows",
                ids.len(),
                self.rows.len()
            )));
        }
        for (row, id) in self.rows.into_iter().zip(ids) {
            let device = DeviceId(parse_uuid(&row.device)?);
            self.outcome.items.push((device, row.into_item(id as u64)?));
        }
        self.outcome.items.sort_by_key(|(_, item)| item.id());
        Ok(self.outcome)
    }
}

type AnyQuery<'q> = Query<'q, Any, AnyArguments<'q>>;

/// Binds the ten columns of each row, in `e2e_mailbox` column order.
fn bind_rows<'q>(mut q: AnyQuery<'q>, rows: &[MailRow]) -> AnyQuery<'q> {
    for r in rows {
        q = q
            .bind(r.device.clone())
            .bind(r.kind)
            .bind(r.peer_account.clone())
            .bind(r.peer_device.clone())
            .bind(r.cmid.clone())
            .bind(r.message_type)
            .bind(r.body.clone())
            .bind(r.at)
            .bind(r.expires_at)
            .bind(r.business_meta.clone());
    }
    q
}

/// Binds (text, integer) pairs.
fn bind_pairs<'q>(mut q: AnyQuery<'q>, pairs: &[(String, i64)]) -> AnyQuery<'q> {
    for (s, n) in pairs {
        q = q.bind(s.clone()).bind(*n);
    }
    q
}

/// Binds (text, text) pairs.
fn bind_keys<'q>(mut q: AnyQuery<'q>, keys: &[(String, String)]) -> AnyQuery<'q> {
    for (a, b) in keys {
        q = q.bind(a.clone()).bind(b.clone());
    }
    q
}

/// An insert of `rows` mailbox rows. On SQLite it is followed by
/// `SELECT last_insert_rowid(), changes()`: `e2e_mailbox` is
/// `AUTOINCREMENT`, so each row of one insert gets one more than the
/// largest id the table ever had, in the order of the `VALUES` list, and
/// under the write lock nobody else inserts in between; the last id and
/// the count give every id. On PostgreSQL (ids from a sequence other
/// nodes draw from too) it returns each new row's id and identity.
fn insert_sql(backend: Backend, rows: usize) -> String {
    let insert = format!(
        "INSERT INTO e2e_mailbox (device_id, kind, peer_account, peer_device, \
         client_message_id, message_type, body, at, expires_at, business_meta) VALUES {}",
        value_rows(backend, rows, 1, &[""; 10])
    );
    match backend {
        Backend::Sqlite => format!("{insert}; SELECT last_insert_rowid(), changes();"),
        Backend::Postgres => {
            format!("{insert} RETURNING id, device_id, kind, peer_device, client_message_id")
        }
    }
}

// ---- SQLite ------------------------------------------------------------

/// A pooled SQLite connection in a transaction begun and ended by the
/// scripts run on it (sqlx's own transactions cost a round trip each to
/// begin and to commit). Unless [`ScriptTx::done`] is called, dropping it
/// closes the connection instead of returning it to the pool, and
/// closing rolls the transaction back.
struct ScriptTx {
    conn: PoolConnection<Any>,
    committed: bool,
}

impl ScriptTx {
    async fn acquire(pool: &AnyPool) -> Result<Self> {
        Ok(ScriptTx {
            conn: pool.acquire().await?,
            committed: false,
        })
    }

    /// The transaction was committed: the connection may be reused.
    fn done(mut self) {
        self.committed = true;
    }
}

impl Drop for ScriptTx {
    fn drop(&mut self) {
        if !self.committed {
            self.conn.close_on_drop();
        }
    }
}

/// The acked items of one chunk of pairs, as one JSON array of
/// `[id, device, kind, peer_account, cmid, [sender devices]]`.
fn sqlite_acked_sql(pairs: usize) -> String {
    format!(
        "SELECT json_group_array(json_array(m.id, m.device_id, m.kind, m.peer_account, \
         m.client_message_id, json((SELECT json_group_array(k.device_id) \
         FROM e2e_device_keys k WHERE k.account_id = m.peer_account)))) \
         FROM (VALUES {}) AS v JOIN e2e_mailbox m ON m.id = v.column2 AND m.device_id = v.column1 \
         WHERE m.acked_at IS NULL;",
        value_rows(Backend::Sqlite, pairs, 1, &["", ""])
    )
}

/// The send records of one chunk of keys that already exist, as one JSON
/// array of `[sender device, client message id]`.
fn sqlite_existing_sql(keys: usize) -> String {
    format!(
        "SELECT json_group_array(json_array(s.sender_device, s.client_message_id)) \
         FROM (VALUES {}) AS v JOIN e2e_sends s \
         ON s.sender_device = v.column1 AND s.client_message_id = v.column2;",
        value_rows(Backend::Sqlite, keys, 1, &["", ""])
    )
}

/// `(?,?,?)`: a list of `n` (> 0) ids.
fn id_list(n: usize) -> String {
    format!("({})", vec!["?"; n].join(","))
}

fn parse_json<T: serde::de::DeserializeOwned>(row: &AnyRow) -> Result<T> {
    let json: String = row.try_get(0)?;
    serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("batch read: {e}")))
}

/// The SQLite group commit: two round trips (see the module docs).
pub(super) async fn commit_sqlite(db: &Db, batch: &WriteBatch) -> Result<BatchOutcome> {
    let plan = Plan::new(batch);
    let _gate = db.write_gate().await;
    let mut tx = ScriptTx::acquire(&db.pool).await?;

    // 1. Take the write lock; read which sends exist and what the acks take.
    let mut sql = String::from("BEGIN IMMEDIATE;");
    let send_chunks: Vec<&[(String, String)]> =
        plan.candidates.chunks(PAIRS_PER_STATEMENT).collect();
    let pair_chunks: Vec<&[(String, i64)]> = plan.pairs.chunks(PAIRS_PER_STATEMENT).collect();
    for c in &send_chunks {
        sql.push_str(&sqlite_existing_sql(c.len()));
    }
    for c in &pair_chunks {
        sql.push_str(&sqlite_acked_sql(c.len()));
    }
    let mut q = sqlx::query(&sql);
    for c in &send_chunks {
        q = bind_keys(q, c);
    }
    for c in &pair_chunks {
        q = bind_pairs(q, c);
    }
    let read = q.fetch_all(&mut *tx.conn).await?;
    if read.len() != send_chunks.len() + pair_chunks.len() {
        return Err(StoreError::Corrupt("batch read: rows missing".into()));
    }
    let mut new: HashSet<(String, String)> = plan.candidates.iter().cloned().collect();
    let mut taken = Vec::new();
    for (i, row) in read.iter().enumerate() {
        if i < send_chunks.len() {
            for key in parse_json::<Vec<(String, String)>>(row)? {
                new.remove(&key);
            }
        } else {
            type Found = (i64, String, i64, String, String, Vec<String>);
            for (id, device, kind, peer_account, cmid, sender_devices) in
                parse_json::<Vec<Found>>(row)?
            {
                taken.push(AckedItem {
                    id,
                    device,
                    kind,
                    peer_account,
                    cmid,
                    sender_devices,
                });
            }
        }
    }
    let w = plan.writes(new, taken);

    // 2. Write everything and commit.
    let mut sql = String::new();
    let sends: Vec<&[(String, String, i64)]> = w.new_sends.chunks(ROWS_PER_INSERT).collect();
    for c in &sends {
        sql.push_str(&format!(
            "INSERT INTO e2e_sends (sender_device, client_message_id, at) VALUES {};",
            value_rows(Backend::Sqlite, c.len(), 1, &[""; 3])
        ));
    }
    let contacts: Vec<&[(String, String)]> = w.contacts.chunks(ROWS_PER_INSERT).collect();
    for c in &contacts {
        sql.push_str(&format!(
            "INSERT INTO e2e_contacts (account_id, peer_account) VALUES {} \
             ON CONFLICT (account_id, peer_account) DO NOTHING;",
            value_rows(Backend::Sqlite, c.len(), 1, &[""; 2])
        ));
    }
    let receipts: Vec<&[i64]> = w.acked_receipts.chunks(IDS_PER_STATEMENT).collect();
    for c in &receipts {
        sql.push_str(&format!(
            "DELETE FROM e2e_mailbox WHERE id IN {};",
            id_list(c.len())
        ));
    }
    let envelopes: Vec<&[i64]> = w.acked_envelopes.chunks(IDS_PER_STATEMENT).collect();
    for c in &envelopes {
        sql.push_str(&delivered_events_sql(Backend::Sqlite, c.len()));
    }
    let sent_events: Vec<&[SentEvent]> = w.sent_events.chunks(ROWS_PER_INSERT).collect();
    for c in &sent_events {
        sql.push_str(&sent_events_sql(Backend::Sqlite, c.len()));
    }
    for c in &envelopes {
        sql.push_str(&format!(
            "UPDATE e2e_mailbox SET body = NULL, acked_at = ? WHERE id IN {};",
            id_list(c.len())
        ));
    }
    let rows: Vec<&[MailRow]> = w.rows.chunks(ROWS_PER_INSERT).collect();
    for c in &rows {
        sql.push_str(&insert_sql(Backend::Sqlite, c.len()));
    }
    sql.push_str("COMMIT;");
    let mut q = sqlx::query(&sql);
    for c in &sends {
        for (device, cmid, at) in c.iter() {
            q = q.bind(device.clone()).bind(cmid.clone()).bind(*at);
        }
    }
    for c in &contacts {
        q = bind_keys(q, c);
    }
    for c in &receipts {
        for id in c.iter() {
            q = q.bind(*id);
        }
    }
    let ack_at = plan.ack_at();
    for c in &envelopes {
        q = q.bind(ack_at).bind(ack_at);
        for id in c.iter() {
            q = q.bind(*id);
        }
    }
    for c in &sent_events {
        q = bind_sent_events(q, c);
    }
    for c in &envelopes {
        q = q.bind(ack_at);
        for id in c.iter() {
            q = q.bind(*id);
        }
    }
    for c in &rows {
        q = bind_rows(q, c);
    }
    let inserted = q.fetch_all(&mut *tx.conn).await?;
    tx.done();
    if inserted.len() != rows.len() {
        return Err(StoreError::Corrupt("batch insert: ids missing".into()));
    }
    let mut ids = Vec::with_capacity(w.rows.len());
    for (c, r) in rows.iter().zip(&inserted) {
        let (last, changed): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
        if changed != c.len() as i64 {
            return Err(StoreError::Corrupt(format!(
                "inserted {changed} of {} mailbox rows",
                c.len()
            )));
        }
        ids.extend(last - changed + 1..=last);
    }
    w.finish(ids)
}

// ---- PostgreSQL --------------------------------------------------------

/// The PostgreSQL advisory lock (transaction-scoped) a group commit
/// holds from its mailbox insert to its commit. Mailbox ids come from one
/// sequence that every node draws from, and a reader takes a device's
/// items by `id > last seen`: were two nodes' commits to become visible
/// out of id order, a reader that had seen the higher id would skip the
/// lower one. Under the lock, a node draws ids only after the previous
/// holder committed, so ids become visible in id order. Only the insert
/// and the commit are serialised; the rest of each batch runs on every
/// node at once, and a holder waits for no lock another node could hold.
/// The value is arbitrary but fixed: `accord.mailbox` in ASCII, as far
/// as it fits.
pub const MAILBOX_ORDER_LOCK: i64 = 0x6163_636f_7264_2e6d;

/// The PostgreSQL group commit: one statement per step (see the module
/// docs).
pub(super) async fn commit_postgres(pool: &AnyPool, batch: &WriteBatch) -> Result<BatchOutcome> {
    let be = Backend::Postgres;
    let plan = Plan::new(batch);
    let mut tx = pool.begin().await?;

    // The send records that are new: the insert's RETURNING says.
    let mut new: HashSet<(String, String)> = HashSet::new();
    let chunks = plan
        .candidates
        .chunks(ROWS_PER_INSERT)
        .zip(plan.candidate_at.chunks(ROWS_PER_INSERT));
    for (c, at) in chunks {
        let sql = format!(
            "INSERT INTO e2e_sends (sender_device, client_message_id, at) VALUES {} \
             ON CONFLICT (sender_device, client_message_id) DO NOTHING \
             RETURNING sender_device, client_message_id",
            value_rows(be, c.len(), 1, &[""; 3])
        );
        let mut q = sqlx::query(&sql);
        for ((device, cmid), at) in c.iter().zip(at) {
            q = q.bind(device.clone()).bind(cmid.clone()).bind(*at);
        }
        for r in q.fetch_all(&mut *tx).await? {
            new.insert((r.try_get(0)?, r.try_get(1)?));
        }
    }

    // What the acks take: an update (envelopes) and a delete (receipts),
    // each returning the rows it took.
    let mut taken = Vec::new();
    let returning = "RETURNING e2e_mailbox.id, e2e_mailbox.device_id, e2e_mailbox.kind, \
                     e2e_mailbox.peer_account, e2e_mailbox.client_message_id";
    for c in plan.pairs.chunks(PAIRS_PER_STATEMENT) {
        let update = format!(
            "UPDATE e2e_mailbox SET body = NULL, acked_at = $1 \
             FROM (VALUES {}) AS v (column1, column2) \
             WHERE e2e_mailbox.id = v.column2 AND e2e_mailbox.device_id = v.column1 \
             AND e2e_mailbox.kind = 0 AND e2e_mailbox.acked_at IS NULL {returning}",
            value_rows(be, c.len(), 2, &["TEXT", "BIGINT"])
        );
        let delete = format!(
            "DELETE FROM e2e_mailbox USING (VALUES {}) AS v (column1, column2) \
             WHERE e2e_mailbox.id = v.column2 AND e2e_mailbox.device_id = v.column1 \
             AND e2e_mailbox.kind = 1 AND e2e_mailbox.acked_at IS NULL {returning}",
            value_rows(be, c.len(), 1, &["TEXT", "BIGINT"])
        );
        let update = bind_pairs(sqlx::query(&update).bind(plan.ack_at()), c);
        let delete = bind_pairs(sqlx::query(&delete), c);
        for q in [update, delete] {
            for r in q.fetch_all(&mut *tx).await? {
                taken.push(AckedItem {
                    id: r.try_get("id")?,
                    device: r.try_get("device_id")?,
                    kind: r.try_get("kind")?,
                    peer_account: r.try_get("peer_account")?,
                    cmid: r.try_get("client_message_id")?,
                    sender_devices: Vec::new(),
                });
            }
        }
    }
    // Every device of every sender of an acked envelope.
    let senders: Vec<String> = taken
        .iter()
        .filter(|i| i.kind == 0)
        .map(|i| i.peer_account.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut devices: HashMap<String, Vec<String>> = HashMap::new();
    for c in senders.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "SELECT account_id, device_id FROM e2e_device_keys WHERE account_id IN {}",
            value_rows(be, 1, 1, &vec![""; c.len()])
        );
        let mut q = sqlx::query(&sql);
        for a in c {
            q = q.bind(a.clone());
        }
        for r in q.fetch_all(&mut *tx).await? {
            devices
                .entry(r.try_get(0)?)
                .or_default()
                .push(r.try_get(1)?);
        }
    }
    for item in taken.iter_mut().filter(|i| i.kind == 0) {
        item.sender_devices = devices.get(&item.peer_account).cloned().unwrap_or_default();
    }
    let w = plan.writes(new, taken);

    for c in w.contacts.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO e2e_contacts (account_id, peer_account) VALUES {} \
             ON CONFLICT (account_id, peer_account) DO NOTHING",
            value_rows(be, c.len(), 1, &[""; 2])
        );
        bind_keys(sqlx::query(&sql), c).execute(&mut *tx).await?;
    }
    for c in w.acked_envelopes.chunks(IDS_PER_STATEMENT) {
        let sql = delivered_events_sql(be, c.len());
        let mut q = sqlx::query(&sql).bind(plan.ack_at()).bind(plan.ack_at());
        for id in c {
            q = q.bind(*id);
        }
        q.execute(&mut *tx).await?;
    }
    for c in w.sent_events.chunks(ROWS_PER_INSERT) {
        let sql = sent_events_sql(be, c.len());
        bind_sent_events(sqlx::query(&sql), c)
            .execute(&mut *tx)
            .await?;
    }
    let mut ids = Vec::with_capacity(w.rows.len());
    if !w.rows.is_empty() {
        // Ids from here to the commit, one node at a time (see
        // [`MAILBOX_ORDER_LOCK`]).
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS locked")
            .bind(MAILBOX_ORDER_LOCK)
            .execute(&mut *tx)
            .await?;
    }
    for c in w.rows.chunks(ROWS_PER_INSERT) {
        let sql = insert_sql(be, c.len());
        let returned = bind_rows(sqlx::query(&sql), c).fetch_all(&mut *tx).await?;
        ids.extend(match_returned_ids(c, &returned)?);
    }
    tx.commit().await?;
    w.finish(ids)
}

/// The id of each of `rows`, in order, from the `RETURNING` rows of their
/// insert. SQL promises nothing about the order of returned rows, so ids
/// are matched to rows by identity (mailbox, kind, peer device, client
/// message id). Two rows can share it only as two receipts of the same
/// (client message id, recipient device) to the same device, which are
/// identical but for the id, so either match is right.
fn match_returned_ids(rows: &[MailRow], returned: &[AnyRow]) -> Result<Vec<i64>> {
    type Key = (String, i64, String, String);
    let mut by_key: HashMap<Key, Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate().rev() {
        let key = (
            r.device.clone(),
            r.kind,
            r.peer_device.clone(),
            r.cmid.clone(),
        );
        by_key.entry(key).or_default().push(i);
    }
    let mut ids: Vec<Option<i64>> = vec![None; rows.len()];
    for r in returned {
        let key: Key = (
            r.try_get("device_id")?,
            r.try_get("kind")?,
            r.try_get("peer_device")?,
            r.try_get("client_message_id")?,
        );
        let i = by_key
            .get_mut(&key)
            .and_then(Vec::pop)
            .ok_or_else(|| StoreError::Corrupt("RETURNING named a row not inserted".into()))?;
        ids[i] = Some(r.try_get("id")?);
    }
    ids.into_iter()
        .map(|id| id.ok_or_else(|| StoreError::Corrupt("an inserted row was not returned".into())))
        .collect()
}
