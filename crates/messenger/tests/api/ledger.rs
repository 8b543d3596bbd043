//! The consent ledger: entry counts, verification, and reconstruction of
//! any past consent view from the ledger alone.

use crate::helpers::{grants, phone, share, spawn_app, AppOptions, TestApp, TestUser, T0};
use accord_domain::{ConsentProfile, Purpose, Timestamp};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

/// A consent view as the user saw it, to compare with reconstructions.
struct Snapshot {
    account: Uuid,
    token: String,
    at: Timestamp,
    view: Value,
}

async fn snapshot(user: &TestUser) -> Snapshot {
    let view: Value = user
        .api
        .request_raw(Method::GET, "/v1/me/consent", None)
        .await
        .expect("/v1/me/consent");
    Snapshot {
        account: user.reg.account_id.0,
        token: user.reg.token.clone(),
        at: Timestamp(view["at"].as_i64().expect("view.at")),
        view,
    }
}

async fn ledger_kinds(app: &TestApp) -> Vec<(String, Option<Uuid>)> {
    // Shards interleave; the entries' times give the order (ties keep
    // each shard's order: the test moves the clock between steps).
    let mut all = Vec::new();
    for shard in 0..accord_domain::transparency::SHARDS {
        let mut after = 0;
        loop {
            let page = app
                .admin
                .ledger(shard, after, 4)
                .await
                .expect("ledger page");
            let Some(last) = page.last() else { break };
            after = last.seq;
            all.extend(page);
        }
    }
    all.sort_by_key(|e| e.at);
    all.into_iter()
        .map(|e| (e.kind, e.account.map(|a| a.0)))
        .collect()
}

#[tokio::test]
async fn every_past_view_is_reconstructed_from_the_ledger() {
    let app = spawn_app(AppOptions::default()).await;
    let mut shots = Vec::new();

    let a = app.register_device(&phone(401), None).await; // +1
    shots.push(snapshot(&a).await);
    app.advance(0, 1, 0).await;
    app.publish(ConsentProfile::Strict, &[Purpose::Ads, Purpose::Product])
        .await; // +1
    shots.push(snapshot(&a).await);
    app.advance(0, 1, 0).await;
    a.api
        .accept_policy(1, &grants(&[Purpose::Ads]))
        .await
        .unwrap(); // +3
    shots.push(snapshot(&a).await);
    app.advance_days(1).await;
    a.api.grant(Purpose::Product).await.unwrap(); // +1
    shots.push(snapshot(&a).await);
    app.advance_days(1).await;
    a.api.withdraw(Purpose::Ads).await.unwrap(); // +1
    a.api.withdraw(Purpose::Ads).await.unwrap(); // nothing left to withdraw: +0
    shots.push(snapshot(&a).await);
    app.advance(0, 1, 0).await;
    let b = app
        .register_device(&phone(402), Some((1, share(Some(true)))))
        .await; // +4
    shots.push(snapshot(&b).await);
    app.advance_days(1).await;
    let v2 = app
        .publish(
            ConsentProfile::Whatsapp2016,
            &[Purpose::Ads, Purpose::Product],
        )
        .await; // +1
    shots.push(snapshot(&a).await);
    shots.push(snapshot(&b).await);
    app.advance_days(10).await;
    a.api.accept_policy(2, &share(None)).await.unwrap(); // +3
    shots.push(snapshot(&a).await);
    app.advance(0, 2, 0).await;
    shots.push(snapshot(&b).await);

    let report = app.admin.verify_ledger().await.expect("intact ledger");
    assert_eq!(report.entries, 15);
    assert!(report.shards.iter().all(|s| s.head_hash.len() == 64));
    let kinds = ledger_kinds(&app).await;
    let (ida, idb) = (Some(a.reg.account_id.0), Some(b.reg.account_id.0));
    let expected = [
        ("registered", ida),
        ("policy_published", None),
        ("policy_accepted", ida),
        ("granted", ida),
        ("refused", ida),
        ("granted", ida),
        ("withdrawn", ida),
        ("registered", idb),
        ("policy_accepted", idb),
        ("granted", idb),
        ("granted", idb),
        ("policy_published", None),
        ("policy_accepted", ida),
        ("granted", ida),
        ("granted", ida),
    ];
    assert_eq!(kinds, expected.map(|(k, a)| (k.to_owned(), a)).to_vec());

    // The views differ from each other, so equality below means something.
    let distinct: std::collections::BTreeSet<String> =
        shots.iter().map(|s| s.view["state"].to_string()).collect();
    assert!(distinct.len() >= 6, "{distinct:?}");

    for s in &shots {
        let path = format!(
            "/v1/admin/accounts/{}/consent?at={}",
            s.account,
            s.at.to_rfc3339()
        );
        let admin: Value = app
            .admin
            .request_raw(Method::GET, &path, None)
            .await
            .expect("admin reconstruction");
        assert_eq!(
            admin,
            s.view,
            "admin reconstruction at {}",
            s.at.to_rfc3339()
        );
        let mine: Value = app
            .client_with(&s.token)
            .request_raw(
                Method::GET,
                &format!("/v1/me/consent/history?at={}", s.at.0),
                None,
            )
            .await
            .expect("own history");
        assert_eq!(mine, s.view, "own history at {}", s.at.to_rfc3339());
    }

    // Before the account existed, the ledger knows nothing of it.
    let before = app
        .admin
        .admin_consent_at(a.reg.account_id, Timestamp(T0.0 - 1))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&before.state).unwrap()["lifecycle"],
        json!({ "state": "unregistered" })
    );
    assert!(before.granted_now.is_empty());

    let receipt = a.api.receipt().await.unwrap();
    assert_eq!(receipt["policyVersion"], json!(2));
    assert_eq!(receipt["policySha256"], json!(v2.text_sha256));
    // The receipt proves the account's own entries and the policy
    // publications (2 of the 15), against signed checkpoints.
    let own = kinds.iter().filter(|(_, a)| *a == ida).count();
    assert_eq!(
        receipt["ledger"]["entries"].as_array().map(Vec::len),
        Some(own + 2)
    );
    let parsed: accord_domain::receipt::ConsentReceipt =
        serde_json::from_value(receipt.clone()).unwrap();
    let key = accord_domain::transparency::LogSigner::from_seed(&crate::helpers::LOG_SEED).public();
    parsed.verify(&key).expect("the receipt verifies offline");
    assert_eq!(
        receipt["piiPrincipalId"],
        json!(a.reg.account_id.to_string())
    );
}
