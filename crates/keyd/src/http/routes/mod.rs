//! Assembles the endpoint families; no handler lives here.

mod admin;
mod health;
mod oprf;

pub use admin::*;
pub use health::*;
pub use oprf::*;

use super::error::ApiError;
use super::AppState;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::Router;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/openapi.json", get(health::openapi))
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
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .with_state(state)
}

/// A purpose named in a path.
pub(crate) fn purpose(s: &str) -> Result<accord_crypto::oprf::OprfPurpose, ApiError> {
    s.parse().map_err(|_| ApiError::unknown_purpose())
}
