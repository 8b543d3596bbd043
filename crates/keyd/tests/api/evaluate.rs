use crate::helpers::{phone, spawn_app};
use accord_crypto::oprf::{evaluate_full, input_for_phone, KeyVersion, OprfPurpose, MAX_BATCH};
use accord_keyd::{ClientKind, InProcessOprf, Oprf, OprfClientError};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blinded_round_trip_over_http_equals_server_side_evaluation() {
    let app = spawn_app().await;
    let (client, token) = app
        .create_client("partner", json!({ "coordination": 100 }))
        .await;
    let phones: Vec<_> = (0..20).map(phone).collect();

    let got = app
        .oprf(&token)
        .phone_pseudonyms(OprfPurpose::Coordination, None, &phones)
        .await
        .unwrap();

    let key = app
        .secret_key(OprfPurpose::Coordination, KeyVersion(1))
        .await;
    assert_eq!(got.len(), phones.len());
    for (p, ps) in phones.iter().zip(&got) {
        let direct = evaluate_full(&key, &input_for_phone(p)).unwrap();
        assert_eq!(ps.as_bytes(), &direct.pseudonym32());
        assert_eq!(ps.key_version(), KeyVersion(1));
    }
    // Purposes have separate keys.
    let contacts = app.secret_key(OprfPurpose::Contacts, KeyVersion(1)).await;
    assert_ne!(
        got[0].as_bytes(),
        &evaluate_full(&contacts, &input_for_phone(&phones[0]))
            .unwrap()
            .pseudonym32()
    );
    // Debug shows the version only.
    assert_eq!(format!("{:?}", got[0]), "Pseudonym(v1, <redacted>)");
    // The audit log counted the 20 elements, and nothing else.
    assert_eq!(
        app.audit(client).await,
        vec![("coordination".into(), "2027-01-15".into(), 20)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_oprf_takes_the_same_path_and_the_same_quota() {
    let app = spawn_app().await;
    let (_, token) = app
        .create_client("partner", json!({ "coordination": 100 }))
        .await;
    let (local, _) = app
        .service
        .create_client(
            "messenger in process",
            ClientKind::Messenger,
            &BTreeMap::from([(OprfPurpose::Coordination, 12), (OprfPurpose::Contacts, 0)]),
        )
        .await
        .unwrap();
    let in_process = InProcessOprf::new(app.service.clone(), local.id);
    let phones: Vec<_> = (100..110).map(phone).collect();

    let over_http = app
        .oprf(&token)
        .phone_pseudonyms(OprfPurpose::Coordination, None, &phones)
        .await
        .unwrap();
    let local_ps = in_process
        .phone_pseudonyms(OprfPurpose::Coordination, None, &phones)
        .await
        .unwrap();
    assert_eq!(over_http, local_ps);

    // 10 of 12 used: 3 more are refused, uncharged; 2 pass.
    let err = in_process
        .phone_pseudonyms(OprfPurpose::Coordination, None, &phones[..3])
        .await
        .unwrap_err();
    assert!(
        matches!(err, OprfClientError::QuotaExceeded { retry_after_s } if retry_after_s > 0),
        "{err:?}"
    );
    in_process
        .phone_pseudonyms(OprfPurpose::Coordination, None, &phones[..2])
        .await
        .unwrap();
    assert_eq!(
        app.audit(local.id).await,
        vec![("coordination".into(), "2027-01-15".into(), 12)]
    );
    // A purpose whose quota is 0 is refused.
    let err = in_process
        .phone_pseudonyms(OprfPurpose::Contacts, Some(KeyVersion(1)), &phones[..1])
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            OprfClientError::Service(e) if matches!(
                e.downcast_ref::<accord_keyd::KeydError>(),
                Some(accord_keyd::KeydError::PurposeNotAllowed { .. })
            )
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_lists_go_in_chunks_of_max_batch_and_stay_in_order() {
    let app = spawn_app().await;
    let (client, token) = app
        .create_client("business", json!({ "coordination": 20_000 }))
        .await;
    let n = MAX_BATCH + 500;
    let inputs: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("email:user{i}@example.com").into_bytes())
        .collect();

    let got = app
        .oprf(&token)
        .pseudonyms(OprfPurpose::Coordination, None, &inputs)
        .await
        .unwrap();

    assert_eq!(got.len(), n);
    assert_eq!(
        got.iter()
            .map(|p| *p.as_bytes())
            .collect::<HashSet<_>>()
            .len(),
        n
    );
    let key = app
        .secret_key(OprfPurpose::Coordination, KeyVersion(1))
        .await;
    for i in [0, 1, 4_999, 5_000, MAX_BATCH - 1, MAX_BATCH, n - 1] {
        assert_eq!(
            got[i].as_bytes(),
            &evaluate_full(&key, &inputs[i]).unwrap().pseudonym32(),
            "input {i}"
        );
    }
    assert_eq!(
        app.audit(client).await,
        vec![("coordination".into(), "2027-01-15".into(), n as u64)]
    );
    // An empty input is refused before anything is sent, naming its index.
    let mut bad = inputs[..3].to_vec();
    bad[2].clear();
    let err = app
        .oprf(&token)
        .pseudonyms(OprfPurpose::Coordination, None, &bad)
        .await
        .unwrap_err();
    assert!(
        matches!(err, OprfClientError::InvalidInput { index: 2 }),
        "{err:?}"
    );
    assert_eq!(app.audit(client).await[0].2, n as u64);
}
