//! Blocks and reports.

use super::{Relay, RelayError};
use accord_domain::{AccountId, DeviceId};
use accord_e2e::EnvelopeId;
use accord_storage::mailbox::NewReport;

impl Relay {
    /// Whether `blocker` blocked `sender`, cached briefly.
    pub(super) async fn blocked(
        &self,
        blocker: AccountId,
        sender: AccountId,
    ) -> Result<bool, RelayError> {
        if let Some(b) = self.inner.blocks.get(&(blocker, sender)) {
            return Ok(b);
        }
        let b = self.inner.store.is_blocked(blocker, sender).await?;
        self.inner.blocks.put((blocker, sender), b);
        Ok(b)
    }

    pub async fn block(&self, account: AccountId, blocked: AccountId) -> Result<(), RelayError> {
        self.inner.store.block(account, blocked, self.now()).await?;
        self.inner.blocks.remove(&(account, blocked));
        Ok(())
    }

    /// Everyone `account` blocked, with when.
    pub async fn blocks_of(
        &self,
        account: AccountId,
    ) -> Result<Vec<(AccountId, accord_domain::Timestamp)>, RelayError> {
        Ok(self.inner.store.blocks_of(account).await?)
    }

    pub async fn unblock(&self, account: AccountId, blocked: AccountId) -> Result<(), RelayError> {
        self.inner.store.unblock(account, blocked).await?;
        self.inner.blocks.remove(&(account, blocked));
        Ok(())
    }

    /// Reports an envelope `device` received. `NotFound` otherwise.
    pub async fn report(
        &self,
        device: DeviceId,
        envelope_id: EnvelopeId,
        plaintext: Option<String>,
    ) -> Result<(), RelayError> {
        if plaintext
            .as_ref()
            .is_some_and(|p| p.len() > self.inner.config.max_report_plaintext)
        {
            return Err(RelayError::BadRequest(format!(
                "plaintext is longer than {} bytes",
                self.inner.config.max_report_plaintext
            )));
        }
        let (sender_account, sender_device) = self
            .inner
            .store
            .received_from(device, envelope_id.0)
            .await?
            .ok_or(RelayError::NotFound)?;
        self.inner
            .store
            .put_report(&NewReport {
                sender_account,
                sender_device,
                envelope_id: envelope_id.0,
                plaintext,
                at: self.now(),
            })
            .await?;
        Ok(())
    }
}
