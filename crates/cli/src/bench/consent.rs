//! `accord bench consent`: consent changes through the messenger's public
//! HTTP API, on the real messenger (built by its `Application`, as `accord
//! serve` builds it) on `127.0.0.1:0`, on SQLite in a temporary data
//! directory or, with a PostgreSQL URL, in a database of its own that is
//! created for the run and dropped after it.
//!
//! Set-up, not measured: a `strict` policy with `ads` and `product` is
//! published through the admin API, and `users` accounts register through
//! the real registration API (dev verifier) and accept it with nothing
//! granted. Under `strict` a purpose can be granted and withdrawn at any
//! time, so every request of the run is a real change of consent: a grant
//! when the purpose is withdrawn, a withdrawal when it is granted.
//!
//! The run: `clients` closed-loop clients (each waits for its answer
//! before it sends again). The users are dealt out among the clients, so
//! no two clients ever change the same user's consent, and the figures
//! are not those of the server's retries on conflicting changes. Each
//! client goes round its own users and toggles `ads` on each. A warm-up
//! comes first; then, over the measured window, only 2xx answers count as
//! changes (`consent_changes_per_s`, and the latencies `p50_ms`/`p99_ms`,
//! from the request to the end of its answer); every other answer or
//! failed request, in the warm-up too, is counted in `errors`.
//!
//! The server is the messenger alone, without the key service, the partner
//! or the feed's dispatcher: each change still writes its outbox row, as
//! it does under `accord serve`, but nothing drains the outbox. The
//! consent log is on: the messenger's background loop catches its Merkle
//! trees up and signs a checkpoint of every grown shard every
//! `checkpoint_every` (1 s by default, stricter than the 15 s of
//! `accord serve`), and the report counts the checkpoints it signed.
//!
//! Everything is bounded in time: each request by [`REQUEST_TIMEOUT`], the
//! set-up by [`setup_limit`], and the run by its warm-up and window.

use accord_client::{AcceptChoice, Client};
use accord_crypto::token::{BearerToken, TokenHash};
use accord_domain::{DeviceInfo, Purpose, SystemClock};
use accord_messenger::verifier::DevVerifier;
use accord_messenger::{Application, MessengerConfig, Settings};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// No request of the bench, set-up or run, waits longer than this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Registrations in flight at once during the set-up.
const SETUP_CONCURRENCY: usize = 8;

/// The most users the phone numbers below can tell apart.
pub const MAX_USERS: usize = 99_999;

#[derive(Clone, Debug)]
pub struct ConsentBenchOptions {
    /// Accounts that change their consent.
    pub users: usize,
    /// Concurrent closed-loop clients (at most one per user).
    pub clients: usize,
    /// The measured window.
    pub duration: Duration,
    /// Run before the window, not measured.
    pub warmup: Duration,
    /// A PostgreSQL server (`postgres://user@host:port[/db]`); the bench
    /// makes a database of its own there and drops it at the end. `None`:
    /// SQLite in a temporary data directory.
    pub database_url: Option<String>,
    /// How often the messenger signs checkpoints of the grown shards.
    pub checkpoint_every: Duration,
}

