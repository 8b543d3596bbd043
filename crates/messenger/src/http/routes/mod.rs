//! Assembles the endpoint families; no handler lives here.

mod account;
mod admin;
mod consent;
mod contacts;
mod health;
mod policy;
mod registration;

pub use account::*;
pub use admin::*;
pub use consent::*;
pub use contacts::*;
pub use health::*;
pub use policy::*;
pub use registration::*;

use super::error::ApiError;
use super::AppState;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Router;

pub fn router(state: AppState) -> Router {
    let mut admin = Router::new()
        .route(
            "/v1/admin/policies",
            post(admin::publish_policy).get(admin::list_policies),
        )
        .route("/v1/admin/ledger", get(admin::ledger))
        .route("/v1/admin/pseudonyms/refresh", post(contacts::refresh))
        .route("/v1/admin/ledger/verify", get(admin::verify_ledger))
        .route(
            "/v1/admin/accounts/{account_id}/consent",
            get(admin::consent_at),
        );
    if state.simulated_clock.is_some() {
        admin = admin.route(
            "/v1/admin/clock",
            get(admin::clock).post(admin::advance_clock),
        );
    }
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/openapi.json", get(health::openapi))
        .route("/v1/registrations", post(registration::start))
        .route(
            "/v1/registrations/{registration_id}/verify",
            post(registration::verify),
        )
        .route("/v1/policies/current", get(policy::current))
        .route("/v1/policies/{version}/accept", post(policy::accept))
        .route("/v1/me", get(account::me).delete(account::delete_me))
        .route("/v1/me/export", get(account::export))
        .route("/v1/me/consent", get(consent::my_consent))
        .route("/v1/me/consent/history", get(consent::my_consent_at))
        .route("/v1/me/consent/receipt", get(consent::receipt))
        .route("/v1/me/consent/{purpose}/grant", post(consent::grant))
        .route("/v1/me/consent/{purpose}/withdraw", post(consent::withdraw))
        .route("/v1/me/consent/{purpose}", delete(consent::withdraw))
        .route("/v1/contacts/discovery", get(contacts::discovery))
        .route("/v1/contacts/buckets/{prefix}", get(contacts::bucket))
        .merge(admin)
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
