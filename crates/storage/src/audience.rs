//! Custom audiences in the partner's database (issue 13): advertisers
//! (token hashes), audiences with their size's release state, uploads of
//! customer-list uploads, their matched rows (candidates) until
//! completed, members, campaigns and impressions.
//!
//! The match itself is the partner's (`accord_partner::matching`): it
//! holds the eligible set in memory, read from here one pseudonym-prefix
//! partition at a time ([`AudienceStore::eligible_partition`]) and read
//! again when triggers mark a partition changed
//! ([`AudienceStore::take_dirty`], migration `0006`). It probes each
//! upload batch on arrival and stages only the matched rows
//! ([`AudienceStore::stage_batch`], which keeps those that are still
//! eligible in its own transaction); completion makes them members
//! ([`AudienceStore::finish_upload`]). On PostgreSQL the member table is
//! partitioned by the same prefix (migration `0005`).
//!
//! **Architecture invariants:** an uploaded pseudonym that matches no one
//! is never written; a candidate or a member is a person's phone
//! pseudonym and nothing else, and is always eligible: every change that
//! ends a person's eligibility deletes theirs in its own transaction
//! (`crate::partner::drop_ineligible`).

use crate::db::{Backend, Db};
use crate::error::{Result, StoreError};
use crate::sql::{conflict_on_unique, json, parse_uuid, uuid_text};
use accord_domain::audience::report::DpState;
use accord_domain::{PseudonymId, Timestamp};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

/// An advertiser: a business known to the partner's ad side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advertiser {
    pub id: Uuid,
    pub name: String,
    pub created_at: Timestamp,
}

/// An audience, as its advertiser may see it (no true size).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audience {
    pub id: Uuid,
    pub advertiser_id: Uuid,
    pub name: String,
    pub size: DpState,
    pub created_at: Timestamp,
}

/// An upload in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    pub id: Uuid,
    pub audience_id: Uuid,
    /// Batches declared at its start.
    pub batches: u64,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// Its match started.
    pub matching_since: Option<Timestamp>,
    /// Its match is done: the answer (JSON) kept for the advertiser.
    pub result: Option<String>,
}

/// A matched row of an upload in progress and the member it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub row: u64,
    pub member: PseudonymId,
}

/// A campaign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Campaign {
    pub id: Uuid,
    pub advertiser_id: Uuid,
    pub audience_id: Uuid,
    pub title: String,
    pub body: String,
    pub link: String,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub reach: DpState,
    pub impressions: DpState,
    pub released_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// Counts the partner keeps to itself (operator metrics): never shown to
/// an advertiser without noise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AudienceStats {
    pub advertisers: u64,
    pub audiences: u64,
    pub members: u64,
    pub open_uploads: u64,
    /// Matched rows of uploads not yet completed.
    pub candidates: u64,
    pub campaigns: u64,
}

