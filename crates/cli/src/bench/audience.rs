//! `accord bench audience`: a customer-list upload through the real key
//! service and partner, stage by stage.
//!
//! 1. **Floor.** `accord bench oprf` runs first, in this process
//!    (`crate::bench::oprf::bench_oprf`), and again after the upload: the
//!    mean of the two `client_path_per_s` is the floor the upload's OPRF
//!    stage is held against (`oprf_floor_ratio`). Bracketing the stage
//!    is what makes the floor the machine's speed during the run: on this
//!    VM one measurement of a few seconds varied by 20% between runs.
//!    The floor is the client path (blind, evaluate, finalise) because
//!    the upload does all three on this machine's cores; the server-only
//!    endpoint rate is printed too (`oprf_endpoint_per_s`).
//! 2. **Services.** The key service and the partner, each an
//!    `Application` on `127.0.0.1:0`, on SQLite in a temporary directory
//!    or on PostgreSQL (`--database-url`: databases of their own, dropped
//!    at the end). A business client of the key service and an advertiser
//!    with an audience.
//! 3. **List.** `--rows` customers as a business exports them: E.164,
//!    national and spaced numbers, a `country` column on some rows, mixed
//!    case emails on a third of them, and about 3% bad rows.
//! 4. **Eligible users** (a fixture, seeded straight into the partner's
//!    database): 30% of the list's valid numbers, their pseudonyms
//!    computed through the real key service (so a match is a real
//!    pseudonym matching), and random pseudonyms for the rest of
//!    `--users`, all held for `ads`.
//! 5. **Index.** The partner builds its standing index of the eligible
//!    set (what a fresh partner does on its first batch), timed apart
//!    (`index_build_s`, `index_entries`, `index_mb`), and how much of the
//!    process's memory the kernel gave on 2 MB pages
//!    (`index_huge_pages_mb`).
//! 6. **Upload**, the code of `accord audience upload`
//!    (`crate::upload::run`), and a check that the partner's members are
//!    the overlap's (`members`, `expected_members`).
//!
//! The match is split in two, from the partner's counters: the join
//! (`match_lookups_per_s`: lookups over the time batches spent on the
//! index's freshness, a refresh when one was due or else a check of the
//! partner's write count, and on the probes) and storing what it found
//! (`store_matched_per_s`: matched rows over the time of staging them
//! with their consent check, and of completion; each batch's staging is
//! timed from its call, so a batch waiting for another's write counts
//! the wait). `match_with_store_per_s` is the whole match's rate.
//! `match_cpu_lookups_per_s` is the join with its probes counted in
//! thread CPU time. The index's refreshes during the upload, by batches
//! and by its poll for other processes' changes, are counted apart
//! (`index_refreshes`, `index_refresh_s`): the poll runs on its own
//! clock, four times a second while batches arrive, whatever their size.
//!
//! Prints `name: value` lines, `oprf_floor_ratio` last; set-up progress
//! on stderr. Nothing is asserted about speed.

use crate::bench::oprf::{bench_oprf, BenchOptions};
use crate::upload::{UploadJob, UploadReport};
use accord_crypto::oprf::{input_for_phone, OprfPurpose};
use accord_crypto::token::BearerToken;
use accord_domain::{PhoneNumber, SystemClock};
use accord_keyd::{ClientKind, HttpOprf, KeydConfig, Oprf};
use accord_storage::Db;
use rand::RngCore;
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct AudienceBenchOptions {
    pub rows: u64,
    pub users: u64,
    pub database_url: Option<String>,
    /// Seconds of the floor's measurements.
    pub floor_seconds: u64,
}

