//! The messenger's store: policies, the consent ledger, accounts, devices
//! and pending phone verifications.
//!
//! Every change to consent is written in one transaction with the ledger
//! entries that record it, so the ledger and the live state never drift.
//! The ledger is sharded by account: appends to one shard are serialised
//! by a write to that shard's head row (`ledger_shards`), which every
//! appending transaction performs first, in ascending shard order (a row
//! lock in PostgreSQL, the write lock in SQLite). No row is written by
//! every consent change.
//!
//! One public trait, [`MessengerStore`], and one SQL implementation,
//! [`SqlMessengerStore`]. This file holds both, and the trait impl, whose
//! every method calls the function of the same name in the file of its
//! concern:
//!
//! - `policies.rs`: publishing a policy version, the policy history.
//! - `verifications.rs`: pending phone verifications
//!   ([`PendingVerification`]) and the per-number count of code requests.
//! - `accounts.rs`: accounts, devices and their bearer tokens
//!   ([`Account`], [`Device`], [`NewDevice`]): creation, added devices,
//!   number changes, authentication, deletion.
//! - `consent.rs`: consent changes and the ledger: appends (used by every
//!   file that writes ledger entries), group-committed consent changes
//!   ([`ConsentWrite`]), shard heads, pages, an account's entries, and
//!   the messenger's signed checkpoints.
//! - `pseudonyms.rs`: pseudonyms ([`PseudonymId`]) by purpose and key
//!   version, the contact-discovery prefix buckets ([`PrefixBucket`],
//!   [`PseudonymId::prefix16`]).
//! - `feed.rs`: the coordination feed's transactional outbox (queued by
//!   the other files' writes), what the partner holds ([`PartnerHolding`],
//!   [`FeedDue`], [`FeedStats`]), and the credential revocations still
//!   owed to the key service.

mod accounts;
mod consent;
mod feed;
mod policies;
mod pseudonyms;
mod verifications;

pub use accord_domain::pseudonym::PrefixBucket;
pub use accounts::{Account, Device, NewDevice};
pub use consent::ConsentWrite;
pub use feed::{FeedDue, FeedStats, PartnerHolding};
pub use verifications::{
    AttemptClaim, CodeRequest, PendingVerification, RequestCounts, CODE_REQUEST_LOCK,
};

use crate::db::{Backend, Db};
use crate::error::Result;
use accord_crypto::oprf::{KeyVersion, OprfPurpose};
use accord_crypto::token::TokenHash;
use accord_domain::consent::ConsentState;
use accord_domain::ledger::{Hash, LedgerEntry, LedgerRecord};
use accord_domain::policy::{PolicyDraft, PolicyHistory, PolicyVersion};
use accord_domain::transparency::SignedCheckpoint;
use accord_domain::{AccountId, DeviceId, PhoneNumber, PseudonymId, Timestamp};
use async_trait::async_trait;
use uuid::Uuid;

#[async_trait]
pub trait MessengerStore: Send + Sync + std::fmt::Debug + 'static {
    // --- policies ---
    /// Publishes the draft as the next version and appends its ledger entry.
    async fn publish_policy(&self, draft: PolicyDraft, at: Timestamp) -> Result<PolicyVersion>;
    async fn policies(&self) -> Result<PolicyHistory>;

    // --- verifications ---
    async fn put_verification(&self, v: &PendingVerification) -> Result<()>;
    async fn verification(&self, id: Uuid) -> Result<Option<PendingVerification>>;
    /// Counts an attempt on verification `id` before its code is
    /// compared, atomically: only while it is unexpired at `now` and has
    /// fewer than `max` attempts.
    async fn claim_attempt(&self, id: Uuid, now: Timestamp, max: u32) -> Result<AttemptClaim>;
    /// Removes verification `id`; `true` for the one caller that did, so
    /// that a code is used by exactly one successful verify.
    async fn consume_verification(&self, id: Uuid) -> Result<bool>;
    async fn delete_verification(&self, id: Uuid) -> Result<()>;
    /// Records a request for a code, and returns how many were requested
    /// since `since` (this one included) for the same number, from the
    /// same client address, for the same prefix, and in all. Concurrent
    /// requests count each other. Records outlive the codes themselves,
    /// so using or burning a code never resets a count.
    async fn record_code_request(
        &self,
        request: &CodeRequest<'_>,
        since: Timestamp,
    ) -> Result<RequestCounts>;
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
    /// Group commit of [`MessengerStore::record_consent`]s: one
    /// transaction, one result per write, in order (a stale revision
    /// fails that write alone).
    async fn record_consents(&self, writes: &[ConsentWrite]) -> Result<Vec<Result<()>>>;
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
        pseudonym: &PseudonymId,
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
    /// are `prefix` (big-endian): one contact-discovery prefix bucket.
    async fn pseudonym_bucket(
        &self,
        purpose: OprfPurpose,
        version: KeyVersion,
        prefix: PrefixBucket,
    ) -> Result<Vec<PseudonymId>>;
    /// The account's pseudonym under (`purpose`, `version`), if computed.
    async fn pseudonym_of(
        &self,
        account: AccountId,
        purpose: OprfPurpose,
        version: KeyVersion,
    ) -> Result<Option<PseudonymId>>;
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
    /// Every shard's head, by shard: `(shard, entries, last hash)`.
    async fn ledger_heads(&self) -> Result<Vec<(u16, u64, Hash)>>;
    /// Entries of `shard` with `seq > after`, in order, at most `limit`.
    async fn ledger_page(&self, shard: u16, after: u64, limit: u32) -> Result<Vec<LedgerEntry>>;
    /// Entries naming `account`, and every policy publication, with their
    /// shards, by time.
    async fn ledger_for_account(&self, account: AccountId) -> Result<Vec<(u16, LedgerEntry)>>;
    /// Keeps a checkpoint the messenger signed (idempotent per shard and size).
    async fn put_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<()>;
    /// The newest kept checkpoint of every shard that has one.
    async fn latest_checkpoints(&self) -> Result<Vec<SignedCheckpoint>>;
}

