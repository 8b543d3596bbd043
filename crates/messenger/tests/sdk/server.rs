//! The real messenger for the SDK's tests: `accord_messenger::Application`
//! (its router) served on `127.0.0.1:0` with a fresh SQLite data directory
//! (as the messenger's own API tests start it), behind a thin layer
//! that counts requests by method and path and can simulate two faults
//! the tests need: a server without the WebSocket (the upgrade is answered
//! by the real server's 404) and lost long-poll acks (the server never
//! sees them; the client is told they went through).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use accord_client::{Client, Registered};
use accord_crypto::token::{BearerToken, TokenHash};
use accord_domain::{DeviceInfo, SystemClock};
use accord_messenger::relay::E2eConfig;
use accord_messenger::verifier::DevVerifier;
use accord_messenger::{serve, Application, Settings};
use accord_messenger_wire::AckResponse;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};

/// What the layer in front of the server saw, and the faults it injects.
#[derive(Default)]
pub struct Observed {
    requests: Mutex<HashMap<String, usize>>,
    /// Answer `GET /v1/stream` as a server without the WebSocket would.
    pub no_stream: AtomicBool,
    /// Lose `POST /v1/messages/ack` (the envelopes stay queued).
    pub drop_acks: AtomicBool,
}

impl Observed {
    /// Requests seen with this method and path (`"POST /v1/keys/claim"`).
    pub fn count(&self, route: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .get(route)
            .copied()
            .unwrap_or(0)
    }

    async fn layer(self: Arc<Self>, mut req: Request, next: Next) -> Response {
        let key = format!("{} {}", req.method(), req.uri().path());
        *self.requests.lock().unwrap().entry(key).or_default() += 1;
        let path = req.uri().path().to_owned();
        if path == "/v1/stream" && self.no_stream.load(Ordering::SeqCst) {
            // A path the server does not serve: its own JSON 404.
            *req.uri_mut() = "/v1/no-stream-here".parse().unwrap();
        }
        if path == "/v1/messages/ack"
            && req.method() == Method::POST
            && self.drop_acks.load(Ordering::SeqCst)
        {
            return (StatusCode::OK, Json(AckResponse { acked: 0 })).into_response();
        }
        next.run(req).await
    }
}

/// A running messenger; stops when dropped.
pub struct Server {
    pub base: String,
    pub observed: Arc<Observed>,
    /// The stores and the relay behind the API: what a malicious
    /// messenger could change behind its own back.
    pub store: Arc<accord_storage::SqlMessengerStore>,
    pub mailboxes: Arc<accord_storage::SqlMailboxStore>,
    pub relay: accord_messenger::relay::Relay,
    pub business: accord_messenger::business::Business,
    /// A client holding the operator's admin token.
    pub admin: Client,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    // Dropped last: the database lives here.
    data: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
    }
}

impl Server {
    pub async fn start() -> Server {
        Server::start_in(tempfile::tempdir().unwrap())
            .await
            .expect("the messenger builds")
    }

    /// Stops the server and hands back its data directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        self.data.take().expect("the data directory")
    }

    pub fn data_path(&self) -> &std::path::Path {
        self.data.as_ref().expect("the data directory").path()
    }

    /// A server on the data directory `data` (new, or one a stopped
    /// server left).
    pub async fn start_in(
        data: tempfile::TempDir,
    ) -> Result<Server, accord_messenger::StartupError> {
        Server::start_with(
            data,
            Arc::new(SystemClock),
            accord_messenger::business::BusinessConfig::default(),
        )
        .await
    }

    /// A server on `data` with its own clock and business rules.
    pub async fn start_with(
        data: tempfile::TempDir,
        clock: Arc<dyn accord_domain::Clock>,
        business: accord_messenger::business::BusinessConfig,
    ) -> Result<Server, accord_messenger::StartupError> {
        let admin = BearerToken::generate();
        let built = Application::build(Settings {
            e2e: E2eConfig {
                // The fallback test claims every one-time key of a device.
                claim_burst: 1000.0,
                ..E2eConfig::default()
            },
            business,
            ..Settings::new(
                data.path().to_str().unwrap(),
                TokenHash::of(admin.reveal()),
                Arc::new(DevVerifier),
                clock,
            )
        })
        .await?;
        let observed = Arc::new(Observed::default());
        let o = observed.clone();
        // An outer router with the real one as its fallback, so that the
        // layer runs before the real router picks a route.
        let app = Router::new()
            .fallback_service(built.router())
            .layer(axum::middleware::from_fn(move |req, next| {
                o.clone().layer(req, next)
            }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            serve(listener, app, async move {
                let _ = rx.changed().await;
            })
            .await
            .expect("the server runs")
        });
        let admin_client = Client::new(&base).with_token(admin.reveal());
        Ok(Server {
            base,
            observed,
            store: built.store().clone(),
            mailboxes: built.mailboxes().clone(),
            relay: built.relay().clone(),
            business: built.business().clone(),
            admin: admin_client,
            stop: Some(tx),
            data: Some(data),
        })
    }

    /// Registers a device for `phone` (a new account, or one more device
    /// of the account that has the number) with the dev verifier's code.
    pub async fn register(&self, phone: &str) -> (Client, Registered) {
        let anon = Client::new(&self.base);
        let started = anon.start_registration(phone, None).await.unwrap();
        let code = started.dev_code.expect("the dev verifier answers the code");
        let reg = anon
            .verify_registration(started.registration_id, &code, &device_info(), None)
            .await
            .unwrap();
        (Client::new(&self.base).with_token(&reg.token), reg)
    }
}

pub fn device_info() -> DeviceInfo {
    DeviceInfo {
        os: "android".into(),
        os_version: "15".into(),
        model: "Pixel 8".into(),
        app_version: "2.26.1".into(),
        locale: "id-ID".into(),
        carrier: None,
    }
}
