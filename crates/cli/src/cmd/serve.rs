//! `accord serve`: the services of this process, each on its own listener
//! and with its own database. Default: the messenger and the key service
//! together ("all-in-one"), the messenger using the key service in
//! process, through the same OPRF path and quotas as over HTTP.

use super::DataArgs;
use crate::error::{CliError, CliResult};
use crate::session::write_private;
use accord_crypto::token::{BearerToken, TokenHash};
use accord_domain::{Clock, ConsentProfile, SimulatedClock, SystemClock};
use accord_keyd::{HttpOprf, KeyService, KeydConfig, SqlKeyStore};
use accord_messenger::keys::{HttpCredentials, KeyAccess};
use accord_messenger::verifier::{DevVerifier, Verifier, WebhookVerifier};
use accord_messenger::{AppState, Messenger, MessengerConfig};
use accord_storage::{Db, SqlMessengerStore};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    Messenger,
    Keyd,
    Partner,
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Services to run in this process.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "messenger,keyd,partner"
    )]
    pub services: Vec<Service>,
    /// Address of the messenger.
    #[arg(long, env = "ACCORD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the key service.
    #[arg(long, env = "ACCORD_KEYD_LISTEN", default_value = "127.0.0.1:8081")]
    pub keyd_listen: SocketAddr,
    /// Address of the partner service.
    #[arg(long, env = "ACCORD_PARTNER_LISTEN", default_value = "127.0.0.1:8082")]
    pub partner_listen: SocketAddr,
    /// A partner service in another process, for the messenger's feed.
    #[arg(long, env = "ACCORD_PARTNER_URL")]
    pub partner_url: Option<String>,
    /// The coordination feed's HMAC secret, shared by messenger and partner
    /// (default: <data-dir>/feed.secret, created on first start).
    #[arg(long, env = "ACCORD_FEED_SECRET", hide_env_values = true)]
    pub feed_secret: Option<String>,
    /// Consent profile for policies published without one.
    #[arg(long, env = "ACCORD_PROFILE", default_value = "strict", value_parser = parse_profile)]
    pub profile: ConsentProfile,
    /// Let the operator move time forward (POST /v1/admin/clock). For demos and tests.
    #[arg(long)]
    pub simulated_clock: bool,
    /// Local development: verification codes are returned in the API response
    /// instead of being sent by SMS.
    #[arg(long)]
    pub dev: bool,
    /// SMS gateway webhook that receives {"to", "text"} for each code.
    #[arg(long, env = "ACCORD_SMS_WEBHOOK")]
    pub sms_webhook: Option<String>,
    /// The operator's admin token for every service here (default:
    /// <data-dir>/admin.token, created on first start).
    #[arg(long, env = "ACCORD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A key service in another process, for a messenger run without `keyd`.
    #[arg(long, env = "ACCORD_KEYD_URL")]
    pub keyd_url: Option<String>,
    /// The messenger's client token at that key service.
    #[arg(long, env = "ACCORD_KEYD_TOKEN", hide_env_values = true)]
    pub keyd_token: Option<String>,
    /// That key service's admin token (to issue device credentials).
    #[arg(long, env = "ACCORD_KEYD_ADMIN_TOKEN", hide_env_values = true)]
    pub keyd_admin_token: Option<String>,
    /// The key service's URL as devices should reach it (default: its listen address).
    #[arg(long, env = "ACCORD_KEYD_PUBLIC_URL")]
    pub keyd_public_url: Option<String>,
    /// NATS server (e.g. nats://127.0.0.1:4222) for several messenger
    /// nodes on one PostgreSQL database: a commit on one node wakes the
    /// connections held by the others. Default: one node, in process.
    #[arg(long, env = "ACCORD_NATS_URL")]
    pub nats_url: Option<String>,
    /// With --nats-url: the subject prefix of wake-ups
    /// (`<prefix>.<device>`), the same on every node of a deployment.
    #[arg(long, env = "ACCORD_NATS_PREFIX", default_value = "accord.wake")]
    pub nats_prefix: String,
    /// With --nats-url: seconds between the mailbox re-reads every
    /// connection makes in any case, the longest a lost wake-up (core NATS
    /// delivers at most once) can delay a delivery.
    #[arg(long, env = "ACCORD_NATS_RESYNC_S", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub nats_resync_s: u64,
}

pub fn parse_profile(s: &str) -> Result<ConsentProfile, String> {
    s.parse()
        .map_err(|e: accord_domain::PolicyError| e.to_string())
}

/// Reads the admin token from the data directory, creating it on first start.
pub fn admin_token_in(dir: &Path) -> CliResult<String> {
    let path = dir.join("admin.token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(t.trim().to_owned());
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Input(format!("cannot create {}: {e}", dir.display())))?;
    let t = BearerToken::generate();
    write_private(&path, t.reveal().as_bytes())?;
    Ok(t.reveal().to_owned())
}

