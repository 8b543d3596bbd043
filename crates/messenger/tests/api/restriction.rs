//! Publish → deadline → restriction, in simulated time.

use crate::helpers::{assert_api_error, assert_error, share, spawn_app, AppOptions, Body};
use accord_domain::{ConsentProfile, Purpose};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn a_user_who_has_not_accepted_by_the_deadline_can_only_read_accept_withdraw_export_or_delete(
) {
    let app = spawn_app(AppOptions::default()).await;
    let late = app.register_device(&crate::helpers::phone(201), None).await;
    let leaver = app.register_device(&crate::helpers::phone(202), None).await;
    let prompt = app.register_device(&crate::helpers::phone(203), None).await;
    let policy = app
        .publish(ConsentProfile::Strict, &[Purpose::Ads, Purpose::Product])
        .await;
    assert_eq!(
        policy.accept_by.0 - policy.published_at.0,
        30 * accord_domain::time::DAY_MS
    );
    prompt
        .api
        .accept_policy(1, &share(Some(true)))
        .await
        .expect("accept in time");

    app.advance_days(29).await;
    let me = late.api.me().await.expect("day 29: full access");
    assert_eq!(me["consent"]["pending_policy"], json!(1));
    assert_eq!(me["consent"]["access"]["access"], json!("full"));

    let now = app.advance_days(1).await;
    assert_eq!(now, policy.accept_by);
    let token = late.reg.token.as_str();
    for (method, path) in [
        (Method::GET, "/v1/me"),
        (Method::POST, "/v1/me/consent/ads/grant"),
        (Method::POST, "/v1/me/consent/product/grant"),
    ] {
        let r = app
            .send(method.clone(), path, Some(token), Body::None)
            .await;
        assert_error(&r, 403, "policy_acceptance_required");
        assert_eq!(r.body["details"]["version"], json!(1), "{method} {path}");
    }
    assert_api_error(
        late.api.grant(Purpose::Ads).await,
        403,
        "policy_acceptance_required",
    );

    // Who accepted in time keeps full access and their grants.
    let c = prompt.api.consent().await.expect("accepted in time");
    assert_eq!(c.granted_now, vec![Purpose::Ads, Purpose::Product]);

    // Never blocked: the consent state, its history, the receipt and
    // withdrawal (GDPR Art. 7(3)). (This user never accepted a policy, so
    // there is no receipt to give: 400, but not the restriction's 403.)
    let r = app
        .send(
            Method::GET,
            "/v1/me/consent/receipt",
            Some(token),
            Body::None,
        )
        .await;
    assert_error(&r, 400, "bad_request");
    for (method, path) in [
        (Method::GET, "/v1/me/consent"),
        (
            Method::GET,
            "/v1/me/consent/history?at=2026-01-01T00:00:00Z",
        ),
        (Method::POST, "/v1/me/consent/ads/withdraw"),
        (Method::DELETE, "/v1/me/consent/product"),
    ] {
        let r = app
            .send(method.clone(), path, Some(token), Body::None)
            .await;
        assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
    }

    // Still open: the policy text, export, acceptance, deletion.
    let current = app
        .anon()
        .current_policy()
        .await
        .unwrap()
        .expect("a policy is in force");
    assert_eq!(current.version, 1);
    assert_eq!(current.text_sha256, policy.text_sha256);
    let export = late.api.export().await.expect("export while restricted");
    assert_eq!(export["account_id"], json!(late.reg.account_id));

    let entries = app.ledger_entries().await;
    let gone = app
        .send(
            Method::DELETE,
            "/v1/me",
            Some(&leaver.reg.token),
            Body::None,
        )
        .await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    assert_eq!(app.ledger_entries().await, entries + 1);
    assert_api_error(leaver.api.export().await, 401, "unauthorized");

    let view = late
        .api
        .accept_policy(1, &share(Some(false)))
        .await
        .expect("accept while restricted");
    assert!(view.granted_now.is_empty());
    assert_eq!(view.pending_policy, None);
    let me = late
        .api
        .me()
        .await
        .expect("full access again after accepting");
    assert_eq!(me["consent"]["access"]["access"], json!("full"));
    late.api
        .grant(Purpose::Product)
        .await
        .expect("grant after accepting");
}