#[async_trait]
pub trait AudienceStore: Send + Sync + std::fmt::Debug + 'static {
    async fn create_advertiser(&self, a: &Advertiser, token_hash: &[u8; 32]) -> Result<()>;
    async fn advertiser_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<Advertiser>>;

    /// `Conflict("audience")` if the advertiser has one of that name.
    async fn create_audience(&self, a: &Audience) -> Result<()>;
    async fn audience(&self, advertiser: Uuid, name: &str) -> Result<Option<Audience>>;
    async fn audience_by_id(&self, id: Uuid) -> Result<Option<Audience>>;
    async fn audiences(&self, advertiser: Uuid) -> Result<Vec<Audience>>;
    /// The audience's true size (for the release, never shown as such).
    async fn member_count(&self, audience: Uuid) -> Result<u64>;
    /// Stores a size release state.
    /// Replaces the size's release state `old` with `new`; `false` (and
    /// nothing written) if it is no longer `old`: another release won,
    /// and this one must be drawn again from the new state (so that no
    /// spent ε is ever lost, on any number of nodes).
    async fn set_size_release(&self, audience: Uuid, old: &DpState, new: &DpState) -> Result<bool>;
    /// Keeps the advertiser's answer on a matched upload.
    async fn set_upload_result(&self, upload: Uuid, result: &str) -> Result<()>;

    async fn start_upload(&self, u: &Upload) -> Result<()>;
    async fn upload(&self, id: Uuid) -> Result<Option<Upload>>;
    /// Stages batch `seq` of `upload`: its `rows` rows were probed, and
    /// `candidates` are those that matched. Only the candidates still
    /// eligible when the transaction commits are kept (the probe's index
    /// may lag a change by a moment; consent never does). Idempotent: a
    /// batch that arrived already is not staged twice (`false`).
    async fn stage_batch(
        &self,
        upload: Uuid,
        seq: u64,
        rows: u64,
        candidates: &[Candidate],
    ) -> Result<bool>;
    /// Batches staged so far, and their rows.
    async fn staged(&self, upload: Uuid) -> Result<(u64, u64)>;
    /// Takes the marks of partitions whose eligible entries changed since
    /// they were last taken (distinct first bytes). A partition read after
    /// its mark was taken is current up to the next mark.
    async fn take_dirty(&self) -> Result<Vec<u8>>;
    /// Commits made through this process's pool since it opened that may
    /// have changed the eligible set (the partner store counts them): when
    /// this has not moved since marks were last taken, only another
    /// process can have marked a partition since.
    fn eligible_writes(&self) -> u64;
    /// The eligible set's partition `prefix`: each pseudonym (a phone or
    /// an email) of a person with ad consent, and the member it names
    /// (the person's phone pseudonym). Eligible: a partner user with ad
    /// personalisation on; anyone whose phone pseudonym is held for
    /// `ads` (coordinated, linked or not), with their partner user's
    /// email too.
    async fn eligible_partition(&self, prefix: u8) -> Result<Vec<(PseudonymId, PseudonymId)>>;
    /// Marks the upload's match as started: `false` if it had started
    /// already (one match an upload), `NotFound` if it is gone.
    async fn begin_match(&self, upload: Uuid, at: Timestamp) -> Result<bool>;
    /// Makes the upload's candidates members of its audience (distinct
    /// people), deletes everything staged of the upload and marks it
    /// matched (its row stays, for the advertiser's answer), in one
    /// transaction. Returns the matched rows. `NotFound` if the upload is
    /// gone or matched already.
    async fn finish_upload(&self, upload: Uuid, at: Timestamp) -> Result<u64>;
    /// Deletes an upload and what it staged, unmatched.
    async fn discard_upload(&self, upload: Uuid) -> Result<bool>;
    /// Discards uploads that expired before `now`.
    async fn purge_uploads(&self, now: Timestamp) -> Result<u64>;

    async fn create_campaign(&self, c: &Campaign) -> Result<()>;
    async fn campaign(&self, id: Uuid) -> Result<Option<Campaign>>;
    async fn campaigns(&self, advertiser: Uuid) -> Result<Vec<Campaign>>;
    /// Stores the campaign's release states.
    /// Replaces the campaign's release states `old` (reach,
    /// impressions) with `new`, at `at`; `false` if another release won.
    async fn set_campaign_release(
        &self,
        id: Uuid,
        old: (&DpState, &DpState),
        new: (&DpState, &DpState),
        at: Timestamp,
    ) -> Result<bool>;
    /// True reach (distinct users) and impressions of a campaign.
    async fn campaign_counts(&self, id: Uuid) -> Result<(u64, u64)>;
    /// The running campaigns (at `now`) whose audience holds `member`,
    /// with one impression recorded for `user` on each, in one
    /// transaction.
    async fn serve_ads(
        &self,
        member: &PseudonymId,
        user: Uuid,
        now: Timestamp,
    ) -> Result<Vec<Campaign>>;
    async fn stats(&self) -> Result<AudienceStats>;
}

/// The SQL implementation, in the partner's database (its migrations
/// run with [`crate::partner::SqlPartnerStore::new`]).
#[derive(Clone, Debug)]
pub struct SqlAudienceStore {
    db: Db,
}

impl SqlAudienceStore {
    /// Over the partner's database, migrated by `SqlPartnerStore::new`.
    pub fn new(db: Db) -> Self {
        SqlAudienceStore { db }
    }
}

/// The bounds of partition `prefix`: `[prefix]` ≤ p < `[prefix + 1]`
/// (no upper bound for 255), as byte strings compared like `memcmp`.
fn bounds(prefix: u8) -> (Vec<u8>, Vec<u8>) {
    let hi = if prefix == u8::MAX {
        vec![0xff; 33]
    } else {
        vec![prefix + 1]
    };
    (vec![prefix], hi)
}

