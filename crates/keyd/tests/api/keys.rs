use crate::helpers::{logs, phone, spawn_app};
use accord_crypto::oprf::{evaluate_full, input_for_phone, KeyVersion, OprfPurpose};
use accord_crypto::sealed::MasterKey;
use accord_domain::SystemClock;
use accord_keyd::master_key::MASTER_KEY_FILE;
use accord_keyd::{KeyService, KeydConfig, KeydError, Oprf};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::sync::Arc;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every rendering of a secret that could end up in a file or a log.
fn renderings(secret: &[u8]) -> Vec<Vec<u8>> {
    vec![
        secret.to_vec(),
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
        STANDARD.encode(secret).into_bytes(),
        URL_SAFE_NO_PAD.encode(secret).into_bytes(),
        format!("{secret:?}").into_bytes(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_stored_sealed_and_never_logged_or_returned() {
    let app = spawn_app().await;
    let (_, token) = app.create_client("messenger", json!({})).await;
    // Exercise everything that touches keys: rotation, evaluation under
    // both versions, the public versions endpoint, a restart.
    let r = app
        .admin(Method::POST, "/v1/admin/keys/contacts/rotate", None)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let oprf = app.oprf(&token);
    for v in [KeyVersion(1), KeyVersion(2)] {
        oprf.phone_pseudonyms(OprfPurpose::Contacts, Some(v), &[phone(1)])
            .await
            .unwrap();
    }
    let mut public = Vec::new();
    for p in ["contacts", "coordination"] {
        public.extend(
            app.send(Method::GET, &format!("/v1/oprf/{p}/keys"), None, None)
                .await
                .body
                .to_string()
                .into_bytes(),
        );
    }
    public.extend(
        app.send(Method::GET, "/openapi.json", None, None)
            .await
            .body
            .to_string()
            .into_bytes(),
    );
    KeyService::open_data_dir(
        app.dir.path(),
        Some(MasterKey::from_bytes(&app.master).unwrap()),
        Arc::new(SystemClock),
        KeydConfig::default(),
    )
    .await
    .unwrap();

    let mut secrets = vec![app.master.to_vec()];
    for (p, v) in [
        (OprfPurpose::Coordination, 1),
        (OprfPurpose::Contacts, 1),
        (OprfPurpose::Contacts, 2),
    ] {
        secrets.push(app.secret_key(p, KeyVersion(v)).await.to_bytes().to_vec());
    }
    // Every file of the database (main file, WAL, shared memory).
    let mut db = Vec::new();
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("keyd.db")
        {
            db.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(db.len() > 4096);
    // The sealed keys are in the database (so the check below means something).
    let stored = app.service.store().keys().await.unwrap();
    assert_eq!(stored.len(), 3);
    assert!(stored.iter().all(|k| contains(&db, &k.sealed)));
    let logs = logs();
    assert!(logs.contains("created OPRF key"), "logs are captured");
    for secret in &secrets {
        for r in renderings(secret) {
            assert!(!contains(&db, &r), "a key is in the database");
            assert!(
                !logs.contains(&*String::from_utf8_lossy(&r)),
                "a key is in the logs"
            );
            assert!(!contains(&public, &r), "a key is in a public answer");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_changes_pseudonyms_and_keeps_the_old_version_evaluable() {
    let app = spawn_app().await;
    let (_, token) = app.create_client("messenger", json!({})).await;
    let oprf = app.oprf(&token);
    let phones: Vec<_> = (0..5).map(phone).collect();
    let v1 = oprf
        .phone_pseudonyms(OprfPurpose::Contacts, None, &phones)
        .await
        .unwrap();
    let coordination = oprf
        .phone_pseudonyms(OprfPurpose::Coordination, None, &phones)
        .await
        .unwrap();
    assert!(v1.iter().all(|p| p.key_version() == KeyVersion(1)));

    let r = app
        .admin(Method::POST, "/v1/admin/keys/contacts/rotate", None)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        r.body,
        json!({ "purpose": "contacts", "active": 2, "versions": [1, 2] })
    );
    let r = app
        .send(Method::GET, "/v1/oprf/contacts/keys", None, None)
        .await;
    assert_eq!(
        r.body,
        json!({ "purpose": "contacts", "active": 2, "versions": [1, 2] })
    );
    let r = app
        .send(Method::GET, "/v1/oprf/coordination/keys", None, None)
        .await;
    assert_eq!(
        r.body,
        json!({ "purpose": "coordination", "active": 1, "versions": [1] })
    );
    assert_eq!(
        oprf.key_versions(OprfPurpose::Contacts)
            .await
            .unwrap()
            .active,
        KeyVersion(2)
    );

    // New pseudonyms carry version 2 and differ from every old one.
    let v2 = oprf
        .phone_pseudonyms(OprfPurpose::Contacts, None, &phones)
        .await
        .unwrap();
    assert!(v2.iter().all(|p| p.key_version() == KeyVersion(2)));
    assert!(v2
        .iter()
        .all(|p| v1.iter().all(|o| o.as_bytes() != p.as_bytes())));
    let key2 = app.secret_key(OprfPurpose::Contacts, KeyVersion(2)).await;
    assert_eq!(
        v2[3].as_bytes(),
        &evaluate_full(&key2, &input_for_phone(&phones[3]))
            .unwrap()
            .pseudonym32()
    );
    // The old version, asked for explicitly, still gives the old pseudonyms,
    // so services can re-pseudonymise; other purposes are untouched.
    assert_eq!(
        oprf.phone_pseudonyms(OprfPurpose::Contacts, Some(KeyVersion(1)), &phones)
            .await
            .unwrap(),
        v1
    );
    assert_eq!(
        oprf.phone_pseudonyms(OprfPurpose::Coordination, None, &phones)
            .await
            .unwrap(),
        coordination
    );

    // After a restart, the same keys come back from the sealed store.
    let again = KeyService::open_data_dir(
        app.dir.path(),
        Some(MasterKey::from_bytes(&app.master).unwrap()),
        Arc::new(SystemClock),
        KeydConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        again.key_versions(OprfPurpose::Contacts).unwrap().active,
        KeyVersion(2)
    );
    // With another master key, nothing opens.
    let wrong = KeyService::open_data_dir(
        app.dir.path(),
        Some(MasterKey::generate()),
        Arc::new(SystemClock),
        KeydConfig::default(),
    )
    .await;
    assert!(matches!(wrong, Err(KeydError::MasterKey(_))), "{wrong:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_creates_a_private_master_key_file_and_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("keyd-data");
    let a = KeyService::open_data_dir(&data, None, Arc::new(SystemClock), KeydConfig::default())
        .await
        .unwrap();
    let versions = a.key_versions(OprfPurpose::Coordination).unwrap();
    let file = data.join(MASTER_KEY_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.trim().len(), 64);
    drop(a);
    // A second start opens the same keys with the same file.
    let b = KeyService::open_data_dir(&data, None, Arc::new(SystemClock), KeydConfig::default())
        .await
        .unwrap();
    assert_eq!(b.key_versions(OprfPurpose::Coordination).unwrap(), versions);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    assert!(!logs().contains(text.trim()));
}
