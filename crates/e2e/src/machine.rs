//! [`E2eMachine`]: one device's Olm state, as a state machine with no I/O.
//!
//! In the manner of matrix-rust-sdk's `OlmMachine`: the caller feeds it what
//! the server returned (a peer's device keys and claimed key, a delivered
//! envelope) and gets back what to send (an [`Envelope`], keys to upload) or
//! what arrived (a [`Plaintext`]). It owns a vodozemac [`Account`] and the
//! Olm [`Session`]s per (peer account, peer device); persisting its state is
//! the caller's job, through [`E2eMachine::pickle`], which only ever hands
//! out sealed bytes.
//!
//! Trust rules it enforces:
//! - A peer's device keys and claimed one-time key are verified before any
//!   session is made with them.
//! - The sessions of a peer device are pinned to the curve25519 key they
//!   were made with: if the directory later shows another key for that
//!   device, encrypting and decrypting fail with
//!   [`E2eError::IdentityKeyChanged`] until the caller accepts the change
//!   with [`E2eMachine::forget_sessions`].
//! - A pre-key message that belongs to a session we already have is only
//!   ever decrypted by that session, so a replay cannot open a second one.

use std::collections::BTreeMap;
use std::fmt;

use accord_domain::{AccountId, DeviceId};
use serde::{Deserialize, Serialize};
use vodozemac::olm::{
    Account, AccountPickle, OlmMessage, Session, SessionConfig, SessionCreationError, SessionPickle,
};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey, KeyId};
use zeroize::Zeroizing;

use crate::payload::{PayloadError, Plaintext};
use crate::pickle::{self, PickleError};
use crate::wire::{
    Ciphertext, DeliveredEnvelope, DeviceKeys, Envelope, OlmMessageType, OneTimeKeyId,
    SignedOneTimeKey, WireError,
};

/// Sessions kept per peer device (most recently used first); older ones are
/// dropped. More than one exists only when both sides started a session at
/// the same time.
pub const MAX_SESSIONS_PER_DEVICE: usize = 4;

/// The Olm version every session uses (vodozemac's stable one).
const SESSION_CONFIG: SessionConfig = SessionConfig::version_1();

/// One device of a peer account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PeerDevice {
    pub account: AccountId,
    pub device: DeviceId,
}

/// Why the machine refused. Messages never carry keys or plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum E2eError {
    #[error("the peer's device keys do not verify: {0}")]
    InvalidDeviceKeys(WireError),
    #[error("the claimed one-time key does not verify: {0}")]
    InvalidOneTimeKey(WireError),
    #[error("no session with this device and no claimed one-time key to start one")]
    NoSession,
    #[error("this is the machine's own device")]
    OwnDevice,
    #[error("the device's identity key is not the one its sessions were made with")]
    IdentityKeyChanged,
    #[error("the pre-key message's sender key is not the sender device's key")]
    SenderKeyMismatch,
    #[error(
        "the pre-key message names a one-time key this device does not have (unknown or used)"
    )]
    UnknownOneTimeKey,
    #[error("could not create an Olm session")]
    SessionCreation,
    #[error("the envelope is addressed to another device")]
    WrongRecipient,
    #[error("the ciphertext is not an Olm message")]
    MalformedCiphertext,
    #[error("no session decrypts this message")]
    DecryptionFailed,
    #[error("could not encrypt the message")]
    Encryption,
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error(transparent)]
    Pickle(#[from] PickleError),
}

impl E2eError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            E2eError::InvalidDeviceKeys(_) => "invalid_device_keys",
            E2eError::InvalidOneTimeKey(_) => "invalid_one_time_key",
            E2eError::NoSession => "no_session",
            E2eError::OwnDevice => "own_device",
            E2eError::IdentityKeyChanged => "identity_key_changed",
            E2eError::SenderKeyMismatch => "sender_key_mismatch",
            E2eError::UnknownOneTimeKey => "unknown_one_time_key",
            E2eError::SessionCreation => "session_creation",
            E2eError::WrongRecipient => "wrong_recipient",
            E2eError::MalformedCiphertext => "malformed_ciphertext",
            E2eError::DecryptionFailed => "decryption_failed",
            E2eError::Encryption => "encryption_failed",
            E2eError::Payload(PayloadError::TooLarge { .. }) => "payload_too_large",
            E2eError::Payload(_) => "invalid_payload",
            E2eError::Pickle(e) => e.code(),
        }
    }
}

