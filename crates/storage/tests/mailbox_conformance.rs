//! The mailbox store's conformance suite, on SQLite always and on
//! PostgreSQL on 127.0.0.1:5432 (or `ACCORD_TEST_POSTGRES_URL`) in a fresh
//! database dropped afterwards. `ACCORD_SKIP_POSTGRES=1` skips PostgreSQL.

mod common;

use accord_domain::time::DAY_MS;
use accord_domain::{AccountId, DeviceId, Timestamp};
use accord_storage::mailbox::{
    Ack, MailItem, NewEnvelope, NewReport, NewSend, PutDeviceKeys, WriteBatch,
};
use accord_storage::{MailboxStore, SqlMailboxStore};
use sqlx::Row;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

const T0: Timestamp = Timestamp(1_800_000_000_000);

async fn on_each_backend<F, Fut>(body: F)
where
    F: Fn(Arc<dyn MailboxStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    for t in common::backends("messenger").await {
        body(Arc::new(SqlMailboxStore::new(t.db.clone()).await.unwrap())).await;
        t.finish().await;
    }
}

fn send(
    from: (AccountId, DeviceId),
    to: AccountId,
    cmid: &str,
    devices: &[DeviceId],
    at: Timestamp,
) -> NewSend {
    NewSend {
        sender_account: from.0,
        sender_device: from.1,
        client_message_id: cmid.into(),
        to_account: to,
        envelopes: devices
            .iter()
            .map(|d| NewEnvelope {
                recipient_device: *d,
                message_type: 1,
                ciphertext: format!("ct:{cmid}:{d:?}").into_bytes(),
                business_meta: None,
            })
            .collect(),
        at,
        expires_at: Timestamp(at.0 + 30 * DAY_MS),
        business: None,
    }
}

async fn commit(s: &dyn MailboxStore, sends: Vec<NewSend>, acks: Vec<Ack>) -> Vec<bool> {
    s.commit_batch(&WriteBatch { sends, acks })
        .await
        .unwrap()
        .duplicate
}

#[tokio::test]
async fn device_keys_are_idempotent_and_never_replaced() {
    on_each_backend(|s| async move {
        let (a, d) = (AccountId::random(), DeviceId::random());
        assert_eq!(
            s.put_device_keys(a, d, "{\"k\":1}", T0).await.unwrap(),
            PutDeviceKeys::Stored
        );
        assert_eq!(
            s.put_device_keys(a, d, "{\"k\":1}", T0).await.unwrap(),
            PutDeviceKeys::Identical
        );
        assert_eq!(
            s.put_device_keys(a, d, "{\"k\":2}", T0).await.unwrap(),
            PutDeviceKeys::Conflict
        );
        assert_eq!(
            s.device_keys(d).await.unwrap().as_deref(),
            Some("{\"k\":1}")
        );
        assert_eq!(s.account_device_keys(a).await.unwrap().len(), 1);
        assert!(s
            .account_device_keys(AccountId::random())
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

#[tokio::test]
async fn one_time_keys_capped_claimed_once_then_fallback() {
    on_each_backend(|s| async move {
        let d = DeviceId::random();
        let keys: Vec<(String, String)> = (0..10)
            .map(|i| (format!("k{i:02}"), format!("otk{i}")))
            .collect();
        assert_eq!(
            s.add_one_time_keys(d, &keys, None, 8).await.unwrap(),
            (8, false)
        );
        // Re-uploading known ids adds nothing; the fallback is set.
        assert_eq!(
            s.add_one_time_keys(d, &keys[..2], Some("fb"), 8)
                .await
                .unwrap(),
            (8, true)
        );
        let mut got = HashSet::new();
        for _ in 0..8 {
            let (k, fb) = s.claim_one_time_key(d).await.unwrap().unwrap();
            assert!(!fb);
            assert!(got.insert(k));
        }
        assert_eq!(s.one_time_key_count(d).await.unwrap(), (0, true));
        assert_eq!(
            s.claim_one_time_key(d).await.unwrap(),
            Some(("fb".into(), true))
        );
        assert_eq!(
            s.claim_one_time_key(DeviceId::random()).await.unwrap(),
            None
        );
    })
    .await;
}

#[tokio::test]
async fn concurrent_claims_never_hand_out_a_key_twice() {
    on_each_backend(|s| async move {
        let d = DeviceId::random();
        let keys: Vec<(String, String)> = (0..40)
            .map(|i| (format!("k{i:03}"), format!("otk{i}")))
            .collect();
        s.add_one_time_keys(d, &keys, Some("fb"), 200)
            .await
            .unwrap();
        let tasks: Vec<_> = (0..60)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.claim_one_time_key(d).await.unwrap().unwrap() })
            })
            .collect();
        let mut one_time = HashSet::new();
        let mut fallbacks = 0;
        for t in tasks {
            let (k, fb) = t.await.unwrap();
            if fb {
                fallbacks += 1;
            } else {
                assert!(one_time.insert(k), "a one-time key was handed out twice");
            }
        }
        assert_eq!(one_time.len(), 40);
        assert_eq!(fallbacks, 20);
    })
    .await;
}

