//! The partner store's conformance suite, on SQLite and PostgreSQL (a
//! fresh database per run on 127.0.0.1:5432, dropped afterwards;
//! `ACCORD_SKIP_POSTGRES=1` skips that half).

mod common;

use accord_domain::{DeviceInfo, PseudonymId, Purpose, Timestamp};
use accord_storage::partner::{IncomingEvent, PartnerStore, PartnerUser, SqlPartnerStore};
use accord_storage::StoreError;
use std::future::Future;
use std::sync::Arc;

const T0: Timestamp = Timestamp(1_800_000_000_000);

async fn on_each_backend<F, Fut>(body: F)
where
    F: Fn(Arc<dyn PartnerStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    for t in common::backends("partner").await {
        body(Arc::new(SqlPartnerStore::new(t.db.clone()).await.unwrap())).await;
        t.finish().await;
    }
}

fn device() -> DeviceInfo {
    DeviceInfo {
        os: "android".into(),
        os_version: "15".into(),
        model: "Pixel 8".into(),
        app_version: "1.0".into(),
        locale: "id-ID".into(),
        carrier: None,
    }
}

fn event(id: u64, p: PseudonymId, purposes: &[Purpose]) -> IncomingEvent {
    IncomingEvent {
        event_id: id,
        pseudonym: p,
        key_version: 1,
        purposes: purposes.iter().copied().collect(),
        devices: if purposes.is_empty() {
            vec![]
        } else {
            vec![device()]
        },
        citations: Default::default(),
    }
}

fn user(name: &str, p: Option<PseudonymId>) -> PartnerUser {
    PartnerUser {
        id: uuid::Uuid::new_v4(),
        name: name.into(),
        phone_pseudonym: p,
        ads_personalisation: false,
        created_at: T0,
    }
}

#[tokio::test]
async fn events_apply_in_order_idempotently_and_revocations_delete_derived_data() {
    on_each_backend(|s| async move {
        let p = PseudonymId::from_bytes([1u8; 32]);
        let r = s
            .apply_event(&event(2, p, &[Purpose::Ads, Purpose::Product]), T0)
            .await
            .unwrap();
        assert!(r.applied && r.deleted.is_empty());
        assert_eq!(s.pseudonyms(Purpose::Ads).await.unwrap(), vec![p]);
        // Linking and an edge, both derived from `product`.
        let u = user("u", Some(p));
        s.create_user(&u, &[9; 32]).await.unwrap();
        assert_eq!(s.link_of(u.id).await.unwrap(), Some(p));
        let up = user("uploader", None);
        s.create_user(&up, &[8; 32]).await.unwrap();
        assert_eq!(
            s.upload_contacts(up.id, &[p, PseudonymId::from_bytes([7; 32])])
                .await
                .unwrap(),
            1,
            "unmatched contacts are discarded"
        );
        assert_eq!(
            s.suggestions(up.id)
                .await
                .unwrap()
                .iter()
                .map(|x| x.id)
                .collect::<Vec<_>>(),
            vec![u.id]
        );
        // A duplicate and an older event change nothing.
        assert!(!s.apply_event(&event(2, p, &[]), T0).await.unwrap().applied);
        assert!(!s.apply_event(&event(1, p, &[]), T0).await.unwrap().applied);
        assert_eq!(s.pseudonyms(Purpose::Product).await.unwrap(), vec![p]);
        // Revoking product deletes the record, the link and the edge.
        let r = s
            .apply_event(&event(3, p, &[Purpose::Ads]), T0)
            .await
            .unwrap();
        assert_eq!(r.deleted, [Purpose::Product].into_iter().collect());
        assert!(s.link_of(u.id).await.unwrap().is_none());
        assert!(s.suggestions(up.id).await.unwrap().is_empty());
        assert_eq!(s.stats().await.unwrap().contact_edges, 0);
        // Full revocation, then the tombstone goes after its hour.
        let r = s.apply_event(&event(4, p, &[]), T0).await.unwrap();
        assert_eq!(r.deleted, [Purpose::Ads].into_iter().collect());
        assert!(s.record(&p, Purpose::Ads).await.unwrap().is_none());
        assert_eq!(s.purge_tombstones(T0).await.unwrap(), 0);
        assert_eq!(s.purge_tombstones(T0.plus_millis(1)).await.unwrap(), 1);
        assert_eq!(s.stats().await.unwrap().subjects, 0);
    })
    .await;
}

