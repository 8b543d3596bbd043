//! `accord bench oprf`: how close the batch endpoint comes to the
//! cryptography's own speed.
//!
//! 1. The single-core cost of one server evaluation,
//!    [`measure_blind_evaluate_ns`] (decode, `BlindEvaluate`, encode).
//! 2. The batch endpoint end to end: a real server on `127.0.0.1:0` with a
//!    fresh SQLite data directory, and several concurrent clients posting
//!    pre-blinded batches over loopback HTTP for a bounded time. Everything
//!    counts: HTTP, JSON, base64, authentication, the quota transaction,
//!    element validation, scheduling, and the clients themselves, which
//!    share the machine.
//! 3. `ratio = endpoint rate / (cores × single-core rate)`. Issue 3's target
//!    is at least 0.85.
//! 4. The client path, [`measure_client_path`]: what one client gets when
//!    it blinds, has the same server evaluate and finalises, in chunks of
//!    [`MAX_BATCH`] (`client_path_per_s`): the floor of anything that
//!    pseudonymises on this machine (`accord bench audience` compares its
//!    upload's OPRF stage with it). Blinding and finalising cost about
//!    twice the server's evaluation, on the same cores, so it is about a
//!    third of the endpoint's rate.
//!
//! A measurement, not a test: nothing here asserts a speed.
//!
//! It lives in the CLI, not in `accord-keyd`: it is a load generator (an
//! HTTP client and a temporary data directory) around the service, not
//! part of it.

use accord_crypto::oprf::{blind_many, measure_blind_evaluate_ns, OprfPurpose, MAX_BATCH};
use accord_crypto::token::BearerToken;
use accord_domain::SystemClock;
use accord_keyd::wire::{EvaluateRequestRef, EvaluateResponse};
use accord_keyd::{router, serve, AppState, ClientKind, KeyService, KeydConfig, KeydError};
use accord_storage::keyd::MAX_QUOTA;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// How long the clients keep posting (requests in flight then finish).
    pub duration: Duration,
    /// Concurrent HTTP clients.
    pub clients: usize,
    /// Batch sizes the clients cycle through (each 1..=10,000).
    pub batch_sizes: Vec<usize>,
    /// Iterations of the single-core measurement.
    pub single_core_iterations: u32,
}

impl Default for BenchOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        BenchOptions {
            duration: Duration::from_secs(4),
            clients: (2 * cores).max(2),
            batch_sizes: vec![1_000, 5_000, 10_000],
            single_core_iterations: 5_000,
        }
    }
}

/// The figures, printed by `Display` as `name: value` lines, `ratio` last.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchReport {
    /// Nanoseconds per server evaluation on one core.
    pub blind_evaluate_ns: f64,
    pub cores: usize,
    /// Elements per second of the batch endpoint, end to end.
    pub endpoint_elements_per_s: f64,
    pub clients: usize,
    pub batch_sizes: Vec<usize>,
    pub requests: u64,
    pub elements: u64,
    pub seconds: f64,
    /// Pseudonyms per second of one client's whole path (step 4).
    pub client_path_per_s: f64,
}

impl BenchReport {
    pub fn single_core_per_s(&self) -> f64 {
        1e9 / self.blind_evaluate_ns
    }
    /// `cores × single-core rate`: the cryptography alone on every core.
    pub fn ideal_per_s(&self) -> f64 {
        self.cores as f64 * self.single_core_per_s()
    }
    pub fn ratio(&self) -> f64 {
        self.endpoint_elements_per_s / self.ideal_per_s()
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sizes: Vec<String> = self.batch_sizes.iter().map(ToString::to_string).collect();
        writeln!(f, "blind_evaluate_us: {:.2}", self.blind_evaluate_ns / 1e3)?;
        writeln!(
            f,
            "single_core_blind_evaluate_per_s: {:.0}",
            self.single_core_per_s()
        )?;
        writeln!(f, "cores: {}", self.cores)?;
        writeln!(f, "ideal_all_cores_per_s: {:.0}", self.ideal_per_s())?;
        writeln!(
            f,
            "batch_endpoint_elements_per_s: {:.0}",
            self.endpoint_elements_per_s
        )?;
        writeln!(f, "http_clients: {}", self.clients)?;
        writeln!(f, "batch_sizes: {}", sizes.join(","))?;
        writeln!(f, "requests: {}", self.requests)?;
        writeln!(f, "elements: {}", self.elements)?;
        writeln!(f, "seconds: {:.2}", self.seconds)?;
        writeln!(f, "client_path_per_s: {:.0}", self.client_path_per_s)?;
        write!(f, "ratio: {:.2}", self.ratio())
    }
}