impl Default for ConsentBenchOptions {
    fn default() -> Self {
        ConsentBenchOptions {
            users: 400,
            clients: 32,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            database_url: None,
            checkpoint_every: Duration::from_secs(1),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ConsentBenchReport {
    pub consent_changes_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// 2xx answers in the measured window.
    pub changes: u64,
    /// Non-2xx answers and failed requests, warm-up included.
    pub errors: u64,
    /// 2xx answers of the whole run, warm-up included.
    pub answered: u64,
    /// Entries the ledger gained during the run (warm-up included): one
    /// per change, so as many as `answered`.
    pub ledger_entries_added: u64,
    /// Checkpoints the messenger signed during the run (warm-up
    /// included), and the interval it signed them at.
    pub checkpoints_signed: u64,
    pub checkpoint_every_ms: u128,
    pub users: usize,
    pub clients: usize,
    pub backend: &'static str,
    /// The measured window, as it really lasted.
    pub window_s: f64,
    /// On PostgreSQL, the run's database (dropped at the end).
    pub database: Option<String>,
}

impl fmt::Display for ConsentBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "consent_changes_per_s: {:.0}",
            self.consent_changes_per_s
        )?;
        writeln!(f, "p50_ms: {:.2}", self.p50_ms)?;
        writeln!(f, "p99_ms: {:.2}", self.p99_ms)?;
        writeln!(f, "changes: {}", self.changes)?;
        writeln!(f, "errors: {}", self.errors)?;
        writeln!(f, "answered_2xx_total: {}", self.answered)?;
        writeln!(f, "ledger_entries_added: {}", self.ledger_entries_added)?;
        writeln!(f, "checkpoints_signed: {}", self.checkpoints_signed)?;
        writeln!(f, "checkpoint_every_ms: {}", self.checkpoint_every_ms)?;
        writeln!(f, "window_s: {:.2}", self.window_s)?;
        writeln!(f, "users: {}", self.users)?;
        writeln!(f, "clients: {}", self.clients)?;
        writeln!(f, "backend: {}", self.backend)
    }
}

type BenchResult<T> = Result<T, String>;

pub(crate) fn err(e: impl fmt::Display) -> String {
    e.to_string()
}

/// How long the set-up of `users` accounts may take in all.
pub fn setup_limit(users: usize) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(100) * users as u32
}

/// Where the messenger's database lives for one run, and its clean-up.
pub(crate) enum Location {
    Sqlite(tempfile::TempDir),
    Postgres {
        /// What `Settings::location` gets: `<server>/<name>`.
        url: String,
        /// The server's `postgres` database, to drop ours from.
        admin_url: String,
        /// Our database: the messenger's is `<name>_messenger`.
        name: String,
    },
}

impl Location {
    pub(crate) fn new(database_url: Option<&str>) -> BenchResult<Self> {
        let Some(raw) = database_url else {
            return Ok(Location::Sqlite(tempfile::tempdir().map_err(err)?));
        };
        if !(raw.starts_with("postgres://") || raw.starts_with("postgresql://")) {
            return Err("--database-url must be a postgres:// URL".into());
        }
        // `postgres://user@host:port[/db][?query]`: the server is what
        // comes before the database name.
        let (no_query, query) = match raw.split_once('?') {
            Some((u, q)) => (u, format!("?{q}")),
            None => (raw, String::new()),
        };
        let scheme_end = no_query.find("://").map_or(0, |i| i + 3);
        let server = match no_query[scheme_end..].find('/') {
            Some(i) => &no_query[..scheme_end + i],
            None => no_query,
        };
        let name = format!("accord_bench_{}", uuid::Uuid::new_v4().simple());
        Ok(Location::Postgres {
            url: format!("{server}/{name}{query}"),
            admin_url: format!("{server}/postgres{query}"),
            name,
        })
    }

    pub(crate) fn settings_location(&self) -> BenchResult<String> {
        match self {
            Location::Sqlite(dir) => Ok(dir.path().to_str().ok_or("temp path")?.to_owned()),
            Location::Postgres { url, .. } => Ok(url.clone()),
        }
    }

    pub(crate) fn backend(&self) -> &'static str {
        match self {
            Location::Sqlite(_) => "sqlite",
            Location::Postgres { .. } => "postgres",
        }
    }

    fn database(&self) -> Option<String> {
        match self {
            Location::Sqlite(_) => None,
            Location::Postgres { name, .. } => Some(format!("{name}_messenger")),
        }
    }

    /// Drops the run's PostgreSQL database (the temporary directory goes
    /// when dropped).
    pub(crate) async fn clean_up(self) -> BenchResult<()> {
        if let Location::Postgres {
            admin_url, name, ..
        } = self
        {
            accord_storage::db::drop_pg_database(&admin_url, &format!("{name}_messenger"))
                .await
                .map_err(|e| format!("dropping the bench database {name}_messenger: {e}"))?;
        }
        Ok(())
    }
}

