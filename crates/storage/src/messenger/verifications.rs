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

/// What an attempt to use a verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptClaim {
    /// The attempt is counted (`attempts` includes it): compare the code.
    Counted(PendingVerification),
    /// Every allowed attempt has been used.
    Exhausted,
    /// No such verification, or it expired (or was used).
    Gone,
}

/// Counts an attempt before any comparison, in one statement: only a
/// verification that is unexpired and has attempts left is counted, so
/// N concurrent attempts never compare more than `max` codes.
pub(super) async fn claim_attempt(
    db: &Db,
    id: Uuid,
    now: Timestamp,
    max: u32,
) -> Result<AttemptClaim> {
    let row = sqlx::query(
        "UPDATE verifications SET attempts = attempts + 1 \
         WHERE id = $1 AND expires_at > $2 AND attempts < $3 \
         RETURNING id, phone, salt, code_digest, created_at, expires_at, attempts",
    )
    .bind(uuid_text(id))
    .bind(now.0)
    .bind(i64::from(max))
    .fetch_optional(&db.pool)
    .await?;
    if let Some(r) = row {
        return Ok(AttemptClaim::Counted(verification_row(&r)?));
    }
    Ok(match verification(db, id).await? {
        Some(v) if v.expires_at > now => AttemptClaim::Exhausted,
        _ => AttemptClaim::Gone,
    })
}

/// Uses a verification up: `true` for the one caller that removed it.
pub(super) async fn consume_verification(db: &Db, id: Uuid) -> Result<bool> {
    let r = sqlx::query("DELETE FROM verifications WHERE id = $1")
        .bind(uuid_text(id))
        .execute(&db.pool)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub(super) async fn delete_verification(db: &Db, id: Uuid) -> Result<()> {
    sqlx::query("DELETE FROM verifications WHERE id = $1")
        .bind(uuid_text(id))
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// One request for a code.
#[derive(Clone, Debug)]
pub struct CodeRequest<'a> {
    pub phone: &'a PhoneNumber,
    /// The client's address as the messenger saw it, when known.
    pub client: Option<&'a str>,
    /// The number's prefix: country code and carrier range.
    pub prefix: &'a str,
    pub at: Timestamp,
}

/// Code requests since a given instant, this one included, by what they
/// share with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub number: u32,
    /// 0 when the client's address is unknown.
    pub client: u32,
    pub prefix: u32,
    pub all: u32,
}

/// PostgreSQL: the advisory lock that serialises code requests, so that
/// concurrent requests count each other (a transaction that inserts and
/// then counts would not see another's uncommitted row). SQLite has one
/// writer and needs none.
pub const CODE_REQUEST_LOCK: i64 = 0x6163_636f_7264_2e63;

pub(super) async fn record_code_request(
    db: &Db,
    r: &CodeRequest<'_>,
    since: Timestamp,
) -> Result<RequestCounts> {
    let mut tx = db.pool.begin().await?;
    if db.backend == crate::db::Backend::Postgres {
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS locked")
            .bind(CODE_REQUEST_LOCK)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("INSERT INTO code_requests (phone, client, prefix, at) VALUES ($1, $2, $3, $4)")
        .bind(r.phone.e164())
        .bind(r.client)
        .bind(r.prefix)
        .bind(r.at.0)
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query(
        "SELECT \
           CAST(COALESCE(SUM(CASE WHEN phone = $2 THEN 1 ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN client = $3 THEN 1 ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN prefix = $4 THEN 1 ELSE 0 END), 0) AS BIGINT), \
           CAST(COUNT(*) AS BIGINT) \
         FROM code_requests WHERE at >= $1",
    )
    .bind(since.0)
    .bind(r.phone.e164())
    .bind(r.client)
    .bind(r.prefix)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let n = |i: usize| -> Result<u32> {
        Ok(row.try_get::<i64, _>(i)?.clamp(0, i64::from(u32::MAX)) as u32)
    };
    Ok(RequestCounts {
        number: n(0)?,
        client: if r.client.is_some() { n(1)? } else { 0 },
        prefix: n(2)?,
        all: n(3)?,
    })
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
