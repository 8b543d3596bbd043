//! The backends every conformance suite runs on: SQLite in a temporary
//! directory, always; PostgreSQL on 127.0.0.1:5432 (or
//! `ACCORD_TEST_POSTGRES_URL`) in a fresh database, dropped by
//! [`TestDb::finish`], unless `ACCORD_SKIP_POSTGRES=1` (CI never sets it).

use accord_storage::db::drop_pg_database;
use accord_storage::Db;

pub struct TestDb {
    pub db: Db,
    _dir: Option<tempfile::TempDir>,
    /// (admin URL, database name) to drop at the end.
    pg: Option<(String, String)>,
}

impl TestDb {
    /// Closes the pool and drops the PostgreSQL database, if any.
    pub async fn finish(self) {
        self.db.pool.close().await;
        if let Some((admin, name)) = self.pg {
            drop_pg_database(&admin, &name).await.unwrap();
        }
    }
}

/// A fresh database of `service` on each backend.
pub async fn backends(service: &str) -> Vec<TestDb> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Db::open_service(dir.path().to_str().unwrap(), service)
        .await
        .unwrap();
    let mut out = vec![TestDb {
        db: sqlite,
        _dir: Some(dir),
        pg: None,
    }];
    if std::env::var("ACCORD_SKIP_POSTGRES").as_deref() == Ok("1") {
        return out;
    }
    let base = std::env::var("ACCORD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("accord_test_{}", uuid::Uuid::new_v4().simple());
    let db = Db::open_service(&format!("{base}/{name}"), service)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (set ACCORD_SKIP_POSTGRES=1 to skip)");
    out.push(TestDb {
        db,
        _dir: None,
        pg: Some((format!("{base}/postgres"), format!("{name}_{service}"))),
    });
    out
}
