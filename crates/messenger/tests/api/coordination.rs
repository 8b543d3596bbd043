//! The coordination feed, end to end through the real messenger, key
//! service and partner (each on its own port and database): only users
//! with an active grant reach the partner, as pseudonyms; withdrawals,
//! deletions and lapsed grants are revoked and the partner's deletion
//! confirmations land in the ledger; outages lose nothing; duplicates
//! change nothing; the partner links accounts and suggests friends only
//! with `product`.

use crate::helpers::{share, spawn_app, AppOptions, TestApp};
use accord_client::Client;
use accord_crypto::oprf::{input_for_phone, KeyVersion, OprfPurpose};
use accord_domain::PseudonymId;
use accord_domain::{AccountId, ConsentProfile, PhoneNumber, Purpose};
use accord_keyd::{ClientKind, InProcessOprf, Oprf};
use accord_storage::MessengerStore;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

fn opts(profile: ConsentProfile) -> AppOptions {
    AppOptions {
        with_keyd: true,
        with_partner: true,
        default_profile: profile,
        ..AppOptions::default()
    }
}

fn n(i: u16) -> String {
    format!("+6281234568{i:03}")
}

async fn account_of(c: &Client) -> AccountId {
    c.consent().await.unwrap().account_id
}

async fn pseudonym(app: &TestApp, a: AccountId) -> PseudonymId {
    app.store
        .pseudonym_of(a, OprfPurpose::Coordination, KeyVersion(1))
        .await
        .unwrap()
        .expect("coordination pseudonym computed")
}

/// A user who accepted a new strict policy sharing every purpose, shared
/// with the partner: its account and `coordination` pseudonym.
async fn sharing_user(app: &TestApp, i: u16) -> (AccountId, PseudonymId) {
    let v1 = app.publish(ConsentProfile::Strict, &Purpose::ALL).await;
    let u = app
        .register(&n(i), Some((v1.version, share(Some(true)))))
        .await;
    let a = account_of(&u).await;
    drain(app).await;
    (a, pseudonym(app, a).await)
}

/// What the partner holds of `p`, by purpose.
async fn held(app: &TestApp, p: &PseudonymId) -> BTreeSet<Purpose> {
    let store = &app.partner.as_ref().unwrap().store;
    let mut out = BTreeSet::new();
    for purpose in Purpose::ALL {
        if store.record(p, purpose).await.unwrap().is_some() {
            out.insert(purpose);
        }
    }
    out
}

async fn drain(app: &TestApp) -> accord_messenger::feed::PassReport {
    app.feed.as_ref().unwrap().drain(20).await.unwrap()
}

/// Ledger kinds of one account, in order.
async fn ledger_kinds(app: &TestApp, a: AccountId) -> Vec<(String, Value)> {
    app.store
        .ledger_for_account(a)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.account == Some(a))
        .map(|e| (e.kind.clone(), serde_json::from_str(&e.payload).unwrap()))
        .collect()
}

/// A feed request to the partner's ingest endpoint, signed with `secret`
/// at `now` with a fresh nonce.
fn signed(secret: &[u8], now: i64, body: &[u8]) -> accord_partner::service::FeedAuth {
    let nonce = accord_crypto::mac::nonce();
    let signature = accord_crypto::mac::sign(
        secret,
        &accord_crypto::mac::SignedRequest {
            method: "POST",
            path: accord_domain::coordination::INGEST_PATH,
            timestamp_ms: now,
            nonce: &nonce,
            body,
        },
    );
    accord_partner::service::FeedAuth {
        timestamp_ms: now,
        nonce,
        signature,
    }
}

fn partner_url(app: &TestApp) -> String {
    app.feed.as_ref().unwrap().config.partner_url.clone()
}

async fn partner_post(app: &TestApp, path: &str, token: &str, body: Value) -> Value {
    let r = app
        .http
        .post(format!("{}{path}", partner_url(app)))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status < 300, "{path}: {status} {v}");
    v
}

