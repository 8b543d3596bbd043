//! Abuse resistance (issue #11): the partner is not an open pseudonym
//! oracle. Sign-up needs a verified number (one user per number), is
//! limited per client address and in all per rolling day, and every
//! user's blinded evaluations are charged to its own quota, atomically.
//! Device records that hold an identifier are refused at ingest.

use crate::helpers::{assert_error, spawn_app, spawn_app_with, CountingOprf, Options, T0};
use accord_domain::Purpose;
use accord_partner::PartnerConfig;
use reqwest::Method;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// How many numbers an attacker can map in a day from one address, with
/// as many verified numbers as the limits let it use.
fn per_day_from_one_address(c: &PartnerConfig) -> u64 {
    c.signups_per_address.min(c.signups_per_day) * c.user_oprf_quota
}

#[tokio::test]
async fn an_attacker_with_many_fresh_sign_ups_from_one_address_gets_no_more_than_the_budget() {
    // Small limits, so that the test reaches them: 3 sign-ups per address
    // and day, 5 evaluations per user and day.
    let config = PartnerConfig {
        user_oprf_quota: 5,
        signups_per_address: 3,
        ..PartnerConfig::default()
    };
    let oprf = Arc::new(CountingOprf::default());
    let app = spawn_app_with(Options {
        config: config.clone(),
        oprf: Some(oprf.clone()),
        keyd_daily: 0,
        ..Options::default()
    })
    .await;

    // The old open door: a user for anyone who asks, no verification.
    let r = app
        .send(
            Method::POST,
            "/v1/partner/users",
            None,
            Some(json!({ "name": "anyone" })),
        )
        .await;
    assert_eq!(r.status, 404, "unverified sign-up is gone: {}", r.body);

    let mut tokens = Vec::new();
    let mut refused = 0;
    for i in 0..10 {
        let started = app.start_registration(&app.fresh_number()).await;
        if started.status == 429 {
            assert_error(&started, 429, "rate_limited");
            refused += 1;
            continue;
        }
        assert_eq!(started.status, 201, "{}", started.body);
        let code = started.body["dev_code"].as_str().unwrap().to_owned();
        let r = app.verify(&started.body, &code, &format!("sock {i}")).await;
        assert_eq!(r.status, 201, "{}", r.body);
        tokens.push(r.body["token"].as_str().unwrap().to_owned());
    }
    assert_eq!((tokens.len(), refused), (3, 7));
    // Each evaluates as much as it can: a full batch, then one at a time.
    let mut granted = 0u64;
    for t in &tokens {
        for n in [1000, 4, 1, 1, 1] {
            let r = app.evaluate(t, n).await;
            if r.status == 200 {
                granted += n as u64;
            } else {
                assert_error(&r, 429, "quota_exceeded");
            }
        }
    }
    let forwarded = oprf.evaluated.load(Ordering::SeqCst);
    assert_eq!(granted, forwarded);
    assert_eq!(forwarded, per_day_from_one_address(&config), "3 users × 5");

    let d = PartnerConfig::default();
    let before: u64 = 10_000_000;
    let after = per_day_from_one_address(&d);
    eprintln!(
        "numbers an attacker could map per day from one address: before {before} \
         (the partner's whole key-service quota, through any unverified sign-up); \
         after {after} ({} verified sign-ups × {} evaluations), and at most {} per \
         verified number; all partner users together: {} sign-ups a day × {}",
        d.signups_per_address,
        d.user_oprf_quota,
        d.user_oprf_quota,
        d.signups_per_day,
        d.user_oprf_quota,
    );
    assert!(after * 100 < before);
}

