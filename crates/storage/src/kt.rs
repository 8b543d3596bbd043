//! The messenger's key-transparency log: what it published into its
//! auditable key directory, epoch by epoch, and each epoch's signed root.
//!
//! The directory (`akd`) lives in the messenger's memory and is rebuilt on
//! start by replaying this log in epoch order; the stored roots let the
//! rebuild be checked against what was signed and served. An epoch is
//! written in two steps: its updates first ([`KtStore::append_epoch`]),
//! then its root and signature once the directory has computed them
//! ([`KtStore::set_root`]). A crash between the two leaves an epoch without
//! a root, which the next start recomputes and signs.
//!
//! Labels are account ids and values the canonical encoding of a device
//! list (public keys only): nothing here is secret or names a person.

use crate::db::Db;
use crate::error::{Result, StoreError};
use crate::messenger::migrate;
use crate::sql::conflict_on_unique;
use accord_domain::Timestamp;
use async_trait::async_trait;
use sqlx::Row;

/// One published (label, value) pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KtUpdate {
    pub epoch: u64,
    pub label: Vec<u8>,
    pub value: Vec<u8>,
}

/// One epoch: its root and signature once computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KtEpoch {
    pub epoch: u64,
    pub published_at: Timestamp,
    pub root: Option<Vec<u8>>,
    pub signature: Option<Vec<u8>>,
}

#[async_trait]
pub trait KtStore: Send + Sync + std::fmt::Debug + 'static {
    /// Writes epoch `epoch` and its updates in one transaction. Fails with
    /// `Conflict` when the epoch exists (or a label repeats).
    async fn append_epoch(
        &self,
        epoch: u64,
        updates: &[(Vec<u8>, Vec<u8>)],
        at: Timestamp,
    ) -> Result<()>;
    /// Records the root the directory computed for `epoch`, and its
    /// signature. `NotFound` when the epoch was never appended.
    async fn set_root(&self, epoch: u64, root: &[u8], signature: &[u8]) -> Result<()>;
    /// Every epoch, in order.
    async fn epochs(&self) -> Result<Vec<KtEpoch>> {
        self.epochs_after(0).await
    }
    /// The epochs after `after`, in order (none when `after` is the
    /// newest: one indexed read, cheap enough to ask before each lookup).
    async fn epochs_after(&self, after: u64) -> Result<Vec<KtEpoch>>;
    /// The updates of epochs `from..=to`, in epoch order.
    async fn updates(&self, from: u64, to: u64) -> Result<Vec<KtUpdate>>;
}

/// The SQL implementation, on the messenger's database.
#[derive(Clone, Debug)]
pub struct SqlKtStore {
    db: Db,
}

impl SqlKtStore {
    /// Wraps the messenger's database and applies its migrations.
    pub async fn new(db: Db) -> Result<Self> {
        migrate(&db).await?;
        Ok(SqlKtStore { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt("epoch out of range".into()))
}

#[async_trait]
impl KtStore for SqlKtStore {
    async fn append_epoch(
        &self,
        epoch: u64,
        updates: &[(Vec<u8>, Vec<u8>)],
        at: Timestamp,
    ) -> Result<()> {
        let epoch = to_i64(epoch)?;
        let mut tx = self.db.pool.begin().await?;
        sqlx::query("INSERT INTO kt_epochs (epoch, published_at) VALUES ($1, $2)")
            .bind(epoch)
            .bind(at.0)
            .execute(&mut *tx)
            .await
            .map_err(conflict_on_unique("key-transparency epoch"))?;
        for (label, value) in updates {
            sqlx::query("INSERT INTO kt_updates (epoch, label, value) VALUES ($1, $2, $3)")
                .bind(epoch)
                .bind(label.clone())
                .bind(value.clone())
                .execute(&mut *tx)
                .await
                .map_err(conflict_on_unique("key-transparency label in one epoch"))?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_root(&self, epoch: u64, root: &[u8], signature: &[u8]) -> Result<()> {
        let done = sqlx::query("UPDATE kt_epochs SET root = $1, signature = $2 WHERE epoch = $3")
            .bind(root.to_vec())
            .bind(signature.to_vec())
            .bind(to_i64(epoch)?)
            .execute(&self.db.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("key-transparency epoch"));
        }
        Ok(())
    }

    async fn epochs_after(&self, after: u64) -> Result<Vec<KtEpoch>> {
        let rows = sqlx::query(
            "SELECT epoch, published_at, root, signature FROM kt_epochs WHERE epoch > $1 ORDER BY epoch",
        )
        .bind(to_i64(after.min(i64::MAX as u64))?)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KtEpoch {
                    epoch: u64::try_from(r.try_get::<i64, _>("epoch")?)
                        .map_err(|_| StoreError::Corrupt("negative epoch".into()))?,
                    published_at: Timestamp(r.try_get("published_at")?),
                    root: r.try_get("root")?,
                    signature: r.try_get("signature")?,
                })
            })
            .collect()
    }

    async fn updates(&self, from: u64, to: u64) -> Result<Vec<KtUpdate>> {
        let rows = sqlx::query(
            "SELECT epoch, label, value FROM kt_updates WHERE epoch >= $1 AND epoch <= $2 \
             ORDER BY epoch, label",
        )
        .bind(to_i64(from)?)
        .bind(to_i64(to.min(i64::MAX as u64))?)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KtUpdate {
                    epoch: u64::try_from(r.try_get::<i64, _>("epoch")?)
                        .map_err(|_| StoreError::Corrupt("negative epoch".into()))?,
                    label: r.try_get("label")?,
                    value: r.try_get("value")?,
                })
            })
            .collect()
    }
}
