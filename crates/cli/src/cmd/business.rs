//! `accord business`: business messaging from a terminal.
//!
//! For a business (its account registered with `accord register` first):
//! `register`, `keys`, `templates`, `status`, `webhooks`, `agent` and
//! `send` (through the agent). Its API key is kept beside the session, in
//! `<session>.business.json` (0600), or given with `--api-key` /
//! `ACCORD_API_KEY`.
//!
//! For a user: `optin`, `optout`, `mute`, `unmute`, `block`, `unblock`,
//! `report` and `list` (the businesses that may message me, and why).

use super::msg::{cli_error, DeviceArgs};
use super::{print_json, SessionArgs};
use crate::error::{CliError, CliResult};
use crate::session::{write_private, Session};
use accord_client::messaging::BusinessDevice;
use accord_client::Client;
use accord_domain::business::Category;
use accord_domain::{AccountId, PhoneNumber};
use accord_messenger_wire::{
    ApiKeyCreated, ApiKeyView, BusinessControl, BusinessProfile, BusinessStatus, EventView,
    TemplateView, WebhookCreated, WebhookOutcome,
};
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args, Debug, Clone)]
pub struct KeyArgs {
    #[command(flatten)]
    pub s: SessionArgs,
    /// The business's API key (default: the one `accord business register`
    /// saved beside the session).
    #[arg(long, env = "ACCORD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

impl KeyArgs {
    fn api(&self) -> CliResult<Client> {
        let path = self.s.path();
        let session = Session::load(&path)?;
        let key = match &self.api_key {
            Some(k) => k.clone(),
            None => read_key(&path)?,
        };
        Ok(Client::new(&session.server).with_token(key))
    }
}

fn key_path(session: &Path) -> PathBuf {
    session.with_extension("business.json")
}

fn read_key(session: &Path) -> CliResult<String> {
    let p = key_path(session);
    let text = std::fs::read_to_string(&p).map_err(|_| {
        CliError::Input(format!(
            "no API key at {}: run `accord business register --name ...` or pass --api-key",
            p.display()
        ))
    })?;
    let v: ApiKeyCreated = serde_json::from_str(&text)
        .map_err(|e| CliError::Input(format!("{} is not valid: {e}", p.display())))?;
    Ok(v.api_key)
}

/// Who a user means: a business's number or account id.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    #[command(flatten)]
    pub s: SessionArgs,
    /// The business: its phone number or account id.
    #[arg(long)]
    pub business: String,
    /// ISO 3166-1 alpha-2 region for a national number, e.g. ID.
    #[arg(long)]
    pub region: Option<String>,
}

impl Target {
    async fn resolve(&self) -> CliResult<(Client, BusinessProfile)> {
        let client = Session::load(&self.s.path())?.client();
        let profile: BusinessProfile = match AccountId::parse(&self.business) {
            Some(a) => {
                client
                    .request(Method::GET, &format!("/v1/businesses/{a}"), None)
                    .await?
            }
            None => {
                let p = PhoneNumber::parse(&self.business, self.region.as_deref())
                    .map_err(|e| CliError::Input(format!("--business: {e}")))?;
                client
                    .request(
                        Method::POST,
                        "/v1/businesses/lookup",
                        Some(&json!({ "phone": p.e164() })),
                    )
                    .await?
            }
        };
        Ok((client, profile))
    }
}

fn parse_category(s: &str) -> CliResult<Category> {
    Category::parse(s).map_err(|e| CliError::Input(e.to_string()))
}

