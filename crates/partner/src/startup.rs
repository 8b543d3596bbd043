//! The partner's composition root: [`Application::build`] opens its own
//! database and assembles the service and the router's state, for `accord
//! serve`, `accord demo` and the tests alike.

use crate::http::AppState;
use crate::service::PartnerService;
use accord_crypto::token::TokenHash;
use accord_domain::Clock;
use accord_http::{spawn_server, Stop, Task};
use accord_storage::partner::SqlPartnerStore;
use accord_storage::{Db, StoreError};
use axum::Router;
use std::sync::Arc;
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
}

/// The built partner.
pub struct Application {
    state: AppState,
}

impl Application {
    /// Opens (and migrates) the partner's own database.
    pub async fn build(s: Settings) -> Result<Self, StoreError> {
        let db = Db::open_service(&s.location, "partner").await?;
        let store = SqlPartnerStore::new(db).await?;
        let mut service = PartnerService::new(Arc::new(store), s.clock, s.feed_secret);
        if let Some(oprf) = s.oprf {
            service = service.with_oprf(oprf);
        }
        Ok(Application {
            state: AppState {
                service,
                admin_token: s.admin_token,
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

    /// Serves the API on `listener` until `stop`.
    pub fn start(&self, listener: TcpListener, stop: &Stop) -> Vec<Task> {
        vec![spawn_server(listener, self.router(), stop.clone())]
    }
}
