//! Starts the real messenger (router, `serve`, SQLite in a temporary
//! directory) on `127.0.0.1:0` and talks HTTP to it, as a device or the
//! operator would.

use accord_client::{AcceptChoice, Client, Registered};
use accord_crypto::token::{BearerToken, TokenHash};
use accord_domain::time::DAY_MS;
use accord_domain::{
    Clock, ConsentProfile, DeviceId, DeviceInfo, PolicyVersion, Purpose, SimulatedClock,
    SystemClock, Timestamp,
};
use accord_messenger::verifier::DevVerifier;
use accord_messenger::{Application, Messenger, Settings};
use accord_storage::SqlMessengerStore;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::Method;
use serde_json::Value;
use std::sync::Arc;
use tempfile::TempDir;

/// 2026-01-05T09:00:00Z: where a frozen test clock starts.
pub const T0: Timestamp = Timestamp(1_767_603_600_000);

#[derive(Clone, Debug)]
pub struct AppOptions {
    /// A frozen simulated clock (and the admin clock endpoint); otherwise
    /// the wall clock and no clock endpoint.
    pub simulated_clock: bool,
    /// The server's default profile, for policies published without one.
    pub default_profile: ConsentProfile,
    /// Run the key service too (its own port and database), with the
    /// messenger using it in process, as `accord serve` does.
    pub with_keyd: bool,
    /// Run the partner service too (own port and database) and build the
    /// coordination feed's dispatcher (driven by the test: `app.drain()`).
    pub with_partner: bool,
    /// The E2E relay's tunables.
    pub e2e: accord_messenger::relay::E2eConfig,
    /// With `with_keyd`: while this is true, the messenger cannot reach
    /// the key service to issue or revoke device credentials.
    pub keyd_down: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// The messenger's tunables. The default lets one client (every test
    /// client is 127.0.0.1) request codes for many numbers; the abuse
    /// tests set the production defaults.
    pub messenger: accord_messenger::MessengerConfig,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            simulated_clock: true,
            default_profile: ConsentProfile::Strict,
            with_keyd: false,
            with_partner: false,
            e2e: Default::default(),
            keyd_down: None,
            messenger: accord_messenger::MessengerConfig {
                codes_per_client_per_hour: 100_000,
                ..Default::default()
            },
            trusted_proxies: Vec::new(),
        }
    }
}

pub struct TestApp {
    pub base_url: String,
    /// The messenger the server runs, for its background work (which
    /// `accord serve` runs on timers).
    pub messenger: Messenger,
    /// The operator, with the admin token.
    pub admin: Client,
    pub admin_token: String,
    /// The simulated clock, for reading only: tests move time through the
    /// admin HTTP endpoint.
    pub clock: Option<SimulatedClock>,
    pub store: Arc<SqlMessengerStore>,
    pub http: reqwest::Client,
    /// The key service, when started (`with_keyd`).
    pub keyd: Option<accord_keyd::KeyService>,
    /// Where every database file of this app lives.
    pub data_dir: std::path::PathBuf,
    /// The partner service and the feed's dispatcher (`with_partner`).
    pub partner: Option<accord_partner::PartnerService>,
    pub feed: Option<accord_messenger::feed::Dispatcher>,
    /// The E2E mailbox store (same database as `store`).
    pub mailboxes: Arc<accord_storage::SqlMailboxStore>,
    /// Stops every server of this app when it is dropped.
    _stop: accord_http::Stopper,
    // Dropped last: the database lives here.
    _tempdir: TempDir,
}

/// A device's view of itself after registering.
pub struct TestUser {
    pub api: Client,
    pub reg: Registered,
}

/// A response, whatever its status.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

/// What to send as a request body.
pub enum Body {
    None,
    Json(Value),
    Raw {
        content_type: Option<&'static str>,
        bytes: Vec<u8>,
    },
}

pub fn device_info() -> DeviceInfo {
    DeviceInfo {
        os: "android".into(),
        os_version: "15".into(),
        model: "Pixel 8".into(),
        app_version: "2.26.1".into(),
        locale: "id-ID".into(),
        carrier: Some("51010".into()),
    }
}

/// A valid Indonesian mobile number, `+6281234567` followed by `n` on three digits.
pub fn phone(n: u16) -> String {
    assert!(n < 1000);
    format!("+6281234567{n:03}")
}

pub fn share(v: Option<bool>) -> AcceptChoice {
    AcceptChoice {
        share: v,
        grants: vec![],
    }
}

pub fn grants(purposes: &[Purpose]) -> AcceptChoice {
    AcceptChoice {
        share: None,
        grants: purposes.to_vec(),
    }
}