/// A session and the peer identity key it was made with.
struct PeerSession {
    remote_curve25519: Curve25519PublicKey,
    session: Session,
}

/// One device's end-to-end state: its Olm account and its sessions.
pub struct E2eMachine {
    device_id: DeviceId,
    account: Account,
    /// Never holds an empty list; every list's sessions share one
    /// `remote_curve25519`.
    sessions: BTreeMap<PeerDevice, Vec<PeerSession>>,
}

/// Prints counts only: no key, public or private, and no session state.
impl fmt::Debug for E2eMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("E2eMachine")
            .field("device_id", &self.device_id)
            .field("peer_devices", &self.sessions.len())
            .field(
                "sessions",
                &self.sessions.values().map(Vec::len).sum::<usize>(),
            )
            .finish_non_exhaustive()
    }
}

impl E2eMachine {
    /// A new device with fresh identity keys and no one-time keys.
    pub fn new(device_id: DeviceId) -> Self {
        E2eMachine {
            device_id,
            account: Account::new(),
            sessions: BTreeMap::new(),
        }
    }

    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    pub fn curve25519_key(&self) -> Curve25519PublicKey {
        self.account.curve25519_key()
    }

    pub fn ed25519_key(&self) -> Ed25519PublicKey {
        self.account.ed25519_key()
    }

    /// This device's identity keys, signed, for the key directory.
    pub fn device_keys(&self) -> DeviceKeys {
        let curve25519 = self.account.curve25519_key();
        let signature = self
            .account
            .sign(DeviceKeys::canonical_bytes(self.device_id, &curve25519));
        DeviceKeys {
            device_id: self.device_id,
            curve25519,
            ed25519: self.account.ed25519_key(),
            signature,
        }
    }

    /// How many one-time keys the directory should hold for this device;
    /// upload `max_one_time_keys() - remaining` new ones.
    pub fn max_one_time_keys(&self) -> usize {
        self.account.max_number_of_one_time_keys()
    }

    /// Generates `count` one-time keys (at most [`Self::max_one_time_keys`])
    /// and returns every unpublished one, signed, ready to upload. Call
    /// [`Self::mark_published`] once the upload succeeded.
    pub fn generate_one_time_keys(&mut self, count: usize) -> Vec<SignedOneTimeKey> {
        let count = count.min(self.max_one_time_keys());
        self.account.generate_one_time_keys(count);
        self.one_time_keys()
    }

    /// The unpublished one-time keys, signed, in generation order.
    pub fn one_time_keys(&self) -> Vec<SignedOneTimeKey> {
        let mut keys: Vec<_> = self.account.one_time_keys().into_iter().collect();
        keys.sort_by_key(|(id, _)| *id);
        keys.into_iter()
            .map(|(id, key)| self.sign_key(id, key, false))
            .collect()
    }

    /// Replaces the fallback key (the previous one still opens sessions
    /// until the next rotation) and returns the new one, signed.
    pub fn generate_fallback_key(&mut self) -> SignedOneTimeKey {
        self.account.generate_fallback_key();
        self.fallback_key()
            .expect("a fallback key generated just now is unpublished")
    }

    /// The unpublished fallback key, signed, if there is one.
    pub fn fallback_key(&self) -> Option<SignedOneTimeKey> {
        self.account
            .fallback_key()
            .into_iter()
            .next()
            .map(|(id, key)| self.sign_key(id, key, true))
    }

    /// Marks every unpublished one-time and fallback key as published.
    pub fn mark_published(&mut self) {
        self.account.mark_keys_as_published();
    }

    fn sign_key(&self, id: KeyId, key: Curve25519PublicKey, fallback: bool) -> SignedOneTimeKey {
        let key_id = OneTimeKeyId::from_vodozemac(id);
        let signature = self.account.sign(SignedOneTimeKey::canonical_bytes(
            self.device_id,
            &key_id,
            &key,
            fallback,
        ));
        SignedOneTimeKey {
            key_id,
            key,
            signature,
            fallback,
        }
    }

    /// Whether a session with this peer device exists (if so, no key needs
    /// to be claimed to encrypt for it).
    pub fn has_session(&self, peer: &PeerDevice) -> bool {
        self.sessions.contains_key(peer)
    }

    /// Drops every session with this peer device (to accept its new
    /// identity key, or to start over); returns how many there were.
    pub fn forget_sessions(&mut self, peer: &PeerDevice) -> usize {
        self.sessions.remove(peer).map_or(0, |l| l.len())
    }

