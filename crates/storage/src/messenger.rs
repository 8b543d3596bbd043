//! The messenger's store: policies, the consent ledger, accounts, devices
//! and pending phone verifications.
//!
//! Every change to consent is written in one transaction with the ledger
//! entries that record it, so the ledger and the live state never drift.
//! Ledger appends are serialised by a write to the single `ledger_head`
//! row, which every appending transaction performs first (a row lock in
//! PostgreSQL, the write lock in SQLite).

use crate::db::{Backend, Db};
use crate::error::{Result, StoreError};
use crate::sql::{bytes32, conflict_on_unique, json, parse_uuid, uuid_text};
use accord_crypto::oprf::{KeyVersion, OprfPurpose};
use accord_crypto::token::TokenHash;
use accord_domain::consent::ConsentState;
use accord_domain::ledger::{Hash, LedgerEntry, LedgerRecord};
use accord_domain::policy::{ConsentProfile, PolicyDraft, PolicyHistory, PolicyVersion, Purpose};
use accord_domain::{AccountId, DeviceId, DeviceInfo, LedgerEvent, PhoneNumber, Timestamp};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use std::collections::BTreeSet;
use uuid::Uuid;

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

/// What the partner holds of one account, as last confirmed by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartnerHolding {
    pub pseudonym: [u8; 32],
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
}

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

