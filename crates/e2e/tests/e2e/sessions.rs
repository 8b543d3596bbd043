use accord_domain::AccountId;
use accord_e2e::{E2eError, OlmMessageType, PeerDevice, Plaintext, PlaintextKind};

use crate::helpers::{for_device, text, Device, Directory};

#[test]
fn two_devices_exchange_both_ways_pre_key_then_normal() {
    let mut dir = Directory::default();
    let mut alice = Device::new(AccountId::random());
    let mut bob = Device::new(AccountId::random());
    dir.publish(&mut alice, 5, true);
    dir.publish(&mut bob, 5, true);

    // Until Bob answers, every message from Alice is a pre-key message.
    let m1 = text("hello bob");
    let m2 = text("are you there?");
    let e1 = for_device(&dir.send(&mut alice, bob.account, &m1), bob.id());
    let e2 = for_device(&dir.send(&mut alice, bob.account, &m2), bob.id());
    assert_eq!(e1.message_type, OlmMessageType::PreKey);
    assert_eq!(e2.message_type, OlmMessageType::PreKey);
    assert_eq!(
        dir.remaining_one_time_keys(bob.id()),
        4,
        "one key claimed, once"
    );
    assert_eq!(dir.receive(&mut bob, &e1).unwrap(), m1);
    assert_eq!(dir.receive(&mut bob, &e2).unwrap(), m2);

    // Bob answers on the same session, with normal messages.
    let r1 = text("hi alice");
    let back = for_device(&dir.send(&mut bob, alice.account, &r1), alice.id());
    assert_eq!(back.message_type, OlmMessageType::Normal);
    assert_eq!(
        dir.remaining_one_time_keys(alice.id()),
        5,
        "no claim on a reply"
    );
    assert_eq!(dir.receive(&mut alice, &back).unwrap(), r1);

    // Now Alice's side has received, so she sends normal messages too.
    for i in 0..5 {
        let m = text(&format!("message {i}"));
        let e = for_device(&dir.send(&mut alice, bob.account, &m), bob.id());
        assert_eq!(e.message_type, OlmMessageType::Normal);
        assert_eq!(dir.receive(&mut bob, &e).unwrap(), m);
        let r = text(&format!("reply {i}"));
        let e = for_device(&dir.send(&mut bob, alice.account, &r), alice.id());
        assert_eq!(dir.receive(&mut alice, &e).unwrap(), r);
    }
}

#[test]
fn out_of_order_delivery_still_decrypts() {
    let mut dir = Directory::default();
    let mut alice = Device::new(AccountId::random());
    let mut bob = Device::new(AccountId::random());
    dir.publish(&mut alice, 1, true);
    dir.publish(&mut bob, 1, true);
    let msgs: Vec<_> = (0..4).map(|i| text(&format!("m{i}"))).collect();
    let envs: Vec<_> = msgs
        .iter()
        .map(|m| for_device(&dir.send(&mut alice, bob.account, m), bob.id()))
        .collect();
    for i in [2, 0, 3, 1] {
        assert_eq!(dir.receive(&mut bob, &envs[i]).unwrap(), msgs[i]);
    }
}

#[test]
fn fan_out_reaches_the_peer_and_the_senders_other_devices() {
    let mut dir = Directory::default();
    let alice_account = AccountId::random();
    let mut alice_phone = Device::new(alice_account);
    let mut alice_laptop = Device::new(alice_account);
    let mut bob_phone = Device::new(AccountId::random());
    for d in [&mut alice_phone, &mut alice_laptop, &mut bob_phone] {
        dir.publish(d, 3, true);
    }

    let m = text("dinner at 8");
    let out = dir.send(&mut alice_phone, bob_phone.account, &m);
    assert_eq!(out.len(), 2, "Bob's phone and Alice's laptop");
    assert_eq!(dir.deliver(&mut bob_phone, &out).unwrap(), m);
    assert_eq!(dir.deliver(&mut alice_laptop, &out).unwrap(), m);
    // Each envelope only opens on its own device.
    let for_laptop = for_device(&out, alice_laptop.id());
    assert!(dir.receive(&mut bob_phone, &for_laptop).is_err());

    // Bob answers from his phone: Alice's phone and laptop both get it.
    let r = text("see you");
    let out = dir.send(&mut bob_phone, alice_account, &r);
    assert_eq!(out.len(), 2);
    assert_eq!(dir.deliver(&mut alice_phone, &out).unwrap(), r);
    assert_eq!(dir.deliver(&mut alice_laptop, &out).unwrap(), r);

    // The laptop writes too, reusing its new session with Bob.
    let l = text("from the laptop");
    let out = dir.send(&mut alice_laptop, bob_phone.account, &l);
    assert_eq!(dir.deliver(&mut bob_phone, &out).unwrap(), l);
    assert_eq!(dir.deliver(&mut alice_phone, &out).unwrap(), l);
}