/// The SQL implementation, on SQLite or PostgreSQL.
/// Applies the messenger database's migrations (its accounts, ledger and
/// feed, and the mailbox tables of `SqlMailboxStore`, in one numbered
/// sequence per backend).
pub(crate) async fn migrate(db: &Db) -> Result<()> {
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
    Ok(())
}

#[derive(Clone, Debug)]
pub struct SqlMessengerStore {
    db: Db,
}

impl SqlMessengerStore {
    /// Wraps an open database and applies the messenger's migrations.
    pub async fn new(db: Db) -> Result<Self> {
        migrate(&db).await?;
        Ok(SqlMessengerStore { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

#[async_trait]
impl MessengerStore for SqlMessengerStore {
    async fn publish_policy(&self, draft: PolicyDraft, at: Timestamp) -> Result<PolicyVersion> {
        policies::publish_policy(&self.db, draft, at).await
    }

    async fn policies(&self) -> Result<PolicyHistory> {
        policies::policies(&self.db).await
    }

    async fn put_verification(&self, v: &PendingVerification) -> Result<()> {
        verifications::put_verification(&self.db, v).await
    }

    async fn verification(&self, id: Uuid) -> Result<Option<PendingVerification>> {
        verifications::verification(&self.db, id).await
    }

    async fn claim_attempt(&self, id: Uuid, now: Timestamp, max: u32) -> Result<AttemptClaim> {
        verifications::claim_attempt(&self.db, id, now, max).await
    }

    async fn consume_verification(&self, id: Uuid) -> Result<bool> {
        verifications::consume_verification(&self.db, id).await
    }

    async fn delete_verification(&self, id: Uuid) -> Result<()> {
        verifications::delete_verification(&self.db, id).await
    }

    async fn record_code_request(
        &self,
        request: &CodeRequest<'_>,
        since: Timestamp,
    ) -> Result<RequestCounts> {
        verifications::record_code_request(&self.db, request, since).await
    }

    async fn purge_verifications(&self, now: Timestamp, requests_before: Timestamp) -> Result<u64> {
        verifications::purge_verifications(&self.db, now, requests_before).await
    }

    async fn create_account(
        &self,
        id: AccountId,
        phone: &PhoneNumber,
        consent: &ConsentState,
        device: &NewDevice,
        records: &[LedgerRecord],
    ) -> Result<()> {
        accounts::create_account(&self.db, id, phone, consent, device, records).await
    }

    async fn add_device(&self, account: AccountId, device: &NewDevice) -> Result<()> {
        accounts::add_device(&self.db, account, device).await
    }

    async fn change_phone(
        &self,
        account: AccountId,
        phone: &PhoneNumber,
        at: Timestamp,
    ) -> Result<()> {
        accounts::change_phone(&self.db, account, phone, at).await
    }

    async fn account(&self, id: AccountId) -> Result<Option<Account>> {
        accounts::account(&self.db, id).await
    }

    async fn account_by_phone(&self, phone: &PhoneNumber) -> Result<Option<Account>> {
        accounts::account_by_phone(&self.db, phone).await
    }

    async fn devices(&self, account: AccountId) -> Result<Vec<Device>> {
        accounts::devices(&self.db, account).await
    }

    async fn authenticate(
        &self,
        token: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<(AccountId, DeviceId)>> {
        accounts::authenticate(&self.db, token, now).await
    }

    async fn record_consent(
        &self,
        account: AccountId,
        expected_rev: i64,
        consent: &ConsentState,
        records: &[LedgerRecord],
    ) -> Result<()> {
        consent::record_consent(&self.db, account, expected_rev, consent, records).await
    }

    async fn record_consents(&self, writes: &[ConsentWrite]) -> Result<Vec<Result<()>>> {
        consent::record_consents(&self.db, writes).await
    }

    async fn delete_account(
        &self,
        account: AccountId,
        expected_rev: i64,
        record: &LedgerRecord,
    ) -> Result<()> {
        accounts::delete_account(&self.db, account, expected_rev, record).await
    }

    async fn put_pseudonym(
        &self,
        account: AccountId,
        purpose: OprfPurpose,
        version: KeyVersion,
        pseudonym: &PseudonymId,
    ) -> Result<()> {
        pseudonyms::put_pseudonym(&self.db, account, purpose, version, pseudonym).await
    }

    async fn accounts_missing_pseudonym(
        &self,
        purpose: OprfPurpose,
        version: KeyVersion,
        limit: u32,
    ) -> Result<Vec<(AccountId, PhoneNumber)>> {
        pseudonyms::accounts_missing_pseudonym(&self.db, purpose, version, limit).await
    }

    async fn pseudonym_bucket(
        &self,
        purpose: OprfPurpose,
        version: KeyVersion,
        prefix: PrefixBucket,
    ) -> Result<Vec<PseudonymId>> {
        pseudonyms::pseudonym_bucket(&self.db, purpose, version, prefix).await
    }

    async fn pseudonym_of(
        &self,
        account: AccountId,
        purpose: OprfPurpose,
        version: KeyVersion,
    ) -> Result<Option<PseudonymId>> {
        pseudonyms::pseudonym_of(&self.db, account, purpose, version).await
    }

    async fn drop_other_pseudonym_versions(
        &self,
        purpose: OprfPurpose,
        keep: KeyVersion,
    ) -> Result<u64> {
        pseudonyms::drop_other_pseudonym_versions(&self.db, purpose, keep).await
    }

    async fn drop_pseudonyms(&self, account: AccountId) -> Result<()> {
        pseudonyms::drop_pseudonyms(&self.db, account).await
    }

    async fn pending_revocations(&self, limit: u32) -> Result<Vec<(DeviceId, AccountId)>> {
        feed::pending_revocations(&self.db, limit).await
    }

    async fn revocation_done(&self, device: DeviceId) -> Result<()> {
        feed::revocation_done(&self.db, device).await
    }

    async fn feed_enqueue(&self, account: AccountId, reason: &str, at: Timestamp) -> Result<()> {
        feed::feed_enqueue(&self.db, account, reason, at).await
    }

    async fn feed_due(&self, now: Timestamp, limit: u32) -> Result<Vec<FeedDue>> {
        feed::feed_due(&self.db, now, limit).await
    }

    async fn partner_holding(&self, account: AccountId) -> Result<Option<PartnerHolding>> {
        feed::partner_holding(&self.db, account).await
    }

    async fn partner_holdings(
        &self,
        after: Option<AccountId>,
        limit: u32,
    ) -> Result<Vec<(AccountId, PartnerHolding)>> {
        feed::partner_holdings(&self.db, after, limit).await
    }

    async fn feed_delivered(
        &self,
        account: AccountId,
        upto: i64,
        holding: Option<&PartnerHolding>,
        records: &[LedgerRecord],
        at: Timestamp,
    ) -> Result<()> {
        feed::feed_delivered(&self.db, account, upto, holding, records, at).await
    }

    async fn feed_postpone(&self, account: AccountId, retry_at: Timestamp) -> Result<()> {
        feed::feed_postpone(&self.db, account, retry_at).await
    }

    async fn feed_stats(&self) -> Result<FeedStats> {
        feed::feed_stats(&self.db).await
    }

    async fn ledger_heads(&self) -> Result<Vec<(u16, u64, Hash)>> {
        consent::ledger_heads(&self.db).await
    }

    async fn ledger_page(&self, shard: u16, after: u64, limit: u32) -> Result<Vec<LedgerEntry>> {
        consent::ledger_page(&self.db, shard, after, limit).await
    }

    async fn ledger_for_account(&self, account: AccountId) -> Result<Vec<(u16, LedgerEntry)>> {
        consent::ledger_for_account(&self.db, account).await
    }

    async fn put_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<()> {
        consent::put_checkpoint(&self.db, checkpoint).await
    }

    async fn latest_checkpoints(&self) -> Result<Vec<SignedCheckpoint>> {
        consent::latest_checkpoints(&self.db).await
    }
}
