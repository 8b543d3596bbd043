//! The HTTP face of the messenger.
//!
//! - [`routes`]: one module per endpoint family; `routes/mod.rs` only
//!   assembles them.
//! - [`status`]: the mapping of the messenger's errors to the shared
//!   `ApiError` of `accord-http` (which also holds the extractors, the
//!   standard routes and layers).
//! - [`extract`]: who is calling: a device (bearer token) or the operator
//!   (admin token).
//! - [`openapi`]: the OpenAPI 3 document, generated from the handlers.
//! - [`metrics`]: the messenger's own series (feed, deletions, mailboxes,
//!   group commit) next to the shared request series.

pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod status;

use crate::service::Messenger;
use accord_crypto::token::TokenHash;
use accord_domain::{ConsentProfile, SimulatedClock};
use axum::Router;

pub use accord_http::serve;

/// Everything a handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub messenger: Messenger,
    /// SHA-256 of the operator's admin token.
    pub admin_token: TokenHash,
    /// Profile for policies published without one (`--profile`).
    pub default_profile: ConsentProfile,
    /// Present only with `--simulated-clock`; then the admin clock
    /// endpoint exists.
    pub simulated_clock: Option<SimulatedClock>,
    /// The coordination feed to the partner, when one is configured.
    pub feed: Option<crate::feed::FeedConfig>,
    /// The E2E relay (key directory, mailboxes, delivery).
    pub e2e: crate::relay::Relay,
    /// Business messaging.
    pub business: crate::business::Business,
    /// Reverse proxies whose `X-Forwarded-For` names the client
    /// (`accord_http::ClientAddr`), for limits per client address.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Seals the pages' session cookies (`crate::web`).
    pub web: accord_http::web::SessionKeys,
}

/// Largest request body (a send has its own, smaller limit).
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// The whole messenger API.
pub fn router(state: AppState) -> Router {
    let (routes, document) = routes::router(&state);
    let routes = routes.merge(crate::web::router());
    let spec = accord_http::HttpSpec {
        metrics: metrics::build(&state),
        trusted_proxies: state.trusted_proxies.clone(),
        ..accord_http::HttpSpec::new("messenger", MAX_BODY, document)
    };
    accord_http::finish(routes, state, spec)
}
