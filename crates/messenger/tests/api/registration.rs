//! Registration by phone number: codes, attempts, expiry, rate limits,
//! number formats, and acceptance of the policy in force.

use crate::helpers::{
    assert_api_error, assert_error, device_info, grants, phone, spawn_app, AppOptions, Body,
    TestApp, T0,
};
use accord_domain::time::MINUTE_MS;
use accord_domain::Purpose;
use reqwest::Method;
use serde_json::json;

fn wrong(code: &str) -> &'static str {
    if code == "000000" {
        "000001"
    } else {
        "000000"
    }
}

async fn start(app: &TestApp, phone: &str, region: Option<&str>) -> crate::helpers::Resp {
    app.send(
        Method::POST,
        "/v1/registrations",
        None,
        Body::Json(json!({ "phone": phone, "region": region })),
    )
    .await
}

async fn verify(app: &TestApp, id: &str, code: &str) -> crate::helpers::Resp {
    app.send(
        Method::POST,
        &format!("/v1/registrations/{id}/verify"),
        None,
        Body::Json(json!({ "code": code, "device": device_info() })),
    )
    .await
}

fn id_and_code(r: &crate::helpers::Resp) -> (String, String) {
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["registration_id"]
        .as_str()
        .expect("registration id")
        .to_owned();
    let code = r.body["dev_code"].as_str().expect("dev code").to_owned();
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );
    (id, code)
}

#[tokio::test]
async fn verifying_creates_an_account_and_a_second_verification_adds_a_device() {
    let app = spawn_app(AppOptions::default()).await;
    let number = phone(101);

    let r = start(&app, &number, None).await;
    let (id, code) = id_and_code(&r);
    assert_eq!(r.body["expires_at"], json!(T0.0 + 10 * MINUTE_MS));
    let first = verify(&app, &id, &code).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.body["new_account"], json!(true));
    let account = first.body["account_id"].as_str().unwrap().to_owned();
    let token1 = first.body["token"].as_str().unwrap().to_owned();
    assert!(token1.starts_with("acc_"));

    // A code is good for one device only.
    let again = verify(&app, &id, &code).await;
    assert_error(&again, 410, "verification_expired");

    let (id2, code2) = id_and_code(&start(&app, &number, None).await);
    let second = verify(&app, &id2, &code2).await;
    assert_eq!(second.status, 201, "{}", second.body);
    assert_eq!(second.body["new_account"], json!(false));
    assert_eq!(second.body["account_id"].as_str(), Some(account.as_str()));
    let token2 = second.body["token"].as_str().unwrap().to_owned();
    assert_ne!(token1, token2);
    assert_ne!(first.body["device_id"], second.body["device_id"]);

    for (token, device) in [
        (&token1, &first.body["device_id"]),
        (&token2, &second.body["device_id"]),
    ] {
        let me = app.client_with(token).me().await.expect("/v1/me");
        assert_eq!(me["devices"], json!(2));
        assert_eq!(me["account_id"].as_str(), Some(account.as_str()));
        assert_eq!(&me["device_id"], device);
    }
    // Only the account's registration is a consent fact; a device is not.
    assert_eq!(app.ledger_entries().await, 1);
}

#[tokio::test]
async fn wrong_codes_count_down_and_the_fifth_voids_the_verification() {
    let app = spawn_app(AppOptions::default()).await;
    let (id, code) = id_and_code(&start(&app, &phone(102), None).await);

    for left in (1..=4).rev() {
        let r = verify(&app, &id, wrong(&code)).await;
        assert_error(&r, 400, "wrong_code");
        assert_eq!(r.body["details"]["attempts_left"], json!(left));
    }
    let fifth = verify(&app, &id, wrong(&code)).await;
    assert_error(&fifth, 429, "too_many_attempts");

    let right = verify(&app, &id, &code).await;
    assert!(
        right.status == 410 || right.status == 429,
        "the right code still works: {right:?}"
    );
    assert!(right.body["code"].is_string() && right.body["message"].is_string());
    assert_eq!(app.ledger_entries().await, 0, "no account was created");
}

#[tokio::test]
async fn codes_expire_after_ten_minutes() {
    let app = spawn_app(AppOptions::default()).await;
    let (late_id, late_code) = id_and_code(&start(&app, &phone(103), None).await);
    let (ok_id, ok_code) = id_and_code(&start(&app, &phone(104), None).await);

    app.advance(0, 0, 9 * 60).await;
    let ok = verify(&app, &ok_id, &ok_code).await;
    assert_eq!(ok.status, 201, "a 9-minute-old code works: {}", ok.body);

    app.advance(0, 0, 2 * 60).await;
    assert_error(
        &verify(&app, &late_id, &late_code).await,
        410,
        "verification_expired",
    );
    assert_eq!(app.ledger_entries().await, 1);
}

