//! The OpenAPI 3 document, generated from the handlers' annotations.

use super::routes::*;
use accord_http::openapi::Standard;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Accord key service", description = "RFC 9497 OPRF (ristretto255-SHA512, base mode) per purpose, with per-client quotas, an audit log of counts, and key rotation."),
    paths(evaluate, keys, create_client, list_clients, revoke_client, set_quota, audit, rotate),
    modifiers(&Standard),
)]
pub struct ApiDoc;

/// The whole document, with the standard routes and schemes.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
