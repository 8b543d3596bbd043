//! Work for other services: the coordination feed's transactional outbox,
//! what the partner holds of each account, the feed's backlog, and the
//! credential revocations still owed to the key service.

use super::consent::append;
use crate::db::Db;
use crate::error::Result;
use crate::sql::{json, parse_uuid, pseudonym, uuid_text};
use accord_crypto::oprf::KeyVersion;
use accord_domain::ledger::LedgerRecord;
use accord_domain::policy::Purpose;
use accord_domain::{AccountId, DeviceId, PseudonymId, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use std::collections::BTreeSet;

/// What the partner holds of one account, as last confirmed by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartnerHolding {
    pub pseudonym: PseudonymId,
    pub key_version: KeyVersion,
    pub purposes: BTreeSet<Purpose>,
}

/// An account with feed work pending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedDue {
    pub account: AccountId,
    /// The newest outbox row of the account: the event id to send.
    pub upto: i64,
    pub oldest_at: Timestamp,
    pub attempts: u32,
}

/// The feed's backlog, for operators.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FeedStats {
    pub pending_events: u64,
    pub pending_accounts: u64,
    /// Creation time of the oldest pending event.
    pub oldest_pending_at: Option<Timestamp>,
    /// Pending accounts whose delivery failed at least once.
    pub failing_accounts: u64,
    pub max_attempts: u64,
    /// Accounts the partner holds something of.
    pub held_accounts: u64,
    /// When the oldest account deletion the partner has not confirmed yet
    /// was queued.
    pub oldest_unconfirmed_deletion_at: Option<Timestamp>,
}

fn holding_row(r: &AnyRow) -> Result<PartnerHolding> {
    Ok(PartnerHolding {
        pseudonym: pseudonym(r.try_get("pseudonym")?, "hash")?,
        key_version: KeyVersion(r.try_get::<i64, _>("key_version")? as u32),
        purposes: json(&r.try_get::<String, _>("purposes")?, "held purposes")?,
    })
}

/// Queues feed work for `account` inside `tx` (transactional outbox).
/// `reason` stays with the row for operators and is never sent: the
/// changes write `registered`, `consent_changed`, `device_added`,
/// `number_changed` or `account_deleted`, the dispatcher `deadline` (a
/// lapsed grant) or `resync` (reconciliation). Each event sent says only
/// `share` or `revoke` (`accord_domain::coordination::REASON_SHARE`).
pub(super) async fn enqueue_feed(
    tx: &mut Transaction<'_, Any>,
    account: AccountId,
    reason: &str,
    at: Timestamp,
) -> Result<()> {
    enqueue_feeds(tx, reason, &[(account, at)]).await
}

/// [`enqueue_feed`] for many accounts, one statement per hundred.
pub(super) async fn enqueue_feeds(
    tx: &mut Transaction<'_, Any>,
    reason: &str,
    rows: &[(AccountId, Timestamp)],
) -> Result<()> {
    for chunk in rows.chunks(100) {
        let values = (0..chunk.len())
            .map(|i| format!("(${}, $1, ${}, 0, ${})", 2 * i + 2, 2 * i + 3, 2 * i + 3))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "INSERT INTO feed_outbox (account_id, reason, created_at, attempts, next_attempt_at) VALUES {values}"
        );
        let mut q = sqlx::query(&sql).bind(reason);
        for (account, at) in chunk {
            q = q.bind(uuid_text(account.0)).bind(at.0);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

pub(super) async fn feed_enqueue(
    db: &Db,
    account: AccountId,
    reason: &str,
    at: Timestamp,
) -> Result<()> {
    let mut tx = db.pool.begin().await?;
    enqueue_feed(&mut tx, account, reason, at).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn feed_due(db: &Db, now: Timestamp, limit: u32) -> Result<Vec<FeedDue>> {
    let rows = sqlx::query(
        "SELECT account_id, MAX(id) AS upto, MIN(created_at) AS oldest, MAX(attempts) AS attempts \
         FROM feed_outbox GROUP BY account_id HAVING MAX(next_attempt_at) <= $1 \
         ORDER BY MIN(id) LIMIT $2",
    )
    .bind(now.0)
    .bind(limit as i64)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(FeedDue {
                account: AccountId(parse_uuid(&r.try_get::<String, _>("account_id")?)?),
                upto: r.try_get("upto")?,
                oldest_at: Timestamp(r.try_get("oldest")?),
                attempts: r.try_get::<i64, _>("attempts")? as u32,
            })
        })
        .collect()
}

pub(super) async fn partner_holding(db: &Db, account: AccountId) -> Result<Option<PartnerHolding>> {
    sqlx::query("SELECT * FROM partner_holdings WHERE account_id = $1")
        .bind(uuid_text(account.0))
        .fetch_optional(&db.pool)
        .await?
        .as_ref()
        .map(holding_row)
        .transpose()
}

pub(super) async fn partner_holdings(
    db: &Db,
    after: Option<AccountId>,
    limit: u32,
) -> Result<Vec<(AccountId, PartnerHolding)>> {
    let rows = sqlx::query(
        "SELECT * FROM partner_holdings WHERE account_id > $1 ORDER BY account_id LIMIT $2",
    )
    .bind(after.map(|a| uuid_text(a.0)).unwrap_or_default())
    .bind(limit as i64)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                AccountId(parse_uuid(&r.try_get::<String, _>("account_id")?)?),
                holding_row(r)?,
            ))
        })
        .collect()
}

