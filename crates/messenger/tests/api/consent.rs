//! Acceptance, grants and withdrawals under both profiles, and
//! non-inheritance of consent across policy versions.

use crate::helpers::{assert_api_error, grants, phone, share, spawn_app, AppOptions};
use accord_domain::{ConsentProfile, Purpose};
use serde_json::{json, Value};

const BOTH: [Purpose; 2] = [Purpose::Ads, Purpose::Product];

/// `consentType` per purpose in a receipt.
fn consent_types(receipt: &Value) -> Vec<(String, String)> {
    receipt["services"][0]["purposes"]
        .as_array()
        .expect("receipt purposes")
        .iter()
        .map(|p| {
            (
                p["purpose"].as_str().unwrap().to_owned(),
                p["consentType"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test]
async fn whatsapp_2016_box_left_ticked_grants_everything_as_implied_consent() {
    let app = spawn_app(AppOptions::default()).await;
    let ticked = app.register(&phone(301), None).await;
    let unticked = app.register(&phone(302), None).await;
    let other = app.register(&phone(304), None).await;
    let policy = app.publish(ConsentProfile::Whatsapp2016, &BOTH).await;

    let v = ticked
        .accept_policy(1, &share(None))
        .await
        .expect("accept, box left as presented");
    assert_eq!(v.granted_now, BOTH.to_vec());
    let receipt = ticked.receipt().await.expect("receipt");
    assert_eq!(
        consent_types(&receipt),
        pairs(&[("ads", "IMPLIED"), ("product", "IMPLIED")])
    );
    assert_eq!(receipt["policySha256"], json!(policy.text_sha256));
    assert_eq!(receipt["policyVersion"], json!(1));

    let v = unticked
        .accept_policy(1, &share(Some(false)))
        .await
        .expect("accept, box unticked");
    assert!(v.granted_now.is_empty(), "{:?}", v.granted_now);
    assert_eq!(
        consent_types(&unticked.receipt().await.unwrap()),
        pairs(&[("ads", "REFUSED"), ("product", "REFUSED")])
    );

    // Registering after publication, with the box left ticked, is the same.
    let newcomer = app.register(&phone(303), Some((1, share(None)))).await;
    assert_eq!(newcomer.consent().await.unwrap().granted_now, BOTH.to_vec());

    // The profile offers no purpose-by-purpose choice.
    assert_api_error(
        other.accept_policy(1, &grants(&[Purpose::Ads])).await,
        400,
        "grants_not_offered",
    );
    assert!(other.consent().await.unwrap().state.accepted.is_none());
}

#[tokio::test]
async fn strict_grants_nothing_by_default_and_purposes_one_by_one_at_any_time() {
    let app = spawn_app(AppOptions::default()).await;
    let default = app.register(&phone(311), None).await;
    let picky = app.register(&phone(312), None).await;
    app.publish(ConsentProfile::Strict, &BOTH).await;

    let v = default.accept_policy(1, &share(None)).await.unwrap();
    assert!(v.granted_now.is_empty(), "{:?}", v.granted_now);
    assert_eq!(
        consent_types(&default.receipt().await.unwrap()),
        pairs(&[("ads", "REFUSED"), ("product", "REFUSED")])
    );

    let v = picky
        .accept_policy(1, &grants(&[Purpose::Product]))
        .await
        .unwrap();
    assert_eq!(v.granted_now, vec![Purpose::Product]);
    assert_eq!(
        consent_types(&picky.receipt().await.unwrap()),
        pairs(&[("ads", "REFUSED"), ("product", "EXPLICIT")])
    );

    app.advance_days(400).await;
    assert_eq!(
        picky.grant(Purpose::Ads).await.unwrap().granted_now,
        BOTH.to_vec()
    );
    assert_eq!(
        picky.withdraw(Purpose::Product).await.unwrap().granted_now,
        vec![Purpose::Ads]
    );
    assert_eq!(
        default.grant(Purpose::Ads).await.unwrap().granted_now,
        vec![Purpose::Ads]
    );
    app.advance_days(1).await;
    assert!(default
        .withdraw(Purpose::Ads)
        .await
        .unwrap()
        .granted_now
        .is_empty());
    assert_eq!(
        consent_types(&picky.receipt().await.unwrap()),
        pairs(&[("ads", "EXPLICIT"), ("product", "WITHDRAWN")])
    );
}

#[tokio::test]
async fn whatsapp_2016_opt_out_closes_thirty_days_after_acceptance() {
    let app = spawn_app(AppOptions::default()).await;
    let early = app.register(&phone(321), None).await;
    let late = app.register(&phone(322), None).await;
    app.publish(ConsentProfile::Whatsapp2016, &BOTH).await;
    let accepted_at = app.now().await;
    for u in [&early, &late] {
        assert_eq!(
            u.accept_policy(1, &share(None)).await.unwrap().granted_now,
            BOTH.to_vec()
        );
    }

    app.advance_days(29).await;
    // One withdrawal opts out of both purposes.
    let v = early
        .withdraw(Purpose::Ads)
        .await
        .expect("opt out inside the window");
    assert!(v.granted_now.is_empty(), "{:?}", v.granted_now);

    app.advance_days(2).await;
    let entries = app.ledger_entries().await;
    for p in BOTH {
        let details = assert_api_error(late.withdraw(p).await, 403, "opt_out_window_closed")
            .expect("details");
        assert_eq!(
            details["closed_at"],
            json!(accepted_at.plus_days(30).to_rfc3339())
        );
    }
    assert_eq!(late.consent().await.unwrap().granted_now, BOTH.to_vec());
    assert_eq!(
        app.ledger_entries().await,
        entries,
        "a refused withdrawal records nothing"
    );
    assert!(early.consent().await.unwrap().granted_now.is_empty());
}

#[tokio::test]
async fn strict_withdrawal_never_closes() {
    let app = spawn_app(AppOptions::default()).await;
    let user = app.register(&phone(331), None).await;
    app.publish(ConsentProfile::Strict, &BOTH).await;
    assert_eq!(
        user.accept_policy(1, &share(Some(true)))
            .await
            .unwrap()
            .granted_now,
        BOTH.to_vec()
    );

    app.advance_days(31).await;
    assert_eq!(
        user.withdraw(Purpose::Ads)
            .await
            .expect("day 31")
            .granted_now,
        vec![Purpose::Product]
    );
    app.advance_days(369).await;
    assert!(user
        .withdraw(Purpose::Product)
        .await
        .expect("day 400")
        .granted_now
        .is_empty());
    assert!(user.consent().await.unwrap().granted_now.is_empty());
}

#[tokio::test]
async fn a_new_policy_version_never_inherits_consent() {
    let app = spawn_app(AppOptions::default()).await;
    let slow = app.register_device(&phone(341), None).await;
    let quick = app.register(&phone(342), None).await;
    app.publish(ConsentProfile::Whatsapp2016, &BOTH).await;
    for u in [&slow.api, &quick] {
        assert_eq!(
            u.accept_policy(1, &share(None)).await.unwrap().granted_now,
            BOTH.to_vec()
        );
    }

    app.advance_days(1).await;
    let v2 = app.publish(ConsentProfile::Whatsapp2016, &BOTH).await;
    app.advance_days(29).await;
    // Before v2's deadline the v1 grants stay in force.
    let before = slow.api.consent().await.unwrap();
    assert_eq!(before.granted_now, BOTH.to_vec());
    assert_eq!(before.pending_policy, Some(2));

    // Accepting v2 with the box unticked keeps nothing of v1.
    let v = quick.accept_policy(2, &share(Some(false))).await.unwrap();
    assert!(v.granted_now.is_empty(), "{:?}", v.granted_now);
    assert_eq!(v.state.accepted.map(|a| a.version), Some(2));

    // After v2's deadline, nothing under v1 is shared.
    let now = app.advance_days(1).await;
    assert_eq!(now, v2.accept_by);
    let after = app
        .admin
        .admin_consent_at(slow.reg.account_id, now)
        .await
        .unwrap();
    assert!(after.granted_now.is_empty(), "{:?}", after.granted_now);
    // Restricted, the user still sees their consent: nothing shared now.
    let restricted = slow.api.consent().await.unwrap();
    assert!(restricted.granted_now.is_empty());
    assert_eq!(restricted.pending_policy, Some(2));

    let v = slow
        .api
        .accept_policy(2, &share(Some(false)))
        .await
        .unwrap();
    assert!(v.granted_now.is_empty(), "{:?}", v.granted_now);
    assert!(slow.api.consent().await.unwrap().granted_now.is_empty());
    // The old version cannot be accepted any more to get the grants back.
    assert_api_error(
        quick.accept_policy(1, &share(None)).await,
        409,
        "policy_version_superseded",
    );
}
