//! The partner's HTTP face, on the shared layer of `accord-http` (error
//! body, extractors, standard routes and layers, metrics).
//!
//! - [`routes`]: one file per endpoint family; `routes/mod.rs` only
//!   assembles them.
//! - [`status`]: the mapping of [`PartnerError`](crate::PartnerError) to
//!   the shared `ApiError`.
//! - [`extract`]: who is calling: a partner user or the operator.
//! - [`openapi`]: the OpenAPI 3 document, generated from the handlers.
//! - [`metrics`]: the partner's own series (what it holds, refused reads).

pub mod extract;
pub mod metrics;
pub mod openapi;
mod routes;
pub mod status;

use crate::service::PartnerService;
use accord_crypto::token::TokenHash;
use axum::Router;

pub use accord_http::serve;

#[derive(Clone, Debug)]
pub struct AppState {
    pub service: PartnerService,
    /// Hash of the operator's admin token.
    pub admin_token: TokenHash,
    /// Reverse proxies whose `X-Forwarded-For` names the client (for the
    /// sign-up limit per client address); no one else's is believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Seals the advertiser console's session cookies (`crate::web`).
    pub web: accord_http::web::SessionKeys,
}

/// Largest request body: a feed batch or a contact upload.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// The whole partner API.
pub fn router(state: AppState) -> Router {
    let (routes, document) = routes::router();
    let routes = routes.merge(crate::web::router());
    let spec = accord_http::HttpSpec {
        metrics: metrics::build(&state.service),
        trusted_proxies: state.trusted_proxies.clone(),
        ..accord_http::HttpSpec::new("partner", MAX_BODY, document)
    };
    accord_http::finish(routes, state, spec)
}
