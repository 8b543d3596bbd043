//! The messenger's composition root: [`Application::build`] turns
//! [`Settings`] into the running parts (database, stores, relay, use
//! cases, feed dispatcher, router), and [`Application::start`] serves the
//! router and runs the background work until a stop signal. `accord
//! serve`, `accord demo`, the benches and every test helper build the
//! messenger here, so tests start exactly what production starts.

use crate::business::{Business, BusinessConfig};
use crate::feed::{Dispatcher, FeedConfig};
use crate::keys::KeyAccess;
use crate::kt::KeyDirectory;
use crate::relay::wake::{LocalWake, NatsConfig, NatsWake, Wake};
use crate::relay::{E2eConfig, Relay};
use crate::service::{Messenger, MessengerConfig, REVOCATION_RETRY_EVERY};
use crate::transparency::SignerSource;
use crate::verifier::Verifier;
use crate::AppState;
use accord_crypto::token::TokenHash;
use accord_domain::{Clock, ConsentProfile, SimulatedClock};
use accord_http::web::SessionKeys;
use accord_http::{spawn_loop, spawn_server, Stop, Task};
use accord_storage::{
    Backend, Db, SqlBusinessStore, SqlKtStore, SqlMailboxStore, SqlMessengerStore, StoreError,
};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Everything the messenger is built from.
pub struct Settings {
    /// A data directory (SQLite, `<dir>/messenger.db`) or a PostgreSQL URL.
    pub location: String,
    /// Hash of the operator's admin token.
    pub admin_token: TokenHash,
    pub verifier: Arc<dyn Verifier>,
    pub clock: Arc<dyn Clock>,
    /// The same clock when it is simulated: then the admin clock endpoint
    /// exists.
    pub simulated_clock: Option<SimulatedClock>,
    /// Profile for policies published without one.
    pub profile: ConsentProfile,
    /// The key service (pseudonyms, device credentials), if any.
    pub keys: Option<KeyAccess>,
    /// NATS, to wake connections held by other nodes; `None`: one node.
    pub nats: Option<NatsConfig>,
    /// The partner's coordination feed, if any.
    pub feed: Option<FeedConfig>,
    pub config: MessengerConfig,
    pub e2e: E2eConfig,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Where the key directory's VRF and root-signing keys live; by
    /// default the data directory (required with PostgreSQL).
    pub kt_key_dir: Option<std::path::PathBuf>,
    /// The consent log's checkpoint signing key, kept outside the database.
    pub log_key: SignerSource,
    /// How often the grown shards of the consent log get a signed
    /// checkpoint ([`CHECKPOINT_EVERY`] by default).
    pub checkpoint_every: Duration,
    /// Business messaging's tunables.
    pub business: BusinessConfig,
}

impl Settings {
    /// One node on `location`, strict profile, no key service, no partner,
    /// default tunables.
    pub fn new(
        location: impl Into<String>,
        admin_token: TokenHash,
        verifier: Arc<dyn Verifier>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Settings {
            location: location.into(),
            admin_token,
            verifier,
            clock,
            simulated_clock: None,
            profile: ConsentProfile::Strict,
            keys: None,
            nats: None,
            feed: None,
            config: MessengerConfig::default(),
            e2e: E2eConfig::default(),
            trusted_proxies: Vec::new(),
            kt_key_dir: None,
            log_key: SignerSource::Ephemeral,
            checkpoint_every: CHECKPOINT_EVERY,
            business: BusinessConfig::default(),
        }
    }
}

/// Why the messenger could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartupError {
    #[error("messenger database: {0}")]
    Store(#[from] StoreError),
    #[error("NATS at {url}: {message}")]
    Nats { url: String, message: String },
    #[error("{0}")]
    KeyDirectory(#[from] crate::kt::KtError),
    #[error(
        "the key directory's keys need a directory: pass --kt-key-dir with a PostgreSQL database"
    )]
    NoKtKeyDir,
    #[error("the consent log's signing key: {0}")]
    LogKey(std::io::Error),
    #[error("the pages' session key: {0}")]
    WebKey(std::io::Error),
}

