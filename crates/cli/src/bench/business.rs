//! `accord bench business`: one business agent sends utility templates to
//! many opted-in recipients, a new Olm session each, through the real
//! messenger on loopback.
//!
//! - The messenger is built by its `Application` as `accord serve` builds
//!   it (SQLite in a temporary directory, durable group commits), with
//!   the business's throughput limit and tier lifted (the bench measures
//!   the machine, not the policy).
//! - The agent is the real `accord business agent`, a child process (so
//!   `rss_mb` is its own), driven over its local API by `--concurrency`
//!   closed-loop clients.
//! - Recipients register over HTTP; their identity and one-time keys
//!   (real vodozemac keys) are stored and published into the key
//!   directory in epochs of 1,000 (one epoch per upload would make the
//!   set-up, not the run, the long part); each opts in over HTTP and
//!   holds a WebSocket, on which its envelope's arrival is timed. The
//!   recipients' ends are held by a child process (`accord bench
//!   business-recipients`), which prints each first arrival's wall-clock
//!   time: one process cannot hold both ends of 10,000 connections under
//!   a 20,000 open-file limit.
//! - `p99_ms` is from the agent's accept (the client's request) to the
//!   envelope's arrival on the recipient's WebSocket; `messages_per_s`
//!   is messages delivered over the time from the first request to the
//!   last arrival. Every encryption is the agent's own: a claim, a
//!   key-transparency proof check and a new Olm session per recipient.
//! - A sample of recipients decrypts its envelope afterwards and checks
//!   the parameters (`verified_sample`), so the figures are of real
//!   ciphertext.

use super::relay::{
    err, open_idle, peak_rss_mb, raise_nofile, read_tokens, register_account, stdin_closed,
    BenchResult,
};
use accord_crypto::token::{BearerToken, TokenHash};
use accord_domain::business::TierRules;
use accord_domain::{AccountId, SystemClock};
use accord_e2e::{E2eMachine, PlaintextKind, ServerFrame};
use accord_messenger::business::BusinessConfig;
use accord_messenger::relay::E2eConfig;
use accord_messenger::verifier::DevVerifier;
use accord_messenger::{Application, MessengerConfig, Settings};
use futures_util::StreamExt;
use serde_json::json;
use std::fmt;
use std::io::BufRead;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Debug)]
pub struct BusinessBenchOptions {
    pub recipients: usize,
    /// Concurrent clients of the agent's local API.
    pub concurrency: usize,
    /// The `accord` executable (the agent runs as `accord business agent`).
    pub exe: std::path::PathBuf,
    /// Recipients that decrypt their envelope at the end.
    pub sample: usize,
}

#[derive(Debug)]
pub struct BusinessBenchReport {
    pub recipients: usize,
    pub delivered: usize,
    pub errors: u64,
    pub seconds: f64,
    pub messages_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The agent's peak RSS.
    pub rss_mb: f64,
    /// This process's (messenger and recipients) peak RSS.
    pub server_rss_mb: f64,
    pub verified_sample: usize,
    pub sample: usize,
}

impl fmt::Display for BusinessBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "recipients: {}", self.recipients)?;
        writeln!(f, "delivered: {}", self.delivered)?;
        writeln!(f, "errors: {}", self.errors)?;
        writeln!(f, "seconds: {:.2}", self.seconds)?;
        writeln!(f, "messages_per_s: {:.0}", self.messages_per_s)?;
        writeln!(f, "p50_ms: {:.1}", self.p50_ms)?;
        writeln!(f, "p99_ms: {:.1}", self.p99_ms)?;
        writeln!(
            f,
            "verified_sample: {}/{}",
            self.verified_sample, self.sample
        )?;
        writeln!(f, "server_rss_mb: {:.1}", self.server_rss_mb)?;
        writeln!(f, "rss_mb: {:.1}", self.rss_mb)
    }
}

/// One recipient: its account, number, token and E2E machine.
struct Recipient {
    account: AccountId,
    phone: String,
    token: String,
    machine: Option<E2eMachine>,
}

fn phone(i: usize) -> String {
    format!("+62813{i:08}")
}

