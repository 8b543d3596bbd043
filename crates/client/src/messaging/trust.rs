//! Trust in peers' keys: key transparency and verified peers.
//!
//! Every claim carries the directory's lookup proof of the account's
//! device list (`Claimed::kt`). Before a device encrypts to anyone, it
//! checks that proof against the pinned directory keys and refuses every
//! claimed device whose id and identity keys are not in the proven list
//! ([`MessagingError::Unproven`]): a device the server added outside the
//! directory gets nothing. The directory's keys are pinned on first use
//! (when this device publishes its own keys, or at its first claim).
//!
//! For each peer account the device remembers the fingerprint of the last
//! proven list and whether the user verified it (compared safety
//! numbers). When the proven list changes, the device checks the
//! account's history proof (the old list must be in it: the change was
//! published, not a view made for this device) and then:
//! - for an unverified peer, goes on and tells the caller
//!   ([`Sent::key_changes`](super::Sent));
//! - for a verified peer, blocks sending ([`MessagingError::PeerChanged`])
//!   until the user accepts the change ([`Device::accept_peer_change`]),
//!   which leaves the peer unverified until they compare numbers again.
//!
//! Its own account: [`Device::audit_own`] looks the account up and warns
//! about every device in it that the user has not accepted, and when the
//! directory holds other keys for this very device.

use std::collections::{BTreeMap, BTreeSet};

use accord_domain::{AccountId, DeviceId, PhoneNumber};
use accord_messenger_wire::{ClaimRequest, KtHistory, KtKeys, KtLookup, KtRoots};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::device::Device;
use super::error::{MessagingError, Result};
use super::send::Claim;
use crate::kt::{fingerprint, safety_number, verify, DirectoryKeys, Proven};
use crate::Client;

/// What a peer's list is to this device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum PeerStatus {
    /// Seen, never verified.
    Unverified,
    /// The user compared safety numbers over this list.
    Verified,
    /// Verified, then the list changed to `new_fingerprint`: sending is
    /// blocked until the user accepts it.
    Changed { new_fingerprint: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct PeerTrust {
    /// [`fingerprint`] of the last accepted device list.
    pub(super) fingerprint: String,
    pub(super) status: PeerStatus,
}

/// Key-transparency state, sealed in the directory.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct TrustState {
    /// The directory's keys, pinned on first use.
    pub(super) keys: Option<KtKeys>,
    /// The newest epoch of a root this device checked.
    pub(super) last_epoch: u64,
    pub(super) peers: BTreeMap<AccountId, PeerTrust>,
    /// Other devices of this account that the user accepted.
    pub(super) own_devices: BTreeSet<DeviceId>,
}

/// A safety number, and what marking it verified records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetyNumber {
    pub peer: AccountId,
    /// Twelve groups of five digits.
    pub number: String,
    /// The fingerprint of the peer's proven device list.
    pub peer_fingerprint: String,
    /// The epoch both lists were proven at.
    pub epoch: u64,
}

/// What the start-up audit of this device's own account found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnWarning {
    /// A device of this account that the user never accepted: someone
    /// (possibly the messenger) added it.
    UnknownDevice(DeviceId),
    /// The directory holds other identity keys for this very device.
    KeysReplaced,
    /// This device published its keys, but the directory does not have
    /// them.
    Missing,
}

impl std::fmt::Display for OwnWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OwnWarning::UnknownDevice(d) => write!(f, "the key directory lists device {d} on your account, which you never added: if it is not yours, someone can read your messages"),
            OwnWarning::KeysReplaced => write!(f, "the key directory holds other identity keys for this device than its own: someone may be reading your messages"),
            OwnWarning::Missing => write!(f, "this device published its keys, but the key directory does not list it"),
        }
    }
}

/// The start-up audit's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnAudit {
    pub epoch: u64,
    pub devices: usize,
    pub warnings: Vec<OwnWarning>,
}

impl Device {
    /// The pinned directory keys; pins the server's on first use.
    pub(super) async fn directory_keys(&mut self, client: &Client) -> Result<DirectoryKeys> {
        if let Some(k) = &self.dir.kt.keys {
            return Ok(DirectoryKeys::from_wire(k)?);
        }
        let roots: KtRoots = client
            .request(Method::GET, "/v1/kt/roots?from=1", None)
            .await?;
        let keys = DirectoryKeys::from_wire(&roots.keys)?;
        let wire = roots.keys.clone();
        self.locked(|_, dir| {
            if dir.kt.keys.is_none() {
                dir.kt.keys = Some(wire);
            }
        })?;
        match &self.dir.kt.keys {
            Some(k) if *k == roots.keys => Ok(keys),
            Some(k) => Ok(DirectoryKeys::from_wire(k)?),
            None => Ok(keys),
        }
    }

