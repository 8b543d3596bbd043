//! # accord-verifier
//!
//! How a verification code reaches a phone, for every service that
//! verifies numbers (the messenger's registrations and number changes,
//! the partner's sign-ups): [`DevVerifier`] sends nothing and lets the API
//! return the code (only with `--dev`); [`WebhookVerifier`] posts the
//! message to an SMS gateway. A verifier is handed the number and keeps
//! nothing of it.

use accord_crypto::token::VerificationCode;
use accord_domain::PhoneNumber;
use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    #[error("the SMS gateway did not accept the message: {0}")]
    Gateway(String),
}

/// Sends a code to a phone.
#[async_trait]
pub trait Verifier: Send + Sync + std::fmt::Debug {
    async fn send(&self, phone: &PhoneNumber, code: &VerificationCode)
        -> Result<(), VerifierError>;
    /// Whether the API may return the code to the caller (dev only).
    fn reveals_codes(&self) -> bool {
        false
    }
    /// The code to return in the API's answer: `Some` only from a verifier
    /// that reveals codes (dev only).
    fn dev_code(&self, code: &VerificationCode) -> Option<String> {
        self.reveals_codes().then(|| code.reveal().to_owned())
    }
}

/// For local use: sends nothing; the code comes back in the API response.
/// Only constructed when the server runs with `--dev` (and in tests).
#[derive(Debug, Default)]
pub struct DevVerifier;

#[async_trait]
impl Verifier for DevVerifier {
    async fn send(&self, _: &PhoneNumber, _: &VerificationCode) -> Result<(), VerifierError> {
        Ok(())
    }
    fn reveals_codes(&self) -> bool {
        true
    }
}

/// Posts `{"to": "+E164", "text": "..."}` to an SMS gateway's webhook.
#[derive(Debug)]
pub struct WebhookVerifier {
    url: String,
    /// What the code is for, in the message: "Your {what} code is …".
    what: &'static str,
    client: reqwest::Client,
}

impl WebhookVerifier {
    /// Messages say "Your Accord code is …"; see [`WebhookVerifier::named`].
    pub fn new(url: impl Into<String>) -> Self {
        WebhookVerifier {
            url: url.into(),
            what: "Accord",
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .expect("reqwest client builds"),
        }
    }

    /// Names what the code is for, e.g. "Accord partner sign-up".
    pub fn named(mut self, what: &'static str) -> Self {
        self.what = what;
        self
    }
}

#[async_trait]
impl Verifier for WebhookVerifier {
    async fn send(
        &self,
        phone: &PhoneNumber,
        code: &VerificationCode,
    ) -> Result<(), VerifierError> {
        let body = serde_json::json!({
            "to": phone.e164(),
            "text": format!("Your {} code is {}. It expires in 10 minutes.", self.what, code.reveal()),
        });
        let r = self
            .client
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| VerifierError::Gateway(e.without_url().to_string()))?;
        if !r.status().is_success() {
            return Err(VerifierError::Gateway(format!("status {}", r.status())));
        }
        Ok(())
    }
}