pub async fn spawn_app(opts: AppOptions) -> TestApp {
    let tempdir = tempfile::tempdir().expect("temporary directory");
    let location = tempdir.path().to_str().expect("utf-8 temp path").to_owned();
    let sim = opts.simulated_clock.then(|| SimulatedClock::frozen_at(T0));
    let clock: Arc<dyn Clock> = match &sim {
        Some(c) => Arc::new(c.clone()),
        None => Arc::new(SystemClock),
    };
    let admin_token = BearerToken::generate().reveal().to_owned();
    let (stopper, stop) = accord_http::stop_signal();
    let (keyd, keys) = if opts.with_keyd {
        let keyd = accord_keyd::Application::build(accord_keyd::Settings {
            location: location.clone(),
            key_dir: tempdir.path().to_path_buf(),
            master: None,
            admin_token: TokenHash::of(&admin_token),
            clock: clock.clone(),
            config: accord_keyd::KeydConfig::default(),
        })
        .await
        .expect("the key service builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        keyd.start(listener, &stop);
        let keyd = keyd.service().clone();
        let mut keys = accord_messenger::keys::KeyAccess::in_process(&keyd, url)
            .await
            .expect("messenger client at the key service");
        if let Some(down) = &opts.keyd_down {
            keys.devices = Arc::new(Unreachable {
                down: down.clone(),
                inner: keys.devices.clone(),
            });
        }
        (Some(keyd), Some(keys))
    } else {
        (None, None)
    };
    let partner = if opts.with_partner {
        Some(start_partner(tempdir.path(), clock.clone(), &admin_token, None, &stop).await)
    } else {
        None
    };
    let built = Application::build(Settings {
        simulated_clock: sim.clone(),
        profile: opts.default_profile,
        keys,
        feed: partner.as_ref().map(|(_, feed)| feed.clone()),
        e2e: opts.e2e,
        config: opts.messenger,
        trusted_proxies: opts.trusted_proxies,
        log_key: accord_messenger::transparency::SignerSource::Seed(LOG_SEED),
        ..Settings::new(
            location,
            TokenHash::of(&admin_token),
            Arc::new(DevVerifier),
            clock,
        )
    })
    .await
    .expect("the messenger builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let base_url = format!("http://{}", listener.local_addr().expect("local address"));
    // The server only: tests drive the background work themselves.
    accord_http::spawn_server(listener, built.router(), stop);
    TestApp {
        messenger: built.messenger().clone(),
        admin: Client::new(&base_url).with_token(&admin_token),
        base_url,
        admin_token,
        clock: sim,
        store: built.store().clone(),
        // No pooled connections: after a refused oversized body the server
        // closes the connection, and a reused one would fail the next request.
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("reqwest client builds"),
        keyd,
        data_dir: tempdir.path().to_path_buf(),
        partner: partner.map(|(p, _)| p),
        feed: built.dispatcher().cloned(),
        mailboxes: built.mailboxes().clone(),
        _stop: stopper,
        _tempdir: tempdir,
    }
}

/// The seed of the messenger's consent-log key in tests: the partner
/// gets its public half, and tests can sign checkpoints as the messenger.
pub const LOG_SEED: [u8; 32] = [0x4c; 32];

/// Starts the partner service (its own database in `dir`) on a loopback
/// port (or `port`) until `stop`; returns it and the feed's settings.
pub async fn start_partner(
    dir: &std::path::Path,
    clock: Arc<dyn Clock>,
    admin_token: &str,
    port: Option<u16>,
    stop: &accord_http::Stop,
) -> (
    accord_partner::PartnerService,
    accord_messenger::feed::FeedConfig,
) {
    let secret = b"feed secret of this test".to_vec();
    let partner = accord_partner::Application::build(accord_partner::Settings {
        messenger_log_key: Some(
            accord_domain::transparency::LogSigner::from_seed(&LOG_SEED).public(),
        ),
        ..accord_partner::Settings::new(
            dir.to_str().expect("utf-8 path").to_owned(),
            TokenHash::of(admin_token),
            clock,
            secret.clone(),
        )
    })
    .await
    .expect("the partner builds");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.unwrap_or(0)))
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().unwrap());
    partner.start(listener, stop);
    (
        partner.service().clone(),
        accord_messenger::feed::FeedConfig::new(url, secret),
    )
}

/// Asserts the error shape (`code`, `message`) and the status and code.
#[track_caller]
pub fn assert_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "unexpected status; body: {}", r.body);
    assert_eq!(
        r.body["code"].as_str(),
        Some(code),
        "unexpected code; body: {}",
        r.body
    );
    assert!(
        r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no message; body: {}",
        r.body
    );
}

