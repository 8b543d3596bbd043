use crate::helpers::{phone, spawn_app};
use accord_crypto::oprf::{blind, input_for_phone, OprfPurpose};
use accord_domain::time::HOUR_MS;
use accord_keyd::{Oprf, OprfClientError};
use reqwest::StatusCode;
use serde_json::json;

/// A device with the default contacts quota (1,000 per rolling day) tries
/// to enumerate numbers: the first 1,000 pass, then nothing, until the
/// window moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_stops_an_enumeration_attempt() {
    let app = spawn_app().await;
    let (device, token) = app.create_client("device", json!({})).await;
    let phones: Vec<_> = (0..1_000).map(phone).collect();

    let oprf = app.oprf(&token);
    let got = oprf
        .phone_pseudonyms(OprfPurpose::Contacts, None, &phones)
        .await
        .unwrap();
    assert_eq!(got.len(), 1_000);
    assert_eq!(
        app.audit(device).await,
        vec![("contacts".into(), "2027-01-15".into(), 1_000)]
    );

    // The next batch of one: 429 with Retry-After, nothing evaluated.
    let (_, element) = blind(&input_for_phone(&phone(1_000))).unwrap();
    let r = app
        .evaluate(
            Some(&token),
            "contacts",
            json!({ "elements": [element.to_base64()] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(r.code(), "quota_exceeded");
    assert!(r.body.get("elements").is_none());
    // T0 is 10:30; the 1,000 were charged in the 10:00 usage hour, which
    // leaves the window at 10:00 the next day: 23.5 hours from now.
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(retry, 23 * 3600 + 1800);
    assert_eq!(r.body["details"]["retry_after_s"], retry);
    assert_eq!(r.body["details"]["used"], 1_000);
    // Through the client library: the same answer, as a typed error.
    let err = oprf
        .phone_pseudonyms(OprfPurpose::Contacts, None, &[phone(1_001)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, OprfClientError::QuotaExceeded { retry_after_s } if retry_after_s == retry),
        "{err:?}"
    );
    // Nothing was charged by the refusals.
    assert_eq!(
        app.audit(device).await,
        vec![("contacts".into(), "2027-01-15".into(), 1_000)]
    );

    // Still closed a second before the window moves, open after 24 h.
    app.clock.advance_millis(retry as i64 * 1_000 - 1_000);
    let r = app
        .evaluate(
            Some(&token),
            "contacts",
            json!({ "elements": [element.to_base64()] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers["retry-after"], "1");
    app.clock.advance_millis(HOUR_MS / 2 + 1_000);
    let r = app
        .evaluate(
            Some(&token),
            "contacts",
            json!({ "elements": [element.to_base64()] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["elements"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.audit(device).await,
        vec![
            ("contacts".into(), "2027-01-15".into(), 1_000),
            ("contacts".into(), "2027-01-16".into(), 1)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_are_per_purpose_and_can_be_changed_by_the_operator() {
    let app = spawn_app().await;
    let (id, token) = app
        .create_client("business", json!({ "coordination": 5 }))
        .await;
    let phones: Vec<_> = (0..5).map(phone).collect();
    let oprf = app.oprf(&token);
    oprf.phone_pseudonyms(OprfPurpose::Coordination, None, &phones)
        .await
        .unwrap();
    assert!(oprf
        .phone_pseudonyms(OprfPurpose::Coordination, None, &phones[..1])
        .await
        .is_err());
    // A business has no contacts quota by default.
    let err = oprf
        .phone_pseudonyms(OprfPurpose::Contacts, None, &phones[..1])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OprfClientError::Rejected { status: 403, code, .. } if code == "purpose_not_allowed"),
        "{err:?}"
    );

    let r = app
        .admin(
            reqwest::Method::PUT,
            &format!("/v1/admin/clients/{id}/quotas/coordination"),
            Some(json!({ "daily": 6 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["quotas"]["coordination"], 6);
    oprf.phone_pseudonyms(OprfPurpose::Coordination, None, &phones[..1])
        .await
        .unwrap();
    assert!(oprf
        .phone_pseudonyms(OprfPurpose::Coordination, None, &phones[..1])
        .await
        .is_err());
    assert_eq!(
        app.audit(id).await,
        vec![("coordination".into(), "2027-01-15".into(), 6)]
    );
}