/// The figures.
#[derive(Clone, Debug)]
pub struct AudienceReport {
    pub rows: u64,
    pub users: u64,
    pub backend: &'static str,
    pub valid_rows: u64,
    pub rejected: u64,
    pub pseudonyms: u64,
    pub expected_members: u64,
    pub members: u64,
    pub parse_per_s: f64,
    pub oprf_per_s: f64,
    pub upload_per_s: f64,
    pub match_lookups_per_s: f64,
    /// The hash join's probes alone (no reads, no stores).
    pub probe_lookups_per_s: f64,
    /// The join again, its probes counted in their thread CPU time (the
    /// work, without the waits for a core that the other stages cause).
    pub match_cpu_lookups_per_s: f64,
    pub probe_cpu_s: f64,
    /// Seconds of the match's parts: the join (index refreshes before
    /// batches, probes), then storing what it found (staging matched rows
    /// with their consent check, completion).
    pub refresh_s: f64,
    pub probe_s: f64,
    pub stage_matched_s: f64,
    pub complete_s: f64,
    pub matched_rows: u64,
    /// Matched rows stored (staged and made members) per second.
    pub store_matched_per_s: f64,
    /// Lookups per second of the whole match, storing included.
    pub match_with_store_per_s: f64,
    /// The uploader's wait for `complete` (the completion, the size's
    /// release and the answer).
    pub complete_wall_s: f64,
    /// The eligible index: its build before the upload, its entries and
    /// size, and its reads during the upload (partitions marked changed).
    pub index_build_s: f64,
    pub index_entries: u64,
    pub index_mb: f64,
    /// The process's anonymous memory on 2 MB pages once the index is
    /// built (the index asks for them; the kernel may not have them).
    pub index_huge_pages_mb: f64,
    pub index_partitions_reread: u64,
    /// Refreshes of the index during the upload (batches' and the poll's)
    /// and their time.
    pub index_refreshes: u64,
    pub index_refresh_s: f64,
    pub total_per_s: f64,
    pub seed_per_s: f64,
    pub peak_rss_mb: f64,
    pub oprf_endpoint_per_s: f64,
    /// The client path before and after the upload; the floor is their mean.
    pub oprf_floor_before_per_s: f64,
    pub oprf_floor_after_per_s: f64,
    pub oprf_floor_per_s: f64,
}

impl fmt::Display for AudienceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "backend: {}", self.backend)?;
        writeln!(f, "rows: {}", self.rows)?;
        writeln!(f, "eligible_users: {}", self.users)?;
        writeln!(f, "valid_rows: {}", self.valid_rows)?;
        writeln!(f, "rejected_rows: {}", self.rejected)?;
        writeln!(f, "pseudonyms: {}", self.pseudonyms)?;
        writeln!(f, "expected_members: {}", self.expected_members)?;
        writeln!(f, "members: {}", self.members)?;
        writeln!(f, "seed_eligible_per_s: {:.0}", self.seed_per_s)?;
        writeln!(f, "parse_per_s: {:.0}", self.parse_per_s)?;
        writeln!(f, "oprf_per_s: {:.0}", self.oprf_per_s)?;
        writeln!(f, "upload_per_s: {:.0}", self.upload_per_s)?;
        writeln!(f, "match_lookups_per_s: {:.0}", self.match_lookups_per_s)?;
        writeln!(f, "probe_lookups_per_s: {:.0}", self.probe_lookups_per_s)?;
        writeln!(
            f,
            "match_cpu_lookups_per_s: {:.0}",
            self.match_cpu_lookups_per_s
        )?;
        writeln!(f, "match_refresh_s: {:.3}", self.refresh_s)?;
        writeln!(f, "match_probe_s: {:.3}", self.probe_s)?;
        writeln!(f, "match_probe_cpu_s: {:.3}", self.probe_cpu_s)?;
        writeln!(f, "match_stage_matched_s: {:.3}", self.stage_matched_s)?;
        writeln!(f, "match_complete_s: {:.3}", self.complete_s)?;
        writeln!(f, "matched_rows: {}", self.matched_rows)?;
        writeln!(f, "store_matched_per_s: {:.0}", self.store_matched_per_s)?;
        writeln!(
            f,
            "match_with_store_per_s: {:.0}",
            self.match_with_store_per_s
        )?;
        writeln!(f, "complete_wall_s: {:.3}", self.complete_wall_s)?;
        writeln!(f, "index_build_s: {:.1}", self.index_build_s)?;
        writeln!(f, "index_entries: {}", self.index_entries)?;
        writeln!(f, "index_mb: {:.1}", self.index_mb)?;
        writeln!(f, "index_huge_pages_mb: {:.1}", self.index_huge_pages_mb)?;
        writeln!(
            f,
            "index_partitions_reread: {}",
            self.index_partitions_reread
        )?;
        writeln!(f, "index_refreshes: {}", self.index_refreshes)?;
        writeln!(f, "index_refresh_s: {:.3}", self.index_refresh_s)?;
        writeln!(f, "total_per_s: {:.0}", self.total_per_s)?;
        writeln!(f, "peak_rss_mb: {:.1}", self.peak_rss_mb)?;
        writeln!(f, "oprf_endpoint_per_s: {:.0}", self.oprf_endpoint_per_s)?;
        writeln!(
            f,
            "oprf_floor_before_per_s: {:.0}",
            self.oprf_floor_before_per_s
        )?;
        writeln!(
            f,
            "oprf_floor_after_per_s: {:.0}",
            self.oprf_floor_after_per_s
        )?;
        writeln!(f, "oprf_floor_per_s: {:.0}", self.oprf_floor_per_s)?;
        write!(
            f,
            "oprf_floor_ratio: {:.2}",
            self.oprf_per_s / self.oprf_floor_per_s
        )
    }
}

