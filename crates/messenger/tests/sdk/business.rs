//! Business messaging through the SDK against the real messenger: a
//! business's device encrypts with `Device::send_business` and the
//! business API admits or refuses; users' devices receive, render the
//! signed template, and set their controls. Covers each refusal code,
//! opt-in, mute, block and report, forged content shown as unverified,
//! red quality pausing marketing while utility flows, tier promotion,
//! and the webhook outbox (signature, retry across a server restart,
//! deduplication by event id).

use super::server::Server;
use super::{device, Dev};
use accord_client::messaging::{
    Event, ListenOptions, Plaintext, PlaintextKind, Recipient, Rendered, Transport,
};
use accord_client::Client;
use accord_domain::business::{Category, Quality, QualityRules, TierRules};
use accord_domain::{AccountId, SimulatedClock, Timestamp};
use accord_e2e::{BusinessMeta, ClientMessageId, TemplateRef};
use accord_messenger::business::BusinessConfig;
use accord_messenger_wire::{ApiKeyCreated, BusinessStatus, TemplateView, WebhookCreated};
use reqwest::Method;
use serde_json::{json, Value};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn rules() -> BusinessConfig {
    BusinessConfig {
        quality: QualityRules {
            min_sample: 4,
            yellow_ratio: 0.1,
            red_ratio: 0.3,
        },
        tiers: TierRules {
            limits: vec![Some(2), Some(4), None],
            promote_share: 0.5,
            min_dwell_ms: 0,
        },
        ..BusinessConfig::default()
    }
}

struct Biz {
    dev: Dev,
    api: Client,
    key: String,
    account: AccountId,
}

async fn business(server: &Server, phone: &str, name: &str) -> Biz {
    let dev = device(server, phone).await;
    let key: ApiKeyCreated = dev
        .client
        .request(
            Method::POST,
            "/v1/business",
            Some(&json!({ "display_name": name })),
        )
        .await
        .unwrap();
    assert!(key.api_key.starts_with("acb_"));
    Biz {
        account: dev.device.account_id(),
        api: Client::new(&server.base).with_token(&key.api_key),
        key: key.api_key,
        dev,
    }
}

async fn approved(server: &Server, b: &Biz, name: &str, category: &str, body: &str) -> u32 {
    let t: TemplateView = b
        .api
        .request(
            Method::POST,
            "/v1/business/templates",
            Some(&json!({"name": name, "language": "en", "category": category, "body": body})),
        )
        .await
        .unwrap();
    assert_eq!(t.status, "pending");
    let queue: Vec<TemplateView> = server
        .admin
        .request(Method::GET, "/v1/admin/templates?status=pending", None)
        .await
        .unwrap();
    assert!(queue.iter().any(|q| q.id == t.id));
    review(server, &t, "approve").await;
    t.version
}

async fn review(server: &Server, t: &TemplateView, decision: &str) {
    let r: TemplateView = server
        .admin
        .request(
            Method::POST,
            &format!("/v1/admin/templates/{}/review", t.id),
            Some(&json!({ "decision": decision })),
        )
        .await
        .unwrap();
    assert_ne!(r.status, "pending");
}

fn meta(category: Category, name: &str, version: u32) -> BusinessMeta {
    BusinessMeta {
        category,
        template: Some(TemplateRef {
            name: name.into(),
            language: "en".into(),
            version,
        }),
    }
}

fn template(params: &[&str]) -> Plaintext {
    Plaintext {
        client_message_id: ClientMessageId::random(),
        sent_at: Timestamp(0),
        kind: PlaintextKind::Template {
            params: params.iter().map(|p| (*p).to_owned()).collect(),
        },
    }
}

fn text(body: &str) -> Plaintext {
    Plaintext::text(ClientMessageId::random(), Timestamp(0), body)
}

/// Sends as the business; the refusal's code, if refused.
async fn send(b: &mut Biz, to: AccountId, m: &BusinessMeta, p: &Plaintext) -> Result<(), String> {
    match b
        .dev
        .device
        .send_business(&b.dev.client, &b.api, &Recipient::Account(to), m, p)
        .await
    {
        Ok(_) => Ok(()),
        Err(accord_client::messaging::MessagingError::Client(e)) => {
            Err(e.code().unwrap_or("no code").to_owned())
        }
        Err(e) => Err(format!("{e:?}")),
    }
}

async fn controls(u: &Dev, b: AccountId, body: Value) {
    let _: Value = u
        .client
        .request(Method::PUT, &format!("/v1/me/businesses/{b}"), Some(&body))
        .await
        .unwrap();
}

