//! `accord serve`: the services of this process, each on its own listener
//! and with its own database. Default: the messenger and the key service
//! together ("all-in-one"), the messenger using the key service in
//! process, through the same OPRF path and quotas as over HTTP.

use super::DataArgs;
use crate::error::{CliError, CliResult};
use crate::session::write_private;
use accord_crypto::token::{BearerToken, TokenHash};
use accord_domain::transparency::LogKey;
use accord_domain::{Clock, ConsentProfile, SimulatedClock, SystemClock};
use accord_keyd::{HttpOprf, KeyService, KeydConfig};
use accord_messenger::keys::{HttpCredentials, KeyAccess};
use accord_messenger::relay::wake::NatsConfig;
use accord_messenger::transparency::SignerSource;
use accord_messenger::verifier::{DevVerifier, Verifier, WebhookVerifier};
use accord_messenger::{Application, Settings, StartupError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

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
    /// Verification codes one number may request per hour.
    #[arg(long, env = "ACCORD_CODES_PER_NUMBER", default_value_t = 5)]
    pub codes_per_number: u32,
    /// Verification codes one client address may request per hour, for
    /// any numbers (SMS pumping sends to many numbers from one client).
    #[arg(long, env = "ACCORD_CODES_PER_CLIENT", default_value_t = 10)]
    pub codes_per_client: u32,
    /// Verification codes one number range (country code and the first
    /// three national digits, e.g. +62-812) may be sent per hour.
    #[arg(long, env = "ACCORD_CODES_PER_RANGE", default_value_t = 1_000)]
    pub codes_per_range: u32,
    /// Verification codes sent per hour in all: the SMS budget.
    #[arg(long, env = "ACCORD_CODES_PER_HOUR", default_value_t = 10_000)]
    pub codes_per_hour: u32,
    /// A reverse proxy in front of the messenger or the partner (repeatable): requests
    /// from it name the client in `X-Forwarded-For`, and limits per client
    /// address use that. Requests from anywhere else are never believed.
    #[arg(
        long = "trusted-proxy",
        env = "ACCORD_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// SMS gateway webhook that receives {"to", "text"} for each code
    /// (the messenger's and the partner's sign-up codes).
    #[arg(long, env = "ACCORD_SMS_WEBHOOK")]
    pub sms_webhook: Option<String>,
    /// Blinded evaluations each partner user may have per rolling day
    /// (its own number and an address book).
    #[arg(long, env = "ACCORD_PARTNER_USER_QUOTA", default_value_t = 2_001)]
    pub partner_user_quota: u64,
    /// Partner sign-ups per client address per rolling day.
    #[arg(long, env = "ACCORD_PARTNER_SIGNUPS_PER_ADDRESS", default_value_t = 10)]
    pub partner_signups_per_address: u64,
    /// Partner sign-ups in all per rolling day.
    #[arg(long, env = "ACCORD_PARTNER_SIGNUPS_PER_DAY", default_value_t = 10_000)]
    pub partner_signups_per_day: u64,
    /// The partner's daily quota at a key service in another process, as
    /// its operator set it (for the partner's 80% alert); in process the
    /// partner sizes its own from its user count.
    #[arg(long, env = "ACCORD_PARTNER_KEYD_QUOTA", default_value_t = 10_000_000)]
    pub partner_keyd_quota: u64,
    /// Delivered messages plus blocks and reports a business needs before
    /// its quality is rated (below it, it is green: too little to rate).
    /// Lower it for a small deployment or a demonstration.
    #[arg(long, env = "ACCORD_BUSINESS_QUALITY_MIN_SAMPLE", default_value_t = 20)]
    pub business_quality_min_sample: u64,
    /// The consent log's checkpoint signing key: a file holding its seed
    /// as hex (default: <data-dir>/messenger.log.key, created on first
    /// start). Keep it where the database's writers cannot read it.
    #[arg(long, env = "ACCORD_LOG_KEY_FILE")]
    pub log_key_file: Option<PathBuf>,
    /// Where the key directory's VRF and root-signing keys live (default:
    /// the data directory; created on first start). Messenger nodes that
    /// share one PostgreSQL database must share these keys.
    #[arg(long, env = "ACCORD_KT_KEY_DIR")]
    pub kt_key_dir: Option<PathBuf>,
    /// The messenger's log key (hex, its `GET /v1/transparency/key`), for
    /// a partner run without the messenger in this process: it checks
    /// feed checkpoints and citations against it.
    #[arg(long, env = "ACCORD_MESSENGER_LOG_KEY")]
    pub messenger_log_key: Option<String>,
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
    secret_in(dir, "feed.secret")
}

