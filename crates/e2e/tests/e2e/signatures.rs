use accord_domain::{AccountId, DeviceId};
use accord_e2e::wire::{self, OneTimeKeyId};
use accord_e2e::{DeviceKeys, E2eError, E2eMachine, PeerDevice, SignedOneTimeKey, WireError};

use crate::helpers::text;

fn machine() -> E2eMachine {
    E2eMachine::new(DeviceId::random())
}

#[test]
fn genuine_keys_verify() {
    let mut m = machine();
    m.device_keys().verify().unwrap();
    let keys = m.generate_one_time_keys(3);
    assert_eq!(keys.len(), 3);
    for k in &keys {
        assert!(!k.fallback);
        k.verify(m.device_id(), &m.ed25519_key()).unwrap();
    }
    let fb = m.generate_fallback_key();
    assert!(fb.fallback);
    fb.verify(m.device_id(), &m.ed25519_key()).unwrap();
    m.mark_published();
    assert!(m.one_time_keys().is_empty());
    assert!(m.fallback_key().is_none());
}

#[test]
fn forged_device_keys_are_rejected() {
    let victim = machine();
    let mallory = machine();
    let genuine = victim.device_keys();

    // Mallory's curve key under the victim's signature.
    let mut swapped = genuine.clone();
    swapped.curve25519 = mallory.curve25519_key();
    // The victim's keys moved to another device id.
    let mut moved = genuine.clone();
    moved.device_id = DeviceId::random();
    // Mallory's ed25519 key with the victim's signature.
    let mut other_signer = genuine.clone();
    other_signer.ed25519 = mallory.ed25519_key();
    // The victim's exact signed bytes, signed by another key.
    let mut mallory_signed = genuine.clone();
    let msg = DeviceKeys::canonical_bytes(genuine.device_id, &genuine.curve25519);
    mallory_signed.signature = vodozemac::Ed25519Keypair::new().sign(&msg);
    // Mallory's own genuine signature pasted in.
    let mut pasted = genuine.clone();
    pasted.signature = mallory.device_keys().signature;

    for forged in [swapped, moved, other_signer, mallory_signed, pasted] {
        assert_eq!(forged.verify(), Err(WireError::BadSignature));
        // Through the wire too: decoding succeeds, verification does not.
        let decoded = wire::decode_device_keys(&wire::encode(&forged)).unwrap();
        assert_eq!(decoded.verify().unwrap_err().code(), "bad_signature");

        let mut sender = machine();
        let mut target = machine();
        let otk = target.generate_one_time_keys(1).remove(0);
        let err = sender
            .encrypt_for(AccountId::random(), &forged, Some(&otk), &text("x"))
            .unwrap_err();
        assert!(matches!(
            err,
            E2eError::InvalidDeviceKeys(WireError::BadSignature)
        ));
        assert_eq!(err.code(), "invalid_device_keys");
    }
}

#[test]
fn forged_one_time_keys_are_rejected_and_open_no_session() {
    let mut bob = machine();
    let mallory = machine();
    let bob_keys = bob.device_keys();
    let genuine = bob.generate_one_time_keys(2);
    let (otk, other) = (&genuine[0], &genuine[1]);

    let mut key_swapped = otk.clone();
    key_swapped.key = mallory.curve25519_key();
    let mut flag_flipped = otk.clone();
    flag_flipped.fallback = true;
    let mut id_changed = otk.clone();
    id_changed.key_id = other.key_id.clone();
    let mut signature_of_other = otk.clone();
    signature_of_other.signature = other.signature;
    // The exact signed bytes, signed by a key that is not Bob's.
    let mut mallory_signed = otk.clone();
    let msg = SignedOneTimeKey::canonical_bytes(bob.device_id(), &otk.key_id, &otk.key, false);
    mallory_signed.signature = vodozemac::Ed25519Keypair::new().sign(&msg);
    drop(mallory);

    for forged in [
        key_swapped,
        flag_flipped,
        id_changed,
        signature_of_other,
        mallory_signed,
    ] {
        assert_eq!(
            forged.verify(bob.device_id(), &bob.ed25519_key()),
            Err(WireError::BadSignature)
        );
        let mut alice = machine();
        let bob_account = AccountId::random();
        let err = alice
            .encrypt_for(bob_account, &bob_keys, Some(&forged), &text("x"))
            .unwrap_err();
        assert!(matches!(
            err,
            E2eError::InvalidOneTimeKey(WireError::BadSignature)
        ));
        assert!(!alice.has_session(&PeerDevice {
            account: bob_account,
            device: bob.device_id()
        }));
    }

    // A genuine key checked against another device id fails: the device id
    // is part of what is signed.
    assert_eq!(
        otk.verify(DeviceId::random(), &bob.ed25519_key()),
        Err(WireError::BadSignature)
    );
}

#[test]
fn canonical_bytes_have_the_documented_layout() {
    let m = machine();
    let device = m.device_id();
    let curve = m.curve25519_key();
    let dk = DeviceKeys::canonical_bytes(device, &curve);
    let prefix = b"accord-e2e:device-keys:v1\0";
    assert_eq!(&dk[..prefix.len()], prefix);
    assert_eq!(&dk[prefix.len()..prefix.len() + 16], device.0.as_bytes());
    assert_eq!(&dk[prefix.len() + 16..], curve.as_bytes());

    let id = OneTimeKeyId::parse("AAAAAAAAAAE").unwrap();
    let otk = SignedOneTimeKey::canonical_bytes(device, &id, &curve, true);
    let prefix = b"accord-e2e:one-time-key:v1\0";
    assert_eq!(&otk[..prefix.len()], prefix);
    let rest = &otk[prefix.len()..];
    assert_eq!(&rest[..16], device.0.as_bytes());
    assert_eq!(rest[16], 1, "fallback flag");
    assert_eq!(rest[17], 11, "key id length");
    assert_eq!(&rest[18..29], b"AAAAAAAAAAE");
    assert_eq!(&rest[29..], curve.as_bytes());
    assert_ne!(
        otk,
        SignedOneTimeKey::canonical_bytes(device, &id, &curve, false)
    );
}