fn s<E: fmt::Display>(e: E) -> String {
    e.to_string()
}

/// The number of customer `i` (distinct for every `i` below 10^8).
fn number(i: u64) -> String {
    format!("+62812{:08}", i % 100_000_000)
}

/// Whether customer `i` is a bad row (about 3%).
fn bad(i: u64) -> bool {
    i % 33 == 7
}

/// Whether customer `i` is among the partner's eligible users (30%).
fn overlaps(i: u64) -> bool {
    i % 10 < 3 && !bad(i)
}

/// Writes the list, as a business would export it.
fn write_list(path: &std::path::Path, rows: u64) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(out, "phone,email,fn,ln,country,segment")?;
    for i in 0..rows {
        let n = i % 100_000_000;
        let (a, b) = (n / 10_000, n % 10_000);
        let email = if i % 3 == 0 {
            format!(" Customer.{i}@Example.COM ")
        } else {
            String::new()
        };
        if bad(i) {
            writeln!(out, "12345,not-an-email,Bad,Row,,x")?;
            continue;
        }
        match i % 4 {
            0 => writeln!(out, "+62812{n:08},{email},Ana,Lee,,gold")?,
            1 => writeln!(out, "0812-{a:04}-{b:04},{email},Budi,S,ID,silver")?,
            2 => writeln!(out, "\"+62 812 {a:04} {b:04}\",{email},Citra,W,,")?,
            _ => writeln!(out, "(0812) {a:04}-{b:04},{email},Dewi,P,,bronze")?,
        }
    }
    out.flush()
}

