//! Starts the real partner service (router, `serve`, SQLite in a
//! temporary directory) on `127.0.0.1:0`.

use accord_crypto::oprf::{BlindedElementBytes, EvaluatedElementBytes, KeyVersion, OprfPurpose};
use accord_crypto::token::{BearerToken, TokenHash};
use accord_domain::{SimulatedClock, Timestamp};
use accord_keyd_client::{Evaluated, Oprf, OprfClientError};
use accord_partner::{router, serve, AppState, PartnerConfig, PartnerService};
use accord_storage::partner::SqlPartnerStore;
use accord_storage::Db;
use reqwest::Method;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tempfile::TempDir;

/// A stand-in for the key service that counts what the partner forwards
/// (it echoes the elements: these tests are about metering, not the OPRF).
#[derive(Debug, Default)]
pub struct CountingOprf {
    pub evaluated: AtomicU64,
}

#[async_trait::async_trait]
impl Oprf for CountingOprf {
    async fn evaluate_blinded(
        &self,
        _: OprfPurpose,
        _: Option<KeyVersion>,
        elements: Vec<BlindedElementBytes>,
    ) -> Result<Evaluated, OprfClientError> {
        self.evaluated
            .fetch_add(elements.len() as u64, Ordering::SeqCst);
        Ok(Evaluated {
            key_version: KeyVersion(1),
            elements: elements
                .into_iter()
                .map(|b| EvaluatedElementBytes(b.0))
                .collect(),
        })
    }
    async fn active_version(&self, _: OprfPurpose) -> Result<KeyVersion, OprfClientError> {
        Ok(KeyVersion(1))
    }
}

/// How a test partner is built.
#[derive(Default)]
pub struct Options {
    pub config: PartnerConfig,
    pub oprf: Option<Arc<CountingOprf>>,
    /// The key-service quota the partner believes it has.
    pub keyd_daily: u64,
    pub audiences: accord_partner::audience::AudienceConfig,
}

/// 2026-01-05T09:00:00Z.
pub const T0: Timestamp = Timestamp(1_767_603_600_000);

pub struct TestApp {
    pub base_url: String,
    pub admin_token: String,
    pub http: reqwest::Client,
    pub service: PartnerService,
    pub clock: SimulatedClock,
    next_number: AtomicU64,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: TempDir,
}

/// A response, whatever its status.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
}

/// The seed of the messenger's consent-log key in these tests: the
/// partner trusts its public half; tests sign checkpoints with it.
pub const LOG_SEED: [u8; 32] = [0x4c; 32];

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(o: Options) -> TestApp {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = Db::open_service(dir.path().to_str().expect("utf-8 path"), "partner")
        .await
        .expect("partner database");
    let store = SqlPartnerStore::new(db.clone())
        .await
        .expect("partner migrations");
    let audience_store = Arc::new(accord_storage::audience::SqlAudienceStore::new(db));
    let clock = SimulatedClock::frozen_at(T0);
    let service = PartnerService::new(
        Arc::new(store),
        Arc::new(clock.clone()),
        b"feed secret of this test".to_vec(),
    )
    .with_signup(
        Arc::new(accord_partner::verifier::DevVerifier),
        o.config,
        b"number key of this test".to_vec(),
    )
    .with_keyd_quota(None, o.keyd_daily)
    .with_audiences(accord_partner::audience::Audiences::new(
        audience_store,
        o.audiences,
    ))
    .with_log_key(Some(
        accord_domain::transparency::LogSigner::from_seed(&LOG_SEED).public(),
    ));
    let service = match o.oprf {
        Some(oprf) => service.with_oprf(oprf),
        None => service,
    };
    let admin_token = BearerToken::generate().reveal().to_owned();
    let app = router(AppState {
        service: service.clone(),
        admin_token: TokenHash::of(&admin_token),
        trusted_proxies: Vec::new(),
        web: accord_http::web::SessionKeys::ephemeral("partner"),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let base_url = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, app, async move {
        let _ = stopped.await;
    }));
    TestApp {
        base_url,
        admin_token,
        // No pooled connections: after a refused oversized body the server
        // closes the connection.
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("reqwest client"),
        service,
        clock,
        next_number: AtomicU64::new(0),
        _stop: stop,
        _dir: dir,
    }
}

impl TestApp {
    /// The partner's SQLite database file.
    pub fn db_path(&self) -> std::path::PathBuf {
        self._dir.path().join("partner.db")
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("the partner answers");
        let status = r.status().as_u16();
        let text = r.text().await.expect("a body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
        };
        Resp { status, body }
    }

    /// A fresh valid Indonesian mobile number for each call.
    pub fn fresh_number(&self) -> String {
        let n = self.next_number.fetch_add(1, Ordering::SeqCst);
        format!("+62812{:08}", 10_000_000 + n)
    }

    /// Sign-up, step 1; the answer whatever it is.
    pub async fn start_registration(&self, phone: &str) -> Resp {
        self.send(
            Method::POST,
            "/v1/partner/registrations",
            None,
            Some(serde_json::json!({ "phone": phone })),
        )
        .await
    }

    /// Sign-up, step 2.
    pub async fn verify(&self, registration: &Value, code: &str, name: &str) -> Resp {
        let id = registration["registration_id"]
            .as_str()
            .expect("registration_id");
        self.send(
            Method::POST,
            &format!("/v1/partner/registrations/{id}/verify"),
            None,
            Some(serde_json::json!({ "code": code, "name": name })),
        )
        .await
    }

    /// Signs up a partner user with `phone` (both steps, the dev code);
    /// returns its id and token.
    pub async fn sign_up_with(&self, name: &str, phone: &str) -> (String, String) {
        let started = self.start_registration(phone).await;
        assert_eq!(started.status, 201, "{}", started.body);
        let code = started.body["dev_code"]
            .as_str()
            .expect("dev_code")
            .to_owned();
        let r = self.verify(&started.body, &code, name).await;
        assert_eq!(r.status, 201, "{}", r.body);
        (
            r.body["user_id"].as_str().expect("user_id").to_owned(),
            r.body["token"].as_str().expect("token").to_owned(),
        )
    }

    /// Signs up a partner user with a fresh number, and sets its phone
    /// pseudonym if given; returns its id and token.
    pub async fn sign_up(&self, name: &str, pseudonym: Option<String>) -> (String, String) {
        let (id, token) = self.sign_up_with(name, &self.fresh_number()).await;
        if let Some(p) = pseudonym {
            let r = self
                .send(
                    Method::PUT,
                    "/v1/partner/me/phone",
                    Some(&token),
                    Some(serde_json::json!({ "phone_pseudonym": p })),
                )
                .await;
            assert_eq!(r.status, 204, "{}", r.body);
        }
        (id, token)
    }

    /// Evaluates `n` blinded elements as `token`.
    pub async fn evaluate(&self, token: &str, n: usize) -> Resp {
        let element = BlindedElementBytes([7; 32]).to_base64();
        self.send(
            Method::POST,
            "/v1/oprf/coordination/evaluate",
            Some(token),
            Some(serde_json::json!({ "elements": vec![element; n] })),
        )
        .await
    }
}

/// Asserts the status and the error body's stable code.
#[track_caller]
pub fn assert_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["code"], code, "{}", r.body);
    assert!(
        r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        r.body
    );
}
