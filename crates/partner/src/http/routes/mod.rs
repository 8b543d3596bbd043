//! Assembles the endpoint families; no handler lives here.

pub mod admin;
pub mod audiences;
pub mod feed;
pub mod users;

use super::AppState;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The partner's own routes and their OpenAPI document, from one list
/// (`utoipa-axum`: a handler is routed where its `#[utoipa::path]` says,
/// so the router and the document cannot disagree); `accord_http::finish`
/// adds the standard routes, the fallbacks and the layers.
pub fn router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(super::openapi::ApiDoc::openapi())
        .routes(routes!(feed::ingest))
        .routes(routes!(feed::digests))
        .routes(routes!(feed::bucket))
        .routes(routes!(users::start_registration))
        .routes(routes!(users::verify_registration))
        .routes(routes!(users::me))
        .routes(routes!(users::set_ads))
        .routes(routes!(users::set_phone))
        .routes(routes!(users::evaluate))
        .routes(routes!(users::upload_contacts))
        .routes(routes!(users::suggestions))
        .routes(routes!(audiences::create_advertiser))
        .routes(routes!(
            audiences::create_audience,
            audiences::list_audiences
        ))
        .routes(routes!(audiences::audience))
        .routes(routes!(audiences::start_upload))
        .routes(routes!(audiences::put_batch))
        .routes(routes!(audiences::complete_upload))
        .routes(routes!(audiences::discard_upload, audiences::upload_state))
        .routes(routes!(
            audiences::create_campaign,
            audiences::list_campaigns
        ))
        .routes(routes!(audiences::campaign))
        .routes(routes!(audiences::ads))
        .routes(routes!(audiences::set_email))
        .routes(routes!(admin::read))
        .routes(routes!(admin::stats))
        .routes(routes!(admin::checkpoints))
        .split_for_parts()
}