#[test]
fn read_receipts_are_e2e_messages_of_the_same_size_as_short_texts() {
    let mut dir = Directory::default();
    let mut alice = Device::new(AccountId::random());
    let mut bob = Device::new(AccountId::random());
    dir.publish(&mut alice, 1, true);
    dir.publish(&mut bob, 1, true);
    let m = text("ok");
    let e = for_device(&dir.send(&mut alice, bob.account, &m), bob.id());
    dir.receive(&mut bob, &e).unwrap();
    // Warm both directions up so both sides send normal messages.
    let r = text("k");
    let e = for_device(&dir.send(&mut bob, alice.account, &r), alice.id());
    dir.receive(&mut alice, &e).unwrap();

    let short = text("thanks!");
    let receipt = Plaintext::read_receipt(
        accord_e2e::ClientMessageId::random(),
        short.sent_at,
        vec![m.client_message_id.clone()],
    );
    let e_text = for_device(&dir.send(&mut bob, alice.account, &short), alice.id());
    let e_receipt = for_device(&dir.send(&mut bob, alice.account, &receipt), alice.id());
    assert_eq!(e_text.message_type, e_receipt.message_type);
    assert_eq!(e_text.ciphertext.len(), e_receipt.ciphertext.len());
    let got = dir.receive(&mut alice, &e_receipt).unwrap();
    assert_eq!(
        got.kind,
        PlaintextKind::ReadReceipt {
            client_message_ids: vec![m.client_message_id]
        }
    );
    assert_eq!(dir.receive(&mut alice, &e_text).unwrap(), short);
}

#[test]
fn fallback_key_opens_sessions_when_one_time_keys_are_gone() {
    let mut dir = Directory::default();
    let mut bob = Device::new(AccountId::random());
    dir.publish(&mut bob, 0, true); // no one-time keys at all
    let mut alice = Device::new(AccountId::random());
    let mut carol = Device::new(AccountId::random());
    dir.publish(&mut alice, 0, true);
    dir.publish(&mut carol, 0, true);

    let claimed = dir.claim(bob.id()).unwrap();
    assert!(claimed.fallback);
    // Two senders use the same fallback key; both sessions open.
    let ma = text("from alice via fallback");
    let mc = text("from carol via fallback");
    let ea = for_device(&dir.send(&mut alice, bob.account, &ma), bob.id());
    let ec = for_device(&dir.send(&mut carol, bob.account, &mc), bob.id());
    assert_eq!(ea.message_type, OlmMessageType::PreKey);
    assert_eq!(dir.receive(&mut bob, &ea).unwrap(), ma);
    assert_eq!(dir.receive(&mut bob, &ec).unwrap(), mc);
    let r = text("got it");
    let e = for_device(&dir.send(&mut bob, alice.account, &r), alice.id());
    assert_eq!(dir.receive(&mut alice, &e).unwrap(), r);
}

#[test]
fn a_used_one_time_key_opens_no_second_session() {
    let mut dir = Directory::default();
    let mut alice = Device::new(AccountId::random());
    let mut bob = Device::new(AccountId::random());
    dir.publish(&mut alice, 1, false);
    dir.publish(&mut bob, 1, false); // one one-time key, no fallback
    let m = text("once only");
    let e = for_device(&dir.send(&mut alice, bob.account, &m), bob.id());
    assert_eq!(dir.receive(&mut bob, &e).unwrap(), m);

    // Replayed to the same machine: its session refuses the used message key.
    assert!(matches!(
        dir.receive(&mut bob, &e),
        Err(E2eError::DecryptionFailed)
    ));

    // Replayed to the machine after it forgot the session: the one-time
    // key is gone, so no second inbound session can be made.
    let alice_peer = PeerDevice {
        account: alice.account,
        device: alice.id(),
    };
    assert_eq!(bob.machine.forget_sessions(&alice_peer), 1);
    assert!(matches!(
        dir.receive(&mut bob, &e),
        Err(E2eError::UnknownOneTimeKey)
    ));
    assert!(!bob.machine.has_session(&alice_peer));

    // And a fresh machine for the same device never had the key.
    let mut fresh = Device {
        account: bob.account,
        machine: accord_e2e::E2eMachine::new(bob.id()),
    };
    assert!(matches!(
        dir.receive(&mut fresh, &e),
        Err(E2eError::UnknownOneTimeKey)
    ));
}

#[test]
fn without_a_session_or_a_claimed_key_there_is_nothing_to_encrypt_with() {
    let mut dir = Directory::default();
    let mut alice = Device::new(AccountId::random());
    let mut bob = Device::new(AccountId::random());
    dir.publish(&mut bob, 0, false);
    let err = alice
        .machine
        .encrypt_for(bob.account, &dir.keys(bob.id()), None, &text("x"))
        .unwrap_err();
    assert!(matches!(err, E2eError::NoSession));
    assert_eq!(err.code(), "no_session");
    let own = alice.machine.device_keys();
    let err = alice
        .machine
        .encrypt_for(alice.account, &own, None, &text("x"))
        .unwrap_err();
    assert!(matches!(err, E2eError::OwnDevice));
    let _ = &mut bob;
}

