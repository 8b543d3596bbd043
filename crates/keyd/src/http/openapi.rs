//! The OpenAPI 3 document's frame (title, the shared schemes and standard
//! routes); its paths come from the routes themselves (`routes::router`).

use accord_http::openapi::Standard;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Accord key service", description = "RFC 9497 OPRF (ristretto255-SHA512, base mode) per purpose, with per-client quotas, an audit log of counts, and key rotation."),
    modifiers(&Standard),
)]
pub struct ApiDoc;
