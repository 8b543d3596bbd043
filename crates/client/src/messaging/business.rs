//! Business messages as a user's client shows them.
//!
//! The envelope says what the messenger admitted a business message as
//! ([`BusinessMeta`]: a template by name, language and version, and its
//! category; or a free-form `service` reply). The plaintext holds only the
//! template's parameters. The client fetches the approved template,
//! signed by the messenger's log key (pinned on first use, like the
//! directory keys), checks that it is the one the envelope names and
//! renders it with the parameters. Anything that does not fit (another
//! body, a category the template does not have, the wrong number or shape
//! of parameters, a bad signature, a text where a template was announced)
//! is shown as unverified, with the reason, and can be reported in one
//! step. So a business cannot send marketing that looks like a receipt:
//! the server never reads the content, and the client shows only what an
//! operator approved.
//!
//! A business's name is shown only when the messenger says an operator
//! verified it; an unverified sender is shown by its number or id, never
//! by the name it chose.

use accord_domain::business::{render, Category, TemplateContent};
use accord_domain::transparency::LogKey;
use accord_domain::AccountId;
use accord_e2e::{BusinessMeta, Plaintext, PlaintextKind};
use accord_messenger_wire::{BusinessProfile, LogInfo, SignedTemplate};
use reqwest::Method;

use super::device::Device;
use super::error::{MessagingError, Result};
use crate::Client;

/// How a business message is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rendered {
    /// The approved template with its parameters, or the service reply's
    /// text.
    Verified { text: String },
    /// It does not fit what the messenger approved: show this reason and a
    /// report button, never the content as if it were genuine.
    Unverified { reason: String },
}

/// A business message, ready to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessMessage {
    pub business: AccountId,
    /// The verified name, with the badge; `None` for an unverified
    /// business (show its number or id instead).
    pub verified_name: Option<String>,
    pub category: Category,
    pub rendered: Rendered,
}

impl BusinessMessage {
    /// One line for a terminal: `[✓ Name] utility: text`, or the reason it
    /// is unverified.
    pub fn line(&self) -> String {
        let who = match &self.verified_name {
            Some(n) => format!("✓ {n}"),
            None => format!("business {} (unverified)", self.business),
        };
        match &self.rendered {
            Rendered::Verified { text } => format!("[{who}] {}: {text}", self.category),
            Rendered::Unverified { reason } => {
                format!(
                    "[{who}] UNVERIFIED {} message: {reason} (report it with its envelope id)",
                    self.category
                )
            }
        }
    }
}

fn unverified(reason: impl Into<String>) -> Rendered {
    Rendered::Unverified {
        reason: reason.into(),
    }
}

impl Device {
    /// The messenger's log key, pinned on first use.
    async fn pinned_log_key(&mut self, client: &Client) -> Result<String> {
        if let Some(k) = &self.dir.log_key {
            return Ok(k.clone());
        }
        let info: LogInfo = client
            .request(Method::GET, "/v1/transparency/key", None)
            .await?;
        let key = info.log_key.clone();
        self.locked(|_, dir| {
            if dir.log_key.is_none() {
                dir.log_key = Some(key);
            }
        })?;
        Ok(self.dir.log_key.clone().unwrap_or(info.log_key))
    }

    /// Renders a business message from `from` (see the module docs).
    pub async fn render_business(
        &mut self,
        client: &Client,
        from: AccountId,
        meta: &BusinessMeta,
        plaintext: &Plaintext,
    ) -> Result<BusinessMessage> {
        let profile: std::result::Result<BusinessProfile, _> = client
            .request(Method::GET, &format!("/v1/businesses/{from}"), None)
            .await;
        let mut out = BusinessMessage {
            business: from,
            verified_name: None,
            category: meta.category,
            rendered: unverified("the sender is not a business"),
        };
        let profile = match profile {
            Ok(p) => p,
            Err(e) if e.status().is_some() => return Ok(out),
            Err(e) => return Err(MessagingError::Client(e)),
        };
        out.verified_name = if profile.verified {
            profile.display_name.clone()
        } else {
            None
        };
        out.rendered = match (&meta.template, &plaintext.kind) {
            (None, PlaintextKind::Text { body }) if meta.category == Category::Service => {
                Rendered::Verified { text: body.clone() }
            }
            (None, _) => unverified("a service reply that is not a text"),
            (Some(_), PlaintextKind::Text { .. }) => {
                unverified("announced as a template, but its content is free text")
            }
            (Some(t), PlaintextKind::Template { params }) => {
                let path = format!(
                    "/v1/businesses/{from}/templates/{}/{}/{}",
                    t.name, t.language, t.version
                );
                match client
                    .request::<SignedTemplate>(Method::GET, &path, None)
                    .await
                {
                    Err(e) if e.status().is_some() => {
                        unverified("the template it names is not an approved template")
                    }
                    Err(e) => return Err(MessagingError::Client(e)),
                    Ok(signed) => {
                        let pinned = self.pinned_log_key(client).await?;
                        check_template(&pinned, &signed, from, meta, params)
                    }
                }
            }
            (Some(_), _) => unverified("announced as a template, but it carries no parameters"),
        };
        Ok(out)
    }
}

/// The rendering of a template message, or why it is unverified.
fn check_template(
    pinned: &str,
    signed: &SignedTemplate,
    from: AccountId,
    meta: &BusinessMeta,
    params: &[String],
) -> Rendered {
    if !signed.key.eq_ignore_ascii_case(pinned) {
        return unverified("the template is signed by another key than the messenger's");
    }
    let Ok(key) = LogKey::from_hex(pinned) else {
        return unverified("the pinned messenger key is malformed");
    };
    let c: &TemplateContent = &signed.content;
    if key
        .verify_message(&c.signed_message(), &signed.signature)
        .is_err()
    {
        return unverified("the template's signature does not verify");
    }
    let Some(t) = &meta.template else {
        return unverified("no template named");
    };
    if c.business != from || c.name != t.name || c.language != t.language || c.version != t.version
    {
        return unverified("the signed template is not the one the message names");
    }
    if c.category != meta.category {
        return unverified(format!(
            "sent as {}, but the approved template is {}",
            meta.category, c.category
        ));
    }
    match render(&c.body, params) {
        Ok(text) => Rendered::Verified { text },
        Err(e) => unverified(format!("its parameters do not fit the template: {e}")),
    }
}
