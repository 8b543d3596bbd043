use crate::helpers::spawn_app;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_created_with_a_token_shown_once_and_default_quotas() {
    let app = spawn_app().await;
    let r = app
        .admin(
            Method::POST,
            "/v1/admin/clients",
            Some(json!({ "name": "Pixel of Ana", "kind": "device" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let token = r.body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("acc_"));
    assert_eq!(r.body["kind"], "device");
    assert_eq!(
        r.body["quotas"],
        json!({ "coordination": 0, "contacts": 1000 })
    );
    app.clock.advance_millis(1_000);
    let r2 = app
        .admin(
            Method::POST,
            "/v1/admin/clients",
            Some(json!({ "name": "Shop", "kind": "business", "quotas": { "contacts": 5 } })),
        )
        .await;
    assert_eq!(
        r2.body["quotas"],
        json!({ "coordination": 100000, "contacts": 5 })
    );

    let list = app.admin(Method::GET, "/v1/admin/clients", None).await;
    assert_eq!(list.status, StatusCode::OK);
    let names: Vec<_> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["Pixel of Ana", "Shop"]);
    // The token is never shown again, and not stored in the clear.
    assert!(!list.body.to_string().contains(&token));
    assert!(list
        .body
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c.get("token").is_none()));
}

/// A client created under a chosen id can be revoked by it: its token is
/// refused from then on (401), a second revocation is a 404, and other
/// clients are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_client_is_refused() {
    let app = spawn_app().await;
    let id = uuid::Uuid::new_v4();
    let create = |name: &str| {
        app.admin(
            Method::POST,
            "/v1/admin/clients",
            Some(json!({ "id": id, "name": name, "kind": "device" })),
        )
    };
    let r = create("device x").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["client_id"], json!(id));
    let token = r.body["token"].as_str().unwrap().to_owned();
    let again = create("device y").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    let (_, other) = app.create_client("device", json!({})).await;
    let element = || json!({ "elements": crate::helpers::valid(1) });
    for t in [&token, &other] {
        let r = app.evaluate(Some(t), "contacts", element()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let path = format!("/v1/admin/clients/{id}");
    let r = app.admin(Method::DELETE, &path, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = app.evaluate(Some(&token), "contacts", element()).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let r = app.evaluate(Some(&other), "contacts", element()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.admin(Method::DELETE, &path, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "unknown_client")
    );
    let r = app
        .admin(Method::DELETE, "/v1/admin/clients/nope", None)
        .await;
    assert_eq!(r.code(), "invalid_client_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_openapi_describe_the_api() {
    let app = spawn_app().await;
    let r = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (StatusCode::OK, json!({ "status": "ok" }))
    );
    let doc = app
        .send(Method::GET, "/openapi.json", None, None)
        .await
        .body;
    for path in [
        "/v1/oprf/{purpose}/evaluate",
        "/v1/oprf/{purpose}/keys",
        "/v1/admin/clients",
        "/v1/admin/clients/{client_id}/quotas/{purpose}",
        "/v1/admin/audit",
        "/v1/admin/keys/{purpose}/rotate",
        "/healthz",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    let responses = &doc["paths"]["/v1/oprf/{purpose}/evaluate"]["post"]["responses"];
    for status in ["200", "400", "401", "403", "404", "413", "429"] {
        assert!(responses.get(status).is_some(), "{status}");
    }
}
