//! Sending: fan-out to every device of the recipient account and this
//! account's other devices, claims of keys for devices without a session,
//! and one retry after a 409 `stale_devices` (claiming afresh, with the
//! same client message id: the server makes retries idempotent).
//!
//! A cached device list is used until the server says it is stale, except
//! an empty one: an account without devices may get one at any time (a
//! new user publishes keys a moment after registering), so an empty list
//! is claimed again on the next send rather than trusted. Claims that keep
//! finding nothing back off per account: no new claim for
//! [`EMPTY_CLAIM_BACKOFF`] after the first, then twice as long after each
//! one in a row, up to [`EMPTY_CLAIM_BACKOFF_MAX`]; a send in the pause
//! fails with [`MessagingError::NoDevices`] without asking the server. The
//! backoff is kept in memory, per [`Device`] value: a long-running sender
//! (an app, a bot) does not hammer the server, while each `accord msg`
//! process asks once (the server limits claims per device anyway: 429
//! `rate_limited`), so a user who retries by hand is never told "no
//! device" by a stale cache.

use std::time::Duration;

use accord_domain::{AccountId, DeviceId, PhoneNumber, Timestamp};
use accord_e2e::BusinessMeta;
use accord_e2e::{
    ClientMessageId, DeviceKeys, PeerDevice, Plaintext, PlaintextKind, SendRequest,
    SignedOneTimeKey, WireError,
};
use accord_messenger_wire::{
    BusinessSend, BusinessSent, ClaimRequest, Claimed, KtLookup, SendMessage, SendOutcome,
};
use reqwest::Method;

use super::device::Device;
use super::error::{MessagingError, Result};
use crate::{to_json, Client};

/// The pause after a claim that found no device of an account, before it
/// is claimed again.
pub const EMPTY_CLAIM_BACKOFF: Duration = Duration::from_secs(5);
/// The longest such pause: it doubles with every empty claim in a row.
pub const EMPTY_CLAIM_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// The claims of one account in a row that found no device.
#[derive(Clone, Copy, Debug)]
pub(super) struct EmptyClaims {
    streak: u32,
    /// No claim of the account before this.
    next_at: Timestamp,
}

/// One claim: the account's devices and a key to start a session with each.
pub(super) struct Claim {
    pub(super) account: AccountId,
    pub(super) devices: Vec<(DeviceKeys, SignedOneTimeKey)>,
    /// The directory's proof of the account's device list.
    pub(super) kt: Option<KtLookup>,
}

impl Claim {
    pub(super) fn from_response(r: Claimed) -> Result<Self> {
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
            kt: r.kt,
        })
    }

    pub(super) fn one_time_key(&self, device: DeviceId) -> Option<&SignedOneTimeKey> {
        self.devices
            .iter()
            .find(|(k, _)| k.device_id == device)
            .map(|(_, otk)| otk)
    }
}

/// How a send reaches the messenger: as a person's device
/// (`/v1/keys/claim`, `/v1/messages`), or as a business's device through
/// the business API with its API key (`/v1/business/claim`,
/// `/v1/business/messages`) and the message's metadata.
#[derive(Clone, Copy, Debug)]
pub(super) enum Via<'a> {
    Person,
    Business {
        api: &'a Client,
        meta: &'a BusinessMeta,
    },
}

