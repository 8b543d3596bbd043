//! Consent changes and the ledger that records them: appends (shared by
//! every concern that writes ledger entries), shard heads, pages, an
//! account's entries, group-committed consent changes, and the signed
//! checkpoints the messenger keeps.
//!
//! The ledger is sharded ([`accord_domain::transparency`]): an append
//! locks only the head rows of the shards it writes, in ascending shard
//! order (so two transactions never wait on each other in a cycle), and
//! must be the first write of its transaction.

use super::feed::enqueue_feeds;
use crate::db::{Backend, Db};
use crate::error::{Result, StoreError};
use crate::sql::{bytes32, checkpoint_row, parse_uuid, uuid_text};
use accord_domain::consent::ConsentState;
use accord_domain::ledger::{Hash, LedgerEntry, LedgerRecord};
use accord_domain::transparency::{shard_of_record, SignedCheckpoint};
use accord_domain::{AccountId, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use std::collections::BTreeMap;

/// One consent change for [`record_consents`]: the account's new state,
/// if its revision is still `expected_rev`, with the records that caused it.
#[derive(Clone, Debug)]
pub struct ConsentWrite {
    pub account: AccountId,
    pub expected_rev: i64,
    pub consent: ConsentState,
    pub records: Vec<LedgerRecord>,
}

/// An entry as appended, with its shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub shard: u16,
    pub entry: LedgerEntry,
}

/// `($1::t1,..),(..)`: `rows` tuples of one placeholder per entry of
/// `casts`, numbered from `$1`; an empty cast leaves the placeholder bare.
fn tuples(rows: usize, casts: &[&str]) -> String {
    let n = casts.len();
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = casts
                .iter()
                .enumerate()
                .map(|(c, ty)| match *ty {
                    "" => format!("${}", 1 + r * n + c),
                    ty => format!("${}::{ty}", 1 + r * n + c),
                })
                .collect();
            format!("({})", cells.join(","))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `$1,..`: a list of `n` placeholders.
fn list(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Rows bound in one statement, well under either backend's limit of
/// bound parameters (SQLite's is 32,766, PostgreSQL's 65,535).
const ROWS_PER_STATEMENT: usize = 100;

fn is_postgres(tx: &Transaction<'_, Any>) -> bool {
    tx.backend_name() == "PostgreSQL"
}

/// Locks the head rows of `shards` (ascending) and reads them: two
/// statements whatever the number of shards.
async fn lock_heads(
    tx: &mut Transaction<'_, Any>,
    shards: impl IntoIterator<Item = u16>,
) -> Result<BTreeMap<u16, (u64, Hash)>> {
    let shards: Vec<u16> = shards.into_iter().collect();
    let mut heads = BTreeMap::new();
    if shards.is_empty() {
        return Ok(heads);
    }
    let ids = list(shards.len());
    let select = if is_postgres(tx) {
        // Row locks taken in shard order (the lock follows the sort), so
        // two transactions never wait on each other in a cycle.
        format!("SELECT shard, seq, hash FROM ledger_shards WHERE shard IN ({ids}) ORDER BY shard FOR UPDATE")
    } else {
        // SQLite has one writer: a write takes its lock for the whole
        // transaction, whatever the order.
        let lock = format!("UPDATE ledger_shards SET seq = seq WHERE shard IN ({ids})");
        let mut q = sqlx::query(&lock);
        for s in &shards {
            q = q.bind(*s as i64);
        }
        q.execute(&mut **tx).await?;
        format!("SELECT shard, seq, hash FROM ledger_shards WHERE shard IN ({ids})")
    };
    let mut q = sqlx::query(&select);
    for s in &shards {
        q = q.bind(*s as i64);
    }
    for row in q.fetch_all(&mut **tx).await? {
        heads.insert(
            row.try_get::<i64, _>(0)? as u16,
            (
                row.try_get::<i64, _>(1)? as u64,
                bytes32(row.try_get(2)?, "hash")?,
            ),
        );
    }
    if heads.len() != shards.len() {
        return Err(StoreError::Corrupt(format!(
            "ledger shard heads: {} of {} found",
            heads.len(),
            shards.len()
        )));
    }
    Ok(heads)
}

/// Seals `records` onto `heads` (advancing them) and inserts them.
async fn insert_sealed(
    tx: &mut Transaction<'_, Any>,
    heads: &mut BTreeMap<u16, (u64, Hash)>,
    records: &[&LedgerRecord],
) -> Result<Vec<Appended>> {
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let shard = shard_of_record(r.account);
        let head = heads
            .get_mut(&shard)
            .expect("the shard of every record was locked");
        let e = r.seal(head.0 + 1, head.1);
        *head = (e.seq, e.hash);
        out.push(Appended { shard, entry: e });
    }
    for chunk in out.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO ledger (shard, seq, at, account_id, kind, payload, prev_hash, hash) VALUES {}",
            tuples(chunk.len(), &[""; 8])
        );
        let mut q = sqlx::query(&sql);
        for a in chunk {
            let e = &a.entry;
            q = q
                .bind(a.shard as i64)
                .bind(e.seq as i64)
                .bind(e.at.0)
                .bind(e.account.map(|a| uuid_text(a.0)))
                .bind(e.kind.clone())
                .bind(e.payload.clone())
                .bind(e.prev_hash.to_vec())
                .bind(e.hash.to_vec());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(out)
}

/// Writes the advanced heads: one statement per [`ROWS_PER_STATEMENT`]
/// shards (an `UPDATE .. FROM (VALUES ..)`).
async fn store_heads(
    tx: &mut Transaction<'_, Any>,
    heads: &BTreeMap<u16, (u64, Hash)>,
) -> Result<()> {
    let heads: Vec<_> = heads.iter().collect();
    for chunk in heads.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE ledger_shards SET seq = v.seq, hash = v.hash FROM {} \
             WHERE ledger_shards.shard = v.shard",
            values_table(
                chunk.len(),
                &[("shard", "BIGINT"), ("seq", "BIGINT"), ("hash", "BYTEA")],
                is_postgres(tx)
            )
        );
        let mut q = sqlx::query(&sql);
        for (shard, (seq, hash)) in chunk {
            q = q.bind(**shard as i64).bind(*seq as i64).bind(hash.to_vec());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// `(VALUES ..) AS v (col, ..)` with `rows` rows of placeholders from
/// `$1`, for an `UPDATE .. FROM`: PostgreSQL gets each placeholder cast to
/// its column's type, SQLite (which cannot name a `VALUES` list's
/// columns) a select that names them.
fn values_table(rows: usize, cols: &[(&str, &str)], postgres: bool) -> String {
    let casts: Vec<&str> = cols
        .iter()
        .map(|(_, ty)| if postgres { *ty } else { "" })
        .collect();
    let values = tuples(rows, &casts);
    let names: Vec<&str> = cols.iter().map(|(name, _)| *name).collect();
    if postgres {
        format!("(VALUES {values}) AS v ({})", names.join(", "))
    } else {
        let named: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, name)| format!("column{} AS {name}", i + 1))
            .collect();
        format!("(SELECT {} FROM (VALUES {values})) AS v", named.join(", "))
    }
}

