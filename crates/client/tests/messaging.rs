//! `accord_client::messaging` against a small in-memory stand-in for the
//! messenger's E2E endpoints (the HTTP contract of issue 4), so that the
//! SDK's key publication, claiming, fan-out, stale-device retry,
//! WebSocket and long-poll delivery, acks and receipts are exercised
//! without the real server. The real server is exercised by the CLI's
//! `tests/msg.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accord_client::messaging::{
    ClientMessageId, Device, Event, KeySource, ListenEnd, ListenOptions, PlaintextKind, Recipient,
    Transport,
};
use accord_client::Client;
use accord_domain::{AccountId, DeviceId, PhoneNumber, Timestamp};
use accord_e2e::{
    decode_client_frame, ClientFrame, DeliveredEnvelope, DeviceKeys, EnvelopeId, SendRequest,
    ServerFrame, SignedOneTimeKey,
};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Notify;

// ---------------------------------------------------------------------------
// The stand-in server
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Inner {
    tokens: HashMap<String, (AccountId, DeviceId)>,
    accounts: BTreeMap<AccountId, Vec<DeviceId>>,
    phones: HashMap<String, AccountId>,
    keys: HashMap<DeviceId, DeviceKeys>,
    otks: HashMap<DeviceId, VecDeque<SignedOneTimeKey>>,
    fallback: HashMap<DeviceId, SignedOneTimeKey>,
    /// Per device: (envelope, client message id, sender device).
    mailboxes: HashMap<DeviceId, Vec<(DeliveredEnvelope, ClientMessageId, DeviceId)>>,
    receipts: HashMap<DeviceId, Vec<ServerFrame>>,
    sent: BTreeSet<(DeviceId, ClientMessageId)>,
    blocks: BTreeSet<(AccountId, AccountId)>,
    next_id: u64,
    claims: usize,
    ws_connections: usize,
    polls: usize,
    /// Acks are lost (the envelopes stay queued).
    drop_acks: bool,
}

#[derive(Clone, Default)]
struct Mock {
    inner: Arc<Mutex<Inner>>,
    notify: Arc<Notify>,
}

fn error(status: StatusCode, code: &str, details: Value) -> Response {
    (
        status,
        Json(json!({ "code": code, "message": code, "details": details })),
    )
        .into_response()
}

impl Mock {
    fn caller(&self, headers: &HeaderMap) -> Option<(AccountId, DeviceId)> {
        let token = headers
            .get("authorization")?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?;
        self.inner.lock().unwrap().tokens.get(token).copied()
    }

    /// A new device of `account` (a new account when `None`); its token.
    fn register(&self, account: Option<AccountId>, phone: &str) -> (AccountId, String) {
        let mut i = self.inner.lock().unwrap();
        let account = account.unwrap_or_else(AccountId::random);
        let device = DeviceId::random();
        let token = format!("tok-{}", device.0);
        i.tokens.insert(token.clone(), (account, device));
        i.accounts.entry(account).or_default().push(device);
        i.phones.insert(phone.to_owned(), account);
        (account, token)
    }

    /// Devices of `account` that published keys.
    fn devices(i: &Inner, account: AccountId) -> Vec<DeviceId> {
        i.accounts
            .get(&account)
            .into_iter()
            .flatten()
            .filter(|d| i.keys.contains_key(d))
            .copied()
            .collect()
    }

    fn frames_for(&self, device: DeviceId) -> Vec<ServerFrame> {
        let mut i = self.inner.lock().unwrap();
        let mut out: Vec<ServerFrame> = i.receipts.remove(&device).unwrap_or_default();
        out.extend(
            i.mailboxes
                .get(&device)
                .into_iter()
                .flatten()
                .map(|(e, _, _)| ServerFrame::Envelope(e.clone())),
        );
        out
    }

    fn ack(&self, device: DeviceId, ids: &[EnvelopeId]) {
        let mut i = self.inner.lock().unwrap();
        if i.drop_acks {
            return;
        }
        let (me, _) = *i.tokens.values().find(|(_, d)| *d == device).unwrap();
        let mut acked = Vec::new();
        if let Some(mb) = i.mailboxes.get_mut(&device) {
            mb.retain(|(e, cmid, sender)| {
                if ids.contains(&e.id) {
                    acked.push((cmid.clone(), *sender, e.sender_account));
                    false
                } else {
                    true
                }
            });
        }
        for (cmid, sender, sender_account) in acked {
            if !i.blocks.contains(&(me, sender_account)) {
                i.receipts
                    .entry(sender)
                    .or_default()
                    .push(ServerFrame::Receipt {
                        id: accord_e2e::EnvelopeId(
                            1 << 40
                                | RECEIPT_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                        ),
                        client_message_id: cmid,
                        recipient_device: device,
                        delivered_at: Timestamp(1),
                    });
            }
        }
        drop(i);
        self.notify.notify_waiters();
    }
}

