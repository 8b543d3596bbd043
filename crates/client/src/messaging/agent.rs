//! A business's device for many concurrent sends: what `accord business
//! agent` runs.
//!
//! [`Device::send_business`] holds `&mut Device` for a whole send: two
//! round trips (claim, send) and a key-transparency check, one message
//! at a time. [`BusinessDevice`] splits a send so that only the state
//! changes hold the device, and everything else runs concurrently:
//!
//! 1. under the lock (microseconds): which accounts need a claim;
//! 2. without it: the claims (`/v1/business/claim`, with the business's
//!    API key) and the check of each claim's lookup proof against the
//!    pinned directory keys (pure CPU, on any core);
//! 3. under the lock: the rollback and peer-list rules of `trust.rs` and
//!    the encryption (an Olm session per new device);
//! 4. without it: the send (`/v1/business/messages`); a 409
//!    `stale_devices` claims afresh and retries once, with the same
//!    message id.
//!
//! The device is [held](Device::hold): its state stays in memory and is
//! written by [`BusinessDevice::flush`] (the agent flushes every second and
//! on shutdown). A peer whose proven device list changed has its history
//! checked (outside the lock) before the send goes on, as `trust.rs` does;
//! a verified peer's change blocks sends to it.

use std::sync::Mutex;

use accord_domain::{AccountId, DeviceId};
use accord_e2e::{
    BusinessMeta, DeliveredEnvelope, E2eError, PeerDevice, Plaintext, SendRequest, WireError,
};
use accord_messenger_wire::{
    BusinessSend, BusinessSent, ClaimOutcomes, ClaimRequest, Claimed, ItemError, KtHistory,
    SendOutcomes, MAX_BATCH_ITEMS,
};
use reqwest::Method;
use tokio::sync::{mpsc, oneshot};

use super::device::Device;
use super::error::{MessagingError, Result};
use super::send::{fan_out, Claim, Recipient, Sent};
use super::trust::{PeerStatus, PeerTrust};
use crate::kt::{fingerprint, verify, DirectoryKeys, Proven};
use crate::{to_json, Client};

/// One request waiting in a batcher, and where its answer goes.
type Waiting<Req, Resp> = (
    Req,
    oneshot::Sender<std::result::Result<Resp, crate::ClientError>>,
);

