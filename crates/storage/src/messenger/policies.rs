//! Policy versions: publishing the next one (with its ledger entry) and
//! reading the history.

use super::consent::append;
use crate::db::Db;
use crate::error::{Result, StoreError};
use crate::sql::json;
use accord_domain::ledger::LedgerRecord;
use accord_domain::policy::{ConsentProfile, PolicyDraft, PolicyHistory, PolicyVersion, Purpose};
use accord_domain::{LedgerEvent, Timestamp};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::BTreeSet;

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

pub(super) async fn publish_policy(
    db: &Db,
    draft: PolicyDraft,
    at: Timestamp,
) -> Result<PolicyVersion> {
    let mut tx = db.pool.begin().await?;
    // Lock the policy shard's head first: publications are serialised
    // with each other and with every append to that shard.
    sqlx::query("UPDATE ledger_shards SET seq = seq WHERE shard = 0")
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

pub(super) async fn policies(db: &Db) -> Result<PolicyHistory> {
    let rows = sqlx::query("SELECT * FROM policies ORDER BY version")
        .fetch_all(&db.pool)
        .await?;
    Ok(PolicyHistory::new(
        rows.iter().map(policy_row).collect::<Result<_>>()?,
    ))
}