/// Records the claimed device lists in `dir`, then encrypts `plaintext`
/// for every device of `to_account` and every other device of `own`
/// (this device, `own_device`, excepted), with a new session where a
/// claim brought a key. Gives the envelopes and how many are for
/// `to_account`.
pub(super) fn fan_out(
    m: &mut accord_e2e::E2eMachine,
    dir: &mut super::state::Directory,
    claims: &[Claim],
    to_account: AccountId,
    own: AccountId,
    own_device: DeviceId,
    plaintext: &Plaintext,
) -> Result<(Vec<accord_e2e::Envelope>, usize)> {
    for c in claims {
        dir.accounts.insert(
            c.account,
            c.devices.iter().map(|(k, _)| k.clone()).collect(),
        );
    }
    let mut out = Vec::new();
    let mut to_recipient = 0;
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
            if account == to_account {
                to_recipient += 1;
            }
        }
    }
    Ok((out, to_recipient))
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
    /// Unverified peers whose device list changed (proven by the key
    /// directory): show the user a notice.
    pub key_changes: Vec<AccountId>,
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
        self.send_via(client, to, plaintext, Via::Person).await
    }

    /// Sends a business message as this (business) device: `api` is a
    /// client holding the business's API key, `meta` what the message is
    /// admitted as (its template, or a free-form service reply), `kind`
    /// the plaintext (a template's parameters, or a text). A refusal is
    /// the server's error with its stable code (`not_opted_in`, ...).
    pub async fn send_business(
        &mut self,
        client: &Client,
        api: &Client,
        to: &Recipient,
        meta: &BusinessMeta,
        plaintext: &Plaintext,
    ) -> Result<Sent> {
        self.send_via(client, to, plaintext, Via::Business { api, meta })
            .await
    }

    async fn send_via(
        &mut self,
        client: &Client,
        to: &Recipient,
        plaintext: &Plaintext,
        via: Via<'_>,
    ) -> Result<Sent> {
        if !self.is_published() {
            self.setup(client).await?;
        }
        if let Recipient::Account(a) = to {
            self.check_not_blocked(*a)?;
        }
        let mut key_changes = Vec::new();
        for attempt in 0..2 {
            // After a 409 `stale_devices`: claim everything again, whatever
            // is cached and whatever the backoff says.
            let fresh = attempt > 0;
            let mut claims: Vec<Claim> = Vec::new();
            let to_account = match to {
                Recipient::Account(a) => *a,
                Recipient::Phone(p) => match self.dir.phones.get(p.e164()) {
                    Some(a) if !fresh => *a,
                    _ => {
                        let claim = self
                            .claim_via(client, &ClaimRequest::phone(p.e164()), via)
                            .await?;
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
                if fresh || (self.needs_claim(account) && !self.backing_off(account)) {
                    claims.push(
                        self.claim_via(client, &ClaimRequest::account(account), via)
                            .await?,
                    );
                }
            }

            // Nothing is encrypted to a device the directory does not
            // prove, nor to a verified peer whose list changed.
            key_changes.extend(self.verify_claims(client, &claims).await?);
            self.check_not_blocked(to_account)?;
            let own_device = self.device_id();
            let (envelopes, to_recipient) = self.locked(|m, dir| {
                fan_out(m, dir, &claims, to_account, own, own_device, plaintext)
            })??;
            // Copies to this account's other devices alone would tell the
            // caller the message went out when the recipient gets nothing.
            if to_recipient == 0 {
                return Err(MessagingError::NoDevices);
            }
            let devices = envelopes.len();
            let request = SendRequest::new(plaintext.client_message_id.clone(), envelopes)
                .map_err(|e: WireError| MessagingError::Protocol(e.to_string()))?;
            let posted = match via {
                Via::Person => {
                    let body = SendMessage {
                        to_account,
                        send: request,
                    };
                    client
                        .request::<SendOutcome>(Method::POST, "/v1/messages", Some(&to_json(&body)))
                        .await
                }
                Via::Business { api, meta } => {
                    let body = BusinessSend {
                        device_id: self.device_id(),
                        to_account,
                        meta: meta.clone(),
                        send: request,
                    };
                    api.request::<BusinessSent>(
                        Method::POST,
                        "/v1/business/messages",
                        Some(&to_json(&body)),
                    )
                    .await
                    .map(|s| SendOutcome {
                        accepted: s.accepted,
                        duplicate: s.duplicate,
                    })
                }
            };
            match posted {
                Ok(outcome) => {
                    return Ok(Sent {
                        client_message_id: plaintext.client_message_id.clone(),
                        to_account,
                        devices,
                        duplicate: outcome.duplicate,
                        key_changes,
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
    /// unknown or empty, or a device of it has no session yet.
    pub(super) fn needs_claim(&self, account: AccountId) -> bool {
        let own_device = self.device_id();
        match self.dir.accounts.get(&account) {
            None => true,
            Some(devices) if devices.is_empty() => true,
            Some(devices) => devices.iter().any(|k| {
                k.device_id != own_device
                    && !self.machine.has_session(&PeerDevice {
                        account,
                        device: k.device_id,
                    })
            }),
        }
    }

    /// Whether the last claims of `account` found no device and the pause
    /// after them has not passed.
    fn backing_off(&self, account: AccountId) -> bool {
        self.empty_claims
            .get(&account)
            .is_some_and(|e| self.clock.now() < e.next_at)
    }

    /// Starts or lengthens the pause after a claim of `account` that found
    /// no device; forgets it when the claim found one.
    pub(super) fn note_claim(&mut self, claim: &Claim) {
        if !claim.devices.is_empty() {
            self.empty_claims.remove(&claim.account);
            return;
        }
        let streak = self
            .empty_claims
            .get(&claim.account)
            .map_or(1, |e| e.streak.saturating_add(1));
        let pause = EMPTY_CLAIM_BACKOFF
            .saturating_mul(1 << (streak - 1).min(16))
            .min(EMPTY_CLAIM_BACKOFF_MAX);
        let pause_ms = i64::try_from(pause.as_millis()).unwrap_or(i64::MAX);
        self.empty_claims.insert(
            claim.account,
            EmptyClaims {
                streak,
                next_at: self.clock.now().plus_millis(pause_ms),
            },
        );
    }

    /// Claims keys of an account's devices, and notes whether it found any
    /// (the backoff of empty claims).
    pub(super) async fn claim(&mut self, client: &Client, body: &ClaimRequest) -> Result<Claim> {
        self.claim_via(client, body, Via::Person).await
    }

    async fn claim_via(
        &mut self,
        client: &Client,
        body: &ClaimRequest,
        via: Via<'_>,
    ) -> Result<Claim> {
        let r: Claimed = match via {
            Via::Person => {
                client
                    .request(Method::POST, "/v1/keys/claim", Some(&to_json(body)))
                    .await?
            }
            Via::Business { api, .. } => {
                api.request(Method::POST, "/v1/business/claim", Some(&to_json(body)))
                    .await?
            }
        };
        let claim = Claim::from_response(r)?;
        self.note_claim(&claim);
        Ok(claim)
    }
}