    /// Checks a lookup and that it is not older than what this device saw.
    fn proven(&self, keys: &DirectoryKeys, account: AccountId, l: &KtLookup) -> Result<Proven> {
        let p = verify::verify_lookup(keys, account, l)?;
        if p.epoch < self.dir.kt.last_epoch {
            return Err(crate::kt::KtError::Rollback {
                epoch: p.epoch,
                seen: self.dir.kt.last_epoch,
            }
            .into());
        }
        Ok(p)
    }

    /// Checks every claim against its lookup proof and applies the
    /// verified-peer rules. Gives the unverified peers whose list changed.
    pub(super) async fn verify_claims(
        &mut self,
        client: &Client,
        claims: &[Claim],
    ) -> Result<Vec<AccountId>> {
        let mut changed = Vec::new();
        for claim in claims {
            let Some(lookup) = &claim.kt else {
                if claim.devices.is_empty() {
                    continue;
                }
                return Err(MessagingError::Unproven {
                    account: claim.account,
                    device: claim.devices[0].0.device_id,
                });
            };
            let keys = self.directory_keys(client).await?;
            let proven = self.proven(&keys, claim.account, lookup)?;
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
            if claim.account != self.account && self.note_peer_list(client, &keys, &proven).await? {
                changed.push(claim.account);
            }
            let epoch = proven.epoch;
            self.locked(|_, dir| dir.kt.last_epoch = dir.kt.last_epoch.max(epoch))?;
        }
        Ok(changed)
    }

    /// Records a peer's proven list. `Ok(true)`: an unverified peer's list
    /// changed; `Err(PeerChanged)`: a verified one's did.
    async fn note_peer_list(
        &mut self,
        client: &Client,
        keys: &DirectoryKeys,
        proven: &Proven,
    ) -> Result<bool> {
        let account = proven.account;
        let fp = fingerprint(&proven.devices);
        let known = self.dir.kt.peers.get(&account).cloned();
        let Some(known) = known else {
            self.locked(|_, dir| {
                dir.kt.peers.insert(
                    account,
                    PeerTrust {
                        fingerprint: fp,
                        status: PeerStatus::Unverified,
                    },
                );
            })?;
            return Ok(false);
        };
        if known.fingerprint == fp {
            return match known.status {
                PeerStatus::Changed { .. } => Err(MessagingError::PeerChanged { account }),
                _ => Ok(false),
            };
        }
        // A change: the old list must be in the account's proven history.
        let history: KtHistory = client
            .request(Method::GET, &format!("/v1/kt/history/{account}"), None)
            .await?;
        let (_, values) = verify::verify_history(keys, account, &history)?;
        if values.first().map(|(_, l)| l) != Some(&proven.devices) {
            return Err(crate::kt::KtError::Value(
                "the history's newest device list is not the one looked up".into(),
            )
            .into());
        }
        if !values
            .iter()
            .any(|(_, l)| fingerprint(l) == known.fingerprint)
        {
            return Err(crate::kt::KtError::Value(
                "the device list seen before is not in the account's history".into(),
            )
            .into());
        }
        match known.status {
            PeerStatus::Unverified => {
                self.locked(|_, dir| {
                    if let Some(p) = dir.kt.peers.get_mut(&account) {
                        p.fingerprint = fp;
                    }
                })?;
                Ok(true)
            }
            PeerStatus::Verified | PeerStatus::Changed { .. } => {
                self.locked(|_, dir| {
                    if let Some(p) = dir.kt.peers.get_mut(&account) {
                        p.status = PeerStatus::Changed {
                            new_fingerprint: fp,
                        };
                    }
                })?;
                Err(MessagingError::PeerChanged { account })
            }
        }
    }

    /// Fails when sending to `account` is blocked by a change the user has
    /// not accepted.
    pub(super) fn check_not_blocked(&self, account: AccountId) -> Result<()> {
        match self.dir.kt.peers.get(&account).map(|p| &p.status) {
            Some(PeerStatus::Changed { .. }) => Err(MessagingError::PeerChanged { account }),
            _ => Ok(()),
        }
    }

    /// What this device knows of a peer (`None`: never written to or
    /// looked up).
    pub fn peer_status(&self, account: AccountId) -> Option<PeerStatus> {
        self.dir.kt.peers.get(&account).map(|p| p.status.clone())
    }

