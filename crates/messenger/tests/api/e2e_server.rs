//! E2E messaging through the real server, with `accord-e2e`'s
//! `E2eMachine` as the client: two users with two devices each.

use crate::helpers::{assert_error, phone, spawn_app, AppOptions, Body, TestApp};
use accord_domain::{AccountId, DeviceId, Timestamp};
use accord_e2e::{
    ClientMessageId, Curve25519PublicKey, DeviceKeys, E2eMachine, Envelope, PlaintextKind,
    SendRequest, ServerFrame, SignedOneTimeKey,
};
use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Dev {
    pub token: String,
    pub account: AccountId,
    pub device: DeviceId,
    pub m: E2eMachine,
}

/// Registers a device for `phone` (a new account or another device of
/// it) and publishes its identity keys, `otks` one-time keys and a
/// fallback key.
pub async fn device(app: &TestApp, phone: &str, otks: usize) -> Dev {
    let u = app.register_device(phone, None).await;
    let device = u.reg.device_id;
    let mut m = E2eMachine::new(device);
    let token = u.reg.token.clone();
    let r = app
        .send(
            Method::PUT,
            "/v1/keys/device",
            Some(&token),
            Body::Json(serde_json::to_value(m.device_keys()).unwrap()),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let keys = m.generate_one_time_keys(otks);
    let fallback = m.generate_fallback_key();
    let r = app
        .send(
            Method::POST,
            "/v1/keys/one-time",
            Some(&token),
            Body::Json(json!({"one_time_keys": keys, "fallback": fallback})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["remaining"], otks as u64);
    assert_eq!(r.body["has_fallback"], true);
    m.mark_published();
    Dev {
        token,
        account: u.reg.account_id,
        device,
        m,
    }
}

pub async fn claim(
    app: &TestApp,
    by: &Dev,
    account: AccountId,
) -> Vec<(DeviceKeys, SignedOneTimeKey)> {
    let r = app
        .send(
            Method::POST,
            "/v1/keys/claim",
            Some(&by.token),
            Body::Json(json!({"account_id": account})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["account_id"], json!(account));
    r.body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["device_id"], d["device_keys"]["device_id"]);
            (
                serde_json::from_value(d["device_keys"].clone()).unwrap(),
                serde_json::from_value(d["one_time_key"].clone()).unwrap(),
            )
        })
        .collect()
}

/// Encrypts `text` for every device of `to` and every other device of the
/// sender's account (claiming keys only for devices without a session).
pub async fn build_send(
    app: &TestApp,
    from: &mut Dev,
    to: AccountId,
    cmid: &str,
    text: &str,
) -> SendRequest {
    let mut envelopes: Vec<Envelope> = Vec::new();
    let accounts = if to == from.account {
        vec![to]
    } else {
        vec![to, from.account]
    };
    for account in accounts {
        for (keys, otk) in claim(app, from, account).await {
            if keys.device_id == from.device {
                continue;
            }
            let p = accord_e2e::Plaintext::text(
                ClientMessageId::parse(cmid).unwrap(),
                Timestamp(0),
                text,
            );
            envelopes.push(from.m.encrypt_for(account, &keys, Some(&otk), &p).unwrap());
        }
    }
    SendRequest::new(ClientMessageId::parse(cmid).unwrap(), envelopes).unwrap()
}

pub async fn post_send(
    app: &TestApp,
    from: &Dev,
    to: AccountId,
    send: &SendRequest,
) -> crate::helpers::Resp {
    app.send(
        Method::POST,
        "/v1/messages",
        Some(&from.token),
        Body::Json(json!({"to_account": to, "send": send})),
    )
    .await
}

pub async fn connect(app: &TestApp, token: &str) -> Ws {
    let url = format!("{}/v1/stream", app.base_url.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket connects")
        .0
}

pub async fn next_frame(ws: &mut Ws) -> ServerFrame {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("stream open")
            .expect("frame");
        match msg {
            Message::Text(t) => {
                return accord_e2e::decode_server_frame(t.as_bytes()).expect("valid frame")
            }
            Message::Binary(b) => return accord_e2e::decode_server_frame(&b).expect("valid frame"),
            _ => continue,
        }
    }
}

