//! Every documented route answers bad requests with the JSON error body
//! (the shared layer's sweep), and the metrics show real traffic.

use crate::helpers::spawn_app;
use accord_http::testing::{scrape, Sweep};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn every_documented_route_answers_bad_requests_with_the_json_error_body() {
    let app = spawn_app().await;
    let (_, token) = app.sign_up("alice", None).await;
    let (_, advertiser) = app.service.create_advertiser("Shop").await.unwrap();
    let pseudonym = "ab".repeat(32);
    let registration = uuid::Uuid::new_v4().to_string();
    let id = uuid::Uuid::new_v4().to_string();
    let report = Sweep {
        base_url: &app.base_url,
        bearer: &token,
        admin: &app.admin_token,
        api_key: Some(&advertiser),
        params: &[
            ("pseudonym", &pseudonym),
            ("registration_id", &registration),
            ("name", "customers"),
            ("upload_id", &id),
            ("campaign_id", &id),
            ("seq", "0"),
        ],
        signed: &[
            "/v1/feed/ingest",
            "/v1/feed/reconcile/digests",
            "/v1/feed/reconcile/bucket",
        ],
        route_limits: &[],
        body_limit: accord_partner::http::MAX_BODY,
    }
    .run()
    .await;
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert!(report.checked >= 40, "only {} checks", report.checked);
}

#[tokio::test]
async fn the_document_lists_every_route_of_the_partner() {
    let app = spawn_app().await;
    let doc = app.send(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(doc.status, 200);
    let paths = doc.body["paths"].as_object().expect("paths");
    for p in [
        "/v1/feed/ingest",
        "/v1/feed/reconcile/digests",
        "/v1/feed/reconcile/bucket",
        "/v1/partner/registrations",
        "/v1/partner/registrations/{registration_id}/verify",
        "/v1/partner/me",
        "/v1/partner/me/ads",
        "/v1/partner/me/phone",
        "/v1/oprf/coordination/evaluate",
        "/v1/partner/me/contacts",
        "/v1/partner/me/suggestions",
        "/v1/admin/partner/records/{pseudonym}",
        "/v1/admin/partner/stats",
        "/v1/admin/partner/checkpoints",
        "/v1/admin/advertisers",
        "/v1/audiences",
        "/v1/audiences/{name}",
        "/v1/audiences/{name}/uploads",
        "/v1/uploads/{upload_id}/batches/{seq}",
        "/v1/uploads/{upload_id}/complete",
        "/v1/uploads/{upload_id}",
        "/v1/campaigns",
        "/v1/campaigns/{campaign_id}",
        "/v1/partner/ads",
        "/v1/partner/me/email",
        "/healthz",
        "/openapi.json",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} is not documented");
    }
    assert_eq!(paths.len(), 28, "{:?}", paths.keys().collect::<Vec<_>>());
}

#[tokio::test]
async fn metrics_show_requests_and_holdings_to_the_operator_only() {
    let app = spawn_app().await;
    let (_, token) = app.sign_up("alice", None).await;
    let r = app
        .send(Method::GET, "/v1/partner/me", Some(&token), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .send(
            Method::PUT,
            "/v1/partner/me/ads",
            Some(&token),
            Some(json!({ "enabled": true })),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(scrape(&app.base_url, None).await.0, 401);
    assert_eq!(scrape(&app.base_url, Some(&token)).await.0, 403);
    let (status, text) = scrape(&app.base_url, Some(&app.admin_token)).await;
    assert_eq!(status, 200, "{text}");
    for series in [
        r#"accord_http_requests_total{service="partner",method="POST",route="/v1/partner/registrations",status="201"} 1"#,
        r#"accord_http_requests_total{service="partner",method="POST",route="/v1/partner/registrations/{registration_id}/verify",status="201"} 1"#,
        r#"accord_http_requests_total{service="partner",method="GET",route="/v1/partner/me",status="200"} 1"#,
        r#"accord_partner_users{service="partner"} 1"#,
        r#"accord_partner_subjects{service="partner"} 0"#,
    ] {
        assert!(text.contains(series), "no `{series}` in:\n{text}");
    }
    assert!(!text.contains(&token), "a token in the metrics");
}