/// Reads the feed secret from the data directory, creating it on first start.
pub fn feed_secret_in(dir: &Path) -> CliResult<Vec<u8>> {
    let path = dir.join("feed.secret");
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(t.trim().as_bytes().to_vec());
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Input(format!("cannot create {}: {e}", dir.display())))?;
    let t = BearerToken::generate();
    write_private(&path, t.reveal().as_bytes())?;
    Ok(t.reveal().as_bytes().to_vec())
}

/// Opens the partner service: its own database.
pub async fn open_partner(
    data: &DataArgs,
    clock: Arc<dyn Clock>,
    secret: Vec<u8>,
) -> CliResult<accord_partner::PartnerService> {
    let db = Db::open_service(&data.location(), "partner").await?;
    let store = accord_storage::partner::SqlPartnerStore::new(db).await?;
    Ok(accord_partner::PartnerService::new(
        Arc::new(store),
        clock,
        secret,
    ))
}

fn internal(e: impl std::fmt::Display) -> CliError {
    CliError::Internal(anyhow::anyhow!("{e}"))
}

/// Opens the key service: its own database, keys sealed under
/// `<data-dir>/keyd.master.key`.
pub async fn open_keyd(data: &DataArgs, clock: Arc<dyn Clock>) -> CliResult<KeyService> {
    std::fs::create_dir_all(&data.data_dir)
        .map_err(|e| CliError::Input(format!("cannot create {}: {e}", data.data_dir.display())))?;
    let master =
        accord_keyd::master_key::load_or_create_master_key(&data.data_dir).map_err(internal)?;
    let db = Db::open_service(&data.location(), "keyd").await?;
    let store = SqlKeyStore::new(db).await?;
    KeyService::open(Arc::new(store), master, clock, KeydConfig::default())
        .await
        .map_err(internal)
}

/// A named client at an in-process key service, created on first start.
pub async fn keyd_client(
    keyd: &KeyService,
    name: &str,
    kind: accord_keyd::ClientKind,
) -> CliResult<accord_keyd::ClientId> {
    let clients = keyd.clients().await.map_err(internal)?;
    if let Some(c) = clients.iter().find(|c| c.kind == kind && c.name == name) {
        return Ok(c.id);
    }
    let (c, _) = keyd
        .create_client(name, kind, &std::collections::BTreeMap::new())
        .await
        .map_err(internal)?;
    Ok(c.id)
}

/// Key-service access for a messenger in the same process.
pub async fn in_process_keys(keyd: &KeyService, public_url: String) -> CliResult<KeyAccess> {
    KeyAccess::in_process(keyd, public_url)
        .await
        .map_err(internal)
}

/// What a messenger is built from.
pub struct MessengerSetup<'a> {
    /// Data directory or PostgreSQL URL.
    pub location: &'a str,
    pub verifier: Arc<dyn Verifier>,
    pub clock: Arc<dyn Clock>,
    /// The same clock when it is simulated (the admin clock endpoint).
    pub simulated: Option<SimulatedClock>,
    pub admin_token: &'a str,
    pub profile: ConsentProfile,
    pub keys: Option<KeyAccess>,
    /// NATS, to wake connections held by other nodes.
    pub nats: Option<accord_messenger::e2e::wake::NatsConfig>,
}

/// The messenger's state, as `serve` and `demo` build it.
pub async fn messenger_state(setup: MessengerSetup<'_>) -> CliResult<AppState> {
    let MessengerSetup {
        location,
        verifier,
        clock,
        simulated,
        admin_token,
        profile,
        keys,
        nats,
    } = setup;
    let db = Db::open_service(location, "messenger").await?;
    let store = Arc::new(SqlMessengerStore::new(db.clone()).await?);
    let mailboxes = accord_storage::SqlMailboxStore::new(db).await?;
    let wake: Arc<dyn accord_messenger::e2e::wake::Wake> = match nats {
        None => Arc::new(accord_messenger::e2e::wake::LocalWake::default()),
        Some(config) => accord_messenger::e2e::wake::NatsWake::connect(&config)
            .await
            .map_err(|e| CliError::Input(format!("NATS at {}: {e}", config.url)))?,
    };
    let e2e = accord_messenger::e2e::Relay::start_with(
        Arc::new(mailboxes),
        store.clone(),
        clock.clone(),
        accord_messenger::e2e::E2eConfig::default(),
        wake,
    );
    Ok(AppState {
        e2e,
        messenger: Messenger {
            store,
            clock,
            verifier,
            config: MessengerConfig::default(),
            keys,
            auth_cache: Default::default(),
        },
        admin_token: TokenHash::of(admin_token),
        default_profile: profile,
        simulated_clock: simulated,
        feed: None,
    })
}