/// A task that sends what concurrent callers queued as one batch request
/// (up to [`MAX_BATCH_ITEMS`]): while one batch is in flight the next one
/// fills, so under load a request carries many items and alone it
/// carries one, without waiting.
struct Batcher<Req, Resp> {
    tx: mpsc::Sender<Waiting<Req, Resp>>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    fn spawn<F, Fut>(call: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + 'static,
        Fut: std::future::Future<
                Output = std::result::Result<
                    Vec<std::result::Result<Resp, crate::ClientError>>,
                    crate::ClientError,
                >,
            > + Send,
    {
        let (tx, mut rx) = mpsc::channel::<Waiting<Req, Resp>>(MAX_BATCH_ITEMS * 8);
        tokio::spawn(async move {
            let mut waiting = Vec::with_capacity(MAX_BATCH_ITEMS);
            while rx.recv_many(&mut waiting, MAX_BATCH_ITEMS).await > 0 {
                let (reqs, answers): (Vec<Req>, Vec<_>) = waiting.drain(..).unzip();
                match call(reqs).await {
                    Ok(results) if results.len() == answers.len() => {
                        for (a, r) in answers.into_iter().zip(results) {
                            let _ = a.send(r);
                        }
                    }
                    Ok(results) => {
                        let e = format!("{} answers for {} items", results.len(), answers.len());
                        for a in answers {
                            let _ = a.send(Err(crate::ClientError::Decode(e.clone())));
                        }
                    }
                    Err(e) => {
                        for a in answers {
                            let _ = a.send(Err(clone_error(&e)));
                        }
                    }
                }
            }
        });
        Batcher { tx }
    }

    async fn call(&self, req: Req) -> std::result::Result<Resp, crate::ClientError> {
        let (a, rx) = oneshot::channel();
        self.tx
            .send((req, a))
            .await
            .map_err(|_| crate::ClientError::Transport("the batcher stopped".into()))?;
        rx.await
            .map_err(|_| crate::ClientError::Transport("the batcher stopped".into()))?
    }
}

fn clone_error(e: &crate::ClientError) -> crate::ClientError {
    use crate::ClientError as C;
    match e {
        C::Transport(m) => C::Transport(m.clone()),
        C::Decode(m) => C::Decode(m.clone()),
        C::Api {
            status,
            code,
            message,
            details,
        } => C::Api {
            status: *status,
            code: code.clone(),
            message: message.clone(),
            details: details.clone(),
        },
    }
}

/// A batch item's error as the single request would have answered it.
fn item_error(e: ItemError) -> crate::ClientError {
    crate::ClientError::Api {
        status: e.status,
        code: e.code,
        message: e.message,
        details: None,
    }
}

/// A business's device shared by concurrent sends.
pub struct BusinessDevice {
    claims: Batcher<ClaimRequest, Claimed>,
    sends: Batcher<BusinessSend, BusinessSent>,
    device: Mutex<Device>,
    keys: DirectoryKeys,
    /// The last root whose signature checked out, with its epoch and hash:
    /// the lookups of one epoch share it.
    root: Mutex<Option<(accord_messenger_wire::SignedRoot, u64, [u8; 32])>>,
    account: AccountId,
    /// The device's own token (directory keys, history proofs).
    client: Client,
}

impl std::fmt::Debug for BusinessDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusinessDevice")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// What step 3 did.
enum Step {
    /// The envelopes, and how many are for the recipient's devices.
    Ready(Vec<accord_e2e::Envelope>, usize),
    /// An unverified peer's list changed: its history must be checked
    /// first.
    Changed { account: AccountId, old: String },
}

impl BusinessDevice {
    /// Publishes the device's keys if needed, pins the directory's keys,
    /// and holds the state for this process.
    pub async fn open(mut device: Device, client: Client, api: Client) -> Result<Self> {
        device.setup(&client).await?;
        let keys = device.directory_keys(&client).await?;
        device.hold()?;
        let claims_api = api.clone();
        let claims = Batcher::spawn(move |targets: Vec<ClaimRequest>| {
            let api = claims_api.clone();
            async move {
                let r: ClaimOutcomes = api
                    .request(
                        Method::POST,
                        "/v1/business/claims",
                        Some(&to_json(&accord_messenger_wire::BusinessClaims { targets })),
                    )
                    .await?;
                Ok(r.results
                    .into_iter()
                    .map(|o| match (o.claimed, o.error) {
                        (Some(c), _) => Ok(c),
                        (None, Some(e)) => Err(item_error(e)),
                        (None, None) => {
                            Err(crate::ClientError::Decode("an empty claim outcome".into()))
                        }
                    })
                    .collect())
            }
        });
        let sends_api = api.clone();
        let sends = Batcher::spawn(move |messages: Vec<BusinessSend>| {
            let api = sends_api.clone();
            async move {
                let r: SendOutcomes = api
                    .request(
                        Method::POST,
                        "/v1/business/messages/batch",
                        Some(&to_json(&accord_messenger_wire::BusinessSends { messages })),
                    )
                    .await?;
                Ok(r.results
                    .into_iter()
                    .map(|o| match (o.sent, o.error) {
                        (Some(s), _) => Ok(s),
                        (None, Some(e)) => Err(item_error(e)),
                        (None, None) => {
                            Err(crate::ClientError::Decode("an empty send outcome".into()))
                        }
                    })
                    .collect())
            }
        });
        Ok(BusinessDevice {
            claims,
            sends,
            account: device.account_id(),
            device: Mutex::new(device),
            keys,
            root: Mutex::new(None),
            client,
        })
    }

    pub fn account_id(&self) -> AccountId {
        self.account
    }

    fn with<T>(&self, f: impl FnOnce(&mut Device) -> T) -> T {
        let mut d = self.device.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut d)
    }

    /// Writes the state's changes since the last flush.
    pub fn flush(&self) -> Result<()> {
        self.with(|d| d.flush())
    }

    /// The device's own token client (its stream, its key directory).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The account a device this business wrote to belongs to.
    pub fn account_of_device(&self, device: DeviceId) -> Option<AccountId> {
        self.with(|d| {
            d.dir
                .accounts
                .iter()
                .find(|(_, keys)| keys.iter().any(|k| k.device_id == device))
                .map(|(a, _)| *a)
        })
    }