#[tokio::test]
async fn reads_users_and_reconciliation_deletes() {
    on_each_backend(|s| async move {
        let p = PseudonymId::from_bytes([3u8; 32]);
        s.apply_event(&event(1, p, &[Purpose::Product]), T0)
            .await
            .unwrap();
        let rec = s.record(&p, Purpose::Product).await.unwrap().unwrap();
        assert_eq!(rec.devices, vec![device()]);
        assert!(s.record(&p, Purpose::Ads).await.unwrap().is_none());
        s.count_denied_read(Purpose::Ads).await.unwrap();
        s.count_denied_read(Purpose::Ads).await.unwrap();
        assert_eq!(s.stats().await.unwrap().denied_reads.get("ads"), Some(&2));
        let u = user("late", Some(p));
        s.create_user(&u, &[5; 32]).await.unwrap();
        assert_eq!(
            s.link_of(u.id).await.unwrap(),
            Some(p),
            "linked at sign-up when product is held"
        );
        assert_eq!(s.user_by_token(&[5; 32]).await.unwrap().unwrap().id, u.id);
        s.set_ads_personalisation(u.id, true).await.unwrap();
        assert!(
            s.user_by_token(&[5; 32])
                .await
                .unwrap()
                .unwrap()
                .ads_personalisation
        );
        assert!(s.user_by_token(&[6; 32]).await.unwrap().is_none());
        assert!(s.delete_held(&p, Purpose::Product).await.unwrap());
        assert!(!s.delete_held(&p, Purpose::Product).await.unwrap());
        assert!(s.link_of(u.id).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn a_code_allows_max_attempts_even_in_parallel_and_is_taken_once() {
    use accord_storage::partner::PendingRegistration;
    on_each_backend(|s| async move {
        let r = PendingRegistration {
            id: uuid::Uuid::new_v4(),
            number_tag: [5; 32],
            salt: vec![1; 16],
            code_digest: vec![2; 32],
            created_at: T0,
            expires_at: T0.plus_millis(600_000),
            attempts: 0,
        };
        s.put_registration(&r).await.unwrap();
        assert_eq!(s.registration(r.id).await.unwrap(), Some(r.clone()));
        let tries: Vec<_> = (0..12)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.count_attempt(r.id, 5).await.unwrap() })
            })
            .collect();
        let mut counted = Vec::new();
        for t in tries {
            if let Some(n) = t.await.unwrap() {
                counted.push(n);
            }
        }
        counted.sort_unstable();
        assert_eq!(
            counted,
            vec![1, 2, 3, 4, 5],
            "exactly five attempts counted"
        );
        assert_eq!(
            s.count_attempt(uuid::Uuid::new_v4(), 5).await.unwrap(),
            None
        );
        let takes: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.take_registration(r.id).await.unwrap() })
            })
            .collect();
        let mut taken = 0;
        for t in takes {
            taken += usize::from(t.await.unwrap());
        }
        assert_eq!(taken, 1, "a registration is taken once");
        // Expired ones are purged.
        let old = PendingRegistration {
            id: uuid::Uuid::new_v4(),
            ..r
        };
        s.put_registration(&old).await.unwrap();
        assert_eq!(s.purge_signups(T0.plus_millis(600_000)).await.unwrap(), 1);
        assert_eq!(s.registration(old.id).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn one_number_is_one_user_with_several_tokens() {
    on_each_backend(|s| async move {
        let first = user("alice", None);
        let (u, created) = s.sign_up(&first, &[3; 32], &[30; 32]).await.unwrap();
        assert!(created);
        assert_eq!(u.id, first.id);
        let (again, created) = s
            .sign_up(&user("alice on a tablet", None), &[3; 32], &[31; 32])
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(again.id, first.id);
        assert_eq!(again.name, "alice");
        for t in [[30; 32], [31; 32]] {
            assert_eq!(s.user_by_token(&t).await.unwrap().unwrap().id, first.id);
        }
        let (other, created) = s
            .sign_up(&user("bob", None), &[4; 32], &[32; 32])
            .await
            .unwrap();
        assert!(created && other.id != first.id);
        // Users made before sign-up needed a number keep working.
        let legacy = user("legacy", None);
        s.create_user(&legacy, &[33; 32]).await.unwrap();
        assert_eq!(
            s.user_by_token(&[33; 32]).await.unwrap().unwrap().id,
            legacy.id
        );
        assert_eq!(s.stats().await.unwrap().users, 3);
    })
    .await;
}

#[tokio::test]
async fn meters_never_charge_past_their_limit_even_in_parallel() {
    use accord_storage::partner::ChargeError;
    on_each_backend(|s| async move {
        let charges: Vec<_> = (0..20)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.charge_meter("oprf", b"user-a", 1, 7, T0).await })
            })
            .collect();
        let mut ok = 0;
        for c in charges {
            match c.await.unwrap() {
                Ok(()) => ok += 1,
                Err(ChargeError::QuotaExceeded(q)) => {
                    assert_eq!(q.quota, 7);
                    assert!(q.retry_after_s > 0);
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ok, 7, "exactly the limit was granted");
        assert_eq!(s.meter_used("oprf", b"user-a", T0).await.unwrap(), 7);
        // A refused charge charges nothing; other subjects and kinds are apart.
        assert!(s.charge_meter("oprf", b"user-a", 3, 9, T0).await.is_err());
        s.charge_meter("oprf", b"user-b", 5, 7, T0).await.unwrap();
        s.charge_meter("signup", b"", 1, 7, T0).await.unwrap();
        assert_eq!(s.meter_used("oprf", b"user-a", T0).await.unwrap(), 7);
        assert_eq!(s.meter_total("oprf", T0).await.unwrap(), 12);
        // A day later the window is empty again.
        let later = T0.plus_millis(24 * 3_600_000);
        assert_eq!(s.meter_total("oprf", later).await.unwrap(), 0);
        s.purge_signups(later).await.unwrap();
        s.charge_meter("oprf", b"user-a", 7, 7, later)
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_feed_nonce_is_accepted_once_within_the_window() {
    on_each_backend(|s| async move {
        let t = Timestamp(1_800_000_000_000);
        assert!(s.remember_nonce("00ff", t, Timestamp(0)).await.unwrap());
        assert!(!s
            .remember_nonce("00ff", t.plus_millis(1), Timestamp(0))
            .await
            .unwrap());
        assert!(s.remember_nonce("00fe", t, Timestamp(0)).await.unwrap());
        // Once forgotten (past the window), the store takes it again; the
        // signature's own freshness check refuses such an old request.
        assert!(s
            .remember_nonce("00ff", t.plus_millis(700_000), t.plus_millis(1))
            .await
            .unwrap());
        // Concurrent: one winner.
        let tries = (0..8).map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.remember_nonce("abcd", t, Timestamp(0)).await.unwrap() })
        });
        let mut won = 0;
        for t in tries {
            won += usize::from(t.await.unwrap());
        }
        assert_eq!(won, 1);
    })
    .await;
}

