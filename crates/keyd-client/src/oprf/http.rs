//! [`Oprf`] over HTTP: what a device, a business tool, the partner or a
//! messenger in another process uses.

use super::{Evaluated, Oprf, OprfClientError};
use crate::wire::{EvaluateRequestRef, EvaluateResponse, KeyVersions};
use accord_crypto::oprf::{BlindedElementBytes, KeyVersion, OprfPurpose};
use async_trait::async_trait;
use reqwest::header::RETRY_AFTER;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;

/// A key service at `base_url`, called with one client's API token.
#[derive(Clone)]
pub struct HttpOprf {
    http: reqwest::Client,
    base_url: String,
    token: SecretString,
}

impl fmt::Debug for HttpOprf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpOprf")
            .field("base_url", &self.base_url)
            .field("token", &"<redacted>")
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

impl HttpOprf {
    /// `base_url` without a trailing slash, e.g. `http://127.0.0.1:7003`.
    pub fn new(base_url: impl Into<String>, token: SecretString) -> Self {
        Self::with_client(reqwest::Client::new(), base_url, token)
    }

    /// With a configured `reqwest` client (timeouts, TLS roots).
    pub fn with_client(
        http: reqwest::Client,
        base_url: impl Into<String>,
        token: SecretString,
    ) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        HttpOprf {
            http,
            base_url,
            token,
        }
    }

    /// `GET /v1/oprf/{purpose}/keys`: the active version and every
    /// evaluable one.
    pub async fn key_versions(&self, purpose: OprfPurpose) -> Result<KeyVersions, OprfClientError> {
        let r = self
            .http
            .get(format!("{}/v1/oprf/{purpose}/keys", self.base_url))
            .send()
            .await
            .map_err(transport)?;
        if !r.status().is_success() {
            return Err(rejected(r).await);
        }
        r.json()
            .await
            .map_err(|_| OprfClientError::Protocol("key versions"))
    }
}

fn transport(e: reqwest::Error) -> OprfClientError {
    // reqwest's errors name the URL, never headers: no token here.
    OprfClientError::Transport(e.to_string())
}

async fn rejected(r: reqwest::Response) -> OprfClientError {
    let status = r.status();
    let retry_after = r
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if status == StatusCode::TOO_MANY_REQUESTS {
        if let Some(retry_after_s) = retry_after {
            return OprfClientError::QuotaExceeded { retry_after_s };
        }
    }
    match r.json::<ErrorBody>().await {
        Ok(b) => OprfClientError::Rejected {
            status: status.as_u16(),
            code: b.code,
            message: b.message,
        },
        Err(_) => OprfClientError::Rejected {
            status: status.as_u16(),
            code: "unknown".into(),
            message: format!("HTTP {status}"),
        },
    }
}

#[async_trait]
impl Oprf for HttpOprf {
    async fn active_version(&self, purpose: OprfPurpose) -> Result<KeyVersion, OprfClientError> {
        Ok(self.key_versions(purpose).await?.active)
    }

    async fn evaluate_blinded(
        &self,
        purpose: OprfPurpose,
        version: Option<KeyVersion>,
        elements: Vec<BlindedElementBytes>,
    ) -> Result<Evaluated, OprfClientError> {
        let r = self
            .http
            .post(format!("{}/v1/oprf/{purpose}/evaluate", self.base_url))
            .bearer_auth(self.token.expose_secret())
            .json(&EvaluateRequestRef {
                key_version: version,
                elements: &elements,
            })
            .send()
            .await
            .map_err(transport)?;
        if !r.status().is_success() {
            return Err(rejected(r).await);
        }
        let body: EvaluateResponse = r
            .json()
            .await
            .map_err(|_| OprfClientError::Protocol("evaluated elements"))?;
        Ok(Evaluated {
            key_version: body.key_version,
            elements: body.elements,
        })
    }
}
