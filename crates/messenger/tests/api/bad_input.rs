//! Bad input gets a clear error in the one error shape, never a panic,
//! and changes nothing.

use crate::helpers::{
    assert_error, device_info, phone, share, spawn_app, AppOptions, Body, Resp, TestApp,
};
use accord_domain::{ConsentProfile, Purpose};
use reqwest::Method;
use serde_json::{json, Value};

const JSON: Option<&str> = Some("application/json");
const OVER_LIMIT: usize = 2 * 1024 * 1024 + 1;

fn raw(content_type: Option<&'static str>, bytes: impl Into<Vec<u8>>) -> Body {
    Body::Raw {
        content_type,
        bytes: bytes.into(),
    }
}

/// A syntactically valid JSON document larger than the 2 MiB limit.
fn oversized_json(field: &str) -> Vec<u8> {
    let mut v = format!("{{\"{field}\": \"").into_bytes();
    v.resize(OVER_LIMIT + 16, b'a');
    v.extend_from_slice(b"\"}");
    v
}

/// Everything a bad request could have changed.
async fn observable_state(app: &TestApp, token: &str) -> (Value, Value, usize, Value) {
    let report = serde_json::to_value(
        app.admin
            .verify_ledger()
            .await
            .expect("the ledger verifies"),
    )
    .unwrap();
    let consent: Value = app
        .client_with(token)
        .request_raw(Method::GET, "/v1/me/consent", None)
        .await
        .unwrap();
    let policies = app.admin.policies().await.unwrap().len();
    let clock = json!(app.now().await);
    (report, consent, policies, clock)
}

struct Case {
    what: &'static str,
    method: Method,
    path: String,
    token: Option<String>,
    body: Body,
    status: u16,
    code: &'static str,
}