/// Signs up at the partner with a verified number (its dev verifier
/// returns the code) and, if given, sets the phone pseudonym; the token.
async fn partner_sign_up(
    app: &TestApp,
    name: &str,
    phone: &str,
    pseudonym: Option<PseudonymId>,
) -> String {
    let started = partner_post(
        app,
        "/v1/partner/registrations",
        "",
        json!({ "phone": phone }),
    )
    .await;
    let id = started["registration_id"].as_str().unwrap();
    let created = partner_post(
        app,
        &format!("/v1/partner/registrations/{id}/verify"),
        "",
        json!({ "code": started["dev_code"], "name": name }),
    )
    .await;
    let token = created["token"].as_str().unwrap().to_owned();
    if let Some(p) = pseudonym {
        let r = app
            .http
            .put(format!("{}/v1/partner/me/phone", partner_url(app)))
            .bearer_auth(&token)
            .json(&json!({ "phone_pseudonym": p.to_hex() }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    token
}

async fn partner_get(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let r = app
        .http
        .get(format!("{}{path}", partner_url(app)))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A partner user's client computes its own coordination pseudonym
/// through the key service (blinded), as a partner client.
async fn partner_side_pseudonym(app: &TestApp, phone: &str) -> PseudonymId {
    let keyd = app.keyd.clone().unwrap();
    let (c, _) = keyd
        .create_client("partner app", ClientKind::Partner, &BTreeMap::new())
        .await
        .unwrap();
    let oprf = InProcessOprf::new(keyd, c.id);
    let p = PhoneNumber::parse(phone, None).unwrap();
    oprf.pseudonyms(OprfPurpose::Coordination, None, &[input_for_phone(&p)])
        .await
        .unwrap()[0]
        .id()
}

fn all_files(dir: &std::path::Path, prefix: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with(prefix) {
            out.extend(std::fs::read(p).unwrap());
        }
    }
    assert!(!out.is_empty());
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn whatsapp_2016_publish_accept_share_link_suggest_and_the_opt_out_window() {
    let app = spawn_app(opts(ConsentProfile::Whatsapp2016)).await;
    let v1 = app
        .publish(ConsentProfile::Whatsapp2016, &Purpose::ALL)
        .await;
    let alice = app.register(&n(1), Some((v1.version, share(None)))).await;
    let bob = app
        .register(&n(2), Some((v1.version, share(Some(false)))))
        .await;
    let carol = app.register(&n(3), Some((v1.version, share(None)))).await;
    let dave = app.register(&n(4), Some((v1.version, share(None)))).await;
    let (a, b, c, d) = (
        account_of(&alice).await,
        account_of(&bob).await,
        account_of(&carol).await,
        account_of(&dave).await,
    );
    let r = drain(&app).await;
    assert!(!r.failed);
    let (pa, pb, pc, pd) = (
        pseudonym(&app, a).await,
        pseudonym(&app, b).await,
        pseudonym(&app, c).await,
        pseudonym(&app, d).await,
    );
    let both: BTreeSet<Purpose> = Purpose::ALL.into_iter().collect();
    assert_eq!(held(&app, &pa).await, both, "box left ticked: shared");
    assert!(
        held(&app, &pb).await.is_empty(),
        "box unticked: nothing crosses"
    );
    assert_eq!(held(&app, &pc).await, both);
    assert!(ledger_kinds(&app, a)
        .await
        .iter()
        .any(|(k, v)| k == "propagated" && v["recipient"] == "partner"));
    assert!(!ledger_kinds(&app, b)
        .await
        .iter()
        .any(|(k, _)| k == "propagated"));

    // Day 29: Carol opts out; the partner deletes and confirms.
    app.advance_days(29).await;
    carol.withdraw(Purpose::Ads).await.unwrap();
    let r = drain(&app).await;
    assert_eq!(r.deletions_confirmed, 1, "{r:?}");
    assert!(held(&app, &pc).await.is_empty());
    let kinds = ledger_kinds(&app, c).await;
    let confirmed = kinds
        .iter()
        .find(|(k, _)| k == "deletion_confirmed")
        .expect("deletion confirmed in the ledger");
    assert_eq!(confirmed.1["purposes"], json!(["ads", "product"]));

    // Day 31: Dave is too late.
    app.advance_days(2).await;
    let e = dave.withdraw(Purpose::Ads).await.unwrap_err();
    assert_eq!(e.code(), Some("opt_out_window_closed"));
    drain(&app).await;
    assert_eq!(held(&app, &pd).await, both);

    // Linking: partner accounts whose own pseudonym matches a shared one.
    let alice_p = partner_side_pseudonym(&app, &n(1)).await;
    assert_eq!(
        alice_p, pa,
        "the partner side computes the same pseudonym through the key service"
    );
    let alice_partner = partner_sign_up(&app, "alice", &n(1), Some(alice_p)).await;
    let (_, me) = partner_get(&app, "/v1/partner/me", &alice_partner).await;
    assert_eq!(me["linked_to_messenger"], true);
    let bob_p = partner_side_pseudonym(&app, &n(2)).await;
    let bob_partner = partner_sign_up(&app, "bob", &n(2), Some(bob_p)).await;
    let (_, me) = partner_get(&app, "/v1/partner/me", &bob_partner).await;
    assert_eq!(
        me["linked_to_messenger"], false,
        "bob did not grant product"
    );

    // Suggestions: an uploader with alice, bob and a stranger as contacts.
    let eve = partner_sign_up(&app, "eve", &n(5), None).await;
    let stranger = partner_side_pseudonym(&app, &n(99)).await;
    let up = partner_post(
        &app,
        "/v1/partner/me/contacts",
        &eve,
        json!({"pseudonyms": [pa.to_hex(), pb.to_hex(), stranger.to_hex()]}),
    )
    .await;
    assert_eq!(
        up["kept"], 2,
        "the stranger matches nobody and is discarded: {up}"
    );
    let (_, s) = partner_get(&app, "/v1/partner/me/suggestions", &eve).await;
    let names: Vec<&str> = s["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["alice"],
        "bob did not grant product: never suggested"
    );

    // The partner's database never holds a phone number; it does hold pseudonyms.
    let files = all_files(&app.data_dir, "partner.db");
    for i in 1..=4 {
        let e164 = n(i);
        assert!(!contains(&files, e164.as_bytes()));
        assert!(!contains(&files, e164.trim_start_matches('+').as_bytes()));
        assert!(!contains(&files, e164.trim_start_matches("+62").as_bytes()));
    }
    assert!(
        contains(&files, pa.as_bytes()),
        "the search can find what is there"
    );
}

#[tokio::test]
async fn purpose_checked_reads_are_refused_and_counted() {
    let app = spawn_app(opts(ConsentProfile::Strict)).await;
    let v1 = app.publish(ConsentProfile::Strict, &Purpose::ALL).await;
    let u = app
        .register(
            &n(10),
            Some((v1.version, crate::helpers::grants(&[Purpose::Product]))),
        )
        .await;
    let a = account_of(&u).await;
    drain(&app).await;
    let p = pseudonym(&app, a).await;
    let (st, _) = partner_get(
        &app,
        &format!("/v1/admin/partner/records/{}?purpose=product", p.to_hex()),
        &app.admin_token,
    )
    .await;
    assert_eq!(st, 200);
    let (st, body) = partner_get(
        &app,
        &format!("/v1/admin/partner/records/{}?purpose=ads", p.to_hex()),
        &app.admin_token,
    )
    .await;
    assert_eq!(
        (st, body["code"].as_str()),
        (403, Some("purpose_not_granted"))
    );
    let (_, stats) = partner_get(&app, "/v1/admin/partner/stats", &app.admin_token).await;
    assert_eq!(stats["denied_reads"]["ads"], 1);
    let (st, _) = partner_get(&app, "/v1/admin/partner/stats", "acc_forged").await;
    assert_eq!(st, 401);
}

#[tokio::test]
async fn withdrawal_during_a_partner_outage_is_delivered_after_restart_and_duplicates_change_nothing(
) {
    let app = spawn_app(opts(ConsentProfile::Strict)).await;
    let v1 = app.publish(ConsentProfile::Strict, &Purpose::ALL).await;
    let u = app
        .register(
            &n(20),
            Some((v1.version, crate::helpers::grants(&[Purpose::Ads]))),
        )
        .await;
    let a = account_of(&u).await;
    drain(&app).await;
    let p = pseudonym(&app, a).await;
    assert_eq!(held(&app, &p).await, [Purpose::Ads].into_iter().collect());

    // The partner is unreachable (a port nothing listens on); the user withdraws.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let messenger = app.feed.as_ref().unwrap().messenger.clone();
    let down = accord_messenger::feed::Dispatcher::new(
        messenger.clone(),
        accord_messenger::feed::FeedConfig::new(dead, b"feed secret of this test".to_vec()),
    );
    u.withdraw(Purpose::Ads).await.unwrap();
    let r = down.drain(5).await.unwrap();
    assert!(r.failed, "{r:?}");
    let stats = app.store.feed_stats().await.unwrap();
    assert_eq!(
        (stats.pending_accounts, stats.failing_accounts),
        (1, 1),
        "kept for retry: {stats:?}"
    );
    assert_eq!(
        held(&app, &p).await,
        [Purpose::Ads].into_iter().collect(),
        "the partner never got it"
    );
    // Backing off: an immediate retry sends nothing.
    let r = app.feed.as_ref().unwrap().drain(5).await.unwrap();
    assert_eq!(r.events_sent, 0, "{r:?}");

    // A restarted messenger (a new dispatcher on the same database) with
    // the partner reachable again delivers it once the backoff is over.
    let restarted = accord_messenger::feed::Dispatcher::new(
        messenger,
        app.feed.as_ref().unwrap().config.clone(),
    );
    app.advance(0, 0, 600).await;
    let r = restarted.drain(20).await.unwrap();
    assert!(!r.failed, "{r:?}");
    assert_eq!(r.deletions_confirmed, 1);
    assert!(held(&app, &p).await.is_empty());
    assert_eq!(app.store.feed_stats().await.unwrap().pending_events, 0);
    let kinds = ledger_kinds(&app, a).await;
    assert_eq!(
        kinds
            .iter()
            .filter(|(k, _)| k == "deletion_confirmed")
            .count(),
        1,
        "{kinds:?}"
    );
}

#[tokio::test]
async fn duplicated_and_reordered_deliveries_change_nothing() {
    use accord_domain::coordination::{FeedBatch, FeedEvent};
    let app = spawn_app(opts(ConsentProfile::Strict)).await;
    let partner = app.partner.clone().unwrap();
    let p = PseudonymId::from_bytes([7u8; 32]);
    // Grants in a log signed with the messenger's key, for the citations.
    let mut log = accord_domain::transparency::testing::TestLog::new(crate::helpers::LOG_SEED, 11);
    let (cites, cp) = log.grants(&[Purpose::Ads, Purpose::Product]);
    let batch = |events: Vec<FeedEvent>| FeedBatch {
        events,
        checkpoints: vec![cp.clone()],
    };
    let ev = |id: u64, purposes: &[Purpose]| FeedEvent {
        event_id: id,
        pseudonym: p,
        key_version: 1,
        purposes: purposes.iter().copied().collect(),
        devices: if purposes.is_empty() {
            vec![]
        } else {
            vec![crate::helpers::device_info()]
        },
        citations: cites
            .iter()
            .filter(|c| purposes.contains(&c.purpose))
            .cloned()
            .collect(),
        reason: "test".into(),
    };
    let secret = b"feed secret of this test";
    let post = |batch: FeedBatch| {
        let partner = partner.clone();
        async move {
            let body = serde_json::to_vec(&batch).unwrap();
            let now = partner.now().0;
            partner
                .ingest(&signed(secret, now, &body), &body)
                .await
                .unwrap()
        }
    };
    let share_ads = post(batch(vec![ev(10, &[Purpose::Ads])])).await;
    assert!(share_ads.results[0].applied);
    // The revocation arrives, then an old share is replayed, then the revocation again.
    let revoke = post(batch(vec![ev(12, &[])])).await;
    assert_eq!(
        revoke.results[0].deleted,
        [Purpose::Ads].into_iter().collect()
    );
    let stale = post(batch(vec![
        ev(10, &[Purpose::Ads]),
        ev(11, &[Purpose::Ads, Purpose::Product]),
    ]))
    .await;
    assert!(stale
        .results
        .iter()
        .all(|r| !r.applied && r.held.is_empty()));
    let again = post(batch(vec![ev(12, &[])])).await;
    assert!(!again.results[0].applied);
    assert!(partner
        .store
        .record(&p, Purpose::Ads)
        .await
        .unwrap()
        .is_none());
    assert!(partner
        .store
        .record(&p, Purpose::Product)
        .await
        .unwrap()
        .is_none());

    // A forged or stale signature is refused and applies nothing.
    let body = serde_json::to_vec(&batch(vec![ev(20, &[Purpose::Ads])])).unwrap();
    let now = partner.now().0;
    assert!(partner
        .ingest(&signed(b"wrong", now, &body), &body)
        .await
        .is_err());
    assert!(partner
        .ingest(&signed(secret, now - 3_600_000, &body), &body)
        .await
        .is_err());
    assert!(partner
        .store
        .record(&p, Purpose::Ads)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn lapsed_grants_and_deleted_accounts_are_revoked_with_confirmations() {
    let app = spawn_app(opts(ConsentProfile::Strict)).await;
    let v1 = app.publish(ConsentProfile::Strict, &Purpose::ALL).await;
    let stays = app
        .register(&n(30), Some((v1.version, share(Some(true)))))
        .await;
    let leaves = app
        .register(&n(31), Some((v1.version, share(Some(true)))))
        .await;
    let (s, l) = (account_of(&stays).await, account_of(&leaves).await);
    drain(&app).await;
    let (ps, pl) = (pseudonym(&app, s).await, pseudonym(&app, l).await);
    assert_eq!(held(&app, &ps).await.len(), 2);

    leaves.delete_account().await.unwrap();
    drain(&app).await;
    assert!(held(&app, &pl).await.is_empty(), "deletion propagates");
    assert!(ledger_kinds(&app, l)
        .await
        .iter()
        .any(|(k, _)| k == "deletion_confirmed"));

    // A new version: the old grant lasts until its deadline, then lapses.
    app.publish(ConsentProfile::Strict, &Purpose::ALL).await;
    app.advance_days(29).await;
    drain(&app).await;
    assert_eq!(held(&app, &ps).await.len(), 2);
    app.advance_days(1).await;
    let r = drain(&app).await;
    assert!(r.swept >= 1, "{r:?}");
    assert!(
        held(&app, &ps).await.is_empty(),
        "nothing held after the deadline"
    );
    assert!(ledger_kinds(&app, s)
        .await
        .iter()
        .any(|(k, _)| k == "deletion_confirmed"));
}

#[tokio::test]
async fn reconciliation_deletes_what_the_partner_should_not_hold_and_resyncs_what_it_lacks() {
    use accord_storage::partner::IncomingEvent;
    let app = spawn_app(opts(ConsentProfile::Strict)).await;
    let (_, p) = sharing_user(&app, 40).await;
    let partner = app.partner.clone().unwrap();
    // Drift: the partner lost the user's `ads` record, and holds a record
    // nobody shared with it.
    assert!(partner.store.delete_held(&p, Purpose::Ads).await.unwrap());
    let stray = PseudonymId::from_bytes([0x42u8; 32]);
    partner
        .store
        .apply_event(
            &IncomingEvent {
                event_id: 1,
                pseudonym: stray,
                key_version: 1,
                purposes: [Purpose::Product].into_iter().collect(),
                devices: vec![crate::helpers::device_info()],
                citations: Default::default(),
            },
            partner.now(),
        )
        .await
        .unwrap();
    let r = app
        .http
        .post(format!("{}/v1/admin/feed/reconcile", app.base_url))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert!(
        report["mismatched_buckets"].as_u64().unwrap() >= 2,
        "{report}"
    );
    assert_eq!(report["deleted_at_partner"], 1, "{report}");
    assert_eq!(report["resync_requested"], 1, "{report}");
    assert!(partner
        .store
        .record(&stray, Purpose::Product)
        .await
        .unwrap()
        .is_none());
    drain(&app).await;
    assert_eq!(held(&app, &p).await.len(), 2, "resynced");
    // Now they agree.
    let again: Value = app
        .http
        .post(format!("{}/v1/admin/feed/reconcile", app.base_url))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["mismatched_buckets"], 0, "{again}");
}

#[tokio::test]
async fn a_number_change_revokes_the_old_pseudonym_and_shares_the_new_one() {
    use reqwest::Method;
    let app = spawn_app(opts(ConsentProfile::Strict)).await;
    let v1 = app.publish(ConsentProfile::Strict, &Purpose::ALL).await;
    let user = app
        .register_device(&n(50), Some((v1.version, share(Some(true)))))
        .await;
    let a = user.reg.account_id;
    drain(&app).await;
    let old = pseudonym(&app, a).await;
    assert_eq!(held(&app, &old).await.len(), 2);

    let token = Some(user.reg.token.as_str());
    let r = app
        .send(
            Method::POST,
            "/v1/me/number",
            token,
            crate::helpers::Body::Json(json!({"phone": n(51)})),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["registration_id"].as_str().unwrap().to_owned();
    let code = r.body["dev_code"].as_str().unwrap().to_owned();
    let wrong = app
        .send(
            Method::POST,
            &format!("/v1/me/number/{id}/verify"),
            token,
            crate::helpers::Body::Json(json!({"code": "000000x"})),
        )
        .await;
    assert_eq!(wrong.status, 400);
    let r = app
        .send(
            Method::POST,
            &format!("/v1/me/number/{id}/verify"),
            token,
            crate::helpers::Body::Json(json!({"code": code})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        app.store.account(a).await.unwrap().unwrap().phone.e164(),
        n(51)
    );

    drain(&app).await;
    let new = pseudonym(&app, a).await;
    assert_ne!(new, old);
    assert!(
        held(&app, &old).await.is_empty(),
        "the old pseudonym is revoked"
    );
    assert_eq!(held(&app, &new).await.len(), 2, "the new one is shared");
    let kinds = ledger_kinds(&app, a).await;
    assert!(
        kinds.iter().any(|(k, _)| k == "deletion_confirmed"),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|(k, _)| k == "propagated").count(),
        2,
        "{kinds:?}"
    );

    // A number that has an account cannot be taken.
    let other = app
        .register_device(&n(52), Some((v1.version, share(None))))
        .await;
    let r = app
        .send(
            Method::POST,
            "/v1/me/number",
            Some(&other.reg.token),
            crate::helpers::Body::Json(json!({"phone": n(51)})),
        )
        .await;
    let id = r.body["registration_id"].as_str().unwrap().to_owned();
    let code = r.body["dev_code"].as_str().unwrap().to_owned();
    let r = app
        .send(
            Method::POST,
            &format!("/v1/me/number/{id}/verify"),
            Some(&other.reg.token),
            crate::helpers::Body::Json(json!({"code": code})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (409, Some("phone_taken"))
    );
}

#[tokio::test]
async fn a_reconciliation_against_a_partner_that_is_down_answers_502_partner_unavailable() {
    // The messenger of an app, served a second time with a feed to a port
    // nothing listens on.
    let app = spawn_app(AppOptions::default()).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let second = accord_messenger::Application::build(accord_messenger::Settings {
        feed: Some(accord_messenger::feed::FeedConfig::new(
            dead,
            b"feed secret of this test".to_vec(),
        )),
        ..accord_messenger::Settings::new(
            app.data_dir.to_str().unwrap(),
            accord_crypto::token::TokenHash::of(&app.admin_token),
            std::sync::Arc::new(accord_messenger::verifier::DevVerifier),
            std::sync::Arc::new(accord_domain::SystemClock),
        )
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (_stopper, stop) = accord_http::stop_signal();
    accord_http::spawn_server(listener, second.router(), stop);
    let r = app
        .http
        .post(format!("{url}/v1/admin/feed/reconcile"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "partner_unavailable", "{body}");
}

#[tokio::test]
async fn a_restricted_user_withdraws_and_the_partner_confirms_the_deletion() {
    let app = spawn_app(opts(ConsentProfile::Strict)).await;
    app.publish(ConsentProfile::Strict, &[Purpose::Ads, Purpose::Product])
        .await;
    let user = app
        .register(&n(900), Some((1, crate::helpers::grants(&[Purpose::Ads]))))
        .await;
    let a = account_of(&user).await;
    app.messenger.refresh_pseudonyms(100).await.unwrap();
    drain(&app).await;
    let p = pseudonym(&app, a).await;
    assert_eq!(held(&app, &p).await, BTreeSet::from([Purpose::Ads]));

    // A new version the user never accepts: after its deadline the user is
    // restricted, before the feed has run again.
    app.publish(ConsentProfile::Strict, &[Purpose::Ads, Purpose::Product])
        .await;
    app.advance_days(30).await;
    crate::helpers::assert_api_error(
        user.grant(Purpose::Product).await,
        403,
        "policy_acceptance_required",
    );
    // Never blocked: the state, its history, the receipt, and withdrawal.
    user.consent()
        .await
        .expect("consent state while restricted");
    user.consent_at(app.now().await)
        .await
        .expect("history while restricted");
    user.receipt().await.expect("receipt while restricted");
    user.withdraw(Purpose::Ads)
        .await
        .expect("withdrawal while restricted");
    let kinds = ledger_kinds(&app, a).await;
    assert!(
        kinds
            .iter()
            .any(|(k, v)| k == "withdrawn" && v["event"]["purpose"] == "ads"),
        "{kinds:?}"
    );
    let r = drain(&app).await;
    assert!(r.deletions_confirmed >= 1, "{r:?}");
    assert!(held(&app, &p).await.is_empty());
    assert!(ledger_kinds(&app, a)
        .await
        .iter()
        .any(|(k, _)| k == "deletion_confirmed"));
}

#[tokio::test]
async fn a_captured_feed_request_replayed_or_sent_elsewhere_is_refused() {
    let app = spawn_app(opts(ConsentProfile::Strict)).await;
    let (_, p) = sharing_user(&app, 50).await;
    let partner = app.partner.clone().unwrap();
    // Drift, so that reconciliation sends a bucket call too.
    assert!(partner.store.delete_held(&p, Purpose::Ads).await.unwrap());
    let mut live = app.feed.clone().unwrap();
    let tap = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    live.config.tap = Some(tap.clone());
    live.reconcile().await.unwrap();
    let sent = tap.lock().unwrap().clone();
    let find = |path: &str| {
        sent.iter()
            .find(|b| b.path == path)
            .unwrap_or_else(|| panic!("no {path} call in {sent:?}"))
            .clone()
    };
    let bucket = find(accord_domain::coordination::RECONCILE_BUCKET_PATH);
    let digests = find(accord_domain::coordination::DIGESTS_PATH);
    let replay = |path: &'static str, b: accord_messenger::feed::SentBatch| {
        let (http, url) = (app.http.clone(), format!("{}{path}", partner_url(&app)));
        async move {
            let r = http
                .post(url)
                .header(accord_crypto::mac::SIGNATURE_HEADER, b.signature)
                .header(
                    accord_crypto::mac::TIMESTAMP_HEADER,
                    b.timestamp_ms.to_string(),
                )
                .header(accord_crypto::mac::NONCE_HEADER, b.nonce)
                .header("content-type", "application/json")
                .body(b.body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (status, body["code"].as_str().unwrap_or("").to_owned())
        }
    };
    // The same bucket call, verbatim, within the window: refused.
    assert_eq!(
        replay(
            accord_domain::coordination::RECONCILE_BUCKET_PATH,
            bucket.clone()
        )
        .await,
        (401, "replayed_request".to_owned())
    );
    // A signature for one endpoint presented to another: refused (the path
    // is signed), whatever the nonce.
    let mut moved = digests.clone();
    moved.nonce = accord_crypto::mac::nonce();
    assert_eq!(
        replay(accord_domain::coordination::RECONCILE_BUCKET_PATH, moved).await,
        (401, "bad_signature".to_owned())
    );
    // Without a nonce header at all: refused.
    let r = app
        .http
        .post(format!("{}/v1/feed/ingest", partner_url(&app)))
        .header(accord_crypto::mac::SIGNATURE_HEADER, bucket.signature)
        .header(
            accord_crypto::mac::TIMESTAMP_HEADER,
            bucket.timestamp_ms.to_string(),
        )
        .header("content-type", "application/json")
        .body(bucket.body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