#[tokio::test]
async fn a_sixth_code_within_an_hour_is_rate_limited() {
    let app = spawn_app(AppOptions::default()).await;
    let number = phone(105);
    for _ in 0..5 {
        id_and_code(&start(&app, &number, None).await);
    }
    let sixth = start(&app, &number, None).await;
    assert_error(&sixth, 429, "rate_limited");
    let retry: u64 = sixth
        .headers
        .get("retry-after")
        .expect("Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=3600).contains(&retry), "{retry}");

    // Another number is not affected; the same number is, in another format.
    id_and_code(&start(&app, &phone(106), None).await);
    assert_error(
        &start(&app, "0812-3456-7105", Some("ID")).await,
        429,
        "rate_limited",
    );

    app.advance(0, 1, 1).await;
    id_and_code(&start(&app, &number, None).await);
}

/// Codes requested within one hour count toward the limit even when the
/// earlier ones have expired in the meantime (or were used up).
#[tokio::test]
async fn the_rate_limit_counts_codes_that_expired_within_the_hour() {
    let app = spawn_app(AppOptions::default()).await;
    let number = phone(107);
    for _ in 0..5 {
        id_and_code(&start(&app, &number, None).await);
        app.advance(0, 0, 11 * 60).await;
    }
    // 55 minutes after the first code: this is the sixth within the hour.
    let sixth = start(&app, &number, None).await;
    assert_error(&sixth, 429, "rate_limited");
}

#[tokio::test]
async fn national_format_with_a_region_is_the_same_number() {
    let app = spawn_app(AppOptions::default()).await;
    let r = app
        .anon()
        .start_registration("0812-3456-7890", Some("ID"))
        .await
        .expect("national format");
    let reg = app
        .anon()
        .verify_registration(
            r.registration_id,
            &r.dev_code.unwrap(),
            &device_info(),
            None,
        )
        .await
        .expect("verify");
    assert!(reg.new_account);
    let export = app.client_with(&reg.token).export().await.expect("export");
    assert_eq!(export["phone_number"], json!("+6281234567890"));

    let again = app.register_device("+62 812-3456-7890", None).await;
    assert!(!again.reg.new_account);
    assert_eq!(again.reg.account_id, reg.account_id);
}

#[tokio::test]
async fn invalid_numbers_are_refused() {
    let app = spawn_app(AppOptions::default()).await;
    let long = "9".repeat(100);
    let cases: [(&str, Option<&str>); 8] = [
        ("+1 123 456 7890", None),
        ("0812", Some("ID")),
        ("hello", Some("ID")),
        ("0812-3456-7890", None),
        ("0812-3456-7890", Some("XX")),
        ("   ", Some("ID")),
        ("+62 812 3456 7890 ext. 12; DROP TABLE accounts", None),
        (&long, Some("DE")),
    ];
    for (raw, region) in cases {
        assert_error(&start(&app, raw, region).await, 400, "invalid_phone");
    }
    assert_eq!(app.ledger_entries().await, 0);
}

#[tokio::test]
async fn after_a_policy_is_published_registration_needs_acceptance() {
    let app = spawn_app(AppOptions::default()).await;
    let policy = app
        .publish(
            accord_domain::ConsentProfile::Strict,
            &[Purpose::Ads, Purpose::Product],
        )
        .await;
    let anon = app.anon();
    let started = anon.start_registration(&phone(108), None).await.unwrap();
    let code = started.dev_code.unwrap();

    let refused = anon
        .verify_registration(started.registration_id, &code, &device_info(), None)
        .await;
    let details = assert_api_error(refused, 403, "policy_acceptance_required");
    assert_eq!(details.expect("details")["version"], json!(1));
    assert_eq!(app.ledger_entries().await, 1, "only the publication");

    // The refusal did not use up the code: accept and retry.
    let choice = grants(&[Purpose::Product]);
    let reg = anon
        .verify_registration(
            started.registration_id,
            &code,
            &device_info(),
            Some((policy.version, &choice)),
        )
        .await
        .expect("registration with acceptance");
    assert!(reg.new_account);
    let consent = app.client_with(&reg.token).consent().await.unwrap();
    let accepted = consent.state.accepted.expect("accepted");
    assert_eq!(accepted.version, 1);
    assert_eq!(accepted.text_sha256, policy.text_sha256);
    assert_eq!(consent.granted_now, vec![Purpose::Product]);
    assert_eq!(consent.pending_policy, None);
    assert_eq!(consent.account_id, reg.account_id);
    // registered, accepted, ads refused, product granted
    assert_eq!(app.ledger_entries().await, 1 + 4);
}
