//! # accord-client
//!
//! A typed HTTP client for the messenger API, used by the CLI, the demo
//! and the integration tests, so that every one of them talks to the
//! server exactly as a device or an operator would.
//!
//! - [`Client`]: base URL plus an optional bearer token (a device's or the
//!   operator's).
//! - [`ClientError`]: transport failures, and API errors with the server's
//!   stable `code`.
//! - [`discovery`]: private contact discovery, as a device does it.
//! - [`messaging`]: end-to-end messaging, as a device does it: a
//!   [`messaging::Device`] (Olm state sealed at rest under a passphrase or
//!   key file), key publication and replenishment, fan-out sending,
//!   receiving over the WebSocket or long-poll.
//! - [`wire`]: the messenger API's request and response bodies, the very
//!   types the server reads and writes (`accord-messenger-wire`); the
//!   ones a caller names most ([`Registered`], [`RegistrationStarted`],
//!   [`ConsentView`], [`AcceptChoice`], [`ClockView`]) are re-exported here.

pub mod discovery;
pub mod kt;
pub mod messaging;

use accord_domain::ledger::LedgerEntry;
use accord_domain::{AccountId, DeviceInfo, PolicyVersion, Purpose, Timestamp};
use accord_messenger_wire::LedgerReport;
use accord_messenger_wire::{Acceptance, AdvanceClock, StartRegistration, VerifyRegistration};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

pub use accord_messenger_wire as wire;
pub use accord_messenger_wire::{
    AcceptChoice, ClockView, ConsentView, Registered, RegistrationStarted,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the server: {0}")]
    Transport(String),
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
        details: Option<Value>,
    },
    #[error("unexpected response from the server: {0}")]
    Decode(String),
}