/// Seeds the eligible set: the overlap's real pseudonyms and random ones.
async fn seed(db: &Db, oprf: &dyn Oprf, rows: u64, users: u64) -> Result<(u64, Duration), String> {
    let started = Instant::now();
    let overlap: Vec<PhoneNumber> = (0..rows)
        .filter(|&i| overlaps(i))
        .map(|i| PhoneNumber::parse(&number(i), None).map_err(s))
        .collect::<Result<_, _>>()?;
    let expected = overlap.len() as u64;
    if expected > users {
        return Err("--users must be at least 30% of --rows".into());
    }
    eprintln!("seeding {users} eligible users ({expected} from the list, through the key service)");
    let mut real = Vec::with_capacity(overlap.len());
    for chunk in overlap.chunks(accord_crypto::oprf::MAX_BATCH) {
        let inputs: Vec<Vec<u8>> = chunk.iter().map(input_for_phone).collect();
        let ps = oprf
            .pseudonyms(OprfPurpose::Coordination, None, &inputs)
            .await
            .map_err(|e| format!("overlap pseudonyms: {e}"))?;
        real.extend(ps.iter().map(|p| p.as_bytes().to_vec()));
    }
    drop(overlap);
    const PER_STATEMENT: usize = 500;
    const PER_TX: u64 = 100_000;
    let sql = {
        let mut q = String::from(
            "INSERT INTO records (pseudonym, purpose, devices, ledger_ref, received_at) VALUES ",
        );
        for i in 0..PER_STATEMENT {
            if i > 0 {
                q.push(',');
            }
            q.push_str(&format!("(${},'ads','[]','null',0)", i + 1));
        }
        q
    };
    let mut rng = rand::rngs::OsRng;
    let mut real = real.into_iter();
    let mut done = 0u64;
    let mut last_report = Instant::now();
    while done < users {
        let mut tx = db.pool.begin().await.map_err(s)?;
        let end = (done + PER_TX).min(users);
        while done < end {
            let n = (end - done).min(PER_STATEMENT as u64) as usize;
            let values: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    real.next().unwrap_or_else(|| {
                        let mut b = vec![0u8; 32];
                        rng.fill_bytes(&mut b);
                        b
                    })
                })
                .collect();
            if n == PER_STATEMENT {
                let mut q = sqlx::query(&sql);
                for v in values {
                    q = q.bind(v);
                }
                q.execute(&mut *tx).await.map_err(s)?;
            } else {
                for v in values {
                    sqlx::query(
                        "INSERT INTO records (pseudonym, purpose, devices, ledger_ref, received_at) \
                         VALUES ($1, 'ads', '[]', 'null', 0)",
                    )
                    .bind(v)
                    .execute(&mut *tx)
                    .await
                    .map_err(s)?;
                }
            }
            done += n as u64;
        }
        tx.commit().await.map_err(s)?;
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!("  {done} of {users} eligible users");
            last_report = Instant::now();
        }
    }
    Ok((expected, started.elapsed()))
}

/// Runs the bench (see the module docs).
pub async fn run(o: AudienceBenchOptions) -> Result<AudienceReport, String> {
    if o.rows == 0 || o.rows > 100_000_000 {
        return Err("--rows must be 1 to 100,000,000".into());
    }
    // 1. The floor.
    eprintln!("measuring the OPRF floor (accord bench oprf)");
    let floor = bench_oprf(BenchOptions {
        duration: Duration::from_secs(o.floor_seconds.max(1)),
        ..Default::default()
    })
    .await
    .map_err(s)?;

    // 2. The services.
    let dir = tempfile::tempdir().map_err(s)?;
    let (location, pg_name) = match &o.database_url {
        Some(url) => {
            let name = format!("accord_bench_audience_{}", std::process::id());
            let base = url.trim_end_matches('/');
            (format!("{base}/{name}"), Some((base.to_owned(), name)))
        }
        None => (dir.path().display().to_string(), None),
    };
    let result = services_and_upload(&o, &location, dir.path(), floor).await;
    if let Some((base, name)) = pg_name {
        for service in ["keyd", "partner"] {
            let _ = accord_storage::db::drop_pg_database(
                &format!("{base}/postgres"),
                &format!("{name}_{service}"),
            )
            .await;
        }
    }
    result
}