/// The built messenger: its state and the stores behind it.
pub struct Application {
    state: AppState,
    checkpoint_every: Duration,
    store: Arc<SqlMessengerStore>,
    mailboxes: Arc<SqlMailboxStore>,
    dispatcher: Option<Dispatcher>,
}

/// Passes of the feed dispatcher between reconciliations (one pass a
/// second: about every ten minutes).
const PASSES_PER_RECONCILIATION: u64 = 600;
/// How often expired mailbox items are purged.
const PURGE_EVERY: Duration = Duration::from_secs(600);
/// How often the consent log's grown shards get a signed checkpoint (the
/// issue asks for at least one a minute while entries are appended).
/// The pages' session key, next to the key directory's keys (every node
/// needs the same file).
pub const WEB_KEY_FILE: &str = "web-session.key";

pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(15);
/// How often the business webhook outbox is drained (at once again
/// while a pass leaves due events behind).
const WEBHOOKS_EVERY: Duration = Duration::from_secs(1);
/// How often every business's quality and tier are re-evaluated.
const STANDING_EVERY: Duration = Duration::from_secs(60);
/// How often missing pseudonyms are computed (new users, key rotation).
const PSEUDONYM_REFRESH_EVERY: Duration = Duration::from_secs(5);

impl Application {
    /// Opens (and migrates) the database, starts the relay's writer and
    /// wake-ups, and assembles the use cases and the router's state.
    pub async fn build(s: Settings) -> Result<Self, StartupError> {
        let kt_key_dir = match (&s.kt_key_dir, is_url(&s.location)) {
            (Some(dir), _) => dir.clone(),
            (None, false) => std::path::PathBuf::from(
                s.location.strip_prefix("sqlite://").unwrap_or(&s.location),
            ),
            (None, true) => return Err(StartupError::NoKtKeyDir),
        };
        let db = Db::open_service(&s.location, "messenger").await?;
        let kt_store = Arc::new(SqlKtStore::new(db.clone()).await?);
        let store = Arc::new(SqlMessengerStore::new(db.clone()).await?);
        let businesses = Arc::new(SqlBusinessStore::new(db.clone()));
        let mailboxes = Arc::new(SqlMailboxStore::new(db).await?);
        let wake: Arc<dyn Wake> = match &s.nats {
            None => Arc::new(LocalWake::default()),
            Some(config) => {
                NatsWake::connect(config)
                    .await
                    .map_err(|message| StartupError::Nats {
                        url: config.url.clone(),
                        message,
                    })?
            }
        };
        let relay = Relay::start_with(
            mailboxes.clone(),
            store.clone(),
            s.clock.clone(),
            s.e2e,
            wake,
        );
        let kt = KeyDirectory::open(kt_store, &kt_key_dir, s.clock.clone()).await?;
        relay.attach_key_directory(kt);
        let signer = s.log_key.load().map_err(StartupError::LogKey)?;
        let web = SessionKeys::load_or_create(&kt_key_dir.join(WEB_KEY_FILE), "messenger")
            .map_err(StartupError::WebKey)?;
        // SQLite has one writer; on PostgreSQL a few commits overlap.
        let consent_writers = match store.db().backend {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        let messenger = Messenger::new(
            store.clone(),
            s.clock.clone(),
            s.verifier,
            s.config,
            s.keys,
            signer,
            consent_writers,
        );
        let business = Business::new(
            businesses,
            relay.clone(),
            s.clock.clone(),
            messenger.log().clone(),
            s.business,
        );
        let dispatcher = s
            .feed
            .clone()
            .map(|cfg| Dispatcher::new(messenger.clone(), cfg));
        let state = AppState {
            messenger,
            admin_token: s.admin_token,
            default_profile: s.profile,
            simulated_clock: s.simulated_clock,
            feed: s.feed,
            e2e: relay,
            business,
            trusted_proxies: s.trusted_proxies,
            web,
        };
        Ok(Application {
            state,
            checkpoint_every: s.checkpoint_every,
            store,
            mailboxes,
            dispatcher,
        })
    }

    /// The whole HTTP API.
    pub fn router(&self) -> Router {
        crate::http::router(self.state.clone())
    }

    /// The use cases (for background work a test drives itself).
    pub fn messenger(&self) -> &Messenger {
        &self.state.messenger
    }

    pub fn relay(&self) -> &Relay {
        &self.state.e2e
    }

    /// Business messaging.
    pub fn business(&self) -> &Business {
        &self.state.business
    }

    /// The coordination feed's dispatcher, when a partner is configured.
    pub fn dispatcher(&self) -> Option<&Dispatcher> {
        self.dispatcher.as_ref()
    }

    pub fn store(&self) -> &Arc<SqlMessengerStore> {
        &self.store
    }

    pub fn mailboxes(&self) -> &Arc<SqlMailboxStore> {
        &self.mailboxes
    }

    /// The background work, until `stop`: the feed dispatcher (with a
    /// partner), checkpoints of the consent log, pseudonym refresh and
    /// credential revocations (with a key service), and the purge of
    /// expired mailbox items.
    pub fn background(&self, stop: &Stop) -> Vec<Task> {
        let mut tasks = Vec::new();
        if let Some(d) = self.dispatcher.clone() {
            let mut pass: u64 = 0;
            tasks.push(spawn_loop(
                Duration::from_secs(1),
                stop.clone(),
                move || {
                    pass += 1;
                    let d = d.clone();
                    let reconcile = pass % PASSES_PER_RECONCILIATION == 1;
                    async move {
                        d.tick(reconcile).await;
                        false
                    }
                },
            ));
        }
        let log = self.state.messenger.log.clone();
        tasks.push(spawn_loop(self.checkpoint_every, stop.clone(), move || {
            let log = log.clone();
            async move {
                if let Err(e) = log.sign_grown().await {
                    tracing::warn!(error = %e, "consent log checkpoints not signed; will retry");
                }
                false
            }
        }));
        let m = self.state.messenger.clone();
        if m.keys.is_some() {
            let refresh = m.clone();
            tasks.push(spawn_loop(
                PSEUDONYM_REFRESH_EVERY,
                stop.clone(),
                move || {
                    let m = refresh.clone();
                    async move {
                        match m.refresh_pseudonyms(1000).await {
                            Ok(r) => r.remaining,
                            Err(e) => {
                                tracing::warn!(error = %e, "pseudonym refresh failed; will retry");
                                false
                            }
                        }
                    }
                },
            ));
            tasks.push(spawn_loop(REVOCATION_RETRY_EVERY, stop.clone(), move || {
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
            }));
        }
        let business = self.state.business.clone();
        tasks.push(spawn_loop(WEBHOOKS_EVERY, stop.clone(), move || {
            let b = business.clone();
            async move {
                match b.dispatch_webhooks().await {
                    Ok(more) => more,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook dispatch failed; will retry");
                        false
                    }
                }
            }
        }));
        let business = self.state.business.clone();
        tasks.push(spawn_loop(STANDING_EVERY, stop.clone(), move || {
            let b = business.clone();
            async move {
                if let Err(e) = b.evaluate_all().await {
                    tracing::warn!(error = %e, "business standing not evaluated; will retry");
                }
                false
            }
        }));
        let relay = self.state.e2e.clone();
        tasks.push(spawn_loop(PURGE_EVERY, stop.clone(), move || {
            let relay = relay.clone();
            async move {
                if let Err(e) = relay.purge().await {
                    tracing::warn!(error = %e, "mailbox purge failed; will retry");
                }
                false
            }
        }));
        tasks
    }

    /// Serves the API on `listener` and runs the background work, until
    /// `stop`.
    /// The pages' session cookies are `Secure` unless `listener` is on
    /// loopback only.
    pub fn start(&self, listener: TcpListener, stop: &Stop) -> Vec<Task> {
        let mut tasks = self.background(stop);
        let mut state = self.state.clone();
        state.web.secure = !listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
        tasks.push(spawn_server(
            listener,
            crate::http::router(state),
            stop.clone(),
        ));
        tasks
    }
}

/// Whether `location` names a database server rather than a directory.
fn is_url(location: &str) -> bool {
    location.starts_with("postgres:") || location.starts_with("postgresql:")
}