/// The business messages `u` receives, rendered, until `n` or 10 s.
async fn rendered(u: &mut Dev, n: usize) -> Vec<(u64, Rendered, Option<String>)> {
    let mut got = Vec::new();
    let opts = ListenOptions {
        timeout: Some(Duration::from_secs(10)),
        transport: Transport::Auto,
    };
    u.device
        .listen(&u.client, opts, |e| {
            if let Event::Message {
                envelope_id,
                from,
                plaintext,
                business: Some(meta),
                ..
            } = e
            {
                got.push((envelope_id, from.account, meta, plaintext));
            }
            if got.len() >= n {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    for (id, from, meta, p) in got {
        let m = u
            .device
            .render_business(&u.client, from, &meta, &p)
            .await
            .unwrap();
        out.push((id.0, m.rendered, m.verified_name));
    }
    out
}

async fn status(b: &Biz) -> BusinessStatus {
    b.api
        .request(Method::GET, "/v1/business/status", None)
        .await
        .unwrap()
}

#[tokio::test]
async fn templates_opt_ins_refusals_quality_and_tiers_end_to_end() {
    let server = Server::start_with(
        tempfile::tempdir().unwrap(),
        Arc::new(accord_domain::SystemClock),
        rules(),
    )
    .await
    .unwrap();
    let mut shop = business(&server, "+6281300000001", "<script>alert(1)</script> Toko").await;
    let b = shop.account;
    let receipt = approved(
        &server,
        &shop,
        "order_receipt",
        "utility",
        "Order {{1}} paid: {{2}}",
    )
    .await;
    let promo = approved(&server, &shop, "promo", "marketing", "Sale: {{1}}").await;
    let mut u1 = device(&server, "+6281300000002").await;
    let u2 = device(&server, "+6281300000003").await;
    let mut u3 = device(&server, "+6281300000004").await;
    let mut u4 = device(&server, "+6281300000005").await;
    let (a1, a2, a3, a4) = (
        u1.device.account_id(),
        u2.device.account_id(),
        u3.device.account_id(),
        u4.device.account_id(),
    );

    // Nobody opted in: the business cannot even resolve the number, and
    // a user and a non-user look alike.
    for phone in ["+6281300000002", "+6281399999999"] {
        let e = shop
            .api
            .request_raw(
                Method::POST,
                "/v1/business/claim",
                Some(&json!({ "phone": phone })),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("unknown_recipient"));
    }
    // A business device cannot go around the business API.
    let e = shop
        .dev
        .device
        .send_text(&shop.dev.client, &Recipient::Account(a1), "hi")
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("use_business_api"), "{e:?}");

    // Opted in: a utility template arrives and renders, without a name
    // while the business is unverified.
    controls(&u1, b, json!({ "opted_in": true })).await;
    let utility = meta(Category::Utility, "order_receipt", receipt);
    send(&mut shop, a1, &utility, &template(&["A-17", "Rp 50.000"]))
        .await
        .unwrap();
    let got = rendered(&mut u1, 1).await;
    assert_eq!(
        got[0].1,
        Rendered::Verified {
            text: "Order A-17 paid: Rp 50.000".into()
        }
    );
    assert_eq!(
        got[0].2, None,
        "an unverified business's name is never shown"
    );
    let _: Value = server
        .admin
        .request(
            Method::PUT,
            &format!("/v1/admin/businesses/{b}/verified"),
            Some(&json!({"value": true})),
        )
        .await
        .unwrap_or(Value::Null);
    send(&mut shop, a1, &utility, &template(&["A-18", "Rp 1"]))
        .await
        .unwrap();
    let got = rendered(&mut u1, 1).await;
    assert_eq!(got[0].2.as_deref(), Some("<script>alert(1)</script> Toko"));

    // Forged content: a receipt announced, three parameters or free text
    // sent. The server cannot tell; the client shows it unverified.
    send(
        &mut shop,
        a1,
        &utility,
        &template(&["A-19", "Rp 2", "BIG SALE"]),
    )
    .await
    .unwrap();
    send(&mut shop, a1, &utility, &text("BIG SALE! click here"))
        .await
        .unwrap();
    // Announced as utility, but the approved template is marketing.
    send(
        &mut shop,
        a1,
        &meta(Category::Utility, "promo", promo),
        &template(&["x"]),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    let got = rendered(&mut u1, 2).await;
    for (_, r, _) in &got {
        assert!(matches!(r, Rendered::Unverified { .. }), "{r:?}");
    }

    // Each refusal code.
    let marketing = meta(Category::Marketing, "promo", promo);
    assert_eq!(
        send(&mut shop, a1, &marketing, &template(&["50%"]))
            .await
            .unwrap_err(),
        "not_opted_in"
    );
    let service = BusinessMeta {
        category: Category::Service,
        template: None,
    };
    assert_eq!(
        send(&mut shop, a1, &service, &text("how can we help?"))
            .await
            .unwrap_err(),
        "outside_service_window"
    );
    assert_eq!(
        send(
            &mut shop,
            a1,
            &meta(Category::Utility, "order_receipt", 9),
            &template(&["a", "b"])
        )
        .await
        .unwrap_err(),
        "template_not_approved"
    );
    // The user writes: the service window opens.
    u1.device
        .send_text(&u1.client, &Recipient::Account(b), "where is my order?")
        .await
        .unwrap();
    send(&mut shop, a1, &service, &text("on its way"))
        .await
        .unwrap();
    controls(&u1, b, json!({ "marketing": true })).await;
    send(&mut shop, a1, &marketing, &template(&["50%"]))
        .await
        .unwrap();
    controls(&u1, b, json!({ "mute": ["marketing"] })).await;
    assert_eq!(
        send(&mut shop, a1, &marketing, &template(&["60%"]))
            .await
            .unwrap_err(),
        "muted_by_user"
    );
    controls(&u2, b, json!({ "opted_in": true, "blocked": true })).await;
    assert_eq!(
        send(&mut shop, a2, &utility, &template(&["B-1", "Rp 3"]))
            .await
            .unwrap_err(),
        "blocked_by_user"
    );

    // The tier: 2 unique users a day. u1 was the first; u3 the second; u4
    // is refused, then the business moves up and u4 gets it.
    controls(&u3, b, json!({ "opted_in": true })).await;
    controls(&u4, b, json!({ "opted_in": true })).await;
    send(&mut shop, a3, &utility, &template(&["C-1", "Rp 4"]))
        .await
        .unwrap();
    assert_eq!(
        send(&mut shop, a4, &utility, &template(&["D-1", "Rp 5"]))
            .await
            .unwrap_err(),
        "tier_limit_reached"
    );
    let s = status(&shop).await;
    assert_eq!((s.tier, s.tier_limit), (1, Some(4)), "{s:?}");
    assert!(s.tier_reason.contains("up from"), "{}", s.tier_reason);
    send(&mut shop, a4, &utility, &template(&["D-1", "Rp 5"]))
        .await
        .unwrap();

    // Quality: u1 reads and acks everything (deliveries), reports one
    // message; u2 blocked; u3 and u4 report. Red pauses marketing, not
    // utility.
    let got = rendered(&mut u1, 2).await;
    let reported = got[0].0;
    let _: Value = u1
        .client
        .request(
            Method::POST,
            "/v1/reports",
            Some(&json!({ "envelope_id": reported })),
        )
        .await
        .unwrap();
    for u in [&mut u3, &mut u4] {
        let got = rendered(u, 1).await;
        let _: Value = u
            .client
            .request(
                Method::POST,
                "/v1/reports",
                Some(&json!({ "envelope_id": got[0].0 })),
            )
            .await
            .unwrap();
    }
    let s = status(&shop).await;
    assert_eq!(s.quality, Quality::Red, "{s:?}");
    assert!(
        s.marketing_paused && s.quality_reason.contains("reports"),
        "{s:?}"
    );
    controls(&u1, b, json!({ "unmute": ["marketing"] })).await;
    assert_eq!(
        send(&mut shop, a1, &marketing, &template(&["70%"]))
            .await
            .unwrap_err(),
        "quality_paused"
    );
    send(&mut shop, a1, &utility, &template(&["A-20", "Rp 6"]))
        .await
        .unwrap();

    // A paused template.
    let t: Vec<TemplateView> = shop
        .api
        .request(Method::GET, "/v1/business/templates", None)
        .await
        .unwrap();
    let receipt_row = t.iter().find(|t| t.name == "order_receipt").unwrap();
    review(&server, receipt_row, "pause").await;
    assert_eq!(
        send(&mut shop, a1, &utility, &template(&["A-21", "Rp 7"]))
            .await
            .unwrap_err(),
        "template_paused"
    );

    // Every refusal is a `failed` event with its code.
    let events: Vec<accord_messenger_wire::EventView> = shop
        .api
        .request(Method::GET, "/v1/business/events?limit=500", None)
        .await
        .unwrap();
    let failed: Vec<&str> = events
        .iter()
        .filter(|e| e.status == "failed")
        .filter_map(|e| e.code.as_deref())
        .collect();
    for code in [
        "not_opted_in",
        "outside_service_window",
        "template_not_approved",
        "muted_by_user",
        "blocked_by_user",
        "tier_limit_reached",
        "quality_paused",
        "template_paused",
    ] {
        assert!(failed.contains(&code), "{code} not in {failed:?}");
    }
    assert!(events.iter().any(|e| e.status == "delivered"));
}

#[tokio::test]
async fn api_keys_expire_and_revoke_and_the_throughput_limit_holds() {
    let clock = SimulatedClock::following_wall_clock();
    let server = Server::start_with(
        tempfile::tempdir().unwrap(),
        Arc::new(clock.clone()),
        BusinessConfig {
            messages_per_s: 1.0,
            burst: 3.0,
            ..rules()
        },
    )
    .await
    .unwrap();
    let mut shop = business(&server, "+6281300000011", "Kedai").await;
    let v = approved(
        &server,
        &shop,
        "otp",
        "authentication",
        "Your code is {{1}}",
    )
    .await;
    let u = device(&server, "+6281300000012").await;
    controls(&u, shop.account, json!({ "opted_in": true })).await;
    let m = meta(Category::Authentication, "otp", v);
    send(&mut shop, u.device.account_id(), &m, &template(&["123456"]))
        .await
        .unwrap();
    let mut codes = Vec::new();
    for _ in 0..3 {
        if let Err(c) = send(&mut shop, u.device.account_id(), &m, &template(&["1"])).await {
            codes.push(c);
        }
    }
    assert!(codes.iter().any(|c| c == "rate_limited"), "{codes:?}");

    // A key that expires in a day, and a revoked one.
    let short: ApiKeyCreated = shop
        .dev
        .client
        .request(
            Method::POST,
            "/v1/business/keys",
            Some(&json!({"label": "ci", "expires_in_days": 1})),
        )
        .await
        .unwrap();
    let c = Client::new(&server.base).with_token(&short.api_key);
    let _: Value = c
        .request(Method::GET, "/v1/business/status", None)
        .await
        .unwrap();
    clock.advance_millis(2 * 86_400_000);
    let e = c
        .request_raw(Method::GET, "/v1/business/status", None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("api_key_expired"));
    let _: Value = shop
        .dev
        .client
        .request(
            Method::DELETE,
            &format!("/v1/business/keys/{}", short.key_id),
            None,
        )
        .await
        .unwrap_or(Value::Null);
    let e = c
        .request_raw(Method::GET, "/v1/business/status", None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("api_key_revoked"));
    // A revoked business.
    let _: Value = server
        .admin
        .request(
            Method::PUT,
            &format!("/v1/admin/businesses/{}/revoked", shop.account),
            Some(&json!({"value": true})),
        )
        .await
        .unwrap_or(Value::Null);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let e = shop
        .api
        .request_raw(Method::GET, "/v1/business/status", None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("business_revoked"));
}

/// Each request a receiver got: its signature header and raw body.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A webhook receiver on loopback: records every request, answers 500
/// while `failing`.
#[derive(Clone, Default)]
struct Receiver {
    got: Received,
    failing: Arc<std::sync::atomic::AtomicBool>,
    /// Answers only after 3 s (the messenger gives up after its timeout).
    hanging: Arc<std::sync::atomic::AtomicBool>,
}

async fn receiver() -> (String, Receiver) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    let r = Receiver::default();
    let state = r.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                let sig = headers
                    .get("x-hub-signature-256")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                state.got.lock().unwrap().push((sig, body.to_vec()));
                if state.hanging.load(std::sync::atomic::Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                if state.failing.load(std::sync::atomic::Ordering::SeqCst) {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, r)
}

#[tokio::test]
async fn webhooks_are_signed_retried_across_a_restart_and_deduplicable() {
    let clock = SimulatedClock::following_wall_clock();
    let data = tempfile::tempdir().unwrap();
    let slow = || BusinessConfig {
        webhook_timeout: Duration::from_millis(300),
        ..rules()
    };
    let server = Server::start_with(data, Arc::new(clock.clone()), slow())
        .await
        .unwrap();
    let mut shop = business(&server, "+6281300000021", "Antar").await;
    let v = approved(
        &server,
        &shop,
        "shipped",
        "utility",
        "Parcel {{1}} is on its way",
    )
    .await;
    let (url, rx) = receiver().await;
    let hook: WebhookCreated = shop
        .api
        .request(
            Method::PUT,
            "/v1/business/webhook",
            Some(&json!({ "url": url })),
        )
        .await
        .unwrap();
    let e = shop
        .api
        .request_raw(
            Method::PUT,
            "/v1/business/webhook",
            Some(&json!({ "url": "http://example.com/x" })),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some("invalid_field"),
        "plain http only to loopback"
    );
    let t: Value = shop
        .api
        .request(Method::POST, "/v1/business/webhook/test", None)
        .await
        .unwrap();
    assert_eq!(t["delivered"], json!(true), "{t}");

    let mut u = device(&server, "+6281300000022").await;
    controls(&u, shop.account, json!({ "opted_in": true })).await;
    let to = u.device.account_id();
    send(
        &mut shop,
        to,
        &meta(Category::Utility, "shipped", v),
        &template(&["JX-1"]),
    )
    .await
    .unwrap();
    let _ = rendered(&mut u, 1).await; // delivered (acked)
    send(
        &mut shop,
        to,
        &meta(Category::Marketing, "nope", 1),
        &template(&["x"]),
    )
    .await
    .unwrap_err();

    // The receiver hangs: the messenger stops waiting after its timeout,
    // and the events wait for the next attempt.
    rx.hanging.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    server.business.dispatch_webhooks().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the dispatcher waited for a hung receiver"
    );
    let ev: Vec<accord_messenger_wire::EventView> = shop
        .api
        .request(Method::GET, "/v1/business/events", None)
        .await
        .unwrap();
    assert!(
        ev.iter().all(|e| e.webhook == "due"
            && e.attempts == 1
            && e.last_error.as_deref() == Some("the receiver did not answer in time")),
        "{ev:?}"
    );
    rx.hanging.store(false, std::sync::atomic::Ordering::SeqCst);

    // The receiver is down (500): nothing is lost; the events wait.
    rx.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    clock.advance_millis(2_000);
    server.business.dispatch_webhooks().await.unwrap();
    let s = status(&shop).await;
    let w = s.webhook.unwrap();
    assert!(w.due >= 3 && w.failing >= 3, "{w:?}");

    // Across a restart of the messenger, with the receiver back: every
    // event arrives once the backoff passed.
    let data = server.stop();
    let server = Server::start_with(data, Arc::new(clock.clone()), slow())
        .await
        .unwrap();
    let api = Client::new(&server.base).with_token(&shop.key);
    rx.failing.store(false, std::sync::atomic::Ordering::SeqCst);
    clock.advance_millis(10_000);
    server.business.dispatch_webhooks().await.unwrap();
    let got = rx.got.lock().unwrap().clone();
    let mut ids = std::collections::BTreeMap::new();
    for (sig, body) in &got {
        assert!(
            accord_crypto::mac::verify_hub_signature(hook.secret.as_bytes(), body, sig),
            "every request is signed over its raw body"
        );
        let v: Value = serde_json::from_slice(body).unwrap();
        for st in v["entry"][0]["changes"][0]["value"]["statuses"]
            .as_array()
            .unwrap()
        {
            *ids.entry((
                st["event_id"].as_str().unwrap().to_owned(),
                st["status"].as_str().unwrap().to_owned(),
            ))
            .or_insert(0) += 1;
        }
    }
    let statuses: Vec<&str> = ids.keys().map(|(_, s)| s.as_str()).collect();
    for want in ["sent", "delivered", "failed"] {
        assert!(statuses.contains(&want), "{want} not in {ids:?}");
    }
    // Delivered at least once: the failed attempt's events came again, and
    // the event id is what tells them apart.
    assert!(ids.values().any(|n| *n >= 2), "{ids:?}");
    let s: BusinessStatus = api
        .request(Method::GET, "/v1/business/status", None)
        .await
        .unwrap();
    let w = s.webhook.unwrap();
    assert_eq!((w.due, w.given_up), (0, 0), "{w:?}");
    // A forged signature does not verify.
    assert!(!accord_crypto::mac::verify_hub_signature(
        b"wrong", &got[0].1, &got[0].0
    ));
    // Delivered events are kept 30 days, then purged by the background pass.
    let before: Vec<accord_messenger_wire::EventView> = api
        .request(Method::GET, "/v1/business/events", None)
        .await
        .unwrap();
    assert!(before.len() >= 3, "{before:?}");
    clock.advance_millis(29 * 86_400_000);
    server.business.evaluate_all().await.unwrap();
    let kept: Vec<accord_messenger_wire::EventView> = api
        .request(Method::GET, "/v1/business/events", None)
        .await
        .unwrap();
    assert_eq!(kept.len(), before.len(), "kept within 30 days");
    clock.advance_millis(2 * 86_400_000);
    server.business.evaluate_all().await.unwrap();
    let gone: Vec<accord_messenger_wire::EventView> = api
        .request(Method::GET, "/v1/business/events", None)
        .await
        .unwrap();
    assert!(gone.is_empty(), "{gone:?}");
    drop(server);
}