/// A task of `serve`: it ends with `Ok` or a server's I/O error.
type ServeTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// Runs `step` until `stop` changes: again at once while it reports
/// more work, else after `every`.
fn spawn_loop<F, Fut>(every: Duration, mut stop: watch::Receiver<bool>, mut step: F) -> ServeTask
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    tokio::spawn(async move {
        loop {
            if step().await {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => return Ok(()),
            }
        }
    })
}

/// Computes missing pseudonyms in the background (new users, key
/// rotation), until `stop` changes.
pub fn spawn_pseudonym_refresh(m: Messenger, stop: watch::Receiver<bool>) -> ServeTask {
    spawn_loop(Duration::from_secs(5), stop, move || {
        let m = m.clone();
        async move {
            match m.refresh_pseudonyms(1000).await {
                Ok(r) => r.remaining,
                Err(e) => {
                    tracing::warn!(error = %e, "pseudonym refresh failed; will retry");
                    false
                }
            }
        }
    })
}

/// Retries the key-service revocations of deleted devices' credentials
/// that are still pending (the key service was unreachable when their
/// accounts were deleted), until `stop` changes.
pub fn spawn_revocation_retry(m: Messenger, stop: watch::Receiver<bool>) -> ServeTask {
    spawn_loop(
        accord_messenger::service::REVOCATION_RETRY_EVERY,
        stop,
        move || {
            let m = m.clone();
            async move {
                match m.revoke_pending_credentials().await {
                    // A full run may have left more behind it.
                    Ok(run) => !run.failed && run.revoked > 0,
                    Err(e) => {
                        tracing::warn!(error = %e, "pending credential revocations not read; will retry");
                        false
                    }
                }
            }
        },
    )
}

/// Resolves when `rx` changes (the stop signal of every server here).
async fn until(mut rx: watch::Receiver<bool>) {
    let _ = rx.changed().await;
}

