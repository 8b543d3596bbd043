//! One conformance suite, run on every backend: SQLite always, PostgreSQL
//! on 127.0.0.1:5432 (or `ACCORD_TEST_POSTGRES_URL`) in a fresh database
//! that is dropped afterwards. Set `ACCORD_SKIP_POSTGRES=1` to skip the
//! PostgreSQL half on a machine without it; CI never sets it.

mod common;

use accord_crypto::token::TokenHash;
use accord_domain::consent::{ConsentCommand, ConsentState, SharingChoice};
use accord_domain::ledger::{ChainVerifier, LedgerRecord};
use accord_domain::policy::{ConsentProfile, PolicyDraft, Purpose};
use accord_domain::{AccountId, DeviceId, DeviceInfo, PhoneNumber, PseudonymId, Timestamp};
use accord_storage::{
    AttemptClaim, CodeRequest, MessengerStore, NewDevice, PendingVerification, RequestCounts,
    SqlMessengerStore, StoreError,
};
use std::future::Future;
use std::sync::Arc;

const T0: Timestamp = Timestamp(1_800_000_000_000);

/// Runs `body` against a fresh store on each backend.
async fn on_each_backend<F, Fut>(body: F)
where
    F: Fn(Arc<dyn MessengerStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    for t in common::backends("messenger").await {
        body(Arc::new(
            SqlMessengerStore::new(t.db.clone()).await.unwrap(),
        ))
        .await;
        t.finish().await;
    }
}

fn phone(n: u32) -> PhoneNumber {
    PhoneNumber::parse(&format!("+62812{n:07}"), None).unwrap()
}

fn device(token: &str) -> NewDevice {
    NewDevice {
        id: DeviceId::random(),
        info: DeviceInfo {
            os: "android".into(),
            os_version: "15".into(),
            model: "Pixel 8".into(),
            app_version: "1.0".into(),
            locale: "id-ID".into(),
            carrier: Some("51010".into()),
        },
        token_hash: TokenHash::of(token),
        at: T0,
    }
}

async fn register(store: &dyn MessengerStore, n: u32, token: &str) -> AccountId {
    let policies = store.policies().await.unwrap();
    let id = AccountId::random();
    let accept = policies
        .current_at(T0)
        .map(|p| (p.version, SharingChoice::default()));
    let events = ConsentState::default()
        .decide(&ConsentCommand::Register { accept }, &policies, T0)
        .unwrap();
    let state = ConsentState::from_events(&events);
    let records: Vec<_> = events
        .into_iter()
        .map(|e| LedgerRecord::consent(id, e))
        .collect();
    store
        .create_account(id, &phone(n), &state, &device(token), &records)
        .await
        .unwrap();
    id
}

/// Walks every shard's chain; the total number of entries.
async fn verify_chain(store: &dyn MessengerStore) -> u64 {
    let mut total = 0;
    for (shard, count, hash) in store.ledger_heads().await.unwrap() {
        let mut v = ChainVerifier::default();
        let mut after = 0;
        loop {
            let page = store.ledger_page(shard, after, 7).await.unwrap();
            if page.is_empty() {
                break;
            }
            for e in &page {
                v.feed(e).unwrap();
                after = e.seq;
            }
        }
        total += v.finish(Some((count, hash))).unwrap().entries;
    }
    total
}

async fn entry_count(store: &dyn MessengerStore) -> u64 {
    store
        .ledger_heads()
        .await
        .unwrap()
        .iter()
        .map(|h| h.1)
        .sum()
}

#[tokio::test]
async fn policies_are_versioned_and_ledgered() {
    on_each_backend(|s| async move {
        assert!(s.policies().await.unwrap().latest().is_none());
        let p1 = s
            .publish_policy(
                PolicyDraft::new("one", Purpose::ALL, ConsentProfile::Strict).unwrap(),
                T0,
            )
            .await
            .unwrap();
        let p2 = s
            .publish_policy(
                PolicyDraft::new("two", [Purpose::Ads], ConsentProfile::Whatsapp2016).unwrap(),
                T0.plus_days(1),
            )
            .await
            .unwrap();
        assert_eq!((p1.version, p2.version), (1, 2));
        let h = s.policies().await.unwrap();
        assert_eq!(h.versions().len(), 2);
        assert_eq!(h.get(2).unwrap(), &p2);
        assert_eq!(h.current_at(T0).unwrap().version, 1);
        assert_eq!(verify_chain(&*s).await, 2);
    })
    .await;
}