/// Reads frames until nothing arrives for a short while (only to check
/// that something is absent, after a positive synchronisation point).
async fn drain(ws: &mut Ws) -> Vec<ServerFrame> {
    let mut out = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
        if let Message::Text(t) = m {
            out.push(accord_e2e::decode_server_frame(t.as_bytes()).unwrap());
        }
    }
    out
}

async fn ack(ws: &mut Ws, ids: &[u64]) {
    ws.send(Message::Text(
        json!({"type": "ack", "envelope_ids": ids})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
}

/// Sends a ping and waits for its pong: everything sent before (acks) has
/// been handled.
async fn sync(ws: &mut Ws) -> Vec<ServerFrame> {
    ws.send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    let mut before = Vec::new();
    loop {
        match next_frame(ws).await {
            ServerFrame::Pong => return before,
            f => before.push(f),
        }
    }
}

fn curve_of(devs: &[&Dev], d: DeviceId) -> Curve25519PublicKey {
    devs.iter()
        .find(|x| x.device == d)
        .unwrap()
        .m
        .curve25519_key()
}

fn text_of(m: &mut E2eMachine, devs: &[&Dev], f: &ServerFrame) -> (u64, String) {
    let ServerFrame::Envelope(e) = f else {
        panic!("expected an envelope, got {f:?}")
    };
    let p = m
        .decrypt_delivered(&curve_of(devs, e.sender_device), e)
        .unwrap();
    let PlaintextKind::Text { body } = p.kind else {
        panic!("not a text")
    };
    (e.id.0, body)
}

struct World {
    app: TestApp,
    a1: Dev,
    a2: Dev,
    b1: Dev,
    b2: Dev,
}

async fn world(otks: usize) -> World {
    let app = spawn_app(AppOptions::default()).await;
    let a1 = device(&app, &phone(1), otks).await;
    let a2 = device(&app, &phone(1), otks).await;
    let b1 = device(&app, &phone(2), otks).await;
    let b2 = device(&app, &phone(2), otks).await;
    assert_eq!(a1.account, a2.account);
    assert_eq!(b1.account, b2.account);
    World {
        app,
        a1,
        a2,
        b1,
        b2,
    }
}

#[tokio::test]
async fn forged_and_foreign_keys_are_refused_and_nothing_is_stored() {
    let w = world(2).await;
    // Another machine's keys under this device's id: bad signature.
    let mut keys = w.a1.m.device_keys();
    keys.ed25519 = E2eMachine::new(w.a1.device).ed25519_key();
    let r = w
        .app
        .send(
            Method::PUT,
            "/v1/keys/device",
            Some(&w.b1.token),
            Body::Json(serde_json::to_value(&keys).unwrap()),
        )
        .await;
    assert_error(&r, 400, "device_mismatch");
    let fresh = w.app.register_device(&phone(3), None).await;
    let mut keys = E2eMachine::new(fresh.reg.device_id).device_keys();
    keys.ed25519 = E2eMachine::new(fresh.reg.device_id).ed25519_key();
    let r = w
        .app
        .send(
            Method::PUT,
            "/v1/keys/device",
            Some(&fresh.reg.token),
            Body::Json(serde_json::to_value(&keys).unwrap()),
        )
        .await;
    assert_error(&r, 400, "invalid_signature");
    // Identical keys again: fine; other keys: 409.
    let r = w
        .app
        .send(
            Method::PUT,
            "/v1/keys/device",
            Some(&w.a1.token),
            Body::Json(serde_json::to_value(w.a1.m.device_keys()).unwrap()),
        )
        .await;
    assert_eq!(r.status, 204);
    let other = E2eMachine::new(w.a1.device).device_keys();
    let r = w
        .app
        .send(
            Method::PUT,
            "/v1/keys/device",
            Some(&w.a1.token),
            Body::Json(serde_json::to_value(other).unwrap()),
        )
        .await;
    assert_error(&r, 409, "device_keys_exist");
    // One-time keys signed by another device: nothing stored.
    let mut a1 = w.a1;
    let good = a1.m.generate_one_time_keys(3);
    let mut forged = E2eMachine::new(a1.device).generate_one_time_keys(1);
    let mut batch = good.clone();
    batch.append(&mut forged);
    let r = w
        .app
        .send(
            Method::POST,
            "/v1/keys/one-time",
            Some(&a1.token),
            Body::Json(json!({"one_time_keys": batch})),
        )
        .await;
    assert_error(&r, 400, "invalid_signature");
    let r = w
        .app
        .send(
            Method::GET,
            "/v1/keys/one-time/count",
            Some(&a1.token),
            Body::None,
        )
        .await;
    assert_eq!(r.body, json!({"remaining": 2, "has_fallback": true}));
    // Garbage bodies get the wire codes.
    let r = w
        .app
        .send(
            Method::PUT,
            "/v1/keys/device",
            Some(&a1.token),
            Body::Raw {
                content_type: Some("application/json"),
                bytes: b"{\"device_id\": ".to_vec(),
            },
        )
        .await;
    assert_error(&r, 400, "invalid_json");
    let r = w
        .app
        .send(
            Method::PUT,
            "/v1/keys/device",
            Some(&a1.token),
            Body::Raw {
                content_type: Some("application/json"),
                bytes: vec![],
            },
        )
        .await;
    assert_error(&r, 400, "empty_body");
    let r = w
        .app
        .send(Method::GET, "/v1/keys/one-time/count", None, Body::None)
        .await;
    assert_error(&r, 401, "unauthorized");
}

#[tokio::test]
async fn claims_hand_out_each_one_time_key_once_then_the_fallback() {
    let w = world(2).await;
    let mut seen = BTreeSet::new();
    for round in 0..3 {
        let got = claim(&w.app, &w.a1, w.b1.account).await;
        assert_eq!(got.len(), 2, "one key per device of bob");
        for (keys, otk) in got {
            assert!(otk.verify(keys.device_id, &keys.ed25519).is_ok());
            if round < 2 {
                assert!(!otk.fallback);
                assert!(
                    seen.insert(otk.key.to_base64()),
                    "a one-time key came twice"
                );
            } else {
                assert!(otk.fallback, "exhausted: the fallback key");
            }
        }
    }
    let r = w
        .app
        .send(
            Method::GET,
            "/v1/keys/one-time/count",
            Some(&w.b1.token),
            Body::None,
        )
        .await;
    assert_eq!(r.body, json!({"remaining": 0, "has_fallback": true}));
    let r = w
        .app
        .send(
            Method::POST,
            "/v1/keys/claim",
            Some(&w.a1.token),
            Body::Json(json!({"phone": phone(2)})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["account_id"], json!(w.b1.account));
    let r = w
        .app
        .send(
            Method::POST,
            "/v1/keys/claim",
            Some(&w.a1.token),
            Body::Json(json!({"phone": phone(99)})),
        )
        .await;
    assert_error(&r, 404, "not_found");
    let r = w
        .app
        .send(
            Method::POST,
            "/v1/keys/claim",
            Some(&w.a1.token),
            Body::Json(json!({"account_id": AccountId::random()})),
        )
        .await;
    assert_error(&r, 404, "not_found");
    // The per-requester limit (burst 60).
    let mut limited = None;
    for _ in 0..70 {
        let r = w
            .app
            .send(
                Method::POST,
                "/v1/keys/claim",
                Some(&w.a2.token),
                Body::Json(json!({"account_id": w.b1.account})),
            )
            .await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("claims are rate limited");
    assert_error(&r, 429, "rate_limited");
    assert!(r.headers.get("retry-after").is_some());
}

#[tokio::test]
async fn delivery_in_order_ack_receipt_and_idempotent_retry() {
    let mut w = world(10).await;
    let sends: Vec<SendRequest> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(
                build_send(
                    &w.app,
                    &mut w.a1,
                    w.b1.account,
                    &format!("m{i}"),
                    &format!("hello {i}"),
                )
                .await,
            );
        }
        v
    };
    for s in &sends {
        let r = post_send(&w.app, &w.a1, w.b1.account, s).await;
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(r.body, json!({"accepted": 3, "duplicate": false}));
    }
    // A retry is answered as a duplicate and delivers nothing more.
    let r = post_send(&w.app, &w.a1, w.b1.account, &sends[1]).await;
    assert_eq!(r.body, json!({"accepted": 3, "duplicate": true}));

    let devs = [&w.a1, &w.a2, &w.b1, &w.b2];
    let curves: Vec<_> = devs
        .iter()
        .map(|d| (d.device, d.m.curve25519_key()))
        .collect();
    let lookup = |d: DeviceId| curves.iter().find(|c| c.0 == d).unwrap().1;
    let mut ws_b1 = connect(&w.app, &w.b1.token).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let f = next_frame(&mut ws_b1).await;
        let ServerFrame::Envelope(e) = &f else {
            panic!("{f:?}")
        };
        let p =
            w.b1.m
                .decrypt_delivered(&lookup(e.sender_device), e)
                .unwrap();
        let PlaintextKind::Text { body } = p.kind else {
            panic!()
        };
        got.push((e.id.0, body));
    }
    assert_eq!(
        got.iter().map(|g| g.1.as_str()).collect::<Vec<_>>(),
        ["hello 0", "hello 1", "hello 2"]
    );
    assert!(got.windows(2).all(|p| p[0].0 < p[1].0));
    assert!(
        sync(&mut ws_b1).await.is_empty(),
        "the retry was not delivered"
    );
    // a2 (the sender's other device) got its copies too.
    let mut ws_a2 = connect(&w.app, &w.a2.token).await;
    for i in 0..3 {
        let f = next_frame(&mut ws_a2).await;
        let (_, body) = text_of(&mut w.a2.m, &devs_of(&w.a1, &w.b1), &f);
        assert_eq!(body, format!("hello {i}"));
    }
    // The sender listens, b1 acks the first message: a receipt arrives.
    let mut ws_a1 = connect(&w.app, &w.a1.token).await;
    ack(&mut ws_b1, &[got[0].0]).await;
    let f = next_frame(&mut ws_a1).await;
    let ServerFrame::Receipt {
        client_message_id,
        recipient_device,
        ..
    } = f
    else {
        panic!("{f:?}")
    };
    assert_eq!(
        (client_message_id.as_str(), recipient_device),
        ("m0", w.b1.device)
    );
    // Reconnecting, b1 gets only what it did not ack.
    drop(ws_b1);
    let mut ws_b1 = connect(&w.app, &w.b1.token).await;
    let f1 = next_frame(&mut ws_b1).await;
    let f2 = next_frame(&mut ws_b1).await;
    let ids: Vec<u64> = [f1, f2]
        .iter()
        .map(|f| match f {
            ServerFrame::Envelope(e) => e.id.0,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, vec![got[1].0, got[2].0]);
    // Long-poll sees the same and acks by HTTP.
    let r = w
        .app
        .send(
            Method::GET,
            "/v1/messages?wait_s=0",
            Some(&w.b1.token),
            Body::None,
        )
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    let r = w
        .app
        .send(
            Method::POST,
            "/v1/messages/ack",
            Some(&w.b1.token),
            Body::Json(json!({"ids": ids})),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = w
        .app
        .send(
            Method::GET,
            "/v1/messages?wait_s=0",
            Some(&w.b1.token),
            Body::None,
        )
        .await;
    assert_eq!(r.body, json!([]));
    // Reports: b1 received got[0]; a1 never received it.
    let r = w
        .app
        .send(
            Method::POST,
            "/v1/reports",
            Some(&w.b1.token),
            Body::Json(json!({"envelope_id": got[0].0})),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = w
        .app
        .send(
            Method::POST,
            "/v1/reports",
            Some(&w.a1.token),
            Body::Json(json!({"envelope_id": got[0].0, "plaintext": "x"})),
        )
        .await;
    assert_error(&r, 404, "not_found");
    let reports = accord_storage::MailboxStore::reports(&*w.app.mailboxes)
        .await
        .unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(
        (
            reports[0].sender_account,
            reports[0].sender_device,
            reports[0].plaintext.clone()
        ),
        (w.a1.account, w.a1.device, None)
    );
}

fn devs_of<'a>(a: &'a Dev, b: &'a Dev) -> [&'a Dev; 2] {
    [a, b]
}

#[tokio::test]
async fn a_stale_device_list_is_refused_with_the_difference() {
    let mut w = world(5).await;
    let full = build_send(&w.app, &mut w.a1, w.b1.account, "s1", "x").await;
    let (cmid, mut envs) = full.into_parts();
    let dropped = envs.pop().unwrap().recipient_device;
    let mut extra = envs[0].clone();
    extra.recipient_device = DeviceId::random();
    envs.push(extra.clone());
    let send = SendRequest::new(cmid, envs).unwrap();
    let r = post_send(&w.app, &w.a1, w.b1.account, &send).await;
    assert_error(&r, 409, "stale_devices");
    assert_eq!(r.body["details"]["missing"], json!([dropped]));
    assert_eq!(r.body["details"]["extra"], json!([extra.recipient_device]));
    let r = w
        .app
        .send(Method::GET, "/v1/messages", Some(&w.b1.token), Body::None)
        .await;
    assert_eq!(r.body, json!([]), "nothing stored");
    let r = w.app.send(Method::POST, "/v1/messages", Some(&w.a1.token), Body::Json(json!({"to_account": w.b1.account, "send": {"client_message_id": "x", "envelopes": []}}))).await;
    assert_error(&r, 400, "invalid_field");
}

#[tokio::test]
async fn a_block_is_silent_no_delivery_no_receipt_same_answer() {
    let mut w = world(5).await;
    let r = w
        .app
        .send(
            Method::POST,
            &format!("/v1/blocks/{}", w.a1.account),
            Some(&w.b2.token),
            Body::None,
        )
        .await;
    assert_eq!(r.status, 204);
    let s = build_send(
        &w.app,
        &mut w.a1,
        w.b1.account,
        "blocked-1",
        "you are blocked",
    )
    .await;
    let r = post_send(&w.app, &w.a1, w.b1.account, &s).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body, json!({"accepted": 3, "duplicate": false}));
    // a2 still gets the copy; ack it so a1 has a receipt to compare with.
    let mut ws_a2 = connect(&w.app, &w.a2.token).await;
    let ServerFrame::Envelope(e) = next_frame(&mut ws_a2).await else {
        panic!()
    };
    ack(&mut ws_a2, &[e.id.0]).await;
    let r = w
        .app
        .send(
            Method::GET,
            "/v1/messages?wait_s=0",
            Some(&w.b1.token),
            Body::None,
        )
        .await;
    assert_eq!(r.body, json!([]), "the blocker's devices get nothing");
    let mut ws_a1 = connect(&w.app, &w.a1.token).await;
    let ServerFrame::Receipt {
        recipient_device, ..
    } = next_frame(&mut ws_a1).await
    else {
        panic!()
    };
    assert_eq!(
        recipient_device, w.a2.device,
        "only the own device's receipt"
    );
    assert!(drain(&mut ws_a1).await.is_empty());
    // Unblocked: delivered again.
    let r = w
        .app
        .send(
            Method::DELETE,
            &format!("/v1/blocks/{}", w.a1.account),
            Some(&w.b1.token),
            Body::None,
        )
        .await;
    assert_eq!(r.status, 204);
    let s = build_send(&w.app, &mut w.a1, w.b1.account, "after", "hello again").await;
    assert_eq!(post_send(&w.app, &w.a1, w.b1.account, &s).await.status, 202);
    let r = w
        .app
        .send(
            Method::GET,
            "/v1/messages?wait_s=5",
            Some(&w.b1.token),
            Body::None,
        )
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn invalid_frames_get_error_frames_and_the_stream_stays_up() {
    let mut w = world(5).await;
    let mut ws = connect(&w.app, &w.b1.token).await;
    for bad in [
        "not json",
        "{}",
        r#"{"type":"ack","envelope_ids":[]}"#,
        r#"{"type":"ack","envelope_ids":[1,1]}"#,
        r#"{"type":"nope"}"#,
    ] {
        ws.send(Message::Text(bad.into())).await.unwrap();
        match next_frame(&mut ws).await {
            ServerFrame::Error { code, .. } => assert!(!code.is_empty()),
            other => panic!("{other:?}"),
        }
    }
    // Still delivering.
    let s = build_send(&w.app, &mut w.a1, w.b1.account, "after-bad", "still here").await;
    assert_eq!(post_send(&w.app, &w.a1, w.b1.account, &s).await.status, 202);
    assert!(matches!(
        next_frame(&mut ws).await,
        ServerFrame::Envelope(_)
    ));
    // Long-poll: b2 empties its mailbox, then waits while a message is sent.
    let app = &w.app;
    let r = app
        .send(
            Method::GET,
            "/v1/messages?wait_s=0",
            Some(&w.b2.token),
            Body::None,
        )
        .await;
    let ids: Vec<u64> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 1);
    let r = app
        .send(
            Method::POST,
            "/v1/messages/ack",
            Some(&w.b2.token),
            Body::Json(json!({"ids": ids})),
        )
        .await;
    assert_eq!(r.body, json!({"acked": 1}));
    let s = build_send(app, &mut w.a1, w.b1.account, "lp", "poll").await;
    let (poll, sent) = tokio::join!(
        app.send(
            Method::GET,
            "/v1/messages?wait_s=20",
            Some(&w.b2.token),
            Body::None
        ),
        post_send(app, &w.a1, w.b1.account, &s)
    );
    assert_eq!(sent.status, 202);
    let frames = poll.body.as_array().unwrap();
    assert_eq!(frames.len(), 1, "{}", poll.body);
    assert_eq!(frames[0]["type"], "envelope");
    let r = app
        .send(
            Method::GET,
            "/v1/messages?wait_s=31",
            Some(&w.b2.token),
            Body::None,
        )
        .await;
    assert_error(&r, 400, "invalid_query");
}

/// Acks commit in the background, but a pong waits for every ack sent
/// before its ping: a client that reconnects after the pong never gets an
/// acked envelope again. One ack frame per envelope, so that many acks are
/// in flight when the ping arrives.
#[tokio::test]
async fn a_pong_comes_after_the_acks_before_it() {
    let mut w = world(40).await;
    for round in 0..3 {
        for i in 0..8 {
            let s = build_send(
                &w.app,
                &mut w.a1,
                w.b1.account,
                &format!("r{round}m{i}"),
                "x",
            )
            .await;
            assert_eq!(post_send(&w.app, &w.a1, w.b1.account, &s).await.status, 202);
        }
        let mut ws = connect(&w.app, &w.b1.token).await;
        let ids: Vec<u64> = sync(&mut ws)
            .await
            .iter()
            .map(|f| match f {
                ServerFrame::Envelope(e) => e.id.0,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids.len(), 8, "round {round}");
        for id in &ids {
            ack(&mut ws, &[*id]).await;
        }
        sync(&mut ws).await;
        drop(ws);
        let mut ws = connect(&w.app, &w.b1.token).await;
        assert_eq!(
            sync(&mut ws).await,
            vec![],
            "round {round}: acked items came back"
        );
    }
}

/// Unique plaintexts go through; none of them is in any file of the data
/// directory or in the logs, while the ciphertext is in the database.
#[tokio::test]
async fn canary_no_plaintext_in_storage_or_logs() {
    let log = crate::logs::captured_log();
    let mut w = world(5).await;
    let canaries: Vec<String> = (0..3)
        .map(|i| format!("CANARY-{}-{i}", uuid::Uuid::new_v4().simple()))
        .collect();
    let mut cts = Vec::new();
    for (i, c) in canaries.iter().enumerate() {
        let s = build_send(&w.app, &mut w.a1, w.b1.account, &format!("c{i}"), c).await;
        cts.push(s.envelopes()[0].ciphertext.as_bytes().to_vec());
        assert_eq!(post_send(&w.app, &w.a1, w.b1.account, &s).await.status, 202);
    }
    let files = || -> Vec<Vec<u8>> {
        std::fs::read_dir(&w.app.data_dir)
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap_or_default())
            .collect()
    };
    let found = |hay: &[Vec<u8>], needle: &[u8]| {
        hay.iter()
            .any(|h| h.windows(needle.len()).any(|x| x == needle))
    };
    let before = files();
    assert!(
        cts.iter().all(|ct| found(&before, ct)),
        "the ciphertext is in the database (the search works)"
    );
    let mut ws = connect(&w.app, &w.b1.token).await;
    let mut ids = Vec::new();
    let devs = [&w.a1, &w.a2];
    for c in &canaries {
        let f = next_frame(&mut ws).await;
        let (id, body) = text_of(&mut w.b1.m, &devs, &f);
        assert_eq!(&body, c);
        ids.push(id);
    }
    ack(&mut ws, &ids).await;
    sync(&mut ws).await;
    let after = files();
    let logs = log.lock().unwrap().clone();
    for c in &canaries {
        assert!(
            !found(&before, c.as_bytes()) && !found(&after, c.as_bytes()),
            "plaintext in a data file"
        );
        assert!(
            !found(std::slice::from_ref(&logs), c.as_bytes()),
            "plaintext in the logs"
        );
    }
}

/// One device's view in the property test.
#[derive(Debug, Clone)]
enum Op {
    Send(usize),
    Retry(usize),
    Ack,
    Reconnect,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4usize).prop_map(Op::Send),
        (0..4usize).prop_map(Op::Retry),
        Just(Op::Ack),
        Just(Op::Reconnect),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]
    /// Any interleaving of sends, retries, acks and reconnects delivers
    /// every accepted message exactly once per device: never after its ack,
    /// and every one before the end.
    #[test]
    fn every_accepted_envelope_is_delivered_exactly_once(ops in proptest::collection::vec(op(), 1..14)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let app = spawn_app(AppOptions::default()).await;
            let mut a = device(&app, &phone(1), 20).await;
            let b = device(&app, &phone(2), 20).await;
            let mut built: HashMap<usize, SendRequest> = HashMap::new();
            let mut accepted: BTreeSet<String> = BTreeSet::new();
            let mut acked: BTreeMap<u64, String> = BTreeMap::new();
            let mut pending: BTreeMap<u64, String> = BTreeMap::new();
            let mut ws = connect(&app, &b.token).await;
            for op in ops {
                match op {
                    Op::Send(i) | Op::Retry(i) => {
                        let cmid = format!("p{i}");
                        if let std::collections::hash_map::Entry::Vacant(e) = built.entry(i) {
                            e.insert(build_send(&app, &mut a, b.account, &cmid, "x").await);
                        }
                        let r = post_send(&app, &a, b.account, &built[&i]).await;
                        assert_eq!(r.status, 202);
                        assert_eq!(r.body["duplicate"], json!(accepted.contains(&cmid)));
                        accepted.insert(cmid);
                    }
                    Op::Ack => {
                        for f in sync(&mut ws).await {
                            if let ServerFrame::Envelope(e) = f {
                                assert!(!acked.contains_key(&e.id.0), "delivered after its ack");
                                pending.insert(e.id.0, String::new());
                            }
                        }
                        if !pending.is_empty() {
                            let ids: Vec<u64> = pending.keys().copied().collect();
                            ack(&mut ws, &ids).await;
                            sync(&mut ws).await;
                            acked.append(&mut pending);
                        }
                    }
                    Op::Reconnect => {
                        drop(ws);
                        pending.clear();
                        ws = connect(&app, &b.token).await;
                    }
                }
            }
            // Drain: everything accepted and not acked arrives once.
            let r = app.send(Method::GET, "/v1/messages?wait_s=0", Some(&b.token), Body::None).await;
            let rest: Vec<Value> = r.body.as_array().unwrap().clone();
            for f in &rest {
                let id = f["id"].as_u64().unwrap();
                assert!(!acked.contains_key(&id), "an acked envelope came back");
                acked.insert(id, String::new());
            }
            assert_eq!(acked.len(), accepted.len(), "each accepted message once");
        });
    }
}

