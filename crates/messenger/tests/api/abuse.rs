//! Abuse of registration, tried as an attacker would: codes guessed in
//! parallel, one code used twice at once, and codes requested for many
//! numbers from one client, one number range or in all (SMS pumping).

use crate::helpers::{assert_error, device_info, phone, spawn_app, AppOptions, Body, TestApp};
use crate::logs::captured_log;
use accord_messenger::MessengerConfig;
use accord_storage::MessengerStore;
use reqwest::Method;
use serde_json::json;

async fn start_from(app: &TestApp, phone: &str, client: Option<&str>) -> crate::helpers::Resp {
    let mut req = app
        .http
        .post(format!("{}/v1/registrations", app.base_url))
        .json(&json!({ "phone": phone }));
    if let Some(c) = client {
        req = req.header("x-forwarded-for", c);
    }
    let r = req.send().await.expect("the messenger answers");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.json().await.expect("a JSON body");
    crate::helpers::Resp {
        status,
        headers,
        body,
    }
}

fn started(r: &crate::helpers::Resp) -> (String, String) {
    assert_eq!(r.status, 202, "{}", r.body);
    (
        r.body["registration_id"].as_str().unwrap().to_owned(),
        r.body["dev_code"].as_str().unwrap().to_owned(),
    )
}

/// Verifies of registration `id`, one per code, sent at the same instant:
/// every request is written on its own connection but for its last byte,
/// then the last bytes go out together, so that the server handles them
/// concurrently (through a client library they arrive one by one, as
/// each connection is set up). Returns each answer's status and code.
async fn verify_all(app: &TestApp, id: &str, codes: Vec<String>) -> Vec<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base_url.trim_start_matches("http://").to_owned();
    let mut conns = Vec::new();
    for code in codes {
        let body = json!({ "code": code, "device": device_info() }).to_string();
        let req = format!(
            "POST /v1/registrations/{id}/verify HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let bytes = req.into_bytes();
        s.write_all(&bytes[..bytes.len() - 1]).await.unwrap();
        conns.push((s, bytes[bytes.len() - 1]));
    }
    let mut reads = Vec::new();
    for (mut s, last) in conns {
        s.write_all(&[last]).await.unwrap();
        reads.push(tokio::spawn(async move {
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            String::from_utf8(out).unwrap()
        }));
    }
    let mut answers = Vec::new();
    for r in reads {
        let text = r.await.unwrap();
        let status: u16 = text[9..12].parse().unwrap();
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        answers.push((status, v["code"].as_str().unwrap_or("").to_owned()));
    }
    answers
}

fn compared(registration: &str) -> usize {
    let log = String::from_utf8_lossy(&captured_log().lock().unwrap()).into_owned();
    log.lines()
        .filter(|l| l.contains("verification code compared") && l.contains(registration))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_parallel_guesses_compare_at_most_five_codes() {
    captured_log();
    let app = spawn_app(AppOptions::default()).await;
    for round in 0..3u16 {
        let (id, code) = started(&start_from(&app, &phone(100 + round), None).await);
        // The right code hidden among 39 wrong ones, sent at once.
        let mut codes: Vec<String> = (0..39)
            .map(|i| format!("{:06}", (code.parse::<u32>().unwrap() + 1 + i) % 1_000_000))
            .collect();
        codes.insert(20, code.clone());
        let answers = verify_all(&app, &id, codes).await;
        assert!(compared(&id) <= 5, "{} codes compared", compared(&id));
        let wrong = answers.iter().filter(|(_, c)| c == "wrong_code").count();
        let ok = answers.iter().filter(|(s, _)| *s == 201).count();
        assert!(wrong + ok <= 5, "{answers:?}");
        assert!(ok <= 1, "{answers:?}");
        for (s, c) in &answers {
            assert!(
                *s == 201
                    || c == "wrong_code"
                    || c == "too_many_attempts"
                    || c == "verification_expired",
                "{s} {c}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_code_used_twice_at_once_registers_one_device() {
    let app = spawn_app(AppOptions::default()).await;
    let (id, code) = started(&start_from(&app, &phone(120), None).await);
    let answers = verify_all(&app, &id, vec![code; 10]).await;
    let ok: Vec<_> = answers.iter().filter(|(s, _)| *s == 201).collect();
    assert_eq!(ok.len(), 1, "{answers:?}");
    let account = app
        .store
        .account_by_phone(&accord_domain::PhoneNumber::parse(&phone(120), None).unwrap())
        .await
        .unwrap()
        .expect("the account");
    assert_eq!(app.store.devices(account.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn one_client_cannot_request_codes_for_many_numbers() {
    let app = spawn_app(AppOptions {
        messenger: MessengerConfig::default(),
        ..Default::default()
    })
    .await;
    let mut sent = 0;
    for n in 0..20 {
        let r = start_from(&app, &phone(200 + n), None).await;
        if r.status == 202 {
            sent += 1;
        } else {
            assert_error(&r, 429, "rate_limited");
            assert_eq!(r.headers["retry-after"], "3600");
        }
    }
    assert_eq!(sent, MessengerConfig::default().codes_per_client_per_hour);
}

#[tokio::test]
async fn ranges_and_the_hourly_budget_hold_across_clients_behind_a_trusted_proxy() {
    let app = spawn_app(AppOptions {
        messenger: MessengerConfig {
            codes_per_range_per_hour: 3,
            codes_per_hour_total: 5,
            ..MessengerConfig::default()
        },
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..Default::default()
    })
    .await;
    // Each request from another client (as the proxy says): only the range
    // and the budget can stop them. +62 812 is one range.
    let mut answers = Vec::new();
    for n in 0..4 {
        let client = format!("203.0.113.{n}");
        answers.push(
            start_from(&app, &phone(300 + n), Some(&client))
                .await
                .status,
        );
    }
    assert_eq!(answers, [202, 202, 202, 429]);
    // Another range is still open, until the hourly budget (5) is spent.
    let de = ["+49 30 901820", "+49 30 901821", "+49 30 901822"];
    let mut answers = Vec::new();
    for (n, number) in de.iter().enumerate() {
        let client = format!("198.51.100.{n}");
        answers.push(start_from(&app, number, Some(&client)).await.status);
    }
    assert_eq!(answers, [202, 429, 429]);
    // A forwarded address is believed only from the trusted proxy: from
    // an untrusted peer the header changes nothing (tested in accord-http).
}

#[tokio::test]
async fn a_code_whose_registration_failed_can_be_used_again() {
    let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let app = spawn_app(AppOptions {
        with_keyd: true,
        keyd_down: Some(down.clone()),
        ..Default::default()
    })
    .await;
    let (id, code) = started(&start_from(&app, &phone(400), None).await);
    let r = app
        .send(
            Method::POST,
            &format!("/v1/registrations/{id}/verify"),
            None,
            Body::Json(json!({ "code": code, "device": device_info() })),
        )
        .await;
    assert_error(&r, 502, "key_service_unavailable");
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    let r = app
        .send(
            Method::POST,
            &format!("/v1/registrations/{id}/verify"),
            None,
            Body::Json(json!({ "code": code, "device": device_info() })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}
