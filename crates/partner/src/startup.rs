//! The partner's composition root: [`Application::build`] opens its own
//! database and assembles the service and the router's state, for `accord
//! serve`, `accord demo` and the tests alike.

use crate::http::AppState;
use crate::service::{KeydQuota, PartnerConfig, PartnerService};
use crate::verifier::Verifier;
use accord_crypto::token::TokenHash;
use accord_domain::transparency::LogKey;
use accord_domain::Clock;
use accord_http::{spawn_loop, spawn_server, Stop, Task};
use accord_storage::partner::SqlPartnerStore;
use accord_storage::{Db, StoreError};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Everything the partner is built from.
pub struct Settings {
    /// A data directory (SQLite, `<dir>/partner.db`) or a PostgreSQL URL.
    pub location: String,
    /// Hash of the operator's admin token.
    pub admin_token: TokenHash,
    pub clock: Arc<dyn Clock>,
    /// The HMAC secret the messenger signs the feed with.
    pub feed_secret: Vec<u8>,
    /// The key service, for the blinded evaluations of partner users.
    pub oprf: Option<Arc<dyn accord_keyd_client::Oprf>>,
    /// Sends sign-up codes.
    pub verifier: Arc<dyn Verifier>,
    /// Limits: per-user OPRF quota, sign-ups per address and per day, ...
    pub config: PartnerConfig,
    /// Keys the tags of numbers and client addresses (HMAC-SHA256); kept
    /// outside the database.
    pub number_key: Vec<u8>,
    /// Sizes the partner's quota at the key service from its user count
    /// (in process in `accord serve`); without it, `keyd_daily` is the
    /// quota the operator set, for the alert.
    pub keyd_quota: Option<Arc<dyn KeydQuota>>,
    pub keyd_daily: u64,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The messenger's consent-log key (`GET /v1/transparency/key` of the
    /// messenger); without it the partner refuses shares, since it cannot
    /// check their citations.
    pub messenger_log_key: Option<LogKey>,
    /// Custom audiences' release rules and upload limits.
    pub audiences: crate::audience::AudienceConfig,
    /// Seals the advertiser console's cookies (a key file every node
    /// shares); `None`: a key for this process only.
    pub web: Option<accord_http::web::SessionKeys>,
}

impl Settings {
    /// Settings with the dev verifier, default limits, a random number
    /// key and no key service.
    pub fn new(
        location: String,
        admin_token: TokenHash,
        clock: Arc<dyn Clock>,
        feed_secret: Vec<u8>,
    ) -> Self {
        Settings {
            location,
            admin_token,
            clock,
            feed_secret,
            oprf: None,
            verifier: Arc::new(crate::verifier::DevVerifier),
            config: PartnerConfig::default(),
            number_key: accord_crypto::token::random_salt().repeat(2),
            keyd_quota: None,
            keyd_daily: 0,
            trusted_proxies: Vec::new(),
            messenger_log_key: None,
            audiences: crate::audience::AudienceConfig::default(),
            web: None,
        }
    }
}

/// The built partner.
pub struct Application {
    state: AppState,
}

impl Application {
    /// Opens (and migrates) the partner's own database.
    pub async fn build(s: Settings) -> Result<Self, StoreError> {
        let db = Db::open_service(&s.location, "partner").await?;
        let store = SqlPartnerStore::new(db.clone()).await?;
        let audiences = crate::audience::Audiences::new(
            Arc::new(accord_storage::audience::SqlAudienceStore::new(db)),
            s.audiences,
        );
        let mut service = PartnerService::new(Arc::new(store), s.clock, s.feed_secret)
            .with_audiences(audiences)
            .with_signup(s.verifier, s.config, s.number_key)
            .with_keyd_quota(s.keyd_quota, s.keyd_daily)
            .with_log_key(s.messenger_log_key);
        if let Some(oprf) = s.oprf {
            service = service.with_oprf(oprf);
        }
        Ok(Application {
            state: AppState {
                service,
                admin_token: s.admin_token,
                trusted_proxies: s.trusted_proxies,
                web: s
                    .web
                    .unwrap_or_else(|| accord_http::web::SessionKeys::ephemeral("partner")),
            },
        })
    }

    /// The whole HTTP API.
    pub fn router(&self) -> Router {
        crate::http::router(self.state.clone())
    }

    pub fn service(&self) -> &PartnerService {
        &self.state.service
    }

    /// Serves the API on `listener` until `stop`, and sizes the partner's
    /// key-service quota from its user count every minute.
    pub fn start(&self, listener: TcpListener, stop: &Stop) -> Vec<Task> {
        let service = self.state.service.clone();
        let sizing = spawn_loop(Duration::from_secs(60), stop.clone(), move || {
            let service = service.clone();
            async move {
                if let Err(e) = service.size_keyd_quota().await {
                    tracing::warn!(error = %e, "partner key-service quota not sized");
                }
                false
            }
        });
        // The console's cookies are `Secure` unless on loopback only.
        let mut state = self.state.clone();
        state.web.secure = !listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
        vec![
            spawn_server(listener, crate::http::router(state), stop.clone()),
            sizing,
        ]
    }
}