async fn services_and_upload(
    o: &AudienceBenchOptions,
    location: &str,
    dir: &std::path::Path,
    floor: crate::bench::oprf::BenchReport,
) -> Result<AudienceReport, String> {
    let admin = BearerToken::generate();
    let (stopper, stop) = accord_http::stop_signal();
    let keyd = accord_keyd::Application::build(accord_keyd::Settings {
        location: location.to_owned(),
        key_dir: dir.join("keys"),
        master: None,
        admin_token: admin.hash(),
        clock: Arc::new(SystemClock),
        config: KeydConfig::default(),
    })
    .await
    .map_err(s)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(s)?;
    let keyd_url = format!("http://{}", listener.local_addr().map_err(s)?);
    let mut tasks = keyd.start(listener, &stop);
    let partner = accord_partner::Application::build(accord_partner::Settings::new(
        location.to_owned(),
        admin.hash(),
        Arc::new(SystemClock),
        b"bench feed secret".to_vec(),
    ))
    .await
    .map_err(s)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(s)?;
    let partner_url = format!("http://{}", listener.local_addr().map_err(s)?);
    tasks.extend(partner.start(listener, &stop));

    let quota = BTreeMap::from([(OprfPurpose::Coordination, accord_storage::keyd::MAX_QUOTA)]);
    let (_, partner_token) = keyd
        .service()
        .create_client("partner", ClientKind::Partner, &quota)
        .await
        .map_err(s)?;
    let (_, business_token) = keyd
        .service()
        .create_client("business", ClientKind::Business, &quota)
        .await
        .map_err(s)?;
    let (_, adv_token) = partner
        .service()
        .create_advertiser("Bench shop")
        .await
        .map_err(s)?;
    let adv = partner
        .service()
        .authenticate_advertiser(&adv_token)
        .await
        .map_err(s)?
        .ok_or("the advertiser")?;
    partner
        .service()
        .create_audience(&adv, "customers")
        .await
        .map_err(s)?;

    // 3. The list.
    let list = dir.join("customers.csv");
    eprintln!("writing {} rows to {}", o.rows, list.display());
    write_list(&list, o.rows).map_err(s)?;

    // 4. The eligible set.
    let partner_oprf = HttpOprf::new(
        keyd_url.clone(),
        SecretString::from(partner_token.reveal().to_owned()),
    );
    let db = Db::open_service(location, "partner").await.map_err(s)?;
    let (expected, seeded_in) = seed(&db, &partner_oprf, o.rows, o.users).await?;
    // The fixture settles before anything is measured: SQLite copies its
    // WAL back now rather than during the upload; PostgreSQL gets fresh
    // statistics for the eligible set.
    eprintln!("settling the fixture");
    let settle = if location.starts_with("postgres") {
        "VACUUM ANALYZE records"
    } else {
        "PRAGMA wal_checkpoint(TRUNCATE)"
    };
    sqlx::query(settle).execute(&db.pool).await.map_err(s)?;
    // The partner's standing index of the eligible set, built as a fresh
    // partner builds it on its first batch; the upload then probes it.
    eprintln!("building the partner's eligible index");
    let t = Instant::now();
    partner
        .service()
        .refresh_eligible_index()
        .await
        .map_err(s)?;
    let index_build = t.elapsed();
    let index_huge_pages_mb = crate::bench::relay::anon_huge_pages_mb();
    let before = partner
        .service()
        .eligible_index_stats()
        .ok_or("no audiences")?;

    // 5. The upload.
    let job = UploadJob {
        file: list,
        region: Some("ID".into()),
        rejects: dir.join("rejects.csv"),
        audience: "customers".into(),
        partner: accord_client::Client::new(&partner_url).with_token(adv_token),
        oprf: Arc::new(HttpOprf::new(
            keyd_url,
            SecretString::from(business_token.reveal().to_owned()),
        )),
        progress: true,
    };
    let started = Instant::now();
    let r: UploadReport = crate::upload::run(job).await.map_err(s)?;
    let total = started.elapsed();
    let members = partner.service().audience_stats().await.map_err(s)?.members;
    let counters = partner.service().match_counters().ok_or("no audiences")?;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let probe_cpu = Duration::from_nanos(load(&counters.probe_cpu_ns));
    let (lookups, refresh, probe, stage, finish, matched_rows) = (
        load(&counters.lookups),
        Duration::from_nanos(load(&counters.refresh_ns)),
        Duration::from_nanos(load(&counters.probe_ns)),
        Duration::from_nanos(load(&counters.stage_ns)),
        Duration::from_nanos(load(&counters.finish_ns)),
        load(&counters.matched_rows),
    );
    let index = partner
        .service()
        .eligible_index_stats()
        .ok_or("no audiences")?;
    stopper.stop();
    for t in tasks {
        let _ = t.await;
    }
    drop(db);
    eprintln!("measuring the OPRF floor again (accord bench oprf)");
    let floor_after = bench_oprf(BenchOptions {
        duration: Duration::from_secs(o.floor_seconds.max(1)),
        ..Default::default()
    })
    .await
    .map_err(s)?;
    let per_s = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    Ok(AudienceReport {
        rows: o.rows,
        users: o.users,
        backend: if location.starts_with("postgres") {
            "postgres"
        } else {
            "sqlite"
        },
        valid_rows: r.rows,
        rejected: r.summary.rejected,
        pseudonyms: r.pseudonyms,
        expected_members: expected,
        members,
        parse_per_s: per_s(r.summary.rows, r.parse),
        oprf_per_s: per_s(r.pseudonyms, r.oprf),
        upload_per_s: per_s(r.rows, r.upload),
        match_lookups_per_s: per_s(lookups, refresh + probe),
        probe_lookups_per_s: per_s(lookups, probe),
        match_cpu_lookups_per_s: per_s(lookups, refresh + probe_cpu),
        probe_cpu_s: probe_cpu.as_secs_f64(),
        refresh_s: refresh.as_secs_f64(),
        probe_s: probe.as_secs_f64(),
        matched_rows,
        store_matched_per_s: per_s(matched_rows, stage + finish),
        match_with_store_per_s: per_s(lookups, refresh + probe + stage + finish),
        stage_matched_s: stage.as_secs_f64(),
        complete_s: finish.as_secs_f64(),
        complete_wall_s: r.matched.as_secs_f64(),
        index_build_s: index_build.as_secs_f64(),
        index_entries: index.entries,
        index_mb: index.bytes as f64 / 1e6,
        index_huge_pages_mb,
        index_partitions_reread: index.partitions_read - before.partitions_read,
        index_refreshes: index.refreshes - before.refreshes,
        index_refresh_s: Duration::from_nanos(index.refresh_ns - before.refresh_ns).as_secs_f64(),
        total_per_s: per_s(r.summary.rows, total),
        seed_per_s: per_s(o.users, seeded_in),
        peak_rss_mb: crate::bench::relay::peak_rss_mb(),
        oprf_endpoint_per_s: floor.endpoint_elements_per_s,
        oprf_floor_before_per_s: floor.client_path_per_s,
        oprf_floor_after_per_s: floor_after.client_path_per_s,
        oprf_floor_per_s: (floor.client_path_per_s + floor_after.client_path_per_s) / 2.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_has_every_format_and_about_three_percent_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.csv");
        write_list(&p, 3_300).unwrap();
        let list = accord_domain::audience::CustomerList::new(
            std::io::BufReader::new(std::fs::File::open(&p).unwrap()),
            Some("ID"),
        )
        .unwrap();
        let mut summary = accord_domain::audience::Summary::default();
        for row in list {
            summary.add(&row.unwrap());
        }
        assert_eq!(summary.rows, 3_300);
        assert_eq!(summary.rejected, 100, "{summary:?}");
        assert_eq!(summary.valid_phones, 3_200);
        assert_eq!(summary.valid_emails, 1_100, "{summary:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_run_matches_exactly_the_overlap() {
        let r = run(AudienceBenchOptions {
            rows: 3_000,
            users: 5_000,
            database_url: None,
            floor_seconds: 1,
        })
        .await
        .unwrap();
        assert_eq!(r.rejected, 91);
        assert_eq!(r.members, r.expected_members);
        assert!(r.expected_members > 800, "{r}");
        assert!(r
            .to_string()
            .lines()
            .last()
            .unwrap()
            .starts_with("oprf_floor_ratio: "));
    }
}
