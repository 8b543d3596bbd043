//! Who may call what.

use crate::helpers::{assert_error, phone, spawn_app, AppOptions, Body, TestApp};
use accord_crypto::token::BearerToken;
use reqwest::Method;
use serde_json::{json, Value};

fn user_endpoints() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/v1/me", None),
        (Method::DELETE, "/v1/me", None),
        (Method::GET, "/v1/me/export", None),
        (Method::GET, "/v1/me/consent", None),
        (Method::GET, "/v1/me/consent/history?at=0", None),
        (Method::GET, "/v1/me/consent/receipt", None),
        (Method::POST, "/v1/me/consent/ads/grant", None),
        (Method::POST, "/v1/me/consent/product/withdraw", None),
        (Method::DELETE, "/v1/me/consent/ads", None),
        (
            Method::GET,
            "/v1/kt/lookup/00000000-0000-4000-8000-000000000000",
            None,
        ),
        (
            Method::GET,
            "/v1/kt/history/00000000-0000-4000-8000-000000000000",
            None,
        ),
        (
            Method::POST,
            "/v1/policies/1/accept",
            Some(json!({ "share": true })),
        ),
    ]
}

fn admin_endpoints() -> Vec<(Method, String, Option<Value>)> {
    let account = uuid::Uuid::new_v4();
    vec![
        (
            Method::POST,
            "/v1/admin/policies".into(),
            Some(json!({ "text": "terms", "purposes": ["ads"], "profile": "strict" })),
        ),
        (Method::GET, "/v1/admin/policies".into(), None),
        (Method::GET, "/v1/admin/ledger".into(), None),
        (Method::GET, "/v1/admin/ledger/verify".into(), None),
        (
            Method::GET,
            format!("/v1/admin/accounts/{account}/consent?at=0"),
            None,
        ),
        (Method::GET, "/v1/admin/clock".into(), None),
        (
            Method::POST,
            "/v1/admin/clock".into(),
            Some(json!({ "days": 1 })),
        ),
    ]
}

fn body(b: &Option<Value>) -> Body {
    b.clone().map_or(Body::None, Body::Json)
}

/// A token of the right shape that the server never issued.
fn forged() -> String {
    let t = BearerToken::generate().reveal().to_owned();
    assert_eq!(t.len(), 4 + 43);
    t
}

async fn state_fingerprint(app: &TestApp) -> (u64, i64, usize) {
    (
        app.ledger_entries().await,
        app.now().await.0,
        app.admin.policies().await.unwrap().len(),
    )
}

#[tokio::test]
async fn user_endpoints_need_a_valid_device_token() {
    let app = spawn_app(AppOptions::default()).await;
    app.publish(
        accord_domain::ConsentProfile::Strict,
        &[accord_domain::Purpose::Ads],
    )
    .await;
    let user = app
        .register_device(&phone(601), Some((1, crate::helpers::share(Some(true)))))
        .await;
    let before = state_fingerprint(&app).await;

    let forged = forged();
    let tokens: [(&str, Option<&str>); 5] = [
        ("no token", None),
        ("forged token", Some(&forged)),
        ("malformed token", Some("acc_not-a-token")),
        ("empty token", Some("")),
        ("admin token", Some(&app.admin_token)),
    ];
    for (what, token) in tokens {
        for (method, path, b) in user_endpoints() {
            let r = app.send(method.clone(), path, token, body(&b)).await;
            assert_eq!(r.status, 401, "{what}: {method} {path}: {}", r.body);
            assert_error(&r, 401, "unauthorized");
        }
    }
    // Not a bearer scheme at all.
    let r = app
        .http
        .get(format!("{}/v1/me", app.base_url))
        .header("authorization", format!("Basic {}", user.reg.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    assert_eq!(state_fingerprint(&app).await, before);
    user.api.me().await.expect("the real token still works");
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_token() {
    let app = spawn_app(AppOptions::default()).await;
    let user = app.register_device(&phone(602), None).await;
    let before = state_fingerprint(&app).await;

    for (method, path, b) in admin_endpoints() {
        let r = app.send(method.clone(), &path, None, body(&b)).await;
        assert_eq!(r.status, 401, "no token: {method} {path}: {}", r.body);
        assert_error(&r, 401, "unauthorized");

        let r = app
            .send(method.clone(), &path, Some(&user.reg.token), body(&b))
            .await;
        assert_eq!(r.status, 403, "user token: {method} {path}: {}", r.body);
        assert_error(&r, 403, "admin_required");
    }
    assert_eq!(state_fingerprint(&app).await, before);
    // The clock has not moved: the simulated clock agrees with the server.
    assert_eq!(
        app.clock.as_ref().map(accord_domain::Clock::now),
        Some(crate::helpers::T0)
    );
}

/// A token the server never issued authenticates no one, so the answer is
/// 401 `unauthorized` here too, not 403 `admin_required` (which says "we
/// know who you are, and you may not").
#[tokio::test]
async fn admin_endpoints_answer_a_forged_token_with_unauthorized() {
    let app = spawn_app(AppOptions::default()).await;
    let forged = forged();
    for (method, path, b) in admin_endpoints() {
        let r = app
            .send(method.clone(), &path, Some(&forged), body(&b))
            .await;
        assert_eq!(r.status, 401, "forged token: {method} {path}: {}", r.body);
        assert_error(&r, 401, "unauthorized");
    }
}

#[tokio::test]
async fn the_clock_endpoint_exists_only_with_a_simulated_clock() {
    let app = spawn_app(AppOptions {
        simulated_clock: false,
        ..AppOptions::default()
    })
    .await;
    assert!(app.clock.is_none());
    let token = Some(app.admin_token.as_str());
    let r = app
        .send(Method::GET, "/v1/admin/clock", token, Body::None)
        .await;
    assert_error(&r, 404, "not_found");
    let r = app
        .send(
            Method::POST,
            "/v1/admin/clock",
            token,
            Body::Json(json!({ "days": 30 })),
        )
        .await;
    assert_error(&r, 404, "not_found");
    // The other admin endpoints are there.
    app.admin.verify_ledger().await.expect("ledger verify");
    app.admin.policies().await.expect("policies");
}