#[tokio::test]
async fn a_user_quota_holds_under_parallel_requests_and_is_shared_by_a_persons_tokens() {
    let oprf = Arc::new(CountingOprf::default());
    let app = spawn_app_with(Options {
        config: PartnerConfig {
            user_oprf_quota: 10,
            ..PartnerConfig::default()
        },
        oprf: Some(oprf.clone()),
        keyd_daily: 0,
        ..Options::default()
    })
    .await;
    let phone = app.fresh_number();
    let (id, token) = app.sign_up_with("alice", &phone).await;
    let requests: Vec<_> = (0..25)
        .map(|_| {
            let (http, url, token) = (app.http.clone(), app.base_url.clone(), token.clone());
            tokio::spawn(async move {
                let element = accord_crypto::oprf::BlindedElementBytes([7; 32]).to_base64();
                http.post(format!("{url}/v1/oprf/coordination/evaluate"))
                    .bearer_auth(token)
                    .json(&json!({ "elements": [element] }))
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ok = 0;
    for r in requests {
        let r = r.await.unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            429 => {
                let retry: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry > 0 && retry <= 86_400);
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["code"], "quota_exceeded", "{body}");
                assert_eq!(body["details"]["quota"], 10);
            }
            s => panic!("status {s}"),
        }
    }
    assert_eq!(ok, 10, "exactly the quota, however many ask at once");
    assert_eq!(oprf.evaluated.load(Ordering::SeqCst), 10);
    // The same number again: a new token of the same user, the same quota.
    let (again, second) = app.sign_up_with("alice's tablet", &phone).await;
    assert_eq!(again, id);
    assert_ne!(second, token);
    assert_error(&app.evaluate(&second, 1).await, 429, "quota_exceeded");
    let me = app
        .send(Method::GET, "/v1/partner/me", Some(&second), None)
        .await;
    assert_eq!(me.body["name"], "alice");
    // A day later the window is empty again.
    app.clock.advance_millis(24 * 3_600_000);
    assert_eq!(app.evaluate(&second, 10).await.status, 200);
    assert_error(&app.evaluate(&token, 1).await, 429, "quota_exceeded");
}

#[tokio::test]
async fn codes_allow_few_attempts_even_in_parallel_and_sign_ups_have_a_daily_budget() {
    let app = spawn_app_with(Options {
        config: PartnerConfig {
            signups_per_day: 3,
            codes_per_number: 2,
            ..PartnerConfig::default()
        },
        ..Options::default()
    })
    .await;
    let phone = app.fresh_number();
    let started = app.start_registration(&phone).await;
    assert_eq!(started.status, 201, "{}", started.body);
    let code = started.body["dev_code"].as_str().unwrap().to_owned();
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let id = started.body["registration_id"].as_str().unwrap().to_owned();
    let guesses: Vec<_> = (0..12)
        .map(|_| {
            let (http, url, id) = (app.http.clone(), app.base_url.clone(), id.clone());
            tokio::spawn(async move {
                let r = http
                    .post(format!("{url}/v1/partner/registrations/{id}/verify"))
                    .json(&json!({ "code": wrong, "name": "mallory" }))
                    .send()
                    .await
                    .unwrap();
                let body: serde_json::Value = r.json().await.unwrap();
                body["code"].as_str().unwrap().to_owned()
            })
        })
        .collect();
    let mut wrong_codes = 0;
    for g in guesses {
        let code = g.await.unwrap();
        if code == "wrong_code" {
            wrong_codes += 1;
        } else {
            assert!(
                ["too_many_attempts", "verification_expired"].contains(&code.as_str()),
                "{code}"
            );
        }
    }
    assert_eq!(wrong_codes, 4, "the fifth attempt voids the code");
    let r = app.verify(&started.body, &code, "mallory").await;
    assert_eq!(r.status, 410, "{}", r.body);
    // Codes per number.
    assert_eq!(app.start_registration(&phone).await.status, 201);
    assert_error(&app.start_registration(&phone).await, 429, "rate_limited");
    // The global budget: 3 sign-ups a day were asked for (the number's
    // third was refused before it counted), one more is refused.
    assert_eq!(
        app.start_registration(&app.fresh_number()).await.status,
        201
    );
    let r = app.start_registration(&app.fresh_number()).await;
    assert_error(&r, 429, "rate_limited");
    assert!(
        r.body["message"].as_str().unwrap().contains("today"),
        "{}",
        r.body
    );
    // Bad numbers are refused before anything counts.
    assert_error(
        &app.start_registration("not a number").await,
        400,
        "invalid_phone",
    );
}

#[tokio::test]
async fn the_key_service_quota_is_sized_from_the_user_count_and_alerts_at_80_percent() {
    let oprf = Arc::new(CountingOprf::default());
    let app = spawn_app_with(Options {
        config: PartnerConfig {
            user_oprf_quota: 100,
            ..PartnerConfig::default()
        },
        oprf: Some(oprf),
        keyd_daily: 10,
        ..Options::default()
    })
    .await;
    let (_, token) = app.sign_up("alice", None).await;
    let c = &app.service.config;
    assert_eq!(c.keyd_quota_for(1), (1 + 100) * c.user_oprf_quota);
    assert_eq!(c.keyd_quota_for(10_000), 12_500 * c.user_oprf_quota);
    let gauge = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("accord_{name}{{")))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_owned()
    };
    assert_eq!(app.evaluate(&token, 7).await.status, 200);
    let (_, text) = accord_http::testing::scrape(&app.base_url, Some(&app.admin_token)).await;
    assert_eq!(gauge(&text, "partner_keyd_quota_alert"), "0");
    assert_eq!(gauge(&text, "partner_keyd_used_elements"), "7");
    assert_eq!(gauge(&text, "partner_keyd_quota_elements"), "10");
    assert_eq!(
        gauge(&text, "partner_keyd_needed_elements"),
        c.keyd_quota_for(1).to_string()
    );
    assert_eq!(app.evaluate(&token, 1).await.status, 200);
    let (_, text) = accord_http::testing::scrape(&app.base_url, Some(&app.admin_token)).await;
    assert_eq!(
        gauge(&text, "partner_keyd_quota_alert"),
        "1",
        "8 of 10 is 80%"
    );
    assert!(app.service.keyd_budget().await.unwrap().alert);
}

