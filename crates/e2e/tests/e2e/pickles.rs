use accord_domain::AccountId;
use accord_e2e::{E2eError, E2eMachine, OlmMessageType, PeerDevice, PickleError};

use crate::helpers::{for_device, text, Device, Directory};

#[test]
fn a_pickle_round_trip_keeps_sessions_and_keys_working() {
    let key = [9u8; 32];
    let mut dir = Directory::default();
    let mut alice = Device::new(AccountId::random());
    let mut bob = Device::new(AccountId::random());
    dir.publish(&mut alice, 3, true);
    dir.publish(&mut bob, 3, true);
    let m = text("before the restart");
    let e = for_device(&dir.send(&mut alice, bob.account, &m), bob.id());
    assert_eq!(dir.receive(&mut bob, &e).unwrap(), m);
    // A message in flight while both restart.
    let in_flight = text("in flight");
    let pending = for_device(&dir.send(&mut alice, bob.account, &in_flight), bob.id());

    let alice_bytes = alice.machine.pickle(&key);
    let bob_bytes = bob.machine.pickle(&key);
    alice.machine = E2eMachine::from_pickle(&alice_bytes, &key).unwrap();
    bob.machine = E2eMachine::from_pickle(&bob_bytes, &key).unwrap();
    assert_eq!(alice.machine.device_keys(), dir.keys(alice.id()));
    assert_eq!(bob.machine.device_keys(), dir.keys(bob.id()));
    assert!(bob.machine.has_session(&PeerDevice {
        account: alice.account,
        device: alice.id()
    }));

    assert_eq!(dir.receive(&mut bob, &pending).unwrap(), in_flight);
    let r = text("after the restart");
    let e = for_device(&dir.send(&mut bob, alice.account, &r), alice.id());
    assert_eq!(
        e.message_type,
        OlmMessageType::Normal,
        "the session survived"
    );
    assert_eq!(dir.receive(&mut alice, &e).unwrap(), r);

    // Unused one-time keys survive too: a new peer can still use one.
    let mut carol = Device::new(AccountId::random());
    dir.publish(&mut carol, 1, true);
    let c = text("new session after restore");
    let e = for_device(&dir.send(&mut carol, bob.account, &c), bob.id());
    assert_eq!(e.message_type, OlmMessageType::PreKey);
    assert_eq!(dir.receive(&mut bob, &e).unwrap(), c);

    // And a second round trip of the restored state works as well.
    let again = E2eMachine::from_pickle(&bob.machine.pickle(&key), &key).unwrap();
    assert_eq!(again.device_id(), bob.id());
}

#[test]
fn a_wrong_key_or_altered_bytes_do_not_open_a_pickle() {
    let key = [1u8; 32];
    let mut m = E2eMachine::new(accord_domain::DeviceId::random());
    m.generate_one_time_keys(2);
    let bytes = m.pickle(&key);

    let err = E2eMachine::from_pickle(&bytes, &[2u8; 32]).unwrap_err();
    assert!(matches!(
        err,
        E2eError::Pickle(PickleError::WrongKeyOrCorrupt)
    ));
    assert_eq!(err.code(), "pickle_key_or_corrupt");

    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x80;
    assert!(matches!(
        E2eMachine::from_pickle(&flipped, &key),
        Err(E2eError::Pickle(PickleError::WrongKeyOrCorrupt))
    ));
    assert!(matches!(
        E2eMachine::from_pickle(&bytes[..bytes.len() - 1], &key),
        Err(E2eError::Pickle(PickleError::WrongKeyOrCorrupt))
    ));
    for short in [&b""[..], &b"ACCE2EP1"[..], &bytes[..30]] {
        assert!(matches!(
            E2eMachine::from_pickle(short, &key),
            Err(E2eError::Pickle(PickleError::Format))
        ));
    }
    // The right key still opens the original.
    assert_eq!(
        E2eMachine::from_pickle(&bytes, &key).unwrap().device_id(),
        m.device_id()
    );
}