/// Checkpoints are kept once per shard and size; a second root for the
/// same shard and size (equivocation) is refused and keeps nothing.
#[tokio::test]
async fn witnessed_checkpoints_are_kept_and_equivocation_is_refused() {
    use accord_domain::transparency::{Checkpoint, LogSigner};
    on_each_backend(|s| async move {
        let signer = LogSigner::from_seed(&[5; 32]);
        let cp = |shard, size, root: &str| {
            signer.sign(Checkpoint {
                shard,
                size,
                root: root.repeat(32),
                at: Timestamp(1),
            })
        };
        s.keep_checkpoints(&[cp(0, 3, "aa"), cp(2, 1, "bb")], Timestamp(2))
            .await
            .unwrap();
        s.keep_checkpoints(&[cp(0, 3, "aa")], Timestamp(3))
            .await
            .unwrap();
        let forked = s
            .keep_checkpoints(&[cp(0, 4, "cc"), cp(2, 1, "dd")], Timestamp(4))
            .await;
        assert!(
            matches!(forked, Err(StoreError::Conflict("checkpoint"))),
            "{forked:?}"
        );
        assert_eq!(
            s.checkpoints().await.unwrap(),
            vec![cp(0, 3, "aa"), cp(2, 1, "bb")]
        );
    })
    .await;
}
