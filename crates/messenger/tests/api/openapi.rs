//! The OpenAPI document.

use crate::helpers::{spawn_app, AppOptions};
use serde_json::Value;

#[tokio::test]
async fn openapi_document_is_openapi_3_and_names_the_endpoints() {
    let app = spawn_app(AppOptions::default()).await;
    let r = app
        .http
        .get(format!("{}/openapi.json", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let doc: Value = serde_json::from_slice(&r.bytes().await.unwrap()).expect("valid JSON");
    let version = doc["openapi"].as_str().expect("`openapi` field");
    assert!(version.starts_with("3."), "{version}");
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/v1/registrations",
        "/v1/admin/policies",
        "/v1/me/consent/{purpose}/grant",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    assert!(paths["/v1/admin/policies"]["post"].is_object());
    assert!(paths["/v1/registrations"]["post"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

async fn document(app: &crate::helpers::TestApp) -> Value {
    app.http
        .get(format!("{}/openapi.json", app.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Every route the router serves is in the document and nothing else: the
/// routes are registered from the handlers' own annotations
/// (`utoipa-axum`), and the route sweep (`routes.rs`) checks that every
/// documented method answers and every other method is refused. Here: the
/// cases where the two used to differ.
#[tokio::test]
async fn the_document_is_exactly_what_the_router_serves() {
    // Without a simulated clock there is no clock route, in either.
    let app = spawn_app(AppOptions {
        simulated_clock: false,
        ..Default::default()
    })
    .await;
    let doc = document(&app).await;
    assert!(doc["paths"].get("/v1/admin/clock").is_none());
    let r = app
        .http
        .get(format!("{}/v1/admin/clock", app.base_url))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // With one, in both.
    let app = spawn_app(AppOptions::default()).await;
    let doc = document(&app).await;
    assert!(doc["paths"]["/v1/admin/clock"]["get"].is_object());
    assert!(doc["paths"]["/v1/admin/clock"]["post"].is_object());
    // The DELETE form of withdrawal is routed and documented.
    assert!(doc["paths"]["/v1/me/consent/{purpose}"]["delete"].is_object());
    // Every operation of the document, counted: 42 of the messenger's own
    // with the clock (four of them key transparency's), and the three
    // standard ones.
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| {
            ["get", "post", "put", "delete", "patch"]
                .iter()
                .filter(|m| item.get(**m).is_some())
                .count()
        })
        .sum();
    assert_eq!(
        operations,
        71 + 3,
        "{:#?}",
        doc["paths"].as_object().unwrap().keys().collect::<Vec<_>>()
    );
}
