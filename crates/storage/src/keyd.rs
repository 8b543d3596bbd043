//! The key service's store: sealed OPRF keys, API clients with their
//! per-purpose daily quotas, and usage counters.
//!
//! **Keys** are stored only as [`OprfSecretKey::seal`] output, one row per
//! (purpose, version); exactly one version per purpose is
//! [`KeyState::Active`] (a partial unique index enforces it), older ones are
//! [`KeyState::Previous`] and stay usable by explicit version.
//!
//! **Usage** is one counter per (client, purpose, UTC hour). The same rows
//! serve two purposes:
//!
//! - the **quota window**, the rolling day of [`WINDOW_HOURS`] usage
//!   hours. Its rules ([`check_charge`], [`retry_after_s`]) are pure and
//!   live in [`accord_domain::keyd`], with [`ClientId`] and [`ClientKind`];
//!   they are re-exported here. This module only reads and writes the
//!   usage hours (`usage_hourly`).
//! - the **audit log**: per client and UTC day, how many elements were
//!   evaluated ([`KeyStore::usage_by_day`]). Counts only: no element,
//!   blinded or not, is ever stored.
//!
//! [`KeyStore::charge`] checks and adds in one transaction whose first
//! statement writes the client's row, so a client's charges are serialised
//! (a row lock in PostgreSQL, the write lock in SQLite) and a rejected
//! charge writes nothing.
//!
//! [`OprfSecretKey::seal`]: accord_crypto::oprf::OprfSecretKey::seal

use crate::db::{Backend, Db};
use crate::error::{Result, StoreError};
use crate::sql::conflict_on_unique;
use accord_crypto::oprf::{KeyVersion, OprfPurpose};
use accord_crypto::token::TokenHash;
use accord_domain::time::DAY_MS;
use accord_domain::Timestamp;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::BTreeMap;
use std::fmt;

pub use accord_domain::keyd::{
    check_charge, hour_of, retry_after_s, ClientId, ClientKind, QuotaExceeded, WINDOW_HOURS,
};

/// The largest quota that can be stored (quotas are `BIGINT`).
pub const MAX_QUOTA: u64 = i64::MAX as u64;

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/// Whether a key version is the one used by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Used when a request names no version. One per purpose.
    Active,
    /// Superseded by a rotation; still evaluable by explicit version, so
    /// services can re-pseudonymise their data.
    Previous,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Previous => "previous",
        }
    }
}

/// One key version as stored: sealed, never in the clear.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub purpose: OprfPurpose,
    pub version: KeyVersion,
    /// [`OprfSecretKey::seal`](accord_crypto::oprf::OprfSecretKey::seal)
    /// output, bound to `purpose` and `version`.
    pub sealed: Vec<u8>,
    pub state: KeyState,
    pub created_at: Timestamp,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("purpose", &self.purpose)
            .field("version", &self.version)
            .field("sealed", &format_args!("<{} bytes>", self.sealed.len()))
            .field("state", &self.state)
            .field("created_at", &self.created_at)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// A client to add. The token itself is never given to the store.
#[derive(Clone, Debug)]
pub struct NewClient {
    pub id: ClientId,
    pub name: String,
    pub kind: ClientKind,
    pub token_hash: TokenHash,
    pub created_at: Timestamp,
    /// Elements per rolling day, per purpose. A purpose absent here (or 0)
    /// may not be evaluated by this client.
    pub quotas: BTreeMap<OprfPurpose, u64>,
    /// Clients of one group share one meter (see [`Client::meter`]).
    pub quota_group: Option<ClientId>,
}

/// A client as stored (without its token hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub id: ClientId,
    pub name: String,
    pub kind: ClientKind,
    pub created_at: Timestamp,
    pub quotas: BTreeMap<OprfPurpose, u64>,
    /// The group whose meter this client's evaluations are charged to:
    /// the devices of one messenger account share one, so that a quota is
    /// per person, not per device.
    pub quota_group: Option<ClientId>,
}

impl Client {
    /// Whose usage the client's evaluations count against: its group's,
    /// or its own.
    pub fn meter(&self) -> ClientId {
        self.quota_group.unwrap_or(self.id)
    }

