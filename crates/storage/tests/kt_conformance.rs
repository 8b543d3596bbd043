//! The key-transparency log's conformance suite, on SQLite always and on
//! PostgreSQL on 127.0.0.1:5432 (or `ACCORD_TEST_POSTGRES_URL`) in a fresh
//! database dropped afterwards. `ACCORD_SKIP_POSTGRES=1` skips PostgreSQL.

mod common;

use accord_domain::Timestamp;
use accord_storage::kt::{KtStore, KtUpdate, SqlKtStore};
use accord_storage::StoreError;

const T0: Timestamp = Timestamp(1_800_000_000_000);

#[tokio::test]
async fn epochs_are_written_once_in_order_and_their_roots_after() {
    for t in common::backends("messenger").await {
        let s = SqlKtStore::new(t.db.clone()).await.unwrap();
        assert!(s.epochs().await.unwrap().is_empty());
        s.append_epoch(1, &[(vec![1], vec![10]), (vec![2], vec![20])], T0)
            .await
            .unwrap();
        s.append_epoch(2, &[(vec![1], vec![11])], T0).await.unwrap();
        // An epoch is written once; a label once per epoch.
        assert!(matches!(
            s.append_epoch(2, &[(vec![3], vec![30])], T0).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            s.append_epoch(3, &[(vec![3], vec![1]), (vec![3], vec![2])], T0)
                .await,
            Err(StoreError::Conflict(_))
        ));
        // The refused epoch 3 left nothing behind.
        let epochs = s.epochs().await.unwrap();
        assert_eq!(
            epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(epochs
            .iter()
            .all(|e| e.root.is_none() && e.signature.is_none()));
        s.set_root(1, &[7; 32], &[8; 64]).await.unwrap();
        assert!(matches!(
            s.set_root(9, &[7; 32], &[8; 64]).await,
            Err(StoreError::NotFound(_))
        ));
        let epochs = s.epochs().await.unwrap();
        assert_eq!(epochs[0].root.as_deref(), Some(&[7u8; 32][..]));
        assert_eq!(epochs[0].signature.as_deref(), Some(&[8u8; 64][..]));
        assert_eq!(epochs[1].root, None);
        assert_eq!(
            s.updates(1, 2).await.unwrap(),
            vec![
                KtUpdate {
                    epoch: 1,
                    label: vec![1],
                    value: vec![10]
                },
                KtUpdate {
                    epoch: 1,
                    label: vec![2],
                    value: vec![20]
                },
                KtUpdate {
                    epoch: 2,
                    label: vec![1],
                    value: vec![11]
                },
            ]
        );
        assert_eq!(s.updates(2, 2).await.unwrap().len(), 1);
        t.finish().await;
    }
}
