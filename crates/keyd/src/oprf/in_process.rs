//! [`Oprf`] inside the key service's own process (all-in-one `serve`).

use super::{Oprf, OprfClientError};
use crate::service::{Evaluated, KeyService};
use accord_crypto::oprf::{BlindedElementBytes, KeyVersion, OprfPurpose};
use accord_storage::keyd::ClientId;
use async_trait::async_trait;

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