/// Receipt ids of the stand-in server, apart from envelope ids.
static RECEIPT_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn put_device_keys(
    State(m): State<Mock>,
    headers: HeaderMap,
    Json(keys): Json<DeviceKeys>,
) -> Response {
    let Some((_, device)) = m.caller(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", Value::Null);
    };
    if keys.verify().is_err() || keys.device_id != device {
        return error(StatusCode::BAD_REQUEST, "bad_signature", Value::Null);
    }
    let mut i = m.inner.lock().unwrap();
    match i.keys.get(&device) {
        Some(k) if *k != keys => error(StatusCode::CONFLICT, "device_keys_exist", Value::Null),
        _ => {
            i.keys.insert(device, keys);
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

#[derive(Deserialize)]
struct Upload {
    one_time_keys: Vec<SignedOneTimeKey>,
    fallback: Option<SignedOneTimeKey>,
}

fn count(i: &Inner, device: DeviceId) -> Value {
    json!({
        "remaining": i.otks.get(&device).map_or(0, |q| q.len()),
        "has_fallback": i.fallback.contains_key(&device),
    })
}

async fn upload_otks(State(m): State<Mock>, headers: HeaderMap, Json(u): Json<Upload>) -> Response {
    let Some((_, device)) = m.caller(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", Value::Null);
    };
    let mut i = m.inner.lock().unwrap();
    let ed = i.keys[&device].ed25519;
    for k in u.one_time_keys.iter().chain(u.fallback.iter()) {
        if k.verify(device, &ed).is_err() {
            return error(StatusCode::BAD_REQUEST, "bad_signature", Value::Null);
        }
    }
    let q = i.otks.entry(device).or_default();
    for k in u.one_time_keys {
        if !q.iter().any(|x| x.key_id == k.key_id) {
            q.push_back(k);
        }
    }
    if let Some(f) = u.fallback {
        i.fallback.insert(device, f);
    }
    Json(count(&i, device)).into_response()
}

async fn otk_count(State(m): State<Mock>, headers: HeaderMap) -> Response {
    let Some((_, device)) = m.caller(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", Value::Null);
    };
    let i = m.inner.lock().unwrap();
    Json(count(&i, device)).into_response()
}

async fn claim(State(m): State<Mock>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if m.caller(&headers).is_none() {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", Value::Null);
    }
    let mut i = m.inner.lock().unwrap();
    i.claims += 1;
    let account = match (body["phone"].as_str(), body["account_id"].as_str()) {
        (Some(p), _) => i.phones.get(p).copied(),
        (_, Some(a)) => AccountId::parse(a),
        _ => None,
    };
    let Some(account) = account.filter(|a| i.accounts.contains_key(a)) else {
        return error(StatusCode::NOT_FOUND, "not_found", Value::Null);
    };
    let mut devices = Vec::new();
    for d in Mock::devices(&i, account) {
        let otk = match i.otks.get_mut(&d).and_then(|q| q.pop_front()) {
            Some(k) => k,
            None => match i.fallback.get(&d) {
                Some(f) => f.clone(),
                None => continue,
            },
        };
        devices.push(json!({ "device_id": d, "device_keys": i.keys[&d], "one_time_key": otk }));
    }
    Json(json!({ "account_id": account, "devices": devices })).into_response()
}

#[derive(Deserialize)]
struct SendBody {
    to_account: AccountId,
    send: SendRequest,
}

async fn send(State(m): State<Mock>, headers: HeaderMap, Json(b): Json<SendBody>) -> Response {
    let Some((me, my_device)) = m.caller(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", Value::Null);
    };
    let mut i = m.inner.lock().unwrap();
    let mut expected: BTreeSet<DeviceId> = Mock::devices(&i, b.to_account).into_iter().collect();
    expected.extend(Mock::devices(&i, me));
    expected.remove(&my_device);
    let got: BTreeSet<DeviceId> = b
        .send
        .envelopes()
        .iter()
        .map(|e| e.recipient_device)
        .collect();
    if got != expected {
        let missing: Vec<_> = expected.difference(&got).collect();
        let extra: Vec<_> = got.difference(&expected).collect();
        return error(
            StatusCode::CONFLICT,
            "stale_devices",
            json!({ "missing": missing, "extra": extra }),
        );
    }
    let cmid = b.send.client_message_id().clone();
    if !i.sent.insert((my_device, cmid.clone())) {
        return (
            StatusCode::ACCEPTED,
            Json(json!({ "accepted": 0, "duplicate": true })),
        )
            .into_response();
    }
    let blocked = i.blocks.contains(&(b.to_account, me));
    let n = b.send.envelopes().len();
    for e in b.send.envelopes() {
        let recipient_is_peer = !Mock::devices(&i, me).contains(&e.recipient_device);
        if blocked && recipient_is_peer {
            continue;
        }
        i.next_id += 1;
        let env = DeliveredEnvelope {
            id: EnvelopeId(i.next_id),
            sender_account: me,
            sender_device: my_device,
            server_ts: Timestamp(i.next_id as i64),
            message_type: e.message_type,
            ciphertext: e.ciphertext.clone(),
        };
        i.mailboxes
            .entry(e.recipient_device)
            .or_default()
            .push((env, cmid.clone(), my_device));
    }
    drop(i);
    m.notify.notify_waiters();
    (
        StatusCode::ACCEPTED,
        Json(json!({ "accepted": n, "duplicate": false })),
    )
        .into_response()
}

async fn stream(State(m): State<Mock>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let Some((_, device)) = m.caller(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", Value::Null);
    };
    m.inner.lock().unwrap().ws_connections += 1;
    ws.on_upgrade(move |socket| serve_socket(m, device, socket))
}

async fn serve_socket(m: Mock, device: DeviceId, mut socket: WebSocket) {
    let mut pushed: BTreeSet<EnvelopeId> = BTreeSet::new();
    loop {
        let notified = m.notify.notified();
        for f in m.frames_for(device) {
            if let ServerFrame::Envelope(e) = &f {
                if !pushed.insert(e.id) {
                    continue;
                }
            }
            let text = serde_json::to_string(&f).unwrap();
            if socket.send(Message::Text(text.into())).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = notified => {}
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => match decode_client_frame(t.as_bytes()) {
                    Ok(ClientFrame::Ack { envelope_ids }) => m.ack(device, &envelope_ids),
                    Ok(ClientFrame::Ping) => {
                        let pong = serde_json::to_string(&ServerFrame::Pong).unwrap();
                        let _ = socket.send(Message::Text(pong.into())).await;
                    }
                    Err(_) => return,
                },
                Some(Ok(_)) => {}
                _ => return,
            }
        }
    }
}

#[derive(Deserialize)]
struct Wait {
    wait_s: u64,
}

async fn poll(State(m): State<Mock>, headers: HeaderMap, Query(w): Query<Wait>) -> Response {
    let Some((_, device)) = m.caller(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", Value::Null);
    };
    m.inner.lock().unwrap().polls += 1;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(w.wait_s);
    loop {
        let notified = m.notify.notified();
        let frames = m.frames_for(device);
        if !frames.is_empty() || tokio::time::Instant::now() >= deadline {
            return Json(frames).into_response();
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

#[derive(Deserialize)]
struct AckBody {
    ids: Vec<EnvelopeId>,
}

async fn poll_ack(State(m): State<Mock>, headers: HeaderMap, Json(a): Json<AckBody>) -> Response {
    let Some((_, device)) = m.caller(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", Value::Null);
    };
    m.ack(device, &a.ids);
    StatusCode::NO_CONTENT.into_response()
}

/// Serves the mock on a loopback port; `with_ws: false` answers the
/// WebSocket path with 404, as a server without it would.
async fn start(with_ws: bool) -> (Mock, String) {
    let m = Mock::default();
    let mut app = Router::new()
        .route("/v1/keys/device", put(put_device_keys))
        .route("/v1/keys/one-time", post(upload_otks))
        .route("/v1/keys/one-time/count", get(otk_count))
        .route("/v1/keys/claim", post(claim))
        .route("/v1/messages", post(send).get(poll))
        .route("/v1/messages/ack", post(poll_ack));
    if with_ws {
        app = app.route("/v1/stream", get(stream));
    }
    let app = app.with_state(m.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (m, base)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

struct Dev {
    client: Client,
    device: Device,
    _dir: tempfile::TempDir,
}

async fn device(m: &Mock, base: &str, account: Option<AccountId>, phone: &str) -> Dev {
    let (account, token) = m.register(account, phone);
    let (_, device_id) = m.inner.lock().unwrap().tokens[&token];
    let dir = tempfile::tempdir().unwrap();
    let source = KeySource::KeyFile(dir.path().join("key"));
    let mut device =
        Device::open_or_create(&dir.path().join("state.json"), &source, account, device_id)
            .unwrap();
    let client = Client::new(base).with_token(token);
    let count = device.setup(&client).await.unwrap();
    assert!(count.remaining >= 20 && count.has_fallback, "{count:?}");
    Dev {
        client,
        device,
        _dir: dir,
    }
}

/// Lines like the CLI prints, until `n` events or 10 s.
async fn receive(d: &mut Dev, n: usize, transport: Transport) -> Vec<String> {
    let mut out = Vec::new();
    let opts = ListenOptions {
        timeout: Some(Duration::from_secs(10)),
        transport,
    };
    let end = d
        .device
        .listen(&d.client, opts, |e| {
            match e {
                Event::Message {
                    from, plaintext, ..
                } => match plaintext.kind {
                    PlaintextKind::Text { body } => {
                        out.push(format!("from {}/{}: {body}", from.account, from.device))
                    }
                    PlaintextKind::ReadReceipt { client_message_ids } => {
                        out.push(format!("read {}", client_message_ids[0]))
                    }
                },
                Event::Delivered {
                    client_message_id,
                    recipient_device,
                    ..
                } => out.push(format!(
                    "delivered {client_message_id} to {recipient_device}"
                )),
                Event::Undecryptable { code, .. } => out.push(format!("undecryptable {code}")),
                other => panic!("unexpected {other:?}"),
            }
            if out.len() >= n {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await
        .unwrap();
    assert_eq!(end, ListenEnd::Stopped, "got only {out:?}");
    out
}

#[tokio::test]
async fn two_users_two_devices_each_over_websocket_and_long_poll() {
    let (m, base) = start(true).await;
    let mut a1 = device(&m, &base, None, "+6281200000001").await;
    let alice = a1.device.account_id();
    let mut a2 = device(&m, &base, Some(alice), "+6281200000001").await;
    let mut b1 = device(&m, &base, None, "+6281200000002").await;
    let bob = b1.device.account_id();
    let mut b2 = device(&m, &base, Some(bob), "+6281200000002").await;

    // Alice writes to Bob's number: Bob's two devices and her other one.
    let phone = PhoneNumber::parse("+6281200000002", None).unwrap();
    let sent = a1
        .device
        .send_text(&a1.client, &Recipient::Phone(phone.clone()), "hello bob")
        .await
        .unwrap();
    assert_eq!(
        (sent.to_account, sent.devices, sent.duplicate),
        (bob, 3, false)
    );
    let line = format!("from {alice}/{}: hello bob", a1.device.device_id());
    assert_eq!(
        receive(&mut b1, 1, Transport::Auto).await,
        vec![line.clone()]
    );
    {
        let i = m.inner.lock().unwrap();
        assert_eq!((i.ws_connections, i.polls), (1, 0));
    }
    assert_eq!(
        receive(&mut b2, 1, Transport::LongPoll).await,
        vec![line.clone()]
    );
    assert!(m.inner.lock().unwrap().polls >= 1);
    assert_eq!(receive(&mut a2, 1, Transport::Auto).await, vec![line]);

    // Server delivery receipts, one per device, reach the sender.
    let mut receipts = receive(&mut a1, 3, Transport::Auto).await;
    receipts.sort();
    let mut want: Vec<String> = [&b1, &b2, &a2]
        .iter()
        .map(|d| {
            format!(
                "delivered {} to {}",
                sent.client_message_id,
                d.device.device_id()
            )
        })
        .collect();
    want.sort();
    assert_eq!(receipts, want);

    // Bob answers from his first device (an existing session with a1; new
    // ones with a2 and b2), and a read receipt follows as an E2E message.
    let claims_before = m.inner.lock().unwrap().claims;
    let reply = b1
        .device
        .send_text(&b1.client, &Recipient::Account(alice), "hi alice")
        .await
        .unwrap();
    assert_eq!(reply.devices, 3);
    b1.device
        .send_read_receipt(&b1.client, alice, vec![sent.client_message_id.clone()])
        .await
        .unwrap();
    assert!(m.inner.lock().unwrap().claims > claims_before);
    for d in [&mut a1, &mut a2] {
        let got = receive(d, 2, Transport::Auto).await;
        assert_eq!(
            got,
            vec![
                format!("from {bob}/{}: hi alice", b1.device.device_id()),
                format!("read {}", sent.client_message_id),
            ]
        );
    }
    // A second message reuses every session: no claim at all.
    let claims_before = m.inner.lock().unwrap().claims;
    a1.device
        .send_text(&a1.client, &Recipient::Phone(phone), "again")
        .await
        .unwrap();
    assert_eq!(m.inner.lock().unwrap().claims, claims_before);
    assert_eq!(receive(&mut b2, 1, Transport::Auto).await.len(), 1);

    // A new device of Bob: the first send is refused as stale, the SDK
    // claims again and retries once.
    let mut b3 = device(&m, &base, Some(bob), "+6281200000002").await;
    let s = a1
        .device
        .send_text(&a1.client, &Recipient::Account(bob), "three devices")
        .await
        .unwrap();
    assert_eq!(s.devices, 4);
    assert_eq!(
        receive(&mut b3, 1, Transport::Auto).await,
        vec![format!(
            "from {alice}/{}: three devices",
            a1.device.device_id()
        )]
    );
}

#[tokio::test]
async fn state_survives_reopening_and_retry_with_the_same_id_is_a_duplicate() {
    let (m, base) = start(false).await;
    let mut a1 = device(&m, &base, None, "+6281200000011").await;
    let mut b1 = device(&m, &base, None, "+6281200000012").await;
    let bob = b1.device.account_id();
    let p = accord_client::messaging::Plaintext {
        client_message_id: ClientMessageId::parse("retry-1").unwrap(),
        sent_at: Timestamp(5),
        kind: PlaintextKind::Text {
            body: "once".into(),
        },
    };
    let first = a1
        .device
        .send_plaintext(&a1.client, &Recipient::Account(bob), &p)
        .await
        .unwrap();
    let again = a1
        .device
        .send_plaintext(&a1.client, &Recipient::Account(bob), &p)
        .await
        .unwrap();
    assert!(!first.duplicate && again.duplicate);

    // No WebSocket on this server: listen falls back to long-poll.
    let got = receive(&mut b1, 1, Transport::Auto).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(m.inner.lock().unwrap().polls >= 1);

    // Reopen Bob's device from disk: the session is still there, so Alice's
    // next message (a pre-key message of the same session) decrypts.
    let path = b1.device.path().to_owned();
    let source = KeySource::KeyFile(path.parent().unwrap().join("key"));
    b1.device = Device::open(&path, &source).unwrap();
    a1.device
        .send_text(&a1.client, &Recipient::Account(bob), "twice")
        .await
        .unwrap();
    let got = receive(&mut b1, 1, Transport::LongPoll).await;
    assert!(got[0].ends_with(": twice"), "{got:?}");

    // An ack is lost: the envelope comes again, is acked, and is not
    // handed over a second time.
    m.inner.lock().unwrap().drop_acks = true;
    a1.device
        .send_text(&a1.client, &Recipient::Account(bob), "lost ack")
        .await
        .unwrap();
    let got = receive(&mut b1, 1, Transport::LongPoll).await;
    assert!(got[0].ends_with(": lost ack"), "{got:?}");
    m.inner.lock().unwrap().drop_acks = false;
    let opts = ListenOptions {
        timeout: Some(Duration::from_millis(1500)),
        transport: Transport::LongPoll,
    };
    let end = b1
        .device
        .listen(&b1.client, opts, |e| panic!("handed over twice: {e:?}"))
        .await
        .unwrap();
    assert_eq!(end, ListenEnd::TimedOut);
    let b1_device = b1.device.device_id();
    assert!(m.inner.lock().unwrap().mailboxes[&b1_device].is_empty());
}

#[tokio::test]
async fn exhausted_one_time_keys_fall_back_and_are_replenished() {
    let (m, base) = start(true).await;
    let mut b1 = device(&m, &base, None, "+6281200000022").await;
    let bob = b1.device.account_id();
    // Others take every one-time key of Bob's device.
    let n = m.inner.lock().unwrap().otks[&b1.device.device_id()].len();
    m.inner
        .lock()
        .unwrap()
        .otks
        .get_mut(&b1.device.device_id())
        .unwrap()
        .clear();
    let mut a1 = device(&m, &base, None, "+6281200000021").await;
    a1.device
        .send_text(&a1.client, &Recipient::Account(bob), "via fallback")
        .await
        .unwrap();
    let got = receive(&mut b1, 1, Transport::Auto).await;
    assert!(got[0].ends_with(": via fallback"), "{got:?}");
    // Listening replenished the one-time keys.
    let count = b1.device.key_count(&b1.client).await.unwrap();
    assert!(count.remaining as usize >= n.min(20), "{count:?}");
}
