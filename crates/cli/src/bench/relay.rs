//! `accord bench relay`: the real messenger (built by its
//! `Application`, as `accord serve` builds it: SQLite in a temporary
//! directory, durable group commits) on `127.0.0.1:0`, driven
//! over loopback HTTP (sends) and WebSocket (deliveries and acks).
//!
//! Three phases, each bounded in time, in this order:
//! 1. idle connections (below);
//! 2. latency: sends paced at `latency_rate` envelopes/s; `p50_ms` and
//!    `p99_ms` are send-to-delivery times (the send instant travels inside
//!    the opaque ciphertext). Before the throughput phase, whose burst
//!    leaves a long WAL to checkpoint that would otherwise land in this
//!    window;
//! 3. throughput: senders post as fast as they can; `envelopes_per_s` is
//!    what the receivers got per second of the window.
//!
//! Idle connections: `idle_connections` WebSockets opened and left idle;
//! `rss_mb` is this process's peak RSS (VmHWM) then. With
//! [`RelayBenchOptions::idle_client_exe`] (what `accord bench relay`
//! does) the client ends live in a child process (`accord bench
//! relay-idle-client`), so the figure is the server's alone and each end
//! has its own open-file limit; without it both ends are in this process
//! and the figure counts both.

use accord_crypto::token::{BearerToken, TokenHash};
use accord_domain::{AccountId, DeviceId, SystemClock};
use accord_e2e::{
    Ciphertext, ClientMessageId, E2eMachine, Envelope, OlmMessageType, SendRequest, ServerFrame,
};
use accord_messenger::relay::E2eConfig;
use accord_messenger::verifier::DevVerifier;
use accord_messenger::{Application, MessengerConfig, Settings};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Debug)]
pub struct RelayBenchOptions {
    /// Length of the throughput and of the latency phase each.
    pub duration: Duration,
    /// Paced rate of the latency phase, envelopes/s.
    pub latency_rate: u64,
    /// Concurrent senders (one device each). Each waits for its 202 (after
    /// the commit) before it sends again, so this closed loop is what
    /// fills the writer's batches: with 48 the throughput phase measured
    /// the generator's own concurrency (about half the senders per
    /// commit), and 96 or 128 gave 13–15% more envelopes/s in
    /// interleaved runs; a server with real traffic has far more
    /// senders in flight than either.
    pub senders: usize,
    /// Recipient accounts.
    pub recipients: usize,
    /// Devices per recipient account (envelopes per send).
    pub devices_per_recipient: usize,
    /// Idle WebSockets to hold open in the last phase.
    pub idle_connections: usize,
    /// Ciphertext bytes per envelope.
    pub ciphertext_bytes: usize,
    /// The `accord` executable, to open the idle connections from a child
    /// process; `None`: from this process.
    pub idle_client_exe: Option<std::path::PathBuf>,
}

impl Default for RelayBenchOptions {
    fn default() -> Self {
        RelayBenchOptions {
            duration: Duration::from_secs(5),
            latency_rate: 5_000,
            senders: 128,
            recipients: 16,
            devices_per_recipient: 8,
            idle_connections: 10_000,
            ciphertext_bytes: 256,
            idle_client_exe: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RelayBenchReport {
    pub envelopes_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub latency_rate: u64,
    pub idle_connections: usize,
    pub rss_mb: f64,
}

impl fmt::Display for RelayBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "envelopes_per_s: {:.0}", self.envelopes_per_s)?;
        writeln!(f, "latency_rate_per_s: {}", self.latency_rate)?;
        writeln!(f, "p50_ms: {:.2}", self.p50_ms)?;
        writeln!(f, "p99_ms: {:.2}", self.p99_ms)?;
        writeln!(f, "idle_connections: {}", self.idle_connections)?;
        writeln!(f, "rss_mb: {:.1}", self.rss_mb)
    }
}

pub(crate) type BenchResult<T> = Result<T, String>;

pub(crate) fn err(e: impl fmt::Display) -> String {
    e.to_string()
}

/// Raises the open-file limit to its hard maximum.
pub(crate) fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        // Root may raise the hard limit too; otherwise take the hard limit.
        let want = libc::rlimit {
            rlim_cur: r.rlim_max.max(65_536),
            rlim_max: r.rlim_max.max(65_536),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur
    }
}

