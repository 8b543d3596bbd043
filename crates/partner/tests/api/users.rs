//! Partner users: sign-up, the caller's view, settings, contacts, and the
//! errors of each.

use crate::helpers::{assert_error, spawn_app};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn a_user_signs_up_reads_itself_and_sets_ad_personalisation() {
    let app = spawn_app().await;
    let (id, token) = app.sign_up("alice", None).await;
    let me = app
        .send(Method::GET, "/v1/partner/me", Some(&token), None)
        .await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["user_id"], id.as_str());
    assert_eq!(me.body["linked_to_messenger"], false);
    let r = app
        .send(
            Method::PUT,
            "/v1/partner/me/ads",
            Some(&token),
            Some(json!({ "enabled": true })),
        )
        .await;
    assert_eq!(r.status, 204);
    let me = app
        .send(Method::GET, "/v1/partner/me", Some(&token), None)
        .await;
    assert_eq!(me.body["ads_personalisation"], true);
}

#[tokio::test]
async fn bad_pseudonyms_unknown_fields_and_strangers_are_refused() {
    let app = spawn_app().await;
    // Sign-up takes a number to verify, never a pseudonym or a name alone.
    let r = app
        .send(
            Method::POST,
            "/v1/partner/registrations",
            None,
            Some(json!({ "phone": "+6281234567001", "phone_pseudonym": "ab".repeat(32) })),
        )
        .await;
    assert_error(&r, 400, "invalid_json");
    let r = app
        .send(
            Method::POST,
            "/v1/partner/registrations",
            None,
            Some(json!({ "phone": "12" })),
        )
        .await;
    assert_error(&r, 400, "invalid_phone");
    let started = app.start_registration("+6281234567001").await;
    let r = app.verify(&started.body, "12345", "").await;
    assert_error(&r, 400, "bad_request");
    let r = app
        .send(
            Method::POST,
            "/v1/partner/registrations/not-a-uuid/verify",
            None,
            Some(json!({ "code": "123456", "name": "x" })),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = app
        .send(
            Method::POST,
            &format!("/v1/partner/registrations/{}/verify", uuid::Uuid::new_v4()),
            None,
            Some(json!({ "code": "123456", "name": "x" })),
        )
        .await;
    assert_error(&r, 410, "verification_expired");
    let (_, token) = app.sign_up("bob", None).await;
    let r = app
        .send(
            Method::PUT,
            "/v1/partner/me/phone",
            Some(&token),
            Some(json!({ "phone_pseudonym": "zz" })),
        )
        .await;
    assert_error(&r, 400, "invalid_pseudonym");
    let r = app
        .send(Method::GET, "/v1/partner/me", Some("not-a-token"), None)
        .await;
    assert_error(&r, 401, "unauthorized");
    // A partner user is not the operator.
    let r = app
        .send(Method::GET, "/v1/admin/partner/stats", Some(&token), None)
        .await;
    assert_error(&r, 403, "admin_required");
    let r = app
        .send(
            Method::GET,
            "/v1/admin/partner/stats",
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["users"], 1);
}

#[tokio::test]
async fn contacts_keep_only_matches_and_a_key_service_is_needed_to_evaluate() {
    let app = spawn_app().await;
    let (_, token) = app.sign_up("carol", None).await;
    let r = app
        .send(
            Method::POST,
            "/v1/partner/me/contacts",
            Some(&token),
            Some(json!({ "pseudonyms": ["cd".repeat(32)] })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!({ "received": 1, "kept": 0 }));
    let r = app
        .send(
            Method::POST,
            "/v1/oprf/coordination/evaluate",
            Some(&token),
            Some(json!({ "elements": ["AAAA"] })),
        )
        .await;
    assert_error(&r, 503, "key_service_unavailable");
}