#[tokio::test]
async fn sends_are_idempotent_ordered_and_acks_delete_and_emit_receipts() {
    on_each_backend(|s| async move {
        let (alice, a1) = (AccountId::random(), DeviceId::random());
        let (bob, b1, b2) = (AccountId::random(), DeviceId::random(), DeviceId::random());
        s.put_device_keys(alice, a1, "a1", T0).await.unwrap();
        assert!(!s.has_written_to(alice, bob).await.unwrap());
        let dup = commit(
            &*s,
            vec![
                send((alice, a1), bob, "m1", &[b1, b2], T0),
                send((alice, a1), bob, "m2", &[b1, b2], T0),
                send((alice, a1), bob, "m1", &[b1, b2], T0),
            ],
            vec![],
        )
        .await;
        assert_eq!(dup, vec![false, false, true]);
        // A retry in a later batch is a duplicate too.
        assert_eq!(
            commit(&*s, vec![send((alice, a1), bob, "m2", &[b1], T0)], vec![]).await,
            vec![true]
        );
        assert!(s.has_written_to(alice, bob).await.unwrap());
        assert!(!s.has_written_to(bob, alice).await.unwrap());

        let items = s.fetch(b1, 0, T0, 100).await.unwrap();
        assert_eq!(items.len(), 2);
        assert!(items[0].id() < items[1].id());
        let cmids: Vec<_> = items
            .iter()
            .map(|i| match i {
                MailItem::Envelope {
                    client_message_id, ..
                } => client_message_id.clone(),
                _ => panic!("no receipts yet"),
            })
            .collect();
        assert_eq!(cmids, ["m1", "m2"]);
        assert_eq!(s.fetch(b1, items[0].id(), T0, 100).await.unwrap().len(), 1);

        // Not received by b2 under b1's id: acking someone else's id does nothing.
        let out = s
            .commit_batch(&WriteBatch {
                sends: vec![],
                acks: vec![
                    Ack {
                        device: b1,
                        ids: vec![items[0].id()],
                        at: T0,
                        expires_at: Timestamp(T0.0 + DAY_MS),
                    },
                    Ack {
                        device: b2,
                        ids: vec![items[1].id()],
                        at: T0,
                        expires_at: Timestamp(T0.0 + DAY_MS),
                    },
                ],
            })
            .await
            .unwrap();
        assert_eq!(out.acked, vec![1, 0]);
        assert!(out.woken().contains(&a1));
        // The batch reports exactly what it stored, as a read finds it.
        assert_eq!(out.items.len(), 1, "one receipt to alice's one device");
        assert_eq!(out.items[0].0, a1);
        assert_eq!(
            s.fetch(a1, 0, T0, 100).await.unwrap(),
            vec![out.items[0].1.clone()]
        );
        assert_eq!(s.fetch(b1, 0, T0, 100).await.unwrap().len(), 1);
        assert_eq!(s.fetch(b2, 0, T0, 100).await.unwrap().len(), 2);
        let receipts = s.fetch(a1, 0, T0, 100).await.unwrap();
        assert_eq!(receipts.len(), 1);
        assert!(matches!(
            &receipts[0],
            MailItem::Receipt { client_message_id, recipient_device, .. }
                if client_message_id == "m1" && *recipient_device == b1
        ));
        // Reports: b1 received (and acked) items[0]; b2 still has it queued.
        assert_eq!(
            s.received_from(b1, items[0].id()).await.unwrap(),
            Some((alice, a1))
        );
        assert_eq!(
            s.received_from(b2, items[0].id()).await.unwrap(),
            None,
            "b2's copy has another id"
        );
        assert_eq!(s.received_from(a1, items[0].id()).await.unwrap(), None);
        s.put_report(&NewReport {
            sender_account: alice,
            sender_device: a1,
            envelope_id: items[0].id(),
            plaintext: None,
            at: T0,
        })
        .await
        .unwrap();
        assert_eq!(s.reports().await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn expired_items_are_never_fetched_and_are_purged() {
    on_each_backend(|s| async move {
        let (a, d) = (AccountId::random(), DeviceId::random());
        let (b, r) = (AccountId::random(), DeviceId::random());
        commit(&*s, vec![send((a, d), b, "old", &[r], T0)], vec![]).await;
        let later = Timestamp(T0.0 + 10 * DAY_MS);
        commit(&*s, vec![send((a, d), b, "new", &[r], later)], vec![]).await;
        let at_expiry = Timestamp(T0.0 + 30 * DAY_MS);
        let items = s.fetch(r, 0, at_expiry, 10).await.unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(s.purge_expired(at_expiry, at_expiry).await.unwrap(), 1);
        assert_eq!(s.fetch(r, 0, T0, 10).await.unwrap().len(), 1);
        // The idempotency record is gone too: the id may be used again.
        assert_eq!(
            commit(&*s, vec![send((a, d), b, "old", &[r], at_expiry)], vec![]).await,
            vec![false]
        );
    })
    .await;
}

#[tokio::test]
async fn blocks_are_per_pair() {
    on_each_backend(|s| async move {
        let (a, b) = (AccountId::random(), AccountId::random());
        assert!(!s.is_blocked(a, b).await.unwrap());
        s.block(a, b, T0).await.unwrap();
        s.block(a, b, T0).await.unwrap();
        assert!(s.is_blocked(a, b).await.unwrap());
        assert!(!s.is_blocked(b, a).await.unwrap());
        assert_eq!(s.blocks_of(a).await.unwrap(), vec![(b, T0)]);
        assert!(s.blocks_of(b).await.unwrap().is_empty());
        s.unblock(a, b).await.unwrap();
        assert!(!s.is_blocked(a, b).await.unwrap());
        assert!(s.blocks_of(a).await.unwrap().is_empty());
    })
    .await;
}

/// An ack keeps the row as the delivered record (reports) but not the
/// ciphertext: read straight from the table, on both backends.
#[tokio::test]
async fn an_ack_leaves_no_ciphertext_behind() {
    for t in common::backends("messenger").await {
        let s = SqlMailboxStore::new(t.db.clone()).await.unwrap();
        let (alice, a1) = (AccountId::random(), DeviceId::random());
        let (bob, b1) = (AccountId::random(), DeviceId::random());
        commit(&s, vec![send((alice, a1), bob, "m1", &[b1], T0)], vec![]).await;
        let bodies = || async {
            sqlx::query("SELECT COUNT(*) FROM e2e_mailbox WHERE body IS NOT NULL")
                .fetch_one(&s.db().pool)
                .await
                .unwrap()
                .try_get::<i64, _>(0)
                .unwrap()
        };
        assert_eq!(bodies().await, 1);
        let id = s.fetch(b1, 0, T0, 10).await.unwrap()[0].id();
        let ack = |ids: Vec<u64>| Ack {
            device: b1,
            ids,
            at: T0,
            expires_at: Timestamp(T0.0 + DAY_MS),
        };
        let out = s
            .commit_batch(&WriteBatch {
                sends: vec![],
                acks: vec![ack(vec![id]), ack(vec![id])],
            })
            .await
            .unwrap();
        assert_eq!(out.acked, vec![1, 0], "an item is acked once");
        assert_eq!(bodies().await, 0, "the ciphertext went with the ack");
        assert!(s.fetch(b1, 0, T0, 10).await.unwrap().is_empty());
        assert_eq!(s.received_from(b1, id).await.unwrap(), Some((alice, a1)));
        // A later ack of the same id changes nothing.
        let again = s
            .commit_batch(&WriteBatch {
                sends: vec![],
                acks: vec![ack(vec![id])],
            })
            .await
            .unwrap();
        assert_eq!(again.acked, vec![0]);
        assert!(again.items.is_empty(), "no second receipt");
        t.finish().await;
    }
}

/// Every item a batch reports is what a read of its mailbox finds, id and
/// all, when the batch mixes new sends, a retried one between them,
/// envelope acks (receipts to each of the sender's devices) and a
/// receipt ack (the receipt goes, and only its own device can take it).
#[tokio::test]
async fn a_mixed_batch_reports_the_items_a_read_finds() {
    on_each_backend(|s| async move {
        let (alice, a1, a2) = (AccountId::random(), DeviceId::random(), DeviceId::random());
        let (bob, b1, b2) = (AccountId::random(), DeviceId::random(), DeviceId::random());
        for (acct, dev) in [(alice, a1), (alice, a2), (bob, b1), (bob, b2)] {
            s.put_device_keys(acct, dev, "k", T0).await.unwrap();
        }
        let ack = |device, ids: Vec<u64>| Ack {
            device,
            ids,
            at: T0,
            expires_at: Timestamp(T0.0 + DAY_MS),
        };
        // First: m0 from alice; bob's b1 acks it, so alice's devices get receipts.
        commit(
            &*s,
            vec![send((alice, a1), bob, "m0", &[b1, b2, a2], T0)],
            vec![],
        )
        .await;
        let m0 = s.fetch(b1, 0, T0, 10).await.unwrap()[0].id();
        let m0_b2 = s.fetch(b2, 0, T0, 10).await.unwrap()[0].id();
        let out = s
            .commit_batch(&WriteBatch {
                sends: vec![],
                acks: vec![ack(b1, vec![m0])],
            })
            .await
            .unwrap();
        assert_eq!(out.items.len(), 2, "a receipt to each of alice's devices");
        let receipt_a2 = out.items.iter().find(|(d, _)| *d == a2).unwrap().1.id();

        // The mixed batch.
        let out = s
            .commit_batch(&WriteBatch {
                sends: vec![
                    send((alice, a1), bob, "m1", &[b1, b2, a2], T0),
                    send((alice, a1), bob, "m0", &[b1, b2, a2], T0),
                    send((bob, b2), alice, "n1", &[a1, a2, b1], T0),
                ],
                acks: vec![
                    // b2 acks m0: receipts to a1 and a2 again.
                    ack(b2, vec![m0_b2]),
                    // a1 tries a2's receipt: not its own, nothing happens.
                    ack(a1, vec![receipt_a2]),
                    // a2 takes its receipt: it is deleted.
                    ack(a2, vec![receipt_a2]),
                ],
            })
            .await
            .unwrap();
        assert_eq!(out.duplicate, vec![false, true, false]);
        assert_eq!(out.acked, vec![1, 0, 1]);
        let ids: Vec<u64> = out.items.iter().map(|(_, i)| i.id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "items in id order");
        assert_eq!(out.items.len(), 3 + 3 + 2, "m1, n1 and two receipts");
        for device in [a1, a2, b1, b2] {
            let stored: Vec<MailItem> = out
                .items
                .iter()
                .filter(|(d, _)| *d == device)
                .map(|(_, i)| i.clone())
                .collect();
            let after = ids[0] - 1;
            assert_eq!(
                s.fetch(device, after, T0, 100).await.unwrap(),
                stored,
                "what the batch reported for a device is what a read finds"
            );
        }
        let a2_all = s.fetch(a2, 0, T0, 100).await.unwrap();
        assert!(
            a2_all.iter().all(|i| i.id() != receipt_a2),
            "an acked receipt is gone"
        );
    })
    .await;
}

/// PostgreSQL, several nodes: a commit that stores items draws its ids
/// only once no other node's commit holds the mailbox order lock, so that
/// ids become visible in id order. Here "another node" holds the lock in
/// an open transaction; the commit must wait for it, then go through.
#[tokio::test]
async fn postgres_commits_draw_mailbox_ids_one_node_at_a_time() {
    use accord_storage::mailbox::MAILBOX_ORDER_LOCK;
    use accord_storage::Backend;
    for t in common::backends("messenger").await {
        if t.db.backend == Backend::Postgres {
            let store = SqlMailboxStore::new(t.db.clone()).await.unwrap();
            let mut other_node = t.db.pool.begin().await.unwrap();
            sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS locked")
                .bind(MAILBOX_ORDER_LOCK)
                .execute(&mut *other_node)
                .await
                .unwrap();
            let (a, b) = (AccountId::random(), AccountId::random());
            let (da, db) = (DeviceId::random(), DeviceId::random());
            let batch = WriteBatch {
                sends: vec![send((a, da), b, "m1", &[db], T0)],
                acks: vec![],
            };
            let committing = tokio::spawn(async move { store.commit_batch(&batch).await });
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert!(
                !committing.is_finished(),
                "a commit drew mailbox ids while another node held the order lock"
            );
            other_node.commit().await.unwrap();
            let out = tokio::time::timeout(std::time::Duration::from_secs(10), committing)
                .await
                .expect("the commit goes through once the lock is free")
                .unwrap()
                .unwrap();
            assert_eq!(out.items.len(), 1);
        }
        t.finish().await;
    }
}

/// A business's send records a `sent` event in its commit, and the
/// recipient's ack a `delivered` one (once per message and recipient,
/// however many devices ack); a person's send and ack record nothing.
/// The metadata reaches the recipient's devices only.
#[tokio::test]
async fn business_sends_and_acks_write_their_status_events_in_the_same_commit() {
    use accord_storage::business::BusinessStore;
    use accord_storage::mailbox::BusinessSend;
    use accord_storage::SqlBusinessStore;
    for t in common::backends("messenger").await {
        let store = SqlMailboxStore::new(t.db.clone()).await.unwrap();
        let events = SqlBusinessStore::new(t.db.clone());
        let (biz, user) = (AccountId::random(), AccountId::random());
        let (bd, u1, u2) = (DeviceId::random(), DeviceId::random(), DeviceId::random());
        for (acct, dev) in [(biz, bd), (user, u1), (user, u2)] {
            store.put_device_keys(acct, dev, "{}", T0).await.unwrap();
        }
        let mut s = send((biz, bd), user, "wamid-1", &[u1, u2], T0);
        for e in &mut s.envelopes {
            e.business_meta = Some(r#"{"category":"utility"}"#.into());
        }
        s.business = Some(BusinessSend {
            category: "utility".into(),
            initiated: true,
        });
        let person = send((user, u1), biz, "hello", &[bd], T0);
        let out = store
            .commit_batch(&WriteBatch {
                sends: vec![s.clone(), person],
                acks: vec![],
            })
            .await
            .unwrap();
        assert_eq!(out.duplicate, vec![false, false]);
        let metas: Vec<Option<String>> = store
            .fetch(u1, 0, T0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|i| match i {
                MailItem::Envelope { business_meta, .. } => business_meta,
                _ => None,
            })
            .collect();
        assert_eq!(metas, vec![Some(r#"{"category":"utility"}"#.to_owned())]);
        let ids: Vec<(DeviceId, u64)> = out
            .items
            .iter()
            .filter(|(d, _)| *d == u1 || *d == u2)
            .map(|(d, i)| (*d, i.id()))
            .collect();
        let acks = ids
            .iter()
            .map(|(d, id)| Ack {
                device: *d,
                ids: vec![*id],
                at: Timestamp(T0.0 + 5),
                expires_at: Timestamp(T0.0 + DAY_MS),
            })
            .collect();
        // The person's message to the business is acked too: no event.
        let back = out
            .items
            .iter()
            .find(|(d, _)| *d == bd)
            .map(|(_, i)| i.id())
            .unwrap();
        let mut acks: Vec<Ack> = acks;
        acks.push(Ack {
            device: bd,
            ids: vec![back],
            at: Timestamp(T0.0 + 5),
            expires_at: Timestamp(T0.0 + DAY_MS),
        });
        commit(&store, vec![s], acks).await;
        let got = events.events(biz, 10).await.unwrap();
        let mut kinds: Vec<(String, String)> = got
            .iter()
            .map(|e| (e.status.clone(), e.message_id.clone()))
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            vec![
                ("delivered".to_owned(), "wamid-1".to_owned()),
                ("sent".to_owned(), "wamid-1".to_owned())
            ],
            "{:?}",
            t.db.backend
        );
        assert!(got.iter().all(|e| e.recipient == user && e.hook_state == 0));
        assert!(events.events(user, 10).await.unwrap().is_empty());
        t.finish().await;
    }
}

/// Batched claims: one transaction, one key per request in order (a
/// device named twice gets two), then the fallback key, then nothing.
#[tokio::test]
async fn batched_claims_take_one_key_each_then_the_fallback() {
    on_each_backend(|s| async move {
        let (a, d, other) = (AccountId::random(), DeviceId::random(), DeviceId::random());
        s.put_device_keys(a, d, "{}", T0).await.unwrap();
        let keys: Vec<(String, String)> = (0..2)
            .map(|i| (format!("k{i}"), format!("{{\"key\":{i}}}")))
            .collect();
        s.add_one_time_keys(d, &keys, Some("{\"fb\":1}"), 10)
            .await
            .unwrap();
        let got = s.claim_one_time_keys(&[d, other, d, d]).await.unwrap();
        assert_eq!(
            got,
            vec![
                Some(("{\"key\":0}".to_owned(), false)),
                None,
                Some(("{\"key\":1}".to_owned(), false)),
                Some(("{\"fb\":1}".to_owned(), true)),
            ]
        );
        assert_eq!(s.one_time_key_count(d).await.unwrap(), (0, true));
    })
    .await;
}
