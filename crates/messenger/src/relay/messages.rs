//! Sends, mailbox reads and acks.
//!
//! A send is checked against the recipient's devices (and the sender's
//! other devices) and stored through the group-commit writer. An ack
//! marks the items acked after commit: an acked envelope loses its
//! ciphertext and stays as the delivered record until its expiry; an
//! acked receipt is deleted; every device of the envelope's sender gets
//! a receipt.

use super::{Relay, RelayError};
use accord_domain::{AccountId, DeviceId, Timestamp};
use accord_e2e::{
    BusinessMeta, Ciphertext, ClientMessageId, DeliveredEnvelope, EnvelopeId, OlmMessageType,
    SendRequest, ServerFrame,
};
use accord_storage::mailbox::{Ack, BusinessSend, MailItem, NewEnvelope, NewSend};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

/// A send's answer, as it crosses the wire.
pub use accord_messenger_wire::SendOutcome;

/// One frame of a device's mailbox, as delivered.
pub fn frame_of(item: MailItem) -> Option<ServerFrame> {
    Some(match item {
        MailItem::Envelope {
            id,
            sender_account,
            sender_device,
            server_ts,
            message_type,
            ciphertext,
            business_meta,
            ..
        } => ServerFrame::Envelope(DeliveredEnvelope {
            id: EnvelopeId(id),
            sender_account,
            sender_device,
            server_ts,
            message_type: OlmMessageType::from_u8(message_type)?,
            ciphertext: Ciphertext::from_bytes(ciphertext).ok()?,
            business: match business_meta {
                None => None,
                Some(json) => Some(serde_json::from_str::<BusinessMeta>(&json).ok()?),
            },
        }),
        MailItem::Receipt {
            id,
            client_message_id,
            recipient_device,
            delivered_at,
        } => ServerFrame::Receipt {
            id: EnvelopeId(id),
            client_message_id: ClientMessageId::parse(&client_message_id).ok()?,
            recipient_device,
            delivered_at,
        },
    })
}

