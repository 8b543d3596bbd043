//! The OpenAPI 3 document, generated from the handlers' annotations.

use super::routes::{admin, feed, users};
use accord_http::openapi::Standard;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Accord partner", description = "The partner (social/ads) service: the coordination feed from the messenger, partner users, linking, contacts and friend suggestions."),
    paths(
        feed::ingest, feed::digests, feed::bucket,
        users::start_registration, users::verify_registration, users::me, users::set_ads, users::set_phone, users::evaluate,
        users::upload_contacts, users::suggestions,
        admin::read, admin::stats,
    ),
    modifiers(&Standard),
)]
pub struct ApiDoc;

/// The whole document, with the standard routes and schemes.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
