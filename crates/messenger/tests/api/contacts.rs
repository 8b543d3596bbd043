//! Private contact discovery against the real messenger and key service:
//! it finds exactly the registered contacts, an account's daily quota (shared
//! by its devices) stops
//! enumeration, and the messenger keeps no trace of a non-registered
//! contact's number or pseudonym, in its database files or its logs.

use crate::helpers::{assert_error, phone, spawn_app, AppOptions, Body};
use crate::logs::captured_log;
use accord_client::discovery::{discover, DiscoveryError};
use accord_crypto::oprf::{input_for_phone, KeyVersion, OprfPurpose};
use accord_domain::PhoneNumber;
use accord_keyd::{ClientKind, InProcessOprf, Oprf, OprfClientError};
use accord_storage::MessengerStore;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use reqwest::Method;
use std::collections::BTreeMap;
use std::sync::Arc;

fn keyd_app() -> AppOptions {
    AppOptions {
        with_keyd: true,
        ..AppOptions::default()
    }
}

/// A device's own client at the key service, with its credential.
fn device_oprf(d: &crate::helpers::TestUser) -> accord_keyd::HttpOprf {
    accord_keyd::HttpOprf::new(
        d.reg.keyd_url.clone().expect("a key service URL"),
        secrecy::SecretString::from(d.reg.keyd_token.clone().expect("a credential")),
    )
}

fn number(s: &str) -> PhoneNumber {
    PhoneNumber::parse(s, Some("ID")).unwrap()
}

