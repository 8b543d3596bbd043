//! Business messaging as its people run it, every command a process: the
//! real `accord serve --dev`, a business that registers, submits a
//! template and runs `accord business agent`, an operator who approves
//! and verifies, and a user who opts in, receives, mutes and lists. The
//! agent's local API answers in the hosted APIs' shape, bad input gets a
//! stable code and exit 2, and no plaintext reaches any file or log.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

const SHOP: &str = "+6281355500001";
const USER: &str = "+6281355500002";
const STRANGER: &str = "+6281355500003";

/// Each request a receiver got: its signature header and raw body.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A webhook receiver on loopback: every request's signature header and
/// body; answers 200.
fn receiver() -> (String, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Received = Arc::default();
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let sink = sink.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(stream.try_clone().unwrap());
                let (mut len, mut sig) = (0usize, String::new());
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.trim_end().to_ascii_lowercase();
                    if l.is_empty() {
                        break;
                    }
                    if let Some(v) = l.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if let Some(v) = l.strip_prefix("x-hub-signature-256:") {
                        sig = v.trim().to_owned();
                    }
                }
                let mut body = vec![0u8; len];
                if r.read_exact(&mut body).is_ok() {
                    sink.lock().unwrap().push((sig, body));
                }
                let mut w = stream;
                let _ = w.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            });
        }
    });
    (url, got)
}