    /// Encrypts `plaintext` for one device of `peer`.
    ///
    /// Verifies `peer_keys` (and `claimed`, when given) first. Reuses the
    /// most recently used session with that device; without one, starts an
    /// outbound session from `claimed` (a one-time or fallback key the server
    /// handed out), and fails with [`E2eError::NoSession`] if there is none.
    pub fn encrypt_for(
        &mut self,
        peer: AccountId,
        peer_keys: &DeviceKeys,
        claimed: Option<&SignedOneTimeKey>,
        plaintext: &Plaintext,
    ) -> Result<Envelope, E2eError> {
        peer_keys.verify().map_err(E2eError::InvalidDeviceKeys)?;
        if let Some(otk) = claimed {
            otk.verify(peer_keys.device_id, &peer_keys.ed25519)
                .map_err(E2eError::InvalidOneTimeKey)?;
        }
        if peer_keys.device_id == self.device_id {
            return Err(E2eError::OwnDevice);
        }
        let padded = plaintext.to_padded_bytes()?;
        let key = PeerDevice {
            account: peer,
            device: peer_keys.device_id,
        };
        self.check_pinned(&key, &peer_keys.curve25519)?;

        let message = match self.sessions.get_mut(&key).and_then(|l| l.first_mut()) {
            Some(existing) => existing
                .session
                .encrypt(&*padded)
                .map_err(|_| E2eError::Encryption)?,
            None => {
                let otk = claimed.ok_or(E2eError::NoSession)?;
                let mut session = self
                    .account
                    .create_outbound_session(SESSION_CONFIG, peer_keys.curve25519, otk.key)
                    .map_err(|_| E2eError::SessionCreation)?;
                let message = session
                    .encrypt(&*padded)
                    .map_err(|_| E2eError::Encryption)?;
                self.insert_session(
                    key,
                    PeerSession {
                        remote_curve25519: peer_keys.curve25519,
                        session,
                    },
                );
                message
            }
        };

        let (message_type, bytes) = message.to_parts();
        let message_type = match message_type {
            0 => OlmMessageType::PreKey,
            _ => OlmMessageType::Normal,
        };
        Ok(Envelope {
            recipient_device: peer_keys.device_id,
            message_type,
            ciphertext: Ciphertext::from_bytes(bytes).map_err(|_| E2eError::Encryption)?,
        })
    }

    /// Decrypts an envelope addressed to this device from `sender`, whose
    /// directory entry gives `sender_curve25519`.
    ///
    /// A pre-key message starts an inbound session (using up the one-time
    /// key it names) unless it belongs to a session we already have; a
    /// normal message is tried against the sender device's sessions.
    pub fn decrypt(
        &mut self,
        sender: &PeerDevice,
        sender_curve25519: &Curve25519PublicKey,
        envelope: &Envelope,
    ) -> Result<Plaintext, E2eError> {
        if envelope.recipient_device != self.device_id {
            return Err(E2eError::WrongRecipient);
        }
        self.decrypt_parts(
            sender,
            sender_curve25519,
            envelope.message_type,
            &envelope.ciphertext,
        )
    }

    /// [`Self::decrypt`] for an envelope as the mailbox delivers it.
    pub fn decrypt_delivered(
        &mut self,
        sender_curve25519: &Curve25519PublicKey,
        delivered: &DeliveredEnvelope,
    ) -> Result<Plaintext, E2eError> {
        let sender = PeerDevice {
            account: delivered.sender_account,
            device: delivered.sender_device,
        };
        self.decrypt_parts(
            &sender,
            sender_curve25519,
            delivered.message_type,
            &delivered.ciphertext,
        )
    }

