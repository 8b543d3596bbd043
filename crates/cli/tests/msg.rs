//! `accord msg`, `accord block` and `accord unblock` as users run them:
//! the real `accord serve --dev` on loopback ports with a fresh data
//! directory, two users with two devices each, every command a process.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

const ALICE: &str = "+6281234567890";
const BOB: &str = "+6281298765432";
/// Bob's number in national format (with `--region ID`).
const BOB_NATIONAL: &str = "0812-9876-5432";

/// Two messenger nodes on one PostgreSQL database (`--database-url`),
/// joined by NATS (`--nats-url`): a message sent through node A reaches a
/// device already listening on node B at once, since A's commit wakes B's
/// connection. Needs PostgreSQL and NATS on 127.0.0.1 (`scripts/services`);
/// `ACCORD_SKIP_NATS=1` skips it.
#[test]
fn two_nodes_on_one_postgres_wake_each_other_through_nats() {
    // Wake-ups on the shared subject prefix; no resync for the test's
    // length, so only a wake-up delivers in time.
    let prefix = format!("accord.test.{}", uuid::Uuid::new_v4().simple());
    across_two_nodes(&prefix, &prefix, "3600");
}

/// Core NATS delivers at most once. Here every wake-up is lost (the nodes
/// publish and listen on different prefixes): the periodic mailbox
/// re-read still delivers within its interval.
#[test]
fn a_lost_nats_wake_up_is_made_good_by_the_resync() {
    let run = uuid::Uuid::new_v4().simple().to_string();
    across_two_nodes(
        &format!("accord.test.{run}.a"),
        &format!("accord.test.{run}.b"),
        "2",
    );
}

/// Two `serve --services messenger` processes on one fresh PostgreSQL
/// database, with NATS: Bob listens on node B, Alice sends through node
/// A, Bob's listener gets it within 10 s.
fn across_two_nodes(prefix_a: &str, prefix_b: &str, resync_s: &str) {
    if std::env::var("ACCORD_SKIP_NATS").as_deref() == Ok("1") {
        return;
    }
    let pg = std::env::var("ACCORD_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let nats =
        std::env::var("ACCORD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let name = format!("accord_test_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{pg}/{name}");
    // The nodes share the key directory's keys (each has a data
    // directory of its own).
    let kt_keys = tempfile::tempdir().unwrap();
    let node = |prefix: &str| {
        Server::start_with(&[
            "--kt-key-dir",
            kt_keys.path().to_str().unwrap(),
            "--services",
            "messenger",
            "--database-url",
            &url,
            "--nats-url",
            &nats,
            "--nats-prefix",
            prefix,
            "--nats-resync-s",
            resync_s,
        ])
    };
    let result = std::panic::catch_unwind(|| {
        let (a, b) = (node(prefix_a), node(prefix_b));
        let dir = tempfile::tempdir().unwrap();
        let alice = register(&a, dir.path(), "alice", ALICE);
        let bob = register(&b, dir.path(), "bob", BOB);
        for d in [&alice, &bob] {
            let (code, out, err) = accord(&["msg", "keys", "--session", d.s()]);
            assert_eq!(code, 0, "{out}\n{err}");
        }
        let args = listen_args(&bob, 1);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let listener = spawn(&args);
        // Let Bob's stream connect to node B and read its (empty) mailbox.
        std::thread::sleep(std::time::Duration::from_secs(2));
        let sent_at = std::time::Instant::now();
        let (code, out, err) = accord(&[
            "msg",
            "send",
            "--session",
            alice.s(),
            "--to",
            BOB,
            "across nodes",
        ]);
        assert_eq!(code, 0, "{out}\n{err}");
        let (code, out, err) = finish(listener);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            out.trim(),
            format!("from {}/{}: across nodes", alice.account, alice.device)
        );
        // Without a wake-up or a resync, B's idle stream would not look
        // before a reconnect; the listener gives up after 30 s.
        assert!(
            sent_at.elapsed() < std::time::Duration::from_secs(10),
            "delivered only after {:?}",
            sent_at.elapsed()
        );
    });
    drop_pg_database(&pg, &format!("{name}_messenger"));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn drop_pg_database(pg: &str, db: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Executor;
        let Ok(pool) = sqlx::PgPool::connect(&format!("{pg}/postgres")).await else {
            return;
        };
        let _ = pool
            .execute(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)").as_str())
            .await;
    });
}