impl Relay {
    /// Whether `account` has ever sent a message to `peer` (then `peer` is
    /// no unknown sender to `account`).
    async fn wrote_to(&self, account: AccountId, peer: AccountId) -> Result<bool, RelayError> {
        let known = self
            .inner
            .wrote
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(account, peer));
        if known {
            return Ok(true);
        }
        if self.inner.not_wrote.get(&(account, peer)).is_some() {
            return Ok(false);
        }
        let w = self.inner.store.has_written_to(account, peer).await?;
        if !w {
            self.inner.not_wrote.put((account, peer), ());
        }
        if w {
            let mut set = self.inner.wrote.lock().unwrap_or_else(|e| e.into_inner());
            if set.len() > 1_000_000 {
                set.clear();
            }
            set.insert((account, peer));
        }
        Ok(w)
    }

    pub async fn send(
        &self,
        sender_account: AccountId,
        sender_device: DeviceId,
        to_account: AccountId,
        request: SendRequest,
    ) -> Result<SendOutcome, RelayError> {
        self.inner
            .send_limits
            .take(&sender_device)
            .map_err(|retry_after_s| RelayError::RateLimited { retry_after_s })?;
        self.send_checked(sender_account, sender_device, to_account, request, None)
            .await
    }

    /// A business's send, admitted by the business API (which applied the
    /// business's own limits, opt-in and blocks instead of the per-device
    /// and unknown-sender limits): the envelopes to the recipient's
    /// devices carry `meta`, and a `sent` status event is committed with
    /// them.
    pub async fn send_business(
        &self,
        sender_account: AccountId,
        sender_device: DeviceId,
        to_account: AccountId,
        request: SendRequest,
        meta: &BusinessMeta,
        status: BusinessSend,
    ) -> Result<SendOutcome, RelayError> {
        let json =
            serde_json::to_string(meta).map_err(|e| RelayError::BadRequest(e.to_string()))?;
        self.send_checked(
            sender_account,
            sender_device,
            to_account,
            request,
            Some((json, status)),
        )
        .await
    }

    async fn send_checked(
        &self,
        sender_account: AccountId,
        sender_device: DeviceId,
        to_account: AccountId,
        request: SendRequest,
        business: Option<(String, BusinessSend)>,
    ) -> Result<SendOutcome, RelayError> {
        let recipients = if to_account == sender_account {
            Arc::new(Vec::new())
        } else {
            self.devices_of(to_account)
                .await?
                .ok_or(RelayError::NotFound)?
        };
        let own = self.devices_of(sender_account).await?.unwrap_or_default();
        let expected: BTreeSet<DeviceId> = recipients
            .iter()
            .chain(own.iter().filter(|d| **d != sender_device))
            .copied()
            .collect();
        let got: BTreeSet<DeviceId> = request
            .envelopes()
            .iter()
            .map(|e| e.recipient_device)
            .collect();
        if expected != got {
            return Err(RelayError::StaleDevices {
                missing: expected.difference(&got).copied().collect(),
                extra: got.difference(&expected).copied().collect(),
            });
        }
        // A business's send was refused already if the user blocked it
        // (admission reads the block with the user's other controls).
        let blocked = business.is_none()
            && to_account != sender_account
            && self.blocked(to_account, sender_account).await?;
        if business.is_none()
            && to_account != sender_account
            && !self.wrote_to(to_account, sender_account).await?
        {
            self.inner
                .unknown_limits
                .take(&to_account)
                .map_err(|retry_after_s| RelayError::RateLimited { retry_after_s })?;
        }
        let accepted = request.envelopes().len() as u32;
        let (cmid, envelopes) = request.into_parts();
        let recipient_set: HashSet<DeviceId> = recipients.iter().copied().collect();
        let now = self.now();
        let (meta, status) = match business {
            Some((m, s)) => (Some(m), Some(s)),
            None => (None, None),
        };
        let send = NewSend {
            sender_account,
            sender_device,
            client_message_id: cmid.as_str().to_owned(),
            to_account,
            envelopes: envelopes
                .into_iter()
                .filter(|e| !(blocked && recipient_set.contains(&e.recipient_device)))
                .map(|e| NewEnvelope {
                    business_meta: meta
                        .as_ref()
                        .filter(|_| recipient_set.contains(&e.recipient_device))
                        .cloned(),
                    recipient_device: e.recipient_device,
                    message_type: e.message_type.as_u8(),
                    ciphertext: e.ciphertext.into_bytes(),
                })
                .collect(),
            at: now,
            expires_at: Timestamp(now.0 + self.inner.config.envelope_ttl_ms),
            business: status,
        };
        let duplicate = self.inner.writer.send(send).await?;
        Ok(SendOutcome {
            accepted,
            duplicate,
        })
    }

    /// Up to `limit` frames of `device`'s mailbox after `after`, and the
    /// last id read.
    pub async fn fetch(
        &self,
        device: DeviceId,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<ServerFrame>, u64, usize), RelayError> {
        let items = self
            .inner
            .store
            .fetch(device, after, self.now(), limit)
            .await?;
        let n = items.len();
        let last = items.last().map_or(after, MailItem::id);
        Ok((items.into_iter().filter_map(frame_of).collect(), last, n))
    }

    /// Acks items of `device`'s mailbox (after commit): an envelope loses
    /// its ciphertext and is marked acked (its row stays as the delivered
    /// record until expiry), a receipt is deleted, and the sender's
    /// devices get receipts. Returns how many items were acked (ids not
    /// in the mailbox or already acked do not count).
    pub async fn ack(&self, device: DeviceId, ids: Vec<EnvelopeId>) -> Result<u64, RelayError> {
        let now = self.now();
        self.inner
            .writer
            .ack(Ack {
                device,
                ids: ids.into_iter().map(|i| i.0).collect(),
                at: now,
                expires_at: Timestamp(now.0 + self.inner.config.envelope_ttl_ms),
            })
            .await
    }
}
