//! Custom audiences through the partner's API: an advertiser's uploads
//! matched whole (phone and email, one member a row), eligibility by the
//! partner's own ad setting or `ads` held from the messenger, members
//! leaving on withdrawal, uploads deleted after matching, thresholding and
//! the budget, campaigns, the ad endpoint and its impressions. Pseudonyms
//! here are made-up bytes (the partner only compares them); the real
//! OPRF path is tested end to end in the CLI's `tests/audience.rs`.

use crate::helpers::{assert_error, spawn_app, TestApp};
use accord_domain::{Purpose, Timestamp};
use accord_storage::partner::IncomingEvent;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A made-up pseudonym, spread over partitions.
fn pid(n: u32) -> String {
    let mut b = [0u8; 32];
    b[0] = (n.wrapping_mul(37) % 256) as u8;
    b[1..5].copy_from_slice(&n.to_be_bytes());
    b[5] = 0xa5;
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn advertiser(app: &TestApp, name: &str) -> String {
    let r = app
        .send(
            Method::POST,
            "/v1/admin/advertisers",
            Some(&app.admin_token),
            Some(json!({ "name": name })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["token"].as_str().unwrap().to_owned()
}

async fn create(app: &TestApp, adv: &str, name: &str) {
    let r = app
        .send(
            Method::POST,
            "/v1/audiences",
            Some(adv),
            Some(json!({ "name": name })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Uploads `rows` (pseudonym hex strings per row) in batches of `per`,
/// completes, and returns the answer.
async fn upload(
    app: &TestApp,
    adv: &str,
    audience: &str,
    rows: &[Vec<String>],
    per: usize,
) -> Value {
    let batches = rows.len().div_ceil(per);
    let r = app
        .send(
            Method::POST,
            &format!("/v1/audiences/{audience}/uploads"),
            Some(adv),
            Some(json!({ "batches": batches })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["upload_id"].as_str().unwrap().to_owned();
    for (seq, chunk) in rows.chunks(per).enumerate() {
        let r = app
            .send(
                Method::PUT,
                &format!("/v1/uploads/{id}/batches/{seq}"),
                Some(adv),
                Some(json!({ "rows": chunk })),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = app
        .send(
            Method::POST,
            &format!("/v1/uploads/{id}/complete"),
            Some(adv),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// A partner user with number `phone`, ad personalisation as given, and
/// optionally an email; returns its token.
async fn user(app: &TestApp, phone: u32, ads: bool, email: Option<u32>) -> String {
    let (_, token) = app.sign_up("u", Some(pid(phone))).await;
    let r = app
        .send(
            Method::PUT,
            "/v1/partner/me/ads",
            Some(&token),
            Some(json!({ "enabled": ads })),
        )
        .await;
    assert_eq!(r.status, 204);
    if let Some(e) = email {
        let r = app
            .send(
                Method::PUT,
                "/v1/partner/me/email",
                Some(&token),
                Some(json!({ "email_pseudonym": pid(e) })),
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.body);
    }
    token
}

/// What the messenger shares for `phone` (a feed event, applied as the
/// ingest endpoint applies it once verified).
async fn share(app: &TestApp, phone: u32, event_id: u64, purposes: &[Purpose]) {
    let e = IncomingEvent {
        event_id,
        pseudonym: accord_domain::PseudonymId::from_hex(&pid(phone)).unwrap(),
        key_version: 1,
        purposes: purposes.iter().copied().collect::<BTreeSet<_>>(),
        devices: vec![],
        citations: BTreeMap::new(),
    };
    app.service
        .store
        .apply_event(&e, app.service.now())
        .await
        .unwrap();
}

async fn members(app: &TestApp) -> u64 {
    app.service.audience_stats().await.unwrap().members
}

#[tokio::test]
async fn rows_match_by_phone_or_email_once_each_and_uploads_are_deleted() {
    let app = spawn_app().await;
    let adv = advertiser(&app, "Shop").await;
    create(&app, &adv, "customers").await;
    // Eligible: 1 (ads on, email 101), 2 (ads on), 3 (`ads` from the messenger).
    // Not eligible: 4 (ads off), 5 (`product` only).
    user(&app, 1, true, Some(101)).await;
    user(&app, 2, true, None).await;
    share(&app, 3, 1, &[Purpose::Ads]).await;
    user(&app, 4, false, Some(104)).await;
    share(&app, 5, 1, &[Purpose::Product]).await;
    let rows = vec![
        vec![pid(1), pid(101)],   // 1 by phone and email: once
        vec![pid(900), pid(101)], // unknown phone, 1's email: 1 again
        vec![pid(2)],
        vec![pid(3)],
        vec![pid(4), pid(104)], // ads off
        vec![pid(5)],           // product only
        vec![pid(999)],         // a stranger
    ];
    let before = app.service.audience_stats().await.unwrap();
    assert_eq!(before.members, 0);
    let answer = upload(&app, &adv, "customers", &rows, 3).await;
    assert_eq!(members(&app).await, 3, "1, 2 and 3, each once");
    // The advertiser sees a noised figure below the threshold only.
    assert_eq!(
        answer["audience"]["size"]["shown"], "fewer_than",
        "{answer}"
    );
    assert_eq!(answer["audience"]["size"]["threshold"], 100);
    assert_eq!(answer["fresh"], true);
    // Nothing uploaded is left in the partner's database.
    let after = app.service.audience_stats().await.unwrap();
    assert_eq!(after.candidates, 0);
    assert_eq!(after.open_uploads, 0);
    let db = app.db_path();
    let conn = rusqlite_free_scan(&db, &pid(900));
    assert!(!conn, "the stranger's pseudonym is in the database files");
}

/// Whether the bytes of `hex` appear anywhere in the database files.
fn rusqlite_free_scan(db: &std::path::Path, hex: &str) -> bool {
    let needle: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let dir = db.parent().unwrap();
    std::fs::read_dir(dir).unwrap().any(|e| {
        let bytes = std::fs::read(e.unwrap().path()).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle.as_slice())
    })
}

#[tokio::test]
async fn withdrawal_and_ads_off_remove_members_and_their_ads() {
    let app = spawn_app().await;
    let adv = advertiser(&app, "Shop").await;
    create(&app, &adv, "a").await;
    create(&app, &adv, "b").await;
    let t1 = user(&app, 1, false, None).await; // eligible by the messenger's `ads`
    share(&app, 1, 1, &[Purpose::Ads, Purpose::Product]).await;
    let t2 = user(&app, 2, true, None).await;
    let t3 = user(&app, 3, false, None).await; // no ad consent at all
    let rows = vec![vec![pid(1)], vec![pid(2)], vec![pid(3)]];
    upload(&app, &adv, "a", &rows, 10).await;
    upload(&app, &adv, "b", &rows, 10).await;
    assert_eq!(members(&app).await, 4, "1 and 2 in both");
    let now = app.service.now();
    let r = app
        .send(
            Method::POST,
            "/v1/campaigns",
            Some(&adv),
            Some(json!({ "audience": "a", "title": "Sale", "text": "Half price", "link": "https://shop.example/sale",
                "starts_at": now.0, "ends_at": now.0 + 86_400_000 })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let ads = |t: String| {
        let app = &app;
        async move {
            let r = app
                .send(Method::GET, "/v1/partner/ads", Some(&t), None)
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.body.as_array().unwrap().len()
        }
    };
    assert_eq!(ads(t1.clone()).await, 1);
    assert_eq!(ads(t2.clone()).await, 1);
    assert_eq!(ads(t3.clone()).await, 0, "no consent, no ad");
    // 1 withdraws `ads` at the messenger: the feed's revoke removes them.
    share(&app, 1, 2, &[Purpose::Product]).await;
    assert_eq!(members(&app).await, 2);
    assert_eq!(ads(t1).await, 0);
    // 2 turns ad personalisation off at the partner.
    let r = app
        .send(
            Method::PUT,
            "/v1/partner/me/ads",
            Some(&t2),
            Some(json!({ "enabled": false })),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(members(&app).await, 0);
    assert_eq!(ads(t2).await, 0);
}

#[tokio::test]
async fn sizes_are_noised_rounded_thresholded_and_the_budget_holds() {
    let app = spawn_app().await;
    let adv = advertiser(&app, "Shop").await;
    create(&app, &adv, "big").await;
    for n in 0..300 {
        share(&app, n, 1, &[Purpose::Ads]).await;
    }
    let rows: Vec<Vec<String>> = (0..300).map(|n| vec![pid(n)]).collect();
    let a = upload(&app, &adv, "big", &rows, 100).await;
    assert_eq!(a["audience"]["size"]["shown"], "about", "{a}");
    let c = a["audience"]["size"]["count"].as_u64().unwrap();
    assert!((250..=350).contains(&c), "300 with noise of scale 2: {c}");
    assert!(c % 10 == 0, "two significant figures: {c}");
    // A read repeats the figure and spends nothing.
    let r = app
        .send(Method::GET, "/v1/audiences/big", Some(&adv), None)
        .await;
    assert_eq!(r.body["size"], a["audience"]["size"]);
    assert_eq!(r.body["budget_left_milli"], 2_500);
    // Five more uploads spend the budget (ε 0.5 each of 3); the seventh
    // repeats the sixth figure.
    let mut last = Value::Null;
    for i in 0..5 {
        let a = upload(&app, &adv, "big", &[vec![pid(1_000 + i)]], 10).await;
        assert_eq!(a["fresh"], true);
        last = a["audience"]["size"].clone();
    }
    let a = upload(&app, &adv, "big", &[vec![pid(2_000)]], 10).await;
    assert_eq!(a["fresh"], false, "{a}");
    assert_eq!(a["audience"]["size"], last);
    assert_eq!(a["audience"]["budget_left_milli"], 0);
}

#[tokio::test]
async fn campaigns_report_noised_reach_and_impressions_hourly() {
    let app = spawn_app().await;
    let adv = advertiser(&app, "Shop").await;
    create(&app, &adv, "a").await;
    let t = user(&app, 7, true, None).await;
    upload(&app, &adv, "a", &[vec![pid(7)]], 10).await;
    let now = app.service.now();
    let r = app
        .send(
            Method::POST,
            "/v1/campaigns",
            Some(&adv),
            Some(json!({ "audience": "a", "title": "Sale", "text": "Half price", "link": "https://shop.example/",
                "starts_at": now.0, "ends_at": now.0 + 86_400_000 })),
        )
        .await;
    let id = r.body["campaign_id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        app.send(Method::GET, "/v1/partner/ads", Some(&t), None)
            .await;
    }
    let rep = app
        .send(
            Method::GET,
            &format!("/v1/campaigns/{id}"),
            Some(&adv),
            None,
        )
        .await;
    assert_eq!(rep.status, 200, "{}", rep.body);
    assert_eq!(rep.body["reach"]["shown"], "fewer_than");
    assert_eq!(rep.body["impressions"]["shown"], "fewer_than");
    assert_eq!(rep.body["budget_left_milli"], 2_500);
    // Within the hour: the same figures, nothing spent.
    let again = app
        .send(
            Method::GET,
            &format!("/v1/campaigns/{id}"),
            Some(&adv),
            None,
        )
        .await;
    assert_eq!(again.body["budget_left_milli"], 2_500);
    app.clock.advance_millis(3_600_000);
    let later = app
        .send(
            Method::GET,
            &format!("/v1/campaigns/{id}"),
            Some(&adv),
            None,
        )
        .await;
    assert_eq!(later.body["budget_left_milli"], 2_000);
    // Another advertiser cannot read it.
    let other = advertiser(&app, "Other").await;
    let r = app
        .send(
            Method::GET,
            &format!("/v1/campaigns/{id}"),
            Some(&other),
            None,
        )
        .await;
    assert_error(&r, 404, "not_found");
    // A campaign that ended shows no ad.
    app.clock.advance_millis(86_400_000);
    let r = app
        .send(Method::GET, "/v1/partner/ads", Some(&t), None)
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 0);
    let _ = Timestamp(0);
}

#[tokio::test]
async fn bad_uploads_are_refused_and_half_uploads_never_match() {
    let app = spawn_app().await;
    let adv = advertiser(&app, "Shop").await;
    create(&app, &adv, "a").await;
    user(&app, 1, true, None).await;
    // Strangers and users are not advertisers; advertisers are not operators.
    let r = app.send(Method::GET, "/v1/audiences", None, None).await;
    assert_error(&r, 401, "unauthorized");
    let r = app
        .send(
            Method::POST,
            "/v1/admin/advertisers",
            Some(&adv),
            Some(json!({ "name": "x" })),
        )
        .await;
    assert_error(&r, 403, "admin_required");
    let r = app
        .send(
            Method::POST,
            "/v1/audiences",
            Some(&adv),
            Some(json!({ "name": "a" })),
        )
        .await;
    assert_error(&r, 409, "audience_exists");
    let r = app
        .send(
            Method::POST,
            "/v1/audiences/nope/uploads",
            Some(&adv),
            Some(json!({ "batches": 1 })),
        )
        .await;
    assert_error(&r, 404, "unknown_audience");
    let r = app
        .send(
            Method::POST,
            "/v1/audiences/a/uploads",
            Some(&adv),
            Some(json!({ "batches": 0 })),
        )
        .await;
    assert_error(&r, 400, "bad_request");
    let r = app
        .send(
            Method::POST,
            "/v1/audiences/a/uploads",
            Some(&adv),
            Some(json!({ "batches": 2 })),
        )
        .await;
    let id = r.body["upload_id"].as_str().unwrap().to_owned();
    let put = |seq: u64, rows: Value| {
        let (app, adv, id) = (&app, &adv, &id);
        async move {
            app.send(
                Method::PUT,
                &format!("/v1/uploads/{id}/batches/{seq}"),
                Some(adv),
                Some(json!({ "rows": rows })),
            )
            .await
        }
    };
    assert_error(&put(0, json!([["zz"]])).await, 400, "invalid_pseudonym");
    assert_error(&put(0, json!([[]])).await, 400, "bad_request");
    assert_error(
        &put(0, json!([[pid(1), pid(2), pid(3)]])).await,
        400,
        "bad_request",
    );
    assert_error(&put(2, json!([[pid(1)]])).await, 400, "bad_request");
    let r = put(0, json!([[pid(1)]])).await;
    assert_eq!(r.body["staged"], true);
    let r = put(0, json!([[pid(1)]])).await;
    assert_eq!(r.body["staged"], false, "a batch is staged once");
    // Half an upload is never matched.
    let r = app
        .send(
            Method::POST,
            &format!("/v1/uploads/{id}/complete"),
            Some(&adv),
            None,
        )
        .await;
    assert_error(&r, 409, "upload_incomplete");
    assert_eq!(r.body["details"]["received"], 1);
    assert_eq!(members(&app).await, 0);
    // Another advertiser cannot touch it.
    let other = advertiser(&app, "Other").await;
    let r = app
        .send(
            Method::DELETE,
            &format!("/v1/uploads/{id}"),
            Some(&other),
            None,
        )
        .await;
    assert_error(&r, 404, "not_found");
    // Discarded whole.
    let r = app
        .send(
            Method::DELETE,
            &format!("/v1/uploads/{id}"),
            Some(&adv),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let s = app.service.audience_stats().await.unwrap();
    assert_eq!((s.open_uploads, s.candidates, s.members), (0, 0, 0));
    // An unfinished upload expires whole after a day.
    let r = app
        .send(
            Method::POST,
            "/v1/audiences/a/uploads",
            Some(&adv),
            Some(json!({ "batches": 2 })),
        )
        .await;
    let id = r.body["upload_id"].as_str().unwrap().to_owned();
    let r = app
        .send(
            Method::PUT,
            &format!("/v1/uploads/{id}/batches/0"),
            Some(&adv),
            Some(json!({ "rows": [[pid(1)]] })),
        )
        .await;
    assert_eq!(r.status, 200);
    app.clock.advance_millis(24 * 3_600_000 + 1);
    assert_eq!(app.service.purge_uploads().await.unwrap(), 1);
    let s = app.service.audience_stats().await.unwrap();
    assert_eq!((s.open_uploads, s.candidates), (0, 0));
    // Campaigns check their creative.
    let now = app.service.now();
    for (body, what) in [
        (
            json!({ "audience": "a", "title": "", "text": "t", "link": "https://x/", "starts_at": now.0, "ends_at": now.0 + 1 }),
            "empty title",
        ),
        (
            json!({ "audience": "a", "title": "t", "text": "t", "link": "javascript:alert(1)", "starts_at": now.0, "ends_at": now.0 + 1 }),
            "bad link",
        ),
        (
            json!({ "audience": "a", "title": "t", "text": "t", "link": "https://x/", "starts_at": now.0, "ends_at": now.0 }),
            "empty range",
        ),
    ] {
        let r = app
            .send(Method::POST, "/v1/campaigns", Some(&adv), Some(body))
            .await;
        assert_error(&r, 400, "bad_request");
        let _ = what;
    }
    let r = app
        .send(
            Method::POST,
            "/v1/campaigns",
            Some(&adv),
            Some(json!({ "audience": "zz", "title": "t", "text": "t", "link": "https://x/", "starts_at": now.0, "ends_at": now.0 + 1 })),
        )
        .await;
    assert_error(&r, 404, "unknown_audience");
}

/// A made-up pseudonym in one of four partitions (keeps each match short).
fn pid4(n: u32) -> String {
    let mut b = [0u8; 32];
    b[0] = (n % 4) as u8;
    b[1..5].copy_from_slice(&n.to_be_bytes());
    b[6] = 0x5a;
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The differencing attack of Venkatadri et al. (IEEE S&P 2018), through
/// the API: per trial, two fresh audiences, list L (150 to 199 eligible
/// people) and L plus one target who is, by a fair coin, eligible or not;
/// the attacker guesses "member" when the second released size is larger.
/// Its accuracy over 200 trials must stay within the ε bound of one
/// release, e^ε / (1 + e^ε), plus three standard deviations; the same
/// guess on the true sizes (the operator's count) is right every time,
/// so the attack is real and the noise is what defeats it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_differencing_attack_does_no_better_than_the_dp_bound() {
    let app = spawn_app().await;
    let adv = advertiser(&app, "Attacker").await;
    // 400 eligible people (held for `ads`), 200 ineligible strangers.
    for n in 0..400 {
        let e = IncomingEvent {
            event_id: 1,
            pseudonym: accord_domain::PseudonymId::from_hex(&pid4(n)).unwrap(),
            key_version: 1,
            purposes: [Purpose::Ads].into_iter().collect(),
            devices: vec![],
            citations: BTreeMap::new(),
        };
        app.service
            .store
            .apply_event(&e, app.service.now())
            .await
            .unwrap();
    }
    let value = |v: &Value| match v["shown"].as_str() {
        Some("about") => v["count"].as_i64().unwrap(),
        _ => 0,
    };
    let trials = 200u32;
    let (mut right, mut right_exact) = (0u32, 0u32);
    for t in 0..trials {
        let l: Vec<Vec<String>> = (0..150 + t % 50).map(|i| vec![pid4(i)]).collect();
        let member = uuid::Uuid::new_v4().as_bytes()[0] & 1 == 1;
        let target = if member {
            pid4(399 - t % 200)
        } else {
            pid4(10_000 + t)
        };
        let (a, b) = (format!("l{t}"), format!("lt{t}"));
        create(&app, &adv, &a).await;
        create(&app, &adv, &b).await;
        let before = members(&app).await;
        let first = upload(&app, &adv, &a, &l, 1_000).await;
        let after_first = members(&app).await;
        let mut lt = l.clone();
        lt.push(vec![target]);
        let second = upload(&app, &adv, &b, &lt, 1_000).await;
        let after_second = members(&app).await;
        let guess = value(&second["audience"]["size"]) > value(&first["audience"]["size"]);
        right += u32::from(guess == member);
        // The same test on the true sizes (the operator's count).
        let exact = after_second - after_first > after_first - before;
        right_exact += u32::from(exact == member);
    }
    let eps = 0.5f64;
    let bound = eps.exp() / (1.0 + eps.exp());
    let accuracy = f64::from(right) / f64::from(trials);
    let slack = 3.0 * (bound * (1.0 - bound) / f64::from(trials)).sqrt();
    eprintln!(
        "differencing attack through the API: accuracy {accuracy:.3}, DP bound {bound:.3}; on true sizes {:.3}",
        f64::from(right_exact) / f64::from(trials)
    );
    assert_eq!(
        right_exact, trials,
        "on the true sizes the attack always wins"
    );
    assert!(
        accuracy <= bound + slack,
        "accuracy {accuracy:.3} above the bound {bound:.3} (+{slack:.3})"
    );
}

#[tokio::test]
async fn an_upload_is_matched_once_and_reports_where_it_stands() {
    let app = spawn_app().await;
    let adv = advertiser(&app, "Shop").await;
    create(&app, &adv, "a").await;
    user(&app, 1, true, None).await;
    let r = app
        .send(
            Method::POST,
            "/v1/audiences/a/uploads",
            Some(&adv),
            Some(json!({ "batches": 1 })),
        )
        .await;
    let id = r.body["upload_id"].as_str().unwrap().to_owned();
    let state = app
        .send(Method::GET, &format!("/v1/uploads/{id}"), Some(&adv), None)
        .await;
    assert_eq!(
        state.body,
        json!({ "state": "staged", "received": 0, "declared": 1 })
    );
    app.send(
        Method::PUT,
        &format!("/v1/uploads/{id}/batches/0"),
        Some(&adv),
        Some(json!({ "rows": [[pid(1)]] })),
    )
    .await;
    let first = app
        .send(
            Method::POST,
            &format!("/v1/uploads/{id}/complete"),
            Some(&adv),
            None,
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["state"], "matched");
    // Completing again releases nothing new: the same answer.
    let again = app
        .send(
            Method::POST,
            &format!("/v1/uploads/{id}/complete"),
            Some(&adv),
            None,
        )
        .await;
    assert_eq!(again.body, first.body);
    let state = app
        .send(Method::GET, &format!("/v1/uploads/{id}"), Some(&adv), None)
        .await;
    assert_eq!(state.body, first.body);
    let a = app
        .send(Method::GET, "/v1/audiences/a", Some(&adv), None)
        .await;
    assert_eq!(a.body["budget_left_milli"], 2_500, "one release, not two");
    // Nothing can be added to a matched upload.
    let r = app
        .send(
            Method::PUT,
            &format!("/v1/uploads/{id}/batches/0"),
            Some(&adv),
            Some(json!({ "rows": [[pid(2)]] })),
        )
        .await;
    assert_error(&r, 409, "upload_closed");
    assert_eq!(members(&app).await, 1);
}

/// The eligible index sees a change made through this partner at once,
/// and one made by another process (here a second connection pool on the
/// same database, whose writes this partner does not count) within its
/// poll; the poll runs while batches come, without one.
#[tokio::test]
async fn the_index_follows_this_partners_changes_at_once_and_others_by_its_poll() {
    let app = spawn_app().await;
    let adv = advertiser(&app, "Shop").await;
    for a in ["built", "local", "other"] {
        create(&app, &adv, a).await;
    }
    user(&app, 1, true, None).await;
    upload(&app, &adv, "built", &[vec![pid(1)]], 1).await;
    assert_eq!(members(&app).await, 1);

    // Through this partner: matched by the very next batch.
    user(&app, 2, true, None).await;
    upload(&app, &adv, "local", &[vec![pid(2)]], 1).await;
    assert_eq!(members(&app).await, 2, "a local change is seen at once");

    // Another process grants `ads` for 3.
    let other =
        accord_storage::Db::connect(&format!("sqlite://{}?mode=rw", app.db_path().display()))
            .await
            .unwrap();
    let other = accord_storage::partner::SqlPartnerStore::new(other)
        .await
        .unwrap();
    use accord_storage::partner::PartnerStore;
    let refreshes = app.service.eligible_index_stats().unwrap().refreshes;
    other
        .apply_event(
            &IncomingEvent {
                event_id: 1,
                pseudonym: accord_domain::PseudonymId::from_hex(&pid(3)).unwrap(),
                key_version: 1,
                purposes: [Purpose::Ads].into_iter().collect(),
                devices: vec![],
                citations: BTreeMap::new(),
            },
            app.service.now(),
        )
        .await
        .unwrap();
    // No batch comes; the poll takes the marks meanwhile.
    tokio::time::sleep(accord_partner::eligible::POLL * 4).await;
    let after = app.service.eligible_index_stats().unwrap();
    assert!(
        after.refreshes > refreshes,
        "the poll refreshed the index ({} then {})",
        refreshes,
        after.refreshes
    );
    upload(&app, &adv, "other", &[vec![pid(3)]], 1).await;
    assert_eq!(
        members(&app).await,
        3,
        "another process's change, by the poll"
    );
}