#[tokio::test]
async fn bad_input_is_answered_in_the_error_shape_and_changes_nothing() {
    let app = spawn_app(AppOptions::default()).await;
    app.publish(ConsentProfile::Strict, &[Purpose::Ads, Purpose::Product])
        .await;
    let user = app
        .register_device(&phone(701), Some((1, share(Some(true)))))
        .await;
    let started = app
        .anon()
        .start_registration(&phone(702), None)
        .await
        .unwrap();
    let reg_id = started.registration_id;
    let code = started.dev_code.unwrap();
    let u = Some(user.reg.token.clone());
    let admin = Some(app.admin_token.clone());
    let acct = user.reg.account_id;
    let dev = serde_json::to_value(device_info()).unwrap();
    let mut bad_dev = dev.clone();
    bad_dev["carrier"] = json!("telkomsel");
    let mut empty_model = dev.clone();
    empty_model["model"] = json!("  ");
    let mut number_model = dev.clone();
    number_model["model"] = json!("+62 812-3456-7890");
    let mut email_version = dev.clone();
    email_version["os_version"] = json!("alice@example.com");
    let mut unknown_os = dev.clone();
    unknown_os["os"] = json!("symbian");

    let case = |what, method, path: &str, token: &Option<String>, body, status, code| Case {
        what,
        method,
        path: path.to_owned(),
        token: token.clone(),
        body,
        status,
        code,
    };
    let verify = format!("/v1/registrations/{reg_id}/verify");
    let cases = vec![
        case(
            "malformed JSON",
            Method::POST,
            "/v1/registrations",
            &None,
            raw(JSON, r#"{"phone": "#),
            400,
            "invalid_json",
        ),
        case(
            "not UTF-8",
            Method::POST,
            "/v1/registrations",
            &None,
            raw(JSON, vec![0xff, 0xfe, b'{']),
            400,
            "invalid_json",
        ),
        case(
            "JSON of the wrong type",
            Method::POST,
            "/v1/registrations",
            &None,
            raw(JSON, "[1, 2, 3]"),
            400,
            "invalid_json",
        ),
        case(
            "text/plain",
            Method::POST,
            "/v1/registrations",
            &None,
            raw(
                Some("text/plain"),
                json!({ "phone": phone(703) }).to_string(),
            ),
            415,
            "unsupported_media_type",
        ),
        case(
            "no content type",
            Method::POST,
            "/v1/registrations",
            &None,
            raw(None, json!({ "phone": phone(703) }).to_string()),
            415,
            "unsupported_media_type",
        ),
        case(
            "unknown field",
            Method::POST,
            "/v1/registrations",
            &None,
            Body::Json(json!({ "phone": phone(703), "admin": true })),
            400,
            "invalid_json",
        ),
        case(
            "missing field",
            Method::POST,
            "/v1/registrations",
            &None,
            Body::Json(json!({ "region": "ID" })),
            400,
            "invalid_json",
        ),
        case(
            "oversized body",
            Method::POST,
            "/v1/registrations",
            &None,
            raw(JSON, oversized_json("phone")),
            413,
            "payload_too_large",
        ),
        case(
            "unknown field in verify",
            Method::POST,
            &verify,
            &None,
            Body::Json(json!({ "code": code, "device": dev, "sudo": 1 })),
            400,
            "invalid_json",
        ),
        case(
            "unknown field in device",
            Method::POST,
            &verify,
            &None,
            Body::Json(json!({ "code": code, "device": { "os": "android" } })),
            400,
            "invalid_json",
        ),
        case(
            "bad carrier",
            Method::POST,
            &verify,
            &None,
            Body::Json(json!({ "code": code, "device": bad_dev })),
            400,
            "invalid_device_info",
        ),
        case(
            "empty model",
            Method::POST,
            &verify,
            &None,
            Body::Json(json!({ "code": code, "device": empty_model })),
            400,
            "invalid_device_info",
        ),
        case(
            "a phone number as the model",
            Method::POST,
            &verify,
            &None,
            Body::Json(json!({ "code": code, "device": number_model })),
            400,
            "device_info_contains_identifier",
        ),
        case(
            "an e-mail address as the OS version",
            Method::POST,
            &verify,
            &None,
            Body::Json(json!({ "code": code, "device": email_version })),
            400,
            "device_info_contains_identifier",
        ),
        case(
            "an unknown OS",
            Method::POST,
            &verify,
            &None,
            Body::Json(json!({ "code": code, "device": unknown_os })),
            400,
            "invalid_device_info",
        ),
        case(
            "registration id not a UUID",
            Method::POST,
            "/v1/registrations/42/verify",
            &None,
            Body::Json(json!({ "code": code, "device": dev })),
            400,
            "invalid_path",
        ),
        case(
            "unknown registration",
            Method::POST,
            &format!("/v1/registrations/{}/verify", uuid::Uuid::new_v4()),
            &None,
            Body::Json(json!({ "code": code, "device": dev })),
            410,
            "verification_expired",
        ),
        case(
            "unknown policy version",
            Method::POST,
            "/v1/policies/99/accept",
            &u,
            Body::Json(json!({ "share": false })),
            404,
            "unknown_policy_version",
        ),
        case(
            "policy version not a number",
            Method::POST,
            "/v1/policies/one/accept",
            &u,
            Body::Json(json!({ "share": false })),
            400,
            "invalid_path",
        ),
        case(
            "malformed accept",
            Method::POST,
            "/v1/policies/1/accept",
            &u,
            raw(JSON, "{share: no}"),
            400,
            "invalid_json",
        ),
        case(
            "unknown field in accept",
            Method::POST,
            "/v1/policies/1/accept",
            &u,
            Body::Json(json!({ "share": false, "everything": true })),
            400,
            "invalid_json",
        ),
        case(
            "unknown purpose in accept",
            Method::POST,
            "/v1/policies/1/accept",
            &u,
            Body::Json(json!({ "grants": ["email"] })),
            400,
            "invalid_json",
        ),
        case(
            "unknown purpose grant",
            Method::POST,
            "/v1/me/consent/email/grant",
            &u,
            Body::None,
            400,
            "unknown_purpose",
        ),
        case(
            "unknown purpose withdraw",
            Method::POST,
            "/v1/me/consent/email/withdraw",
            &u,
            Body::None,
            400,
            "unknown_purpose",
        ),
        case(
            "unknown purpose delete",
            Method::DELETE,
            "/v1/me/consent/%00",
            &u,
            Body::None,
            400,
            "unknown_purpose",
        ),
        case(
            "bad at",
            Method::GET,
            "/v1/me/consent/history?at=yesterday",
            &u,
            Body::None,
            400,
            "invalid_time",
        ),
        case(
            "impossible at",
            Method::GET,
            "/v1/me/consent/history?at=2026-13-01T00:00:00Z",
            &u,
            Body::None,
            400,
            "invalid_time",
        ),
        case(
            "missing at",
            Method::GET,
            "/v1/me/consent/history",
            &u,
            Body::None,
            400,
            "invalid_query",
        ),
        case(
            "admin bad at",
            Method::GET,
            &format!("/v1/admin/accounts/{acct}/consent?at=2026-01-05T09:00:00+07:00"),
            &admin,
            Body::None,
            400,
            "invalid_time",
        ),
        case(
            "admin bad account id",
            Method::GET,
            "/v1/admin/accounts/me/consent?at=0",
            &admin,
            Body::None,
            400,
            "invalid_account_id",
        ),
        case(
            "admin unknown account",
            Method::GET,
            &format!("/v1/admin/accounts/{}/consent?at=0", uuid::Uuid::new_v4()),
            &admin,
            Body::None,
            404,
            "not_found",
        ),
        case(
            "admin negative after",
            Method::GET,
            "/v1/admin/ledger?after=-1",
            &admin,
            Body::None,
            400,
            "invalid_query",
        ),
        case(
            "publish unknown purpose",
            Method::POST,
            "/v1/admin/policies",
            &admin,
            Body::Json(json!({ "text": "t", "purposes": ["email"] })),
            400,
            "invalid_json",
        ),
        case(
            "publish empty text",
            Method::POST,
            "/v1/admin/policies",
            &admin,
            Body::Json(json!({ "text": " ", "purposes": ["ads"] })),
            400,
            "invalid_policy",
        ),
        case(
            "publish oversized",
            Method::POST,
            "/v1/admin/policies",
            &admin,
            raw(JSON, oversized_json("text")),
            413,
            "payload_too_large",
        ),
        case(
            "clock backwards",
            Method::POST,
            "/v1/admin/clock",
            &admin,
            Body::Json(json!({ "days": -1 })),
            400,
            "invalid_advance",
        ),
        case(
            "clock overflow",
            Method::POST,
            "/v1/admin/clock",
            &admin,
            Body::Json(json!({ "days": i64::MAX })),
            400,
            "invalid_advance",
        ),
        case(
            "clock too far",
            Method::POST,
            "/v1/admin/clock",
            &admin,
            Body::Json(json!({ "days": 3651 })),
            400,
            "invalid_advance",
        ),
        case(
            "unknown route",
            Method::GET,
            "/v1/nothing/here",
            &u,
            Body::None,
            404,
            "not_found",
        ),
        case(
            "wrong method",
            Method::PUT,
            "/v1/me",
            &u,
            Body::None,
            405,
            "method_not_allowed",
        ),
    ];

    let before = observable_state(&app, &user.reg.token).await;
    for c in cases {
        let r: Resp = app
            .send(c.method.clone(), &c.path, c.token.as_deref(), c.body)
            .await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (c.status, Some(c.code)),
            "{}: {} {}: {}",
            c.what,
            c.method,
            c.path,
            r.body
        );
        assert_error(&r, c.status, c.code);
        assert_eq!(
            observable_state(&app, &user.reg.token).await,
            before,
            "{} changed state",
            c.what
        );
    }
    app.anon().health().await.expect("still serving");

    // The pending registration survived all of it.
    let reg = app
        .anon()
        .verify_registration(reg_id, &code, &device_info(), Some((1, &share(None))))
        .await;
    assert!(reg.expect("the code still works").new_account);
}

