use crate::helpers::{spawn_app, valid, TestApp};
use accord_crypto::oprf::{BlindedElementBytes, OprfPurpose, MAX_BATCH};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn b64(bytes: [u8; 32]) -> String {
    BlindedElementBytes(bytes).to_base64()
}

async fn expect(
    app: &TestApp,
    token: Option<&str>,
    purpose: &str,
    body: Value,
    status: StatusCode,
    code: &str,
) -> Value {
    let r = app.evaluate(token, purpose, body).await;
    assert_eq!((r.status, r.code()), (status, code), "{}", r.body);
    assert!(r.body.get("elements").is_none());
    assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()));
    r.body
}

/// Every refusal has its status and stable code, and charges nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_code_and_charge_nothing() {
    let app = spawn_app().await;
    let (client, token) = app
        .create_client("partner", json!({ "coordination": 100_000 }))
        .await;
    let t = Some(token.as_str());
    let bad_point = b64([0xff; 32]); // not a canonical encoding
    let identity = b64([0; 32]); // the identity element

    // Invalid elements, each named by its index; the first one wins
    // whichever check it fails.
    for (elements, index) in [
        ([valid(2), vec![bad_point.clone()], valid(3)].concat(), 2),
        ([valid(1), vec![identity.clone()]].concat(), 1),
        ([valid(1), vec!["not base64!".into()], valid(1)].concat(), 1),
        (
            [valid(1), vec![URL_SAFE_NO_PAD.encode([7u8; 31])]].concat(),
            1,
        ),
        (vec![STANDARD.encode([0xfb; 32])], 0),
        (
            [valid(2), vec![bad_point.clone(), "%%%".into()]].concat(),
            2,
        ),
        // Parallel chunks: the first bad element of a large batch is found.
        (
            {
                let mut v = valid(3_000);
                v[2_999] = bad_point.clone();
                v[1_700] = identity.clone();
                v
            },
            1_700,
        ),
    ] {
        let body = expect(
            &app,
            t,
            "coordination",
            json!({ "elements": elements }),
            StatusCode::BAD_REQUEST,
            "invalid_element",
        )
        .await;
        assert_eq!(body["details"]["index"], index, "{body}");
    }
    expect(
        &app,
        t,
        "coordination",
        json!({ "elements": [] }),
        StatusCode::BAD_REQUEST,
        "empty_batch",
    )
    .await;
    let too_many = vec![valid(1)[0].clone(); MAX_BATCH + 1];
    let body = expect(
        &app,
        t,
        "coordination",
        json!({ "elements": too_many }),
        StatusCode::PAYLOAD_TOO_LARGE,
        "batch_too_large",
    )
    .await;
    assert_eq!(body["details"]["max"], MAX_BATCH);
    expect(
        &app,
        t,
        "everything",
        json!({ "elements": valid(1) }),
        StatusCode::NOT_FOUND,
        "unknown_purpose",
    )
    .await;
    expect(
        &app,
        t,
        "Coordination",
        json!({ "elements": valid(1) }),
        StatusCode::NOT_FOUND,
        "unknown_purpose",
    )
    .await;
    expect(
        &app,
        t,
        "coordination",
        json!({ "key_version": 9, "elements": valid(1) }),
        StatusCode::NOT_FOUND,
        "unknown_key_version",
    )
    .await;
    expect(
        &app,
        t,
        "contacts",
        json!({ "elements": valid(1) }),
        StatusCode::FORBIDDEN,
        "purpose_not_allowed",
    )
    .await;
    expect(
        &app,
        t,
        "coordination",
        json!({ "elements": valid(1), "extra": 1 }),
        StatusCode::BAD_REQUEST,
        "invalid_json",
    )
    .await;
    expect(
        &app,
        t,
        "coordination",
        json!({ "elements": "abc" }),
        StatusCode::BAD_REQUEST,
        "invalid_json",
    )
    .await;
    expect(
        &app,
        t,
        "coordination",
        json!({ "key_version": -1, "elements": valid(1) }),
        StatusCode::BAD_REQUEST,
        "invalid_json",
    )
    .await;
    // Credentials: missing, unknown, and the admin token (not a client).
    expect(
        &app,
        None,
        "coordination",
        json!({ "elements": valid(1) }),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    expect(
        &app,
        Some("acc_wrong"),
        "coordination",
        json!({ "elements": valid(1) }),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let admin = app.admin_token.clone();
    expect(
        &app,
        Some(&admin),
        "coordination",
        json!({ "elements": valid(1) }),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;

    // Not JSON at all, and a body over the limit.
    let raw = |body: Vec<u8>| {
        app.http
            .post(format!("{}/v1/oprf/coordination/evaluate", app.base))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
    };
    let r = raw(b"{\"elements\": [".to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid_json");
    let r = raw(vec![b' '; 2 * 1024 * 1024]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "payload_too_large"
    );

    // Nothing was charged: no audit line, nothing used.
    assert!(app.audit(client).await.is_empty());
    assert_eq!(
        app.service
            .store()
            .used(client, OprfPurpose::Coordination, app.service.now())
            .await
            .unwrap(),
        0
    );
    // And the client still works.
    let r = app
        .evaluate(t, "coordination", json!({ "elements": valid(3) }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.audit(client).await[0].2, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_need_the_admin_token_and_valid_input() {
    let app = spawn_app().await;
    let (id, token) = app.create_client("device", json!({})).await;
    for (method, path, body) in [
        (Method::GET, "/v1/admin/clients".to_owned(), None),
        (
            Method::POST,
            "/v1/admin/clients".to_owned(),
            Some(json!({ "name": "x", "kind": "device" })),
        ),
        (Method::GET, "/v1/admin/audit".to_owned(), None),
        (
            Method::POST,
            "/v1/admin/keys/contacts/rotate".to_owned(),
            None,
        ),
        (
            Method::PUT,
            format!("/v1/admin/clients/{id}/quotas/contacts"),
            Some(json!({ "daily": 1_000_000 })),
        ),
        (Method::DELETE, format!("/v1/admin/clients/{id}"), None),
    ] {
        let r = app.send(method.clone(), &path, None, body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{path}"
        );
        let r = app.send(method, &path, Some(&token), body).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "admin_required"),
            "{path}"
        );
    }
    for (body, code) in [
        (json!({ "name": "x", "kind": "admin" }), "invalid_json"),
        (json!({ "name": "  ", "kind": "device" }), "invalid_name"),
        (
            json!({ "name": "a\u{7}b", "kind": "device" }),
            "invalid_name",
        ),
        (
            json!({ "name": "x", "kind": "device", "quotas": { "ads": 1 } }),
            "invalid_json",
        ),
    ] {
        let r = app
            .admin(Method::POST, "/v1/admin/clients", Some(body))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, code),
            "{}",
            r.body
        );
    }
    let r = app
        .admin(
            Method::PUT,
            "/v1/admin/clients/nope/quotas/contacts",
            Some(json!({ "daily": 1 })),
        )
        .await;
    assert_eq!(r.code(), "invalid_client_id");
    let r = app
        .admin(
            Method::PUT,
            &format!(
                "/v1/admin/clients/{}/quotas/contacts",
                accord_keyd::ClientId::random()
            ),
            Some(json!({ "daily": 1 })),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "unknown_client")
    );
    let r = app
        .admin(
            Method::PUT,
            &format!("/v1/admin/clients/{id}/quotas/ads"),
            Some(json!({ "daily": 1 })),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "unknown_purpose")
    );
    let r = app
        .admin(Method::POST, "/v1/admin/keys/ads/rotate", None)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "unknown_purpose")
    );
    let r = app
        .admin(Method::GET, "/v1/admin/audit?from=yesterday", None)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_time")
    );
    let r = app.send(Method::GET, "/v1/nothing", None, None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = app
        .send(Method::GET, "/v1/oprf/contacts/evaluate", None, None)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}
