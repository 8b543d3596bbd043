use accord_domain::{AccountId, DeviceId, Timestamp};
use accord_e2e::wire::{self, *};
use serde_json::json;

fn envelope_json(device: DeviceId) -> serde_json::Value {
    json!({"recipient_device": device, "message_type": 1, "ciphertext": "AAEC"})
}

fn bytes(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

#[test]
fn frames_have_the_documented_json_shape() {
    let ack = ClientFrame::Ack {
        envelope_ids: vec![EnvelopeId(3), EnvelopeId(4)],
    };
    assert_eq!(
        serde_json::to_value(&ack).unwrap(),
        json!({"type": "ack", "envelope_ids": [3, 4]})
    );
    assert_eq!(
        serde_json::to_value(ClientFrame::Ping).unwrap(),
        json!({"type": "ping"})
    );
    assert_eq!(
        decode_client_frame(br#"{"type":"ping"}"#).unwrap(),
        ClientFrame::Ping
    );
    assert_eq!(decode_client_frame(&wire::encode(&ack)).unwrap(), ack);

    let (account, device) = (AccountId::random(), DeviceId::random());
    let delivered = DeliveredEnvelope {
        id: EnvelopeId(7),
        sender_account: account,
        sender_device: device,
        server_ts: Timestamp(1_700_000_000_000),
        message_type: OlmMessageType::PreKey,
        ciphertext: Ciphertext::from_bytes(vec![1, 2, 3]).unwrap(),
        business: None,
    };
    let frame = ServerFrame::Envelope(delivered);
    assert_eq!(
        serde_json::to_value(&frame).unwrap(),
        json!({"type": "envelope", "id": 7, "sender_account": account, "sender_device": device,
               "server_ts": 1_700_000_000_000i64, "message_type": 0, "ciphertext": "AQID"})
    );
    let receipt = ServerFrame::Receipt {
        id: EnvelopeId(9),
        client_message_id: ClientMessageId::parse("m-1").unwrap(),
        recipient_device: device,
        delivered_at: Timestamp(5),
    };
    let err = ServerFrame::from_wire_error(&WireError::DuplicateRecipient);
    assert_eq!(
        serde_json::to_value(&err).unwrap(),
        json!({"type": "error", "code": "duplicate_recipient",
               "message": "two envelopes are addressed to the same device"})
    );
    let business = ServerFrame::Envelope(DeliveredEnvelope {
        id: EnvelopeId(8),
        sender_account: account,
        sender_device: device,
        server_ts: Timestamp(2),
        message_type: OlmMessageType::Normal,
        ciphertext: Ciphertext::from_bytes(vec![4]).unwrap(),
        business: Some(accord_e2e::BusinessMeta {
            category: accord_domain::business::Category::Utility,
            template: Some(accord_e2e::TemplateRef {
                name: "order_receipt".into(),
                language: "en".into(),
                version: 2,
            }),
        }),
    });
    assert_eq!(
        serde_json::to_value(&business).unwrap()["business"],
        json!({"category": "utility", "template": {"name": "order_receipt", "language": "en", "version": 2}})
    );
    let mut odd = serde_json::to_value(&business).unwrap();
    odd["business"]["extra"] = json!(1);
    assert!(decode_server_frame(odd.to_string().as_bytes()).is_err());
    for f in [frame, business, receipt, ServerFrame::Pong, err] {
        assert_eq!(decode_server_frame(&wire::encode(&f)).unwrap(), f);
    }
}

#[test]
fn unknown_fields_and_unknown_frame_types_are_refused() {
    let d = DeviceId::random();
    let mut e = envelope_json(d);
    e["extra"] = json!(1);
    assert_eq!(
        decode_envelope(&bytes(&e)).unwrap_err().code(),
        "invalid_field"
    );
    let req = json!({"client_message_id": "m", "envelopes": [envelope_json(d)], "x": true});
    assert_eq!(
        decode_send_request(&bytes(&req)).unwrap_err().code(),
        "invalid_field"
    );
    let req = json!({"client_message_id": "m", "envelopes": [e]});
    assert_eq!(
        decode_send_request(&bytes(&req)).unwrap_err().code(),
        "invalid_field"
    );
    for frame in [
        json!({"type": "ping", "extra": 1}),
        json!({"type": "ack", "envelope_ids": [1], "extra": 1}),
        json!({"type": "subscribe"}),
        json!({"envelope_ids": [1]}),
        json!({"type": "ack"}),
    ] {
        let err = decode_client_frame(&bytes(&frame)).unwrap_err();
        assert_eq!(err.code(), "invalid_field", "{frame}");
    }
    // serde would take a struct as an array of its fields, and a tagged
    // enum as an array led by its tag; strict decoding takes objects only.
    let as_array = json!([d, 1, "AA"]);
    assert_eq!(
        decode_envelope(&bytes(&as_array)).unwrap_err().code(),
        "invalid_field"
    );
    let req = json!({"client_message_id": "m", "envelopes": [as_array]});
    assert_eq!(
        decode_send_request(&bytes(&req)).unwrap_err().code(),
        "invalid_field"
    );
    assert_eq!(
        decode_send_request(&bytes(&json!(["m", []])))
            .unwrap_err()
            .code(),
        "invalid_field"
    );
    assert_eq!(
        decode_client_frame(br#"["ping"]"#).unwrap_err().code(),
        "invalid_field"
    );
    assert_eq!(
        decode_server_frame(br#"["pong"]"#).unwrap_err().code(),
        "invalid_field"
    );
    let pong = json!({"type": "pong", "extra": 1});
    assert_eq!(
        decode_server_frame(&bytes(&pong)).unwrap_err().code(),
        "invalid_field"
    );
    let env = json!({"type": "envelope", "id": 1, "sender_account": AccountId::random(),
        "sender_device": d, "server_ts": 1, "message_type": 1, "ciphertext": "AA", "x": 1});
    assert_eq!(
        decode_server_frame(&bytes(&env)).unwrap_err().code(),
        "invalid_field"
    );
}

#[test]
fn bad_values_get_clear_codes() {
    let d = DeviceId::random();
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            json!({"recipient_device": d, "message_type": 2, "ciphertext": "AA"}),
            "invalid_field",
        ),
        (
            json!({"recipient_device": d, "message_type": 0, "ciphertext": "!!"}),
            "invalid_field",
        ),
        (
            json!({"recipient_device": d, "message_type": 0, "ciphertext": ""}),
            "invalid_field",
        ),
        (
            json!({"recipient_device": "nope", "message_type": 0, "ciphertext": "AA"}),
            "invalid_field",
        ),
        (
            json!({"recipient_device": d, "message_type": "0", "ciphertext": "AA"}),
            "invalid_field",
        ),
    ];
    for (v, code) in cases {
        assert_eq!(decode_envelope(&bytes(&v)).unwrap_err().code(), code, "{v}");
    }
    assert_eq!(decode_envelope(b"").unwrap_err().code(), "empty_body");
    assert_eq!(decode_envelope(b"  \n").unwrap_err().code(), "empty_body");
    assert_eq!(
        decode_envelope(b"{\"recipient_device\":")
            .unwrap_err()
            .code(),
        "invalid_json"
    );
    assert_eq!(
        decode_envelope(b"{\"recipient_device\" 1}")
            .unwrap_err()
            .code(),
        "invalid_json"
    );
    assert_eq!(decode_envelope(b"{,}").unwrap_err().code(), "invalid_json");
    let mut trailing = bytes(&envelope_json(d));
    trailing.extend_from_slice(b" trailing");
    assert_eq!(
        decode_envelope(&trailing).unwrap_err().code(),
        "invalid_json"
    );
    assert_eq!(decode_envelope(b"{}").unwrap_err().code(), "invalid_field");

    // A ciphertext over the cap is refused by size, before any allocation
    // of the decoded bytes.
    let big = vodozemac::base64_encode(vec![0u8; MAX_ENVELOPE_BYTES + 1]);
    let v = json!({"recipient_device": d, "message_type": 0, "ciphertext": big});
    let err = decode_envelope(&bytes(&v)).unwrap_err();
    assert_eq!(
        err,
        WireError::CiphertextTooLarge {
            limit: MAX_ENVELOPE_BYTES
        }
    );
    assert_eq!(err.code(), "ciphertext_too_large");
    let req = json!({"client_message_id": "m", "envelopes": [v]});
    assert_eq!(
        decode_send_request(&bytes(&req)).unwrap_err().code(),
        "ciphertext_too_large"
    );
    let exact = vodozemac::base64_encode(vec![0u8; MAX_ENVELOPE_BYTES]);
    let v = json!({"recipient_device": d, "message_type": 0, "ciphertext": exact});
    assert_eq!(
        decode_envelope(&bytes(&v)).unwrap().ciphertext.len(),
        MAX_ENVELOPE_BYTES
    );
    let huge = vec![b' '; MAX_SEND_REQUEST_BYTES + 1];
    assert!(matches!(
        decode_send_request(&huge),
        Err(WireError::TooLarge { .. }) | Err(WireError::Empty)
    ));
    let mut huge = b"{".to_vec();
    huge.resize(MAX_SEND_REQUEST_BYTES + 1, b' ');
    assert_eq!(
        decode_send_request(&huge).unwrap_err().code(),
        "payload_too_large"
    );

    // Keys that are not keys.
    let dk = json!({"device_id": d, "curve25519": "AAAA", "ed25519": "AAAA", "signature": "AAAA"});
    assert_eq!(
        decode_device_keys(&bytes(&dk)).unwrap_err().code(),
        "invalid_field"
    );
    let otk = json!({"key_id": "a b", "key": "AAAA", "signature": "AAAA", "fallback": false});
    assert_eq!(
        decode_one_time_key(&bytes(&otk)).unwrap_err().code(),
        "invalid_field"
    );
    // Client message ids.
    for bad in [
        "",
        "has space",
        "ü",
        &"x".repeat(MAX_CLIENT_MESSAGE_ID_LEN + 1),
    ] {
        assert!(ClientMessageId::parse(bad).is_err(), "{bad:?}");
    }
    ClientMessageId::parse("2024-01-01T00:00:00.123_a").unwrap();
}

#[test]
fn send_requests_and_acks_respect_their_list_rules() {
    let d = DeviceId::random();
    let req = |envs: Vec<serde_json::Value>| json!({"client_message_id": "m-1", "envelopes": envs});

    let ok = decode_send_request(&bytes(&req(vec![envelope_json(d)]))).unwrap();
    assert_eq!(ok.client_message_id().as_str(), "m-1");
    assert_eq!(ok.envelopes().len(), 1);

    let err = decode_send_request(&bytes(&req(vec![]))).unwrap_err();
    assert_eq!(err, WireError::EmptyList { field: "envelopes" });
    let err =
        decode_send_request(&bytes(&req(vec![envelope_json(d), envelope_json(d)]))).unwrap_err();
    assert_eq!(err.code(), "duplicate_recipient");
    let many: Vec<_> = (0..=MAX_ENVELOPES)
        .map(|_| envelope_json(DeviceId::random()))
        .collect();
    let err = decode_send_request(&bytes(&req(many))).unwrap_err();
    assert_eq!(err.code(), "too_many_items");
    let max: Vec<_> = (0..MAX_ENVELOPES)
        .map(|_| envelope_json(DeviceId::random()))
        .collect();
    assert_eq!(
        decode_send_request(&bytes(&req(max)))
            .unwrap()
            .envelopes()
            .len(),
        MAX_ENVELOPES
    );

    // Deserialising a SendRequest through plain serde applies the same rules.
    let via_serde: Result<SendRequest, _> = serde_json::from_value(req(vec![]));
    assert!(via_serde.is_err());

    let ack = |ids: Vec<u64>| json!({"type": "ack", "envelope_ids": ids});
    assert_eq!(
        decode_client_frame(&bytes(&ack(vec![])))
            .unwrap_err()
            .code(),
        "empty_list"
    );
    assert_eq!(
        decode_client_frame(&bytes(&ack(vec![1, 1])))
            .unwrap_err()
            .code(),
        "duplicate_item"
    );
    let too_many: Vec<u64> = (0..=MAX_ACK_IDS as u64).collect();
    assert_eq!(
        decode_client_frame(&bytes(&ack(too_many)))
            .unwrap_err()
            .code(),
        "too_many_items"
    );
    assert_eq!(
        decode_client_frame(&bytes(&ack(vec![u64::MAX]))).unwrap(),
        ClientFrame::Ack {
            envelope_ids: vec![EnvelopeId(u64::MAX)]
        }
    );

    // One-time key uploads: distinct ids, capped.
    let mut m = accord_e2e::E2eMachine::new(d);
    let keys = m.generate_one_time_keys(3);
    let mut dup = keys.clone();
    dup.push(keys[0].clone());
    assert_eq!(
        decode_one_time_keys(&wire::encode(&dup))
            .unwrap_err()
            .code(),
        "duplicate_item"
    );
    assert_eq!(
        decode_one_time_keys(b"[]").unwrap_err().code(),
        "empty_list"
    );
    assert_eq!(decode_one_time_keys(&wire::encode(&keys)).unwrap(), keys);
}

#[test]
fn error_frames_are_checked() {
    assert!(ServerFrame::error("bad_signature", "no").is_ok());
    assert!(ServerFrame::error("Bad Code", "no").is_err());
    assert!(ServerFrame::error("x", "y".repeat(MAX_ERROR_MESSAGE_LEN + 1)).is_err());
    let v = json!({"type": "error", "code": "", "message": ""});
    assert_eq!(
        decode_server_frame(&bytes(&v)).unwrap_err().code(),
        "invalid_field"
    );
}

#[test]
fn error_details_are_short_and_printable() {
    let long_field = format!("{{\"{}\":1}}", "\u{7}x".repeat(5_000));
    let err = decode_envelope(long_field.as_bytes()).unwrap_err();
    let text = err.to_string();
    assert!(text.chars().count() < 300, "{}", text.len());
    assert!(!text.chars().any(|c| c.is_control()));
}
