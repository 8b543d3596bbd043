//! Crash test: the real `accord serve --dev` binary is SIGKILLed during a
//! burst of E2E sends and restarted on the same data directory; every send
//! that had been answered 202 is delivered exactly once, and retrying it
//! after the restart is recognised as a duplicate.

use accord_domain::{AccountId, DeviceId};
use accord_messenger::accord_e2e::{
    Ciphertext, ClientMessageId, E2eMachine, Envelope, OlmMessageType, SendRequest,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_accord"))
        .args(["serve", "--dev", "--services", "messenger", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir)
        .env("ACCORD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the accord binary starts")
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not come up");
}

struct Dev {
    token: String,
    account: AccountId,
    device: DeviceId,
}

async fn register(http: &reqwest::Client, base: &str, phone: &str) -> Dev {
    let s: Value = http
        .post(format!("{base}/v1/registrations"))
        .json(&json!({ "phone": phone }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = s["registration_id"].as_str().unwrap();
    let r: Value = http
        .post(format!("{base}/v1/registrations/{id}/verify"))
        .json(&json!({
            "code": s["dev_code"],
            "device": {"os": "android", "os_version": "15", "model": "x", "app_version": "1", "locale": "en"}
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dev = Dev {
        token: r["token"].as_str().expect("registered").to_owned(),
        account: AccountId::parse(r["account_id"].as_str().unwrap()).unwrap(),
        device: DeviceId::parse(r["device_id"].as_str().unwrap()).unwrap(),
    };
    let keys = E2eMachine::new(dev.device).device_keys();
    let st = http
        .put(format!("{base}/v1/keys/device"))
        .bearer_auth(&dev.token)
        .json(&keys)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st.as_u16(), 204);
    dev
}

fn body(to: AccountId, device: DeviceId, cmid: &str) -> Value {
    let env = Envelope {
        recipient_device: device,
        message_type: OlmMessageType::Normal,
        ciphertext: Ciphertext::from_bytes(format!("crash:{cmid}").into_bytes()).unwrap(),
    };
    let send = SendRequest::new(ClientMessageId::parse(cmid).unwrap(), vec![env]).unwrap();
    json!({"to_account": to, "send": send})
}

async fn post(http: &reqwest::Client, base: &str, from: &Dev, body: &Value) -> Option<Value> {
    let r = http
        .post(format!("{base}/v1/messages"))
        .bearer_auth(&from.token)
        .json(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if r.status().as_u16() != 202 {
        return None;
    }
    r.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_send_survives_a_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut child = start(dir.path(), port);
    wait_ready(&http, &base).await;

    let recipient = register(&http, &base, "+6281234567001").await;
    let mut senders = Vec::new();
    for i in 0..4 {
        let s = register(&http, &base, &format!("+62812345671{i:02}")).await;
        // The recipient writes first, so the senders are not unknown to it.
        let hello = body(s.account, s.device, &format!("hello-{i}"));
        assert!(post(&http, &base, &recipient, &hello).await.is_some());
        senders.push(Arc::new(s));
    }

    // The burst: 4 senders x 150 messages; kill after ~150 were answered.
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for (i, s) in senders.iter().enumerate() {
        let (http, base, s, acked) = (http.clone(), base.clone(), s.clone(), acked.clone());
        let (to, dev) = (recipient.account, recipient.device);
        tasks.push(tokio::spawn(async move {
            for k in 0..150 {
                let cmid = format!("s{i}-m{k}");
                if post(&http, &base, &s, &body(to, dev, &cmid))
                    .await
                    .is_some()
                {
                    acked.lock().unwrap().insert(cmid);
                } else {
                    return;
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 150 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 150,
        "the burst was running when the server died"
    );

    let mut child = start(dir.path(), port);
    wait_ready(&http, &base).await;
    // Retrying an acknowledged send after the restart is a duplicate.
    let first = acked.iter().next().unwrap().clone();
    let (i, _) = first[1..].split_once('-').unwrap();
    let s = &senders[i.parse::<usize>().unwrap()];
    let retry = post(
        &http,
        &base,
        s,
        &body(recipient.account, recipient.device, &first),
    )
    .await
    .expect("accepted");
    assert_eq!(retry["duplicate"], true);

    // Drain the recipient's mailbox by long-poll and ack.
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    loop {
        let frames: Vec<Value> = http
            .get(format!("{base}/v1/messages?wait_s=0"))
            .bearer_auth(&recipient.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids: Vec<u64> = frames
            .iter()
            .filter_map(|f| {
                let ct = Ciphertext::from_base64(f["ciphertext"].as_str()?).ok()?;
                let text = String::from_utf8(ct.into_bytes()).ok()?;
                *seen
                    .entry(text.trim_start_matches("crash:").to_owned())
                    .or_default() += 1;
                f["id"].as_u64()
            })
            .collect();
        if frames.is_empty() {
            break;
        }
        let st = http
            .post(format!("{base}/v1/messages/ack"))
            .bearer_auth(&recipient.token)
            .json(&json!({ "ids": ids }))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(st.as_u16(), 200);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for cmid in &acked {
        assert_eq!(
            seen.get(cmid),
            Some(&1),
            "{cmid} was acknowledged: delivered exactly once"
        );
    }
    assert!(seen.values().all(|n| *n == 1), "nothing is delivered twice");
}
