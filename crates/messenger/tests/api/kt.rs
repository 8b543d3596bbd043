//! The key directory's routes: who may call them, what they answer, and
//! that every identity-key upload and account deletion is published
//! (the SDK's checks of these proofs are in `tests/sdk/kt.rs`).

use crate::e2e_server::device;
use crate::helpers::{assert_error, spawn_app, AppOptions, Body};
use accord_client::kt::verify::{verify_history, verify_lookup};
use accord_client::kt::DirectoryKeys;
use accord_messenger_wire::{Claimed, KtHistory, KtLookup, KtRoots};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn uploads_and_deletions_are_published_and_proven() {
    let app = spawn_app(AppOptions::default()).await;
    let roots = app
        .send(Method::GET, "/v1/kt/roots", None, Body::None)
        .await;
    assert_eq!(roots.status, 200, "roots are public: {}", roots.body);
    assert_eq!(roots.body["latest_epoch"], 0);

    let alice = device(&app, "+6281100000201", 3).await;
    let bob = device(&app, "+6281100000202", 3).await;
    let roots: KtRoots = serde_json::from_value(
        app.send(Method::GET, "/v1/kt/roots", None, Body::None)
            .await
            .body,
    )
    .unwrap();
    assert_eq!(roots.latest_epoch, 2, "one epoch per device");
    let keys = DirectoryKeys::from_wire(&roots.keys).unwrap();
    for r in &roots.roots {
        keys.verify_root(r).unwrap();
    }

    // A claim carries the proof of exactly the claimed devices.
    let r = app
        .send(
            Method::POST,
            "/v1/keys/claim",
            Some(&alice.token),
            Body::Json(json!({ "account_id": bob.account })),
        )
        .await;
    let claimed: Claimed = serde_json::from_value(r.body).unwrap();
    let proven = verify_lookup(&keys, bob.account, claimed.kt.as_ref().unwrap()).unwrap();
    let ids: Vec<_> = proven
        .devices
        .devices()
        .iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(ids, vec![bob.device]);

    // Bob deletes his account: his list becomes empty, in epoch 3.
    let r = app
        .send(Method::DELETE, "/v1/me", Some(&bob.token), Body::None)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let path = format!("/v1/kt/lookup/{}", bob.account);
    let l: KtLookup = serde_json::from_value(
        app.send(Method::GET, &path, Some(&alice.token), Body::None)
            .await
            .body,
    )
    .unwrap();
    let proven = verify_lookup(&keys, bob.account, &l).unwrap();
    assert_eq!((proven.epoch, proven.devices.devices().len()), (3, 0));
    let path = format!("/v1/kt/history/{}", bob.account);
    let h: KtHistory = serde_json::from_value(
        app.send(Method::GET, &path, Some(&alice.token), Body::None)
            .await
            .body,
    )
    .unwrap();
    let (_, values) = verify_history(&keys, bob.account, &h).unwrap();
    let sizes: Vec<usize> = values.iter().map(|(_, l)| l.devices().len()).collect();
    assert_eq!(sizes, vec![0, 1], "newest first: deleted, then one device");

    let audit = app
        .send(Method::GET, "/v1/kt/audit?from=1&to=3", None, Body::None)
        .await;
    assert_eq!(audit.status, 200, "audits are public: {}", audit.body);
}

#[tokio::test]
async fn lookups_need_a_user_and_bad_requests_get_clear_errors() {
    let app = spawn_app(AppOptions::default()).await;
    let alice = device(&app, "+6281100000211", 1).await;
    let path = format!("/v1/kt/lookup/{}", alice.account);
    let r = app.send(Method::GET, &path, None, Body::None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = app
        .send(Method::GET, &path, Some("forged"), Body::None)
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let unknown = format!("/v1/kt/lookup/{}", uuid::Uuid::new_v4());
    let r = app
        .send(Method::GET, &unknown, Some(&alice.token), Body::None)
        .await;
    assert_error(&r, 404, "not_in_directory");
    let r = app
        .send(
            Method::GET,
            "/v1/kt/lookup/not-a-uuid",
            Some(&alice.token),
            Body::None,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    for q in ["from=1&to=1", "from=0&to=1", "from=1&to=9", "from=2&to=1"] {
        let r = app
            .send(Method::GET, &format!("/v1/kt/audit?{q}"), None, Body::None)
            .await;
        assert_error(&r, 400, "bad_range");
    }
    let r = app
        .send(Method::GET, "/v1/kt/audit?from=x", None, Body::None)
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
}
