use crate::error::{CliError, CliResult};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// A customer-list upload (custom audiences) through the real key
    /// service and partner: a generated list of --rows customers (mixed
    /// formats, about 3% bad rows) against --users eligible partner users
    /// (30% of the list among them); prints records/s per stage,
    /// `peak_rss_mb`, and last `oprf_floor_ratio` (the OPRF stage against
    /// `bench oprf`'s client path, measured in the same run). Build with
    /// --release.
    Audience {
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        #[arg(long, default_value_t = 10_000_000)]
        users: u64,
        /// A PostgreSQL server (the bench makes and drops its own
        /// databases); default SQLite in a temporary directory.
        #[arg(long)]
        database_url: Option<String>,
        /// Seconds of each floor measurement.
        #[arg(long, default_value_t = 4)]
        floor_seconds: u64,
    },
    /// The messenger's pages (privacy centre, business console, operator
    /// console, sign-in) with many users in the database: p50, p99 and
    /// max milliseconds per page from a client on loopback; prints `name:
    /// value` lines, set-up progress on stderr. Build with --release.
    Pages {
        /// Accounts in the database (registered through the API first).
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        /// Users signed in to the privacy centre; requests go round them.
        #[arg(long, default_value_t = 100)]
        sessions: usize,
        /// Requests per page.
        #[arg(long, default_value_t = 2_000)]
        requests: usize,
        /// Concurrent closed-loop clients.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// A PostgreSQL server (the bench makes and drops its own
        /// database); default SQLite in a temporary directory.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Consent changes (grant, withdraw) through the messenger's HTTP API
    /// on loopback, from closed-loop clients that never share a user:
    /// `consent_changes_per_s`, `p50_ms`, `p99_ms`, `errors`; prints
    /// `name: value` lines, set-up progress on stderr. Build with --release
    /// for meaningful figures.
    Consent {
        /// Accounts that change their consent (registered and set up
        /// before the measurement).
        #[arg(long, default_value_t = 400)]
        users: usize,
        /// Concurrent clients, each waiting for its answer before it sends
        /// again (at most one per user).
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Seconds of the measured window (after a 1 s warm-up).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// A PostgreSQL server, e.g. postgres://postgres@127.0.0.1:5432: the
        /// bench creates a database of its own there and drops it at the
        /// end. Default: SQLite in a temporary data directory.
        #[arg(long)]
        database_url: Option<String>,
        /// How often the messenger signs checkpoints of the consent log's
        /// grown shards during the run (production: every 15 s; the
        /// default here is stricter, so that signing is measured).
        #[arg(long, default_value_t = 1000)]
        checkpoint_every_ms: u64,
    },
    /// Single-core blind_evaluate cost against the batch endpoint's
    /// end-to-end throughput over loopback HTTP on all cores; prints
    /// `name: value` lines, the last one `ratio: X.XX`. Build with
    /// --release for meaningful figures.
    Oprf {
        /// Seconds the HTTP clients keep posting.
        #[arg(long, default_value_t = 4)]
        seconds: u64,
    },
    /// The E2E relay through the real server over loopback (SQLite,
    /// durable group commits): envelopes/s, send-to-delivery p50/p99 at a
    /// paced rate, and peak RSS with many idle WebSockets; prints
    /// `name: value` lines. Build with --release for meaningful figures.
    Relay {
        /// Seconds of the throughput phase and of the latency phase each.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Paced rate of the latency phase, envelopes/s.
        #[arg(long, default_value_t = 5_000)]
        latency_rate: u64,
        /// Idle WebSocket connections to hold open.
        #[arg(long, default_value_t = 10_000)]
        idle_connections: usize,
        /// Concurrent senders, each waiting for its 202 before the next
        /// send (enough to keep the group commit's batches full).
        #[arg(long, default_value_t = 128)]
        senders: usize,
        /// Devices per recipient account (envelopes per send).
        #[arg(long, default_value_t = 8)]
        devices_per_recipient: usize,
        /// Hold the idle connections in this process too (the figure
        /// then counts both ends) instead of a child process.
        #[arg(long)]
        in_process: bool,
    },
    /// The key directory (key transparency): the time to publish an epoch
    /// of 1,000 and of --large account changes, one lookup with its proof
    /// verification, the proof sizes; prints `name: value` lines. Build
    /// with --release for meaningful figures.
    Kt {
        /// Changes in the large epoch.
        #[arg(long, default_value_t = 100_000)]
        large: usize,
        /// Lookups to average over.
        #[arg(long, default_value_t = 200)]
        lookups: usize,
    },
    /// One business agent (the real `accord business agent`, a child
    /// process) sends utility templates to --recipients opted-in users, a
    /// new Olm session each, through the real messenger on loopback;
    /// prints `messages_per_s`, `p99_ms` (agent accept to the recipient's
    /// WebSocket) and the agent's `rss_mb`. Build with --release.
    Business {
        #[arg(long, default_value_t = 10_000)]
        recipients: usize,
        /// Concurrent clients of the agent's local API.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// (Used by `bench business`.) Holds the recipients' WebSockets
    /// (tokens on stdin) and prints each first envelope's arrival.
    #[command(hide = true)]
    BusinessRecipients {
        #[arg(long)]
        url: String,
    },
    /// (Used by `bench relay`.) Opens idle WebSockets with the device
    /// tokens read from stdin and holds them until stdin closes.
    #[command(hide = true)]
    RelayIdleClient {
        #[arg(long)]
        url: String,
        #[arg(long)]
        count: usize,
    },
}

pub async fn run(b: BenchCmd) -> CliResult {
    match b {
        BenchCmd::Audience {
            rows,
            users,
            database_url,
            floor_seconds,
        } => {
            if cfg!(debug_assertions) {
                eprintln!("warning: debug build; run `cargo run --release -- bench audience` for real figures");
            }
            if let Some(url) = &database_url {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(CliError::Input(
                        "--database-url must be a postgres:// URL".into(),
                    ));
                }
            }
            let report =
                crate::bench::audience::run(crate::bench::audience::AudienceBenchOptions {
                    rows,
                    users,
                    database_url,
                    floor_seconds: floor_seconds.clamp(1, 60),
                })
                .await
                .map_err(CliError::Input)?;
            println!("{report}");
        }
        BenchCmd::Consent {
            users,
            clients,
            seconds,
            database_url,
            checkpoint_every_ms,
        } => {
            if cfg!(debug_assertions) {
                eprintln!("warning: debug build; run `cargo run --release -- bench consent` for real figures");
            }
            let max = crate::bench::consent::MAX_USERS;
            if users == 0 || users > max {
                return Err(CliError::Input(format!("--users must be 1 to {max}")));
            }
            if clients == 0 {
                return Err(CliError::Input("--clients must be at least 1".into()));
            }
            if let Some(url) = &database_url {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(CliError::Input(
                        "--database-url must be a postgres:// URL".into(),
                    ));
                }
            }
            let opts = crate::bench::consent::ConsentBenchOptions {
                users,
                clients: clients.min(1_000),
                duration: std::time::Duration::from_secs(seconds.clamp(1, 300)),
                database_url,
                checkpoint_every: std::time::Duration::from_millis(
                    checkpoint_every_ms.clamp(100, 60_000),
                ),
                ..Default::default()
            };
            let report = crate::bench::consent::bench_consent(opts)
                .await
                .map_err(|e| CliError::Internal(anyhow::anyhow!("{e}")))?;
            print!("{report}");
        }
        BenchCmd::Oprf { seconds } => {
            if cfg!(debug_assertions) {
                eprintln!("warning: debug build; run `cargo run --release -- bench oprf` for real figures");
            }
            let opts = crate::bench::oprf::BenchOptions {
                duration: std::time::Duration::from_secs(seconds.clamp(1, 60)),
                ..Default::default()
            };
            let report = crate::bench::oprf::bench_oprf(opts)
                .await
                .map_err(|e| CliError::Internal(anyhow::anyhow!("{e}")))?;
            print!("{report}");
        }
        BenchCmd::Relay {
            seconds,
            latency_rate,
            idle_connections,
            senders,
            devices_per_recipient,
            in_process,
        } => {
            if cfg!(debug_assertions) {
                eprintln!("warning: debug build; run `cargo run --release -- bench relay` for real figures");
            }
            let opts = crate::bench::relay::RelayBenchOptions {
                duration: std::time::Duration::from_secs(seconds.clamp(1, 60)),
                latency_rate: latency_rate.max(1),
                idle_connections,
                senders: senders.clamp(1, 1_000),
                devices_per_recipient: devices_per_recipient.clamp(1, 50),
                idle_client_exe: if in_process {
                    None
                } else {
                    Some(std::env::current_exe().map_err(|e| CliError::Internal(e.into()))?)
                },
                ..Default::default()
            };
            let report = crate::bench::relay::bench_relay(opts)
                .await
                .map_err(|e| CliError::Internal(anyhow::anyhow!("{e}")))?;
            print!("{report}");
        }
        BenchCmd::Pages {
            users,
            sessions,
            requests,
            clients,
            database_url,
        } => {
            if cfg!(debug_assertions) {
                eprintln!(
                    "warning: debug build; run `cargo run --release -- bench pages` for real figures"
                );
            }
            let report = crate::bench::pages::run(crate::bench::pages::PagesBenchOptions {
                users,
                sessions,
                requests,
                clients,
                database_url,
            })
            .await
            .map_err(CliError::Input)?;
            println!("{report}");
        }
        BenchCmd::Kt { large, lookups } => {
            if cfg!(debug_assertions) {
                eprintln!(
                    "warning: debug build; run `cargo run --release -- bench kt` for real figures"
                );
            }
            let report = crate::bench::kt::bench_kt(crate::bench::kt::KtBenchOptions {
                large: large.clamp(1, 1_000_000),
                lookups: lookups.clamp(1, 100_000),
            })
            .await
            .map_err(|e| CliError::Internal(anyhow::anyhow!("{e}")))?;
            print!("{report}");
        }
        BenchCmd::Business {
            recipients,
            concurrency,
        } => {
            if cfg!(debug_assertions) {
                eprintln!("warning: debug build; run `cargo run --release -- bench business` for real figures");
            }
            if recipients == 0 || recipients > 100_000 {
                return Err(CliError::Input("--recipients must be 1 to 100000".into()));
            }
            if concurrency == 0 || concurrency > 1_024 {
                return Err(CliError::Input("--concurrency must be 1 to 1024".into()));
            }
            let exe = std::env::current_exe().map_err(|e| CliError::Internal(e.into()))?;
            let report =
                crate::bench::business::run(crate::bench::business::BusinessBenchOptions {
                    recipients,
                    concurrency,
                    exe,
                    sample: 20.min(recipients),
                })
                .await
                .map_err(|e| CliError::Internal(anyhow::anyhow!(e)))?;
            print!("{report}");
        }
        BenchCmd::BusinessRecipients { url } => {
            crate::bench::business::recipients(&url)
                .await
                .map_err(|e| CliError::Internal(anyhow::anyhow!("{e}")))?;
        }
        BenchCmd::RelayIdleClient { url, count } => {
            crate::bench::relay::idle_client(&url, count)
                .await
                .map_err(|e| CliError::Internal(anyhow::anyhow!("{e}")))?;
        }
    }
    Ok(())
}