    /// The daily quota for `purpose`; 0 when none is set.
    pub fn quota(&self, purpose: OprfPurpose) -> u64 {
        self.quotas.get(&purpose).copied().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------
// Usage
// ---------------------------------------------------------------------------

/// Why [`KeyStore::charge`] did not charge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChargeError {
    #[error(transparent)]
    QuotaExceeded(#[from] QuotaExceeded),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ChargeError {
    fn from(e: sqlx::Error) -> Self {
        ChargeError::Store(e.into())
    }
}

/// One audit line: how many elements a client had evaluated under a purpose
/// during one UTC day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DailyUsage {
    pub client: ClientId,
    pub purpose: OprfPurpose,
    /// Midnight UTC starting the day.
    pub day: Timestamp,
    pub elements: u64,
}

// ---------------------------------------------------------------------------
// The trait
// ---------------------------------------------------------------------------

#[async_trait]
pub trait KeyStore: Send + Sync + fmt::Debug + 'static {
    // --- keys ---
    /// Every key version of every purpose, ordered by purpose and version.
    async fn keys(&self) -> Result<Vec<StoredKey>>;
    /// Adds `version` of `purpose` as the active version and demotes the
    /// previously active one, atomically. `version` must be one more than
    /// the highest stored version (1 for the first key);
    /// `Conflict("key_version")` otherwise, e.g. when another instance
    /// rotated first.
    async fn add_active_key(
        &self,
        purpose: OprfPurpose,
        version: KeyVersion,
        sealed: &[u8],
        at: Timestamp,
    ) -> Result<StoredKey>;

    // --- clients ---
    /// `Conflict("client")` if the id or token hash is taken.
    async fn create_client(&self, client: &NewClient) -> Result<Client>;
    async fn client(&self, id: ClientId) -> Result<Option<Client>>;
    /// The client whose token hashes to `token`, unless it was revoked.
    async fn client_by_token(&self, token: &TokenHash) -> Result<Option<Client>>;
    /// Revokes a client: its token no longer authenticates. `false` if
    /// there is no such client or it was already revoked.
    async fn revoke_client(&self, id: ClientId, at: Timestamp) -> Result<bool>;
    /// Every client, by creation time.
    async fn clients(&self) -> Result<Vec<Client>>;
    /// Sets a client's daily quota for `purpose` (0 forbids the purpose).
    /// `NotFound("client")` for an unknown client.
    async fn set_quota(&self, client: ClientId, purpose: OprfPurpose, daily: u64) -> Result<()>;

    // --- usage ---
    /// Charges `n` elements to the meter `client` (a client's
    /// [`Client::meter`]: its own id, or its group's) under `purpose` at
    /// `now`, if the rolling day's usage plus `n` stays within `quota`;
    /// otherwise charges nothing and says when to retry. Check and add are
    /// one transaction, serialised per meter.
    async fn charge(
        &self,
        client: ClientId,
        purpose: OprfPurpose,
        n: u64,
        now: Timestamp,
        quota: u64,
    ) -> Result<(), ChargeError>;
    /// Elements charged in the rolling day ending at `now`.
    async fn used(&self, client: ClientId, purpose: OprfPurpose, now: Timestamp) -> Result<u64>;
    /// The audit log: per client, purpose and UTC day, for the days
    /// overlapping `[from, to)`, optionally for one client; ordered by
    /// client, purpose and day.
    async fn usage_by_day(
        &self,
        client: Option<ClientId>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<DailyUsage>>;
}

// ---------------------------------------------------------------------------
// SQL implementation
// ---------------------------------------------------------------------------

/// The SQL implementation, on SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub struct SqlKeyStore {
    db: Db,
}