/// Why the bench could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    #[error("bench options: {0}")]
    Options(&'static str),
    #[error("bench setup: {0}")]
    Setup(String),
    #[error("bench request failed: {0}")]
    Request(String),
    #[error(transparent)]
    Keyd(#[from] KeydError),
}

fn setup(e: impl fmt::Display) -> BenchError {
    BenchError::Setup(e.to_string())
}

/// Runs the bench (see the module docs). Takes a few seconds.
pub async fn bench_oprf(opts: BenchOptions) -> Result<BenchReport, BenchError> {
    if opts.batch_sizes.is_empty() || opts.batch_sizes.iter().any(|&n| n == 0 || n > MAX_BATCH) {
        return Err(BenchError::Options("batch sizes must be 1 to 10,000"));
    }
    if opts.clients == 0 || opts.duration.is_zero() {
        return Err(BenchError::Options(
            "need at least one client and a duration",
        ));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    // 1. Single core, with nothing else running.
    let iterations = opts.single_core_iterations;
    let blind_evaluate_ns =
        tokio::task::spawn_blocking(move || measure_blind_evaluate_ns(iterations))
            .await
            .map_err(setup)?;

    // 2. The real server, a client allowed everything, pre-blinded bodies.
    let dir = tempfile::tempdir().map_err(setup)?;
    let service = KeyService::open_data_dir(
        dir.path(),
        None,
        Arc::new(SystemClock),
        KeydConfig::default(),
    )
    .await?;
    let purpose = OprfPurpose::Coordination;
    let (_, token) = service
        .create_client(
            "bench",
            ClientKind::Partner,
            &BTreeMap::from([(purpose, MAX_QUOTA)]),
        )
        .await?;
    let app = router(AppState {
        service: service.clone(),
        admin_token: BearerToken::generate().hash(),
        web: accord_http::web::SessionKeys::ephemeral("keyd"),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(setup)?;
    let url = format!(
        "http://{}/v1/oprf/{purpose}/evaluate",
        listener.local_addr().map_err(setup)?
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app, async move {
        let _ = stopped.await;
    }));

    let largest = *opts.batch_sizes.iter().max().expect("non-empty");
    let elements = tokio::task::spawn_blocking(move || {
        let inputs: Vec<Vec<u8>> = (0..largest)
            .map(|i| format!("phone:+1555{i:07}").into_bytes())
            .collect();
        blind_many(&inputs).map(|(_, e)| e)
    })
    .await
    .map_err(setup)?
    .map_err(setup)?;
    let bodies: Arc<Vec<(u64, Bytes)>> = Arc::new(
        opts.batch_sizes
            .iter()
            .map(|&n| {
                let body = serde_json::to_vec(&EvaluateRequestRef {
                    key_version: None,
                    elements: &elements[..n],
                })
                .expect("serialisable");
                (n as u64, Bytes::from(body))
            })
            .collect(),
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.clients)
        .build()
        .map_err(setup)?;
    let token: Arc<str> = token.reveal().into();

    // Warm up: connections, database, caches.
    post(&http, &url, &token, bodies[0].clone()).await?;

    // 3. Posting for `duration`.
    let start = Instant::now();
    let deadline = start + opts.duration;
    let tasks: Vec<_> = (0..opts.clients)
        .map(|c| {
            let (http, url, token, bodies) =
                (http.clone(), url.clone(), token.clone(), bodies.clone());
            tokio::spawn(async move {
                let (mut requests, mut elements) = (0u64, 0u64);
                let mut i = c;
                while Instant::now() < deadline {
                    let body = bodies[i % bodies.len()].clone();
                    i += 1;
                    elements += post(&http, &url, &token, body).await?;
                    requests += 1;
                }
                Ok::<_, BenchError>((requests, elements))
            })
        })
        .collect();
    let (mut requests, mut total) = (0, 0);
    for t in tasks {
        let (r, e) = t.await.map_err(|e| BenchError::Request(e.to_string()))??;
        requests += r;
        total += e;
    }
    let seconds = start.elapsed().as_secs_f64();

    // 4. The client path, through the same server.
    let base = url
        .trim_end_matches(&format!("/v1/oprf/{purpose}/evaluate"))
        .to_owned();
    let client = accord_keyd::HttpOprf::new(base, secrecy::SecretString::from(token.to_string()));
    let client_path_per_s = measure_client_path(&client, MAX_BATCH, opts.duration).await?;

    let _ = stop.send(());
    let _ = server.await;
    drop(service);
    Ok(BenchReport {
        blind_evaluate_ns,
        cores,
        endpoint_elements_per_s: total as f64 / seconds,
        clients: opts.clients,
        batch_sizes: opts.batch_sizes,
        requests,
        elements: total,
        seconds,
        client_path_per_s,
    })
}

/// Pseudonyms per second of `oprf`'s whole client path ([`Oprf::pseudonyms`]:
/// blind, evaluate, finalise) on chunks of `chunk` inputs, one chunk after
/// another, for about `duration` (at least two chunks; the first is a
/// warm-up and not counted).
pub async fn measure_client_path(
    oprf: &dyn accord_keyd::Oprf,
    chunk: usize,
    duration: Duration,
) -> Result<f64, BenchError> {
    let inputs: Vec<Vec<u8>> = (0..chunk)
        .map(|i| format!("phone:+1666{i:07}").into_bytes())
        .collect();
    let run = || async {
        oprf.pseudonyms(OprfPurpose::Coordination, None, &inputs)
            .await
            .map_err(|e| BenchError::Request(e.to_string()))
    };
    run().await?;
    let start = Instant::now();
    let mut done = 0u64;
    while done == 0 || start.elapsed() < duration {
        done += run().await?.len() as u64;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// One request; the number of elements evaluated.
async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    (n, body): (u64, Bytes),
) -> Result<u64, BenchError> {
    let r = http
        .post(url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| BenchError::Request(e.to_string()))?;
    if !r.status().is_success() {
        return Err(BenchError::Request(format!("HTTP {}", r.status())));
    }
    let answer: EvaluateResponse = r
        .json()
        .await
        .map_err(|e| BenchError::Request(e.to_string()))?;
    if answer.elements.len() as u64 != n {
        return Err(BenchError::Request(
            "wrong number of evaluated elements".into(),
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_prints_name_value_lines_with_ratio_last() {
        let r = BenchReport {
            blind_evaluate_ns: 31_250.0,
            cores: 2,
            endpoint_elements_per_s: 57_600.0,
            clients: 4,
            batch_sizes: vec![1_000, 10_000],
            requests: 10,
            elements: 55_000,
            seconds: 0.95,
            client_path_per_s: 19_000.0,
        };
        let text = r.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.iter().all(|l| l
            .split_once(": ")
            .is_some_and(|(k, v)| !k.is_empty() && !v.is_empty())));
        assert_eq!(lines.last(), Some(&"ratio: 0.90"));
        assert!(text.contains("single_core_blind_evaluate_per_s: 32000\n"));
        assert!(text.contains("ideal_all_cores_per_s: 64000\n"));
    }
}
