//! Opening a database: SQLite files in a data directory, or PostgreSQL by URL.

use crate::error::{Result, StoreError};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor, Row};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool and the backend behind it.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    /// SQLite: held by the mailbox group commit for its transaction and by
    /// the checkpointer for a `RESTART` checkpoint, so that neither waits
    /// for the other in SQLite's busy handler, which polls in sleeps of
    /// up to 100 ms: each would stall the other (and every send waiting
    /// on the commit) for far longer than the other held the WAL.
    write_gate: Arc<tokio::sync::Mutex<()>>,
    /// Commits made through this pool that may have changed the custom
    /// audiences' eligible set (the partner's held records and users),
    /// counted after they commit. The partner's eligible index reads the
    /// database's change marks again only when this moved, or when its
    /// poll for other processes' changes is due (`accord-partner`'s
    /// `eligible` module).
    eligible_writes: Arc<AtomicU64>,
}

impl Db {
    /// Opens (creating if needed) `<dir>/<name>.db` in WAL mode.
    pub async fn open_sqlite_in(dir: &Path, name: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::BadUrl(format!("cannot create data directory: {e}")))?;
        let path = dir.join(format!("{name}.db"));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Self::connect(&url).await
    }

    /// Opens the database of one service. `location` is either a data
    /// directory (SQLite: `<dir>/<service>.db`) or a PostgreSQL URL whose
    /// database name is taken as a prefix: `postgres://h/accord` gives the
    /// messenger `accord_messenger`, created on first start. Services
    /// never share a database.
    pub async fn open_service(location: &str, service: &str) -> Result<Self> {
        if location.starts_with("postgres:") || location.starts_with("postgresql:") {
            let (base, name) = split_pg_url(location)?;
            let db_name = format!("{name}_{service}");
            ensure_pg_database(&format!("{base}/postgres{}", query_of(location)), &db_name).await?;
            Self::connect(&format!("{base}/{db_name}{}", query_of(location))).await
        } else {
            let dir = location.strip_prefix("sqlite://").unwrap_or(location);
            Self::open_sqlite_in(Path::new(dir), service).await
        }
    }

    /// Connects by URL: `sqlite://path?mode=rwc` or `postgres://...`.
    ///
    /// SQLite runs in WAL mode with `synchronous = FULL` (a commit is on
    /// disk when it returns), a 32 MB page cache per connection (hot
    /// mailbox pages stay in memory instead of being read back per
    /// statement) and statement journals in memory.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::BadUrl(
                "expected a sqlite:// or postgres:// URL".into(),
            ));
        };
        let opts =
            AnyConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl(e.to_string()))?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(10))
            // A local file has no network to drop a connection; skip the
            // round trip of a ping on every acquire.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                             PRAGMA cache_size = -32768; PRAGMA temp_store = MEMORY; \
                             PRAGMA wal_autocheckpoint = 0;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await?;
        let write_gate = Arc::default();
        if backend == Backend::Sqlite {
            spawn_checkpointer(pool.clone(), Arc::clone(&write_gate));
        }
        Ok(Db {
            pool,
            backend,
            write_gate,
            eligible_writes: Arc::default(),
        })
    }

    /// Counts a committed write that may have changed the eligible set.
    pub(crate) fn note_eligible_write(&self) {
        self.eligible_writes.fetch_add(1, Ordering::Release);
    }

    /// Writes counted by [`Db::note_eligible_write`] since the pool opened.
    pub(crate) fn eligible_writes(&self) -> u64 {
        self.eligible_writes.load(Ordering::Acquire)
    }

    /// Waits for, and holds, the SQLite write gate (see [`Db`]).
    pub(crate) async fn write_gate(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.write_gate.lock().await
    }
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// WAL frames (pages) past which the checkpointer also restarts the WAL.
/// 16,384 pages of 4 KB: 64 MB.
const RESTART_AFTER_FRAMES: i64 = 16384;

