//! Every documented route answers bad requests with the JSON error body
//! (the shared layer's sweep), and the metrics show real traffic and the
//! messenger's own gauges to the operator only.

use crate::e2e_server::{build_send, device, post_send};
use crate::helpers::{phone, spawn_app, AppOptions};
use accord_http::testing::{scrape, Sweep};

#[tokio::test]
async fn every_documented_route_answers_bad_requests_with_the_json_error_body() {
    let app = spawn_app(AppOptions {
        with_partner: true,
        ..Default::default()
    })
    .await;
    let user = app.register_device(&phone(1), None).await;
    let other = app.register_device(&phone(2), None).await;
    let other_id = other.reg.account_id.to_string();
    let any = uuid::Uuid::new_v4().to_string();
    let key: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/business", app.base_url))
        .bearer_auth(&other.reg.token)
        .json(&serde_json::json!({ "display_name": "Sweep" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let api_key = key["api_key"].as_str().unwrap().to_owned();
    let report = Sweep {
        base_url: &app.base_url,
        bearer: &user.reg.token,
        admin: &app.admin_token,
        api_key: Some(&api_key),
        params: &[
            ("registration_id", &any),
            ("version", "1"),
            ("purpose", "ads"),
            ("prefix", "00ff"),
            ("account_id", &other_id),
            ("business", &other_id),
            ("key_id", &any),
            ("id", &any),
            ("name", "order_receipt"),
            ("language", "en"),
        ],
        signed: &[],
        route_limits: &[
            (
                "/v1/messages",
                accord_messenger::http::routes::MAX_SEND_BODY_BYTES,
            ),
            (
                "/v1/business/messages",
                accord_messenger::http::routes::MAX_BUSINESS_SEND_BYTES,
            ),
            (
                "/v1/business/messages/batch",
                accord_messenger::http::routes::MAX_BUSINESS_BATCH_BYTES,
            ),
        ],
        body_limit: accord_messenger::http::MAX_BODY,
    }
    .run()
    .await;
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    // 71 operations of the messenger and 3 standard ones.
    assert!(report.checked >= 130, "only {} checks", report.checked);
}

#[tokio::test]
async fn metrics_show_requests_feed_mailboxes_and_group_commits_to_the_operator_only() {
    let app = spawn_app(AppOptions::default()).await;
    let mut a = device(&app, &phone(10), 4).await;
    let b = device(&app, &phone(11), 4).await;
    let send = build_send(&app, &mut a, b.account, "metrics-1", "hello").await;
    let r = post_send(&app, &a, b.account, &send).await;
    assert_eq!(r.status, 202, "{}", r.body);

    assert_eq!(scrape(&app.base_url, None).await.0, 401);
    assert_eq!(scrape(&app.base_url, Some(&a.token)).await.0, 403);
    let (status, text) = scrape(&app.base_url, Some(&app.admin_token)).await;
    assert_eq!(status, 200, "{text}");
    for series in [
        r#"accord_http_requests_total{service="messenger",method="POST",route="/v1/messages",status="202"} 1"#,
        r#"accord_http_requests_total{service="messenger",method="POST",route="/v1/keys/claim",status="200"}"#,
        r#"accord_feed_pending_events{service="messenger"}"#,
        r#"accord_feed_lag_seconds{service="messenger"} 0"#,
        r#"accord_credential_revocations_pending{service="messenger"} 0"#,
        // One envelope for b's one device, not yet acked.
        r#"accord_mailbox_pending_items{service="messenger"} 1"#,
        r#"accord_mailbox_commit_batch_size_count{service="messenger"} 1"#,
        r#"accord_mailbox_commit_duration_seconds_bucket{"#,
    ] {
        assert!(text.contains(series), "no `{series}` in:\n{text}");
    }
    // Labels never carry ids, numbers or tokens.
    for secret in [
        a.token.as_str(),
        &a.account.0.to_string(),
        &b.device.0.to_string(),
        &phone(10),
    ] {
        assert!(!text.contains(secret), "`{secret}` in the metrics");
    }
}

#[tokio::test]
async fn a_stream_request_without_a_websocket_upgrade_gets_the_json_error_body() {
    let app = spawn_app(AppOptions::default()).await;
    let user = app.register_device(&phone(20), None).await;
    let r = app
        .http
        .get(format!("{}/v1/stream", app.base_url))
        .bearer_auth(&user.reg.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/json"), "{ct}");
    let body: accord_http::ErrorBody = r.json().await.unwrap();
    assert_eq!(body.code, "bad_request");
    assert!(!body.message.is_empty());
}
