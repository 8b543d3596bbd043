//! The key service store's conformance suite, run on every backend: SQLite
//! always, PostgreSQL on 127.0.0.1:5432 (or `ACCORD_TEST_POSTGRES_URL`) in
//! a fresh database that is dropped afterwards. Set
//! `ACCORD_SKIP_POSTGRES=1` to skip the PostgreSQL half on a machine
//! without it; CI never sets it.

mod common;

use accord_crypto::oprf::{KeyVersion, OprfPurpose};
use accord_crypto::token::TokenHash;
use accord_domain::time::{DAY_MS, HOUR_MS, MINUTE_MS};
use accord_domain::Timestamp;
use accord_storage::keyd::{
    hour_of, ChargeError, ClientId, ClientKind, KeyState, KeyStore, NewClient, QuotaExceeded,
    SqlKeyStore,
};
use accord_storage::StoreError;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

/// 2027-01-15T08:00:00Z: the start of an hour.
const T0: Timestamp = Timestamp(1_800_000_000_000 - 1_800_000_000_000 % HOUR_MS);
const C: OprfPurpose = OprfPurpose::Contacts;
const K: OprfPurpose = OprfPurpose::Coordination;

/// Runs `body` against a fresh store on each backend.
async fn on_each_backend<F, Fut>(body: F)
where
    F: Fn(Arc<dyn KeyStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    for t in common::backends("keyd").await {
        body(Arc::new(SqlKeyStore::new(t.db.clone()).await.unwrap())).await;
        t.finish().await;
    }
}

fn new_client(token: &str, kind: ClientKind, quotas: &[(OprfPurpose, u64)]) -> NewClient {
    NewClient {
        id: ClientId::random(),
        name: format!("client {token}"),
        kind,
        token_hash: TokenHash::of(token),
        created_at: T0,
        quotas: quotas.iter().copied().collect(),
        quota_group: None,
    }
}

fn quota_exceeded(r: Result<(), ChargeError>) -> QuotaExceeded {
    match r {
        Err(ChargeError::QuotaExceeded(q)) => q,
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
}

#[tokio::test]
async fn keys_are_versioned_with_one_active_per_purpose() {
    on_each_backend(|s| async move {
        assert!(s.keys().await.unwrap().is_empty());
        // The first version must be 1.
        assert!(matches!(
            s.add_active_key(C, KeyVersion(2), b"sealed-c2", T0).await,
            Err(StoreError::Conflict("key_version"))
        ));
        let c1 = s
            .add_active_key(C, KeyVersion(1), b"sealed-c1", T0)
            .await
            .unwrap();
        assert_eq!(c1.state, KeyState::Active);
        s.add_active_key(K, KeyVersion(1), b"sealed-k1", T0)
            .await
            .unwrap();
        // A duplicate or skipped version is refused and changes nothing.
        for v in [1, 3] {
            assert!(matches!(
                s.add_active_key(C, KeyVersion(v), b"x", T0).await,
                Err(StoreError::Conflict("key_version"))
            ));
        }
        let keys = s.keys().await.unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys.iter().all(|k| k.state == KeyState::Active));

        // Rotation: v2 becomes active, v1 stays, the other purpose is untouched.
        s.add_active_key(C, KeyVersion(2), b"sealed-c2", T0.plus_days(1))
            .await
            .unwrap();
        let keys = s.keys().await.unwrap();
        let view: Vec<_> = keys
            .iter()
            .map(|k| (k.purpose, k.version.0, k.state, k.sealed.clone()))
            .collect();
        // Ordered by purpose (coordination first) and version.
        assert_eq!(
            view,
            vec![
                (K, 1, KeyState::Active, b"sealed-k1".to_vec()),
                (C, 1, KeyState::Previous, b"sealed-c1".to_vec()),
                (C, 2, KeyState::Active, b"sealed-c2".to_vec()),
            ]
        );
        let c2 = keys
            .iter()
            .find(|k| k.purpose == C && k.version == KeyVersion(2))
            .unwrap();
        assert_eq!(c2.created_at, T0.plus_days(1));
        assert_eq!(
            keys.iter().filter(|k| k.state == KeyState::Active).count(),
            2
        );
        // Debug never prints the sealed bytes.
        assert!(!format!("{c2:?}").contains("115, 101"));
    })
    .await;
}