#[tokio::test]
async fn undelivered_envelopes_expire_after_30_days() {
    let mut w = world(5).await;
    let s = build_send(&w.app, &mut w.a1, w.b1.account, "old", "too late").await;
    assert_eq!(post_send(&w.app, &w.a1, w.b1.account, &s).await.status, 202);
    w.app.advance(29, 23, 0).await;
    let r = w
        .app
        .send(
            Method::GET,
            "/v1/messages?wait_s=0",
            Some(&w.b2.token),
            Body::None,
        )
        .await;
    assert_eq!(
        r.body.as_array().unwrap().len(),
        1,
        "still there before 30 days"
    );
    w.app.advance(0, 1, 0).await;
    let r = w
        .app
        .send(
            Method::GET,
            "/v1/messages?wait_s=0",
            Some(&w.b1.token),
            Body::None,
        )
        .await;
    assert_eq!(r.body, json!([]), "expired: never delivered");
    let mut ws = connect(&w.app, &w.b2.token).await;
    assert!(sync(&mut ws).await.is_empty());
    let purged = accord_storage::MailboxStore::purge_expired(
        &*w.app.mailboxes,
        w.app.now().await,
        w.app.now().await,
    )
    .await
    .unwrap();
    assert_eq!(purged, 3, "b1, b2 and a2's copies are purged");
}

