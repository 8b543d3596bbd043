//! Export and deletion.

use crate::helpers::{assert_api_error, phone, share, spawn_app, AppOptions, Body};
use accord_domain::{ConsentProfile, Purpose};
use accord_storage::MessengerStore;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn export_holds_the_users_data_and_delete_erases_the_account_but_not_the_ledger() {
    let app = spawn_app(AppOptions::default()).await;
    app.publish(ConsentProfile::Strict, &[Purpose::Ads, Purpose::Product])
        .await;
    let number = phone(501);
    let other_number = phone(502);
    let user = app
        .register_device(&number, Some((1, share(Some(true)))))
        .await;
    let second = app.register_device(&number, None).await;
    let other = app
        .register_device(&other_number, Some((1, share(Some(false)))))
        .await;
    assert!(!second.reg.new_account);

    let export = user.api.export().await.expect("export");
    assert_eq!(export["account_id"], json!(user.reg.account_id));
    assert_eq!(export["phone_number"], json!(number));
    let devices = export["devices"].as_array().expect("devices");
    let mut ids: Vec<_> = devices.iter().map(|d| d["device_id"].clone()).collect();
    ids.sort_by_key(|v| v.to_string());
    let mut expected = vec![json!(user.reg.device_id), json!(second.reg.device_id)];
    expected.sort_by_key(|v| v.to_string());
    assert_eq!(ids, expected);
    assert!(devices
        .iter()
        .all(|d| d["info"]["model"] == json!("Pixel 8")));
    let kinds: Vec<_> = export["ledger"]
        .as_array()
        .expect("ledger")
        .iter()
        .map(|e| {
            assert_eq!(
                e["account"],
                json!(user.reg.account_id),
                "only the user's own entries"
            );
            e["kind"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        ["registered", "policy_accepted", "granted", "granted"]
    );
    assert_eq!(export["consent"]["accepted"]["version"], json!(1));
    let text = export.to_string();
    assert!(!text.contains(&other_number) && !text.contains(&other.reg.account_id.to_string()));

    app.advance(0, 1, 0).await;
    let before_delete = app.now().await;
    app.advance(0, 1, 0).await;
    let entries = app.ledger_entries().await;
    let r = app
        .send(Method::DELETE, "/v1/me", Some(&user.reg.token), Body::None)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(r.body, serde_json::Value::Null);
    assert_eq!(app.ledger_entries().await, entries + 1);

    for device in [&user, &second] {
        assert_api_error(device.api.me().await, 401, "unauthorized");
        assert_api_error(device.api.export().await, 401, "unauthorized");
        assert_api_error(device.api.delete_account().await, 401, "unauthorized");
    }
    other.api.me().await.expect("another account is untouched");
    // Erased from the live tables: no account, no devices.
    assert!(app
        .store
        .account(user.reg.account_id)
        .await
        .unwrap()
        .is_none());
    assert!(app
        .store
        .devices(user.reg.account_id)
        .await
        .unwrap()
        .is_empty());

    let again = app.register_device(&number, Some((1, share(None)))).await;
    assert!(again.reg.new_account);
    assert_ne!(again.reg.account_id, user.reg.account_id);
    let fresh = again.api.export().await.unwrap();
    assert_eq!(fresh["devices"].as_array().map(Vec::len), Some(1));
    assert_eq!(fresh["ledger"].as_array().map(Vec::len), Some(4));

    let ledger = app.admin.ledger_all().await.unwrap();
    let deleted: Vec<_> = ledger
        .iter()
        .filter(|e| e.kind == "account_deleted")
        .collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].account, Some(user.reg.account_id));
    assert!(
        !serde_json::to_string(&ledger).unwrap().contains(&number),
        "the ledger never holds a phone number"
    );

    let now = app.now().await;
    let after = app
        .admin
        .admin_consent_at(user.reg.account_id, now)
        .await
        .unwrap();
    let state = serde_json::to_value(&after.state).unwrap();
    assert_eq!(state["lifecycle"]["state"], json!("deleted"));
    assert_eq!(
        serde_json::to_value(&after.access).unwrap()["access"],
        json!("deleted")
    );
    assert!(after.granted_now.is_empty());
    let earlier = app
        .admin
        .admin_consent_at(user.reg.account_id, before_delete)
        .await
        .unwrap();
    assert_eq!(earlier.granted_now, vec![Purpose::Ads, Purpose::Product]);
    app.admin
        .verify_ledger()
        .await
        .expect("the ledger still verifies");
}