/// Every file the messenger wrote (database, WAL, shared memory), as bytes.
fn messenger_files(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("messenger.db") {
            all.extend(std::fs::read(&p).unwrap());
        }
    }
    assert!(!all.is_empty(), "no messenger database files found");
    all
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn finds_exactly_the_registered_contacts_and_leaves_no_trace_of_the_others() {
    let log = captured_log();
    let app = spawn_app(keyd_app()).await;
    let keyd = app.keyd.clone().unwrap();
    let (a, b) = (phone(701), phone(702));
    app.register(&a, None).await;
    app.register(&b, None).await;
    let me = app.register_device(&phone(703), None).await;
    assert!(
        me.reg.keyd_token.is_some(),
        "a device gets its own key-service credential"
    );

    // Two numbers that are not users, one national and one international.
    let strangers = ["0812-3456-7799", "+49 30 901820"];
    let contacts: Vec<PhoneNumber> = [a.as_str(), strangers[0], b.as_str(), strangers[1]]
        .iter()
        .map(|s| number(s))
        .collect();
    let found = discover(&me.api, me.reg.keyd_token.as_deref(), &contacts)
        .await
        .unwrap();
    assert_eq!(found, vec![true, false, true, false]);

    // What a stranger's trace would look like: number (E.164 and national
    // digits) and its `contacts` pseudonym under the key in use.
    let (probe, _) = keyd
        .create_client("probe", ClientKind::Messenger, &BTreeMap::new())
        .await
        .unwrap();
    let oprf = InProcessOprf::new(keyd.clone(), probe.id);
    let files = messenger_files(&app.data_dir);
    let log = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    for s in strangers {
        let n = number(s);
        let p = oprf
            .pseudonyms(OprfPurpose::Contacts, None, &[input_for_phone(&n)])
            .await
            .unwrap()[0];
        let digits = n.e164().trim_start_matches('+').to_owned();
        for needle in [n.e164().as_bytes(), digits.as_bytes(), &p.as_bytes()[..]] {
            assert!(
                !contains(&files, needle),
                "the messenger's files hold a trace of a non-user"
            );
        }
        for text in [
            n.e164().to_owned(),
            digits,
            hex(p.as_bytes()),
            URL_SAFE_NO_PAD.encode(p.as_bytes()),
            STANDARD.encode(p.as_bytes()),
        ] {
            assert!(!log.contains(&text), "the log holds a trace of a non-user");
        }
    }
    // The same search does find what is there: a user's pseudonym.
    let pa = oprf
        .pseudonyms(OprfPurpose::Contacts, None, &[input_for_phone(&number(&a))])
        .await
        .unwrap()[0];
    assert!(
        contains(&files, pa.as_bytes()),
        "the search must be able to find a stored pseudonym"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn a_devices_daily_quota_stops_enumeration() {
    let app = spawn_app(keyd_app()).await;
    let me = app.register_device(&phone(710), None).await;
    // 1,000 numbers a day: an enumeration of a number block.
    let block: Vec<PhoneNumber> = (0..1000)
        .map(|i| number(&format!("+62812340{i:05}")))
        .collect();
    let found = discover(&me.api, me.reg.keyd_token.as_deref(), &block)
        .await
        .unwrap();
    assert_eq!(found.iter().filter(|f| **f).count(), 0);
    let more = discover(
        &me.api,
        me.reg.keyd_token.as_deref(),
        &[number(&phone(711))],
    )
    .await;
    match more {
        Err(DiscoveryError::KeyService(OprfClientError::QuotaExceeded { retry_after_s })) => {
            assert!(retry_after_s > 0 && retry_after_s <= 24 * 3600)
        }
        other => panic!("expected the quota to stop the device, got {other:?}"),
    }
    // A second device of the same number is the same person: the same
    // quota, already spent (a fresh 1,000 before quotas were per account).
    let second = app.register_device(&phone(710), None).await;
    let again = discover(
        &second.api,
        second.reg.keyd_token.as_deref(),
        &[number(&phone(711))],
    )
    .await;
    assert!(
        matches!(
            again,
            Err(DiscoveryError::KeyService(
                OprfClientError::QuotaExceeded { .. }
            ))
        ),
        "{again:?}"
    );
    // Another person's device has its own quota; a day later this one has again.
    let other = app.register_device(&phone(712), None).await;
    assert_eq!(
        discover(
            &other.api,
            other.reg.keyd_token.as_deref(),
            &[number(&phone(710))]
        )
        .await
        .unwrap(),
        vec![true]
    );
    app.advance(1, 0, 1).await;
    assert_eq!(
        discover(
            &me.api,
            me.reg.keyd_token.as_deref(),
            &[number(&phone(712))]
        )
        .await
        .unwrap(),
        vec![true]
    );
}

#[tokio::test]
async fn key_rotation_re_pseudonymises_and_discovery_follows() {
    let app = spawn_app(keyd_app()).await;
    let keyd = app.keyd.clone().unwrap();
    app.register(&phone(720), None).await;
    let me = app.register_device(&phone(721), None).await;
    let before = app
        .send(
            Method::GET,
            "/v1/contacts/discovery",
            Some(&me.reg.token),
            Body::None,
        )
        .await;
    assert_eq!(before.body["key_version"], 1);
    keyd.rotate(OprfPurpose::Contacts).await.unwrap();
    let after = app
        .send(
            Method::GET,
            "/v1/contacts/discovery",
            Some(&me.reg.token),
            Body::None,
        )
        .await;
    assert_eq!(after.body["key_version"], 2, "{}", after.body);
    // Old-version pseudonyms are gone once the new ones are complete.
    let r = app
        .send(
            Method::POST,
            "/v1/admin/pseudonyms/refresh",
            Some(&app.admin_token),
            Body::None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = me.reg.account_id;
    let (v1, v2) = (KeyVersion(1), KeyVersion(2));
    assert!(
        app.store
            .pseudonym_of(id, OprfPurpose::Contacts, v1)
            .await
            .unwrap()
            .is_none(),
        "superseded pseudonyms were dropped"
    );
    assert!(app
        .store
        .pseudonym_of(id, OprfPurpose::Contacts, v2)
        .await
        .unwrap()
        .is_some());
    assert!(
        app.store
            .pseudonym_of(id, OprfPurpose::Coordination, v1)
            .await
            .unwrap()
            .is_some(),
        "other purposes keep their version"
    );
    let found = discover(
        &me.api,
        me.reg.keyd_token.as_deref(),
        &[number(&phone(720)), number(&phone(722))],
    )
    .await
    .unwrap();
    assert_eq!(found, vec![true, false]);
}

#[tokio::test]
async fn bucket_endpoint_checks_caller_and_input() {
    let app = spawn_app(keyd_app()).await;
    let me = app.register_device(&phone(730), None).await;
    let r = app
        .send(
            Method::GET,
            "/v1/contacts/buckets/abcd?key_version=1",
            None,
            Body::None,
        )
        .await;
    assert_error(&r, 401, "unauthorized");
    for bad in ["abc", "abcde", "zzzz", "%20%20%20%20"] {
        let r = app
            .send(
                Method::GET,
                &format!("/v1/contacts/buckets/{bad}?key_version=1"),
                Some(&me.reg.token),
                Body::None,
            )
            .await;
        assert_error(&r, 400, "invalid_prefix");
    }
    let r = app
        .send(
            Method::GET,
            "/v1/contacts/buckets/abcd",
            Some(&me.reg.token),
            Body::None,
        )
        .await;
    assert_error(&r, 400, "invalid_query");
    let r = app
        .send(
            Method::GET,
            "/v1/contacts/buckets/abcd?key_version=1",
            Some(&me.reg.token),
            Body::None,
        )
        .await;
    assert_eq!(r.status, 200);

    // Without a key service, discovery says so.
    let plain = spawn_app(AppOptions::default()).await;
    let u = plain.register_device(&phone(731), None).await;
    assert!(u.reg.keyd_token.is_none());
    let r = plain
        .send(
            Method::GET,
            "/v1/contacts/discovery",
            Some(&u.reg.token),
            Body::None,
        )
        .await;
    assert_error(&r, 503, "contact_discovery_unavailable");
}

/// A deletion while the key service is unreachable still revokes the
/// devices' credentials, later: the revocations stay queued in the
/// messenger's database (not just in a log line) until the key service
/// confirms them.
#[tokio::test]
async fn revocations_that_fail_at_deletion_are_retried_until_they_succeed() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let down = Arc::new(AtomicBool::new(false));
    let app = spawn_app(AppOptions {
        keyd_down: Some(down.clone()),
        ..keyd_app()
    })
    .await;
    let me = app.register_device(&phone(730), None).await;
    let second = app.register_device(&phone(730), None).await;
    let target = [number(&phone(731))];
    down.store(true, Ordering::SeqCst);
    let r = app
        .send(Method::DELETE, "/v1/me", Some(&me.reg.token), Body::None)
        .await;
    assert_eq!(
        r.status, 204,
        "the deletion stands without the key service: {}",
        r.body
    );
    for d in [&me, &second] {
        device_oprf(d)
            .phone_pseudonyms(OprfPurpose::Contacts, None, &target)
            .await
            .expect("not revoked yet: the key service was unreachable");
    }
    assert_eq!(app.store.pending_revocations(10).await.unwrap().len(), 2);
    let run = app.messenger.revoke_pending_credentials().await.unwrap();
    assert!(run.failed && run.revoked == 0, "{run:?}");
    assert_eq!(app.store.pending_revocations(10).await.unwrap().len(), 2);

    down.store(false, Ordering::SeqCst);
    let run = app.messenger.revoke_pending_credentials().await.unwrap();
    assert_eq!((run.revoked, run.failed), (2, false));
    assert!(app.store.pending_revocations(10).await.unwrap().is_empty());
    for d in [&me, &second] {
        match device_oprf(d)
            .phone_pseudonyms(OprfPurpose::Contacts, None, &target)
            .await
        {
            Err(OprfClientError::Rejected { status: 401, .. }) => {}
            other => panic!("the retried revocation must hold, got {other:?}"),
        }
    }
}

/// Deleting an account revokes its devices' key-service credentials: the
/// token that evaluated before is refused after, at the key service
/// itself; another account's device is untouched.
#[tokio::test]
async fn deleting_an_account_revokes_its_devices_key_credentials() {
    let app = spawn_app(keyd_app()).await;
    let me = app.register_device(&phone(720), None).await;
    let second = app.register_device(&phone(720), None).await;
    let other = app.register_device(&phone(721), None).await;
    let target = [number(&phone(721))];
    for d in [&me, &second, &other] {
        device_oprf(d)
            .phone_pseudonyms(OprfPurpose::Contacts, None, &target)
            .await
            .expect("the credential works before the deletion");
    }
    let r = app
        .send(Method::DELETE, "/v1/me", Some(&me.reg.token), Body::None)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    for d in [&me, &second] {
        match device_oprf(d)
            .phone_pseudonyms(OprfPurpose::Contacts, None, &target)
            .await
        {
            Err(OprfClientError::Rejected { status: 401, .. }) => {}
            other => panic!("a deleted account's device credential must be refused, got {other:?}"),
        }
    }
    device_oprf(&other)
        .phone_pseudonyms(OprfPurpose::Contacts, None, &target)
        .await
        .expect("another account's device keeps its credential");
}
