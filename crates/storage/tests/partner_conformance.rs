//! The partner store's conformance suite, on SQLite and PostgreSQL (a
//! fresh database per run on 127.0.0.1:5432, dropped afterwards;
//! `ACCORD_SKIP_POSTGRES=1` skips that half).

mod common;

use accord_domain::{DeviceInfo, Purpose, Timestamp};
use accord_storage::partner::{IncomingEvent, PartnerStore, PartnerUser, SqlPartnerStore};
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

fn event(id: u64, p: [u8; 32], purposes: &[Purpose]) -> IncomingEvent {
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
        ledger_ref: None,
    }
}

fn user(name: &str, p: Option<[u8; 32]>) -> PartnerUser {
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
        let p = [1u8; 32];
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
            s.upload_contacts(up.id, &[p, [7; 32]]).await.unwrap(),
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
        let p = [3u8; 32];
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