    fn decrypt_parts(
        &mut self,
        sender: &PeerDevice,
        sender_curve25519: &Curve25519PublicKey,
        message_type: OlmMessageType,
        ciphertext: &Ciphertext,
    ) -> Result<Plaintext, E2eError> {
        let message =
            OlmMessage::from_parts(usize::from(message_type.as_u8()), ciphertext.as_bytes())
                .map_err(|_| E2eError::MalformedCiphertext)?;
        self.check_pinned(sender, sender_curve25519)?;

        let bytes = match &message {
            OlmMessage::Normal(_) => self.decrypt_with_existing(sender, &message, None)?,
            OlmMessage::PreKey(pre_key) => {
                if pre_key.identity_key() != *sender_curve25519 {
                    return Err(E2eError::SenderKeyMismatch);
                }
                let session_id = pre_key.session_id();
                let known = self
                    .sessions
                    .get(sender)
                    .is_some_and(|l| l.iter().any(|s| s.session.session_id() == session_id));
                if known {
                    self.decrypt_with_existing(sender, &message, Some(&session_id))?
                } else {
                    let created = self
                        .account
                        .create_inbound_session(SESSION_CONFIG, *sender_curve25519, pre_key)
                        .map_err(|e| match e {
                            SessionCreationError::MissingOneTimeKey(_) => {
                                E2eError::UnknownOneTimeKey
                            }
                            SessionCreationError::MismatchedIdentityKey(..) => {
                                E2eError::SenderKeyMismatch
                            }
                            SessionCreationError::Decryption(_) => E2eError::DecryptionFailed,
                            _ => E2eError::SessionCreation,
                        })?;
                    self.insert_session(
                        *sender,
                        PeerSession {
                            remote_curve25519: *sender_curve25519,
                            session: created.session,
                        },
                    );
                    Zeroizing::new(created.plaintext)
                }
            }
        };
        Ok(Plaintext::from_padded_bytes(&bytes)?)
    }

    /// Tries the sender device's sessions (only the one with `session_id`,
    /// when given); the one that decrypts becomes the most recently used.
    fn decrypt_with_existing(
        &mut self,
        sender: &PeerDevice,
        message: &OlmMessage,
        session_id: Option<&str>,
    ) -> Result<Zeroizing<Vec<u8>>, E2eError> {
        let list = self
            .sessions
            .get_mut(sender)
            .ok_or(E2eError::DecryptionFailed)?;
        for i in 0..list.len() {
            if session_id.is_some_and(|id| list[i].session.session_id() != id) {
                continue;
            }
            if let Ok(plaintext) = list[i].session.decrypt(message) {
                list[..=i].rotate_right(1);
                return Ok(Zeroizing::new(plaintext));
            }
        }
        Err(E2eError::DecryptionFailed)
    }

    /// Fails if this device's sessions were made with another identity key.
    fn check_pinned(
        &self,
        peer: &PeerDevice,
        curve25519: &Curve25519PublicKey,
    ) -> Result<(), E2eError> {
        match self.sessions.get(peer).and_then(|l| l.first()) {
            Some(s) if s.remote_curve25519 != *curve25519 => Err(E2eError::IdentityKeyChanged),
            _ => Ok(()),
        }
    }

    fn insert_session(&mut self, peer: PeerDevice, session: PeerSession) {
        let list = self.sessions.entry(peer).or_default();
        list.insert(0, session);
        list.truncate(MAX_SESSIONS_PER_DEVICE);
    }

    /// The whole state (account and sessions), sealed under `key` with
    /// XChaCha20-Poly1305; see [`crate::pickle`] for the format. The
    /// unsealed JSON lives only in a buffer wiped on drop.
    pub fn pickle(&self, key: &[u8; 32]) -> Vec<u8> {
        let state = MachinePickle {
            device_id: self.device_id,
            account: self.account.pickle(),
            sessions: self
                .sessions
                .iter()
                .flat_map(|(peer, list)| {
                    list.iter().map(|s| SessionRecord {
                        peer: *peer,
                        remote_curve25519: s.remote_curve25519,
                        session: s.session.pickle(),
                    })
                })
                .collect(),
        };
        // Sized exactly first, so the buffer never reallocates and leaves an
        // unwiped copy behind.
        let mut json = Zeroizing::new(Vec::with_capacity(crate::json_len(&state)));
        serde_json::to_writer(&mut *json, &state).expect("a machine pickle serialises to JSON");
        drop(state);
        pickle::seal(&json, key)
    }