#[async_trait]
pub trait MessengerStore: Send + Sync + std::fmt::Debug + 'static {
    // --- policies ---
    /// Publishes the draft as the next version and appends its ledger entry.
    async fn publish_policy(&self, draft: PolicyDraft, at: Timestamp) -> Result<PolicyVersion>;
    async fn policies(&self) -> Result<PolicyHistory>;

    // --- verifications ---
    async fn put_verification(&self, v: &PendingVerification) -> Result<()>;
    async fn verification(&self, id: Uuid) -> Result<Option<PendingVerification>>;
    /// Counts one failed attempt; returns the new count.
    async fn count_failed_attempt(&self, id: Uuid) -> Result<u32>;
    async fn delete_verification(&self, id: Uuid) -> Result<()>;
    /// Records that a code was requested for `phone` at `at`, and returns
    /// how many were requested since `since` (this one included). Records
    /// outlive the codes themselves, so using or burning a code never
    /// resets the count.
    async fn count_code_request(
        &self,
        phone: &PhoneNumber,
        at: Timestamp,
        since: Timestamp,
    ) -> Result<u32>;
    /// Removes expired verifications and code requests older than
    /// `requests_before`; returns how many verifications went.
    async fn purge_verifications(&self, now: Timestamp, requests_before: Timestamp) -> Result<u64>;

    // --- accounts and devices ---
    /// Creates an account with its first device, and appends `records`
    /// (registration, acceptance, grants) to the ledger, atomically.
    /// `Conflict("phone")` if the number already has an account.
    async fn create_account(
        &self,
        id: AccountId,
        phone: &PhoneNumber,
        consent: &ConsentState,
        device: &NewDevice,
        records: &[LedgerRecord],
    ) -> Result<()>;
    async fn add_device(&self, account: AccountId, device: &NewDevice) -> Result<()>;
    /// Moves `account` to `phone`: drops its pseudonyms (recomputed for
    /// the new number) and queues feed work, atomically.
    /// `Conflict("phone")` if the number has an account.
    async fn change_phone(
        &self,
        account: AccountId,
        phone: &PhoneNumber,
        at: Timestamp,
    ) -> Result<()>;
    async fn account(&self, id: AccountId) -> Result<Option<Account>>;
    async fn account_by_phone(&self, phone: &PhoneNumber) -> Result<Option<Account>>;
    async fn devices(&self, account: AccountId) -> Result<Vec<Device>>;
    /// The device a bearer token belongs to, touching its `last_seen_at`.
    async fn authenticate(
        &self,
        token: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<(AccountId, DeviceId)>>;

    // --- consent ---
    /// Stores a new consent state with the ledger records that caused it.
    /// `Conflict("consent_rev")` if `expected_rev` is stale.
    async fn record_consent(
        &self,
        account: AccountId,
        expected_rev: i64,
        consent: &ConsentState,
        records: &[LedgerRecord],
    ) -> Result<()>;
    /// Erases the account, its devices and tokens, and appends `record`;
    /// the devices' key-service credentials become pending revocations.
    async fn delete_account(
        &self,
        account: AccountId,
        expected_rev: i64,
        record: &LedgerRecord,
    ) -> Result<()>;

    // --- pseudonyms ---
    /// Stores `account`'s pseudonym under (`purpose`, `version`), replacing
    /// any earlier one for that pair. `NotFound` if the account is gone.
    async fn put_pseudonym(
        &self,
        account: AccountId,
        purpose: OprfPurpose,
        version: KeyVersion,
        pseudonym: &[u8; 32],
    ) -> Result<()>;
    /// Up to `limit` accounts that have no pseudonym under
    /// (`purpose`, `version`) yet, with their numbers.
    async fn accounts_missing_pseudonym(
        &self,
        purpose: OprfPurpose,
        version: KeyVersion,
        limit: u32,
    ) -> Result<Vec<(AccountId, PhoneNumber)>>;
    /// The pseudonyms under (`purpose`, `version`) whose first two bytes
    /// are `prefix` (big-endian): one contact-discovery bucket.
    async fn pseudonym_bucket(
        &self,
        purpose: OprfPurpose,
        version: KeyVersion,
        prefix: u16,
    ) -> Result<Vec<[u8; 32]>>;
    /// The account's pseudonym under (`purpose`, `version`), if computed.
    async fn pseudonym_of(
        &self,
        account: AccountId,
        purpose: OprfPurpose,
        version: KeyVersion,
    ) -> Result<Option<[u8; 32]>>;
    /// Drops the pseudonyms of `purpose` under every version but `keep`
    /// (after re-pseudonymisation under a rotated key); returns how many.
    async fn drop_other_pseudonym_versions(
        &self,
        purpose: OprfPurpose,
        keep: KeyVersion,
    ) -> Result<u64>;
    /// Drops every pseudonym of `account` (its number changed).
    async fn drop_pseudonyms(&self, account: AccountId) -> Result<()>;
    /// Key-service credentials of deleted devices not yet confirmed
    /// revoked (written by [`MessengerStore::delete_account`]), oldest
    /// first, at most `limit`: (device, its account).
    async fn pending_revocations(&self, limit: u32) -> Result<Vec<(DeviceId, AccountId)>>;
    /// The key service confirmed the revocation of `device`'s credential.
    async fn revocation_done(&self, device: DeviceId) -> Result<()>;

    // --- coordination feed ---
    /// Queues feed work for `account` (the deadline sweep, resyncs).
    async fn feed_enqueue(&self, account: AccountId, reason: &str, at: Timestamp) -> Result<()>;
    /// Accounts whose feed work is due at `now`, oldest first.
    async fn feed_due(&self, now: Timestamp, limit: u32) -> Result<Vec<FeedDue>>;
    /// What the partner holds of `account`.
    async fn partner_holding(&self, account: AccountId) -> Result<Option<PartnerHolding>>;
    /// Every holding, by account, after `after` (paging), at most `limit`.
    async fn partner_holdings(
        &self,
        after: Option<AccountId>,
        limit: u32,
    ) -> Result<Vec<(AccountId, PartnerHolding)>>;
    /// Records a confirmed delivery, atomically: the new holding (`None`:
    /// the partner holds nothing), the ledger records (propagations,
    /// deletion confirmations), and removal of the account's outbox rows
    /// up to `upto`.
    async fn feed_delivered(
        &self,
        account: AccountId,
        upto: i64,
        holding: Option<&PartnerHolding>,
        records: &[LedgerRecord],
        at: Timestamp,
    ) -> Result<()>;
    /// A failed delivery: count the attempt, try again at `retry_at`.
    async fn feed_postpone(&self, account: AccountId, retry_at: Timestamp) -> Result<()>;
    async fn feed_stats(&self) -> Result<FeedStats>;

    // --- ledger ---
    /// `(entries, last hash)`.
    async fn ledger_head(&self) -> Result<(u64, Hash)>;
    /// Entries with `seq > after`, in order, at most `limit`.
    async fn ledger_page(&self, after: u64, limit: u32) -> Result<Vec<LedgerEntry>>;
    /// Entries naming `account`, and every policy publication, in order.
    async fn ledger_for_account(&self, account: AccountId) -> Result<Vec<LedgerEntry>>;
}

