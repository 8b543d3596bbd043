//! The OpenAPI 3 document, generated from the handlers' annotations.

use super::routes::*;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Accord key service", description = "RFC 9497 OPRF (ristretto255-SHA512, base mode) per purpose, with per-client quotas, an audit log of counts, and key rotation."),
    paths(healthz, openapi, evaluate, keys, create_client, list_clients, revoke_client, set_quota, audit, rotate),
    components(schemas(crate::http::error::ErrorBody)),
    modifiers(&Security),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let c = api.components.get_or_insert_with(Default::default);
        for name in ["bearer", "admin"] {
            c.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}
