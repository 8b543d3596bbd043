//! `accord business agent`: the process a business runs on its own
//! machine. It holds the business's device keys and offers, on loopback, a
//! local API in the shape of the hosted business messaging APIs, so that
//! a business that already speaks one changes only its base URL and keeps
//! its keys:
//!
//! - `POST /v1/messages`, or `POST /{version}/{phone_number_id}/messages`
//!   as the hosted APIs spell it, with `to`, `type` (`template` or
//!   `text`), `template.name`, `template.language.code` and
//!   `template.components[].parameters[].text`, or `text.body`;
//! - answers `{"messages":[{"id": ...}], "contacts": [...]}`, or
//!   `{"error": {"code": <number>, "type": "<stable code>", "message":
//!   ...}}` with the hosted APIs' numbers where they have one;
//! - `Authorization: Bearer <the business's API key>` (the same key the
//!   agent uses towards the messenger).
//!
//! Each message is checked here first (the template's parameters against
//! the approved body, which the messenger cannot check: it never sees
//! them), then encrypted with the client SDK ([`BusinessDevice`]) and sent
//! through the messenger's business API, which applies the user's
//! controls and the business's limits. Nothing is half-sent: a refusal
//! anywhere means no envelope was stored.

use crate::error::{CliError, CliResult};
use accord_client::messaging::{BusinessDevice, MessagingError, Plaintext, Recipient};
use accord_client::Client;
use accord_crypto::token::TokenHash;
use accord_domain::business::{check_params, Category, RenderError};
use accord_domain::PhoneNumber;
use accord_e2e::{BusinessMeta, ClientMessageId, TemplateRef};
use accord_messenger_wire::TemplateView;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the agent trusts its list of approved templates.
const TEMPLATES_TTL: Duration = Duration::from_secs(10);

/// (name, language) → the newest approved version, its parameter count
/// and category.
type Approved = HashMap<(String, String), (u32, usize, Category)>;

/// The agent's state.
pub struct Agent {
    pub device: BusinessDevice,
    /// Where status events and inbound messages are forwarded, if asked.
    forward: Option<Forward>,
    api: Client,
    key_hash: TokenHash,
    /// (name, language) → the newest approved version and its parameter
    /// count, and when the list was read.
    templates: Mutex<(Option<Instant>, Approved)>,
    /// The default region for national numbers in `to`.
    region: Option<String>,
}

impl Agent {
    pub fn new(
        device: BusinessDevice,
        api: Client,
        api_key: &str,
        region: Option<String>,
        forward: Option<Forward>,
    ) -> Self {
        Agent {
            device,
            forward,
            api,
            key_hash: TokenHash::of(api_key),
            templates: Mutex::new((None, HashMap::new())),
            region,
        }
    }

    /// The router of the local API.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/messages", post(send))
            .route("/{version}/{phone_number_id}/messages", post(send))
            .with_state(self)
    }

    /// The newest approved version of a template and its parameter count.
    async fn template(
        &self,
        name: &str,
        language: &str,
    ) -> Result<Option<(u32, usize, Category)>, Failure> {
        let key = (name.to_owned(), language.to_owned());
        {
            let t = self.templates.lock().unwrap_or_else(|e| e.into_inner());
            if t.0.is_some_and(|at| at.elapsed() < TEMPLATES_TTL) {
                if let Some(v) = t.1.get(&key) {
                    return Ok(Some(*v));
                }
            }
        }
        let list: Vec<TemplateView> = self
            .api
            .request(Method::GET, "/v1/business/templates", None)
            .await
            .map_err(|e| Failure::from_client(&e))?;
        let mut map: Approved = HashMap::new();
        for t in list.into_iter().filter(|t| t.status == "approved") {
            let e = map.entry((t.name.clone(), t.language.clone())).or_insert((
                t.version,
                t.params as usize,
                t.category,
            ));
            if t.version > e.0 {
                *e = (t.version, t.params as usize, t.category);
            }
        }
        let found = map.get(&key).copied();
        *self.templates.lock().unwrap_or_else(|e| e.into_inner()) = (Some(Instant::now()), map);
        Ok(found)
    }
}

/// The hosted APIs' request body (the fields the agent reads; others are
/// ignored, as the hosted APIs ignore `messaging_product`).
#[derive(Debug, Deserialize)]
pub struct SendBody {
    pub to: String,
    #[serde(rename = "type", default = "default_type")]
    pub kind: String,
    #[serde(default)]
    pub template: Option<TemplateBody>,
    #[serde(default)]
    pub text: Option<TextBody>,
}

fn default_type() -> String {
    "text".into()
}

#[derive(Debug, Deserialize)]
pub struct TemplateBody {
    pub name: String,
    pub language: LanguageBody,
    #[serde(default)]
    pub components: Vec<ComponentBody>,
}

