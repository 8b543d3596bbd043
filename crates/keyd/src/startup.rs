//! The key service's composition root: [`Application::build`] opens the
//! service from [`Settings`] ([`KeyService::open_at`]) and assembles the
//! router's state, for `accord serve`, `accord demo` and the tests alike.

use crate::error::KeydError;
use crate::http::AppState;
use crate::service::{KeyService, KeydConfig};
use accord_crypto::sealed::MasterKey;
use accord_crypto::token::TokenHash;
use accord_domain::Clock;
use accord_http::web::SessionKeys;
use accord_http::{spawn_server, Stop, Task};
use axum::Router;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Everything the key service is built from.
pub struct Settings {
    /// A data directory (SQLite, `<dir>/keyd.db`) or a PostgreSQL URL.
    pub location: String,
    /// Where the master key file lives (created on first start), unless
    /// `master` is given.
    pub key_dir: PathBuf,
    pub master: Option<MasterKey>,
    /// Hash of the operator's admin token.
    pub admin_token: TokenHash,
    pub clock: Arc<dyn Clock>,
    pub config: KeydConfig,
}

/// The operator page's session key, next to the master key.
pub const WEB_KEY_FILE: &str = "web-session.key";

/// The built key service.
pub struct Application {
    state: AppState,
}

impl Application {
    pub async fn build(s: Settings) -> Result<Self, KeydError> {
        std::fs::create_dir_all(&s.key_dir).map_err(|e| {
            KeydError::MasterKey(format!("cannot create {}: {e}", s.key_dir.display()))
        })?;
        let web = SessionKeys::load_or_create(&s.key_dir.join(WEB_KEY_FILE), "keyd")
            .map_err(|e| KeydError::MasterKey(format!("the operator page's session key: {e}")))?;
        let service =
            KeyService::open_at(&s.location, &s.key_dir, s.master, s.clock, s.config).await?;
        Ok(Application {
            state: AppState {
                service,
                admin_token: s.admin_token,
                web,
            },
        })
    }

    /// The whole HTTP API.
    pub fn router(&self) -> Router {
        crate::http::router(self.state.clone())
    }

    pub fn service(&self) -> &KeyService {
        &self.state.service
    }

    /// Serves the API on `listener` until `stop`; the operator page's
    /// cookies are `Secure` unless `listener` is on loopback only.
    pub fn start(&self, listener: TcpListener, stop: &Stop) -> Vec<Task> {
        let mut state = self.state.clone();
        state.web.secure = !listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
        vec![spawn_server(
            listener,
            crate::http::router(state),
            stop.clone(),
        )]
    }
}