/// Receipts go to every device of the sending account; a device reports
/// each one once, and never the receipt of its own ack.
#[test]
fn two_users_two_devices_send_listen_receipts_block_unblock() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let a1 = register(&server, dir.path(), "a1", ALICE);
    let a2 = register(&server, dir.path(), "a2", ALICE);
    let b1 = register(&server, dir.path(), "b1", BOB);
    let b2 = register(&server, dir.path(), "b2", BOB);
    assert_eq!(a1.account, a2.account);
    assert_eq!(b1.account, b2.account);
    // Each device sees its sibling in the key directory as a device it
    // never added (the warning of a device slipped into the account), until
    // its user accepts it.
    for (d, sibling) in [(&a1, &a2), (&a2, &a1), (&b1, &b2), (&b2, &b1)] {
        let (code, out, err) = accord(&["msg", "audit", "--session", d.s()]);
        assert_eq!(code, 1, "{out}\n{err}");
        assert!(err.contains(&sibling.device), "{err}");
        let (code, out, err) = accord(&[
            "msg",
            "audit",
            "--session",
            d.s(),
            "--accept-device",
            &sibling.device,
        ]);
        assert_eq!(code, 0, "{out}\n{err}");
    }
    let from = |d: &Dev, text: &str| format!("from {}/{}: {text}", d.account, d.device);
    let delivered = |id: &str, d: &Dev| format!("delivered {id} to {}", d.device);

    // Every device published its keys as it registered; `msg keys` tops
    // them up.
    for d in [&a1, &a2, &b1, &b2] {
        let (code, out, err) = accord(&["msg", "keys", "--session", d.s()]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(
            out.contains("one-time keys on the server, fallback key: yes"),
            "{out}"
        );
    }

    // 1. Bob's first device is already listening when Alice sends from a1 to
    //    Bob's national number: Bob's two devices and Alice's other one.
    let args = listen_args(&b1, 1);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b1_listener = spawn(&args);
    let (code, out, err) = accord(&[
        "msg",
        "send",
        "--session",
        a1.s(),
        "--to",
        BOB_NATIONAL,
        "--region",
        "ID",
        "hello bob",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (h, n) = sent_id(&out);
    assert_eq!(n, 3);
    let (code, out, err) = finish(b1_listener);
    assert_eq!(
        (code, out.trim()),
        (0, from(&a1, "hello bob").as_str()),
        "{err}"
    );
    assert_eq!(listen(&b2, 1), vec![from(&a1, "hello bob")]);
    assert_eq!(
        sorted(listen(&a2, 3)),
        sorted(vec![
            from(&a1, "hello bob"),
            delivered(&h, &b1),
            delivered(&h, &b2),
        ])
    );
    assert_eq!(
        sorted(listen(&a1, 3)),
        sorted(vec![
            delivered(&h, &b1),
            delivered(&h, &b2),
            delivered(&h, &a2)
        ])
    );

    // 2. Bob answers by account id from b2; Alice reads it on a1 and sends
    //    an end-to-end read receipt.
    let (code, out, err) = accord(&[
        "msg",
        "send",
        "--session",
        b2.s(),
        "--to",
        &a1.account,
        "hi alice",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (i, n) = sent_id(&out);
    assert_eq!(n, 3);
    let mut args = listen_args(&a1, 1);
    args.push("--read-receipts".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = accord(&args);
    assert_eq!(
        (code, out.trim()),
        (0, from(&b2, "hi alice").as_str()),
        "{err}"
    );
    let r = err
        .lines()
        .find_map(|l| l.strip_prefix("read receipt "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no read receipt sent: {err}"))
        .to_owned();
    let read = format!("read {i} by {}/{}", a1.account, a1.device);
    assert_eq!(listen(&a2, 2), vec![from(&b2, "hi alice"), read.clone()]);
    assert_eq!(
        sorted(listen(&b1, 4)),
        sorted(vec![
            from(&b2, "hi alice"),
            delivered(&i, &a1),
            read.clone(),
            delivered(&i, &a2),
        ])
    );
    assert_eq!(
        sorted(listen(&b2, 4)),
        sorted(vec![
            delivered(&i, &a1),
            read,
            delivered(&i, &a2),
            delivered(&i, &b1),
        ])
    );

    // 3. Bob blocks Alice (by number): her message is accepted but reaches
    //    neither of his devices, and no receipt comes back from them.
    let (code, out, err) = accord(&["block", "--session", b1.s(), ALICE]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("blocked {}", a1.account).as_str()),
        "{err}"
    );
    let (code, out, err) = accord(&[
        "msg",
        "send",
        "--session",
        a1.s(),
        "--to",
        BOB,
        "are you there",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (x, _) = sent_id(&out);
    for d in [&b1, &b2] {
        let (code, out, err) = accord(&[
            "msg",
            "listen",
            "--session",
            d.s(),
            "--count",
            "1",
            "--timeout-s",
            "2",
        ]);
        assert_eq!((code, out.as_str()), (1, ""), "{err}");
        assert!(err.contains("timed out"), "{err}");
    }
    // Alice's other device still gets her copy (after the receipts of her
    // read receipt).
    assert_eq!(
        sorted(listen(&a2, 3)),
        sorted(vec![
            delivered(&r, &b1),
            delivered(&r, &b2),
            from(&a1, "are you there"),
        ])
    );
    assert_eq!(
        sorted(listen(&a1, 4)),
        sorted(vec![
            delivered(&r, &a2),
            delivered(&r, &b1),
            delivered(&r, &b2),
            delivered(&x, &a2),
        ])
    );

    // 4. Unblocked (by account id), the next message arrives.
    let (code, out, _) = accord(&["unblock", "--session", b1.s(), &a1.account]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("unblocked {}", a1.account).as_str())
    );
    let (code, _, err) = accord(&[
        "msg",
        "send",
        "--session",
        a1.s(),
        "--to",
        BOB,
        "back again",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(listen(&b1, 1), vec![from(&a1, "back again")]);

    // No text is in clear in any file the server or the clients wrote
    // (databases and their WAL, sessions, sealed device states), nor in the
    // server's log.
    let texts = ["hello bob", "hi alice", "are you there", "back again"];
    for root in [server.data.path(), dir.path()] {
        for (path, bytes) in files_under(root) {
            for t in texts {
                assert!(
                    !bytes.windows(t.len()).any(|w| w == t.as_bytes()),
                    "{t:?} in {}",
                    path.display()
                );
            }
        }
    }
    let log = server.log.lock().unwrap().clone();
    assert!(log.contains("messenger listening"));
    for t in texts {
        assert!(!log.contains(t), "{t:?} in the server log");
    }
}

#[test]
fn state_sealed_under_a_passphrase_and_clear_errors() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let pass = pass.to_str().unwrap();
    let c1 = register_with(
        &server,
        dir.path(),
        "c1",
        "+6281211112222",
        &["--passphrase-file", pass],
    );
    let (code, out, err) = accord(&[
        "msg",
        "keys",
        "--session",
        c1.s(),
        "--passphrase-file",
        pass,
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let state = std::fs::read_to_string(dir.path().join("c1.e2e.json")).unwrap();
    assert!(state.contains("argon2id"), "{state}");
    assert!(!state.contains("correct horse"));

    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "tr0ub4dor").unwrap();
    let (code, _, err) = accord(&[
        "msg",
        "keys",
        "--session",
        c1.s(),
        "--passphrase-file",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("does not open"), "{err}");
    // Without the passphrase (the default key file) the state does not open.
    let (code, _, err) = accord(&["msg", "keys", "--session", c1.s()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--passphrase-file"), "{err}");

    // An unknown number is the user's error, in one line without the number.
    let (code, _, err) = accord(&[
        "msg",
        "send",
        "--session",
        c1.s(),
        "--passphrase-file",
        pass,
        "--to",
        "+6281233334444",
        "hi",
    ]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains("3334444"), "{err}");
}

/// `--os-keyring` (and `ACCORD_OS_KEYRING=1`): one device keeps its key in
/// the OS keyring (the Secret Service of `scripts/with-keyring` under
/// `scripts/test`), sends, and receives. Fails when no keyring is
/// reachable, unless `ACCORD_SKIP_KEYRING_TESTS=1`.
#[test]
fn one_device_keeps_its_key_in_the_os_keyring() {
    if std::env::var("ACCORD_SKIP_KEYRING_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("ACCORD_SKIP_KEYRING_TESTS=1: the OS keyring test is skipped");
        return;
    }
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let k1 = register_with(
        &server,
        dir.path(),
        "k1",
        "+6281255556666",
        &["--os-keyring"],
    );
    let k2 = register(&server, dir.path(), "k2", "+6281277778888");
    // The CLI's entry: service `accord`, user the device id; removed at the
    // end even when an assertion fails.
    struct Cleanup(keyring::Entry);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = self.0.delete_credential();
        }
    }
    let entry = Cleanup(keyring::Entry::new("accord", &k1.device).unwrap());
    let (code, out, err) = accord(&["msg", "keys", "--session", k2.s()]);
    assert_eq!(code, 0, "{out}\n{err}");

    let (code, out, err) = accord(&[
        "msg",
        "send",
        "--session",
        k1.s(),
        "--os-keyring",
        "--to",
        &k2.account,
        "from the keyring",
    ]);
    assert_eq!(
        code, 0,
        "{out}\n{err}\n(without a reachable OS keyring: run under scripts/with-keyring, or set ACCORD_SKIP_KEYRING_TESTS=1)"
    );
    assert_eq!(sent_id(&out).1, 1, "{out}");
    let key = entry.0.get_password().expect("the key is in the keyring");
    let state = std::fs::read_to_string(dir.path().join("k1.e2e.json")).unwrap();
    assert!(
        state.contains("os_keyring") && state.contains(&k1.device),
        "{state}"
    );
    assert!(!state.contains(&key));
    assert!(!dir.path().join("k1.e2e.key").exists());

    let got = listen(&k2, 1);
    assert!(
        got.contains(&format!(
            "from {}/{}: from the keyring",
            k1.account, k1.device
        )),
        "{got:?}"
    );
    let (code, _, err) = accord(&[
        "msg",
        "send",
        "--session",
        k2.s(),
        "--to",
        &k1.account,
        "back",
    ]);
    assert_eq!(code, 0, "{err}");
    // The environment variable instead of the flag.
    let args = listen_args(&k1, 2);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = output(
        accord_cmd(&args)
            .env("ACCORD_OS_KEYRING", "1")
            .output()
            .unwrap(),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!("from {}/{}: back", k2.account, k2.device)),
        "{out}"
    );

    // Without the flag the state does not open, and the message says why.
    let (code, _, err) = accord(&["msg", "keys", "--session", k1.s()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--os-keyring"), "{err}");
    // The entry gone: one clear line, exit 2, no key.
    entry.0.delete_credential().unwrap();
    let (code, _, err) = accord(&["msg", "keys", "--session", k1.s(), "--os-keyring"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("OS keyring has no entry"), "{err}");
    assert!(!err.contains(&key), "{err}");
}

#[test]
fn msg_commands_have_help_and_refuse_bad_input() {
    for cmd in [
        vec!["msg", "--help"],
        vec!["msg", "send", "--help"],
        vec!["msg", "listen", "--help"],
        vec!["msg", "keys", "--help"],
        vec!["block", "--help"],
        vec!["unblock", "--help"],
    ] {
        let (code, out, _) = accord(&cmd);
        assert_eq!(code, 0, "{cmd:?}");
        assert!(out.contains("Usage:"), "{cmd:?}: {out}");
    }
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("s.json");
    let s = session.to_str().unwrap();
    // No session yet.
    let (code, _, err) = accord(&["msg", "send", "--session", s, "--to", ALICE, "hi"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("accord register"), "{err}");
    std::fs::write(
        &session,
        r#"{"server":"http://127.0.0.1:9","token":"t","account_id":"4f0e1d8e-6f0b-4a43-9d9f-2b7b8f0e0c11","device_id":"8a7c2b4e-1f3d-4e5a-9b6c-0d1e2f3a4b5c"}"#,
    )
    .unwrap();
    for bad in [
        vec![
            "msg",
            "send",
            "--session",
            s,
            "--to",
            "0812-3456-7890",
            "hi",
        ],
        vec!["msg", "send", "--session", s, "--to", ALICE, ""],
        vec!["msg", "listen", "--session", s, "--count", "0"],
        vec!["block", "--session", s, "12"],
    ] {
        let (code, out, err) = accord(&bad);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(!err.contains("3456"), "errors never echo the number: {err}");
    }
    // Both key sources at once is a usage error.
    let (code, _, _) = accord(&[
        "msg",
        "keys",
        "--session",
        s,
        "--key-file",
        "k",
        "--passphrase-file",
        "p",
    ]);
    assert_eq!(code, 2);
    for other in ["--key-file", "--passphrase-file"] {
        let (code, _, err) = accord(&["msg", "keys", "--session", s, "--os-keyring", other, "k"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("cannot be used with"), "{err}");
    }
    let (code, out, _) = accord(&["msg", "send", "--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("--os-keyring") && out.contains("ACCORD_OS_KEYRING"),
        "{out}"
    );
    // An unreachable server is an internal failure (exit 1), and the state
    // file it created is sealed.
    let (code, _, err) = accord(&["msg", "keys", "--session", s]);
    assert_eq!(code, 1, "{err}");
    let state = std::fs::read_to_string(dir.path().join("s.e2e.json")).unwrap();
    assert!(
        !state.contains("signing_key") && !state.contains("pickle"),
        "{state}"
    );
}

/// The README's E2E messaging example, run exactly as written: its
/// commands are read from README.md (the `sh` block after "End-to-end
/// encrypted messages") and each line is run by `sh` with `accord` on the
/// PATH, in a fresh directory that is also `$HOME` (the default session),
/// with `ACCORD_SERVER` naming the test's server. The default session is
/// Alice's, registered by the README's own `accord register` line above it.
/// The example keeps Bob's key in the OS keyring, so it needs one (as
/// `scripts/test` provides); skipped under `ACCORD_SKIP_KEYRING_TESTS=1`.
#[test]
fn the_readme_messaging_example_runs_as_written() {
    if std::env::var("ACCORD_SKIP_KEYRING_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("ACCORD_SKIP_KEYRING_TESTS=1: the README example (OS keyring) is skipped");
        return;
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let commands = |block: &str| -> Vec<String> {
        block
            .lines()
            .map(|l| match l.find(" #") {
                Some(i) => l[..i].trim(),
                None => l.trim(),
            })
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let block_after = |marker: &str| -> &str {
        let at = readme.find(marker).expect("the README has the section");
        let rest = &readme[at..];
        let start = rest.find("```sh\n").expect("a sh block follows") + "```sh\n".len();
        let len = rest[start..].find("```").expect("the block ends");
        &rest[start..start + len]
    };
    let alice_line = commands(block_after("Then, in another terminal"))
        .into_iter()
        .find(|l| l.starts_with("accord register "))
        .expect("the README registers the default session");
    let example = commands(block_after("End-to-end encrypted messages"));
    let find = |prefix: &str| {
        example
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in the README example: {example:?}"))
    };
    let (reg, send, listen) = (
        find("accord register "),
        find("accord msg send "),
        find("accord msg listen "),
    );
    assert!(reg < send && send < listen, "{example:?}");

    let server = Server::start();
    let home = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_accord")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |line: &str| -> (String, String) {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(line)
            .current_dir(home.path())
            .env("HOME", home.path())
            .env("PATH", &path)
            .env("ACCORD_SERVER", &server.url);
        for var in [
            "ACCORD_DATABASE_URL",
            "ACCORD_SESSION",
            "ACCORD_E2E_STATE",
            "ACCORD_PASSPHRASE_FILE",
            "ACCORD_E2E_KEY_FILE",
            "ACCORD_OS_KEYRING",
            "ACCORD_ADMIN_TOKEN",
            "ACCORD_DATA_DIR",
        ] {
            c.env_remove(var);
        }
        let (code, out, err) = output(c.output().expect("sh runs"));
        assert_eq!(
            code, 0,
            "`{line}` exited {code}:\n{out}\n{err}\n(the OS keyring needs scripts/with-keyring, or ACCORD_SKIP_KEYRING_TESTS=1)"
        );
        (out, err)
    };

    let (out, _) = run(&alice_line);
    assert!(out.contains("end-to-end keys published"), "{out}");
    let alice = dev(&home.path().join(".accord/session.json"));
    // Bob's keyring entry (service `accord`, user his device id), removed
    // at the end even when an assertion fails.
    struct Cleanup(keyring::Entry);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = self.0.delete_credential();
        }
    }
    let mut _bob_entry = None;
    for (i, line) in example.iter().enumerate() {
        let (out, err) = run(line);
        if i == reg {
            assert!(out.contains("end-to-end keys published"), "{out}");
            let bob = dev(&home.path().join("bob.json"));
            _bob_entry = Some(Cleanup(keyring::Entry::new("accord", &bob.device).unwrap()));
        } else if i == send {
            assert_eq!(sent_id(&out).1, 1, "{out}\n{err}");
        } else if i == listen {
            assert_eq!(
                out.trim(),
                format!("from {}/{}: hello bob", alice.account, alice.device),
                "{err}"
            );
        }
    }
}

/// Alice writes to Bob before Bob's device has published keys (it
/// registered through the HTTP API, as `accord register` no longer
/// leaves a device): a clear error, exit 2. Once Bob publishes them
/// (`accord msg keys`), Alice's next send goes through: her device does not
/// trust the empty device list it cached from her first try.
#[test]
fn a_sender_is_not_stuck_after_the_recipient_publishes_keys() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let alice = register(&server, dir.path(), "alice", ALICE);
    let bob = register_without_keys(&server, dir.path(), "bob", BOB);
    let send = |text: &str| {
        accord(&[
            "msg",
            "send",
            "--session",
            alice.s(),
            "--to",
            BOB_NATIONAL,
            "--region",
            "ID",
            text,
        ])
    };
    for _ in 0..2 {
        let (code, out, err) = send("too early");
        assert_eq!((code, out.as_str()), (2, ""), "{err}");
        assert!(
            err.contains("the recipient has no device that can receive messages"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }

    let (code, out, err) = accord(&["msg", "keys", "--session", bob.s()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("fallback key: yes"), "{out}");

    let (code, out, err) = send("now");
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(sent_id(&out).1, 1, "{out}");
    assert_eq!(
        listen(&bob, 1),
        vec![format!("from {}/{}: now", alice.account, alice.device)]
    );
}

/// A registration whose keys cannot be published says so (exit 2 here: the
/// passphrase file is missing), names the `accord msg keys` command that
/// finishes the job, and that command does.
#[test]
fn register_says_when_keys_are_not_published_and_msg_keys_publishes_them() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let alice = register(&server, dir.path(), "alice", ALICE);
    let session = dir.path().join("carol.json");
    let pass = dir.path().join("carol.pass");
    let (code, out, err) = accord(&[
        "register",
        "--phone",
        "+6281299990000",
        "--server",
        &server.url,
        "--session",
        session.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.contains("session saved to"), "{out}");
    assert!(
        err.contains("end-to-end keys were not published")
            && err.contains(&format!(
                "accord msg keys --session {} --passphrase-file {}",
                session.display(),
                pass.display()
            )),
        "{err}"
    );
    // One error line (after the dev server's note about the code).
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error: ")).count(),
        1,
        "{err}"
    );
    let carol = dev(&session);
    let (code, _, err) = accord(&[
        "msg",
        "send",
        "--session",
        alice.s(),
        "--to",
        &carol.account,
        "early",
    ]);
    assert_eq!(code, 2, "{err}");

    std::fs::write(&pass, "carol's passphrase\n").unwrap();
    let (code, out, err) = accord(&[
        "msg",
        "keys",
        "--session",
        carol.s(),
        "--passphrase-file",
        pass.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = accord(&[
        "msg",
        "send",
        "--session",
        alice.s(),
        "--to",
        &carol.account,
        "on time",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    // Registering again over a device's state is refused before anything
    // is registered.
    let (code, _, err) = accord(&[
        "register",
        "--phone",
        "+6281299990000",
        "--server",
        &server.url,
        "--session",
        session.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("of a device registered before exists"),
        "{err}"
    );
}
