//! The client side of the OPRF. The [`Oprf`] trait, [`HttpOprf`] and
//! [`OprfClientError`] live in `accord-keyd-client` (re-exported here);
//! this module adds [`InProcessOprf`], the implementation inside the key
//! service's own process (all-in-one `serve`), which needs the server's
//! [`KeyService`], and the conversion of the server's [`KeydError`] into
//! an [`OprfClientError`].

pub use accord_keyd_client::oprf::{Evaluated, HttpOprf, Oprf, OprfClientError};

use crate::error::KeydError;
use crate::service::KeyService;
use accord_crypto::oprf::{BlindedElementBytes, KeyVersion, OprfPurpose};
use accord_storage::keyd::ClientId;
use async_trait::async_trait;

impl From<KeydError> for OprfClientError {
    fn from(e: KeydError) -> Self {
        match e {
            KeydError::QuotaExceeded(q) => OprfClientError::QuotaExceeded {
                retry_after_s: q.retry_after_s,
            },
            other => OprfClientError::Service(Box::new(other)),
        }
    }
}

/// Evaluates through a [`KeyService`] in this process, as one registered
/// client: the same validation, the same quota charge and the same audit
/// as over HTTP, and the same blind/finalize path
/// ([`Oprf::pseudonyms`]). Only the transport is skipped.
#[derive(Clone, Debug)]
pub struct InProcessOprf {
    service: KeyService,
    client: ClientId,
}

impl InProcessOprf {
    pub fn new(service: KeyService, client: ClientId) -> Self {
        InProcessOprf { service, client }
    }
}

#[async_trait]
impl Oprf for InProcessOprf {
    async fn active_version(&self, purpose: OprfPurpose) -> Result<KeyVersion, OprfClientError> {
        Ok(self.service.key_versions(purpose)?.active)
    }

    async fn evaluate_blinded(
        &self,
        purpose: OprfPurpose,
        version: Option<KeyVersion>,
        elements: Vec<BlindedElementBytes>,
    ) -> Result<Evaluated, OprfClientError> {
        Ok(self
            .service
            .evaluate_as(self.client, purpose, version, elements)
            .await?)
    }
}
