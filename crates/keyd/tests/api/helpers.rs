use accord_crypto::oprf::{KeyVersion, OprfPurpose, OprfSecretKey};
use accord_crypto::sealed::MasterKey;
use accord_crypto::token::BearerToken;
use accord_domain::{PhoneNumber, SimulatedClock, Timestamp};
use accord_keyd::{router, serve, AppState, ClientId, HttpOprf, KeyService, KeydConfig};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use tempfile::TempDir;

/// 2027-01-15T10:30:00Z.
pub const T0: Timestamp = Timestamp(1_800_009_000_000);

// --- log capture: every test's logs, at TRACE, into one buffer ---

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| Capture)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
    });
}

/// Everything logged so far by any test of this binary.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

// --- the app ---

pub struct TestApp {
    pub base: String,
    pub service: KeyService,
    pub clock: SimulatedClock,
    pub admin_token: String,
    pub master: [u8; 32],
    pub dir: TempDir,
    pub http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub async fn spawn_app() -> TestApp {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let master = *MasterKey::generate().to_bytes();
    let clock = SimulatedClock::frozen_at(T0);
    let service = KeyService::open_data_dir(
        dir.path(),
        Some(MasterKey::from_bytes(&master).unwrap()),
        Arc::new(clock.clone()),
        KeydConfig::default(),
    )
    .await
    .unwrap();
    let admin = BearerToken::generate();
    let app = router(AppState {
        service: service.clone(),
        admin_token: admin.hash(),
        web: accord_http::web::SessionKeys::ephemeral("keyd"),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, app, async move {
        let _ = stopped.await;
    }));
    TestApp {
        base,
        service,
        clock,
        admin_token: admin.reveal().to_owned(),
        master,
        dir,
        // No pooled connections: after a refused oversized body the server
        // closes the connection, and a reused one would fail the next request.
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("reqwest client builds"),
        _stop: stop,
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("<none>")
    }
}

impl TestApp {
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let (status, headers) = (r.status(), r.headers().clone());
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Reply {
        let admin = self.admin_token.clone();
        self.send(method, path, Some(&admin), body).await
    }

    /// A client via the admin API: its id and token.
    pub async fn create_client(&self, kind: &str, quotas: Value) -> (ClientId, String) {
        let r = self
            .admin(
                reqwest::Method::POST,
                "/v1/admin/clients",
                Some(json!({ "name": format!("test {kind}"), "kind": kind, "quotas": quotas })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let id = ClientId::parse(r.body["client_id"].as_str().unwrap()).unwrap();
        (id, r.body["token"].as_str().unwrap().to_owned())
    }

    pub async fn evaluate(&self, token: Option<&str>, purpose: &str, body: Value) -> Reply {
        self.send(
            reqwest::Method::POST,
            &format!("/v1/oprf/{purpose}/evaluate"),
            token,
            Some(body),
        )
        .await
    }

    /// The audit lines of one client, as `(purpose, day, elements)`.
    pub async fn audit(&self, client: ClientId) -> Vec<(String, String, u64)> {
        let r = self.admin(reqwest::Method::GET, &format!("/v1/admin/audit?client_id={client}&from=2027-01-01T00:00:00Z&to=2027-03-01T00:00:00Z"), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["purpose"].as_str().unwrap().to_owned(),
                    l["day"].as_str().unwrap().to_owned(),
                    l["elements"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    pub fn oprf(&self, token: &str) -> HttpOprf {
        HttpOprf::new(self.base.clone(), SecretString::from(token.to_owned()))
    }

    /// The secret key, opened from the store with the master key: what a
    /// test compares the blinded path against.
    pub async fn secret_key(&self, purpose: OprfPurpose, version: KeyVersion) -> OprfSecretKey {
        let stored = self.service.store().keys().await.unwrap();
        let k = stored
            .iter()
            .find(|k| k.purpose == purpose && k.version == version)
            .expect("stored key");
        OprfSecretKey::open(
            &MasterKey::from_bytes(&self.master).unwrap(),
            &k.sealed,
            purpose,
            version,
        )
        .unwrap()
    }
}

pub fn phone(n: u32) -> PhoneNumber {
    PhoneNumber::parse(&format!("+62812{n:07}"), None).unwrap()
}

/// `n` valid blinded elements (base64).
pub fn valid(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            accord_crypto::oprf::blind(format!("phone:+1555{i:07}").as_bytes())
                .unwrap()
                .1
                .to_base64()
        })
        .collect()
}
