//! Sending: fan-out to every device of the recipient account and this
//! account's other devices, claims of keys for devices without a session,
//! and one retry after a 409 `stale_devices` (claiming afresh, with the
//! same client message id: the server makes retries idempotent).

use accord_domain::{AccountId, DeviceId, PhoneNumber};
use accord_e2e::{
    ClientMessageId, DeviceKeys, PeerDevice, Plaintext, PlaintextKind, SendRequest,
    SignedOneTimeKey, WireError,
};
use accord_messenger_wire::{ClaimRequest, Claimed, SendMessage, SendOutcome};
use reqwest::Method;

use super::device::Device;
use super::error::{MessagingError, Result};
use crate::{to_json, Client};

/// One claim: the account's devices and a key to start a session with each.
pub(super) struct Claim {
    pub(super) account: AccountId,
    pub(super) devices: Vec<(DeviceKeys, SignedOneTimeKey)>,
}

impl Claim {
    fn from_response(r: Claimed) -> Result<Self> {
        let mut devices = Vec::with_capacity(r.devices.len());
        for d in r.devices {
            if d.device_keys.device_id != d.device_id {
                return Err(MessagingError::Protocol(
                    "claimed device keys name another device".into(),
                ));
            }
            devices.push((d.device_keys, d.one_time_key));
        }
        Ok(Claim {
            account: r.account_id,
            devices,
        })
    }

    fn one_time_key(&self, device: DeviceId) -> Option<&SignedOneTimeKey> {
        self.devices
            .iter()
            .find(|(k, _)| k.device_id == device)
            .map(|(_, otk)| otk)
    }
}

/// Who a message is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    Phone(PhoneNumber),
    Account(AccountId),
}

/// The outcome of a send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub client_message_id: ClientMessageId,
    pub to_account: AccountId,
    /// Envelopes sent: the recipient's devices plus this account's other
    /// devices.
    pub devices: usize,
    /// The server had already accepted this message id (a retry).
    pub duplicate: bool,
}

impl Device {
    /// Sends a text to every device of `to` and to this account's other
    /// devices. Returns the client message id.
    pub async fn send_text(&mut self, client: &Client, to: &Recipient, text: &str) -> Result<Sent> {
        self.send(
            client,
            to,
            PlaintextKind::Text {
                body: text.to_owned(),
            },
        )
        .await
    }

    /// Tells `to` (every device of it, and this account's other devices)
    /// that these messages were read: an end-to-end message.
    pub async fn send_read_receipt(
        &mut self,
        client: &Client,
        to: AccountId,
        read: Vec<ClientMessageId>,
    ) -> Result<Sent> {
        self.send(
            client,
            &Recipient::Account(to),
            PlaintextKind::ReadReceipt {
                client_message_ids: read,
            },
        )
        .await
    }

    /// Sends one payload with a fresh client message id.
    pub async fn send(
        &mut self,
        client: &Client,
        to: &Recipient,
        kind: PlaintextKind,
    ) -> Result<Sent> {
        let plaintext = Plaintext {
            client_message_id: ClientMessageId::random(),
            sent_at: self.clock.now(),
            kind,
        };
        self.send_plaintext(client, to, &plaintext).await
    }

    /// Sends `plaintext` under its own client message id; calling it again
    /// with the same id after a failure is safe (the server delivers once).
    pub async fn send_plaintext(
        &mut self,
        client: &Client,
        to: &Recipient,
        plaintext: &Plaintext,
    ) -> Result<Sent> {
        if !self.is_published() {
            self.setup(client).await?;
        }
        for attempt in 0..2 {
            let fresh = attempt > 0;
            let mut claims: Vec<Claim> = Vec::new();
            let to_account = match to {
                Recipient::Account(a) => *a,
                Recipient::Phone(p) => match self.dir.phones.get(p.e164()) {
                    Some(a) if !fresh => *a,
                    _ => {
                        let claim = self.claim(client, &ClaimRequest::phone(p.e164())).await?;
                        let account = claim.account;
                        claims.push(claim);
                        let e164 = p.e164().to_owned();
                        self.locked(|_, dir| {
                            dir.phones.insert(e164, account);
                        })?;
                        account
                    }
                },
            };
            let own = self.account;
            for account in [to_account, own] {
                if claims.iter().any(|c| c.account == account) {
                    continue;
                }
                if fresh || self.needs_claim(account) {
                    claims.push(self.claim(client, &ClaimRequest::account(account)).await?);
                }
            }

            let own_device = self.device_id();
            let envelopes = self.locked(|m, dir| -> Result<Vec<_>> {
                for c in &claims {
                    dir.accounts.insert(
                        c.account,
                        c.devices.iter().map(|(k, _)| k.clone()).collect(),
                    );
                }
                let mut out = Vec::new();
                let mut targets = vec![to_account];
                if own != to_account {
                    targets.push(own);
                }
                for account in targets {
                    let claim = claims.iter().find(|c| c.account == account);
                    for keys in dir.accounts.get(&account).into_iter().flatten() {
                        if keys.device_id == own_device {
                            continue;
                        }
                        let otk = claim.and_then(|c| c.one_time_key(keys.device_id));
                        out.push(m.encrypt_for(account, keys, otk, plaintext)?);
                    }
                }
                Ok(out)
            })??;
            if envelopes.is_empty() {
                return Err(MessagingError::NoDevices);
            }
            let devices = envelopes.len();
            let request = SendRequest::new(plaintext.client_message_id.clone(), envelopes)
                .map_err(|e: WireError| MessagingError::Protocol(e.to_string()))?;
            let body = SendMessage {
                to_account,
                send: request,
            };
            match client
                .request::<SendOutcome>(Method::POST, "/v1/messages", Some(&to_json(&body)))
                .await
            {
                Ok(outcome) => {
                    return Ok(Sent {
                        client_message_id: plaintext.client_message_id.clone(),
                        to_account,
                        devices,
                        duplicate: outcome.duplicate,
                    })
                }
                Err(e) if e.code() == Some("stale_devices") => {
                    if fresh {
                        return Err(MessagingError::StillStale);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(MessagingError::StillStale)
    }

    /// Whether sending to `account` needs a claim first: its device list is
    /// unknown, or a device of it has no session yet.
    fn needs_claim(&self, account: AccountId) -> bool {
        let own_device = self.device_id();
        match self.dir.accounts.get(&account) {
            None => true,
            Some(devices) => devices.iter().any(|k| {
                k.device_id != own_device
                    && !self.machine.has_session(&PeerDevice {
                        account,
                        device: k.device_id,
                    })
            }),
        }
    }

    pub(super) async fn claim(&self, client: &Client, body: &ClaimRequest) -> Result<Claim> {
        let r: Claimed = client
            .request(Method::POST, "/v1/keys/claim", Some(&to_json(body)))
            .await?;
        Claim::from_response(r)
    }
}