/// Runs the consent benchmark; see the module docs.
pub async fn bench_consent(opts: ConsentBenchOptions) -> BenchResult<ConsentBenchReport> {
    if opts.users == 0 || opts.users > MAX_USERS {
        return Err(format!("--users must be 1 to {MAX_USERS}"));
    }
    if opts.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    let location = Location::new(opts.database_url.as_deref())?;
    let result = tokio::select! {
        r = run(&opts, &location) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
    };
    // Clean up whatever happened (Ctrl-C too), and report the run's error
    // first.
    let cleaned = location.clean_up().await;
    let report = result?;
    cleaned?;
    Ok(report)
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// What one client measured.
#[derive(Default)]
struct ClientTally {
    /// Latencies (µs) of the changes made in the window.
    latencies_us: Vec<u64>,
}

/// The messenger of a bench run, built as `accord serve` builds it (its
/// `Application`) on `location`, serving on `127.0.0.1:0`, with the dev
/// verifier and no limits on codes (the generators register every
/// account from one address, in one number range).
pub(crate) struct BenchMessenger {
    pub app: Application,
    pub base: String,
    stopper: accord_http::Stopper,
    tasks: Vec<accord_http::Task>,
    /// The key directory's keys, for this run only.
    _keys: tempfile::TempDir,
}

impl BenchMessenger {
    pub(crate) async fn start(
        location: &Location,
        admin_token: &BearerToken,
        checkpoint_every: Duration,
    ) -> BenchResult<Self> {
        let keys = tempfile::tempdir().map_err(err)?;
        let app = Application::build(Settings {
            checkpoint_every,
            kt_key_dir: Some(keys.path().to_path_buf()),
            config: MessengerConfig {
                codes_per_client_per_hour: u32::MAX,
                codes_per_range_per_hour: u32::MAX,
                codes_per_hour_total: u32::MAX,
                ..MessengerConfig::default()
            },
            ..Settings::new(
                location.settings_location()?,
                TokenHash::of(admin_token.reveal()),
                Arc::new(DevVerifier),
                Arc::new(SystemClock),
            )
        })
        .await
        .map_err(err)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(err)?;
        let base = format!("http://{}", listener.local_addr().map_err(err)?);
        let (stopper, stop) = accord_http::stop_signal();
        let tasks = app.start(listener, &stop);
        Ok(BenchMessenger {
            app,
            base,
            stopper,
            tasks,
            _keys: keys,
        })
    }

    /// Stops the server and its background work (5 s at most each).
    pub(crate) async fn stop(self) {
        self.stopper.stop();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

async fn run(opts: &ConsentBenchOptions, location: &Location) -> BenchResult<ConsentBenchReport> {
    let admin_token = BearerToken::generate();
    let m = BenchMessenger::start(location, &admin_token, opts.checkpoint_every).await?;
    let (app, base) = (&m.app, m.base.as_str());

    let clients = opts.clients.min(opts.users);
    let limit = setup_limit(opts.users);
    let tokens = tokio::time::timeout(limit, set_up(base, admin_token.reveal(), opts.users))
        .await
        .map_err(|_| format!("the set-up took longer than {} s", limit.as_secs()))??;
    let admin = Client::new(base).with_token(admin_token.reveal());
    let report = async {
        let before = admin.verify_ledger().await.map_err(err)?.entries;
        let signed_before = app.messenger().log().signed_count();
        let mut r = tokio::time::timeout(
            opts.warmup + opts.duration + REQUEST_TIMEOUT * 2,
            toggle(base, tokens, clients, opts),
        )
        .await
        .map_err(|_| "the run did not end in time".to_owned())??;
        r.checkpoints_signed = app.messenger().log().signed_count() - signed_before;
        r.checkpoint_every_ms = opts.checkpoint_every.as_millis();
        r.ledger_entries_added = admin.verify_ledger().await.map_err(err)?.entries - before;
        r.backend = location.backend();
        r.database = location.database();
        Ok::<_, String>(r)
    }
    .await;
    m.stop().await;
    report
}

/// Publishes the policy and registers `users` accounts that accept it;
/// their bearer tokens. Progress on stderr.
pub(crate) async fn set_up(
    base: &str,
    admin_token: &str,
    users: usize,
) -> BenchResult<Vec<String>> {
    let admin = Client::new(base).with_token(admin_token);
    let policy = admin
        .publish_policy(
            "Accord terms (consent bench): we may share account information for ads and product.",
            &[Purpose::Ads, Purpose::Product],
            Some("strict"),
        )
        .await
        .map_err(|e| format!("publishing the policy: {e}"))?;
    let version = policy.version;
    eprintln!("set-up: registering {users} users (not measured)");
    let started = Instant::now();
    let mut tokens = vec![String::new(); users];
    let mut registering = tokio::task::JoinSet::new();
    let mut next = 0usize;
    let mut done = 0usize;
    while done < users {
        while registering.len() < SETUP_CONCURRENCY && next < users {
            let (base, i) = (base.to_owned(), next);
            registering.spawn(async move { (i, register(&base, i, version).await) });
            next += 1;
        }
        let Some(joined) = registering.join_next().await else {
            break;
        };
        let (i, token) = joined.map_err(err)?;
        tokens[i] = token?;
        done += 1;
        if done.is_multiple_of(100) || done == users {
            eprintln!(
                "set-up: {done}/{users} registered ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(tokens)
}

/// Registers the `i`-th user through the API with the dev verifier's code
/// and accepts policy `version` with nothing granted; its token.
async fn register(base: &str, i: usize, version: u32) -> BenchResult<String> {
    // The number is never printed: errors name the user's index.
    let phone = format!("+6281235{:05}", i + 1);
    let anon = Client::new(base);
    let started = anon
        .start_registration(&phone, None)
        .await
        .map_err(|e| format!("user {i}: registration: {e}"))?;
    let code = started
        .dev_code
        .ok_or_else(|| format!("user {i}: no dev code"))?;
    let device = DeviceInfo {
        os: "android".into(),
        os_version: "15".into(),
        model: "bench".into(),
        app_version: "1".into(),
        locale: "en".into(),
        carrier: None,
    };
    let nothing = AcceptChoice {
        share: Some(false),
        grants: vec![],
    };
    let reg = anon
        .verify_registration(
            started.registration_id,
            &code,
            &device,
            Some((version, &nothing)),
        )
        .await
        .map_err(|e| format!("user {i}: verification: {e}"))?;
    Ok(reg.token)
}

/// The warm-up and the measured window.
async fn toggle(
    base: &str,
    tokens: Vec<String>,
    clients: usize,
    opts: &ConsentBenchOptions,
) -> BenchResult<ConsentBenchReport> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients * 2)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(err)?;
    let grant = Arc::<str>::from(format!("{base}/v1/me/consent/ads/grant"));
    let withdraw = Arc::<str>::from(format!("{base}/v1/me/consent/ads/withdraw"));
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let errors = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));

    // Deal the users out: client c gets users c, c + clients, …
    let mut dealt: Vec<Vec<(String, bool)>> = vec![Vec::new(); clients];
    for (i, token) in tokens.into_iter().enumerate() {
        // Accepted with nothing granted: `ads` starts withdrawn (refused).
        dealt[i % clients].push((format!("Bearer {token}"), false));
    }
    let mut tasks = Vec::with_capacity(clients);
    for mut mine in dealt {
        let (http, grant, withdraw) = (http.clone(), grant.clone(), withdraw.clone());
        let (phase, errors, answered) = (phase.clone(), errors.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = ClientTally::default();
            let mut k = 0usize;
            while phase.load(Ordering::Relaxed) != STOP {
                let n = mine.len();
                let (auth, granted) = &mut mine[k % n];
                k += 1;
                let url = if *granted { &withdraw } else { &grant };
                let sent = Instant::now();
                let ok = match http
                    .post(&**url)
                    .header(reqwest::header::AUTHORIZATION, auth.as_str())
                    .send()
                    .await
                {
                    // The whole answer is read, so that the connection is
                    // reused and the latency covers it.
                    Ok(r) => {
                        let success = r.status().is_success();
                        r.bytes().await.is_ok() && success
                    }
                    Err(_) => false,
                };
                let took = sent.elapsed();
                if ok {
                    *granted = !*granted;
                    answered.fetch_add(1, Ordering::Relaxed);
                    if phase.load(Ordering::Relaxed) == MEASURE {
                        tally.latencies_us.push(took.as_micros() as u64);
                    }
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            tally
        }));
    }

    eprintln!("warm-up: {:.1} s", opts.warmup.as_secs_f64());
    tokio::time::sleep(opts.warmup).await;
    phase.store(MEASURE, Ordering::Relaxed);
    let t0 = Instant::now();
    eprintln!("measuring: {:.1} s", opts.duration.as_secs_f64());
    tokio::time::sleep(opts.duration).await;
    phase.store(STOP, Ordering::Relaxed);
    let window = t0.elapsed();

    let mut latencies = Vec::new();
    for t in tasks {
        let mut tally = t.await.map_err(err)?;
        latencies.append(&mut tally.latencies_us);
    }
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i] as f64 / 1000.0
    };
    let changes = latencies.len() as u64;
    Ok(ConsentBenchReport {
        consent_changes_per_s: changes as f64 / window.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        changes,
        errors: errors.load(Ordering::Relaxed),
        answered: answered.load(Ordering::Relaxed),
        ledger_entries_added: 0,
        checkpoints_signed: 0,
        checkpoint_every_ms: 0,
        users: opts.users,
        clients,
        backend: "",
        window_s: window.as_secs_f64(),
        database: None,
    })
}

