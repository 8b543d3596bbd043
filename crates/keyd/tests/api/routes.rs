//! Every documented route answers bad requests with the JSON error body
//! (the shared layer's sweep), and the metrics show real traffic.

use crate::helpers::{spawn_app, valid};
use accord_http::testing::{scrape, Sweep};
use serde_json::json;

#[tokio::test]
async fn every_documented_route_answers_bad_requests_with_the_json_error_body() {
    let app = spawn_app().await;
    let (id, token) = app
        .create_client("partner", json!({ "coordination": 1000 }))
        .await;
    let id = id.to_string();
    let report = Sweep {
        base_url: &app.base,
        bearer: &token,
        admin: &app.admin_token,
        api_key: None,
        params: &[("purpose", "coordination"), ("client_id", &id)],
        signed: &[],
        route_limits: &[],
        body_limit: accord_keyd::http::MAX_BODY,
    }
    .run()
    .await;
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    // 8 paths (10 operations) of the key service and 3 standard ones.
    assert!(report.checked >= 20, "only {} checks", report.checked);
}

#[tokio::test]
async fn metrics_show_requests_and_quota_use_per_client_kind_to_the_operator_only() {
    let app = spawn_app().await;
    let (_, token) = app
        .create_client("partner", json!({ "coordination": 1000 }))
        .await;
    let r = app
        .evaluate(
            Some(&token),
            "coordination",
            json!({ "elements": valid(3) }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(scrape(&app.base, None).await.0, 401);
    assert_eq!(scrape(&app.base, Some(&token)).await.0, 403);
    let (status, text) = scrape(&app.base, Some(&app.admin_token)).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains(r#"accord_http_requests_total{service="keyd",method="POST",route="/v1/oprf/{purpose}/evaluate",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("accord_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(
        text.contains(r#"accord_keyd_evaluated_elements_today{service="keyd",kind="partner",purpose="coordination"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"accord_keyd_quota_elements{service="keyd",kind="partner",purpose="coordination"} 1000"#),
        "{text}"
    );
    assert!(!text.contains(&token), "a token in the metrics");
}
