//! Accounts, their devices and bearer tokens: creation, added devices,
//! number changes, authentication, and deletion (which queues the
//! devices' credential revocations).

use super::consent::append;
use super::feed::enqueue_feed;
use crate::db::Db;
use crate::error::{Result, StoreError};
use crate::sql::{conflict_on_unique, json, parse_uuid, uuid_text};
use accord_crypto::token::TokenHash;
use accord_domain::consent::ConsentState;
use accord_domain::ledger::LedgerRecord;
use accord_domain::{AccountId, DeviceId, DeviceInfo, PhoneNumber, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

/// A messenger account as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub phone: PhoneNumber,
    pub created_at: Timestamp,
    pub consent: ConsentState,
    /// Bumped on every consent change; for optimistic concurrency.
    pub consent_rev: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub id: DeviceId,
    pub account: AccountId,
    pub info: DeviceInfo,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
}

/// A device to add, with the hash of its bearer token.
#[derive(Clone, Debug)]
pub struct NewDevice {
    pub id: DeviceId,
    pub info: DeviceInfo,
    pub token_hash: TokenHash,
    pub at: Timestamp,
}

fn account_row(r: &AnyRow) -> Result<Account> {
    let phone: String = r.try_get("phone")?;
    Ok(Account {
        id: AccountId(parse_uuid(&r.try_get::<String, _>("id")?)?),
        phone: PhoneNumber::from_e164(&phone)
            .map_err(|_| StoreError::Corrupt("stored phone number".into()))?,
        created_at: Timestamp(r.try_get("created_at")?),
        consent: json(&r.try_get::<String, _>("consent")?, "consent state")?,
        consent_rev: r.try_get("consent_rev")?,
    })
}

async fn insert_device(
    tx: &mut Transaction<'_, Any>,
    account: AccountId,
    d: &NewDevice,
) -> Result<()> {
    let info = serde_json::to_string(&d.info).expect("device info serialises");
    sqlx::query(
        "INSERT INTO devices (id, account_id, info, token_hash, created_at, last_seen_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(uuid_text(d.id.0))
    .bind(uuid_text(account.0))
    .bind(info)
    .bind(d.token_hash.0.to_vec())
    .bind(d.at.0)
    .execute(&mut **tx)
    .await
    .map_err(conflict_on_unique("device"))?;
    Ok(())
}

pub(super) async fn create_account(
    db: &Db,
    id: AccountId,
    phone: &PhoneNumber,
    consent: &ConsentState,
    device: &NewDevice,
    records: &[LedgerRecord],
) -> Result<()> {
    let mut tx = db.pool.begin().await?;
    append(&mut tx, records).await?;
    sqlx::query(
        "INSERT INTO accounts (id, phone, created_at, consent, consent_rev) VALUES ($1, $2, $3, $4, 0)",
    )
    .bind(uuid_text(id.0))
    .bind(phone.e164())
    .bind(device.at.0)
    .bind(serde_json::to_string(consent).expect("consent state serialises"))
    .execute(&mut *tx)
    .await
    .map_err(conflict_on_unique("phone"))?;
    insert_device(&mut tx, id, device).await?;
    enqueue_feed(&mut tx, id, "registered", device.at).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn add_device(db: &Db, account: AccountId, device: &NewDevice) -> Result<()> {
    let mut tx = db.pool.begin().await?;
    let exists: Option<i64> = sqlx::query_scalar("SELECT consent_rev FROM accounts WHERE id = $1")
        .bind(uuid_text(account.0))
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Err(StoreError::NotFound("account"));
    }
    insert_device(&mut tx, account, device).await?;
    enqueue_feed(&mut tx, account, "device_added", device.at).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn change_phone(
    db: &Db,
    account: AccountId,
    phone: &PhoneNumber,
    at: Timestamp,
) -> Result<()> {
    let mut tx = db.pool.begin().await?;
    let r = sqlx::query("UPDATE accounts SET phone = $1 WHERE id = $2")
        .bind(phone.e164())
        .bind(uuid_text(account.0))
        .execute(&mut *tx)
        .await
        .map_err(conflict_on_unique("phone"))?;
    if r.rows_affected() != 1 {
        return Err(StoreError::NotFound("account"));
    }
    sqlx::query("DELETE FROM pseudonyms WHERE account_id = $1")
        .bind(uuid_text(account.0))
        .execute(&mut *tx)
        .await?;
    enqueue_feed(&mut tx, account, "number_changed", at).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn account(db: &Db, id: AccountId) -> Result<Option<Account>> {
    sqlx::query("SELECT * FROM accounts WHERE id = $1")
        .bind(uuid_text(id.0))
        .fetch_optional(&db.pool)
        .await?
        .as_ref()
        .map(account_row)
        .transpose()
}

pub(super) async fn account_by_phone(db: &Db, phone: &PhoneNumber) -> Result<Option<Account>> {
    sqlx::query("SELECT * FROM accounts WHERE phone = $1")
        .bind(phone.e164())
        .fetch_optional(&db.pool)
        .await?
        .as_ref()
        .map(account_row)
        .transpose()
}

pub(super) async fn devices(db: &Db, account: AccountId) -> Result<Vec<Device>> {
    let rows = sqlx::query("SELECT * FROM devices WHERE account_id = $1 ORDER BY created_at, id")
        .bind(uuid_text(account.0))
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Device {
                id: DeviceId(parse_uuid(&r.try_get::<String, _>("id")?)?),
                account,
                info: json(&r.try_get::<String, _>("info")?, "device info")?,
                created_at: Timestamp(r.try_get("created_at")?),
                last_seen_at: Timestamp(r.try_get("last_seen_at")?),
            })
        })
        .collect()
}