/// Peak resident set size of this process, in MB.
pub fn peak_rss_mb() -> f64 {
    proc_self_mb("/proc/self/status", "VmHWM:")
}

/// Anonymous memory of this process on transparent huge pages, in MB
/// (Linux; 0 elsewhere).
pub fn anon_huge_pages_mb() -> f64 {
    proc_self_mb("/proc/self/smaps_rollup", "AnonHugePages:")
}

/// A `name: N kB` line of a `/proc/self` file, in MB.
fn proc_self_mb(file: &str, name: &str) -> f64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

pub(crate) struct BenchDevice {
    pub(crate) token: String,
    pub(crate) account: AccountId,
    pub(crate) device: DeviceId,
}

/// A device registered for `phone` with the dev verifier's code, its
/// identity keys published (from a throwaway machine: the relay bench
/// sends opaque bytes).
async fn register(http: &reqwest::Client, base: &str, phone: &str) -> BenchResult<BenchDevice> {
    let d = register_account(http, base, phone).await?;
    let keys = E2eMachine::new(d.device).device_keys();
    let r = http
        .put(format!("{base}/v1/keys/device"))
        .bearer_auth(&d.token)
        .json(&keys)
        .send()
        .await
        .map_err(err)?;
    if r.status().as_u16() != 204 {
        return Err(format!("key upload: {}", r.status()));
    }
    Ok(d)
}

/// A device registered for `phone` with the dev verifier's code, without
/// keys.
pub(crate) async fn register_account(
    http: &reqwest::Client,
    base: &str,
    phone: &str,
) -> BenchResult<BenchDevice> {
    let started: serde_json::Value = http
        .post(format!("{base}/v1/registrations"))
        .json(&json!({ "phone": phone }))
        .send()
        .await
        .map_err(err)?
        .json()
        .await
        .map_err(err)?;
    let id = started["registration_id"]
        .as_str()
        .ok_or("no registration id")?;
    let code = started["dev_code"].as_str().ok_or("no dev code")?;
    let reg: serde_json::Value = http
        .post(format!("{base}/v1/registrations/{id}/verify"))
        .json(&json!({
            "code": code,
            "device": {"os": "android", "os_version": "15", "model": "bench", "app_version": "1", "locale": "en"}
        }))
        .send()
        .await
        .map_err(err)?
        .json()
        .await
        .map_err(err)?;
    let token = reg["token"]
        .as_str()
        .ok_or_else(|| format!("registration failed: {reg}"))?;
    let device =
        DeviceId::parse(reg["device_id"].as_str().ok_or("no device id")?).ok_or("bad id")?;
    let account =
        AccountId::parse(reg["account_id"].as_str().ok_or("no account id")?).ok_or("bad id")?;
    Ok(BenchDevice {
        token: token.to_owned(),
        account,
        device,
    })
}

pub(crate) use crate::ws::{connect, Ws};

struct Shared {
    start: Instant,
    received: AtomicU64,
    /// Latencies (µs) of envelopes sent in the latency phase.
    latencies: Mutex<Vec<u64>>,
}

/// Reads frames, records latencies, acks in batches.
async fn receive(mut ws: Ws, shared: Arc<Shared>) {
    let mut pending: Vec<u64> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut local = Vec::new();
    loop {
        tokio::select! {
            m = ws.next() => {
                let Some(Ok(m)) = m else { break };
                let Message::Text(t) = m else { continue };
                // Decoded as a client would (the SDK's decoder).
                let Ok(ServerFrame::Envelope(env)) = accord_e2e::decode_server_frame(t.as_str().as_bytes()) else { continue };
                let id = env.id.0;
                let b = env.ciphertext.as_bytes();
                if b.len() >= 9 && b[8] == 2 {
                    let sent = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
                    let now = shared.start.elapsed().as_micros() as u64;
                    local.push(now.saturating_sub(sent));
                }
                shared.received.fetch_add(1, Ordering::Relaxed);
                pending.push(id);
                if pending.len() >= 256 {
                    let f = json!({"type": "ack", "envelope_ids": pending}).to_string();
                    pending.clear();
                    if ws.send(Message::Text(f.into())).await.is_err() { break; }
                }
            }
            _ = tick.tick() => {
                if !pending.is_empty() {
                    let f = json!({"type": "ack", "envelope_ids": pending}).to_string();
                    pending.clear();
                    if ws.send(Message::Text(f.into())).await.is_err() { break; }
                }
                if !local.is_empty() {
                    shared.latencies.lock().unwrap_or_else(|e| e.into_inner()).append(&mut local);
                }
            }
        }
    }
}

