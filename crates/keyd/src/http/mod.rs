//! The HTTP face of the key service, on the shared layer of `accord-http`
//! (error body, extractors, standard routes and layers, metrics).
//!
//! - [`routes`]: one module per endpoint family; `routes/mod.rs` only
//!   assembles them.
//! - [`status`]: the mapping of [`KeydError`](crate::KeydError) to the
//!   shared `ApiError`.
//! - [`extract`]: who is calling: an API client (bearer token) or the
//!   operator (admin token).
//! - [`openapi`]: the OpenAPI 3 document, generated from the handlers.
//! - [`metrics`]: the key service's own series (quota use per client
//!   kind), next to the request series of the shared layer.

pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod status;

use crate::service::KeyService;
use accord_crypto::token::TokenHash;
use axum::Router;

pub use accord_http::serve;

/// Everything a handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub service: KeyService,
    /// Hash of the operator's admin token.
    pub admin_token: TokenHash,
    /// Seals the operator page's session cookies (`crate::web`).
    pub web: accord_http::web::SessionKeys,
}

/// Largest request body: 10,000 elements of 43 characters, quoted and
/// separated, with room for whitespace.
pub const MAX_BODY: usize = 1024 * 1024;

/// The whole key service API.
pub fn router(state: AppState) -> Router {
    let (routes, document) = routes::router();
    let routes = routes.merge(crate::web::router());
    let spec = accord_http::HttpSpec {
        metrics: metrics::build(&state.service),
        ..accord_http::HttpSpec::new("keyd", MAX_BODY, document)
    };
    accord_http::finish(routes, state, spec)
}