#[derive(Debug, Deserialize)]
pub struct LanguageBody {
    pub code: String,
}

#[derive(Debug, Deserialize)]
pub struct ComponentBody {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub parameters: Vec<ParameterBody>,
}

#[derive(Debug, Deserialize)]
pub struct ParameterBody {
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct TextBody {
    pub body: String,
}

/// An error answer in the hosted APIs' shape.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    number: u32,
    code: String,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, number: u32, code: &str, message: impl Into<String>) -> Self {
        Failure {
            status,
            number,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    fn bad(number: u32, code: &str, message: impl Into<String>) -> Self {
        Failure::new(StatusCode::BAD_REQUEST, number, code, message)
    }

    /// The messenger's answer, with its number when it is a refusal.
    fn from_client(e: &accord_client::ClientError) -> Self {
        let code = e.code().unwrap_or("messenger_unavailable");
        let number = accord_domain::business::Refusal::parse(code)
            .map(accord_domain::business::Refusal::number)
            .unwrap_or(match code {
                "unknown_recipient" => 131_030,
                "api_key_invalid" | "api_key_expired" | "api_key_revoked" => 190,
                "business_revoked" => 131_031,
                _ => 131_000,
            });
        let status = e
            .status()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::BAD_GATEWAY);
        Failure::new(status, number, code, e.to_string())
    }

    fn from_messaging(e: MessagingError) -> Self {
        match e {
            MessagingError::Client(c) => Failure::from_client(&c),
            MessagingError::NoDevices => Failure::bad(
                131_026,
                "no_devices",
                "the recipient has no device that can receive messages",
            ),
            other => Failure::new(
                StatusCode::BAD_GATEWAY,
                131_000,
                other.code(),
                other.to_string(),
            ),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({
                "error": {
                    "message": self.message,
                    "type": self.code,
                    "code": self.number,
                }
            })),
        )
            .into_response()
    }
}

fn render_failure(e: RenderError) -> Failure {
    match e {
        RenderError::ParamCount { .. } => Failure::bad(132_000, e.code(), e.to_string()),
        _ => Failure::bad(131_008, e.code(), e.to_string()),
    }
}

async fn send(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Failure> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Failure::new(
                StatusCode::UNAUTHORIZED,
                190,
                "unauthorized",
                "Authorization: Bearer <API key> is required",
            )
        })?;
    if TokenHash::of(token.trim()) != agent.key_hash {
        return Err(Failure::new(
            StatusCode::UNAUTHORIZED,
            190,
            "api_key_invalid",
            "not this agent's API key",
        ));
    }
    let b: SendBody = serde_json::from_slice(&body).map_err(|e| {
        Failure::bad(
            100,
            "invalid_json",
            format!("the body is not a message: {e}"),
        )
    })?;
    let phone = PhoneNumber::parse(&b.to, agent.region.as_deref())
        .map_err(|e| Failure::bad(100, "invalid_phone", format!("`to`: {e}")))?;
    let message_id = ClientMessageId::random();
    let (meta, kind) = match b.kind.as_str() {
        "template" => {
            let t = b.template.ok_or_else(|| {
                Failure::bad(
                    100,
                    "invalid_field",
                    "`template` is required for type template",
                )
            })?;
            let params: Vec<String> = t
                .components
                .iter()
                .filter(|c| c.kind == "body")
                .flat_map(|c| c.parameters.iter())
                .map(|p| p.text.clone().unwrap_or_default())
                .collect();
            let (version, expected, category) = agent
                .template(&t.name, &t.language.code)
                .await?
                .ok_or_else(|| {
                    Failure::new(
                        StatusCode::NOT_FOUND,
                        132_001,
                        "template_not_approved",
                        format!("no approved template {} in {}", t.name, t.language.code),
                    )
                })?;
            check_params(expected, &params).map_err(render_failure)?;
            (
                BusinessMeta {
                    category,
                    template: Some(TemplateRef {
                        name: t.name,
                        language: t.language.code,
                        version,
                    }),
                },
                accord_e2e::PlaintextKind::Template { params },
            )
        }
        "text" => {
            let text = b.text.ok_or_else(|| {
                Failure::bad(
                    100,
                    "invalid_field",
                    "`text.body` is required for type text",
                )
            })?;
            if text.body.trim().is_empty() || text.body.chars().count() > 4_096 {
                return Err(Failure::bad(
                    100,
                    "invalid_field",
                    "`text.body` is 1 to 4,096 characters",
                ));
            }
            (
                BusinessMeta {
                    category: Category::Service,
                    template: None,
                },
                accord_e2e::PlaintextKind::Text { body: text.body },
            )
        }
        other => {
            return Err(Failure::bad(
                100,
                "invalid_field",
                format!("`type` must be template or text, not {other:?}"),
            ))
        }
    };
    let plaintext = Plaintext {
        client_message_id: message_id.clone(),
        sent_at: accord_domain::Clock::now(&accord_domain::SystemClock),
        kind,
    };
    let sent = match agent
        .device
        .send(&Recipient::Phone(phone.clone()), &meta, &plaintext)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            let f = Failure::from_messaging(e);
            if let Some(fw) = &agent.forward {
                fw.status(status_json(message_id.as_str(), "failed", &b.to, Some(&f)));
            }
            return Err(f);
        }
    };
    if let Some(fw) = &agent.forward {
        fw.status(status_json(
            message_id.as_str(),
            "sent",
            &sent.to_account.to_string(),
            None,
        ));
    }
    Ok(Json(json!({
        "messaging_product": "accord",
        "contacts": [{ "input": b.to, "wa_id": sent.to_account.to_string() }],
        "messages": [{ "id": message_id.as_str(), "message_status": "accepted" }],
    })))
}