#[derive(Subcommand, Debug)]
pub enum BusinessCmd {
    /// Make this account a business; saves its first API key beside the
    /// session.
    Register {
        #[command(flatten)]
        s: SessionArgs,
        /// The name users see once an operator verified the business.
        #[arg(long)]
        name: String,
    },
    /// The business's API keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Templates: submit one for review, list them.
    #[command(subcommand)]
    Templates(TemplatesCmd),
    /// Quality rating, tier and webhook outbox, with the reasons.
    Status {
        #[command(flatten)]
        k: KeyArgs,
    },
    /// The status webhook: set it, send a test event, list events.
    #[command(subcommand)]
    Webhooks(WebhooksCmd),
    /// Run the business agent: the local API in the hosted APIs' shape,
    /// holding this device's keys.
    Agent {
        #[command(flatten)]
        d: DeviceArgs,
        #[arg(long, env = "ACCORD_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// Where the local API listens (loopback by default).
        #[arg(long, default_value = "127.0.0.1:8470")]
        listen: String,
        /// Region for national numbers in `to`.
        #[arg(long)]
        region: Option<String>,
        /// Also forward send statuses, delivery and read receipts and
        /// users' messages to this URL (signed X-Hub-Signature-256 with
        /// --webhook-secret): for a business without a public endpoint.
        #[arg(long, requires = "webhook_secret")]
        forward_webhook: Option<String>,
        /// The HMAC-SHA256 key of the forwarded requests' signature.
        #[arg(long, env = "ACCORD_WEBHOOK_SECRET", hide_env_values = true)]
        webhook_secret: Option<String>,
    },
    /// Send a template (or, with --text, a free-form service reply)
    /// through a running agent.
    Send {
        #[command(flatten)]
        k: KeyArgs,
        /// The agent's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8470")]
        agent: String,
        #[arg(long)]
        to: String,
        #[arg(long, conflicts_with = "text")]
        template: Option<String>,
        #[arg(long, default_value = "en")]
        language: String,
        /// A template parameter, in order (repeat).
        #[arg(long = "param")]
        params: Vec<String>,
        /// A free-form reply (only inside the 24-hour service window).
        #[arg(long)]
        text: Option<String>,
    },
    /// Opt in to a business's messages (and, with --marketing, its
    /// marketing).
    Optin {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        marketing: bool,
    },
    /// Opt out of a business's messages (marketing too), or with
    /// --marketing of its marketing only.
    Optout {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        marketing: bool,
    },
    /// Mute one category (utility, authentication, marketing, service)
    /// from a business.
    Mute {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        category: String,
    },
    Unmute {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        category: String,
    },
    /// Block a business: nothing it sends reaches you.
    Block {
        #[command(flatten)]
        t: Target,
    },
    Unblock {
        #[command(flatten)]
        t: Target,
    },
    /// Report a message you received (its envelope id, as `accord msg
    /// listen` prints it).
    Report {
        #[command(flatten)]
        s: SessionArgs,
        #[arg(long)]
        envelope: u64,
    },
    /// The businesses that may message me, and why.
    List {
        #[command(flatten)]
        s: SessionArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    Create {
        #[command(flatten)]
        s: SessionArgs,
        #[arg(long, default_value = "")]
        label: String,
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    List {
        #[command(flatten)]
        s: SessionArgs,
    },
    Revoke {
        #[command(flatten)]
        s: SessionArgs,
        key_id: uuid::Uuid,
    },
}

#[derive(Subcommand, Debug)]
pub enum TemplatesCmd {
    Submit {
        #[command(flatten)]
        k: KeyArgs,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "en")]
        language: String,
        /// utility, authentication or marketing.
        #[arg(long)]
        category: String,
        /// Text with numbered parameters: "Order {{1}} total {{2}}".
        #[arg(long)]
        body: String,
    },
    List {
        #[command(flatten)]
        k: KeyArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum WebhooksCmd {
    /// Register the webhook URL; prints its signing secret once.
    Set {
        #[command(flatten)]
        k: KeyArgs,
        #[arg(long)]
        url: String,
    },
    /// Send a signed test event now.
    Test {
        #[command(flatten)]
        k: KeyArgs,
    },
    /// The newest status events and their deliveries.
    Events {
        #[command(flatten)]
        k: KeyArgs,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

async fn set_controls(t: &Target, body: serde_json::Value) -> CliResult {
    let (client, profile) = t.resolve().await?;
    let c: BusinessControl = client
        .request(
            Method::PUT,
            &format!("/v1/me/businesses/{}", profile.business),
            Some(&body),
        )
        .await?;
    print_control(&c);
    Ok(())
}

fn print_control(c: &BusinessControl) {
    let name = match &c.business.display_name {
        Some(n) => format!("✓ {n}"),
        None => format!("{} (unverified)", c.business.business),
    };
    let may: Vec<&str> = c.may_send.iter().map(|m| m.as_str()).collect();
    println!(
        "{name}: may send {}",
        if may.is_empty() {
            "nothing".to_owned()
        } else {
            may.join(", ")
        }
    );
    for w in &c.why {
        println!("  - {w}");
    }
}

pub async fn run(cmd: BusinessCmd) -> CliResult {
    match cmd {
        BusinessCmd::Register { s, name } => {
            let path = s.path();
            let client = Session::load(&path)?.client();
            let key: ApiKeyCreated = client
                .request(
                    Method::POST,
                    "/v1/business",
                    Some(&json!({ "display_name": name })),
                )
                .await?;
            write_private(
                &key_path(&path),
                serde_json::to_string_pretty(&key)
                    .expect("serialises")
                    .as_bytes(),
            )?;
            println!("business {} registered", key.business);
            println!(
                "API key {} saved to {} (shown nowhere else)",
                key.key_id,
                key_path(&path).display()
            );
            println!("an operator verifies the business before users see its name");
        }
        BusinessCmd::Keys(k) => match k {
            KeysCmd::Create {
                s,
                label,
                expires_in_days,
            } => {
                let client = Session::load(&s.path())?.client();
                let key: ApiKeyCreated = client
                    .request(
                        Method::POST,
                        "/v1/business/keys",
                        Some(&json!({ "label": label, "expires_in_days": expires_in_days })),
                    )
                    .await?;
                print_json(&key);
            }
            KeysCmd::List { s } => {
                let client = Session::load(&s.path())?.client();
                let keys: Vec<ApiKeyView> = client
                    .request(Method::GET, "/v1/business/keys", None)
                    .await?;
                print_json(&keys);
            }
            KeysCmd::Revoke { s, key_id } => {
                let client = Session::load(&s.path())?.client();
                client
                    .request_raw(Method::DELETE, &format!("/v1/business/keys/{key_id}"), None)
                    .await?;
                println!("revoked {key_id}");
            }
        },
        BusinessCmd::Templates(t) => match t {
            TemplatesCmd::Submit {
                k,
                name,
                language,
                category,
                body,
            } => {
                let category = parse_category(&category)?;
                let t: TemplateView = k
                    .api()?
                    .request(
                        Method::POST,
                        "/v1/business/templates",
                        Some(&json!({"name": name, "language": language, "category": category, "body": body})),
                    )
                    .await?;
                println!(
                    "template {} {} version {} submitted ({} parameters): {}",
                    t.name, t.language, t.version, t.params, t.status
                );
            }
            TemplatesCmd::List { k } => {
                let list: Vec<TemplateView> = k
                    .api()?
                    .request(Method::GET, "/v1/business/templates", None)
                    .await?;
                for t in list {
                    println!(
                        "{} {} v{} {} {}{}",
                        t.name,
                        t.language,
                        t.version,
                        t.category,
                        t.status,
                        t.reason.map(|r| format!(" ({r})")).unwrap_or_default()
                    );
                }
            }
        },
        BusinessCmd::Status { k } => {
            let s: BusinessStatus = k
                .api()?
                .request(Method::GET, "/v1/business/status", None)
                .await?;
            println!("quality {} — {}", s.quality.as_str(), s.quality_reason);
            println!(
                "tier {} ({}) — {}",
                s.tier,
                s.tier_limit
                    .map_or("unlimited".to_owned(), |l| format!("{l} users / 24 h")),
                s.tier_reason
            );
            println!("conversations started in 24 h: {}", s.started_24h);
            if s.marketing_paused {
                println!("marketing is paused while quality is red");
            }
            if let Some(w) = s.webhook {
                println!(
                    "webhook {}: {} due ({} failing), {} delivered, {} given up",
                    w.url, w.due, w.failing, w.delivered, w.given_up
                );
            }
        }
        BusinessCmd::Webhooks(w) => match w {
            WebhooksCmd::Set { k, url } => {
                let c: WebhookCreated = k
                    .api()?
                    .request(
                        Method::PUT,
                        "/v1/business/webhook",
                        Some(&json!({ "url": url })),
                    )
                    .await?;
                println!("webhook set: {}", c.url);
                println!(
                    "signing secret (X-Hub-Signature-256, HMAC-SHA256): {}",
                    c.secret
                );
            }
            WebhooksCmd::Test { k } => {
                let o: WebhookOutcome = k
                    .api()?
                    .request(Method::POST, "/v1/business/webhook/test", None)
                    .await?;
                match (o.delivered, o.status) {
                    (true, Some(s)) => {
                        println!("test event {} delivered to {} ({s})", o.event_id, o.url)
                    }
                    _ => {
                        return Err(CliError::Input(format!(
                            "test event {} not delivered to {}: {}",
                            o.event_id,
                            o.url,
                            o.error.unwrap_or_default()
                        )))
                    }
                }
            }
            WebhooksCmd::Events { k, limit } => {
                let ev: Vec<EventView> = k
                    .api()?
                    .request(
                        Method::GET,
                        &format!("/v1/business/events?limit={limit}"),
                        None,
                    )
                    .await?;
                for e in ev {
                    println!(
                        "{} {} {} to {} {} webhook {} ({} attempts)",
                        e.event_id,
                        e.message_id,
                        e.status,
                        e.recipient,
                        e.code.unwrap_or_default(),
                        e.webhook,
                        e.attempts
                    );
                }
            }
        },
        BusinessCmd::Agent {
            d,
            api_key,
            listen,
            region,
            forward_webhook,
            webhook_secret,
        } => {
            d.e2e.check()?;
            let path = d.s.path();
            let session = Session::load(&path)?;
            let key = match api_key {
                Some(k) => k,
                None => read_key(&path)?,
            };
            let device = d.e2e.open_device(&path, &session)?;
            let api = Client::new(&session.server).with_token(&key);
            let bd = BusinessDevice::open(device, session.client(), api.clone())
                .await
                .map_err(cli_error)?;
            let forward = match (forward_webhook, webhook_secret) {
                (Some(url), Some(secret)) => {
                    if reqwest::Url::parse(&url).is_err() {
                        return Err(CliError::Input(format!(
                            "--forward-webhook {url:?} is not a URL"
                        )));
                    }
                    Some(super::business_agent::Forward::start(
                        url,
                        secret,
                        session.account_id.clone(),
                    ))
                }
                _ => None,
            };
            let agent = Arc::new(super::business_agent::Agent::new(
                bd, api, &key, region, forward,
            ));
            super::business_agent::serve(agent, &listen, session.token.clone()).await?;
        }
        BusinessCmd::Send {
            k,
            agent,
            to,
            template,
            language,
            params,
            text,
        } => {
            let key = match &k.api_key {
                Some(key) => key.clone(),
                None => read_key(&k.s.path())?,
            };
            let body = match (template, text) {
                (Some(name), None) => json!({
                    "messaging_product": "whatsapp",
                    "to": to,
                    "type": "template",
                    "template": {
                        "name": name,
                        "language": { "code": language },
                        "components": [{
                            "type": "body",
                            "parameters": params.iter().map(|p| json!({"type": "text", "text": p})).collect::<Vec<_>>(),
                        }],
                    },
                }),
                (None, Some(t)) => json!({ "to": to, "type": "text", "text": { "body": t } }),
                _ => {
                    return Err(CliError::Input(
                        "give --template NAME (with --param ...) or --text".into(),
                    ))
                }
            };
            let r = reqwest::Client::new()
                .post(format!("{}/v1/messages", agent.trim_end_matches('/')))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .map_err(|e| {
                    CliError::Input(format!("no agent at {agent}: {}", e.without_url()))
                })?;
            let status = r.status();
            let v: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
            if status.is_success() {
                println!(
                    "sent {} to {}",
                    v["messages"][0]["id"].as_str().unwrap_or("?"),
                    v["contacts"][0]["wa_id"].as_str().unwrap_or("?")
                );
            } else {
                return Err(CliError::Input(format!(
                    "refused: {} ({} {})",
                    v["error"]["message"].as_str().unwrap_or("?"),
                    v["error"]["type"].as_str().unwrap_or("?"),
                    v["error"]["code"]
                )));
            }
        }
        BusinessCmd::Optin { t, marketing } => {
            let body = if marketing {
                json!({ "opted_in": true, "marketing": true })
            } else {
                json!({ "opted_in": true })
            };
            set_controls(&t, body).await?;
        }
        BusinessCmd::Optout { t, marketing } => {
            let body = if marketing {
                json!({ "marketing": false })
            } else {
                json!({ "opted_in": false })
            };
            set_controls(&t, body).await?;
        }
        BusinessCmd::Mute { t, category } => {
            let c = parse_category(&category)?;
            set_controls(&t, json!({ "mute": [c] })).await?;
        }
        BusinessCmd::Unmute { t, category } => {
            let c = parse_category(&category)?;
            set_controls(&t, json!({ "unmute": [c] })).await?;
        }
        BusinessCmd::Block { t } => set_controls(&t, json!({ "blocked": true })).await?,
        BusinessCmd::Unblock { t } => set_controls(&t, json!({ "blocked": false })).await?,
        BusinessCmd::Report { s, envelope } => {
            let client = Session::load(&s.path())?.client();
            client
                .request_raw(
                    Method::POST,
                    "/v1/reports",
                    Some(&json!({ "envelope_id": envelope })),
                )
                .await?;
            println!("reported envelope {envelope}");
        }
        BusinessCmd::List { s } => {
            let client = Session::load(&s.path())?.client();
            let list: Vec<BusinessControl> = client
                .request(Method::GET, "/v1/me/businesses", None)
                .await?;
            if list.is_empty() {
                println!("no business may message you");
            }
            for c in &list {
                print_control(c);
            }
        }
    }
    Ok(())
}
