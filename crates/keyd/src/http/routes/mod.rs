//! Assembles the endpoint families; no handler lives here.

mod admin;
mod oprf;

pub use admin::*;
pub use oprf::*;

use super::error::{unknown_purpose, ApiError};
use super::AppState;
use axum::routing::{delete, get, post, put};
use axum::Router;

/// The key service's own routes; `accord_http::finish` adds the standard
/// ones, the fallbacks and the layers.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/oprf/{purpose}/evaluate", post(oprf::evaluate))
        .route("/v1/oprf/{purpose}/keys", get(oprf::keys))
        .route(
            "/v1/admin/clients",
            post(admin::create_client).get(admin::list_clients),
        )
        .route(
            "/v1/admin/clients/{client_id}",
            delete(admin::revoke_client),
        )
        .route(
            "/v1/admin/clients/{client_id}/quotas/{purpose}",
            put(admin::set_quota),
        )
        .route("/v1/admin/audit", get(admin::audit))
        .route("/v1/admin/keys/{purpose}/rotate", post(admin::rotate))
}

/// A purpose named in a path.
pub(crate) fn purpose(s: &str) -> Result<accord_crypto::oprf::OprfPurpose, ApiError> {
    s.parse().map_err(|_| unknown_purpose())
}
