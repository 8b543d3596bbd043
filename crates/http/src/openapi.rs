//! What every service's OpenAPI document has in common: the security
//! schemes (`bearer` for callers, `admin` for the operator), the
//! [`ErrorBody`] schema, and the standard routes that [`finish`](crate::finish)
//! adds (`/healthz`, `/openapi.json`, `/metrics`).
//!
//! A service's `#[derive(OpenApi)]` names `modifiers(&accord_http::openapi::Standard)`.

use crate::error::ErrorBody;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "alive")))]
pub(crate) async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3 document")))]
pub(crate) async fn openapi_json(
    axum::Extension(doc): axum::Extension<crate::OpenApiJson>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        doc.0,
    )
        .into_response()
}

/// Prometheus metrics in the text exposition format: requests by method,
/// route template and status, and the service's own gauges. Operator only.
#[utoipa::path(get, path = "/metrics", tag = "ops", security(("admin" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain"),
        (status = 401, description = "no or unknown token", body = ErrorBody),
        (status = 403, description = "not the admin token", body = ErrorBody),
    ))]
pub(crate) async fn metrics(
    axum::Extension(m): axum::Extension<crate::metrics::Metrics>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render().await,
    )
        .into_response()
}

#[derive(OpenApi)]
#[openapi(paths(healthz, openapi_json, metrics), components(schemas(ErrorBody)))]
struct StandardDoc;

/// Adds the shared schemes, schema and routes to a service's document.
pub struct Standard;

impl Modify for Standard {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        api.merge(StandardDoc::openapi());
        let c = api.components.get_or_insert_with(Default::default);
        for name in ["bearer", "admin"] {
            c.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}