impl SqlKeyStore {
    /// Wraps an open database and applies the key service's migrations.
    pub async fn new(db: Db) -> Result<Self> {
        match db.backend {
            Backend::Sqlite => {
                sqlx::migrate!("./migrations/keyd/sqlite")
                    .run(&db.pool)
                    .await?
            }
            Backend::Postgres => {
                sqlx::migrate!("./migrations/keyd/postgres")
                    .run(&db.pool)
                    .await?
            }
        }
        Ok(SqlKeyStore { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    async fn quotas_of(&self, id: ClientId) -> Result<BTreeMap<OprfPurpose, u64>> {
        let rows =
            sqlx::query("SELECT purpose, daily_limit FROM client_quotas WHERE client_id = $1")
                .bind(id.to_string())
                .fetch_all(&self.db.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    purpose(&r.try_get::<String, _>(0)?)?,
                    non_negative(r.try_get(1)?)?,
                ))
            })
            .collect()
    }

    async fn with_quotas(&self, row: Option<AnyRow>) -> Result<Option<Client>> {
        let Some(row) = row else { return Ok(None) };
        let mut c = client_row(&row)?;
        c.quotas = self.quotas_of(c.id).await?;
        Ok(Some(c))
    }
}

fn purpose(s: &str) -> Result<OprfPurpose> {
    s.parse()
        .map_err(|_| StoreError::Corrupt("OPRF purpose".into()))
}

fn non_negative(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt("negative count".into()))
}

fn to_i64(v: u64) -> i64 {
    v.min(MAX_QUOTA) as i64
}

fn key_version(v: i64) -> Result<KeyVersion> {
    u32::try_from(v)
        .map(KeyVersion)
        .map_err(|_| StoreError::Corrupt("key version".into()))
}

fn key_row(r: &AnyRow) -> Result<StoredKey> {
    let state = match r.try_get::<String, _>("state")?.as_str() {
        "active" => KeyState::Active,
        "previous" => KeyState::Previous,
        _ => return Err(StoreError::Corrupt("key state".into())),
    };
    Ok(StoredKey {
        purpose: purpose(&r.try_get::<String, _>("purpose")?)?,
        version: key_version(r.try_get("version")?)?,
        sealed: r.try_get("sealed")?,
        state,
        created_at: Timestamp(r.try_get("created_at")?),
    })
}

/// A client row, without its quotas.
fn client_row(r: &AnyRow) -> Result<Client> {
    let id: String = r.try_get("id")?;
    Ok(Client {
        id: ClientId::parse(&id).ok_or_else(|| StoreError::Corrupt("client id".into()))?,
        name: r.try_get("name")?,
        kind: r
            .try_get::<String, _>("kind")?
            .parse()
            .map_err(|_| StoreError::Corrupt("client kind".into()))?,
        created_at: Timestamp(r.try_get("created_at")?),
        quotas: BTreeMap::new(),
        quota_group: r
            .try_get::<Option<String>, _>("quota_group")?
            .map(|g| ClientId::parse(&g).ok_or_else(|| StoreError::Corrupt("quota group".into())))
            .transpose()?,
    })
}

const CLIENT_COLUMNS: &str = "id, name, kind, created_at, quota_group";

#[async_trait]
impl KeyStore for SqlKeyStore {
    async fn keys(&self) -> Result<Vec<StoredKey>> {
        let rows = sqlx::query("SELECT purpose, version, sealed, state, created_at FROM oprf_keys ORDER BY purpose, version")
            .fetch_all(&self.db.pool)
            .await?;
        let mut keys = rows.iter().map(key_row).collect::<Result<Vec<_>>>()?;
        keys.sort_by_key(|k| (k.purpose, k.version));
        Ok(keys)
    }

    async fn add_active_key(
        &self,
        purpose: OprfPurpose,
        version: KeyVersion,
        sealed: &[u8],
        at: Timestamp,
    ) -> Result<StoredKey> {
        let mut tx = self.db.pool.begin().await?;
        // A write first: takes SQLite's write lock, and in PostgreSQL the
        // row lock of the active version, so rotations are serialised.
        sqlx::query(
            "UPDATE oprf_keys SET state = 'previous' WHERE purpose = $1 AND state = 'active'",
        )
        .bind(purpose.as_str())
        .execute(&mut *tx)
        .await?;
        let max: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM oprf_keys WHERE purpose = $1")
                .bind(purpose.as_str())
                .fetch_one(&mut *tx)
                .await?;
        if i64::from(version.0) != max.unwrap_or(0) + 1 {
            return Err(StoreError::Conflict("key_version"));
        }
        sqlx::query("INSERT INTO oprf_keys (purpose, version, sealed, state, created_at) VALUES ($1, $2, $3, 'active', $4)")
            .bind(purpose.as_str())
            .bind(i64::from(version.0))
            .bind(sealed.to_vec())
            .bind(at.0)
            .execute(&mut *tx)
            .await
            .map_err(conflict_on_unique("key_version"))?;
        tx.commit().await?;
        Ok(StoredKey {
            purpose,
            version,
            sealed: sealed.to_vec(),
            state: KeyState::Active,
            created_at: at,
        })
    }