/// The NATS wake-up seam: a wake published by one node reaches the
/// connections of another (NATS on 127.0.0.1:4222, unique subjects).
#[tokio::test]
async fn nats_wakes_a_device_on_another_node() {
    use accord_messenger::relay::wake::{NatsConfig, NatsWake, Pending, Wake};
    use accord_storage::mailbox::MailItem;
    if std::env::var("ACCORD_SKIP_NATS").as_deref() == Ok("1") {
        return;
    }
    let prefix = format!("accord.test.{}.wake", uuid::Uuid::new_v4().simple());
    let url =
        std::env::var("ACCORD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let config = NatsConfig {
        prefix,
        ..NatsConfig::new(&url)
    };
    let a = NatsWake::connect(&config)
        .await
        .expect("NATS on 127.0.0.1:4222 (set ACCORD_SKIP_NATS=1 to skip)");
    let b = NatsWake::connect(&config).await.unwrap();
    for bad in ["", "a..b", "a.*", "a b", "a.>"] {
        let c = NatsConfig {
            prefix: bad.into(),
            ..NatsConfig::new(&url)
        };
        assert!(NatsWake::connect(&c).await.is_err(), "prefix {bad:?}");
    }
    let (d, other) = (DeviceId::random(), DeviceId::random());
    let mut on_a = a.subscribe(d);
    let mut on_b = b.subscribe(d);
    let other_on_b = b.subscribe(other);
    let item = MailItem::Receipt {
        id: 7,
        client_message_id: "m-1".into(),
        recipient_device: other,
        delivered_at: Timestamp(0),
    };
    // Core NATS is at most once (a lost wake-up is made good by the next
    // one or a reconnect, by design), so a few tries are allowed.
    let mut woken = false;
    for _ in 0..5 {
        a.deliver(vec![(d, item.clone())]);
        if tokio::time::timeout(Duration::from_secs(3), on_b.changed())
            .await
            .is_ok()
        {
            woken = true;
            break;
        }
    }
    assert!(woken, "woken through NATS");
    assert!(
        matches!(on_b.take(), Pending::Refetch),
        "another node's wake-up carries no items: re-read the mailbox"
    );
    assert!(!other_on_b.has_changed(), "only the named device");
    // The sending node's own listener got the item itself, and ignores
    // the echo of its own wake-up.
    match on_a.take() {
        Pending::Items(items) => {
            assert!(!items.is_empty() && items.iter().all(|i| i.id() == 7))
        }
        Pending::Refetch => panic!("own commit must be handed over in memory"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!on_a.has_changed(), "own NATS echo ignored");
}
