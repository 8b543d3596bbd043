//! Assembles the endpoint families; no handler lives here.

pub mod admin;
pub mod feed;
pub mod users;

use super::AppState;
use axum::routing::{get, post, put};
use axum::Router;

/// The partner's own routes; `accord_http::finish` adds the standard
/// ones, the fallbacks and the layers.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/feed/ingest", post(feed::ingest))
        .route("/v1/feed/reconcile/digests", post(feed::digests))
        .route("/v1/feed/reconcile/bucket", post(feed::bucket))
        .route("/v1/partner/registrations", post(users::start_registration))
        .route(
            "/v1/partner/registrations/{registration_id}/verify",
            post(users::verify_registration),
        )
        .route("/v1/partner/me", get(users::me))
        .route("/v1/partner/me/ads", put(users::set_ads))
        .route("/v1/partner/me/phone", put(users::set_phone))
        .route("/v1/oprf/coordination/evaluate", post(users::evaluate))
        .route("/v1/partner/me/contacts", post(users::upload_contacts))
        .route("/v1/partner/me/suggestions", get(users::suggestions))
        .route("/v1/admin/partner/records/{pseudonym}", get(admin::read))
        .route("/v1/admin/partner/stats", get(admin::stats))
}
