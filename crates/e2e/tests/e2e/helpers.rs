//! A tiny in-memory stand-in for the key directory and mailbox relay, doing
//! what the server does with the wire types: decode and verify uploads, hand
//! out one one-time key per claim (the fallback key when none are left),
//! decode send requests and deliver envelopes as server frames.

use std::collections::{BTreeMap, VecDeque};

use accord_domain::{AccountId, DeviceId, Timestamp};
use accord_e2e::wire::{self, DeliveredEnvelope, EnvelopeId, ServerFrame};
use accord_e2e::{
    ClientMessageId, DeviceKeys, E2eError, E2eMachine, Plaintext, SendRequest, SignedOneTimeKey,
};

pub struct Device {
    pub account: AccountId,
    pub machine: E2eMachine,
}

impl Device {
    pub fn new(account: AccountId) -> Self {
        Device {
            account,
            machine: E2eMachine::new(DeviceId::random()),
        }
    }

    pub fn id(&self) -> DeviceId {
        self.machine.device_id()
    }
}

struct Published {
    account: AccountId,
    keys: DeviceKeys,
    one_time_keys: VecDeque<SignedOneTimeKey>,
    fallback: Option<SignedOneTimeKey>,
}

#[derive(Default)]
pub struct Directory {
    devices: BTreeMap<DeviceId, Published>,
    next_envelope: u64,
    now: i64,
}

impl Directory {
    /// Uploads a device's keys the way a client would, through the wire
    /// encoding, with the server-side checks.
    pub fn publish(&mut self, device: &mut Device, one_time_keys: usize, fallback: bool) {
        let keys = wire::decode_device_keys(&wire::encode(&device.machine.device_keys())).unwrap();
        keys.verify().unwrap();
        let mut otks = Vec::new();
        if one_time_keys > 0 {
            let generated = device.machine.generate_one_time_keys(one_time_keys);
            otks = wire::decode_one_time_keys(&wire::encode(&generated)).unwrap();
        }
        let fallback = fallback.then(|| device.machine.generate_fallback_key());
        device.machine.mark_published();
        for k in otks.iter().chain(fallback.iter()) {
            k.verify(keys.device_id, &keys.ed25519).unwrap();
        }
        let entry = self.devices.entry(device.id()).or_insert(Published {
            account: device.account,
            keys: keys.clone(),
            one_time_keys: VecDeque::new(),
            fallback: None,
        });
        if entry.keys != keys {
            // A reinstalled device: its old keys are worthless now.
            entry.one_time_keys.clear();
            entry.fallback = None;
            entry.keys = keys;
        }
        entry.one_time_keys.extend(otks);
        if fallback.is_some() {
            entry.fallback = fallback;
        }
    }

    pub fn keys(&self, device: DeviceId) -> DeviceKeys {
        self.devices[&device].keys.clone()
    }

    pub fn remaining_one_time_keys(&self, device: DeviceId) -> usize {
        self.devices[&device].one_time_keys.len()
    }

    /// One key per claim: a one-time key (never twice), else the fallback.
    pub fn claim(&mut self, device: DeviceId) -> Option<SignedOneTimeKey> {
        let p = self.devices.get_mut(&device)?;
        p.one_time_keys.pop_front().or_else(|| p.fallback.clone())
    }

    pub fn devices_of(&self, account: AccountId) -> Vec<DeviceId> {
        self.devices
            .iter()
            .filter(|(_, p)| p.account == account)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Sends `plaintext` from `from` to every device of `to` and every other
    /// device of `from`'s own account, claiming keys only where no session
    /// exists; returns what each recipient device's WebSocket receives.
    pub fn send(
        &mut self,
        from: &mut Device,
        to: AccountId,
        plaintext: &Plaintext,
    ) -> Vec<(DeviceId, DeliveredEnvelope)> {
        let mut targets: Vec<(AccountId, DeviceId)> =
            self.devices_of(to).into_iter().map(|d| (to, d)).collect();
        targets.extend(
            self.devices_of(from.account)
                .into_iter()
                .filter(|d| *d != from.id())
                .map(|d| (from.account, d)),
        );
        let mut envelopes = Vec::new();
        for (account, device) in targets {
            let peer = accord_e2e::PeerDevice { account, device };
            let claimed = if from.machine.has_session(&peer) {
                None
            } else {
                self.claim(device)
            };
            let keys = self.keys(device);
            envelopes.push(
                from.machine
                    .encrypt_for(account, &keys, claimed.as_ref(), plaintext)
                    .unwrap(),
            );
        }
        let request = SendRequest::new(plaintext.client_message_id.clone(), envelopes).unwrap();
        self.relay(from, &wire::encode(&request))
    }

    /// The server half: decode the request, deliver one frame per envelope.
    pub fn relay(&mut self, from: &Device, body: &[u8]) -> Vec<(DeviceId, DeliveredEnvelope)> {
        let request = wire::decode_send_request(body).unwrap();
        let (_, envelopes) = request.into_parts();
        envelopes
            .into_iter()
            .map(|e| {
                self.next_envelope += 1;
                self.now += 1;
                let frame = ServerFrame::Envelope(DeliveredEnvelope {
                    id: EnvelopeId(self.next_envelope),
                    sender_account: from.account,
                    sender_device: from.id(),
                    server_ts: Timestamp(self.now),
                    message_type: e.message_type,
                    ciphertext: e.ciphertext,
                    business: None,
                });
                let decoded = wire::decode_server_frame(&wire::encode(&frame)).unwrap();
                let ServerFrame::Envelope(d) = decoded else {
                    panic!("expected an envelope frame")
                };
                (e.recipient_device, d)
            })
            .collect()
    }

    /// The client half: look up the sender device's key and decrypt.
    pub fn receive(
        &self,
        device: &mut Device,
        delivered: &DeliveredEnvelope,
    ) -> Result<Plaintext, E2eError> {
        let curve = self.keys(delivered.sender_device).curve25519;
        device.machine.decrypt_delivered(&curve, delivered)
    }
}

/// Picks the envelope for `device` out of a fan-out.
pub fn for_device(out: &[(DeviceId, DeliveredEnvelope)], device: DeviceId) -> DeliveredEnvelope {
    out.iter()
        .find(|(d, _)| *d == device)
        .map(|(_, e)| e.clone())
        .expect("no envelope for this device")
}

pub fn text(body: &str) -> Plaintext {
    Plaintext::text(
        ClientMessageId::random(),
        Timestamp(1_700_000_000_000),
        body,
    )
}

impl Directory {
    /// Receives, on `device`, its envelope out of a fan-out.
    pub fn deliver(
        &self,
        device: &mut Device,
        out: &[(DeviceId, DeliveredEnvelope)],
    ) -> Result<Plaintext, E2eError> {
        let envelope = for_device(out, device.id());
        self.receive(device, &envelope)
    }
}