impl ClientError {
    /// The server's stable error code, if the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: impl Into<String>) -> Self {
        Client {
            base: base.into().trim_end_matches('/').to_owned(),
            token: None,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .expect("reqwest client builds"),
        }
    }
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request and decodes the JSON answer, or the API error.
    pub async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        let v = self.request_raw(method, path, body).await?;
        serde_json::from_value(v).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Like [`request`](Self::request), without decoding (`null` for an empty answer).
    pub async fn request_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let mut rb = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.without_url().to_string()))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if status.is_success() {
            if bytes.is_empty() || status == StatusCode::NO_CONTENT {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()));
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(ClientError::Api {
            status: status.as_u16(),
            code: body["code"].as_str().unwrap_or("unknown").to_owned(),
            message: body["message"]
                .as_str()
                .unwrap_or("(no message)")
                .to_owned(),
            details: body.get("details").cloned(),
        })
    }

    // ---- public -------------------------------------------------------

    pub async fn health(&self) -> Result<Value> {
        self.request_raw(Method::GET, "/healthz", None).await
    }

    pub async fn start_registration(
        &self,
        phone: &str,
        region: Option<&str>,
    ) -> Result<RegistrationStarted> {
        let body = StartRegistration {
            phone: phone.to_owned(),
            region: region.map(str::to_owned),
        };
        self.request(Method::POST, "/v1/registrations", Some(&to_json(&body)))
            .await
    }

    pub async fn verify_registration(
        &self,
        id: Uuid,
        code: &str,
        device: &DeviceInfo,
        accept: Option<(u32, &AcceptChoice)>,
    ) -> Result<Registered> {
        let body = VerifyRegistration {
            code: code.to_owned(),
            device: device.clone(),
            accept: accept.map(|(version, choice)| Acceptance {
                version,
                choice: choice.clone(),
            }),
        };
        self.request(
            Method::POST,
            &format!("/v1/registrations/{id}/verify"),
            Some(&to_json(&body)),
        )
        .await
    }

    pub async fn current_policy(&self) -> Result<Option<PolicyVersion>> {
        match self
            .request(Method::GET, "/v1/policies/current", None)
            .await
        {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.code() == Some("not_found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    // ---- a device -----------------------------------------------------

    pub async fn accept_policy(&self, version: u32, choice: &AcceptChoice) -> Result<ConsentView> {
        self.request(
            Method::POST,
            &format!("/v1/policies/{version}/accept"),
            Some(&to_json(choice)),
        )
        .await
    }
    pub async fn me(&self) -> Result<Value> {
        self.request_raw(Method::GET, "/v1/me", None).await
    }
    pub async fn consent(&self) -> Result<ConsentView> {
        self.request(Method::GET, "/v1/me/consent", None).await
    }
    pub async fn grant(&self, purpose: Purpose) -> Result<ConsentView> {
        self.request(
            Method::POST,
            &format!("/v1/me/consent/{purpose}/grant"),
            None,
        )
        .await
    }
    pub async fn withdraw(&self, purpose: Purpose) -> Result<ConsentView> {
        self.request(
            Method::POST,
            &format!("/v1/me/consent/{purpose}/withdraw"),
            None,
        )
        .await
    }
    pub async fn consent_at(&self, at: Timestamp) -> Result<ConsentView> {
        self.request(
            Method::GET,
            &format!("/v1/me/consent/history?at={}", at.0),
            None,
        )
        .await
    }
    pub async fn receipt(&self) -> Result<Value> {
        self.request_raw(Method::GET, "/v1/me/consent/receipt", None)
            .await
    }
    pub async fn export(&self) -> Result<Value> {
        self.request_raw(Method::GET, "/v1/me/export", None).await
    }
    pub async fn delete_account(&self) -> Result<()> {
        self.request_raw(Method::DELETE, "/v1/me", None)
            .await
            .map(|_| ())
    }

    // ---- the operator -------------------------------------------------

    pub async fn publish_policy(
        &self,
        text: &str,
        purposes: &[Purpose],
        profile: Option<&str>,
    ) -> Result<PolicyVersion> {
        // The profile goes as the caller's string (not a parsed
        // `ConsentProfile`, as in `wire::PublishPolicy`): an unknown one
        // is the server's 400, with its message.
        self.request(
            Method::POST,
            "/v1/admin/policies",
            Some(&json!({ "text": text, "purposes": purposes, "profile": profile })),
        )
        .await
    }
    pub async fn policies(&self) -> Result<Vec<PolicyVersion>> {
        self.request(Method::GET, "/v1/admin/policies", None).await
    }
    /// Entries of ledger shard `shard` after `after`, at most `limit`.
    pub async fn ledger(&self, shard: u16, after: u64, limit: u32) -> Result<Vec<LedgerEntry>> {
        self.request(
            Method::GET,
            &format!("/v1/admin/ledger?shard={shard}&after={after}&limit={limit}"),
            None,
        )
        .await
    }
    /// Every entry of every shard (shard by shard).
    pub async fn ledger_all(&self) -> Result<Vec<LedgerEntry>> {
        let mut out = Vec::new();
        for shard in 0..accord_domain::transparency::SHARDS {
            let mut after = 0;
            loop {
                let page = self.ledger(shard, after, 1000).await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                out.extend(page);
            }
        }
        Ok(out)
    }
    pub async fn verify_ledger(&self) -> Result<LedgerReport> {
        self.request(Method::GET, "/v1/admin/ledger/verify", None)
            .await
    }
    pub async fn admin_consent_at(&self, account: AccountId, at: Timestamp) -> Result<ConsentView> {
        self.request(
            Method::GET,
            &format!("/v1/admin/accounts/{account}/consent?at={}", at.0),
            None,
        )
        .await
    }
    pub async fn clock(&self) -> Result<ClockView> {
        self.request(Method::GET, "/v1/admin/clock", None).await
    }
    pub async fn advance_clock(&self, days: i64, hours: i64, seconds: i64) -> Result<ClockView> {
        let body = AdvanceClock {
            days,
            hours,
            seconds,
        };
        self.request(Method::POST, "/v1/admin/clock", Some(&to_json(&body)))
            .await
    }
}

/// A request body as JSON (the wire types always serialise).
pub(crate) fn to_json(body: &impl Serialize) -> Value {
    serde_json::to_value(body).expect("wire types serialise")
}
