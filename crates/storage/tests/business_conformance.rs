//! The business store's conformance suite, on SQLite always and on
//! PostgreSQL on 127.0.0.1:5432 (or `ACCORD_TEST_POSTGRES_URL`) in a fresh
//! database dropped afterwards. `ACCORD_SKIP_POSTGRES=1` skips PostgreSQL.

mod common;

use accord_crypto::token::TokenHash;
use accord_domain::{AccountId, Timestamp};
use accord_storage::business::{
    ApiKeyRow, BusinessStore, Controls, FailedEvent, NewTemplate, WebhookRow,
};
use accord_storage::{MailboxStore, SqlBusinessStore, SqlMailboxStore, StoreError};

const T0: Timestamp = Timestamp(1_800_000_000_000);
const DAY: i64 = 86_400_000;

#[tokio::test]
async fn businesses_keys_templates_controls_events_and_webhooks() {
    for t in common::backends("messenger").await {
        // The mailbox store runs the messenger's migrations.
        let mailboxes = SqlMailboxStore::new(t.db.clone()).await.unwrap();
        let s = SqlBusinessStore::new(t.db.clone());
        let (b, u) = (AccountId::random(), AccountId::random());
        let backend = t.db.backend;

        s.create_business(b, "Toko", T0).await.unwrap();
        assert!(matches!(
            s.create_business(b, "Again", T0).await,
            Err(StoreError::Conflict(_))
        ));
        let row = s.business(b).await.unwrap().unwrap();
        assert_eq!((row.tier, row.quality.as_str()), (0, "green"));
        assert!(s.set_verified(b, Some(T0)).await.unwrap());
        assert!(
            !s.set_verified(u, Some(T0)).await.unwrap(),
            "no such business"
        );
        s.set_tier(b, 1, "up", T0).await.unwrap();
        s.set_quality(b, "red", "reports", T0).await.unwrap();
        let row = s.business(b).await.unwrap().unwrap();
        assert_eq!(
            (row.verified_at, row.tier, row.quality.as_str()),
            (Some(T0), 1, "red")
        );

        // API keys: found by hash; revoked once.
        let key = ApiKeyRow {
            id: uuid::Uuid::new_v4(),
            business: b,
            hash: TokenHash::of("acb_secret"),
            label: "ci".into(),
            created_at: T0,
            expires_at: Some(Timestamp(T0.0 + DAY)),
            revoked_at: None,
        };
        s.put_api_key(&key).await.unwrap();
        assert_eq!(s.api_key(&key.hash).await.unwrap().as_ref(), Some(&key));
        assert!(s.revoke_api_key(b, key.id, T0).await.unwrap());
        assert!(!s.revoke_api_key(b, key.id, T0).await.unwrap());
        assert_eq!(s.api_keys(b).await.unwrap()[0].revoked_at, Some(T0));

        // Templates: versions per name and language; reviews are
        // conditional on the state they start from.
        let new = |body: &str| NewTemplate {
            business: b,
            name: "order_receipt".into(),
            language: "en".into(),
            category: "utility".into(),
            body: body.into(),
            params: 1,
            at: T0,
        };
        let v1 = s.put_template(&new("Order {{1}}")).await.unwrap();
        let v2 = s.put_template(&new("Your order {{1}}")).await.unwrap();
        assert_eq!((v1.version, v2.version), (1, 2));
        assert!(s
            .review_template(v1.id, "pending", "approved", None, T0)
            .await
            .unwrap());
        assert!(!s
            .review_template(v1.id, "pending", "rejected", None, T0)
            .await
            .unwrap());
        let got = s
            .template_version(b, "order_receipt", "en", 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.status, "approved");
        assert_eq!(s.templates_in("pending").await.unwrap().len(), 1);

        // Controls, window and block, read in one query.
        let since = Timestamp(T0.0 - DAY);
        let empty = s.recipient_state(b, u, since).await.unwrap();
        assert_eq!(empty.controls, None);
        assert!(!empty.blocked && !empty.started && empty.last_inbound_at.is_none());
        let mut c = Controls::none(u, b);
        c.opted_in = true;
        c.muted = vec!["marketing".into()];
        c.updated_at = T0;
        s.put_controls(&c).await.unwrap();
        s.touch_window(b, u, T0).await.unwrap();
        s.touch_window(b, u, Timestamp(T0.0 - 5)).await.unwrap();
        mailboxes.block(u, b, T0).await.unwrap();
        let state = s.recipient_state(b, u, since).await.unwrap();
        assert_eq!(state.controls.as_ref(), Some(&c));
        assert_eq!(state.last_inbound_at, Some(T0), "a window never goes back");
        assert!(state.blocked);
        assert_eq!(s.controls_of(u).await.unwrap(), vec![c]);
        assert_eq!(s.windows_of(u, since).await.unwrap(), vec![(b, T0)]);

        // Events: a failed one is recorded once; signals count the block.
        let failed = FailedEvent {
            business: b,
            message_id: "m-1".into(),
            recipient: u,
            category: Some("utility".into()),
            code: "blocked_by_user".into(),
            at: T0,
        };
        s.record_failed(&failed).await.unwrap();
        s.record_failed(&failed).await.unwrap();
        let ev = s.events(b, 10).await.unwrap();
        assert_eq!(ev.len(), 1, "{backend:?}");
        assert_eq!(ev[0].code.as_deref(), Some("blocked_by_user"));
        let sig = s.signals(b, since).await.unwrap();
        assert_eq!((sig.blocks, sig.delivered, sig.started), (1, 0, 0));
        assert_eq!(s.started_since(b, since).await.unwrap(), 0);

        // The outbox: without a webhook an event is marked so; with one it
        // is due, retried, then delivered; old delivered events are purged.
        assert!(s.due_events(T0, 10).await.unwrap().is_empty());
        assert_eq!(s.events(b, 10).await.unwrap()[0].hook_state, 3);
        s.put_webhook(&WebhookRow {
            business: b,
            url: "https://shop.example/hook".into(),
            secret: "s".into(),
            created_at: T0,
        })
        .await
        .unwrap();
        let second = FailedEvent {
            message_id: "m-2".into(),
            ..failed.clone()
        };
        s.record_failed(&second).await.unwrap();
        let due = s.due_events(T0, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        let id = due[0].0.id;
        s.reschedule(
            &[id],
            Some(Timestamp(T0.0 + 1_000)),
            "the receiver answered 500",
        )
        .await
        .unwrap();
        assert!(s.due_events(T0, 10).await.unwrap().is_empty());
        assert_eq!(s.hook_stats(b).await.unwrap().failing, 1);
        assert_eq!(
            s.due_events(Timestamp(T0.0 + 1_000), 10)
                .await
                .unwrap()
                .len(),
            1
        );
        s.mark_hooked(&[id]).await.unwrap();
        let h = s.hook_stats(b).await.unwrap();
        assert_eq!((h.due, h.delivered), (0, 1));
        assert_eq!(s.purge_events(Timestamp(T0.0 + 1)).await.unwrap(), 2);
        assert!(s.events(b, 10).await.unwrap().is_empty());
        assert!(s.delete_webhook(b).await.unwrap());
        t.finish().await;
    }
}
