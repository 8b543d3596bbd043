//! Pseudonyms by (purpose, key version): storing, finding the accounts
//! still missing one, contact-discovery prefix buckets, dropping old
//! versions.

use crate::db::Db;
use crate::error::{Result, StoreError};
use crate::sql::{parse_uuid, pseudonym as pseudonym_col, uuid_text};
use accord_crypto::oprf::{KeyVersion, OprfPurpose};
use accord_domain::pseudonym::PrefixBucket;
use accord_domain::{AccountId, PhoneNumber, PseudonymId};
use sqlx::Row;

pub(super) async fn put_pseudonym(
    db: &Db,
    account: AccountId,
    purpose: OprfPurpose,
    version: KeyVersion,
    pseudonym: &PseudonymId,
) -> Result<()> {
    let mut tx = db.pool.begin().await?;
    sqlx::query(
        "DELETE FROM pseudonyms WHERE account_id = $1 AND purpose = $2 AND key_version = $3",
    )
    .bind(uuid_text(account.0))
    .bind(purpose.as_str())
    .bind(version.0 as i64)
    .execute(&mut *tx)
    .await?;
    let exists: Option<i64> = sqlx::query_scalar("SELECT consent_rev FROM accounts WHERE id = $1")
        .bind(uuid_text(account.0))
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Err(StoreError::NotFound("account"));
    }
    sqlx::query(
        "INSERT INTO pseudonyms (account_id, purpose, key_version, pseudonym, prefix) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(uuid_text(account.0))
    .bind(purpose.as_str())
    .bind(version.0 as i64)
    .bind(pseudonym.as_bytes().to_vec())
    .bind(pseudonym.prefix16() as i64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn accounts_missing_pseudonym(
    db: &Db,
    purpose: OprfPurpose,
    version: KeyVersion,
    limit: u32,
) -> Result<Vec<(AccountId, PhoneNumber)>> {
    let rows = sqlx::query(
        "SELECT a.id, a.phone FROM accounts a WHERE NOT EXISTS (\
           SELECT 1 FROM pseudonyms p WHERE p.account_id = a.id AND p.purpose = $1 AND p.key_version = $2) \
         ORDER BY a.id LIMIT $3",
    )
    .bind(purpose.as_str())
    .bind(version.0 as i64)
    .bind(limit as i64)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let phone: String = r.try_get("phone")?;
            Ok((
                AccountId(parse_uuid(&r.try_get::<String, _>("id")?)?),
                PhoneNumber::from_e164(&phone)
                    .map_err(|_| StoreError::Corrupt("stored phone number".into()))?,
            ))
        })
        .collect()
}

pub(super) async fn pseudonym_bucket(
    db: &Db,
    purpose: OprfPurpose,
    version: KeyVersion,
    prefix: PrefixBucket,
) -> Result<Vec<PseudonymId>> {
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT pseudonym FROM pseudonyms WHERE purpose = $1 AND key_version = $2 AND prefix = $3 ORDER BY pseudonym",
    )
    .bind(purpose.as_str())
    .bind(version.0 as i64)
    .bind(prefix as i64)
    .fetch_all(&db.pool)
    .await?;
    rows.into_iter().map(|v| pseudonym_col(v, "hash")).collect()
}

pub(super) async fn pseudonym_of(
    db: &Db,
    account: AccountId,
    purpose: OprfPurpose,
    version: KeyVersion,
) -> Result<Option<PseudonymId>> {
    let row: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT pseudonym FROM pseudonyms WHERE account_id = $1 AND purpose = $2 AND key_version = $3",
    )
    .bind(uuid_text(account.0))
    .bind(purpose.as_str())
    .bind(version.0 as i64)
    .fetch_optional(&db.pool)
    .await?;
    row.map(|v| pseudonym_col(v, "hash")).transpose()
}

pub(super) async fn drop_other_pseudonym_versions(
    db: &Db,
    purpose: OprfPurpose,
    keep: KeyVersion,
) -> Result<u64> {
    let r = sqlx::query("DELETE FROM pseudonyms WHERE purpose = $1 AND key_version <> $2")
        .bind(purpose.as_str())
        .bind(keep.0 as i64)
        .execute(&db.pool)
        .await?;
    Ok(r.rows_affected())
}

pub(super) async fn drop_pseudonyms(db: &Db, account: AccountId) -> Result<()> {
    sqlx::query("DELETE FROM pseudonyms WHERE account_id = $1")
        .bind(uuid_text(account.0))
        .execute(&db.pool)
        .await?;
    Ok(())
}