/// `accord bench consent` end to end, scaled down, on SQLite and (unless
/// `ACCORD_SKIP_POSTGRES=1`) on PostgreSQL at `ACCORD_TEST_POSTGRES_URL`
/// (default `postgres://postgres@127.0.0.1:5432`): the changes it reports
/// are real changes, and none failed. Checks what the report is made of,
/// never how fast it was.
#[cfg(test)]
mod tests {
    use super::{bench_consent, ConsentBenchOptions};
    use std::time::Duration;

    fn small(database_url: Option<String>) -> ConsentBenchOptions {
        ConsentBenchOptions {
            users: 20,
            clients: 4,
            duration: Duration::from_secs(1),
            warmup: Duration::from_millis(200),
            database_url,
            checkpoint_every: Duration::from_millis(200),
        }
    }

    fn check(report: &super::ConsentBenchReport, backend: &str) {
        assert_eq!(report.errors, 0, "{report}");
        assert!(report.changes > 0, "{report}");
        // Every 2xx answer was one change, recorded in the ledger.
        assert!(report.answered >= report.changes, "{report}");
        assert_eq!(report.ledger_entries_added, report.answered, "{report}");
        assert!(report.consent_changes_per_s > 0.0, "{report}");
        // The log was signing while the changes were written.
        assert!(report.checkpoints_signed > 0, "{report}");
        assert!(
            report.p50_ms > 0.0 && report.p50_ms <= report.p99_ms,
            "{report}"
        );
        assert_eq!(
            (report.users, report.clients, report.backend),
            (20, 4, backend)
        );
        let text = report.to_string();
        for name in [
            "consent_changes_per_s",
            "p50_ms",
            "p99_ms",
            "errors",
            "users",
            "clients",
        ] {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("no {name} line in:\n{text}"));
            let value = line.split_once(": ").map(|(_, v)| v).unwrap_or_default();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert!(text.contains(&format!("backend: {backend}\n")), "{text}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_consent_bench_makes_real_changes_without_errors_on_sqlite() {
        let report = bench_consent(small(None)).await.expect("the bench runs");
        check(&report, "sqlite");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_consent_bench_makes_real_changes_without_errors_on_postgres() {
        if std::env::var("ACCORD_SKIP_POSTGRES").as_deref() == Ok("1") {
            return;
        }
        let server = std::env::var("ACCORD_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let report = bench_consent(small(Some(server.clone())))
            .await
            .expect("the bench runs on PostgreSQL (ACCORD_SKIP_POSTGRES=1 to skip)");
        check(&report, "postgres");
        // The run had a database of its own, and it is gone.
        let database = report.database.clone().expect("the run's database");
        let pool = sqlx::PgPool::connect(&format!("{server}/postgres"))
            .await
            .expect("PostgreSQL");
        let left: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(&database)
            .fetch_optional(&pool)
            .await
            .expect("look the database up");
        assert!(left.is_none(), "{database} was left behind");
    }
}
