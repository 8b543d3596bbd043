//! Property tests: decoders never panic, valid values round-trip, and the
//! machine answers arbitrary ciphertext with an error, not a panic.

use accord_domain::{AccountId, DeviceId, Timestamp};
use accord_e2e::wire::{self, *};
use accord_e2e::{E2eMachine, PeerDevice};
use proptest::prelude::*;

fn all_decoders(bytes: &[u8]) {
    let _ = decode_device_keys(bytes);
    let _ = decode_one_time_key(bytes);
    let _ = decode_one_time_keys(bytes);
    let _ = decode_envelope(bytes);
    let _ = decode_send_request(bytes);
    let _ = decode_client_frame(bytes);
    if let Err(e) = decode_server_frame(bytes) {
        assert!(!e.code().is_empty());
    }
}

fn samples() -> Vec<Vec<u8>> {
    let d = DeviceId::random();
    let mut m = E2eMachine::new(d);
    let env = Envelope {
        recipient_device: d,
        message_type: OlmMessageType::Normal,
        ciphertext: Ciphertext::from_bytes(vec![9; 40]).unwrap(),
    };
    vec![
        wire::encode(&m.device_keys()),
        wire::encode(&m.generate_one_time_keys(2)),
        wire::encode(&env),
        wire::encode(&SendRequest::new(ClientMessageId::random(), vec![env.clone()]).unwrap()),
        wire::encode(&ClientFrame::Ack {
            envelope_ids: vec![EnvelopeId(1), EnvelopeId(2)],
        }),
        wire::encode(&ServerFrame::Envelope(DeliveredEnvelope {
            id: EnvelopeId(1),
            sender_account: AccountId::random(),
            sender_device: d,
            server_ts: Timestamp(1),
            message_type: OlmMessageType::PreKey,
            ciphertext: env.ciphertext.clone(),
            business: None,
        })),
    ]
}

proptest! {
    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        all_decoders(&bytes);
    }

    #[test]
    fn decoders_never_panic_on_mutated_valid_json(
        which in 0usize..6,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = samples().swap_remove(which);
        for (at, b) in edits {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        all_decoders(&bytes);
        let keep = cut % (bytes.len() + 1);
        all_decoders(&bytes[..keep]);
    }

    #[test]
    fn send_requests_round_trip(
        id in "[A-Za-z0-9._:-]{1,64}",
        envs in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 1..300)), 1..20),
    ) {
        let envelopes: Vec<Envelope> = envs
            .into_iter()
            .map(|(pre, ct)| Envelope {
                recipient_device: DeviceId::random(),
                message_type: if pre { OlmMessageType::PreKey } else { OlmMessageType::Normal },
                ciphertext: Ciphertext::from_bytes(ct).unwrap(),
            })
            .collect();
        let req = SendRequest::new(ClientMessageId::parse(&id).unwrap(), envelopes).unwrap();
        prop_assert_eq!(decode_send_request(&wire::encode(&req)).unwrap(), req);
    }

    #[test]
    fn decrypt_never_panics_on_arbitrary_ciphertext(
        pre in any::<bool>(),
        ct in proptest::collection::vec(any::<u8>(), 1..512),
    ) {
        let me = DeviceId::random();
        let mut bob = E2eMachine::new(me);
        bob.generate_one_time_keys(1);
        let alice = E2eMachine::new(DeviceId::random());
        let env = Envelope {
            recipient_device: me,
            message_type: if pre { OlmMessageType::PreKey } else { OlmMessageType::Normal },
            ciphertext: Ciphertext::from_bytes(ct).unwrap(),
        };
        let sender = PeerDevice { account: AccountId::random(), device: alice.device_id() };
        prop_assert!(bob.decrypt(&sender, &alice.curve25519_key(), &env).is_err());
        prop_assert!(!bob.has_session(&sender));
    }
}