/// How often the agent writes its device state. Each write seals and
/// rewrites every session (with 10,000 sessions, tens of MB), and what a
/// crash loses in between costs only new sessions (see `Device::hold`).
const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// Serves the agent until Ctrl-C, writing the device state every
/// [`FLUSH_EVERY`] and at the end.
pub async fn serve(agent: Arc<Agent>, listen: &str, device_token: String) -> CliResult {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| CliError::Input(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Internal(e.into()))?;
    println!(
        "business agent for {} on http://{addr}",
        agent.device.account_id()
    );
    println!("send with: curl -H 'Authorization: Bearer <API key>' http://{addr}/v1/messages -d '{{\"to\":\"+62...\",\"type\":\"template\",\"template\":{{\"name\":\"order_receipt\",\"language\":{{\"code\":\"en\"}},\"components\":[{{\"type\":\"body\",\"parameters\":[{{\"type\":\"text\",\"text\":\"A-17\"}}]}}]}}}}'");
    if let Some(fw) = agent.forward.clone() {
        println!("forwarding statuses and inbound messages to {}", fw.url);
        tokio::spawn(fw.run_stream(agent.clone(), device_token));
    }
    let flusher = agent.clone();
    let flush = tokio::spawn(async move {
        loop {
            tokio::time::sleep(FLUSH_EVERY).await;
            if let Err(e) = flusher.device.flush() {
                tracing::warn!(error = %e, "agent state not written; will retry");
            }
        }
    });
    let app = agent.clone().router();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| CliError::Internal(e.into()))?;
    flush.abort();
    agent.device.flush().map_err(super::msg::cli_error)?;
    Ok(())
}

// ---- forwarding to the business ------------------------------------------

/// Where the agent forwards what it sees: the statuses of its sends
/// (`sent` on accept, `failed` with the code on refusal), `delivered` from
/// the messenger's delivery receipts and `read` from users' read
/// receipts on its device's stream, and the messages users send to the
/// business, decrypted. In the hosted APIs' webhook shape, signed
/// `X-Hub-Signature-256` under `--webhook-secret`. This is the path for a
/// business without a public endpoint: the agent's connection is
/// outbound. Items from the stream are acked to the messenger only once
/// the business's endpoint took them, so an inbound message is never
/// lost; statuses of sends are retried in memory (the messenger's own
/// webhook outbox is the durable path).
#[derive(Clone)]
pub struct Forward {
    url: String,
    secret: Arc<Vec<u8>>,
    business: String,
    tx: tokio::sync::mpsc::UnboundedSender<Value>,
}

/// A status in the hosted APIs' webhook shape, with a deterministic event
/// id (a retry carries the same one).
fn status_json(message_id: &str, status: &str, recipient: &str, f: Option<&Failure>) -> Value {
    let mut v = json!({
        "event_id": format!("agt_{message_id}_{status}"),
        "id": message_id,
        "status": status,
        "timestamp": (accord_domain::Clock::now(&accord_domain::SystemClock).0 / 1000).to_string(),
        "recipient_id": recipient,
    });
    if let Some(f) = f {
        v["errors"] = json!([{ "code": f.number, "title": f.code, "message": f.message }]);
    }
    v
}