/// The agent's peak RSS, in MB.
fn rss_of(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs `f` over `0..n` with `c` tasks at a time, printing progress.
async fn each<F, Fut, T>(what: &str, n: usize, c: usize, f: F) -> BenchResult<Vec<T>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = BenchResult<T>>,
{
    let started = Instant::now();
    let mut out = Vec::with_capacity(n);
    let mut s = futures_util::stream::iter(0..n).map(&f).buffered(c.max(1));
    while let Some(r) = s.next().await {
        out.push(r?);
        if out.len() % 2_000 == 0 || out.len() == n {
            eprintln!(
                "  {what}: {}/{n} ({:.1} s)",
                out.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(out)
}

pub async fn run(opts: BusinessBenchOptions) -> BenchResult<BusinessBenchReport> {
    let nofile = raise_nofile();
    // This process holds the server's end of every recipient's WebSocket.
    if (nofile as usize) < opts.recipients + 1_024 {
        return Err(format!(
            "{} recipients need {} open files; the limit here is {nofile}",
            opts.recipients,
            opts.recipients + 1_024
        ));
    }
    let dir = tempfile::tempdir().map_err(err)?;
    let admin = BearerToken::generate();
    let app = Application::build(Settings {
        config: MessengerConfig {
            codes_per_hour: 1_000,
            codes_per_client_per_hour: u32::MAX,
            codes_per_range_per_hour: u32::MAX,
            codes_per_hour_total: u32::MAX,
            ..MessengerConfig::default()
        },
        e2e: E2eConfig {
            claims_per_s: 1e9,
            claim_burst: 1e9,
            ..E2eConfig::default()
        },
        business: BusinessConfig {
            messages_per_s: 1e9,
            burst: 1e9,
            tiers: TierRules {
                limits: vec![None],
                ..TierRules::default()
            },
            ..BusinessConfig::default()
        },
        ..Settings::new(
            dir.path().to_str().ok_or("temp path")?,
            TokenHash::of(admin.reveal()),
            Arc::new(DevVerifier),
            Arc::new(SystemClock),
        )
    })
    .await
    .map_err(err)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(err)?;
    let base = format!("http://{}", listener.local_addr().map_err(err)?);
    let (_stopper, stop) = accord_http::stop_signal();
    let _server = app.start(listener, &stop);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .map_err(err)?;

    // The business: account, API key, an approved utility template.
    eprintln!("setting up the business");
    let biz = register_account(&http, &base, "+6281299999999").await?;
    let key: serde_json::Value = http
        .post(format!("{base}/v1/business"))
        .bearer_auth(&biz.token)
        .json(&json!({ "display_name": "Bench Shop" }))
        .send()
        .await
        .map_err(err)?
        .json()
        .await
        .map_err(err)?;
    let api_key = key["api_key"].as_str().ok_or("no API key")?.to_owned();
    let t: serde_json::Value = http
        .post(format!("{base}/v1/business/templates"))
        .bearer_auth(&api_key)
        .json(
            &json!({"name": "order_receipt", "language": "en", "category": "utility",
                       "body": "Order {{1}} is confirmed. Total {{2}}. Thank you!"}),
        )
        .send()
        .await
        .map_err(err)?
        .json()
        .await
        .map_err(err)?;
    let template_id = t["id"].as_str().ok_or("no template id")?;
    let r = http
        .post(format!("{base}/v1/admin/templates/{template_id}/review"))
        .bearer_auth(admin.reveal())
        .json(&json!({ "decision": "approve" }))
        .send()
        .await
        .map_err(err)?;
    if !r.status().is_success() {
        return Err(format!("template review: {}", r.status()));
    }

    // Recipients: registered over HTTP, keys stored and published in
    // epochs of 1,000, opted in over HTTP.
    let n = opts.recipients;
    eprintln!("registering {n} recipients");
    let devices = each("registered", n, 32, |i| {
        let http = http.clone();
        let base = base.clone();
        async move { register_account(&http, &base, &phone(i)).await }
    })
    .await?;
    let mailboxes = app.mailboxes().clone();
    let relay = app.relay().clone();
    let mut recipients = Vec::with_capacity(n);
    let now = accord_domain::Clock::now(&SystemClock);
    for (i, d) in devices.into_iter().enumerate() {
        let mut m = E2eMachine::new(d.device);
        let keys = m.device_keys();
        let otks = m.generate_one_time_keys(2);
        m.mark_published();
        let json = String::from_utf8(accord_e2e::encode(&keys)).map_err(err)?;
        use accord_storage::MailboxStore;
        mailboxes
            .put_device_keys(d.account, d.device, &json, now)
            .await
            .map_err(err)?;
        relay
            .upload_one_time_keys(d.device, otks, None)
            .await
            .map_err(err)?;
        recipients.push(Recipient {
            account: d.account,
            phone: phone(i),
            token: d.token,
            machine: (i % (n / opts.sample.max(1)).max(1) == 0).then_some(m),
        });
        if (i + 1) % 1_000 == 0 || i + 1 == n {
            let chunk: Vec<AccountId> = recipients[(i / 1_000) * 1_000..=i]
                .iter()
                .map(|r| r.account)
                .collect();
            relay.publish_accounts(&chunk).await.map_err(err)?;
            eprintln!("  keys published: {}/{n}", i + 1);
        }
    }
    let b = biz.account;
    each("opted in", n, 64, |i| {
        let http = http.clone();
        let base = base.clone();
        let token = recipients[i].token.clone();
        async move {
            let r = http
                .put(format!("{base}/v1/me/businesses/{b}"))
                .bearer_auth(token)
                .json(&json!({ "opted_in": true }))
                .send()
                .await
                .map_err(err)?;
            if r.status().is_success() {
                Ok(())
            } else {
                Err(format!("opt-in: {}", r.status()))
            }
        }
    })
    .await?;

    // Their WebSockets, in a child process that prints each first
    // arrival's wall-clock time.
    eprintln!("connecting {n} recipients");
    let arrivals: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let delivered = Arc::new(AtomicUsize::new(0));
    let mut holder = std::process::Command::new(&opts.exe)
        .args(["bench", "business-recipients", "--url", &base])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the recipients' process: {e}"))?;
    {
        use std::io::Write;
        let mut stdin = holder.stdin.take().ok_or("stdin")?;
        let mut lines: String = recipients
            .iter()
            .map(|r| format!("{}\n", r.token))
            .collect();
        lines.push('\n');
        stdin.write_all(lines.as_bytes()).map_err(err)?;
        stdin.flush().map_err(err)?;
        holder.stdin = Some(stdin);
    }
    let out = holder.stdout.take().ok_or("stdout")?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<usize, String>>();
    {
        let (arrivals, delivered) = (arrivals.clone(), delivered.clone());
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(out).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let opened = first
                .strip_prefix("opened ")
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| format!("recipients' process: {first}"));
            let _ = ready_tx.send(opened);
            for line in lines.map_while(Result::ok) {
                let mut it = line.split_whitespace();
                let (Some(i), Some(at)) = (
                    it.next().and_then(|v| v.parse::<usize>().ok()),
                    it.next().and_then(|v| v.parse::<u64>().ok()),
                ) else {
                    continue;
                };
                if i < arrivals.len()
                    && arrivals[i]
                        .compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let opened = tokio::time::timeout(Duration::from_secs(600), ready_rx)
        .await
        .map_err(|_| "the recipients did not connect within 600 s".to_owned())?
        .map_err(err)??;
    if opened < n {
        return Err(format!("only {opened} of {n} recipients could connect"));
    }
    eprintln!("  connected: {opened}/{n}");

    // The agent: the real `accord business agent`, a child process.
    let session = dir.path().join("shop.json");
    std::fs::write(
        &session,
        json!({"server": base, "token": biz.token, "account_id": biz.account.to_string(),
               "device_id": biz.device.to_string()})
        .to_string(),
    )
    .map_err(err)?;
    let mut child = std::process::Command::new(&opts.exe)
        .args([
            "business",
            "agent",
            "--session",
            session.to_str().ok_or("path")?,
            "--api-key",
            &api_key,
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("ACCORD_API_KEY")
        .env("ACCORD_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the agent: {e}"))?;
    let pid = child.id();
    let stdout = child.stdout.take().ok_or("agent stdout")?;
    let agent_url = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let url = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| l.split(" on ").nth(1).map(|u| u.trim().to_owned()));
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        url
    })
    .await
    .map_err(err)?
    .ok_or("the agent exited before it printed its address")?;

    // The run.
    eprintln!(
        "sending {n} messages through the agent ({} clients)",
        opts.concurrency
    );
    let accepts: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let errors = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let phones: Arc<Vec<String>> = Arc::new(recipients.iter().map(|r| r.phone.clone()).collect());
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let start = unix_micros();
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency {
        let (http, url, key) = (http.clone(), agent_url.clone(), api_key.clone());
        let (accepts, errors, next, phones, first_error) = (
            accepts.clone(),
            errors.clone(),
            next.clone(),
            phones.clone(),
            first_error.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= phones.len() {
                    break;
                }
                accepts[i].store(unix_micros(), Ordering::Relaxed);
                let body = json!({
                    "messaging_product": "whatsapp", "to": phones[i], "type": "template",
                    "template": {"name": "order_receipt", "language": {"code": "en"},
                        "components": [{"type": "body", "parameters": [
                            {"type": "text", "text": format!("INV-{i}")},
                            {"type": "text", "text": "Rp 125.000"}]}]}
                });
                let r = http
                    .post(format!("{url}/v1/messages"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await;
                let ok = match r {
                    Ok(r) if r.status().is_success() => true,
                    Ok(r) => {
                        let text = r.text().await.unwrap_or_default();
                        first_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(text);
                        false
                    }
                    Err(e) => {
                        first_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(e.to_string());
                        false
                    }
                };
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        w.await.map_err(err)?;
    }
    let errs = errors.load(Ordering::Relaxed);
    let want = n - errs as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered.load(Ordering::Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss_mb = rss_of(pid);
    let _ = child.kill();
    let _ = child.wait();
    drop(holder.stdin.take());
    let _ = holder.kill();
    let _ = holder.wait();
    if let Some(e) = first_error.lock().unwrap_or_else(|e| e.into_inner()).take() {
        eprintln!("first error: {e}");
    }

    let mut lat = Vec::new();
    let mut last = start;
    for i in 0..n {
        let (a, d) = (
            accepts[i].load(Ordering::Relaxed),
            arrivals[i].load(Ordering::Relaxed),
        );
        if a > 0 && d > 0 {
            lat.push(d.saturating_sub(a) as f64 / 1000.0);
            last = last.max(d);
        }
    }
    lat.sort_by(f64::total_cmp);
    let seconds = (last - start) as f64 / 1e6;

    // The sample decrypts its envelope.
    use accord_storage::MailboxStore;
    let biz_keys = mailboxes
        .device_keys(biz.device)
        .await
        .map_err(err)?
        .ok_or("the agent published no keys")?;
    let biz_keys = accord_e2e::decode_device_keys(biz_keys.as_bytes()).map_err(err)?;
    let sample = recipients.iter().filter(|r| r.machine.is_some()).count();
    let mut verified = 0;
    for (i, r) in recipients.iter_mut().enumerate() {
        let Some(m) = r.machine.as_mut() else {
            continue;
        };
        let frames: Vec<ServerFrame> = http
            .get(format!("{base}/v1/messages?wait_s=0"))
            .bearer_auth(&r.token)
            .send()
            .await
            .map_err(err)?
            .json()
            .await
            .map_err(err)?;
        for f in frames {
            let ServerFrame::Envelope(env) = f else {
                continue;
            };
            let ok = m
                .decrypt_delivered(&biz_keys.curve25519, &env)
                .is_ok_and(|p| {
                    matches!(&p.kind, PlaintextKind::Template { params }
                        if params.first().map(String::as_str) == Some(format!("INV-{i}").as_str()))
                })
                && env
                    .business
                    .as_ref()
                    .and_then(|b| b.template.as_ref())
                    .is_some_and(|t| t.name == "order_receipt");
            if ok {
                verified += 1;
            }
        }
    }

    Ok(BusinessBenchReport {
        recipients: n,
        delivered: lat.len(),
        errors: errs,
        seconds,
        messages_per_s: if seconds > 0.0 {
            lat.len() as f64 / seconds
        } else {
            0.0
        },
        p50_ms: quantile(&lat, 0.5),
        p99_ms: quantile(&lat, 0.99),
        rss_mb,
        server_rss_mb: peak_rss_mb(),
        verified_sample: verified,
        sample,
    })
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The child side (`accord bench business-recipients`): reads device
/// tokens from stdin up to an empty line, opens a WebSocket for each,
/// prints `opened N`, then `<index> <unix µs>` for each device's first
/// envelope, until stdin closes.
pub async fn recipients(base: &str) -> BenchResult<()> {
    let nofile = raise_nofile();
    let tokens = read_tokens().await?;
    let want = tokens.len().min(nofile.saturating_sub(256) as usize);
    let conns = open_idle(base, &tokens, want).await?;
    println!("opened {}", conns.len());
    for (i, mut ws) in conns.into_iter().enumerate() {
        tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(t) = m else { continue };
                if let Ok(ServerFrame::Envelope(_)) =
                    accord_e2e::decode_server_frame(t.as_str().as_bytes())
                {
                    println!("{i} {}", unix_micros());
                    break;
                }
            }
            // Held open (not acked) until the process ends.
            let _keep = ws;
            std::future::pending::<()>().await;
        });
    }
    stdin_closed().await
}