pub(super) async fn feed_delivered(
    db: &Db,
    account: AccountId,
    upto: i64,
    holding: Option<&PartnerHolding>,
    records: &[LedgerRecord],
    at: Timestamp,
) -> Result<()> {
    let mut tx = db.pool.begin().await?;
    append(&mut tx, records).await?;
    sqlx::query("DELETE FROM partner_holdings WHERE account_id = $1")
        .bind(uuid_text(account.0))
        .execute(&mut *tx)
        .await?;
    if let Some(h) = holding {
        sqlx::query(
            "INSERT INTO partner_holdings (account_id, pseudonym, key_version, purposes, updated_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(uuid_text(account.0))
        .bind(h.pseudonym.as_bytes().to_vec())
        .bind(h.key_version.0 as i64)
        .bind(serde_json::to_string(&h.purposes).expect("purposes serialise"))
        .bind(at.0)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("DELETE FROM feed_outbox WHERE account_id = $1 AND id <= $2")
        .bind(uuid_text(account.0))
        .bind(upto)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn feed_postpone(db: &Db, account: AccountId, retry_at: Timestamp) -> Result<()> {
    sqlx::query("UPDATE feed_outbox SET attempts = attempts + 1, next_attempt_at = $1 WHERE account_id = $2")
        .bind(retry_at.0)
        .bind(uuid_text(account.0))
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// One scan of the outbox (however large a partner outage made it) and a
/// count of the holdings: the feed's health page and metrics read this.
pub(super) async fn feed_stats(db: &Db) -> Result<FeedStats> {
    let r = sqlx::query(
        "SELECT COUNT(*) AS events, COUNT(DISTINCT account_id) AS accounts, MIN(created_at) AS oldest, \
         COALESCE(MAX(attempts), 0) AS max_attempts, \
         COUNT(DISTINCT CASE WHEN attempts > 0 THEN account_id END) AS failing, \
         MIN(CASE WHEN reason = 'account_deleted' THEN created_at END) AS deletion \
         FROM feed_outbox",
    )
    .fetch_one(&db.pool)
    .await?;
    let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM partner_holdings")
        .fetch_one(&db.pool)
        .await?;
    Ok(FeedStats {
        pending_events: r.try_get::<i64, _>("events")? as u64,
        pending_accounts: r.try_get::<i64, _>("accounts")? as u64,
        oldest_pending_at: r.try_get::<Option<i64>, _>("oldest")?.map(Timestamp),
        failing_accounts: r.try_get::<i64, _>("failing")? as u64,
        max_attempts: r.try_get::<i64, _>("max_attempts")? as u64,
        held_accounts: held as u64,
        oldest_unconfirmed_deletion_at: r.try_get::<Option<i64>, _>("deletion")?.map(Timestamp),
    })
}

pub(super) async fn pending_revocations(db: &Db, limit: u32) -> Result<Vec<(DeviceId, AccountId)>> {
    let rows = sqlx::query(
        "SELECT device_id, account_id FROM pending_revocations \
         ORDER BY since, device_id LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                DeviceId(parse_uuid(&r.try_get::<String, _>(0)?)?),
                AccountId(parse_uuid(&r.try_get::<String, _>(1)?)?),
            ))
        })
        .collect()
}

pub(super) async fn revocation_done(db: &Db, device: DeviceId) -> Result<()> {
    sqlx::query("DELETE FROM pending_revocations WHERE device_id = $1")
        .bind(uuid_text(device.0))
        .execute(&db.pool)
        .await?;
    Ok(())
}