    /// Decrypts an envelope a user sent to the business. `Ok(None)`: it
    /// was handled before (its id is not newer than the last one). A
    /// sender whose keys this device does not know yet is claimed first
    /// (a user who writes to a business opens its service window, so the
    /// business may claim them).
    pub async fn decrypt(&self, env: &DeliveredEnvelope) -> Result<Option<Plaintext>> {
        let from = PeerDevice {
            account: env.sender_account,
            device: env.sender_device,
        };
        if self.with(|d| d.dir.keys_of(&from).is_none()) {
            if let Ok(claim) = self.claim(&ClaimRequest::account(from.account)).await {
                if self.prove(&claim).is_ok() {
                    self.with(|d| {
                        d.locked(|_, dir| {
                            dir.accounts.insert(
                                claim.account,
                                claim.devices.iter().map(|(k, _)| k.clone()).collect(),
                            );
                        })
                    })?;
                }
            }
        }
        self.with(|d| {
            d.locked(|m, dir| {
                if dir.last_envelope.is_some_and(|last| env.id <= last) {
                    return Ok(None);
                }
                let curve = dir.keys_of(&from).map(|k| k.curve25519);
                let r = match curve {
                    None => Err(E2eError::NoSession),
                    Some(c) => m.decrypt_delivered(&c, env),
                };
                dir.last_envelope = Some(env.id);
                r.map(Some).map_err(MessagingError::E2e)
            })?
        })
    }

    /// A claim, batched with concurrent ones (`/v1/business/claims`).
    async fn claim(&self, body: &ClaimRequest) -> Result<Claim> {
        let r = self.claims.call(body.clone()).await?;
        Claim::from_response(r)
    }