/// The SQL implementation, on SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub struct SqlMessengerStore {
    db: Db,
}

impl SqlMessengerStore {
    /// Wraps an open database and applies the messenger's migrations.
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
        Ok(SqlMessengerStore { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// Appends records after locking the head. Must be the first write of
/// `tx` (see the module docs).
async fn append(tx: &mut Transaction<'_, Any>, records: &[LedgerRecord]) -> Result<()> {
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

/// The contact-discovery bucket of a pseudonym: its first two bytes.
pub fn prefix_of(p: &[u8; 32]) -> u16 {
    u16::from_be_bytes([p[0], p[1]])
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

fn policy_row(r: &AnyRow) -> Result<PolicyVersion> {
    let purposes: BTreeSet<Purpose> =
        json(&r.try_get::<String, _>("purposes")?, "policy purposes")?;
    let profile: ConsentProfile = r
        .try_get::<String, _>("profile")?
        .parse()
        .map_err(|_| StoreError::Corrupt("policy profile".into()))?;
    Ok(PolicyVersion {
        version: r.try_get::<i64, _>("version")? as u32,
        text: r.try_get("text")?,
        text_sha256: r.try_get("text_sha256")?,
        purposes,
        profile,
        published_at: Timestamp(r.try_get("published_at")?),
        accept_by: Timestamp(r.try_get("accept_by")?),
    })
}

fn holding_row(r: &AnyRow) -> Result<PartnerHolding> {
    Ok(PartnerHolding {
        pseudonym: bytes32(r.try_get("pseudonym")?, "hash")?,
        key_version: KeyVersion(r.try_get::<i64, _>("key_version")? as u32),
        purposes: json(&r.try_get::<String, _>("purposes")?, "held purposes")?,
    })
}

/// Queues feed work for `account` inside `tx` (transactional outbox).
async fn enqueue_feed(
    tx: &mut Transaction<'_, Any>,
    account: AccountId,
    reason: &str,
    at: Timestamp,
) -> Result<()> {
    sqlx::query("INSERT INTO feed_outbox (account_id, reason, created_at, attempts, next_attempt_at) VALUES ($1, $2, $3, 0, $3)")
        .bind(uuid_text(account.0))
        .bind(reason)
        .bind(at.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
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

#[async_trait]
impl MessengerStore for SqlMessengerStore {
    async fn publish_policy(&self, draft: PolicyDraft, at: Timestamp) -> Result<PolicyVersion> {
        let mut tx = self.db.pool.begin().await?;
        // Lock the ledger head first: publications are serialised with every append.
        sqlx::query("UPDATE ledger_head SET seq = seq WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let next: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM policies")
            .fetch_one(&mut *tx)
            .await?;
        let version = next.map_or(1, |v| v as u32 + 1);
        let p = draft.publish(version, at);
        sqlx::query(
            "INSERT INTO policies (version, text, text_sha256, purposes, profile, published_at, accept_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(p.version as i64)
        .bind(&p.text)
        .bind(&p.text_sha256)
        .bind(serde_json::to_string(&p.purposes).expect("purposes serialise"))
        .bind(p.profile.as_str())
        .bind(p.published_at.0)
        .bind(p.accept_by.0)
        .execute(&mut *tx)
        .await?;
        append(
            &mut tx,
            &[LedgerRecord {
                at,
                account: None,
                event: LedgerEvent::PolicyPublished {
                    version: p.version,
                    text_sha256: p.text_sha256.clone(),
                    purposes: p.purposes.clone(),
                    profile: p.profile,
                    published_at: p.published_at,
                    accept_by: p.accept_by,
                },
            }],
        )
        .await?;
        tx.commit().await?;
        Ok(p)
    }

    async fn policies(&self) -> Result<PolicyHistory> {
        let rows = sqlx::query("SELECT * FROM policies ORDER BY version")
            .fetch_all(&self.db.pool)
            .await?;
        Ok(PolicyHistory::new(
            rows.iter().map(policy_row).collect::<Result<_>>()?,
        ))
    }

    async fn put_verification(&self, v: &PendingVerification) -> Result<()> {
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
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    async fn verification(&self, id: Uuid) -> Result<Option<PendingVerification>> {
        sqlx::query("SELECT * FROM verifications WHERE id = $1")
            .bind(uuid_text(id))
            .fetch_optional(&self.db.pool)
            .await?
            .as_ref()
            .map(verification_row)
            .transpose()
    }

    async fn count_failed_attempt(&self, id: Uuid) -> Result<u32> {
        let n: Option<i64> = sqlx::query_scalar(
            "UPDATE verifications SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts",
        )
        .bind(uuid_text(id))
        .fetch_optional(&self.db.pool)
        .await?;
        n.map(|n| n as u32)
            .ok_or(StoreError::NotFound("verification"))
    }

    async fn delete_verification(&self, id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM verifications WHERE id = $1")
            .bind(uuid_text(id))
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    async fn count_code_request(
        &self,
        phone: &PhoneNumber,
        at: Timestamp,
        since: Timestamp,
    ) -> Result<u32> {
        let mut tx = self.db.pool.begin().await?;
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

    async fn purge_verifications(&self, now: Timestamp, requests_before: Timestamp) -> Result<u64> {
        let r = sqlx::query("DELETE FROM verifications WHERE expires_at <= $1")
            .bind(now.0)
            .execute(&self.db.pool)
            .await?;
        sqlx::query("DELETE FROM code_requests WHERE at < $1")
            .bind(requests_before.0)
            .execute(&self.db.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn create_account(
        &self,
        id: AccountId,
        phone: &PhoneNumber,
        consent: &ConsentState,
        device: &NewDevice,
        records: &[LedgerRecord],
    ) -> Result<()> {
        let mut tx = self.db.pool.begin().await?;
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

    async fn add_device(&self, account: AccountId, device: &NewDevice) -> Result<()> {
        let mut tx = self.db.pool.begin().await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT consent_rev FROM accounts WHERE id = $1")
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

    async fn change_phone(
        &self,
        account: AccountId,
        phone: &PhoneNumber,
        at: Timestamp,
    ) -> Result<()> {
        let mut tx = self.db.pool.begin().await?;
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

    async fn account(&self, id: AccountId) -> Result<Option<Account>> {
        sqlx::query("SELECT * FROM accounts WHERE id = $1")
            .bind(uuid_text(id.0))
            .fetch_optional(&self.db.pool)
            .await?
            .as_ref()
            .map(account_row)
            .transpose()
    }

    async fn account_by_phone(&self, phone: &PhoneNumber) -> Result<Option<Account>> {
        sqlx::query("SELECT * FROM accounts WHERE phone = $1")
            .bind(phone.e164())
            .fetch_optional(&self.db.pool)
            .await?
            .as_ref()
            .map(account_row)
            .transpose()
    }

    async fn devices(&self, account: AccountId) -> Result<Vec<Device>> {
        let rows =
            sqlx::query("SELECT * FROM devices WHERE account_id = $1 ORDER BY created_at, id")
                .bind(uuid_text(account.0))
                .fetch_all(&self.db.pool)
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

    async fn authenticate(
        &self,
        token: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<(AccountId, DeviceId)>> {
        let row =
            sqlx::query("SELECT id, account_id, last_seen_at FROM devices WHERE token_hash = $1")
                .bind(token.0.to_vec())
                .fetch_optional(&self.db.pool)
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
                .execute(&self.db.pool)
                .await?;
        }
        Ok(Some((account, device)))
    }

    async fn record_consent(
        &self,
        account: AccountId,
        expected_rev: i64,
        consent: &ConsentState,
        records: &[LedgerRecord],
    ) -> Result<()> {
        let mut tx = self.db.pool.begin().await?;
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

    async fn delete_account(
        &self,
        account: AccountId,
        expected_rev: i64,
        record: &LedgerRecord,
    ) -> Result<()> {
        let mut tx = self.db.pool.begin().await?;
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

    async fn put_pseudonym(
        &self,
        account: AccountId,
        purpose: OprfPurpose,
        version: KeyVersion,
        pseudonym: &[u8; 32],
    ) -> Result<()> {
        let mut tx = self.db.pool.begin().await?;
        sqlx::query(
            "DELETE FROM pseudonyms WHERE account_id = $1 AND purpose = $2 AND key_version = $3",
        )
        .bind(uuid_text(account.0))
        .bind(purpose.as_str())
        .bind(version.0 as i64)
        .execute(&mut *tx)
        .await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT consent_rev FROM accounts WHERE id = $1")
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
        .bind(pseudonym.to_vec())
        .bind(prefix_of(pseudonym) as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn accounts_missing_pseudonym(
        &self,
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
        .fetch_all(&self.db.pool)
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

    async fn pseudonym_bucket(
        &self,
        purpose: OprfPurpose,
        version: KeyVersion,
        prefix: u16,
    ) -> Result<Vec<[u8; 32]>> {
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT pseudonym FROM pseudonyms WHERE purpose = $1 AND key_version = $2 AND prefix = $3 ORDER BY pseudonym",
        )
        .bind(purpose.as_str())
        .bind(version.0 as i64)
        .bind(prefix as i64)
        .fetch_all(&self.db.pool)
        .await?;
        rows.into_iter().map(|v| bytes32(v, "hash")).collect()
    }

    async fn pseudonym_of(
        &self,
        account: AccountId,
        purpose: OprfPurpose,
        version: KeyVersion,
    ) -> Result<Option<[u8; 32]>> {
        let row: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT pseudonym FROM pseudonyms WHERE account_id = $1 AND purpose = $2 AND key_version = $3",
        )
        .bind(uuid_text(account.0))
        .bind(purpose.as_str())
        .bind(version.0 as i64)
        .fetch_optional(&self.db.pool)
        .await?;
        row.map(|v| bytes32(v, "hash")).transpose()
    }

    async fn drop_other_pseudonym_versions(
        &self,
        purpose: OprfPurpose,
        keep: KeyVersion,
    ) -> Result<u64> {
        let r = sqlx::query("DELETE FROM pseudonyms WHERE purpose = $1 AND key_version <> $2")
            .bind(purpose.as_str())
            .bind(keep.0 as i64)
            .execute(&self.db.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn drop_pseudonyms(&self, account: AccountId) -> Result<()> {
        sqlx::query("DELETE FROM pseudonyms WHERE account_id = $1")
            .bind(uuid_text(account.0))
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    async fn pending_revocations(&self, limit: u32) -> Result<Vec<(DeviceId, AccountId)>> {
        let rows = sqlx::query(
            "SELECT device_id, account_id FROM pending_revocations \
             ORDER BY since, device_id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.db.pool)
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

    async fn revocation_done(&self, device: DeviceId) -> Result<()> {
        sqlx::query("DELETE FROM pending_revocations WHERE device_id = $1")
            .bind(uuid_text(device.0))
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    async fn feed_enqueue(&self, account: AccountId, reason: &str, at: Timestamp) -> Result<()> {
        let mut tx = self.db.pool.begin().await?;
        enqueue_feed(&mut tx, account, reason, at).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn feed_due(&self, now: Timestamp, limit: u32) -> Result<Vec<FeedDue>> {
        let rows = sqlx::query(
            "SELECT account_id, MAX(id) AS upto, MIN(created_at) AS oldest, MAX(attempts) AS attempts \
             FROM feed_outbox GROUP BY account_id HAVING MAX(next_attempt_at) <= $1 \
             ORDER BY MIN(id) LIMIT $2",
        )
        .bind(now.0)
        .bind(limit as i64)
        .fetch_all(&self.db.pool)
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

    async fn partner_holding(&self, account: AccountId) -> Result<Option<PartnerHolding>> {
        sqlx::query("SELECT * FROM partner_holdings WHERE account_id = $1")
            .bind(uuid_text(account.0))
            .fetch_optional(&self.db.pool)
            .await?
            .as_ref()
            .map(holding_row)
            .transpose()
    }

    async fn partner_holdings(
        &self,
        after: Option<AccountId>,
        limit: u32,
    ) -> Result<Vec<(AccountId, PartnerHolding)>> {
        let rows = sqlx::query(
            "SELECT * FROM partner_holdings WHERE account_id > $1 ORDER BY account_id LIMIT $2",
        )
        .bind(after.map(|a| uuid_text(a.0)).unwrap_or_default())
        .bind(limit as i64)
        .fetch_all(&self.db.pool)
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

    async fn feed_delivered(
        &self,
        account: AccountId,
        upto: i64,
        holding: Option<&PartnerHolding>,
        records: &[LedgerRecord],
        at: Timestamp,
    ) -> Result<()> {
        let mut tx = self.db.pool.begin().await?;
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
            .bind(h.pseudonym.to_vec())
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

    async fn feed_postpone(&self, account: AccountId, retry_at: Timestamp) -> Result<()> {
        sqlx::query("UPDATE feed_outbox SET attempts = attempts + 1, next_attempt_at = $1 WHERE account_id = $2")
            .bind(retry_at.0)
            .bind(uuid_text(account.0))
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    async fn feed_stats(&self) -> Result<FeedStats> {
        let r = sqlx::query(
            "SELECT COUNT(*) AS events, COUNT(DISTINCT account_id) AS accounts, MIN(created_at) AS oldest, \
             COALESCE(MAX(attempts), 0) AS max_attempts FROM feed_outbox",
        )
        .fetch_one(&self.db.pool)
        .await?;
        let failing: i64 = sqlx::query_scalar(
            "SELECT COUNT(DISTINCT account_id) FROM feed_outbox WHERE attempts > 0",
        )
        .fetch_one(&self.db.pool)
        .await?;
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM partner_holdings")
            .fetch_one(&self.db.pool)
            .await?;
        Ok(FeedStats {
            pending_events: r.try_get::<i64, _>("events")? as u64,
            pending_accounts: r.try_get::<i64, _>("accounts")? as u64,
            oldest_pending_at: r.try_get::<Option<i64>, _>("oldest")?.map(Timestamp),
            failing_accounts: failing as u64,
            max_attempts: r.try_get::<i64, _>("max_attempts")? as u64,
            held_accounts: held as u64,
        })
    }

    async fn ledger_head(&self) -> Result<(u64, Hash)> {
        let row = sqlx::query("SELECT seq, hash FROM ledger_head WHERE id = 1")
            .fetch_one(&self.db.pool)
            .await?;
        Ok((
            row.try_get::<i64, _>(0)? as u64,
            bytes32(row.try_get(1)?, "hash")?,
        ))
    }

    async fn ledger_page(&self, after: u64, limit: u32) -> Result<Vec<LedgerEntry>> {
        let rows = sqlx::query("SELECT * FROM ledger WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after as i64)
            .bind(limit as i64)
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter().map(ledger_row).collect()
    }

    async fn ledger_for_account(&self, account: AccountId) -> Result<Vec<LedgerEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM ledger WHERE account_id = $1 OR kind = 'policy_published' ORDER BY seq",
        )
        .bind(uuid_text(account.0))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(ledger_row).collect()
    }
}