    /// Accepts a verified peer's new device list: sending is no longer
    /// blocked, and the peer is unverified until numbers are compared
    /// again.
    pub fn accept_peer_change(&mut self, account: AccountId) -> Result<bool> {
        self.locked(|_, dir| match dir.kt.peers.get_mut(&account) {
            Some(p) => match std::mem::replace(&mut p.status, PeerStatus::Unverified) {
                PeerStatus::Changed { new_fingerprint } => {
                    p.fingerprint = new_fingerprint;
                    true
                }
                other => {
                    p.status = other;
                    false
                }
            },
            None => false,
        })
    }

    /// Looks an account up in the directory, checking the proof.
    pub async fn lookup_proven(&mut self, client: &Client, account: AccountId) -> Result<Proven> {
        let keys = self.directory_keys(client).await?;
        let lookup: KtLookup = client
            .request(Method::GET, &format!("/v1/kt/lookup/{account}"), None)
            .await?;
        self.proven(&keys, account, &lookup)
    }

    /// The safety number of this account and `peer`, from both device
    /// lists as the directory proves them.
    pub async fn safety_number(
        &mut self,
        client: &Client,
        peer: AccountId,
    ) -> Result<SafetyNumber> {
        let own = self.lookup_proven(client, self.account).await?;
        let theirs = self.lookup_proven(client, peer).await?;
        Ok(SafetyNumber {
            peer,
            number: safety_number((self.account, &own.devices), (peer, &theirs.devices)),
            peer_fingerprint: fingerprint(&theirs.devices),
            epoch: theirs.epoch.max(own.epoch),
        })
    }

    /// Marks `peer` verified over the device list of `number` (what the
    /// user compared).
    pub fn mark_verified(&mut self, number: &SafetyNumber) -> Result<()> {
        let (peer, fp) = (number.peer, number.peer_fingerprint.clone());
        self.locked(|_, dir| {
            dir.kt.peers.insert(
                peer,
                PeerTrust {
                    fingerprint: fp,
                    status: PeerStatus::Verified,
                },
            );
        })
    }

    /// Audits this device's own account in the directory (run it on
    /// start-up): every device listed must be this one or one the user
    /// accepted, and this device's keys must be its own.
    pub async fn audit_own(&mut self, client: &Client) -> Result<OwnAudit> {
        let keys = self.directory_keys(client).await?;
        let lookup: Option<KtLookup> = match client
            .request(
                Method::GET,
                &format!("/v1/kt/lookup/{}", self.account),
                None,
            )
            .await
        {
            Ok(l) => Some(l),
            Err(e) if e.code() == Some("not_in_directory") => None,
            Err(e) => return Err(e.into()),
        };
        let own = self.machine.device_keys();
        let Some(lookup) = lookup else {
            let warnings = if self.is_published() {
                vec![OwnWarning::Missing]
            } else {
                Vec::new()
            };
            return Ok(OwnAudit {
                epoch: 0,
                devices: 0,
                warnings,
            });
        };
        let proven = self.proven(&keys, self.account, &lookup)?;
        let mut warnings = Vec::new();
        match proven.devices.get(own.device_id) {
            Some(d)
                if d.ed25519 == *own.ed25519.as_bytes()
                    && d.curve25519 == own.curve25519.to_bytes() => {}
            Some(_) => warnings.push(OwnWarning::KeysReplaced),
            None if self.is_published() => warnings.push(OwnWarning::Missing),
            None => {}
        }
        for d in proven.devices.devices() {
            if d.device_id != own.device_id && !self.dir.kt.own_devices.contains(&d.device_id) {
                warnings.push(OwnWarning::UnknownDevice(d.device_id));
            }
        }
        let epoch = proven.epoch;
        self.locked(|_, dir| dir.kt.last_epoch = dir.kt.last_epoch.max(epoch))?;
        Ok(OwnAudit {
            epoch,
            devices: proven.devices.devices().len(),
            warnings,
        })
    }

    /// The account of a phone number: from this device's directory, or
    /// from a claim (as a send would find it).
    pub async fn account_of(&mut self, client: &Client, phone: &PhoneNumber) -> Result<AccountId> {
        if let Some(a) = self.dir.phones.get(phone.e164()) {
            return Ok(*a);
        }
        let claim = self
            .claim(client, &ClaimRequest::phone(phone.e164()))
            .await?;
        let account = claim.account;
        let e164 = phone.e164().to_owned();
        self.locked(|_, dir| {
            dir.phones.insert(e164, account);
        })?;
        Ok(account)
    }

    /// Accepts another device of this account as the user's own.
    pub fn accept_own_device(&mut self, device: DeviceId) -> Result<()> {
        self.locked(|_, dir| {
            dir.kt.own_devices.insert(device);
        })
    }
}