fn send_body(
    to: AccountId,
    devices: &[DeviceId],
    cmid: &str,
    phase: u8,
    at_us: u64,
    size: usize,
) -> Vec<u8> {
    let mut ct = vec![0x5a; size.max(16)];
    ct[..8].copy_from_slice(&at_us.to_le_bytes());
    ct[8] = phase;
    let envelopes = devices
        .iter()
        .map(|d| Envelope {
            recipient_device: *d,
            message_type: OlmMessageType::Normal,
            ciphertext: Ciphertext::from_bytes(ct.clone()).expect("valid size"),
        })
        .collect();
    let send = SendRequest::new(ClientMessageId::parse(cmid).expect("valid id"), envelopes)
        .expect("valid request");
    serde_json::to_vec(&json!({"to_account": to, "send": send})).expect("JSON")
}

/// Opens `want` WebSockets spread over `tokens`, 64 at a time.
pub(crate) async fn open_idle(base: &str, tokens: &[String], want: usize) -> BenchResult<Vec<Ws>> {
    let mut idle = Vec::with_capacity(want);
    let mut opening = tokio::task::JoinSet::new();
    let mut i = 0usize;
    while idle.len() < want {
        while opening.len() < 64 && i < want {
            let (base, token) = (base.to_owned(), tokens[i % tokens.len()].clone());
            opening.spawn(async move { connect(&base, &token).await });
            i += 1;
        }
        match opening.join_next().await {
            Some(Ok(Ok(ws))) => idle.push(ws),
            Some(Ok(Err(e))) => return Err(format!("idle connection {}: {e}", idle.len())),
            Some(Err(e)) => return Err(err(e)),
            None => break,
        }
    }
    Ok(idle)
}

/// Starts `exe bench relay-idle-client`, hands it the tokens on stdin and
/// waits for its `opened N` line. The child holds its connections until
/// its stdin closes.
async fn spawn_idle_client(
    exe: &std::path::Path,
    base: &str,
    tokens: &[String],
    want: usize,
) -> BenchResult<(tokio::process::Child, usize)> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut child = tokio::process::Command::new(exe)
        .args(["bench", "relay-idle-client", "--url", base, "--count"])
        .arg(want.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting the idle client {}: {e}", exe.display()))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut lines = tokens.join("\n");
    lines.push_str("\n\n");
    stdin.write_all(lines.as_bytes()).await.map_err(err)?;
    stdin.flush().await.map_err(err)?;
    child.stdin = Some(stdin);
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut reader = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(300), reader.next_line())
        .await
        .map_err(|_| "the idle client did not report within 300 s".to_owned())?
        .map_err(err)?
        .ok_or("the idle client exited without reporting")?;
    let opened = line
        .strip_prefix("opened ")
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("idle client: {line}"))?;
    Ok((child, opened))
}

/// Device tokens from stdin, one a line, up to an empty line: how a
/// bench hands its child process the devices to connect.
pub(crate) async fn read_tokens() -> BenchResult<Vec<String>> {
    tokio::task::spawn_blocking(|| {
        use std::io::BufRead;
        let stdin = std::io::stdin();
        let mut tokens = Vec::new();
        for line in stdin.lock().lines() {
            let line = line.map_err(err)?;
            if line.trim().is_empty() {
                break;
            }
            tokens.push(line.trim().to_owned());
        }
        Ok::<_, String>(tokens)
    })
    .await
    .map_err(err)?
}

/// Returns once stdin closes: the parent's signal to a bench's child
/// process to close its connections and end.
pub(crate) async fn stdin_closed() -> BenchResult<()> {
    tokio::task::spawn_blocking(|| {
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut rest);
    })
    .await
    .map_err(err)
}

/// The child side of [`spawn_idle_client`] (`accord bench
/// relay-idle-client`): reads device tokens from stdin up to an empty
/// line, opens `count` WebSockets to `base` (as many as its open-file
/// limit allows), prints `opened N`, and holds them until stdin closes.
pub async fn idle_client(base: &str, count: usize) -> BenchResult<()> {
    let nofile = raise_nofile();
    let tokens = read_tokens().await?;
    if tokens.is_empty() {
        return Err("no tokens on stdin".into());
    }
    let want = count.min(nofile.saturating_sub(256) as usize);
    let conns = open_idle(base, &tokens, want).await?;
    println!("opened {}", conns.len());
    stdin_closed().await?;
    drop(conns);
    Ok(())
}

