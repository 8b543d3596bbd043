//! Pending phone verifications (codes stored as salted HMACs) and the
//! per-number count of code requests.

use crate::db::Db;
use crate::error::{Result, StoreError};
use crate::sql::{parse_uuid, uuid_text};
use accord_domain::{PhoneNumber, Timestamp};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

/// A verification code sent to a phone, stored as a salted HMAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingVerification {
    pub id: Uuid,
    pub phone: PhoneNumber,
    pub salt: Vec<u8>,
    pub code_digest: Vec<u8>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub attempts: u32,
}

fn verification_row(r: &AnyRow) -> Result<PendingVerification> {
    let phone: String = r.try_get("phone")?;
    Ok(PendingVerification {
        id: parse_uuid(&r.try_get::<String, _>("id")?)?,
        phone: PhoneNumber::from_e164(&phone)
            .map_err(|_| StoreError::Corrupt("stored phone number".into()))?,
        salt: r.try_get("salt")?,
        code_digest: r.try_get("code_digest")?,
        created_at: Timestamp(r.try_get("created_at")?),
        expires_at: Timestamp(r.try_get("expires_at")?),
        attempts: r.try_get::<i64, _>("attempts")? as u32,
    })
}

pub(super) async fn put_verification(db: &Db, v: &PendingVerification) -> Result<()> {
    sqlx::query(
        "INSERT INTO verifications (id, phone, salt, code_digest, created_at, expires_at, attempts) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(uuid_text(v.id))
    .bind(v.phone.e164())
    .bind(v.salt.clone())
    .bind(v.code_digest.clone())
    .bind(v.created_at.0)
    .bind(v.expires_at.0)
    .bind(v.attempts as i64)
    .execute(&db.pool)
    .await?;
    Ok(())
}

pub(super) async fn verification(db: &Db, id: Uuid) -> Result<Option<PendingVerification>> {
    sqlx::query("SELECT * FROM verifications WHERE id = $1")
        .bind(uuid_text(id))
        .fetch_optional(&db.pool)
        .await?
        .as_ref()
        .map(verification_row)
        .transpose()
}

pub(super) async fn count_failed_attempt(db: &Db, id: Uuid) -> Result<u32> {
    let n: Option<i64> = sqlx::query_scalar(
        "UPDATE verifications SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts",
    )
    .bind(uuid_text(id))
    .fetch_optional(&db.pool)
    .await?;
    n.map(|n| n as u32)
        .ok_or(StoreError::NotFound("verification"))
}

pub(super) async fn delete_verification(db: &Db, id: Uuid) -> Result<()> {
    sqlx::query("DELETE FROM verifications WHERE id = $1")
        .bind(uuid_text(id))
        .execute(&db.pool)
        .await?;
    Ok(())
}

pub(super) async fn count_code_request(
    db: &Db,
    phone: &PhoneNumber,
    at: Timestamp,
    since: Timestamp,
) -> Result<u32> {
    let mut tx = db.pool.begin().await?;
    sqlx::query("INSERT INTO code_requests (phone, at) VALUES ($1, $2)")
        .bind(phone.e164())
        .bind(at.0)
        .execute(&mut *tx)
        .await?;
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM code_requests WHERE phone = $1 AND at >= $2")
            .bind(phone.e164())
            .bind(since.0)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(n as u32)
}

pub(super) async fn purge_verifications(
    db: &Db,
    now: Timestamp,
    requests_before: Timestamp,
) -> Result<u64> {
    let r = sqlx::query("DELETE FROM verifications WHERE expires_at <= $1")
        .bind(now.0)
        .execute(&db.pool)
        .await?;
    sqlx::query("DELETE FROM code_requests WHERE at < $1")
        .bind(requests_before.0)
        .execute(&db.pool)
        .await?;
    Ok(r.rows_affected())
}
