//! Assembles the endpoint families; no handler lives here.

mod admin;
mod oprf;

pub use admin::*;
pub use oprf::*;

use super::status::unknown_purpose;
use super::AppState;
use accord_http::ApiError;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The key service's own routes and their OpenAPI document, from one list
/// (`utoipa-axum`: a handler is routed where its `#[utoipa::path]` says,
/// so the router and the document cannot disagree); `accord_http::finish`
/// adds the standard routes, the fallbacks and the layers.
pub fn router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(super::openapi::ApiDoc::openapi())
        .routes(routes!(oprf::evaluate))
        .routes(routes!(oprf::keys))
        .routes(routes!(admin::create_client, admin::list_clients))
        .routes(routes!(admin::revoke_client))
        .routes(routes!(admin::set_quota))
        .routes(routes!(admin::audit))
        .routes(routes!(admin::rotate))
        .split_for_parts()
}

/// A purpose named in a path.
pub(crate) fn purpose(s: &str) -> Result<accord_crypto::oprf::OprfPurpose, ApiError> {
    s.parse().map_err(|_| unknown_purpose())
}