/// Runs the relay benchmark; see the module docs.
pub async fn bench_relay(opts: RelayBenchOptions) -> BenchResult<RelayBenchReport> {
    let nofile = raise_nofile();
    let dir = tempfile::tempdir().map_err(err)?;
    let app = Application::build(Settings {
        // The generator registers every device from this one address.
        config: MessengerConfig {
            codes_per_hour: 1_000,
            codes_per_client_per_hour: u32::MAX,
            codes_per_range_per_hour: u32::MAX,
            codes_per_hour_total: u32::MAX,
            ..MessengerConfig::default()
        },
        e2e: E2eConfig {
            sends_per_s: 1e9,
            send_burst: 1e9,
            unknown_sends_per_s: 1e9,
            unknown_send_burst: 1e9,
            ..E2eConfig::default()
        },
        ..Settings::new(
            dir.path().to_str().ok_or("temp path")?,
            TokenHash::of(BearerToken::generate().reveal()),
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
    let (stopper, stop) = accord_http::stop_signal();
    let _server = app.start(listener, &stop);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.senders * 2)
        .build()
        .map_err(err)?;

    // Accounts: recipients with several devices, senders with one.
    let mut n = 0u32;
    let mut phone = || {
        n += 1;
        format!("+6281234{n:05}")
    };
    let mut recipients: Vec<(AccountId, Vec<DeviceId>, Vec<String>)> = Vec::new();
    for _ in 0..opts.recipients {
        let p = phone();
        let mut devices = Vec::new();
        let mut tokens = Vec::new();
        let mut account = None;
        for _ in 0..opts.devices_per_recipient {
            let d = register(&http, &base, &p).await?;
            account = Some(d.account);
            devices.push(d.device);
            tokens.push(d.token);
        }
        devices.sort();
        recipients.push((account.ok_or("no devices")?, devices, tokens));
    }
    let mut senders = Vec::new();
    for _ in 0..opts.senders {
        senders.push(register(&http, &base, &phone()).await?);
    }

    // Idle connections first (to devices with empty mailboxes), so that
    // the peak RSS is theirs, not the throughput phase's buffers.
    // This process holds the server end of each connection, and the
    // client end too unless a child does.
    let per_connection = if opts.idle_client_exe.is_some() { 1 } else { 2 };
    let want = opts
        .idle_connections
        .min(nofile.saturating_sub(512) as usize / per_connection);
    let mut idle_devices = Vec::new();
    for _ in 0..64 {
        idle_devices.push(register(&http, &base, &phone()).await?.token);
    }
    let (idle, child) = match &opts.idle_client_exe {
        None => (open_idle(&base, &idle_devices, want).await?, None),
        Some(exe) => (
            Vec::new(),
            Some(spawn_idle_client(exe, &base, &idle_devices, want).await?),
        ),
    };
    let rss_mb = peak_rss_mb();
    let idle_connections = match &child {
        None => idle.len(),
        Some((_, opened)) => *opened,
    };
    drop(idle);
    if let Some((mut child, _)) = child {
        // Closing its stdin tells the child to close its connections.
        drop(child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    }

    let shared = Arc::new(Shared {
        start: Instant::now(),
        received: AtomicU64::new(0),
        latencies: Mutex::new(Vec::new()),
    });
    for (_, _, tokens) in &recipients {
        for t in tokens {
            let ws = connect(&base, t).await?;
            tokio::spawn(receive(ws, shared.clone()));
        }
    }
    let recipients = Arc::new(
        recipients
            .into_iter()
            .map(|(a, d, _)| (a, d))
            .collect::<Vec<_>>(),
    );

    // Latency phase, before the throughput phase, on a server that has not just taken
    // a burst: the throughput phase leaves a long WAL to checkpoint and
    // receipts to write, which are its own cost, not the latency at a
    // steady 5,000 envelopes/s.
    let errors = Arc::new(AtomicU64::new(0));
    let per_send = opts.devices_per_recipient.max(1) as u64;
    let sends_per_s = (opts.latency_rate / per_send).max(1);
    let tick = Duration::from_millis(10);
    let per_tick = (sends_per_s as f64 / 100.0).max(1.0);
    let deadline = Instant::now() + opts.duration;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut owed = 0.0f64;
    let mut k = 0usize;
    let mut inflight = tokio::task::JoinSet::new();
    while Instant::now() < deadline {
        interval.tick().await;
        owed += per_tick;
        while owed >= 1.0 {
            owed -= 1.0;
            let s = &senders[k % senders.len()];
            let (to, devices) = &recipients[k % recipients.len()];
            let at = shared.start.elapsed().as_micros() as u64;
            let body = send_body(*to, devices, &format!("l{k}"), 2, at, opts.ciphertext_bytes);
            k += 1;
            let req = http
                .post(format!("{base}/v1/messages"))
                .bearer_auth(&s.token)
                .header("content-type", "application/json")
                .body(body);
            inflight
                .spawn(async move { req.send().await.is_ok_and(|r| r.status().as_u16() == 202) });
        }
        while let Some(r) = inflight.try_join_next() {
            if !r.unwrap_or(false) {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    while let Some(r) = inflight.join_next().await {
        if !r.unwrap_or(false) {
            errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    let expected = k as u64 * per_send;
    let wait_until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if shared
            .latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len() as u64
            >= expected
        {
            break;
        }
    }
    let mut lat = shared
        .latencies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat[i] as f64 / 1000.0
    };
    let (p50_ms, p99_ms) = (pct(0.50), pct(0.99));

    // Throughput phase.
    let running = Arc::new(AtomicBool::new(true));
    let mut tasks = Vec::new();
    for (i, s) in senders.iter().enumerate() {
        let (http, base, token) = (http.clone(), base.clone(), s.token.clone());
        let (recipients, running, errors, shared) = (
            recipients.clone(),
            running.clone(),
            errors.clone(),
            shared.clone(),
        );
        let size = opts.ciphertext_bytes;
        tasks.push(tokio::spawn(async move {
            let mut k = 0usize;
            while running.load(Ordering::Relaxed) {
                let (to, devices) = &recipients[(i + k) % recipients.len()];
                let at = shared.start.elapsed().as_micros() as u64;
                let body = send_body(*to, devices, &format!("t{i}-{k}"), 1, at, size);
                k += 1;
                let ok = http
                    .post(format!("{base}/v1/messages"))
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 202);
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Warm up, then measure a window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r0 = shared.received.load(Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(opts.duration).await;
    let r1 = shared.received.load(Ordering::Relaxed);
    let envelopes_per_s = (r1 - r0) as f64 / t0.elapsed().as_secs_f64();
    running.store(false, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    if errors.load(Ordering::Relaxed) > 0 {
        return Err(format!("{} sends failed", errors.load(Ordering::Relaxed)));
    }
    // Let the receivers take and ack the rest before the server stops.
    let mut last = shared.received.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = shared.received.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }

    stopper.stop();
    Ok(RelayBenchReport {
        envelopes_per_s,
        p50_ms,
        p99_ms,
        latency_rate: opts.latency_rate,
        idle_connections,
        rss_mb,
    })
}

/// `accord bench relay` end to end, scaled down: the figures it prints
/// must come from envelopes that really went through the server. Checks
/// what the report is made of, never how fast it was.
#[cfg(test)]
mod tests {
    use super::{bench_relay, RelayBenchOptions};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_relay_bench_reports_what_it_delivered() {
        let opts = RelayBenchOptions {
            duration: Duration::from_millis(700),
            latency_rate: 400,
            senders: 4,
            recipients: 2,
            devices_per_recipient: 2,
            idle_connections: 30,
            ciphertext_bytes: 64,
            idle_client_exe: None,
        };
        let report = bench_relay(opts).await.expect("the bench runs");
        assert!(report.envelopes_per_s > 0.0, "{report}");
        assert!(
            report.p50_ms > 0.0 && report.p50_ms <= report.p99_ms,
            "{report}"
        );
        assert_eq!(report.idle_connections, 30, "{report}");
        assert!(report.rss_mb > 0.0, "{report}");
        let text = report.to_string();
        for name in [
            "envelopes_per_s",
            "p50_ms",
            "p99_ms",
            "idle_connections",
            "rss_mb",
        ] {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("no {name} line in:\n{text}"));
            let value = line.split_once(": ").map(|(_, v)| v).unwrap_or_default();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