/// Asserts that a client call failed with `status` and `code`.
#[track_caller]
pub fn assert_api_error<T: std::fmt::Debug>(
    r: accord_client::Result<T>,
    status: u16,
    code: &str,
) -> Option<Value> {
    match r {
        Err(accord_client::ClientError::Api {
            status: s,
            code: c,
            message,
            details,
        }) => {
            assert_eq!(
                (s, c.as_str()),
                (status, code),
                "unexpected error: {message}"
            );
            assert!(!message.is_empty() && message != "(no message)");
            details
        }
        other => panic!("expected HTTP {status} `{code}`, got {other:?}"),
    }
}

impl TestApp {
    /// A client without a token.
    pub fn anon(&self) -> Client {
        Client::new(&self.base_url)
    }

    pub fn client_with(&self, token: &str) -> Client {
        Client::new(&self.base_url).with_token(token)
    }

    /// Any request; the response whatever its status.
    pub async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Body) -> Resp {
        let mut rb = self
            .http
            .request(method, format!("{}{}", self.base_url, path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        rb = match body {
            Body::None => rb,
            Body::Json(v) => rb.json(&v),
            Body::Raw {
                content_type,
                bytes,
            } => {
                let rb = match content_type {
                    Some(ct) => rb.header(CONTENT_TYPE, ct),
                    None => rb,
                };
                rb.body(bytes)
            }
        };
        let r = rb.send().await.expect("the server answers");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.expect("response body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Registers `phone` with the code from the dev verifier; a new
    /// account, or a new device of the existing one.
    pub async fn register_device(
        &self,
        phone: &str,
        accept: Option<(u32, AcceptChoice)>,
    ) -> TestUser {
        let anon = self.anon();
        let started = anon
            .start_registration(phone, None)
            .await
            .expect("registration starts");
        let code = started.dev_code.expect("the dev verifier reveals the code");
        let reg = anon
            .verify_registration(
                started.registration_id,
                &code,
                &device_info(),
                accept.as_ref().map(|(v, c)| (*v, c)),
            )
            .await
            .expect("registration verifies");
        TestUser {
            api: self.client_with(&reg.token),
            reg,
        }
    }

    /// Registers `phone` and returns the device's client.
    pub async fn register(&self, phone: &str, accept: Option<(u32, AcceptChoice)>) -> Client {
        self.register_device(phone, accept).await.api
    }

    /// Publishes a policy version with a distinct text.
    pub async fn publish(&self, profile: ConsentProfile, purposes: &[Purpose]) -> PolicyVersion {
        let n = self.admin.policies().await.expect("list policies").len() + 1;
        let text =
            format!("Accord terms, version {n}: we share account information for {purposes:?}.");
        let p = self
            .admin
            .publish_policy(&text, purposes, Some(profile.as_str()))
            .await
            .expect("policy publishes");
        assert_eq!(p.version as usize, n);
        assert_eq!(p.profile, profile);
        p
    }

    /// Moves the simulated clock through the admin endpoint.
    pub async fn advance(&self, days: i64, hours: i64, seconds: i64) -> Timestamp {
        let before = self.now().await;
        let after = self
            .admin
            .advance_clock(days, hours, seconds)
            .await
            .expect("clock advances")
            .now;
        assert_eq!(
            after.0 - before.0,
            days * DAY_MS + hours * 3_600_000 + seconds * 1000
        );
        after
    }

    pub async fn advance_days(&self, n: i64) -> Timestamp {
        self.advance(n, 0, 0).await
    }

    pub async fn now(&self) -> Timestamp {
        self.admin.clock().await.expect("read the clock").now
    }

    /// Entries in the (verified) ledger.
    pub async fn ledger_entries(&self) -> u64 {
        self.admin
            .verify_ledger()
            .await
            .expect("the ledger verifies")
            .entries
    }
}

/// Device credentials whose key service is unreachable while `down` is set.
#[derive(Debug)]
struct Unreachable {
    down: Arc<std::sync::atomic::AtomicBool>,
    inner: Arc<dyn accord_messenger::keys::DeviceCredentials>,
}

#[async_trait::async_trait]
impl accord_messenger::keys::DeviceCredentials for Unreachable {
    async fn issue(
        &self,
        device: DeviceId,
        account: accord_domain::AccountId,
    ) -> Result<String, accord_messenger::keys::CredentialError> {
        self.reachable()?;
        self.inner.issue(device, account).await
    }
    async fn revoke(
        &self,
        device: DeviceId,
    ) -> Result<(), accord_messenger::keys::CredentialError> {
        self.reachable()?;
        self.inner.revoke(device).await
    }
}

impl Unreachable {
    fn reachable(&self) -> Result<(), accord_messenger::keys::CredentialError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(accord_messenger::keys::CredentialError(
                "connection refused".into(),
            ));
        }
        Ok(())
    }
}