fn audience_row(r: &AnyRow) -> Result<Audience> {
    Ok(Audience {
        id: parse_uuid(&r.try_get::<String, _>("id")?)?,
        advertiser_id: parse_uuid(&r.try_get::<String, _>("advertiser_id")?)?,
        name: r.try_get("name")?,
        size: json(&r.try_get::<String, _>("size_dp")?, "size release")?,
        created_at: Timestamp(r.try_get("created_at")?),
    })
}

fn campaign_row(r: &AnyRow) -> Result<Campaign> {
    Ok(Campaign {
        id: parse_uuid(&r.try_get::<String, _>("id")?)?,
        advertiser_id: parse_uuid(&r.try_get::<String, _>("advertiser_id")?)?,
        audience_id: parse_uuid(&r.try_get::<String, _>("audience_id")?)?,
        title: r.try_get("title")?,
        body: r.try_get("body")?,
        link: r.try_get("link")?,
        starts_at: Timestamp(r.try_get("starts_at")?),
        ends_at: Timestamp(r.try_get("ends_at")?),
        reach: json(&r.try_get::<String, _>("reach_dp")?, "reach release")?,
        impressions: json(
            &r.try_get::<String, _>("impressions_dp")?,
            "impressions release",
        )?,
        released_at: r.try_get::<Option<i64>, _>("released_at")?.map(Timestamp),
        created_at: Timestamp(r.try_get("created_at")?),
    })
}

fn upload_row(r: &AnyRow) -> Result<Upload> {
    Ok(Upload {
        id: parse_uuid(&r.try_get::<String, _>("id")?)?,
        audience_id: parse_uuid(&r.try_get::<String, _>("audience_id")?)?,
        batches: r.try_get::<i64, _>("batches")?.max(0) as u64,
        created_at: Timestamp(r.try_get("created_at")?),
        expires_at: Timestamp(r.try_get("expires_at")?),
        matching_since: r
            .try_get::<Option<i64>, _>("matching_since")?
            .map(Timestamp),
        result: r.try_get("result")?,
    })
}

