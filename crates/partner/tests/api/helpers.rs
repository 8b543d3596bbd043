//! Starts the real partner service (router, `serve`, SQLite in a
//! temporary directory) on `127.0.0.1:0`.

use accord_crypto::token::{BearerToken, TokenHash};
use accord_domain::{SimulatedClock, Timestamp};
use accord_partner::{router, serve, AppState, PartnerService};
use accord_storage::partner::SqlPartnerStore;
use accord_storage::Db;
use reqwest::Method;
use serde_json::Value;
use std::sync::Arc;
use tempfile::TempDir;

/// 2026-01-05T09:00:00Z.
pub const T0: Timestamp = Timestamp(1_767_603_600_000);

pub struct TestApp {
    pub base_url: String,
    pub admin_token: String,
    pub http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: TempDir,
}

/// A response, whatever its status.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
}

pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = Db::open_service(dir.path().to_str().expect("utf-8 path"), "partner")
        .await
        .expect("partner database");
    let store = SqlPartnerStore::new(db).await.expect("partner migrations");
    let clock = SimulatedClock::frozen_at(T0);
    let service = PartnerService::new(
        Arc::new(store),
        Arc::new(clock),
        b"feed secret of this test".to_vec(),
    );
    let admin_token = BearerToken::generate().reveal().to_owned();
    let app = router(AppState {
        service,
        admin_token: TokenHash::of(&admin_token),
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
        _stop: stop,
        _dir: dir,
    }
}

impl TestApp {
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

    /// Signs up a partner user; returns its id and token.
    pub async fn sign_up(&self, name: &str, pseudonym: Option<String>) -> (String, String) {
        let r = self
            .send(
                Method::POST,
                "/v1/partner/users",
                None,
                Some(serde_json::json!({ "name": name, "phone_pseudonym": pseudonym })),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        (
            r.body["user_id"].as_str().expect("user_id").to_owned(),
            r.body["token"].as_str().expect("token").to_owned(),
        )
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