pub(super) async fn authenticate(
    db: &Db,
    token: &TokenHash,
    now: Timestamp,
) -> Result<Option<(AccountId, DeviceId)>> {
    let row = sqlx::query("SELECT id, account_id, last_seen_at FROM devices WHERE token_hash = $1")
        .bind(token.0.to_vec())
        .fetch_optional(&db.pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let device = DeviceId(parse_uuid(&row.try_get::<String, _>("id")?)?);
    let account = AccountId(parse_uuid(&row.try_get::<String, _>("account_id")?)?);
    let last_seen: i64 = row.try_get("last_seen_at")?;
    // Coarse (one minute) so that authenticating is not a write per request.
    if now.0 - last_seen > 60_000 {
        sqlx::query("UPDATE devices SET last_seen_at = $1 WHERE id = $2")
            .bind(now.0)
            .bind(uuid_text(device.0))
            .execute(&db.pool)
            .await?;
    }
    Ok(Some((account, device)))
}

pub(super) async fn delete_account(
    db: &Db,
    account: AccountId,
    expected_rev: i64,
    record: &LedgerRecord,
) -> Result<()> {
    let mut tx = db.pool.begin().await?;
    append(&mut tx, std::slice::from_ref(record)).await?;
    sqlx::query("DELETE FROM pseudonyms WHERE account_id = $1")
        .bind(uuid_text(account.0))
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO pending_revocations (device_id, account_id, since) \
         SELECT id, account_id, $2 FROM devices WHERE account_id = $1 \
         ON CONFLICT (device_id) DO NOTHING",
    )
    .bind(uuid_text(account.0))
    .bind(record.at.0)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM devices WHERE account_id = $1")
        .bind(uuid_text(account.0))
        .execute(&mut *tx)
        .await?;
    let r = sqlx::query("DELETE FROM accounts WHERE id = $1 AND consent_rev = $2")
        .bind(uuid_text(account.0))
        .bind(expected_rev)
        .execute(&mut *tx)
        .await?;
    if r.rows_affected() != 1 {
        return Err(StoreError::Conflict("consent_rev"));
    }
    enqueue_feed(&mut tx, account, "account_deleted", record.at).await?;
    tx.commit().await?;
    Ok(())
}