#[tokio::test]
async fn clients_are_found_by_token_and_hold_quotas() {
    on_each_backend(|s| async move {
        let nc = new_client("tok-a", ClientKind::Business, &[(K, 5_000)]);
        let a = s.create_client(&nc).await.unwrap();
        assert_eq!(a.quota(K), 5_000);
        assert_eq!(a.quota(C), 0);
        assert_eq!(s.client(a.id).await.unwrap().as_ref(), Some(&a));
        assert_eq!(
            s.client_by_token(&TokenHash::of("tok-a"))
                .await
                .unwrap()
                .as_ref(),
            Some(&a)
        );
        assert!(s
            .client_by_token(&TokenHash::of("tok-b"))
            .await
            .unwrap()
            .is_none());
        assert!(s.client(ClientId::random()).await.unwrap().is_none());

        // Same token or same id: refused, nothing added.
        let mut dup = new_client("tok-a", ClientKind::Device, &[]);
        assert!(matches!(
            s.create_client(&dup).await,
            Err(StoreError::Conflict("client"))
        ));
        dup.token_hash = TokenHash::of("tok-other");
        dup.id = a.id;
        assert!(matches!(
            s.create_client(&dup).await,
            Err(StoreError::Conflict("client"))
        ));
        assert_eq!(s.clients().await.unwrap().len(), 1);

        let d = s
            .create_client(&new_client("tok-d", ClientKind::Device, &[(C, 1_000)]))
            .await
            .unwrap();
        s.set_quota(d.id, C, 50).await.unwrap();
        s.set_quota(d.id, K, 7).await.unwrap();
        let d = s.client(d.id).await.unwrap().unwrap();
        assert_eq!(d.quotas, BTreeMap::from([(C, 50), (K, 7)]));
        assert!(matches!(
            s.set_quota(ClientId::random(), C, 1).await,
            Err(StoreError::NotFound("client"))
        ));
        let all = s.clients().await.unwrap();
        assert_eq!(all.iter().map(|c| c.id).collect::<Vec<_>>().len(), 2);
        assert_eq!(all.iter().find(|c| c.id == d.id), Some(&d));
        assert_eq!(all.iter().find(|c| c.id == a.id), Some(&a));
        // A revoked client's token no longer authenticates; once only.
        assert!(s.revoke_client(d.id, Timestamp(5)).await.unwrap());
        assert!(!s.revoke_client(d.id, Timestamp(6)).await.unwrap());
        assert!(!s
            .revoke_client(ClientId::random(), Timestamp(6))
            .await
            .unwrap());
        assert!(s
            .client_by_token(&TokenHash::of("tok-d"))
            .await
            .unwrap()
            .is_none());
        assert!(s
            .client_by_token(&TokenHash::of("tok-a"))
            .await
            .unwrap()
            .is_some());
        // Huge quotas are clamped, not wrapped.
        s.set_quota(a.id, C, u64::MAX).await.unwrap();
        assert_eq!(
            s.client(a.id).await.unwrap().unwrap().quota(C),
            i64::MAX as u64
        );
    })
    .await;
}

#[tokio::test]
async fn charges_stop_at_the_quota_and_rejected_charges_write_nothing() {
    on_each_backend(|s| async move {
        let c = s
            .create_client(&new_client("tok", ClientKind::Device, &[(C, 1_000)]))
            .await
            .unwrap()
            .id;
        s.charge(c, C, 600, T0, 1_000).await.unwrap();
        s.charge(c, C, 400, T0.plus_millis(5 * HOUR_MS), 1_000)
            .await
            .unwrap();
        let now = T0.plus_millis(6 * HOUR_MS);
        assert_eq!(s.used(c, C, now).await.unwrap(), 1_000);

        // One more is refused; the wait is until the 600 of T0's hour leave
        // the window, i.e. until T0 + 24 h.
        let q = quota_exceeded(s.charge(c, C, 1, now, 1_000).await);
        assert_eq!((q.used, q.quota, q.requested), (1_000, 1_000, 1));
        assert_eq!(q.retry_after_s, (18 * HOUR_MS / 1000) as u64);
        assert_eq!(s.used(c, C, now).await.unwrap(), 1_000);
        // Other purposes have their own window.
        s.charge(c, K, 10, now, 10).await.unwrap();
        assert_eq!(s.used(c, C, now).await.unwrap(), 1_000);

        // 24 h after the first charge it has left the window, not the second.
        let later = T0.plus_millis(24 * HOUR_MS);
        assert_eq!(s.used(c, C, later).await.unwrap(), 400);
        assert!(matches!(
            s.charge(c, C, 601, later, 1_000).await,
            Err(ChargeError::QuotaExceeded(_))
        ));
        s.charge(c, C, 600, later, 1_000).await.unwrap();
        // Still within the hour before the boundary, nothing has expired.
        assert_eq!(
            s.used(c, C, later.plus_millis(HOUR_MS - 1)).await.unwrap(),
            1_000
        );

        // A batch larger than the whole quota waits a full day.
        assert_eq!(
            quota_exceeded(s.charge(c, C, 1_001, later.plus_days(5), 1_000).await).retry_after_s,
            86_400
        );
        assert!(matches!(
            s.charge(ClientId::random(), C, 1, now, 10).await,
            Err(ChargeError::Store(StoreError::NotFound("client")))
        ));
    })
    .await;
}