#[test]
fn a_changed_identity_key_is_refused_until_accepted() {
    let mut dir = Directory::default();
    let mut alice = Device::new(AccountId::random());
    let mut bob = Device::new(AccountId::random());
    dir.publish(&mut alice, 2, true);
    dir.publish(&mut bob, 2, true);
    let e = for_device(&dir.send(&mut alice, bob.account, &text("1")), bob.id());
    dir.receive(&mut bob, &e).unwrap();

    // Bob's device is reinstalled under the same device id: new keys.
    bob.machine = accord_e2e::E2eMachine::new(bob.id());
    dir.publish(&mut bob, 2, true);
    let keys = dir.keys(bob.id());
    let peer = PeerDevice {
        account: bob.account,
        device: bob.id(),
    };
    let claimed = dir.claim(bob.id());
    let err = alice
        .machine
        .encrypt_for(bob.account, &keys, claimed.as_ref(), &text("2"))
        .unwrap_err();
    assert!(matches!(err, E2eError::IdentityKeyChanged));

    // The user accepts the change; a new session starts.
    alice.machine.forget_sessions(&peer);
    let m = text("3");
    let env = alice
        .machine
        .encrypt_for(bob.account, &keys, claimed.as_ref(), &m)
        .unwrap();
    let alice_peer = PeerDevice {
        account: alice.account,
        device: alice.id(),
    };
    let got = bob
        .machine
        .decrypt(&alice_peer, &dir.keys(alice.id()).curve25519, &env)
        .unwrap();
    assert_eq!(got, m);
}

#[test]
fn misaddressed_relabelled_and_tampered_envelopes_fail_cleanly() {
    let mut dir = Directory::default();
    let mut alice = Device::new(AccountId::random());
    let mut bob = Device::new(AccountId::random());
    let mut eve = Device::new(AccountId::random());
    for d in [&mut alice, &mut bob, &mut eve] {
        dir.publish(d, 2, true);
    }
    let m = text("hi");
    let env = alice
        .machine
        .encrypt_for(
            bob.account,
            &dir.keys(bob.id()),
            dir.claim(bob.id()).as_ref(),
            &m,
        )
        .unwrap();
    let alice_peer = PeerDevice {
        account: alice.account,
        device: alice.id(),
    };
    let alice_curve = dir.keys(alice.id()).curve25519;

    // Addressed to Bob, handed to Eve.
    assert!(matches!(
        eve.machine.decrypt(&alice_peer, &alice_curve, &env),
        Err(E2eError::WrongRecipient)
    ));
    // The server claims Eve sent Alice's pre-key message.
    let eve_peer = PeerDevice {
        account: eve.account,
        device: eve.id(),
    };
    let eve_curve = dir.keys(eve.id()).curve25519;
    assert!(matches!(
        bob.machine.decrypt(&eve_peer, &eve_curve, &env),
        Err(E2eError::SenderKeyMismatch)
    ));
    // A flipped ciphertext byte.
    let mut bytes = env.ciphertext.as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let mut tampered = env.clone();
    tampered.ciphertext = accord_e2e::Ciphertext::from_bytes(bytes).unwrap();
    assert!(bob
        .machine
        .decrypt(&alice_peer, &alice_curve, &tampered)
        .is_err());
    assert!(
        !bob.machine.has_session(&alice_peer),
        "a bad pre-key message opens nothing"
    );
    // Garbage that is not an Olm message.
    let mut garbage = env.clone();
    garbage.ciphertext = accord_e2e::Ciphertext::from_bytes(vec![0xff; 40]).unwrap();
    assert!(matches!(
        bob.machine.decrypt(&alice_peer, &alice_curve, &garbage),
        Err(E2eError::MalformedCiphertext)
    ));
    // The genuine one still works afterwards.
    assert_eq!(
        bob.machine
            .decrypt(&alice_peer, &alice_curve, &env)
            .unwrap(),
        m
    );

    // A normal message relabelled as coming from Eve does not decrypt.
    let r = text("reply");
    let back = bob
        .machine
        .encrypt_for(alice.account, &dir.keys(alice.id()), None, &r)
        .unwrap();
    let bob_peer_as_eve = PeerDevice {
        account: eve.account,
        device: eve.id(),
    };
    assert!(matches!(
        alice.machine.decrypt(&bob_peer_as_eve, &eve_curve, &back),
        Err(E2eError::DecryptionFailed)
    ));
    let bob_peer = PeerDevice {
        account: bob.account,
        device: bob.id(),
    };
    assert_eq!(
        alice
            .machine
            .decrypt(&bob_peer, &dir.keys(bob.id()).curve25519, &back)
            .unwrap(),
        r
    );
}