pub async fn run(a: ServeArgs) -> CliResult {
    let run_messenger = a.services.contains(&Service::Messenger);
    let run_keyd = a.services.contains(&Service::Keyd);
    let verifier: Arc<dyn Verifier> = match (a.dev, &a.sms_webhook, run_messenger) {
        (_, _, false) => Arc::new(DevVerifier),
        (true, None, _) => Arc::new(DevVerifier),
        (false, Some(url), _) => Arc::new(WebhookVerifier::new(url.clone())),
        (true, Some(_), _) => return Err(CliError::Input("--dev and --sms-webhook exclude each other".into())),
        (false, None, _) => {
            return Err(CliError::Input(
                "no way to send verification codes: pass --dev for local use (codes come back in the API response) or --sms-webhook URL".into(),
            ))
        }
    };
    let admin_token = match &a.admin_token {
        Some(t) => t.clone(),
        None => admin_token_in(&a.data.data_dir)?,
    };
    let simulated = a.simulated_clock.then(SimulatedClock::following_wall_clock);
    let clock: Arc<dyn Clock> = match &simulated {
        Some(c) => Arc::new(c.clone()),
        None => Arc::new(SystemClock),
    };
    let storage = match &a.data.database_url {
        Some(_) => "PostgreSQL".to_owned(),
        None => format!("SQLite in {}", a.data.data_dir.display()),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let mut keyd = None;
    let mut keyd_url = a.keyd_public_url.clone();
    if run_keyd {
        let service = open_keyd(&a.data, clock.clone()).await?;
        let listener = TcpListener::bind(a.keyd_listen)
            .await
            .map_err(|e| CliError::Input(format!("cannot listen on {}: {e}", a.keyd_listen)))?;
        let addr = listener.local_addr().map_err(internal)?;
        keyd_url.get_or_insert_with(|| format!("http://{addr}"));
        eprintln!("accord: key service listening on http://{addr} ({storage})");
        let app = accord_keyd::router(accord_keyd::AppState {
            service: service.clone(),
            admin_token: TokenHash::of(&admin_token),
        });
        tasks.push(tokio::spawn(accord_keyd::serve(
            listener,
            app,
            until(stop_rx.clone()),
        )));
        keyd = Some(service);
    }

    let feed_secret = match &a.feed_secret {
        Some(s) => s.as_bytes().to_vec(),
        None => feed_secret_in(&a.data.data_dir)?,
    };
    let mut partner_url = a.partner_url.clone();
    if a.services.contains(&Service::Partner) {
        let mut service = open_partner(&a.data, clock.clone(), feed_secret.clone()).await?;
        match (&keyd, &a.keyd_url, &a.keyd_token) {
            (Some(k), _, _) => {
                let id = keyd_client(k, "partner", accord_keyd::ClientKind::Partner).await?;
                service = service.with_oprf(Arc::new(accord_keyd::InProcessOprf::new(k.clone(), id)));
            }
            (None, Some(url), Some(token)) => {
                service = service.with_oprf(Arc::new(HttpOprf::new(url.clone(), secrecy::SecretString::from(token.clone()))));
            }
            _ => eprintln!("accord: warning: the partner has no key service; its users cannot compute pseudonyms"),
        }
        let listener = TcpListener::bind(a.partner_listen)
            .await
            .map_err(|e| CliError::Input(format!("cannot listen on {}: {e}", a.partner_listen)))?;
        let addr = listener.local_addr().map_err(internal)?;
        partner_url.get_or_insert_with(|| format!("http://{addr}"));
        eprintln!("accord: partner listening on http://{addr} ({storage})");
        let app = accord_partner::router(accord_partner::AppState {
            service,
            admin_token: TokenHash::of(&admin_token),
        });
        tasks.push(tokio::spawn(accord_partner::serve(
            listener,
            app,
            until(stop_rx.clone()),
        )));
    }

    if run_messenger {
        let keys = match (&keyd, &a.keyd_url) {
            (Some(k), _) => Some(in_process_keys(k, keyd_url.clone().unwrap_or_default()).await?),
            (None, Some(url)) => {
                let (Some(token), Some(admin)) = (&a.keyd_token, &a.keyd_admin_token) else {
                    return Err(CliError::Input(
                        "--keyd-url needs --keyd-token and --keyd-admin-token".into(),
                    ));
                };
                Some(KeyAccess {
                    oprf: Arc::new(HttpOprf::new(
                        url.clone(),
                        secrecy::SecretString::from(token.clone()),
                    )),
                    devices: Arc::new(HttpCredentials {
                        url: url.clone(),
                        admin_token: secrecy::SecretString::from(admin.clone()),
                        http: reqwest_client(),
                    }),
                    public_url: a.keyd_public_url.clone().unwrap_or_else(|| url.clone()),
                })
            }
            (None, None) => {
                eprintln!(
                    "accord: warning: no key service; pseudonyms and contact discovery are off"
                );
                None
            }
        };
        let mut state = messenger_state(MessengerSetup {
            location: &a.data.location(),
            verifier,
            clock: clock.clone(),
            simulated: simulated.clone(),
            admin_token: &admin_token,
            profile: a.profile,
            keys,
            nats: a
                .nats_url
                .as_deref()
                .map(|url| accord_messenger::e2e::wake::NatsConfig {
                    prefix: a.nats_prefix.clone(),
                    resync: std::time::Duration::from_secs(a.nats_resync_s),
                    ..accord_messenger::e2e::wake::NatsConfig::new(url)
                }),
        })
        .await?;
        let listener = TcpListener::bind(a.listen)
            .await
            .map_err(|e| CliError::Input(format!("cannot listen on {}: {e}", a.listen)))?;
        let addr = listener.local_addr().map_err(internal)?;
        eprintln!(
            "accord: messenger listening on http://{addr} ({storage}; profile {}{}{})",
            a.profile,
            if a.dev { "; dev verifier" } else { "" },
            if a.simulated_clock {
                "; simulated clock"
            } else {
                ""
            }
        );
        match &partner_url {
            Some(url) => {
                let cfg = accord_messenger::feed::FeedConfig::new(url.clone(), feed_secret.clone());
                state.feed = Some(cfg.clone());
                let d = accord_messenger::feed::Dispatcher::new(state.messenger.clone(), cfg);
                let h = d.spawn(Duration::from_secs(1), stop_rx.clone());
                tasks.push(tokio::spawn(async move {
                    let _ = h.await;
                    Ok(())
                }));
            }
            None => eprintln!("accord: warning: no partner service; the coordination feed is off"),
        }
        if state.messenger.keys.is_some() {
            tasks.push(spawn_pseudonym_refresh(
                state.messenger.clone(),
                stop_rx.clone(),
            ));
            tasks.push(spawn_revocation_retry(
                state.messenger.clone(),
                stop_rx.clone(),
            ));
        }
        tasks.push(tokio::spawn(accord_messenger::serve(
            listener,
            accord_messenger::router(state),
            until(stop_rx.clone()),
        )));
    }
    if tasks.is_empty() {
        return Err(CliError::Input("--services names nothing to run".into()));
    }
    if a.admin_token.is_none() {
        eprintln!(
            "accord: admin token in {}",
            a.data.data_dir.join("admin.token").display()
        );
    }
    shutdown_signal().await;
    eprintln!("accord: stopping");
    let _ = stop_tx.send(true);
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(internal(e)),
            Err(e) => return Err(internal(e)),
        }
    }
    eprintln!("accord: stopped");
    Ok(())
}

fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client builds")
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