    async fn create_client(&self, c: &NewClient) -> Result<Client> {
        let mut tx = self.db.pool.begin().await?;
        sqlx::query("INSERT INTO clients (id, name, kind, token_hash, created_at, quota_group) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(c.id.to_string())
            .bind(&c.name)
            .bind(c.kind.as_str())
            .bind(c.token_hash.0.to_vec())
            .bind(c.created_at.0)
            .bind(c.quota_group.map(|g| g.to_string()))
            .execute(&mut *tx)
            .await
            .map_err(conflict_on_unique("client"))?;
        for (p, daily) in &c.quotas {
            sqlx::query(
                "INSERT INTO client_quotas (client_id, purpose, daily_limit) VALUES ($1, $2, $3)",
            )
            .bind(c.id.to_string())
            .bind(p.as_str())
            .bind(to_i64(*daily))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Client {
            id: c.id,
            name: c.name.clone(),
            kind: c.kind,
            created_at: c.created_at,
            quotas: c
                .quotas
                .iter()
                .map(|(p, q)| (*p, (*q).min(MAX_QUOTA)))
                .collect(),
            quota_group: c.quota_group,
        })
    }

    async fn client(&self, id: ClientId) -> Result<Option<Client>> {
        let row = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.db.pool)
        .await?;
        self.with_quotas(row).await
    }