#[tokio::test]
async fn accounts_devices_and_tokens() {
    on_each_backend(|s| async move {
        s.publish_policy(
            PolicyDraft::new("one", Purpose::ALL, ConsentProfile::Strict).unwrap(),
            T0,
        )
        .await
        .unwrap();
        let a = register(&*s, 1, "tok-a").await;
        let head = s.ledger_heads().await.unwrap();

        // A second account with the same number is refused and leaves no trace.
        let dup = s
            .create_account(
                AccountId::random(),
                &phone(1),
                &ConsentState::default(),
                &device("tok-x"),
                &[LedgerRecord::consent(
                    AccountId::random(),
                    accord_domain::ConsentEvent::Registered { at: T0 },
                )],
            )
            .await;
        assert!(matches!(dup, Err(StoreError::Conflict("phone"))), "{dup:?}");
        assert_eq!(s.ledger_heads().await.unwrap(), head);
        assert!(s
            .authenticate(&TokenHash::of("tok-x"), T0)
            .await
            .unwrap()
            .is_none());

        let acct = s.account_by_phone(&phone(1)).await.unwrap().unwrap();
        assert_eq!(acct.id, a);
        assert_eq!(acct.consent.accepted_version(), Some(1));
        s.add_device(a, &device("tok-b")).await.unwrap();
        assert_eq!(s.devices(a).await.unwrap().len(), 2);
        assert_eq!(
            s.authenticate(&TokenHash::of("tok-b"), T0)
                .await
                .unwrap()
                .unwrap()
                .0,
            a
        );
        assert!(s
            .authenticate(&TokenHash::of("tok-c"), T0)
            .await
            .unwrap()
            .is_none());
        assert!(matches!(
            s.add_device(AccountId::random(), &device("tok-d")).await,
            Err(StoreError::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn consent_changes_are_atomic_with_the_ledger() {
    on_each_backend(|s| async move {
        s.publish_policy(
            PolicyDraft::new("one", Purpose::ALL, ConsentProfile::Strict).unwrap(),
            T0,
        )
        .await
        .unwrap();
        let a = register(&*s, 2, "tok").await;
        let acct = s.account(a).await.unwrap().unwrap();
        let policies = s.policies().await.unwrap();
        let cmd = ConsentCommand::Grant {
            purpose: Purpose::Ads,
            channel: accord_domain::consent::ConsentChannel::PrivacyCentre,
        };
        let events = acct.consent.decide(&cmd, &policies, T0).unwrap();
        let mut next = acct.consent.clone();
        events.iter().for_each(|e| next.apply(e));
        let records: Vec<_> = events
            .into_iter()
            .map(|e| LedgerRecord::consent(a, e))
            .collect();
        s.record_consent(a, acct.consent_rev, &next, &records)
            .await
            .unwrap();
        let head = s.ledger_heads().await.unwrap();
        // A stale revision is refused and appends nothing.
        let stale = s.record_consent(a, acct.consent_rev, &next, &records).await;
        assert!(matches!(stale, Err(StoreError::Conflict("consent_rev"))));
        assert_eq!(s.ledger_heads().await.unwrap(), head);
        let stored = s.account(a).await.unwrap().unwrap();
        assert_eq!(stored.consent, next);
        assert!(stored.consent.is_granted(Purpose::Ads, &policies, T0));
        // The ledger alone gives back the same state.
        let entries = s.ledger_for_account(a).await.unwrap();
        assert_eq!(
            accord_domain::ledger::consent_state_at(entries.iter().map(|(_, e)| e), a, T0),
            next
        );
    })
    .await;
}

#[tokio::test]
async fn deletion_erases_and_leaves_a_ledger_entry() {
    on_each_backend(|s| async move {
        let a = register(&*s, 3, "tok").await;
        let acct = s.account(a).await.unwrap().unwrap();
        let device = s.devices(a).await.unwrap()[0].id;
        assert!(s.pending_revocations(10).await.unwrap().is_empty());
        let rec = LedgerRecord::consent(
            a,
            accord_domain::ConsentEvent::AccountDeleted {
                at: T0.plus_days(1),
            },
        );
        s.delete_account(a, acct.consent_rev, &rec).await.unwrap();
        // Its device's key-service credential is queued for revocation
        // in the same transaction, until the revocation is confirmed.
        assert_eq!(s.pending_revocations(10).await.unwrap(), vec![(device, a)]);
        s.revocation_done(device).await.unwrap();
        assert!(s.pending_revocations(10).await.unwrap().is_empty());
        assert!(s.account(a).await.unwrap().is_none());
        assert!(s.account_by_phone(&phone(3)).await.unwrap().is_none());
        assert!(s.devices(a).await.unwrap().is_empty());
        assert!(s
            .authenticate(&TokenHash::of("tok"), T0)
            .await
            .unwrap()
            .is_none());
        let entries = s.ledger_for_account(a).await.unwrap();
        assert_eq!(entries.last().unwrap().1.kind, "account_deleted");
        // The number can register again, as a new account.
        let b = register(&*s, 3, "tok2").await;
        assert_ne!(a, b);
        assert_eq!(verify_chain(&*s).await, 3);
    })
    .await;
}

#[tokio::test]
async fn verifications_count_attempts_before_comparing_and_are_used_once() {
    on_each_backend(|s| async move {
        let v = PendingVerification {
            id: uuid::Uuid::new_v4(),
            phone: phone(4),
            salt: vec![1; 16],
            code_digest: vec![2; 32],
            created_at: T0,
            expires_at: T0.plus_millis(600_000),
            attempts: 0,
        };
        s.put_verification(&v).await.unwrap();
        assert_eq!(s.verification(v.id).await.unwrap().unwrap(), v);
        for n in 1..=3 {
            match s.claim_attempt(v.id, T0, 3).await.unwrap() {
                AttemptClaim::Counted(c) => assert_eq!(c.attempts, n),
                other => panic!("attempt {n}: {other:?}"),
            }
        }
        assert_eq!(
            s.claim_attempt(v.id, T0, 3).await.unwrap(),
            AttemptClaim::Exhausted
        );
        // Expired: gone, whatever the count.
        let w = PendingVerification {
            id: uuid::Uuid::new_v4(),
            ..v.clone()
        };
        s.put_verification(&w).await.unwrap();
        assert_eq!(
            s.claim_attempt(w.id, T0.plus_millis(600_000), 3)
                .await
                .unwrap(),
            AttemptClaim::Gone
        );
        // Used once: only the first consumer gets it.
        assert!(s.consume_verification(w.id).await.unwrap());
        assert!(!s.consume_verification(w.id).await.unwrap());
        assert_eq!(
            s.claim_attempt(w.id, T0, 3).await.unwrap(),
            AttemptClaim::Gone
        );
        assert_eq!(s.purge_verifications(T0, T0).await.unwrap(), 0);
        assert_eq!(
            s.purge_verifications(T0.plus_millis(600_000), T0)
                .await
                .unwrap(),
            1
        );
        assert!(s.verification(v.id).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn concurrent_attempts_never_exceed_the_limit() {
    on_each_backend(|s| async move {
        let v = PendingVerification {
            id: uuid::Uuid::new_v4(),
            phone: phone(7),
            salt: vec![1; 16],
            code_digest: vec![2; 32],
            created_at: T0,
            expires_at: T0.plus_millis(600_000),
            attempts: 0,
        };
        s.put_verification(&v).await.unwrap();
        let tries = (0..40).map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.claim_attempt(v.id, T0, 5).await.unwrap() })
        });
        let mut counted = 0;
        for t in tries {
            if matches!(t.await.unwrap(), AttemptClaim::Counted(_)) {
                counted += 1;
            }
        }
        assert_eq!(counted, 5);
        let consumers = (0..10).map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.consume_verification(v.id).await.unwrap() })
        });
        let mut won = 0;
        for c in consumers {
            won += usize::from(c.await.unwrap());
        }
        assert_eq!(won, 1);
    })
    .await;
}

#[tokio::test]
async fn code_requests_are_counted_by_number_client_prefix_and_in_all() {
    on_each_backend(|s| async move {
        let hour_ago = |t: Timestamp| t.plus_millis(-3_600_000);
        let p5 = phone(5);
        let mut last = RequestCounts::default();
        for i in 0..3 {
            let t = T0.plus_millis(i * 60_000);
            last = s
                .record_code_request(
                    &CodeRequest {
                        phone: &p5,
                        client: Some("198.51.100.7"),
                        prefix: "+62-812",
                        at: t,
                    },
                    hour_ago(t),
                )
                .await
                .unwrap();
            assert_eq!(last.number, i as u32 + 1);
        }
        assert_eq!(
            last,
            RequestCounts {
                number: 3,
                client: 3,
                prefix: 3,
                all: 3
            }
        );
        // Purging expired verifications leaves the requests of the last hour.
        let later = T0.plus_millis(30 * 60_000);
        s.purge_verifications(later, hour_ago(later)).await.unwrap();
        // Another number from the same client and prefix; unknown client.
        let p6 = phone(6);
        let c = s
            .record_code_request(
                &CodeRequest {
                    phone: &p6,
                    client: Some("198.51.100.7"),
                    prefix: "+62-812",
                    at: later,
                },
                hour_ago(later),
            )
            .await
            .unwrap();
        assert_eq!(
            c,
            RequestCounts {
                number: 1,
                client: 4,
                prefix: 4,
                all: 4
            }
        );
        let c = s
            .record_code_request(
                &CodeRequest {
                    phone: &p6,
                    client: None,
                    prefix: "+49-30",
                    at: later,
                },
                hour_ago(later),
            )
            .await
            .unwrap();
        assert_eq!(
            c,
            RequestCounts {
                number: 2,
                client: 0,
                prefix: 1,
                all: 5
            }
        );
        // Two hours on, the window has moved on.
        let much_later = T0.plus_millis(2 * 3_600_000);
        s.purge_verifications(much_later, hour_ago(much_later))
            .await
            .unwrap();
        let c = s
            .record_code_request(
                &CodeRequest {
                    phone: &p5,
                    client: Some("198.51.100.7"),
                    prefix: "+62-812",
                    at: much_later,
                },
                hour_ago(much_later),
            )
            .await
            .unwrap();
        assert_eq!(
            c,
            RequestCounts {
                number: 1,
                client: 1,
                prefix: 1,
                all: 1
            }
        );
    })
    .await;
}

#[tokio::test]
async fn pseudonyms_by_bucket_version_and_account() {
    use accord_crypto::oprf::{KeyVersion, OprfPurpose};
    on_each_backend(|s| async move {
        let a = register(&*s, 7, "ta").await;
        let b = register(&*s, 8, "tb").await;
        let (c, v1, v2) = (OprfPurpose::Contacts, KeyVersion(1), KeyVersion(2));
        let missing = s.accounts_missing_pseudonym(c, v1, 10).await.unwrap();
        assert_eq!(missing.len(), 2);
        assert!(missing.iter().any(|(id, p)| *id == a && *p == phone(7)));
        let pa = PseudonymId::from_bytes([0xab; 32]);
        let mut pb = [0xab; 32];
        pb[31] = 1;
        let pb = PseudonymId::from_bytes(pb);
        s.put_pseudonym(a, c, v1, &pa).await.unwrap();
        s.put_pseudonym(b, c, v1, &pb).await.unwrap();
        s.put_pseudonym(a, c, v1, &pa).await.unwrap(); // idempotent
        assert!(s
            .accounts_missing_pseudonym(c, v1, 10)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            s.accounts_missing_pseudonym(OprfPurpose::Coordination, v1, 10)
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            s.pseudonym_bucket(c, v1, 0xabab).await.unwrap(),
            vec![pb, pa],
            "sorted"
        );
        assert!(s.pseudonym_bucket(c, v1, 0xabac).await.unwrap().is_empty());
        assert!(s.pseudonym_bucket(c, v2, 0xabab).await.unwrap().is_empty());
        assert_eq!(s.pseudonym_of(a, c, v1).await.unwrap(), Some(pa));
        // Rotation: v2 computed, then v1 dropped.
        s.put_pseudonym(a, c, v2, &PseudonymId::from_bytes([1; 32]))
            .await
            .unwrap();
        assert_eq!(s.drop_other_pseudonym_versions(c, v2).await.unwrap(), 2);
        assert!(s.pseudonym_of(a, c, v1).await.unwrap().is_none());
        // Gone with the account; refused for an unknown one.
        let acct = s.account(a).await.unwrap().unwrap();
        let rec = LedgerRecord::consent(a, accord_domain::ConsentEvent::AccountDeleted { at: T0 });
        s.delete_account(a, acct.consent_rev, &rec).await.unwrap();
        assert!(s.pseudonym_of(a, c, v2).await.unwrap().is_none());
        assert!(matches!(
            s.put_pseudonym(a, c, v2, &PseudonymId::from_bytes([1; 32]))
                .await,
            Err(StoreError::NotFound(_))
        ));
        s.drop_pseudonyms(b).await.unwrap();
        assert_eq!(
            s.accounts_missing_pseudonym(c, v1, 10).await.unwrap().len(),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn the_feed_outbox_is_written_with_every_change_and_cleared_on_delivery() {
    use accord_crypto::oprf::KeyVersion;
    use accord_storage::PartnerHolding;
    on_each_backend(|s| async move {
        let a = register(&*s, 60, "t60").await;
        let due = s.feed_due(T0, 10).await.unwrap();
        assert_eq!(due.len(), 1, "registration queues feed work");
        assert_eq!(due[0].account, a);
        s.add_device(a, &device("t60b")).await.unwrap();
        let due = s.feed_due(T0, 10).await.unwrap();
        assert_eq!(due.len(), 1, "rows collapse per account");
        let upto = due[0].upto;
        // A failure postpones the account.
        s.feed_postpone(a, T0.plus_millis(5_000)).await.unwrap();
        assert!(s.feed_due(T0, 10).await.unwrap().is_empty());
        let due = s.feed_due(T0.plus_millis(5_000), 10).await.unwrap();
        assert_eq!(due[0].attempts, 1);
        let stats = s.feed_stats().await.unwrap();
        assert_eq!(
            (
                stats.pending_events,
                stats.pending_accounts,
                stats.failing_accounts
            ),
            (2, 1, 1)
        );
        // Delivery: holding, ledger and outbox in one go.
        let h = PartnerHolding {
            pseudonym: PseudonymId::from_bytes([9; 32]),
            key_version: KeyVersion(1),
            purposes: [Purpose::Ads].into_iter().collect(),
        };
        let head = entry_count(&*s).await;
        let rec = LedgerRecord {
            at: T0,
            account: Some(a),
            event: accord_domain::LedgerEvent::Propagated {
                recipient: "partner".into(),
                purposes: h.purposes.clone(),
                event_id: upto as u64,
                key_version: 1,
            },
        };
        s.feed_delivered(a, upto, Some(&h), &[rec], T0)
            .await
            .unwrap();
        assert_eq!(entry_count(&*s).await, head + 1);
        assert_eq!(s.partner_holding(a).await.unwrap(), Some(h.clone()));
        assert_eq!(s.partner_holdings(None, 10).await.unwrap(), vec![(a, h)]);
        assert_eq!(s.feed_stats().await.unwrap().pending_events, 0);
        // A deletion queues work and leaves the holding for the revocation.
        let acct = s.account(a).await.unwrap().unwrap();
        let del = LedgerRecord::consent(a, accord_domain::ConsentEvent::AccountDeleted { at: T0 });
        assert_eq!(
            s.feed_stats().await.unwrap().oldest_unconfirmed_deletion_at,
            None
        );
        s.delete_account(a, acct.consent_rev, &del).await.unwrap();
        assert_eq!(s.feed_due(T0, 10).await.unwrap().len(), 1);
        assert!(
            s.feed_stats()
                .await
                .unwrap()
                .oldest_unconfirmed_deletion_at
                .is_some(),
            "the deletion waits for the partner's confirmation"
        );
        assert!(s.partner_holding(a).await.unwrap().is_some());
        s.feed_delivered(a, i64::MAX, None, &[], T0).await.unwrap();
        assert!(s.partner_holding(a).await.unwrap().is_none());
        assert!(s.feed_due(T0, 10).await.unwrap().is_empty());
        assert_eq!(
            s.feed_stats().await.unwrap().oldest_unconfirmed_deletion_at,
            None
        );
        // registered, propagated, account_deleted.
        assert_eq!(verify_chain(&*s).await, 3);
    })
    .await;
}

#[tokio::test]
async fn concurrent_appends_keep_the_chain_intact() {
    on_each_backend(|s| async move {
        s.publish_policy(
            PolicyDraft::new("one", Purpose::ALL, ConsentProfile::Strict).unwrap(),
            T0,
        )
        .await
        .unwrap();
        let mut tasks = Vec::new();
        for n in 0..24u32 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                register(&*s, 100 + n, &format!("t{n}")).await
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // 1 publication + 24 × (registered, accepted, 2 refusals).
        assert_eq!(verify_chain(&*s).await, 1 + 24 * 4);
    })
    .await;
}

/// Group commit: many consent changes in one transaction; a stale one
/// fails alone and appends nothing; every shard's chain stays intact,
/// and accounts land in the shard their id gives.
#[tokio::test]
async fn group_committed_consent_changes_fail_alone_and_keep_every_shard_intact() {
    use accord_domain::consent::ConsentChannel;
    use accord_domain::transparency::shard_of;
    use accord_storage::ConsentWrite;
    on_each_backend(|s| async move {
        s.publish_policy(
            PolicyDraft::new("one", Purpose::ALL, ConsentProfile::Strict).unwrap(),
            T0,
        )
        .await
        .unwrap();
        let policies = s.policies().await.unwrap();
        let mut writes = Vec::new();
        for n in 0..40u32 {
            let a = register(&*s, 200 + n, &format!("g{n}")).await;
            let acct = s.account(a).await.unwrap().unwrap();
            let events = acct
                .consent
                .decide(
                    &ConsentCommand::Grant {
                        purpose: Purpose::Ads,
                        channel: ConsentChannel::PrivacyCentre,
                    },
                    &policies,
                    T0,
                )
                .unwrap();
            let mut next = acct.consent.clone();
            events.iter().for_each(|e| next.apply(e));
            writes.push(ConsentWrite {
                account: a,
                // Every fifth write is stale.
                expected_rev: acct.consent_rev + i64::from(n % 5 == 0),
                consent: next,
                records: events
                    .into_iter()
                    .map(|e| LedgerRecord::consent(a, e))
                    .collect(),
            });
        }
        let before = entry_count(&*s).await;
        let results = s.record_consents(&writes).await.unwrap();
        assert_eq!(results.len(), 40);
        for (n, r) in results.iter().enumerate() {
            if n % 5 == 0 {
                assert!(
                    matches!(r, Err(StoreError::Conflict("consent_rev"))),
                    "{r:?}"
                );
            } else {
                assert!(r.is_ok(), "{r:?}");
            }
        }
        assert_eq!(entry_count(&*s).await, before + 32);
        for (n, w) in writes.iter().enumerate() {
            let stored = s.account(w.account).await.unwrap().unwrap();
            assert_eq!(
                stored.consent.is_granted(Purpose::Ads, &policies, T0),
                n % 5 != 0
            );
            for (shard, e) in s.ledger_for_account(w.account).await.unwrap() {
                if e.account == Some(w.account) {
                    assert_eq!(shard, shard_of(w.account));
                }
            }
        }
        assert_eq!(verify_chain(&*s).await, 1 + 40 * 4 + 32);
        let used = s
            .ledger_heads()
            .await
            .unwrap()
            .iter()
            .filter(|h| h.1 > 0)
            .count();
        assert!(used > 4, "40 accounts spread over {used} shards");
    })
    .await;
}

#[tokio::test]
async fn checkpoints_are_kept_per_shard_and_size() {
    use accord_domain::transparency::{Checkpoint, LogSigner};
    on_each_backend(|s| async move {
        let signer = LogSigner::from_seed(&[3; 32]);
        let cp = |shard, size| {
            signer.sign(Checkpoint {
                shard,
                size,
                root: "ab".repeat(32),
                at: T0,
            })
        };
        assert!(s.latest_checkpoints().await.unwrap().is_empty());
        for c in [cp(1, 5), cp(1, 9), cp(1, 9), cp(4, 2)] {
            s.put_checkpoint(&c).await.unwrap();
        }
        assert_eq!(
            s.latest_checkpoints().await.unwrap(),
            vec![cp(1, 9), cp(4, 2)]
        );
    })
    .await;
}

/// Two messenger nodes over one PostgreSQL database do not wait on each
/// other's consent changes: while one node's transaction holds the head
/// of one ledger shard (mid-commit), a change of an account in another
/// shard commits at once, and one in the same shard waits. (Before
/// sharding, every change locked the one `ledger_head` row.)
#[tokio::test]
async fn on_postgresql_consent_changes_in_other_shards_do_not_wait() {
    use accord_domain::consent::ConsentChannel;
    use accord_domain::transparency::shard_of;
    use accord_storage::{Backend, ConsentWrite};
    use std::time::Duration;
    for t in common::backends("messenger").await {
        if t.db.backend != Backend::Postgres {
            t.finish().await;
            continue;
        }
        let s = SqlMessengerStore::new(t.db.clone()).await.unwrap();
        s.publish_policy(
            PolicyDraft::new("one", Purpose::ALL, ConsentProfile::Strict).unwrap(),
            T0,
        )
        .await
        .unwrap();
        let policies = s.policies().await.unwrap();
        // Two accounts in different shards, one in the same shard as the first.
        let mut accounts = Vec::new();
        let mut n = 300;
        while accounts.len() < 3 {
            let a = register(&s, n, &format!("pg{n}")).await;
            n += 1;
            let fits = match accounts.len() {
                0 => true,
                1 => shard_of(a) != shard_of(accounts[0]),
                _ => shard_of(a) == shard_of(accounts[0]),
            };
            if fits {
                accounts.push(a);
            }
        }
        let write = |a: AccountId| {
            let s = s.clone();
            let policies = policies.clone();
            async move {
                let acct = s.account(a).await.unwrap().unwrap();
                let events = acct
                    .consent
                    .decide(
                        &ConsentCommand::Grant {
                            purpose: Purpose::Ads,
                            channel: ConsentChannel::PrivacyCentre,
                        },
                        &policies,
                        T0,
                    )
                    .unwrap();
                let mut next = acct.consent.clone();
                events.iter().for_each(|e| next.apply(e));
                let w = ConsentWrite {
                    account: a,
                    expected_rev: acct.consent_rev,
                    consent: next,
                    records: events
                        .into_iter()
                        .map(|e| LedgerRecord::consent(a, e))
                        .collect(),
                };
                s.record_consents(&[w]).await.unwrap().pop().unwrap()
            }
        };
        // "Node 1" is mid-commit: it holds the first account's shard head.
        let mut node1 = t.db.pool.begin().await.unwrap();
        sqlx::query("UPDATE ledger_shards SET seq = seq WHERE shard = $1")
            .bind(shard_of(accounts[0]) as i64)
            .execute(&mut *node1)
            .await
            .unwrap();
        // "Node 2": another shard commits while node 1 still holds its lock.
        tokio::time::timeout(Duration::from_secs(5), write(accounts[1]))
            .await
            .expect("a change in another shard does not wait")
            .unwrap();
        // The same shard waits for node 1 (so this test can fail).
        let same = tokio::spawn(write(accounts[2]));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !same.is_finished(),
            "a change in the same shard waits for the lock"
        );
        node1.rollback().await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), same)
            .await
            .expect("and commits once it is released")
            .unwrap()
            .unwrap();
        // The publication, four entries per registration, two grants.
        assert_eq!(verify_chain(&s).await, 1 + (n - 300) as u64 * 4 + 2);
        drop(s);
        t.finish().await;
    }
}
