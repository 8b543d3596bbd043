//! What the CLI's process-level tests share: `accord` as a child process
//! (with the environment cleared of `ACCORD_*` settings), `accord serve
//! --dev` on loopback ports, and registered devices.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};

pub fn accord_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_accord"));
    c.args(args);
    for var in [
        "ACCORD_DATABASE_URL",
        "ACCORD_SESSION",
        "ACCORD_SERVER",
        "ACCORD_E2E_STATE",
        "ACCORD_PASSPHRASE_FILE",
        "ACCORD_E2E_KEY_FILE",
        "ACCORD_OS_KEYRING",
        "ACCORD_ADMIN_TOKEN",
    ] {
        c.env_remove(var);
    }
    c
}

pub fn output(out: Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn accord(args: &[&str]) -> (i32, String, String) {
    output(accord_cmd(args).output().expect("accord runs"))
}

/// `accord` in the background, its output collected by [`finish`].
pub fn spawn(args: &[&str]) -> Child {
    accord_cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("accord starts")
}

pub fn finish(child: Child) -> (i32, String, String) {
    output(child.wait_with_output().expect("accord finishes"))
}

/// `accord serve --dev` on ephemeral loopback ports; killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub log: Arc<Mutex<String>>,
    pub data: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// `accord serve --dev` with `extra` arguments.
    pub fn start_with(extra: &[&str]) -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut args = vec![
            "serve",
            "--dev",
            "--data-dir",
            data.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--keyd-listen",
            "127.0.0.1:0",
            "--partner-listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let mut child = accord_cmd(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("accord serve starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut start = String::new();
        let url = loop {
            let line = lines
                .next()
                .expect("accord serve printed its address before exiting")
                .unwrap();
            start.push_str(&line);
            start.push('\n');
            if let Some(rest) = line.split("messenger listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep draining the server's log so that it never blocks on a pipe.
        let log = Arc::new(Mutex::new(start));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Server {
            child,
            url,
            log,
            data,
        }
    }
}

impl Server {
    /// The URL another service of this `serve` printed: `"partner"` or
    /// `"key service"`.
    pub fn url_of(&self, service: &str) -> String {
        let log = self.log.lock().unwrap();
        let marker = format!("{service} listening on ");
        log.lines()
            .find_map(|l| l.split(marker.as_str()).nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("serve printed no {service} address: {log}"))
            .to_owned()
    }

    /// The operator's admin token (`<data>/admin.token`).
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data.path().join("admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One registered device: its session file, account and device ids.
pub struct Dev {
    pub session: PathBuf,
    pub account: String,
    pub device: String,
}

impl Dev {
    pub fn s(&self) -> &str {
        self.session.to_str().unwrap()
    }
}

pub fn register(server: &Server, dir: &Path, name: &str, phone: &str) -> Dev {
    register_with(server, dir, name, phone, &[])
}

/// `accord register` with `extra` arguments (a key source): the device's
/// end-to-end keys are published as it registers.
pub fn register_with(server: &Server, dir: &Path, name: &str, phone: &str, extra: &[&str]) -> Dev {
    let session = dir.join(format!("{name}.json"));
    let mut args = vec![
        "register",
        "--phone",
        phone,
        "--server",
        &server.url,
        "--session",
        session.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = accord(&args);
    assert_eq!(code, 0, "register {name}: {out}\n{err}");
    assert!(
        out.contains("end-to-end keys published: ") && out.contains("fallback key: yes"),
        "{out}"
    );
    dev(&session)
}

pub fn dev(session: &Path) -> Dev {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(session).unwrap()).unwrap();
    Dev {
        account: v["account_id"].as_str().unwrap().to_owned(),
        device: v["device_id"].as_str().unwrap().to_owned(),
        session: session.to_owned(),
    }
}

/// A device registered through the HTTP API (as an app would), whose keys
/// are not published: what `accord register` made of every device before
/// it published keys itself. Its session file is written for `accord msg`.
pub fn register_without_keys(server: &Server, dir: &Path, name: &str, phone: &str) -> Dev {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(async {
        let client = accord_client::Client::new(&server.url);
        let started = client.start_registration(phone, None).await.unwrap();
        let info = accord_domain::DeviceInfo {
            os: "android".into(),
            os_version: "15".into(),
            model: "x".into(),
            app_version: "1".into(),
            locale: "en".into(),
            carrier: None,
        };
        client
            .verify_registration(
                started.registration_id,
                &started.dev_code.expect("a dev server answers the code"),
                &info,
                None,
            )
            .await
            .unwrap()
    });
    let session = dir.join(format!("{name}.json"));
    let json = serde_json::json!({
        "server": server.url,
        "token": r.token,
        "account_id": r.account_id.to_string(),
        "device_id": r.device_id.to_string(),
    });
    std::fs::write(&session, json.to_string()).unwrap();
    dev(&session)
}

/// `msg listen` until `count` events (30 s at most); its stdout lines.
pub fn listen_args(d: &Dev, count: usize) -> Vec<String> {
    [
        "msg",
        "listen",
        "--session",
        d.s(),
        "--count",
        &count.to_string(),
        "--timeout-s",
        "30",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub fn listen(d: &Dev, count: usize) -> Vec<String> {
    let args = listen_args(d, count);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = accord(&args);
    assert_eq!(code, 0, "listen: {out}\n{err}");
    out.lines().map(str::to_owned).collect()
}

pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The client message id in `msg send`'s `sent <id> to <n> devices`, and n.
pub fn sent_id(out: &str) -> (String, usize) {
    let words: Vec<&str> = out.split_whitespace().collect();
    assert!(
        words.len() >= 5 && words[0] == "sent" && words[2] == "to" && words[4] == "devices",
        "{out}"
    );
    (words[1].to_owned(), words[3].parse().unwrap())
}

pub fn files_under(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    assert!(
        out.len() >= 4,
        "{out:?}",
        out = out.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    out
}

/// `accord business agent` for `shop` on an ephemeral port: the child and
/// its base URL.
pub fn agent(shop: &Dev, extra: &[&str]) -> (Child, String) {
    let mut args = vec![
        "business",
        "agent",
        "--session",
        shop.s(),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let mut child = accord_cmd(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the agent starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the agent printed its address before exiting")
            .unwrap();
        if let Some(rest) = line.split(" on ").nth(1) {
            break rest.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    (child, url)
}

/// `accord` that must succeed; its stdout.
pub fn ok(args: &[&str]) -> String {
    let (code, out, err) = accord(args);
    assert_eq!(code, 0, "{args:?}: {out}\n{err}");
    out
}
