use super::DataArgs;
use crate::error::{CliError, CliResult};
use crate::session::write_private;
use accord_crypto::token::{BearerToken, TokenHash};
use accord_domain::{Clock, ConsentProfile, SimulatedClock, SystemClock};
use accord_messenger::verifier::{DevVerifier, Verifier, WebhookVerifier};
use accord_messenger::{AppState, Messenger, MessengerConfig};
use accord_storage::{Db, SqlMessengerStore};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Address to listen on.
    #[arg(long, env = "ACCORD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
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
    /// The operator's admin token (default: <data-dir>/admin.token, created on first start).
    #[arg(long, env = "ACCORD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
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

/// The messenger's state, as `serve` and `demo` build it.
pub async fn messenger_state(
    location: &str,
    verifier: Arc<dyn Verifier>,
    clock: Option<SimulatedClock>,
    admin_token: &str,
    profile: ConsentProfile,
) -> CliResult<AppState> {
    let db = Db::open_service(location, "messenger").await?;
    let store = SqlMessengerStore::new(db).await?;
    let clock_dyn: Arc<dyn Clock> = match &clock {
        Some(c) => Arc::new(c.clone()),
        None => Arc::new(SystemClock),
    };
    Ok(AppState {
        messenger: Messenger {
            store: Arc::new(store),
            clock: clock_dyn,
            verifier,
            config: MessengerConfig::default(),
        },
        admin_token: TokenHash::of(admin_token),
        default_profile: profile,
        simulated_clock: clock,
    })
}

pub async fn run(a: ServeArgs) -> CliResult {
    let verifier: Arc<dyn Verifier> = match (a.dev, &a.sms_webhook) {
        (true, None) => Arc::new(DevVerifier),
        (false, Some(url)) => Arc::new(WebhookVerifier::new(url.clone())),
        (true, Some(_)) => return Err(CliError::Input("--dev and --sms-webhook exclude each other".into())),
        (false, None) => {
            return Err(CliError::Input(
                "no way to send verification codes: pass --dev for local use (codes come back in the API response) or --sms-webhook URL".into(),
            ))
        }
    };
    let admin_token = match &a.admin_token {
        Some(t) => t.clone(),
        None => admin_token_in(&a.data.data_dir)?,
    };
    let clock = a.simulated_clock.then(SimulatedClock::following_wall_clock);
    let state =
        messenger_state(&a.data.location(), verifier, clock, &admin_token, a.profile).await?;
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .map_err(|e| CliError::Input(format!("cannot listen on {}: {e}", a.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Internal(e.into()))?;
    let storage = match &a.data.database_url {
        Some(_) => "PostgreSQL".to_owned(),
        None => format!("SQLite in {}", a.data.data_dir.display()),
    };
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
    if a.admin_token.is_none() {
        eprintln!(
            "accord: admin token in {}",
            a.data.data_dir.join("admin.token").display()
        );
    }
    tracing::info!(%addr, "serving");
    accord_messenger::serve(listener, accord_messenger::router(state), shutdown_signal())
        .await
        .map_err(|e| CliError::Internal(e.into()))?;
    eprintln!("accord: stopped");
    Ok(())
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