    async fn client_by_token(&self, token: &TokenHash) -> Result<Option<Client>> {
        let row = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM clients WHERE token_hash = $1 AND revoked_at IS NULL"
        ))
        .bind(token.0.to_vec())
        .fetch_optional(&self.db.pool)
        .await?;
        self.with_quotas(row).await
    }

    async fn revoke_client(&self, id: ClientId, at: Timestamp) -> Result<bool> {
        let n =
            sqlx::query("UPDATE clients SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id.to_string())
                .bind(at.0)
                .execute(&self.db.pool)
                .await?
                .rows_affected();
        Ok(n == 1)
    }

    async fn clients(&self) -> Result<Vec<Client>> {
        let rows = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM clients ORDER BY created_at, id"
        ))
        .fetch_all(&self.db.pool)
        .await?;
        let mut clients = rows.iter().map(client_row).collect::<Result<Vec<_>>>()?;
        let quotas = sqlx::query("SELECT client_id, purpose, daily_limit FROM client_quotas")
            .fetch_all(&self.db.pool)
            .await?;
        let mut by_client: BTreeMap<String, BTreeMap<OprfPurpose, u64>> = BTreeMap::new();
        for r in &quotas {
            by_client.entry(r.try_get(0)?).or_default().insert(
                purpose(&r.try_get::<String, _>(1)?)?,
                non_negative(r.try_get(2)?)?,
            );
        }
        for c in &mut clients {
            c.quotas = by_client.remove(&c.id.to_string()).unwrap_or_default();
        }
        Ok(clients)
    }

    async fn set_quota(&self, client: ClientId, purpose: OprfPurpose, daily: u64) -> Result<()> {
        let mut tx = self.db.pool.begin().await?;
        // Write the client's row first, as `charge` does: serialised with charges.
        let r = sqlx::query("UPDATE clients SET last_charge_at = last_charge_at WHERE id = $1")
            .bind(client.to_string())
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() != 1 {
            return Err(StoreError::NotFound("client"));
        }
        sqlx::query(
            "INSERT INTO client_quotas (client_id, purpose, daily_limit) VALUES ($1, $2, $3) \
             ON CONFLICT (client_id, purpose) DO UPDATE SET daily_limit = excluded.daily_limit",
        )
        .bind(client.to_string())
        .bind(purpose.as_str())
        .bind(to_i64(daily))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn charge(
        &self,
        client: ClientId,
        purpose: OprfPurpose,
        n: u64,
        now: Timestamp,
        quota: u64,
    ) -> Result<(), ChargeError> {
        let mut tx = self.db.pool.begin().await?;
        // The meter's row first: charges of one meter (a client, or a
        // group of them) are serialised, on either backend.
        sqlx::query(
            "INSERT INTO meters (meter_id, last_charge_at) VALUES ($1, $2) \
             ON CONFLICT (meter_id) DO UPDATE SET last_charge_at = excluded.last_charge_at",
        )
        .bind(client.to_string())
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        // (After the write above: a read first would make this a read
        // transaction that SQLite cannot always upgrade.)
        let known: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM clients WHERE id = $1 OR quota_group = $1 LIMIT 1")
                .bind(client.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if known.is_none() {
            return Err(StoreError::NotFound("client").into());
        }
        let hour = hour_of(now);
        let rows = sqlx::query("SELECT hour, elements FROM usage_hourly WHERE client_id = $1 AND purpose = $2 AND hour > $3")
            .bind(client.to_string())
            .bind(purpose.as_str())
            .bind(hour - WINDOW_HOURS)
            .fetch_all(&mut *tx)
            .await?;
        let buckets = rows
            .iter()
            .map(|r| Ok((r.try_get::<i64, _>(0)?, non_negative(r.try_get(1)?)?)))
            .collect::<Result<Vec<_>>>()?;
        // Dropping `tx` on refusal rolls back: nothing is charged.
        check_charge(&buckets, quota, n, now)?;
        sqlx::query(
            "INSERT INTO usage_hourly (client_id, purpose, hour, elements) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (client_id, purpose, hour) DO UPDATE SET elements = usage_hourly.elements + excluded.elements",
        )
        .bind(client.to_string())
        .bind(purpose.as_str())
        .bind(hour)
        .bind(to_i64(n))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn used(&self, client: ClientId, purpose: OprfPurpose, now: Timestamp) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(elements), 0) AS BIGINT) FROM usage_hourly \
             WHERE client_id = $1 AND purpose = $2 AND hour > $3",
        )
        .bind(client.to_string())
        .bind(purpose.as_str())
        .bind(hour_of(now) - WINDOW_HOURS)
        .fetch_one(&self.db.pool)
        .await?;
        non_negative(n)
    }

    async fn usage_by_day(
        &self,
        client: Option<ClientId>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<DailyUsage>> {
        // Whole UTC days overlapping [from, to), as usage hours.
        let first_hour = from.0.div_euclid(DAY_MS) * 24;
        let end_day = to.0.div_euclid(DAY_MS) + i64::from(to.0.rem_euclid(DAY_MS) != 0);
        let end_hour = end_day * 24;
        let sql = format!(
            "SELECT client_id, purpose, hour / 24 AS day, CAST(SUM(elements) AS BIGINT) AS elements \
             FROM usage_hourly WHERE hour >= $1 AND hour < $2 {} GROUP BY client_id, purpose, hour / 24",
            if client.is_some() { "AND client_id = $3" } else { "" }
        );
        let mut q = sqlx::query(&sql).bind(first_hour).bind(end_hour);
        if let Some(c) = client {
            q = q.bind(c.to_string());
        }
        let rows = q.fetch_all(&self.db.pool).await?;
        let mut out = rows
            .iter()
            .map(|r| {
                let id: String = r.try_get("client_id")?;
                Ok(DailyUsage {
                    client: ClientId::parse(&id)
                        .ok_or_else(|| StoreError::Corrupt("client id".into()))?,
                    purpose: purpose(&r.try_get::<String, _>("purpose")?)?,
                    day: Timestamp(r.try_get::<i64, _>("day")? * DAY_MS),
                    elements: non_negative(r.try_get("elements")?)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|u| (u.client, u.purpose, u.day));
        Ok(out)
    }
}