#[tokio::test]
async fn the_audit_log_counts_per_client_and_utc_day() {
    on_each_backend(|s| async move {
        let day0 = Timestamp(T0.0 - T0.0 % DAY_MS);
        let a = s
            .create_client(&new_client("a", ClientKind::Partner, &[]))
            .await
            .unwrap()
            .id;
        let b = s
            .create_client(&new_client("b", ClientKind::Device, &[]))
            .await
            .unwrap()
            .id;
        s.charge(a, K, 100, day0, 1_000_000).await.unwrap();
        s.charge(
            a,
            K,
            50,
            day0.plus_millis(23 * HOUR_MS + 59 * MINUTE_MS),
            1_000_000,
        )
        .await
        .unwrap();
        s.charge(a, K, 7, day0.plus_days(1), 1_000_000)
            .await
            .unwrap();
        s.charge(a, C, 3, day0.plus_days(1), 1_000_000)
            .await
            .unwrap();
        s.charge(b, C, 9, day0.plus_days(1).plus_millis(HOUR_MS), 1_000)
            .await
            .unwrap();
        // Refused charges never reach the audit log.
        assert!(s
            .charge(b, C, 10_000, day0.plus_days(1), 1_000)
            .await
            .is_err());

        let all = s.usage_by_day(None, day0, day0.plus_days(2)).await.unwrap();
        let rows: Vec<_> = all
            .iter()
            .map(|u| (u.client, u.purpose, u.day, u.elements))
            .collect();
        let mut expect = vec![
            (a, K, day0, 150),
            (a, K, day0.plus_days(1), 7),
            (a, C, day0.plus_days(1), 3),
            (b, C, day0.plus_days(1), 9),
        ];
        expect.sort_by_key(|r| (r.0, r.1, r.2));
        assert_eq!(rows, expect);

        let only_b = s
            .usage_by_day(Some(b), day0, day0.plus_days(2))
            .await
            .unwrap();
        assert_eq!(only_b.len(), 1);
        assert_eq!(only_b[0].elements, 9);
        // A range inside day 1 still reports day 1 whole; day 0 is out.
        let day1 = s
            .usage_by_day(
                Some(a),
                day0.plus_days(1).plus_millis(HOUR_MS),
                day0.plus_days(1).plus_millis(2 * HOUR_MS),
            )
            .await
            .unwrap();
        assert_eq!(day1.iter().map(|u| u.elements).sum::<u64>(), 10);
        assert!(s
            .usage_by_day(None, day0.plus_days(2), day0.plus_days(3))
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

#[tokio::test]
async fn concurrent_charges_never_exceed_the_quota() {
    on_each_backend(|s| async move {
        let c = s
            .create_client(&new_client("busy", ClientKind::Device, &[(C, 1_000)]))
            .await
            .unwrap()
            .id;
        // 40 concurrent charges of 30: exactly 33 fit in 1,000.
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.charge(c, C, 30, T0, 1_000).await })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => ok += 1,
                Err(ChargeError::QuotaExceeded(q)) => assert!(q.used + 30 > 1_000),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ok, 33);
        assert_eq!(s.used(c, C, T0).await.unwrap(), 990);
        assert_eq!(hour_of(T0) * HOUR_MS, T0.0);
    })
    .await;
}

#[tokio::test]
async fn the_clients_of_one_group_share_one_meter_even_in_parallel() {
    on_each_backend(|s| async move {
        let group = ClientId::random();
        let mut devices = Vec::new();
        for t in ["phone", "laptop"] {
            let c = s
                .create_client(&NewClient {
                    quota_group: Some(group),
                    ..new_client(t, ClientKind::Device, &[(C, 1_000)])
                })
                .await
                .unwrap();
            assert_eq!(c.meter(), group);
            assert_eq!(
                s.client(c.id).await.unwrap().unwrap().quota_group,
                Some(group)
            );
            devices.push(c);
        }
        // 40 concurrent charges of 30 from the two devices: 33 fit.
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let (s, meter) = (s.clone(), devices[i % 2].meter());
                tokio::spawn(async move { s.charge(meter, C, 30, T0, 1_000).await })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.unwrap().is_ok());
        }
        assert_eq!(ok, 33);
        assert_eq!(s.used(group, C, T0).await.unwrap(), 990);
    })
    .await;
}