    /// Restores a machine from [`Self::pickle`]'s bytes.
    pub fn from_pickle(bytes: &[u8], key: &[u8; 32]) -> Result<Self, E2eError> {
        let json = pickle::open(bytes, key)?;
        let state: MachinePickle =
            serde_json::from_slice(&json).map_err(|_| PickleError::Content)?;
        let mut sessions: BTreeMap<PeerDevice, Vec<PeerSession>> = BTreeMap::new();
        for record in state.sessions {
            let list = sessions.entry(record.peer).or_default();
            if list
                .first()
                .is_some_and(|s| s.remote_curve25519 != record.remote_curve25519)
                || list.len() >= MAX_SESSIONS_PER_DEVICE
            {
                return Err(PickleError::Content.into());
            }
            list.push(PeerSession {
                remote_curve25519: record.remote_curve25519,
                session: Session::from_pickle(record.session),
            });
        }
        Ok(E2eMachine {
            device_id: state.device_id,
            account: Account::from_pickle(state.account),
            sessions,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MachinePickle {
    device_id: DeviceId,
    account: AccountPickle,
    /// Per peer device, most recently used first.
    sessions: Vec<SessionRecord>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionRecord {
    peer: PeerDevice,
    remote_curve25519: Curve25519PublicKey,
    session: SessionPickle,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ClientMessageId;
    use accord_domain::Timestamp;

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// The private identity keys, read from vodozemac's own (unsealed)
    /// account pickle: `signing_key.Normal` (ed25519 seed) and
    /// `diffie_hellman_key` (curve25519 secret), each 32 bytes.
    fn private_identity_keys(m: &E2eMachine) -> Vec<Vec<u8>> {
        let json = serde_json::to_value(m.account.pickle()).unwrap();
        let bytes = |v: &serde_json::Value| -> Vec<u8> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
                .collect()
        };
        let keys = vec![
            bytes(&json["signing_key"]["Normal"]),
            bytes(&json["diffie_hellman_key"]),
        ];
        assert!(
            keys.iter().all(|k| k.len() == 32),
            "vodozemac's pickle layout changed"
        );
        keys
    }

    #[test]
    fn sealed_pickle_holds_no_private_key_and_no_plaintext() {
        let (alice_id, bob_id) = (AccountId::random(), AccountId::random());
        let mut alice = E2eMachine::new(DeviceId::random());
        let mut bob = E2eMachine::new(DeviceId::random());
        let otk = bob.generate_one_time_keys(1).remove(0);
        bob.mark_published();
        let canary = "canary-7f3a9c1e-plaintext-must-not-leak";
        let p = Plaintext::text(ClientMessageId::random(), Timestamp(1), canary);
        let env = alice
            .encrypt_for(bob_id, &bob.device_keys(), Some(&otk), &p)
            .unwrap();
        let sender = PeerDevice {
            account: alice_id,
            device: alice.device_id(),
        };
        assert_eq!(
            bob.decrypt(&sender, &alice.curve25519_key(), &env).unwrap(),
            p
        );

        let key = [42u8; 32];
        for machine in [&alice, &bob] {
            let sealed = machine.pickle(&key);
            for secret in private_identity_keys(machine) {
                assert!(!contains(&sealed, &secret));
                assert!(!contains(
                    &sealed,
                    vodozemac::base64_encode(&secret).as_bytes()
                ));
                let decimal = format!("{secret:?}").replace(' ', "");
                assert!(!contains(&sealed, decimal.as_bytes()));
            }
            assert!(!contains(&sealed, canary.as_bytes()));
            // Markers long enough not to occur by chance in random bytes
            // (a two-byte marker would, in about one run in twenty).
            for marker in [
                "signing_key",
                "diffie_hellman_key",
                "\"sessions\"",
                "\"account\"",
            ] {
                assert!(!contains(&sealed, marker.as_bytes()), "{marker} visible");
            }
            // Neither does Debug print keys.
            let debug = format!("{machine:?}");
            assert!(!debug.contains(&machine.curve25519_key().to_base64()));
            assert!(!debug.contains(&machine.ed25519_key().to_base64()));
        }
    }

    #[test]
    fn session_lists_are_capped_and_most_recent_first() {
        let bob_id = AccountId::random();
        let mut alice = E2eMachine::new(DeviceId::random());
        let mut bob = E2eMachine::new(DeviceId::random());
        let keys = bob.generate_one_time_keys(MAX_SESSIONS_PER_DEVICE + 2);
        let peer = PeerDevice {
            account: bob_id,
            device: bob.device_id(),
        };
        let mut last_id = String::new();
        for otk in &keys {
            let session = alice
                .account
                .create_outbound_session(SESSION_CONFIG, bob.curve25519_key(), otk.key)
                .unwrap();
            last_id = session.session_id();
            let remote_curve25519 = bob.curve25519_key();
            alice.insert_session(
                peer,
                PeerSession {
                    remote_curve25519,
                    session,
                },
            );
        }
        let list = &alice.sessions[&peer];
        assert_eq!(list.len(), MAX_SESSIONS_PER_DEVICE);
        assert_eq!(list[0].session.session_id(), last_id);
    }
}