/// A secret in the data directory (0600), created on first start.
fn secret_in(dir: &Path, name: &str) -> CliResult<Vec<u8>> {
    let path = dir.join(name);
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(t.trim().as_bytes().to_vec());
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Input(format!("cannot create {}: {e}", dir.display())))?;
    let t = BearerToken::generate();
    write_private(&path, t.reveal().as_bytes())?;
    Ok(t.reveal().as_bytes().to_vec())
}

/// Sizes the partner's quota at a key service in the same process.
#[derive(Debug)]
struct InProcessQuota {
    keyd: KeyService,
    client: accord_keyd::ClientId,
}

#[async_trait::async_trait]
impl accord_partner::KeydQuota for InProcessQuota {
    async fn set_daily(&self, daily: u64) -> Result<(), String> {
        self.keyd
            .set_quota(
                self.client,
                accord_crypto::oprf::OprfPurpose::Coordination,
                daily,
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn internal(e: impl std::fmt::Display) -> CliError {
    CliError::Internal(anyhow::anyhow!("{e}"))
}

/// Key-service access for a messenger in the same process.
pub async fn in_process_keys(keyd: &KeyService, public_url: String) -> CliResult<KeyAccess> {
    KeyAccess::in_process(keyd, public_url)
        .await
        .map_err(internal)
}

/// Binds `addr`, or says which address could not be had.
async fn listen(addr: SocketAddr) -> CliResult<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::Input(format!("cannot listen on {addr}: {e}")))
}

/// What every service of this process shares.
struct Shared {
    admin_token: String,
    clock: Arc<dyn Clock>,
    simulated: Option<SimulatedClock>,
    /// Where the data lives, for the start-up lines.
    storage: String,
    feed_secret: Vec<u8>,
    stop: accord_http::Stop,
}

pub async fn run(a: ServeArgs) -> CliResult {
    let verifier = verifier(&a)?;
    let simulated = a.simulated_clock.then(SimulatedClock::following_wall_clock);
    let (stopper, stop) = accord_http::stop_signal();
    let shared = Shared {
        admin_token: match &a.admin_token {
            Some(t) => t.clone(),
            None => admin_token_in(&a.data.data_dir)?,
        },
        clock: match &simulated {
            Some(c) => Arc::new(c.clone()),
            None => Arc::new(SystemClock),
        },
        simulated,
        storage: match &a.data.database_url {
            Some(_) => "PostgreSQL".to_owned(),
            None => format!("SQLite in {}", a.data.data_dir.display()),
        },
        feed_secret: match &a.feed_secret {
            Some(s) => s.as_bytes().to_vec(),
            None => feed_secret_in(&a.data.data_dir)?,
        },
        stop,
    };
    let mut tasks = Vec::new();
    let (keyd, keyd_url) = if a.services.contains(&Service::Keyd) {
        let (keyd, url) = start_keyd(&a, &shared, &mut tasks).await?;
        (Some(keyd), a.keyd_public_url.clone().or(Some(url)))
    } else {
        (None, a.keyd_public_url.clone())
    };
    let mut partner_url = a.partner_url.clone();
    if a.services.contains(&Service::Partner) {
        let url = start_partner(&a, &shared, keyd.as_ref(), &mut tasks).await?;
        partner_url.get_or_insert(url);
    }
    if a.services.contains(&Service::Messenger) {
        let keys = messenger_keys(&a, keyd.as_ref(), keyd_url).await?;
        start_messenger(&a, &shared, verifier, keys, partner_url, &mut tasks).await?;
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
    stopper.stop();
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

/// How verification codes reach a phone: `--dev` or `--sms-webhook`.
fn verifier(a: &ServeArgs) -> CliResult<Arc<dyn Verifier>> {
    let run_messenger = a.services.contains(&Service::Messenger);
    Ok(match (a.dev, &a.sms_webhook, run_messenger) {
        (_, _, false) | (true, None, _) => Arc::new(DevVerifier),
        (false, Some(url), _) => Arc::new(WebhookVerifier::new(url.clone())),
        (true, Some(_), _) => {
            return Err(CliError::Input(
                "--dev and --sms-webhook exclude each other".into(),
            ))
        }
        (false, None, _) => {
            return Err(CliError::Input(
                "no way to send verification codes: pass --dev for local use (codes come back in the API response) or --sms-webhook URL".into(),
            ))
        }
    })
}

/// How the partner's sign-up codes reach a phone: `--dev` or `--sms-webhook`.
fn partner_verifier(a: &ServeArgs) -> CliResult<Arc<dyn accord_partner::verifier::Verifier>> {
    use accord_partner::verifier::{DevVerifier, WebhookVerifier};
    Ok(match (a.dev, &a.sms_webhook) {
        (false, Some(url)) => {
            Arc::new(WebhookVerifier::new(url.clone()).named("Accord partner sign-up"))
        }
        (true, None) => Arc::new(DevVerifier),
        (true, Some(_)) => {
            return Err(CliError::Input(
                "--dev and --sms-webhook exclude each other".into(),
            ))
        }
        (false, None) => return Err(CliError::Input(
            "no way to send the partner's sign-up codes: pass --dev for local use (codes come back in the API response) or --sms-webhook URL".into(),
        )),
    })
}

/// The key service on `--keyd-listen`; returns it and its URL.
async fn start_keyd(
    a: &ServeArgs,
    s: &Shared,
    tasks: &mut Vec<accord_http::Task>,
) -> CliResult<(KeyService, String)> {
    let app = accord_keyd::Application::build(accord_keyd::Settings {
        location: a.data.location(),
        key_dir: a.data.data_dir.clone(),
        master: None,
        admin_token: TokenHash::of(&s.admin_token),
        clock: s.clock.clone(),
        config: KeydConfig::default(),
    })
    .await
    .map_err(internal)?;
    let listener = listen(a.keyd_listen).await?;
    let addr = listener.local_addr().map_err(internal)?;
    eprintln!(
        "accord: key service listening on http://{addr} ({})",
        s.storage
    );
    tasks.extend(app.start(listener, &s.stop));
    Ok((app.service().clone(), format!("http://{addr}")))
}

/// The partner on `--partner-listen`, with the key service of this
/// process or `--keyd-url`; returns its URL.
async fn start_partner(
    a: &ServeArgs,
    s: &Shared,
    keyd: Option<&KeyService>,
    tasks: &mut Vec<accord_http::Task>,
) -> CliResult<String> {
    let mut keyd_quota: Option<Arc<dyn accord_partner::KeydQuota>> = None;
    let oprf: Option<Arc<dyn accord_keyd::Oprf>> = match (keyd, &a.keyd_url, &a.keyd_token) {
        (Some(k), _, _) => {
            let id = k
                .client_named("partner", accord_keyd::ClientKind::Partner)
                .await
                .map_err(internal)?;
            keyd_quota = Some(Arc::new(InProcessQuota {
                keyd: k.clone(),
                client: id,
            }));
            Some(Arc::new(accord_keyd::InProcessOprf::new(k.clone(), id)))
        }
        (None, Some(url), Some(token)) => Some(Arc::new(HttpOprf::new(
            url.clone(),
            secrecy::SecretString::from(token.clone()),
        ))),
        _ => {
            eprintln!("accord: warning: the partner has no key service; its users cannot compute pseudonyms");
            None
        }
    };
    let partner = accord_partner::Application::build(accord_partner::Settings {
        oprf,
        verifier: partner_verifier(a)?,
        config: accord_partner::PartnerConfig {
            user_oprf_quota: a.partner_user_quota,
            signups_per_address: a.partner_signups_per_address,
            signups_per_day: a.partner_signups_per_day,
            ..accord_partner::PartnerConfig::default()
        },
        number_key: secret_in(&a.data.data_dir, "partner.number.key")?,
        keyd_quota,
        keyd_daily: a.partner_keyd_quota,
        trusted_proxies: a.trusted_proxies.clone(),
        messenger_log_key: partner_log_key(a)?,
        web: Some(
            accord_http::web::SessionKeys::load_or_create(
                &a.data.data_dir.join("partner-web-session.key"),
                "partner",
            )
            .map_err(internal)?,
        ),
        ..accord_partner::Settings::new(
            a.data.location(),
            TokenHash::of(&s.admin_token),
            s.clock.clone(),
            s.feed_secret.clone(),
        )
    })
    .await?;
    let listener = listen(a.partner_listen).await?;
    let addr = listener.local_addr().map_err(internal)?;
    eprintln!("accord: partner listening on http://{addr} ({})", s.storage);
    tasks.extend(partner.start(listener, &s.stop));
    Ok(format!("http://{addr}"))
}

/// Where the consent log's signing key is kept.
fn log_key_file(a: &ServeArgs) -> PathBuf {
    a.log_key_file
        .clone()
        .unwrap_or_else(|| a.data.data_dir.join("messenger.log.key"))
}

/// The messenger's log key for the partner: `--messenger-log-key`, or the
/// public half of the messenger's signing key when it runs here.
fn partner_log_key(a: &ServeArgs) -> CliResult<Option<LogKey>> {
    if let Some(hex) = &a.messenger_log_key {
        return LogKey::from_hex(hex)
            .map(Some)
            .map_err(|e| CliError::Input(format!("--messenger-log-key: {e}")));
    }
    if a.services.contains(&Service::Messenger) {
        let signer = SignerSource::File(log_key_file(a))
            .load()
            .map_err(|e| CliError::Input(format!("the consent log's signing key: {e}")))?;
        return Ok(Some(signer.public()));
    }
    eprintln!("accord: warning: the partner has no --messenger-log-key; it will refuse shares");
    Ok(None)
}

/// The messenger's access to the key service: in process, over HTTP with
/// `--keyd-url`, or none.
async fn messenger_keys(
    a: &ServeArgs,
    keyd: Option<&KeyService>,
    keyd_url: Option<String>,
) -> CliResult<Option<KeyAccess>> {
    Ok(match (keyd, &a.keyd_url) {
        (Some(k), _) => Some(in_process_keys(k, keyd_url.unwrap_or_default()).await?),
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
            eprintln!("accord: warning: no key service; pseudonyms and contact discovery are off");
            None
        }
    })
}

/// The messenger on `--listen`, feeding the partner at `partner_url`.
async fn start_messenger(
    a: &ServeArgs,
    s: &Shared,
    verifier: Arc<dyn Verifier>,
    keys: Option<KeyAccess>,
    partner_url: Option<String>,
    tasks: &mut Vec<accord_http::Task>,
) -> CliResult {
    let feed = match partner_url {
        Some(url) => Some(accord_messenger::feed::FeedConfig::new(
            url,
            s.feed_secret.clone(),
        )),
        None => {
            eprintln!("accord: warning: no partner service; the coordination feed is off");
            None
        }
    };
    let messenger = Application::build(Settings {
        simulated_clock: s.simulated.clone(),
        profile: a.profile,
        keys,
        feed,
        trusted_proxies: a.trusted_proxies.clone(),
        // The key directory's VRF and root keys, next to the key
        // service's master key (with PostgreSQL too).
        kt_key_dir: Some(
            a.kt_key_dir
                .clone()
                .unwrap_or_else(|| a.data.data_dir.clone()),
        ),
        config: accord_messenger::MessengerConfig {
            codes_per_hour: a.codes_per_number,
            codes_per_client_per_hour: a.codes_per_client,
            codes_per_range_per_hour: a.codes_per_range,
            codes_per_hour_total: a.codes_per_hour,
            ..Default::default()
        },
        log_key: SignerSource::File(log_key_file(a)),
        business: accord_messenger::business::BusinessConfig {
            quality: accord_domain::business::QualityRules {
                min_sample: a.business_quality_min_sample,
                ..Default::default()
            },
            ..Default::default()
        },
        nats: a.nats_url.as_deref().map(|url| NatsConfig {
            prefix: a.nats_prefix.clone(),
            resync: Duration::from_secs(a.nats_resync_s),
            ..NatsConfig::new(url)
        }),
        ..Settings::new(
            a.data.location(),
            TokenHash::of(&s.admin_token),
            verifier,
            s.clock.clone(),
        )
    })
    .await
    .map_err(|e| match e {
        StartupError::Store(e) => CliError::from(e),
        other => CliError::Input(other.to_string()),
    })?;
    let listener = listen(a.listen).await?;
    let addr = listener.local_addr().map_err(internal)?;
    eprintln!(
        "accord: messenger listening on http://{addr} ({}; profile {}{}{}); privacy centre at http://{addr}/",
        s.storage,
        a.profile,
        if a.dev { "; dev verifier" } else { "" },
        if a.simulated_clock {
            "; simulated clock"
        } else {
            ""
        }
    );
    tasks.extend(messenger.start(listener, &s.stop));
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