fn state_json(s: &DpState) -> Result<String> {
    serde_json::to_string(s).map_err(|e| StoreError::Corrupt(format!("release state: {e}")))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

/// Decodes an aggregated hex text (either case) of records of `record`
/// bytes each. Reading a partition as one aggregated row rather than one
/// row a pseudonym is what makes the match's scan fast: the per-row cost
/// of the driver (a row allocated and sent between threads) is paid once.
fn unhex_all(text: &str, record: usize) -> Result<Vec<u8>> {
    let b = text.as_bytes();
    if !b.len().is_multiple_of(2 * record) {
        return Err(corrupt("aggregated pseudonyms"));
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(corrupt("aggregated pseudonyms")),
    };
    b.chunks_exact(2)
        .map(|p| Ok((nibble(p[0])? << 4) | nibble(p[1])?))
        .collect()
}

fn count(v: i64) -> u64 {
    v.max(0) as u64
}

/// Deletes an upload and its staged rows. On SQLite the connection
/// overwrites deleted content (`secure_delete`), so that no uploaded
/// pseudonym lingers in free pages; see [`scrub`] for the WAL.
async fn delete_upload_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    id: &str,
) -> Result<bool> {
    delete_staged_in(tx, backend, id).await?;
    let r = sqlx::query("DELETE FROM audience_uploads WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Deletes what an upload staged (its candidates and batch records).
async fn delete_staged_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    id: &str,
) -> Result<()> {
    if backend == Backend::Sqlite {
        sqlx::query("PRAGMA secure_delete = ON")
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("DELETE FROM audience_candidates WHERE upload_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM audience_upload_batches WHERE upload_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// After a deletion of uploaded pseudonyms: SQLite copies the WAL back
/// and truncates it (best effort: a long reader can delay it to the next
/// deletion), so the deleted pages' old images leave the WAL file too;
/// PostgreSQL vacuums the staging table (its dead tuples are otherwise
/// kept until autovacuum).
async fn scrub(db: &Db) {
    let sql = match db.backend {
        Backend::Sqlite => "PRAGMA wal_checkpoint(TRUNCATE)",
        Backend::Postgres => "VACUUM audience_candidates",
    };
    if let Err(e) = sqlx::query(sql).execute(&db.pool).await {
        tracing::warn!(error = %e, "the staging table was not scrubbed after a deletion");
    }
}

/// Whether `e` is PostgreSQL's `deadlock_detected` (40P01).
fn is_deadlock(e: &StoreError) -> bool {
    matches!(e, StoreError::Backend(sqlx::Error::Database(d)) if d.code().as_deref() == Some("40P01"))
}

impl SqlAudienceStore {
    async fn try_stage_batch(
        &self,
        id: &str,
        seq: u64,
        rows: u64,
        candidates: &[Candidate],
    ) -> Result<bool> {
        // SQLite: one writer at a time without the busy handler's sleeps.
        let _gate = match self.db.backend {
            Backend::Sqlite => Some(self.db.write_gate().await),
            Backend::Postgres => None,
        };
        let mut tx = self.db.pool.begin().await?;
        // The batch row first: a write, so concurrent stagings of one
        // batch serialise, and a repeated batch stops here. On SQLite it
        // also takes the write lock: no change of eligibility can commit
        // between the check below and this commit.
        let r = sqlx::query(
            "INSERT INTO audience_upload_batches (upload_id, seq, row_count) VALUES ($1, $2, $3) \
             ON CONFLICT (upload_id, seq) DO NOTHING",
        )
        .bind(id)
        .bind(seq as i64)
        .bind(rows as i64)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 0 {
            tx.commit().await?;
            return Ok(false);
        }
        let since: Option<Option<i64>> =
            sqlx::query_scalar("SELECT matching_since FROM audience_uploads WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        match since {
            None => return Err(StoreError::NotFound("upload")),
            Some(Some(_)) => return Err(StoreError::Conflict("upload_matching")),
            Some(None) => {}
        }
        if candidates.is_empty() {
            tx.commit().await?;
            return Ok(true);
        }
        // One statement for the batch: its candidates as one JSON array
        // of [row, prefix, member in hex] (binding four parameters a row
        // costs the driver ten times more than the database's work), and
        // only those still eligible are kept. The index that found them
        // may lag a change by a moment; consent never does.
        // In the member's order, so that the member index is written in
        // order rather than at random.
        let mut sorted: Vec<&Candidate> = candidates.iter().collect();
        sorted.sort_unstable_by_key(|c| c.member);
        let json = serde_json::to_string(
            &sorted
                .iter()
                .map(|c| (c.row, c.member.as_bytes()[0], c.member.to_hex()))
                .collect::<Vec<_>>(),
        )
        .map_err(|e| StoreError::Corrupt(format!("candidates: {e}")))?;
        let insert = match self.db.backend {
            Backend::Sqlite => {
                "INSERT INTO audience_candidates (upload_id, row_no, prefix, member) \
                 SELECT $1, json_extract(c.value, '$[0]'), json_extract(c.value, '$[1]'), c.m \
                 FROM (SELECT value, unhex(json_extract(value, '$[2]')) AS m FROM json_each($2)) c \
                 WHERE EXISTS (SELECT 1 FROM records r WHERE r.pseudonym = c.m AND r.purpose = 'ads') \
                 OR EXISTS (SELECT 1 FROM partner_users u \
                     WHERE u.phone_pseudonym = c.m AND u.ads_personalisation = 1)"
            }
            Backend::Postgres => {
                // Read committed: first lock what makes these candidates
                // eligible, so that a withdrawal either waits for this
                // commit (and then drops them) or committed before the
                // insert's check (which then sees it).
                for lock in [
                    "SELECT 1 FROM records WHERE purpose = 'ads' AND pseudonym IN \
                     (SELECT decode(e->>2, 'hex') FROM jsonb_array_elements($1::jsonb) e) \
                     ORDER BY pseudonym FOR SHARE",
                    "SELECT 1 FROM partner_users WHERE ads_personalisation = 1 AND phone_pseudonym IN \
                     (SELECT decode(e->>2, 'hex') FROM jsonb_array_elements($1::jsonb) e) \
                     ORDER BY phone_pseudonym FOR SHARE",
                ] {
                    sqlx::query(lock).bind(&json).fetch_all(&mut *tx).await?;
                }
                "INSERT INTO audience_candidates (upload_id, row_no, prefix, member) \
                 SELECT $1, c.row_no, c.prefix, c.m FROM (SELECT (e->>0)::bigint AS row_no, \
                 (e->>1)::bigint AS prefix, decode(e->>2, 'hex') AS m \
                 FROM jsonb_array_elements($2::jsonb) e) c \
                 WHERE EXISTS (SELECT 1 FROM records r WHERE r.pseudonym = c.m AND r.purpose = 'ads') \
                 OR EXISTS (SELECT 1 FROM partner_users u \
                     WHERE u.phone_pseudonym = c.m AND u.ads_personalisation = 1)"
            }
        };
        let t0 = std::time::Instant::now();
        sqlx::query(insert)
            .bind(id)
            .bind(&json)
            .execute(&mut *tx)
            .await?;
        let inserted = t0.elapsed();
        tx.commit().await?;
        tracing::debug!(
            candidates = candidates.len(),
            insert_us = inserted.as_micros() as u64,
            commit_us = (t0.elapsed() - inserted).as_micros() as u64,
            "upload batch staged"
        );
        Ok(true)
    }
}

#[async_trait]
impl AudienceStore for SqlAudienceStore {
    async fn create_advertiser(&self, a: &Advertiser, token_hash: &[u8; 32]) -> Result<()> {
        sqlx::query(
            "INSERT INTO advertisers (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(uuid_text(a.id))
        .bind(&a.name)
        .bind(token_hash.to_vec())
        .bind(a.created_at.0)
        .execute(&self.db.pool)
        .await
        .map_err(conflict_on_unique("advertiser"))?;
        Ok(())
    }

    async fn advertiser_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<Advertiser>> {
        let r = sqlx::query("SELECT id, name, created_at FROM advertisers WHERE token_hash = $1")
            .bind(token_hash.to_vec())
            .fetch_optional(&self.db.pool)
            .await?;
        r.map(|r| {
            Ok(Advertiser {
                id: parse_uuid(&r.try_get::<String, _>("id")?)?,
                name: r.try_get("name")?,
                created_at: Timestamp(r.try_get("created_at")?),
            })
        })
        .transpose()
    }

    async fn create_audience(&self, a: &Audience) -> Result<()> {
        sqlx::query(
            "INSERT INTO audiences (id, advertiser_id, name, size_dp, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(uuid_text(a.id))
        .bind(uuid_text(a.advertiser_id))
        .bind(&a.name)
        .bind(state_json(&a.size)?)
        .bind(a.created_at.0)
        .execute(&self.db.pool)
        .await
        .map_err(conflict_on_unique("audience"))?;
        Ok(())
    }

    async fn audience(&self, advertiser: Uuid, name: &str) -> Result<Option<Audience>> {
        sqlx::query("SELECT * FROM audiences WHERE advertiser_id = $1 AND name = $2")
            .bind(uuid_text(advertiser))
            .bind(name)
            .fetch_optional(&self.db.pool)
            .await?
            .as_ref()
            .map(audience_row)
            .transpose()
    }

    async fn audience_by_id(&self, id: Uuid) -> Result<Option<Audience>> {
        sqlx::query("SELECT * FROM audiences WHERE id = $1")
            .bind(uuid_text(id))
            .fetch_optional(&self.db.pool)
            .await?
            .as_ref()
            .map(audience_row)
            .transpose()
    }

    async fn audiences(&self, advertiser: Uuid) -> Result<Vec<Audience>> {
        sqlx::query("SELECT * FROM audiences WHERE advertiser_id = $1 ORDER BY name")
            .bind(uuid_text(advertiser))
            .fetch_all(&self.db.pool)
            .await?
            .iter()
            .map(audience_row)
            .collect()
    }

    async fn member_count(&self, audience: Uuid) -> Result<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM audience_members WHERE audience_id = $1")
                .bind(uuid_text(audience))
                .fetch_one(&self.db.pool)
                .await?;
        Ok(count(n))
    }

    async fn set_size_release(&self, audience: Uuid, old: &DpState, new: &DpState) -> Result<bool> {
        let r = sqlx::query("UPDATE audiences SET size_dp = $1 WHERE id = $2 AND size_dp = $3")
            .bind(state_json(new)?)
            .bind(uuid_text(audience))
            .bind(state_json(old)?)
            .execute(&self.db.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn set_upload_result(&self, upload: Uuid, result: &str) -> Result<()> {
        sqlx::query("UPDATE audience_uploads SET result = $1 WHERE id = $2")
            .bind(result)
            .bind(uuid_text(upload))
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    async fn start_upload(&self, u: &Upload) -> Result<()> {
        sqlx::query(
            "INSERT INTO audience_uploads (id, audience_id, batches, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(uuid_text(u.id))
        .bind(uuid_text(u.audience_id))
        .bind(u.batches as i64)
        .bind(u.created_at.0)
        .bind(u.expires_at.0)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    async fn upload(&self, id: Uuid) -> Result<Option<Upload>> {
        sqlx::query("SELECT * FROM audience_uploads WHERE id = $1")
            .bind(uuid_text(id))
            .fetch_optional(&self.db.pool)
            .await?
            .as_ref()
            .map(upload_row)
            .transpose()
    }

    async fn stage_batch(
        &self,
        upload: Uuid,
        seq: u64,
        rows: u64,
        candidates: &[Candidate],
    ) -> Result<bool> {
        let id = uuid_text(upload);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_stage_batch(&id, seq, rows, candidates).await {
                // PostgreSQL: the row locks of the eligibility check can
                // deadlock with a feed batch that takes the same rows in
                // another order; the database aborts one, and this one
                // runs again.
                Err(e) if attempt < 5 && is_deadlock(&e) => {
                    tracing::debug!(attempt, "upload batch hit a deadlock; staging again");
                }
                r => return r,
            }
        }
    }

    async fn staged(&self, upload: Uuid) -> Result<(u64, u64)> {
        let r = sqlx::query(
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(row_count), 0) AS BIGINT) AS rows_in \
             FROM audience_upload_batches WHERE upload_id = $1",
        )
        .bind(uuid_text(upload))
        .fetch_one(&self.db.pool)
        .await?;
        Ok((count(r.try_get("n")?), count(r.try_get("rows_in")?)))
    }

    fn eligible_writes(&self) -> u64 {
        self.db.eligible_writes()
    }

    async fn take_dirty(&self) -> Result<Vec<u8>> {
        // A read first: usually nothing changed, and a read takes no lock
        // and waits for no disk.
        let any: Option<i64> = sqlx::query_scalar("SELECT 1 FROM audience_dirty LIMIT 1")
            .fetch_optional(&self.db.pool)
            .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let parts: Vec<Vec<u8>> = sqlx::query_scalar("DELETE FROM audience_dirty RETURNING part")
            .fetch_all(&self.db.pool)
            .await?;
        let mut out: Vec<u8> = parts
            .iter()
            .map(|p| p.first().copied().ok_or_else(|| corrupt("dirty partition")))
            .collect::<Result<_>>()?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    async fn eligible_partition(&self, prefix: u8) -> Result<Vec<(PseudonymId, PseudonymId)>> {
        let (lo, hi) = bounds(prefix);
        let pg = self.db.backend == Backend::Postgres;
        // Each query gives one aggregated text of hex pairs (key, member):
        // one row a partition instead of one a person (see `unhex_all`).
        let (agg, hex) = if pg {
            ("string_agg", "encode")
        } else {
            ("group_concat", "")
        };
        let h = |col: &str| {
            if pg {
                format!("{hex}({col}, 'hex')")
            } else {
                format!("hex({col})")
            }
        };
        let queries = [
            // Partner users with ad personalisation on, by their number.
            format!(
                "SELECT {agg}({k} || {k}, '') FROM partner_users \
                 WHERE phone_pseudonym >= $1 AND phone_pseudonym < $2 AND ads_personalisation = 1",
                k = h("phone_pseudonym")
            ),
            // Messenger users who granted `ads` (coordinated; linked or not).
            format!(
                "SELECT {agg}({k} || {k}, '') FROM records \
                 WHERE pseudonym >= $1 AND pseudonym < $2 AND purpose = 'ads'",
                k = h("pseudonym")
            ),
            // The email of a partner user who is eligible either way.
            format!(
                "SELECT {agg}({k} || {m}, '') FROM partner_users u \
                 WHERE u.email_pseudonym >= $1 AND u.email_pseudonym < $2 \
                 AND u.phone_pseudonym IS NOT NULL AND (u.ads_personalisation = 1 OR EXISTS \
                 (SELECT 1 FROM records r WHERE r.pseudonym = u.phone_pseudonym AND r.purpose = 'ads'))",
                k = h("u.email_pseudonym"),
                m = h("u.phone_pseudonym")
            ),
        ];
        let mut out = Vec::new();
        for q in &queries {
            let text: Option<String> = sqlx::query_scalar(q)
                .bind(lo.clone())
                .bind(hi.clone())
                .fetch_one(&self.db.pool)
                .await?;
            let bytes = unhex_all(text.as_deref().unwrap_or(""), 64)?;
            out.reserve(bytes.len() / 64);
            for c in bytes.chunks_exact(64) {
                let (k, m) = c.split_at(32);
                out.push((
                    PseudonymId::from_slice(k).ok_or_else(|| corrupt("eligible pseudonym"))?,
                    PseudonymId::from_slice(m).ok_or_else(|| corrupt("member"))?,
                ));
            }
        }
        Ok(out)
    }

    async fn begin_match(&self, upload: Uuid, at: Timestamp) -> Result<bool> {
        let id = uuid_text(upload);
        let r = sqlx::query(
            "UPDATE audience_uploads SET matching_since = $1 WHERE id = $2 AND matching_since IS NULL",
        )
        .bind(at.0)
        .bind(&id)
        .execute(&self.db.pool)
        .await?;
        if r.rows_affected() == 1 {
            return Ok(true);
        }
        match self.upload(upload).await? {
            Some(_) => Ok(false),
            None => Err(StoreError::NotFound("upload")),
        }
    }

    async fn finish_upload(&self, upload: Uuid, at: Timestamp) -> Result<u64> {
        let id = uuid_text(upload);
        let _gate = match self.db.backend {
            Backend::Sqlite => Some(self.db.write_gate().await),
            Backend::Postgres => None,
        };
        let mut tx = self.db.pool.begin().await?;
        // The upload's row first, written: a concurrent discard waits, or
        // has won and this finds nothing.
        let audience: Option<String> = sqlx::query_scalar(
            "UPDATE audience_uploads SET matched_at = $1 \
             WHERE id = $2 AND matched_at IS NULL RETURNING audience_id",
        )
        .bind(at.0)
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?;
        let audience = audience.ok_or(StoreError::NotFound("upload"))?;
        let rows: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM audience_candidates WHERE upload_id = $1")
                .bind(&id)
                .fetch_one(&mut *tx)
                .await?;
        // Candidates are kept eligible (see the module docs), so they
        // become members as they are.
        sqlx::query(
            "INSERT INTO audience_members (audience_id, prefix, member, added_at) \
             SELECT DISTINCT $1, prefix, member, $2 FROM audience_candidates WHERE upload_id = $3 \
             ORDER BY prefix, member ON CONFLICT (audience_id, prefix, member) DO NOTHING",
        )
        .bind(audience)
        .bind(at.0)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        delete_staged_in(&mut tx, self.db.backend, &id).await?;
        tx.commit().await?;
        Ok(count(rows))
    }

    async fn discard_upload(&self, upload: Uuid) -> Result<bool> {
        let mut tx = self.db.pool.begin().await?;
        let gone = delete_upload_in(&mut tx, self.db.backend, &uuid_text(upload)).await?;
        tx.commit().await?;
        scrub(&self.db).await;
        Ok(gone)
    }

    async fn purge_uploads(&self, now: Timestamp) -> Result<u64> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM audience_uploads WHERE expires_at < $1")
                .bind(now.0)
                .fetch_all(&self.db.pool)
                .await?;
        let mut n = 0;
        for id in ids {
            let mut tx = self.db.pool.begin().await?;
            n += u64::from(delete_upload_in(&mut tx, self.db.backend, &id).await?);
            tx.commit().await?;
        }
        if n > 0 {
            scrub(&self.db).await;
        }
        Ok(n)
    }

    async fn create_campaign(&self, c: &Campaign) -> Result<()> {
        sqlx::query(
            "INSERT INTO campaigns (id, advertiser_id, audience_id, title, body, link, starts_at, \
             ends_at, reach_dp, impressions_dp, released_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(uuid_text(c.id))
        .bind(uuid_text(c.advertiser_id))
        .bind(uuid_text(c.audience_id))
        .bind(&c.title)
        .bind(&c.body)
        .bind(&c.link)
        .bind(c.starts_at.0)
        .bind(c.ends_at.0)
        .bind(state_json(&c.reach)?)
        .bind(state_json(&c.impressions)?)
        .bind(c.released_at.map(|t| t.0))
        .bind(c.created_at.0)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    async fn campaign(&self, id: Uuid) -> Result<Option<Campaign>> {
        sqlx::query("SELECT * FROM campaigns WHERE id = $1")
            .bind(uuid_text(id))
            .fetch_optional(&self.db.pool)
            .await?
            .as_ref()
            .map(campaign_row)
            .transpose()
    }

    async fn campaigns(&self, advertiser: Uuid) -> Result<Vec<Campaign>> {
        sqlx::query("SELECT * FROM campaigns WHERE advertiser_id = $1 ORDER BY created_at")
            .bind(uuid_text(advertiser))
            .fetch_all(&self.db.pool)
            .await?
            .iter()
            .map(campaign_row)
            .collect()
    }

    async fn set_campaign_release(
        &self,
        id: Uuid,
        old: (&DpState, &DpState),
        new: (&DpState, &DpState),
        at: Timestamp,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE campaigns SET reach_dp = $1, impressions_dp = $2, released_at = $3 \
             WHERE id = $4 AND reach_dp = $5 AND impressions_dp = $6",
        )
        .bind(state_json(new.0)?)
        .bind(state_json(new.1)?)
        .bind(at.0)
        .bind(uuid_text(id))
        .bind(state_json(old.0)?)
        .bind(state_json(old.1)?)
        .execute(&self.db.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn campaign_counts(&self, id: Uuid) -> Result<(u64, u64)> {
        let r = sqlx::query(
            "SELECT COUNT(*) AS reach, CAST(COALESCE(SUM(n), 0) AS BIGINT) AS shown FROM impressions WHERE campaign_id = $1",
        )
        .bind(uuid_text(id))
        .fetch_one(&self.db.pool)
        .await?;
        Ok((count(r.try_get("reach")?), count(r.try_get("shown")?)))
    }

    async fn serve_ads(
        &self,
        member: &PseudonymId,
        user: Uuid,
        now: Timestamp,
    ) -> Result<Vec<Campaign>> {
        let mut tx = self.db.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT c.* FROM campaigns c JOIN audience_members m ON m.audience_id = c.audience_id \
             WHERE m.prefix = $1 AND m.member = $2 AND c.starts_at <= $3 AND c.ends_at > $3 \
             ORDER BY c.created_at",
        )
        .bind(i64::from(member.as_bytes()[0]))
        .bind(member.as_bytes().to_vec())
        .bind(now.0)
        .fetch_all(&mut *tx)
        .await?;
        let campaigns: Vec<Campaign> = rows.iter().map(campaign_row).collect::<Result<_>>()?;
        for c in &campaigns {
            sqlx::query(
                "INSERT INTO impressions (campaign_id, user_id, n, last_at) VALUES ($1, $2, 1, $3) \
                 ON CONFLICT (campaign_id, user_id) DO UPDATE SET n = impressions.n + 1, last_at = $3",
            )
            .bind(uuid_text(c.id))
            .bind(uuid_text(user))
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(campaigns)
    }

    async fn stats(&self) -> Result<AudienceStats> {
        let r = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM advertisers) AS advertisers, \
             (SELECT COUNT(*) FROM audiences) AS audiences, \
             (SELECT COUNT(*) FROM audience_members) AS members, \
             (SELECT COUNT(*) FROM audience_uploads WHERE matched_at IS NULL) AS open_uploads, \
             (SELECT COUNT(*) FROM audience_candidates) AS candidates, \
             (SELECT COUNT(*) FROM campaigns) AS campaigns",
        )
        .fetch_one(&self.db.pool)
        .await?;
        Ok(AudienceStats {
            advertisers: count(r.try_get("advertisers")?),
            audiences: count(r.try_get("audiences")?),
            members: count(r.try_get("members")?),
            open_uploads: count(r.try_get("open_uploads")?),
            candidates: count(r.try_get("candidates")?),
            campaigns: count(r.try_get("campaigns")?),
        })
    }
}