/// Appends records to their shards. Must be the first write of `tx` (see
/// the module docs).
pub(super) async fn append(
    tx: &mut Transaction<'_, Any>,
    records: &[LedgerRecord],
) -> Result<Vec<Appended>> {
    if records.is_empty() {
        return Ok(vec![]);
    }
    let mut heads = lock_heads(tx, shards_of(records.iter())).await?;
    let refs: Vec<&LedgerRecord> = records.iter().collect();
    let out = insert_sealed(tx, &mut heads, &refs).await?;
    store_heads(tx, &heads).await?;
    Ok(out)
}

fn shards_of<'a>(records: impl Iterator<Item = &'a LedgerRecord>) -> Vec<u16> {
    let mut s: Vec<u16> = records.map(|r| shard_of_record(r.account)).collect();
    s.sort_unstable();
    s.dedup();
    s
}

fn ledger_row(r: &AnyRow) -> Result<(u16, LedgerEntry)> {
    let account: Option<String> = r.try_get("account_id")?;
    Ok((
        r.try_get::<i64, _>("shard")? as u16,
        LedgerEntry {
            seq: r.try_get::<i64, _>("seq")? as u64,
            at: Timestamp(r.try_get("at")?),
            account: account
                .as_deref()
                .map(parse_uuid)
                .transpose()?
                .map(AccountId),
            kind: r.try_get("kind")?,
            payload: r.try_get("payload")?,
            prev_hash: bytes32(r.try_get("prev_hash")?, "hash")?,
            hash: bytes32(r.try_get("hash")?, "hash")?,
        },
    ))
}

pub(super) async fn record_consent(
    db: &Db,
    account: AccountId,
    expected_rev: i64,
    consent: &ConsentState,
    records: &[LedgerRecord],
) -> Result<()> {
    let w = ConsentWrite {
        account,
        expected_rev,
        consent: consent.clone(),
        records: records.to_vec(),
    };
    record_consents(db, std::slice::from_ref(&w))
        .await?
        .pop()
        .expect("one result per write")
}

