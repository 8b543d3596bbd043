//! The coordination story as users and an operator run it, one process
//! per command against the real `accord serve --dev --simulated-clock`
//! (messenger, key service and partner on ephemeral loopback ports):
//! registration with the pre-ticked box, the feed, a partner account
//! linked through a pseudonym, friend suggestions, an opt-out on day 29
//! deleted at the partner and confirmed in the ledger.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

fn accord(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_accord"));
    c.args(args);
    for v in [
        "ACCORD_DATABASE_URL",
        "ACCORD_SESSION",
        "ACCORD_SERVER",
        "ACCORD_ADMIN_TOKEN",
        "ACCORD_PARTNER_URL",
        "ACCORD_PARTNER_SESSION",
    ] {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("accord runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `accord admin feed` until `want` appears (bounded: 10 s): the
/// dispatcher runs every second in the background.
fn wait_for_feed(env: &[(&str, &str)], data: &str, want: &str) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        let (_, out, _) = accord(&["admin", "feed", "--data-dir", data], env);
        if out.contains(want) && out.contains("pending events: 0") {
            return out;
        }
        last = out;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the feed did not get to {want:?}: {last}");
}

#[test]
fn register_share_link_suggest_opt_out_and_confirmed_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_accord"))
        .args([
            "serve",
            "--dev",
            "--simulated-clock",
            "--data-dir",
            data_s,
            "--listen",
            "127.0.0.1:0",
            "--keyd-listen",
            "127.0.0.1:0",
            "--partner-listen",
            "127.0.0.1:0",
            // Room for the 5,000-number address book below.
            "--partner-user-quota",
            "6000",
        ])
        .env_remove("ACCORD_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut messenger, mut partner) = (String::new(), String::new());
    while messenger.is_empty() {
        let line = lines.next().expect("serve printed its addresses").unwrap();
        if let Some(rest) = line.split("partner listening on ").nth(1) {
            partner = rest.split_whitespace().next().unwrap().to_owned();
        }
        if let Some(rest) = line.split("messenger listening on ").nth(1) {
            messenger = rest.split_whitespace().next().unwrap().to_owned();
        }
    }
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    let _server = Server(child);
    assert!(!partner.is_empty());
    let env = [
        ("ACCORD_SERVER", messenger.as_str()),
        ("ACCORD_PARTNER_URL", partner.as_str()),
    ];
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();

    std::fs::write(
        p("policy.txt"),
        "We share your number and device info with our partner.",
    )
    .unwrap();
    let (code, _, err) = accord(
        &[
            "admin",
            "publish-policy",
            "--data-dir",
            data_s,
            "--text-file",
            &p("policy.txt"),
            "--purpose",
            "ads",
            "--purpose",
            "product",
            "--profile",
            "whatsapp-2016",
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = accord(
        &[
            "register",
            "--phone",
            "0812-3456-7890",
            "--region",
            "ID",
            "--session",
            &p("alice.json"),
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("shared with the partner now: ads, product"),
        "{out}"
    );
    let (code, _, err) = accord(
        &[
            "register",
            "--phone",
            "0812-3456-7891",
            "--region",
            "ID",
            "--no-share",
            "--session",
            &p("bob.json"),
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    wait_for_feed(&env, data_s, "accounts held by the partner: 1");

    let (code, out, err) = accord(
        &[
            "partner",
            "signup",
            "--name",
            "alice",
            "--phone",
            "0812-3456-7890",
            "--region",
            "ID",
            "--partner-session",
            &p("pa.json"),
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("linked to the messenger: true"), "{out}");
    let (_, out, _) = accord(
        &[
            "partner",
            "signup",
            "--name",
            "bob",
            "--phone",
            "0812-3456-7891",
            "--region",
            "ID",
            "--partner-session",
            &p("pb.json"),
        ],
        &env,
    );
    assert!(
        out.contains("linked to the messenger: false"),
        "bob unticked the box: {out}"
    );
    let (code, out, err) = accord(
        &[
            "partner",
            "signup",
            "--name",
            "eve",
            "--phone",
            "+62 812-3456-7892",
            "--partner-session",
            &p("pe.json"),
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created"), "{out}");
    assert!(err.contains("dev server: using the code"), "{err}");
    // The same number again signs in to the same partner user.
    let (code, out, err) = accord(
        &[
            "partner",
            "signup",
            "--name",
            "eve again",
            "--phone",
            "+62 812-3456-7892",
            "--partner-session",
            &p("pe2.json"),
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("signed in"), "{out}");
    // No way in without a number.
    let (code, _, err) = accord(
        &[
            "partner",
            "signup",
            "--name",
            "x",
            "--partner-session",
            &p("px.json"),
        ],
        &env,
    );
    assert_eq!(code, 2, "{err}");
    std::fs::write(
        p("contacts.txt"),
        "0812-3456-7890\n0812-3456-7891\n0812-3456-7777\n",
    )
    .unwrap();
    let (code, out, err) = accord(
        &[
            "partner",
            "contacts",
            "--file",
            &p("contacts.txt"),
            "--region",
            "ID",
            "--partner-session",
            &p("pe.json"),
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("kept 2"), "{out}");
    let (_, out, _) = accord(
        &["partner", "suggestions", "--partner-session", &p("pe.json")],
        &env,
    );
    assert_eq!(
        out.lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('\t').nth(1).unwrap())
            .collect::<Vec<_>>(),
        vec!["alice"]
    );

    // An address book of 5,000 numbers: streamed in batches the partner
    // accepts (at most 1,000 per evaluation), with progress on stderr.
    let (code, _, err) = accord(
        &[
            "partner",
            "signup",
            "--name",
            "dave",
            "--phone",
            "+62 812-3456-7893",
            "--partner-session",
            &p("pd.json"),
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    let mut book: Vec<String> = (0..4_998)
        .map(|i| format!("+62812{:08}", 20_000_000 + i))
        .collect();
    book.insert(1_234, "0812-3456-7890".into());
    book.push("0812-3456-7891".into());
    std::fs::write(p("book.txt"), book.join("\n")).unwrap();
    let (code, out, err) = accord(
        &[
            "partner",
            "contacts",
            "--file",
            &p("book.txt"),
            "--region",
            "ID",
            "--partner-session",
            &p("pd.json"),
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("uploaded 5000 contacts"), "{out}");
    assert!(out.contains("kept 2"), "{out}");
    for n in [1_000, 2_000, 3_000, 4_000, 5_000] {
        assert!(err.contains(&format!("{n} contacts uploaded")), "{err}");
    }

    // Day 29: Alice opts out; the partner deletes and confirms.
    accord(
        &[
            "admin",
            "clock",
            "--data-dir",
            data_s,
            "--advance-days",
            "29",
        ],
        &env,
    );
    let (code, out, err) = accord(
        &["consent", "withdraw", "ads", "--session", &p("alice.json")],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("shared with the partner now: nothing"),
        "{out}"
    );
    wait_for_feed(&env, data_s, "accounts held by the partner: 0");
    let (_, out, _) = accord(
        &["partner", "suggestions", "--partner-session", &p("pe.json")],
        &env,
    );
    assert_eq!(out.trim(), "no suggestions");
    let (_, out, _) = accord(
        &["admin", "ledger", "--data-dir", data_s, "--limit", "1000"],
        &env,
    );
    assert!(out.contains("\"kind\": \"deletion_confirmed\""), "{out}");
    // Nothing of a phone number in the partner's files.
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("partner.db")
        {
            let bytes = std::fs::read(&path).unwrap();
            for needle in ["6281234567890", "81234567890", "6281234567891"] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{needle} in {}",
                    path.display()
                );
            }
        }
    }
    let (code, out, _) = accord(&["ledger", "verify", "--data-dir", data_s], &env);
    assert_eq!(code, 0);
    assert!(out.starts_with("ledger intact"));

    // Alice keeps her receipt and checks it offline; the operator checks
    // the ledger against it and against the partner's checkpoints.
    let (code, receipt, err) = accord(&["consent", "receipt", "--session", &p("alice.json")], &env);
    assert_eq!(code, 0, "{err}");
    std::fs::write(p("receipt.json"), &receipt).unwrap();
    let (code, out, err) = accord(
        &["consent", "receipt", "--verify", &p("receipt.json")],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("receipt verified"), "{out}");
    let mut forged: serde_json::Value = serde_json::from_str(&receipt).unwrap();
    forged["services"][0]["purposes"][0]["consentType"] = "NOT_ASKED".into();
    std::fs::write(p("forged.json"), forged.to_string()).unwrap();
    let (code, _, err) = accord(&["consent", "receipt", "--verify", &p("forged.json")], &env);
    assert_eq!(
        code, 1,
        "a receipt claiming what its entries do not say: {err}"
    );
    let (code, out, err) = accord(
        &[
            "ledger",
            "verify",
            "--data-dir",
            data_s,
            "--witness",
            "partner",
            "--receipt",
            &p("receipt.json"),
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("consistent with"), "{out}");
}