/// `accord business agent` in the background; its base URL.
#[test]
fn a_business_sends_through_its_agent_and_a_user_controls_it() {
    let server = Server::start();
    let data = server.data.path().to_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let shop = register(&server, dir.path(), "shop", SHOP);
    let user = register(&server, dir.path(), "user", USER);
    let admin = ["--server", server.url.as_str(), "--data-dir", data.as_str()];

    let out = ok(&[
        "business",
        "register",
        "--session",
        shop.s(),
        "--name",
        "Toko <b>Sinar</b>",
    ]);
    assert!(
        out.contains("API key") && !out.contains("acb_"),
        "the key is saved, not printed: {out}"
    );
    let out = ok(&[
        "business",
        "templates",
        "submit",
        "--session",
        shop.s(),
        "--name",
        "order_receipt",
        "--category",
        "utility",
        "--body",
        "Order {{1}} paid: {{2}}",
    ]);
    assert!(
        out.contains("version 1 submitted (2 parameters): pending"),
        "{out}"
    );
    let mut args = vec!["admin", "templates"];
    args.extend_from_slice(&admin);
    let queue = ok(&args);
    let id = queue
        .split_whitespace()
        .next()
        .expect("a pending template")
        .to_owned();
    let mut args = vec![
        "admin",
        "review-template",
        id.as_str(),
        "--decision",
        "approve",
    ];
    args.extend_from_slice(&admin);
    assert!(ok(&args).contains("approved"));
    let mut args = vec!["admin", "verify-business", shop.account.as_str()];
    args.extend_from_slice(&admin);
    ok(&args);

    // The user has not opted in: the agent cannot reach the number.
    // The agent also forwards statuses and users' messages to the
    // business's own endpoint (no public endpoint needed).
    let (hook, forwarded) = receiver();
    let (mut agent_child, url) = agent(
        &shop,
        &[
            "--forward-webhook",
            hook.as_str(),
            "--webhook-secret",
            "s3cr3t-forward",
        ],
    );
    let send = |to: &str, extra: &[&str]| {
        let mut args = vec![
            "business",
            "send",
            "--session",
            shop.s(),
            "--agent",
            url.as_str(),
            "--to",
            to,
        ];
        args.extend_from_slice(extra);
        accord(&args)
    };
    let receipt = [
        "--template",
        "order_receipt",
        "--param",
        "A-17",
        "--param",
        "Rp 50.000",
    ];
    let (code, _, err) = send(USER, &receipt);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown_recipient"), "{err}");
    // A stranger (no account) gets the very same answer.
    let (_, _, err2) = send(STRANGER, &receipt);
    assert!(err2.contains("unknown_recipient"), "{err2}");

    let out = ok(&[
        "business",
        "optin",
        "--session",
        user.s(),
        "--business",
        SHOP,
    ]);
    assert!(
        out.contains("✓ Toko <b>Sinar</b>: may send utility, authentication"),
        "{out}"
    );
    let (code, out, err) = send(USER, &receipt);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("sent "), "{out}");
    let listened = listen(&user, 1);
    assert!(
        listened
            .iter()
            .any(|l| l.contains("[✓ Toko <b>Sinar</b>] utility: Order A-17 paid: Rp 50.000")),
        "{listened:?}"
    );

    // Bad input: each a stable code, exit 2, nothing sent.
    for (extra, code_name) in [
        (
            vec!["--template", "order_receipt", "--param", "A-18"],
            "param_count",
        ),
        (
            vec!["--template", "nope", "--param", "x"],
            "template_not_approved",
        ),
    ] {
        let (code, _, err) = send(USER, &extra);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(code_name), "{code_name}: {err}");
    }
    let long = "x".repeat(1025);
    let (code, _, err) = send(
        USER,
        &[
            "--template",
            "order_receipt",
            "--param",
            &long,
            "--param",
            "1",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("param_too_long"), "{err}");
    let (code, _, err) = send(USER, &["--text", "CANARY-BUSINESS-7731"]);
    assert_eq!(code, 2);
    assert!(err.contains("outside_service_window"), "{err}");

    // The user writes; the business replies in the window.
    ok(&[
        "msg",
        "send",
        "--session",
        user.s(),
        "--to",
        SHOP,
        "CANARY-USER-5521 where is it?",
    ]);
    let (code, out, err) = send(USER, &["--text", "CANARY-BUSINESS-7731 on its way"]);
    assert_eq!(code, 0, "{out}{err}");
    // The agent's delivery receipt of the user's message, and the reply.
    let listened = listen(&user, 2);
    assert!(
        listened
            .iter()
            .any(|l| l.contains("service: CANARY-BUSINESS-7731 on its way")),
        "{listened:?}"
    );

    // Mute, and the list says why.
    ok(&[
        "business",
        "mute",
        "--session",
        user.s(),
        "--business",
        SHOP,
        "--category",
        "utility",
    ]);
    let (code, _, err) = send(USER, &receipt);
    assert_eq!(code, 2);
    assert!(err.contains("muted_by_user"), "{err}");
    let out = ok(&["business", "list", "--session", user.s()]);
    assert!(
        out.contains("you muted: utility") && out.contains("it may reply freely until"),
        "{out}"
    );
    let out = ok(&["business", "status", "--session", shop.s()]);
    assert!(
        out.contains("quality green") && out.contains("tier 0 (250 users / 24 h)"),
        "{out}"
    );

    // What the agent forwarded: signed; the statuses of its sends, the
    // delivery receipts, and the user's message, decrypted.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let want = |all: &str| {
        all.contains("\"status\":\"sent\"")
            && all.contains("\"status\":\"delivered\"")
            && all.contains("muted_by_user")
            && all.contains("CANARY-USER-5521 where is it?")
    };
    let mut all = String::new();
    while std::time::Instant::now() < deadline {
        let got = forwarded.lock().unwrap().clone();
        all = got
            .iter()
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .collect();
        for (sig, body) in &got {
            assert!(
                accord_crypto::mac::verify_hub_signature(b"s3cr3t-forward", body, sig),
                "a forward is signed over its raw body"
            );
        }
        if want(&all) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(want(&all), "{all}");
    let _ = agent_child.kill();
    let _ = agent_child.wait();
    // No plaintext in any file of the server's or the devices' directories,
    // nor in the server's log.
    let log = server.log.lock().unwrap().clone();
    for canary in ["CANARY-BUSINESS-7731", "CANARY-USER-5521", "Rp 50.000"] {
        assert!(!log.contains(canary), "{canary} in the log");
        for root in [server.data.path(), dir.path()] {
            for (path, bytes) in files_under(root) {
                assert!(
                    !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                    "{canary} in {}",
                    path.display()
                );
            }
        }
    }
}