/// Group commit: every write in one transaction. A write whose revision
/// is stale gets `Conflict("consent_rev")` and appends nothing; the others
/// commit. An error of the transaction itself fails them all.
pub(super) async fn record_consents(db: &Db, writes: &[ConsentWrite]) -> Result<Vec<Result<()>>> {
    if writes.is_empty() {
        return Ok(vec![]);
    }
    // On SQLite the mailbox's group commit and the WAL checkpointer take
    // the same in-process gate; waiting here costs less than waiting in
    // SQLite's busy handler.
    let _gate = match db.backend {
        Backend::Sqlite => Some(db.write_gate().await),
        Backend::Postgres => None,
    };
    let mut tx = db.pool.begin().await?;
    let mut heads = lock_heads(
        &mut tx,
        shards_of(writes.iter().flat_map(|w| w.records.iter())),
    )
    .await?;
    // One write per account per batch can match its revision: a second
    // of the same account is a conflict (and retries on a fresh read).
    let mut seen = std::collections::HashSet::new();
    let firsts: Vec<bool> = writes.iter().map(|w| seen.insert(w.account)).collect();
    let candidates: Vec<&ConsentWrite> = writes
        .iter()
        .zip(&firsts)
        .filter_map(|(w, first)| first.then_some(w))
        .collect();
    // The conditional updates, one statement per chunk: the rows that
    // matched their expected revision come back.
    let postgres = db.backend == Backend::Postgres;
    let mut updated = std::collections::HashSet::new();
    for chunk in candidates.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE accounts SET consent = v.consent, consent_rev = accounts.consent_rev + 1 \
             FROM {} WHERE accounts.id = v.id AND accounts.consent_rev = v.rev RETURNING accounts.id",
            values_table(
                chunk.len(),
                &[("id", "TEXT"), ("consent", "TEXT"), ("rev", "BIGINT")],
                postgres
            )
        );
        let mut q = sqlx::query_as::<_, (String,)>(&sql);
        for w in chunk {
            q = q
                .bind(uuid_text(w.account.0))
                .bind(serde_json::to_string(&w.consent).expect("consent state serialises"))
                .bind(w.expected_rev);
        }
        for (id,) in q.fetch_all(&mut *tx).await? {
            updated.insert(id);
        }
    }
    let mut results = Vec::with_capacity(writes.len());
    let mut records: Vec<&LedgerRecord> = Vec::new();
    let mut outbox = Vec::new();
    for (w, first) in writes.iter().zip(firsts) {
        if !first || !updated.contains(&uuid_text(w.account.0)) {
            results.push(Err(StoreError::Conflict("consent_rev")));
            continue;
        }
        records.extend(w.records.iter());
        let at = w.records.last().map_or(Timestamp(0), |r| r.at);
        outbox.push((w.account, at));
        results.push(Ok(()));
    }
    enqueue_feeds(&mut tx, "consent_changed", &outbox).await?;
    insert_sealed(&mut tx, &mut heads, &records).await?;
    store_heads(&mut tx, &heads).await?;
    tx.commit().await?;
    Ok(results)
}

/// Every shard's head: `(shard, entries, last hash)`, by shard.
pub(super) async fn ledger_heads(db: &Db) -> Result<Vec<(u16, u64, Hash)>> {
    let rows = sqlx::query("SELECT shard, seq, hash FROM ledger_shards ORDER BY shard")
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<i64, _>(0)? as u16,
                r.try_get::<i64, _>(1)? as u64,
                bytes32(r.try_get(2)?, "hash")?,
            ))
        })
        .collect()
}

pub(super) async fn ledger_page(
    db: &Db,
    shard: u16,
    after: u64,
    limit: u32,
) -> Result<Vec<LedgerEntry>> {
    let rows =
        sqlx::query("SELECT * FROM ledger WHERE shard = $1 AND seq > $2 ORDER BY seq LIMIT $3")
            .bind(shard as i64)
            .bind(after as i64)
            .bind(limit as i64)
            .fetch_all(&db.pool)
            .await?;
    rows.iter().map(|r| ledger_row(r).map(|(_, e)| e)).collect()
}

/// An account's entries and every policy publication, with their shards,
/// by time (then shard and seq: an account's own entries are in one
/// shard, in order, except for the shard-0 history from before sharding,
/// which is older).
pub(super) async fn ledger_for_account(
    db: &Db,
    account: AccountId,
) -> Result<Vec<(u16, LedgerEntry)>> {
    let rows = sqlx::query(
        "SELECT * FROM ledger WHERE account_id = $1 OR kind = 'policy_published' ORDER BY at, shard, seq",
    )
    .bind(uuid_text(account.0))
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(ledger_row).collect()
}

pub(super) async fn put_checkpoint(db: &Db, c: &SignedCheckpoint) -> Result<()> {
    let cp = &c.checkpoint;
    // On SQLite, behind the same gate as the group commits: waiting in
    // SQLite's busy handler (sleeps of up to 100 ms) held the checkpoint
    // loop to a few passes in ten seconds under load.
    let _gate = match db.backend {
        Backend::Sqlite => Some(db.write_gate().await),
        Backend::Postgres => None,
    };
    sqlx::query(
        "INSERT INTO ledger_checkpoints (shard, size, root, at, signature) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (shard, size) DO NOTHING",
    )
    .bind(cp.shard as i64)
    .bind(cp.size as i64)
    .bind(&cp.root)
    .bind(cp.at.0)
    .bind(&c.signature)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// The newest stored checkpoint of every shard that has one.
pub(super) async fn latest_checkpoints(db: &Db) -> Result<Vec<SignedCheckpoint>> {
    let rows = sqlx::query(
        "SELECT c.* FROM ledger_checkpoints c \
         JOIN (SELECT shard, MAX(size) AS size FROM ledger_checkpoints GROUP BY shard) m \
           ON c.shard = m.shard AND c.size = m.size ORDER BY c.shard",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(checkpoint_row).collect()
}
