//! The device SDK, `accord_client::messaging`, against the real messenger (router, relay,
//! SQLite mailboxes) on a loopback port: key publication, claiming,
//! fan-out, the stale-device retry, WebSocket and long-poll delivery, acks,
//! delivery receipts, idempotent retries and the fallback key. The layer
//! in front of the server (see `server.rs`) only counts requests and
//! injects two faults (no WebSocket; lost acks). The CLI's `tests/msg.rs`
//! runs the same flows through the `accord` binary. These tests live here,
//! not in `accord-client`, so that the SDK has no dependency, not even a
//! dev-dependency, on the server's axum and sqlx.

mod business;
mod kt;
mod server;

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use accord_client::messaging::{
    ClientMessageId, Device, Event, KeySource, ListenEnd, ListenOptions, MessagingError,
    PlaintextKind, Recipient, Transport, EMPTY_CLAIM_BACKOFF,
};
use accord_client::Client;
use accord_domain::{PhoneNumber, SimulatedClock, Timestamp};
use accord_e2e::ServerFrame;
use accord_messenger_wire::{ClaimRequest, Claimed};
use reqwest::Method;
use server::Server;

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

struct Dev {
    client: Client,
    device: Device,
    _dir: tempfile::TempDir,
}

/// A new device for `phone` (a new account, or one more device of the
/// account that has the number), its keys published.
async fn device(server: &Server, phone: &str) -> Dev {
    let (client, reg) = server.register(phone).await;
    let dir = tempfile::tempdir().unwrap();
    let source = KeySource::KeyFile(dir.path().join("key"));
    let mut device = Device::open_or_create(
        &dir.path().join("state.json"),
        &source,
        reg.account_id,
        reg.device_id,
    )
    .unwrap();
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
                    PlaintextKind::Template { params } => {
                        out.push(format!("template {}", params.join("|")))
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
    let server = Server::start().await;
    let seen = &server.observed;
    let mut a1 = device(&server, "+6281200000001").await;
    let alice = a1.device.account_id();
    let mut a2 = device(&server, "+6281200000001").await;
    assert_eq!(a2.device.account_id(), alice);
    let mut b1 = device(&server, "+6281200000002").await;
    let bob = b1.device.account_id();
    let mut b2 = device(&server, "+6281200000002").await;
    assert_eq!(b2.device.account_id(), bob);

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
    assert_eq!(
        (seen.count("GET /v1/stream"), seen.count("GET /v1/messages")),
        (1, 0)
    );
    assert_eq!(
        receive(&mut b2, 1, Transport::LongPoll).await,
        vec![line.clone()]
    );
    assert!(seen.count("GET /v1/messages") >= 1);
    assert_eq!(receive(&mut a2, 1, Transport::Auto).await, vec![line]);

    // Server delivery receipts, one per device, reach the sender.
    let delivered = |d: &Dev| {
        format!(
            "delivered {} to {}",
            sent.client_message_id,
            d.device.device_id()
        )
    };
    let mut receipts = receive(&mut a1, 3, Transport::Auto).await;
    receipts.sort();
    let mut want: Vec<String> = [&b1, &b2, &a2].into_iter().map(delivered).collect();
    want.sort();
    assert_eq!(receipts, want);
    // They reach the sender's other devices too (a2 read only the message
    // so far), but never a device's receipt of its own ack.
    let mut receipts = receive(&mut a2, 2, Transport::Auto).await;
    receipts.sort();
    let mut want: Vec<String> = [&b1, &b2].into_iter().map(delivered).collect();
    want.sort();
    assert_eq!(receipts, want);

    // Bob answers from his first device (an existing session with a1; new
    // ones with a2 and b2), and a read receipt follows as an E2E message.
    let claims_before = seen.count("POST /v1/keys/claim");
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
    assert!(seen.count("POST /v1/keys/claim") > claims_before);
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
    let claims_before = seen.count("POST /v1/keys/claim");
    a1.device
        .send_text(&a1.client, &Recipient::Phone(phone), "again")
        .await
        .unwrap();
    assert_eq!(seen.count("POST /v1/keys/claim"), claims_before);
    assert_eq!(receive(&mut b2, 1, Transport::Auto).await.len(), 1);

    // A new device of Bob: the first send is refused as stale, the SDK
    // claims again and retries once.
    let mut b3 = device(&server, "+6281200000002").await;
    let sends_before = seen.count("POST /v1/messages");
    let s = a1
        .device
        .send_text(&a1.client, &Recipient::Account(bob), "three devices")
        .await
        .unwrap();
    assert_eq!(s.devices, 4);
    assert_eq!(seen.count("POST /v1/messages"), sends_before + 2);
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
    let server = Server::start().await;
    let seen = &server.observed;
    seen.no_stream.store(true, Ordering::SeqCst);
    let mut a1 = device(&server, "+6281200000011").await;
    let mut b1 = device(&server, "+6281200000012").await;
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
    assert!(seen.count("GET /v1/stream") >= 1);
    assert!(seen.count("GET /v1/messages") >= 1);

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
    seen.drop_acks.store(true, Ordering::SeqCst);
    a1.device
        .send_text(&a1.client, &Recipient::Account(bob), "lost ack")
        .await
        .unwrap();
    let got = receive(&mut b1, 1, Transport::LongPoll).await;
    assert!(got[0].ends_with(": lost ack"), "{got:?}");
    seen.drop_acks.store(false, Ordering::SeqCst);
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
    // Nothing is left in the mailbox.
    let left: Vec<ServerFrame> = b1
        .client
        .request(Method::GET, "/v1/messages?wait_s=0", None)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn exhausted_one_time_keys_fall_back_and_are_replenished() {
    let server = Server::start().await;
    let mut b1 = device(&server, "+6281200000022").await;
    let bob = b1.device.account_id();
    // Others take every one-time key of Bob's device.
    let n = b1.device.key_count(&b1.client).await.unwrap().remaining;
    let (carol, _) = server.register("+6281200000023").await;
    for _ in 0..n {
        let c: Claimed = carol
            .request(
                Method::POST,
                "/v1/keys/claim",
                Some(&serde_json::json!(ClaimRequest::account(bob))),
            )
            .await
            .unwrap();
        assert_eq!(c.devices.len(), 1);
    }
    let count = b1.device.key_count(&b1.client).await.unwrap();
    assert_eq!((count.remaining, count.has_fallback), (0, true));
    let mut a1 = device(&server, "+6281200000021").await;
    a1.device
        .send_text(&a1.client, &Recipient::Account(bob), "via fallback")
        .await
        .unwrap();
    let got = receive(&mut b1, 1, Transport::Auto).await;
    assert!(got[0].ends_with(": via fallback"), "{got:?}");
    // Listening replenished the one-time keys.
    let count = b1.device.key_count(&b1.client).await.unwrap();
    assert!(count.remaining >= n.min(20), "{count:?}");
}

/// An empty device list (Bob registered but has not published keys) is
/// never trusted from the cache: the sender claims again, but not before
/// the backoff since the last empty claim has passed (5 s, then doubling).
/// A copy to the sender's other device alone is not a send: the error is
/// `NoDevices` while Bob has none.
#[tokio::test]
async fn an_empty_device_list_is_claimed_again_after_a_backoff() {
    let server = Server::start().await;
    let seen = &server.observed;
    let clock = SimulatedClock::frozen_at(Timestamp(1_700_000_000_000));
    let Dev {
        client,
        device: d,
        _dir,
    } = device(&server, "+6281200000031").await;
    let mut a1 = Dev {
        client,
        device: d.with_clock(Arc::new(clock.clone())),
        _dir,
    };
    let mut a2 = device(&server, "+6281200000031").await;
    let (bob_client, bob) = server.register("+6281200000032").await;
    let to = Recipient::Phone(PhoneNumber::parse("+6281200000032", None).unwrap());
    let claims = || seen.count("POST /v1/keys/claim");
    let pause = i64::try_from(EMPTY_CLAIM_BACKOFF.as_millis()).unwrap();

    let before = claims();
    let r = a1.device.send_text(&a1.client, &to, "too early").await;
    assert!(matches!(r, Err(MessagingError::NoDevices)), "{r:?}");
    assert!(claims() > before);
    let before = claims();
    // In the pause: no claim, the same answer.
    clock.advance_millis(pause - 1);
    let r = a1.device.send_text(&a1.client, &to, "too early").await;
    assert!(matches!(r, Err(MessagingError::NoDevices)), "{r:?}");
    assert_eq!(claims(), before);
    // After it: one claim (still nothing), and the next pause is twice as
    // long.
    clock.advance_millis(1);
    let r = a1.device.send_text(&a1.client, &to, "too early").await;
    assert!(matches!(r, Err(MessagingError::NoDevices)), "{r:?}");
    assert_eq!(claims(), before + 1);
    clock.advance_millis(pause);
    let r = a1.device.send_text(&a1.client, &to, "too early").await;
    assert!(matches!(r, Err(MessagingError::NoDevices)), "{r:?}");
    assert_eq!(claims(), before + 1);

    // Bob publishes his keys; once the pause is over, the next send
    // reaches him (and Alice's other device).
    let dir = tempfile::tempdir().unwrap();
    let mut b1 = Dev {
        device: Device::create(
            &dir.path().join("state.json"),
            &KeySource::KeyFile(dir.path().join("key")),
            bob.account_id,
            bob.device_id,
        )
        .unwrap(),
        client: bob_client,
        _dir: dir,
    };
    b1.device.setup(&b1.client).await.unwrap();
    clock.advance_millis(pause);
    let sent = a1.device.send_text(&a1.client, &to, "now").await.unwrap();
    assert_eq!((sent.to_account, sent.devices), (bob.account_id, 2));
    let line = format!(
        "from {}/{}: now",
        a1.device.account_id(),
        a1.device.device_id()
    );
    assert_eq!(
        receive(&mut b1, 1, Transport::Auto).await,
        vec![line.clone()]
    );
    assert_eq!(receive(&mut a2, 1, Transport::Auto).await, vec![line]);
}
