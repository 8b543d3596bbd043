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
