//! The messenger's access to the key service.
//!
//! The messenger computes the `coordination` and `contacts` pseudonyms of
//! its own users through the same OPRF path as everyone else (blind,
//! evaluate at the key service under its own client quota, finalize), and
//! gives every new device its own key-service credential, so that each
//! device's contact lookups are metered by its own daily quota.

use accord_domain::{AccountId, DeviceId};
use accord_keyd::{ClientId, ClientKind, InProcessOprf, KeyService, Oprf};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// How the messenger reaches the key service.
#[derive(Clone)]
pub struct KeyAccess {
    /// The messenger's own client at the key service.
    pub oprf: Arc<dyn Oprf>,
    /// Issues a key-service credential to each new device.
    pub devices: Arc<dyn DeviceCredentials>,
    /// Where devices reach the key service.
    pub public_url: String,
}

impl fmt::Debug for KeyAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyAccess")
            .field("oprf", &self.oprf)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl KeyAccess {
    /// For a key service in this process: the messenger evaluates as its
    /// own client (named `messenger`, created on first start) through
    /// [`InProcessOprf`], and devices get credentials straight from the
    /// service.
    pub async fn in_process(
        keyd: &KeyService,
        public_url: String,
    ) -> Result<Self, CredentialError> {
        let id = keyd
            .client_named("messenger", ClientKind::Messenger)
            .await
            .map_err(|e| CredentialError(e.to_string()))?;
        Ok(KeyAccess {
            oprf: Arc::new(InProcessOprf::new(keyd.clone(), id)),
            devices: Arc::new(InProcessCredentials(keyd.clone())),
            public_url,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the key service did not issue a device credential: {0}")]
pub struct CredentialError(pub String);

/// Issues a device its key-service API token (kind `device`: the
/// key service's default quotas for devices apply, e.g. 1,000 contacts a
/// day), as the key-service client whose id is the device's id; and
/// revokes it when the device's account is deleted.
#[async_trait]
pub trait DeviceCredentials: Send + Sync + fmt::Debug {
    /// Issues `device`'s credential, in the quota group of its `account`:
    /// the devices of one account share one quota (per person, not per
    /// device).
    async fn issue(&self, device: DeviceId, account: AccountId) -> Result<String, CredentialError>;
    /// Revokes the device's credential; `Ok` also when there was none (or
    /// it was revoked already).
    async fn revoke(&self, device: DeviceId) -> Result<(), CredentialError>;
}

/// For the all-in-one `serve`: the key service in this process.
#[derive(Debug, Clone)]
pub struct InProcessCredentials(pub KeyService);

#[async_trait]
impl DeviceCredentials for InProcessCredentials {
    async fn issue(&self, device: DeviceId, account: AccountId) -> Result<String, CredentialError> {
        let (_, token) = self
            .0
            .create_client_as(
                ClientId(device.0),
                &format!("device {device}"),
                ClientKind::Device,
                &BTreeMap::new(),
                Some(ClientId(account.0)),
            )
            .await
            .map_err(|e| CredentialError(e.to_string()))?;
        Ok(token.reveal().to_owned())
    }

    async fn revoke(&self, device: DeviceId) -> Result<(), CredentialError> {
        self.0
            .revoke_client(ClientId(device.0))
            .await
            .map(|_| ())
            .map_err(|e| CredentialError(e.to_string()))
    }
}

/// For a key service in another process: its admin API.
#[derive(Clone)]
pub struct HttpCredentials {
    pub url: String,
    pub admin_token: secrecy::SecretString,
    pub http: reqwest::Client,
}

impl fmt::Debug for HttpCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCredentials")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl HttpCredentials {
    /// An admin call to `path` of the key service.
    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response, CredentialError> {
        use secrecy::ExposeSecret;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url.trim_end_matches('/')))
            .bearer_auth(self.admin_token.expose_secret());
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send()
            .await
            .map_err(|e| CredentialError(e.without_url().to_string()))
    }
}

#[async_trait]
impl DeviceCredentials for HttpCredentials {
    async fn issue(&self, device: DeviceId, account: AccountId) -> Result<String, CredentialError> {
        let r = self
            .admin(
                reqwest::Method::POST,
                "/v1/admin/clients",
                Some(serde_json::json!({
                    "id": device,
                    "name": format!("device {device}"),
                    "kind": "device",
                    "quota_group": account,
                })),
            )
            .await?;
        if !r.status().is_success() {
            return Err(CredentialError(format!("status {}", r.status())));
        }
        let v: serde_json::Value = r.json().await.map_err(|e| CredentialError(e.to_string()))?;
        v["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CredentialError("no token in the answer".into()))
    }

    async fn revoke(&self, device: DeviceId) -> Result<(), CredentialError> {
        let r = self
            .admin(
                reqwest::Method::DELETE,
                &format!("/v1/admin/clients/{device}"),
                None,
            )
            .await?;
        // 404: no such credential, or revoked already: nothing to do.
        if r.status().is_success() || r.status() == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(CredentialError(format!("status {}", r.status())))
        }
    }
}