    /// Checks a claim's proof (no lock): every claimed device must be in
    /// the proven list with the same keys.
    fn prove(&self, claim: &Claim) -> Result<Option<Proven>> {
        let Some(lookup) = &claim.kt else {
            if claim.devices.is_empty() {
                return Ok(None);
            }
            return Err(MessagingError::Unproven {
                account: claim.account,
                device: claim.devices[0].0.device_id,
            });
        };
        let known = self
            .root
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|(r, _, _)| *r == lookup.root)
            .map(|(_, epoch, hash)| (*epoch, *hash));
        let (epoch, hash) = match known {
            Some(k) => k,
            None => {
                let (epoch, hash) = self.keys.verify_root(&lookup.root)?;
                *self.root.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((lookup.root.clone(), epoch, hash));
                (epoch, hash)
            }
        };
        let proven = verify::verify_lookup_under(&self.keys, claim.account, epoch, hash, lookup)?;
        for (k, _) in &claim.devices {
            let ok = proven.devices.get(k.device_id).is_some_and(|d| {
                d.ed25519 == *k.ed25519.as_bytes() && d.curve25519 == k.curve25519.to_bytes()
            });
            if !ok {
                return Err(MessagingError::Unproven {
                    account: claim.account,
                    device: k.device_id,
                });
            }
        }
        Ok(Some(proven))
    }

    /// Sends one business message (see the module docs).
    pub async fn send(
        &self,
        to: &Recipient,
        meta: &BusinessMeta,
        plaintext: &Plaintext,
    ) -> Result<Sent> {
        let mut key_changes = Vec::new();
        let mut attempt = 0;
        let mut history_checks = 0;
        loop {
            let fresh = attempt > 0;
            // 1. What needs a claim.
            let (known_to, need_to, need_own) = self.with(|d| {
                let known = match to {
                    Recipient::Account(a) => Some(*a),
                    Recipient::Phone(p) if !fresh => d.dir.phones.get(p.e164()).copied(),
                    Recipient::Phone(_) => None,
                };
                let need_to = known.is_none_or(|a| fresh || d.needs_claim(a));
                let need_own = fresh || d.needs_claim(self.account);
                (known, need_to, need_own)
            });
            // 2. Claims and proofs, without the lock.
            let mut claims = Vec::new();
            if need_to {
                let body = match (to, known_to) {
                    (_, Some(a)) => ClaimRequest::account(a),
                    (Recipient::Phone(p), None) => ClaimRequest::phone(p.e164()),
                    (Recipient::Account(a), None) => ClaimRequest::account(*a),
                };
                claims.push(self.claim(&body).await?);
            }
            let to_account = match (known_to, claims.first()) {
                (Some(a), _) => a,
                (None, Some(c)) => c.account,
                (None, None) => return Err(MessagingError::NoDevices),
            };
            if need_own && to_account != self.account {
                claims.push(self.claim(&ClaimRequest::account(self.account)).await?);
            }
            let mut proven = Vec::with_capacity(claims.len());
            for c in &claims {
                proven.push(self.prove(c)?);
            }
            // 3. The trust rules and the encryption, under the lock.
            let step = self.with(|d| -> Result<_> {
                let mut changed = None;
                for p in proven.iter().flatten() {
                    if p.epoch < d.dir.kt.last_epoch {
                        return Err(crate::kt::KtError::Rollback {
                            epoch: p.epoch,
                            seen: d.dir.kt.last_epoch,
                        }
                        .into());
                    }
                    if p.account == self.account {
                        continue;
                    }
                    let fp = fingerprint(&p.devices);
                    match d.dir.kt.peers.get(&p.account) {
                        None => {
                            d.locked(|_, dir| {
                                dir.kt.peers.insert(
                                    p.account,
                                    PeerTrust {
                                        fingerprint: fp,
                                        status: PeerStatus::Unverified,
                                    },
                                );
                            })?;
                        }
                        Some(t) if t.fingerprint == fp => {
                            if matches!(t.status, PeerStatus::Changed { .. }) {
                                return Err(MessagingError::PeerChanged { account: p.account });
                            }
                        }
                        Some(t) => match t.status {
                            PeerStatus::Unverified => {
                                changed = Some(Step::Changed {
                                    account: p.account,
                                    old: t.fingerprint.clone(),
                                })
                            }
                            _ => return Err(MessagingError::PeerChanged { account: p.account }),
                        },
                    }
                }
                if let Some(step) = changed {
                    return Ok(step);
                }
                d.check_not_blocked(to_account)?;
                let epoch = proven.iter().flatten().map(|p| p.epoch).max();
                let own_device = d.device_id();
                let out = d.locked(|m, dir| -> Result<_> {
                    if let Some(e) = epoch {
                        dir.kt.last_epoch = dir.kt.last_epoch.max(e);
                    }
                    if let (Recipient::Phone(p), Some(c)) = (to, claims.first()) {
                        dir.phones.insert(p.e164().to_owned(), c.account);
                    }
                    let (envelopes, n) = fan_out(
                        m,
                        dir,
                        &claims,
                        to_account,
                        self.account,
                        own_device,
                        plaintext,
                    )?;
                    Ok(Step::Ready(envelopes, n))
                })??;
                for c in &claims {
                    d.note_claim(c);
                }
                Ok(out)
            })?;
            let (envelopes, to_recipient) = match step {
                Step::Ready(envelopes, n) => (envelopes, n),
                Step::Changed { account, old } => {
                    // The old list must be in the account's proven history.
                    history_checks += 1;
                    if history_checks > 2 {
                        return Err(MessagingError::PeerChanged { account });
                    }
                    let history: KtHistory = self
                        .client
                        .request(Method::GET, &format!("/v1/kt/history/{account}"), None)
                        .await?;
                    let (_, values) = verify::verify_history(&self.keys, account, &history)?;
                    let newest = values.first().map(|(_, l)| fingerprint(l));
                    if !values.iter().any(|(_, l)| fingerprint(l) == old) || newest.is_none() {
                        return Err(crate::kt::KtError::Value(
                            "the device list seen before is not in the account's history".into(),
                        )
                        .into());
                    }
                    self.with(|d| {
                        d.locked(|_, dir| {
                            if let Some(p) = dir.kt.peers.get_mut(&account) {
                                p.fingerprint = newest.unwrap_or_default();
                            }
                        })
                    })?;
                    key_changes.push(account);
                    continue;
                }
            };
            if to_recipient == 0 {
                return Err(MessagingError::NoDevices);
            }
            let devices = envelopes.len();
            let request = SendRequest::new(plaintext.client_message_id.clone(), envelopes)
                .map_err(|e: WireError| MessagingError::Protocol(e.to_string()))?;
            let body = BusinessSend {
                device_id: self.with(|d| d.device_id()),
                to_account,
                meta: meta.clone(),
                send: request,
            };
            // 4. The send, without the lock, batched with concurrent ones
            // (`/v1/business/messages/batch`).
            match self.sends.call(body).await {
                Ok(s) => {
                    return Ok(Sent {
                        client_message_id: plaintext.client_message_id.clone(),
                        to_account,
                        devices,
                        duplicate: s.duplicate,
                        key_changes,
                    })
                }
                Err(e) if e.code() == Some("stale_devices") && attempt == 0 => attempt += 1,
                Err(e) if e.code() == Some("stale_devices") => {
                    return Err(MessagingError::StillStale)
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