/// The accept endpoint parses its (optional) body itself; an oversized
/// body must still come back in the error shape.
#[tokio::test]
async fn an_oversized_accept_body_is_answered_in_the_error_shape() {
    let app = spawn_app(AppOptions::default()).await;
    let user = app.register_device(&phone(711), None).await;
    app.publish(ConsentProfile::Strict, &[Purpose::Ads]).await;
    let before = app.ledger_entries().await;
    let r = app
        .send(
            Method::POST,
            "/v1/policies/1/accept",
            Some(&user.reg.token),
            raw(JSON, oversized_json("share")),
        )
        .await;
    assert_error(&r, 413, "payload_too_large");
    assert_eq!(app.ledger_entries().await, before);
}

/// Like every other JSON endpoint, accept refuses a body that is not
/// declared as JSON instead of acting on it.
#[tokio::test]
async fn accept_refuses_a_body_not_declared_as_json() {
    let app = spawn_app(AppOptions::default()).await;
    let user = app.register_device(&phone(712), None).await;
    app.publish(ConsentProfile::Strict, &[Purpose::Ads]).await;
    let before = app.ledger_entries().await;
    let r = app
        .send(
            Method::POST,
            "/v1/policies/1/accept",
            Some(&user.reg.token),
            raw(Some("text/plain"), json!({ "share": true }).to_string()),
        )
        .await;
    assert_error(&r, 415, "unsupported_media_type");
    assert_eq!(app.ledger_entries().await, before);
    assert!(user.api.consent().await.unwrap().state.accepted.is_none());
}