impl Forward {
    /// Starts the forwarder of send statuses; `run_stream` forwards the
    /// device's stream.
    pub fn start(url: String, secret: String, business: String) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
        let fw = Forward {
            url,
            secret: Arc::new(secret.into_bytes()),
            business,
            tx,
        };
        let me = fw.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 100 {
                    match rx.try_recv() {
                        Ok(v) => batch.push(v),
                        Err(_) => break,
                    }
                }
                me.post_until_taken(&http, batch, Vec::new()).await;
            }
        });
        fw
    }

    fn status(&self, v: Value) {
        let _ = self.tx.send(v);
    }

    /// Posts statuses and messages, retrying with backoff until the
    /// endpoint answers 2xx.
    async fn post_until_taken(
        &self,
        http: &reqwest::Client,
        statuses: Vec<Value>,
        messages: Vec<Value>,
    ) {
        let body = json!({
            "object": "accord_business_account",
            "entry": [{ "id": self.business, "changes": [{ "field": "messages",
                "value": { "statuses": statuses, "messages": messages } }] }],
        });
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let sig = accord_crypto::mac::hub_signature(&self.secret, &bytes);
        let mut pause = Duration::from_millis(500);
        loop {
            let r = http
                .post(&self.url)
                .header("content-type", "application/json")
                .header(accord_crypto::mac::HUB_SIGNATURE_HEADER, &sig)
                .body(bytes.clone())
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => tracing::warn!(
                    status = r.status().as_u16(),
                    "the business's endpoint refused a forward; will retry"
                ),
                Err(_) => {
                    tracing::warn!("the business's endpoint did not take a forward; will retry")
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(60));
        }
    }

    /// Forwards the device's stream until the process ends: reconnects
    /// with backoff; acks each batch once the endpoint took it.
    pub async fn run_stream(self, agent: Arc<Agent>, token: String) {
        use accord_e2e::{PlaintextKind, ServerFrame};
        use futures_util::{SinkExt, StreamExt};
        let http = reqwest::Client::new();
        let mut pause = Duration::from_millis(500);
        loop {
            let base = agent.device.client().base().to_owned();
            let mut ws = match crate::ws::connect(&base, &token).await {
                Ok(ws) => ws,
                Err(e) => {
                    tracing::warn!(error = %e, "agent stream: cannot connect; will retry");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            pause = Duration::from_millis(500);
            loop {
                // A batch: what arrives within 5 ms of the first frame.
                let Some(Ok(first)) = ws.next().await else {
                    break;
                };
                let mut frames = vec![first];
                while frames.len() < 100 {
                    match tokio::time::timeout(Duration::from_millis(5), ws.next()).await {
                        Ok(Some(Ok(m))) => frames.push(m),
                        _ => break,
                    }
                }
                let (mut statuses, mut messages, mut acks) = (Vec::new(), Vec::new(), Vec::new());
                for m in frames {
                    let tokio_tungstenite::tungstenite::Message::Text(t) = m else {
                        continue;
                    };
                    let Ok(frame) = accord_e2e::decode_server_frame(t.as_str().as_bytes()) else {
                        continue;
                    };
                    match frame {
                        ServerFrame::Receipt {
                            id,
                            client_message_id,
                            recipient_device,
                            ..
                        } => {
                            acks.push(id);
                            let to = agent
                                .device
                                .account_of_device(recipient_device)
                                .map_or(recipient_device.to_string(), |a| a.to_string());
                            statuses.push(status_json(
                                client_message_id.as_str(),
                                "delivered",
                                &to,
                                None,
                            ));
                        }
                        ServerFrame::Envelope(env) => {
                            acks.push(env.id);
                            let from = env.sender_account.to_string();
                            let ts = (env.server_ts.0 / 1000).to_string();
                            match agent.device.decrypt(&env).await {
                                Ok(None) => {}
                                Ok(Some(p)) => match p.kind {
                                    PlaintextKind::Text { body } => messages.push(json!({
                                        "event_id": format!("agt_in_{}", env.id.0),
                                        "from": from, "id": p.client_message_id.as_str(),
                                        "timestamp": ts, "type": "text", "text": { "body": body },
                                    })),
                                    PlaintextKind::ReadReceipt { client_message_ids } => {
                                        for c in client_message_ids {
                                            statuses.push(status_json(c.as_str(), "read", &from, None));
                                        }
                                    }
                                    PlaintextKind::Template { .. } => {}
                                },
                                Err(e) => messages.push(json!({
                                    "event_id": format!("agt_in_{}", env.id.0),
                                    "from": from, "timestamp": ts, "type": "unsupported",
                                    "errors": [{ "code": 131_051, "title": e.code(), "message": "could not be decrypted" }],
                                })),
                            }
                        }
                        _ => {}
                    }
                }
                if !statuses.is_empty() || !messages.is_empty() {
                    self.post_until_taken(&http, statuses, messages).await;
                }
                if !acks.is_empty() {
                    let f = json!({ "type": "ack", "envelope_ids": acks }).to_string();
                    if ws
                        .send(tokio_tungstenite::tungstenite::Message::Text(f.into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    }
}
