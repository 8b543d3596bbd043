//! Consent changes and the ledger that records them: appends (shared by
//! every concern that writes ledger entries), the head, pages, and an
//! account's entries.

use super::feed::enqueue_feed;
use crate::db::Db;
use crate::error::{Result, StoreError};
use crate::sql::{bytes32, parse_uuid, uuid_text};
use accord_domain::consent::ConsentState;
use accord_domain::ledger::{Hash, LedgerEntry, LedgerRecord};
use accord_domain::{AccountId, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

/// Appends records after locking the head. Must be the first write of
/// `tx` (see the `messenger` module's docs).
pub(super) async fn append(tx: &mut Transaction<'_, Any>, records: &[LedgerRecord]) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    sqlx::query("UPDATE ledger_head SET seq = seq WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    let row = sqlx::query("SELECT seq, hash FROM ledger_head WHERE id = 1")
        .fetch_one(&mut **tx)
        .await?;
    let mut seq = row.try_get::<i64, _>(0)? as u64;
    let mut prev = bytes32(row.try_get(1)?, "hash")?;
    for r in records {
        seq += 1;
        let e = r.seal(seq, prev);
        sqlx::query(
            "INSERT INTO ledger (seq, at, account_id, kind, payload, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.seq as i64)
        .bind(e.at.0)
        .bind(e.account.map(|a| uuid_text(a.0)))
        .bind(&e.kind)
        .bind(&e.payload)
        .bind(e.prev_hash.to_vec())
        .bind(e.hash.to_vec())
        .execute(&mut **tx)
        .await?;
        prev = e.hash;
    }
    sqlx::query("UPDATE ledger_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(seq as i64)
        .bind(prev.to_vec())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn ledger_row(r: &AnyRow) -> Result<LedgerEntry> {
    let account: Option<String> = r.try_get("account_id")?;
    Ok(LedgerEntry {
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
    })
}

pub(super) async fn record_consent(
    db: &Db,
    account: AccountId,
    expected_rev: i64,
    consent: &ConsentState,
    records: &[LedgerRecord],
) -> Result<()> {
    let mut tx = db.pool.begin().await?;
    append(&mut tx, records).await?;
    let r = sqlx::query(
        "UPDATE accounts SET consent = $1, consent_rev = consent_rev + 1 WHERE id = $2 AND consent_rev = $3",
    )
    .bind(serde_json::to_string(consent).expect("consent state serialises"))
    .bind(uuid_text(account.0))
    .bind(expected_rev)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() != 1 {
        return Err(StoreError::Conflict("consent_rev"));
    }
    let at = records.last().map_or(Timestamp(0), |r| r.at);
    enqueue_feed(&mut tx, account, "consent_changed", at).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn ledger_head(db: &Db) -> Result<(u64, Hash)> {
    let row = sqlx::query("SELECT seq, hash FROM ledger_head WHERE id = 1")
        .fetch_one(&db.pool)
        .await?;
    Ok((
        row.try_get::<i64, _>(0)? as u64,
        bytes32(row.try_get(1)?, "hash")?,
    ))
}

pub(super) async fn ledger_page(db: &Db, after: u64, limit: u32) -> Result<Vec<LedgerEntry>> {
    let rows = sqlx::query("SELECT * FROM ledger WHERE seq > $1 ORDER BY seq LIMIT $2")
        .bind(after as i64)
        .bind(limit as i64)
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(ledger_row).collect()
}

pub(super) async fn ledger_for_account(db: &Db, account: AccountId) -> Result<Vec<LedgerEntry>> {
    let rows = sqlx::query(
        "SELECT * FROM ledger WHERE account_id = $1 OR kind = 'policy_published' ORDER BY seq",
    )
    .bind(uuid_text(account.0))
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(ledger_row).collect()
}
