//! What every service's OpenAPI document has in common: the security
//! schemes (`bearer` for callers, `admin` for the operator, `api_key`
//! for a business's API key), the
//! [`ErrorBody`] schema, and the standard routes that [`finish`](crate::finish)
//! adds (`/healthz`, `/openapi.json`, `/metrics`), and on every operation
//! the error answers that this layer gives whatever the route
//! ([`add_layer_errors`]).
//!
//! A service's `#[derive(OpenApi)]` names `modifiers(&accord_http::openapi::Standard)`.

use crate::error::ErrorBody;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
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
        for name in ["bearer", "admin", "api_key"] {
            c.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// Adds to each operation of a whole document the error answers of the
/// shared extractors that its annotation leaves out (an annotation's own
/// entry is kept); [`finish`](crate::finish) does it to the document it
/// serves, whichever way its paths were gathered:
///
/// - `security` `bearer` or `admin`: 401 `unauthorized` (no, malformed or
///   unknown token); `admin`: 403 `admin_required` (another credential);
/// - a request body: 400 `invalid_json`, 413 `payload_too_large`, 415
///   `unsupported_media_type` (`Json`, `OptionalJson` and the body limit);
/// - parameters: 400 (`Path` and `Query` rejections, such as a value that
///   does not parse or is not UTF-8 once decoded).
pub fn add_layer_errors(api: &mut utoipa::openapi::OpenApi) {
    for item in api.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            add_operation_errors(op);
        }
    }
}

fn add_operation_errors(op: &mut Operation) {
    let schemes: Vec<String> = op
        .security
        .iter()
        .flatten()
        .filter_map(|r| serde_json::to_value(r).ok())
        .filter_map(|v| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
        .flatten()
        .collect();
    let has = |name: &str| schemes.iter().any(|s| s == name);
    let mut add = Vec::new();
    if has("bearer") || has("admin") || has("api_key") {
        add.push(("401", "unauthorized: no, malformed or unknown bearer token"));
    }
    if has("admin") {
        add.push(("403", "admin_required: not the admin token"));
    }
    if op.request_body.is_some() {
        add.push(("400", "invalid_json and the route's own codes"));
        add.push(("413", "payload_too_large: the body is over the limit"));
        add.push((
            "415",
            "unsupported_media_type: the body is not `application/json`",
        ));
    }
    if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
        add.push((
            "400",
            "a parameter does not parse, and the route's own codes",
        ));
    }
    for (status, description) in add {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| {
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build()
                    .into()
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, utoipa::ToSchema)]
    #[allow(dead_code)]
    struct Body {
        x: u32,
    }

    #[utoipa::path(post, path = "/admin/{id}", params(("id" = String, Path)), request_body = Body,
        security(("admin" = [])), responses((status = 200), (status = 400, description = "own")))]
    #[allow(dead_code)]
    async fn admin_op() {}

    #[utoipa::path(get, path = "/open", responses((status = 200)))]
    #[allow(dead_code)]
    async fn open_op() {}

    #[derive(OpenApi)]
    #[openapi(paths(admin_op, open_op), modifiers(&Standard))]
    struct Doc;

    #[test]
    fn every_operation_documents_the_shared_layers_errors() {
        let mut doc = Doc::openapi();
        add_layer_errors(&mut doc);
        let doc = serde_json::to_value(doc).unwrap();
        let statuses = |path: &str, method: &str| -> Vec<String> {
            doc["paths"][path][method]["responses"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(
            statuses("/admin/{id}", "post"),
            ["200", "400", "401", "403", "413", "415"]
        );
        let own = &doc["paths"]["/admin/{id}"]["post"]["responses"]["400"];
        assert_eq!(
            own["description"], "own",
            "an annotation's own entry is kept"
        );
        let added = &doc["paths"]["/admin/{id}"]["post"]["responses"]["415"];
        assert_eq!(
            added["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
        assert_eq!(statuses("/open", "get"), ["200"]);
        assert_eq!(statuses("/metrics", "get"), ["200", "401", "403"]);
    }
}