/// Checkpoints the WAL from a task of its own instead of inside whichever
/// commit crosses SQLite's threshold (`wal_autocheckpoint = 0` on every
/// connection): a checkpoint writes and syncs the database file, and in
/// the commit path it stalls the group-commit writer and everyone waiting
/// on it. `PASSIVE` never blocks writers or readers, but under a steady
/// stream of commits it never quite catches up, and SQLite only starts
/// the WAL over from its beginning after a checkpoint that did: the WAL
/// then grows for as long as the load lasts (1 GB in 20 s of `accord
/// bench relay`), and every commit writes to new file blocks, which the
/// file system must allocate and zero. So once a `PASSIVE` checkpoint
/// leaves more than [`RESTART_AFTER_FRAMES`] frames in the WAL, a
/// `RESTART` checkpoint follows: it copies what the `PASSIVE` one could
/// not (writers wait meanwhile) and waits for readers to move on, so that
/// the next commit writes the WAL from its start again (with a 16 MB
/// threshold the bench's WAL stayed under 150 MB and it gave about 10%
/// more envelopes/s; 64 MB gave as much, with fewer writer stalls in the
/// latency phase).
///
/// Ends when the pool closes; without a runtime (never in the services),
/// SQLite's own threshold stays off and the WAL is checkpointed when the
/// last connection closes.
fn spawn_checkpointer(pool: AnyPool, write_gate: Arc<tokio::sync::Mutex<()>>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        loop {
            tokio::time::sleep(CHECKPOINT_EVERY).await;
            if pool.is_closed() {
                return;
            }
            let frames = match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&pool)
                .await
            {
                Ok(row) => row.try_get::<i64, _>(1).unwrap_or(0),
                Err(e) => {
                    tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
                    continue;
                }
            };
            if frames > RESTART_AFTER_FRAMES {
                let _gate = write_gate.lock().await;
                if let Err(e) = pool.execute("PRAGMA wal_checkpoint(RESTART)").await {
                    tracing::warn!(error = %e, "WAL restart failed; will retry");
                }
            }
        }
    });
}

fn query_of(url: &str) -> &str {
    url.find('?').map_or("", |i| &url[i..])
}

/// Splits `postgres://user@host:port/name?x` into (`postgres://user@host:port`, `name`).
fn split_pg_url(url: &str) -> Result<(String, String)> {
    let no_query = url.split('?').next().unwrap_or(url);
    let scheme_end = no_query.find("://").map(|i| i + 3).unwrap_or(0);
    match no_query[scheme_end..].rfind('/') {
        Some(i) => {
            let cut = scheme_end + i;
            let name = &no_query[cut + 1..];
            let name = if name.is_empty() { "accord" } else { name };
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(StoreError::BadUrl(
                    "database name may only have letters, digits and _".into(),
                ));
            }
            Ok((no_query[..cut].to_owned(), name.to_owned()))
        }
        None => Ok((no_query.to_owned(), "accord".to_owned())),
    }
}

async fn ensure_pg_database(admin_url: &str, name: &str) -> Result<()> {
    let admin = Db::connect(admin_url).await?;
    let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&admin.pool)
        .await?;
    if exists.is_none() {
        // The name was checked to be [A-Za-z0-9_]: safe to quote into DDL.
        if let Err(e) = admin
            .pool
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
        {
            // Lost a race with another starter: fine if it exists now.
            let again: Option<(i32,)> =
                sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(name)
                    .fetch_optional(&admin.pool)
                    .await?;
            if again.is_none() {
                return Err(e.into());
            }
        }
    }
    admin.pool.close().await;
    Ok(())
}

/// Drops a PostgreSQL database (tests' clean-up). The name is checked.
pub async fn drop_pg_database(admin_url: &str, name: &str) -> Result<()> {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::BadUrl("bad database name".into()));
    }
    let admin = Db::connect(admin_url).await?;
    admin
        .pool
        .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await?;
    admin.pool.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_urls_split() {
        assert_eq!(
            split_pg_url("postgres://postgres@127.0.0.1:5432/accord").unwrap(),
            ("postgres://postgres@127.0.0.1:5432".into(), "accord".into())
        );
        assert_eq!(
            split_pg_url("postgres://h:5432/x_1?sslmode=disable")
                .unwrap()
                .1,
            "x_1"
        );
        assert!(split_pg_url("postgres://h/x;drop").is_err());
    }
}