#[tokio::test]
async fn a_feed_record_with_a_phone_number_as_device_information_is_refused() {
    let app = spawn_app().await;
    let device = |model: &str| json!({ "os": "android", "os_version": "15", "model": model, "app_version": "2.26.1", "locale": "id-ID" });
    let p = |b: u8| hex::encode([b; 32]);
    let mut log = accord_domain::transparency::testing::TestLog::new(crate::helpers::LOG_SEED, 0);
    let (cites, checkpoint) = log.grants(&[Purpose::Product, Purpose::Ads]);
    let batch = json!({ "events": [
        { "event_id": 1, "pseudonym": p(1), "key_version": 1, "purposes": ["product"],
          "devices": [device("+62 812-3456-7890"), device("Pixel 8")], "citations": [cites[0]], "reason": "registered" },
        { "event_id": 2, "pseudonym": p(2), "key_version": 1, "purposes": ["ads"],
          "devices": [{ "os": "android", "os_version": "6281234567890", "model": "x", "app_version": "1", "locale": "en" }],
          "citations": [cites[1]], "reason": "registered" },
    ], "checkpoints": [checkpoint]});
    let body = serde_json::to_vec(&batch).unwrap();
    let ts = T0.0;
    let nonce = accord_crypto::mac::nonce();
    let sig = accord_crypto::mac::sign(
        b"feed secret of this test",
        &accord_crypto::mac::SignedRequest {
            method: "POST",
            path: "/v1/feed/ingest",
            timestamp_ms: ts,
            nonce: &nonce,
            body: &body,
        },
    );
    let r = app
        .http
        .post(format!("{}/v1/feed/ingest", app.base_url))
        .header(accord_crypto::mac::SIGNATURE_HEADER, sig)
        .header(accord_crypto::mac::TIMESTAMP_HEADER, ts.to_string())
        .header(accord_crypto::mac::NONCE_HEADER, nonce)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (pseudonym, purpose, models) in [(p(1), "product", vec!["Pixel 8"]), (p(2), "ads", vec![])]
    {
        let r = app
            .send(
                Method::GET,
                &format!("/v1/admin/partner/records/{pseudonym}?purpose={purpose}"),
                Some(&app.admin_token),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let held: Vec<&str> = r.body["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["model"].as_str().unwrap())
            .collect();
        assert_eq!(held, models, "the record with a number was refused");
    }
    assert_eq!(app.service.refused_device_records(), 2);
    let (_, text) = accord_http::testing::scrape(&app.base_url, Some(&app.admin_token)).await;
    assert!(
        text.contains(r#"accord_partner_refused_device_records{service="partner"} 2"#),
        "{text}"
    );
}
