//! Key transparency through the SDK against the real messenger: a
//! messenger that changes an account's device list or keys behind its
//! key directory is caught by the sending device, a device published
//! without the user makes the user's own audit warn, a verified peer's
//! change blocks sending until accepted, and `accord audit keys`'s auditor
//! refuses a rewritten or forked history.

use accord_client::kt::audit::AuditError;
use accord_client::kt::{Auditor, KtError};
use accord_client::messaging::{MessagingError, OwnWarning, PeerStatus, Recipient};
use accord_client::Client;
use accord_crypto::token::{BearerToken, TokenHash};
use accord_domain::{AccountId, Clock, DeviceId, DeviceInfo, SystemClock, Timestamp};
use accord_e2e::E2eMachine;
use accord_messenger_wire::{KtRoots, SignedRoot};
use accord_storage::mailbox::MailboxStore;
use accord_storage::{MessengerStore, NewDevice};
use reqwest::Method;

use super::server::Server;
use super::{device, Dev};

const NOW: Timestamp = Timestamp(1_800_000_000_000);

fn info() -> DeviceInfo {
    super::server::device_info()
}

/// What a malicious messenger does behind its directory: adds a device of
/// its own (with valid, self-signed keys and one-time keys) to `account`,
/// straight into its database. Gives the device's id.
async fn add_device_behind_the_directory(server: &Server, account: AccountId) -> DeviceId {
    let id = DeviceId::random();
    server
        .store
        .add_device(
            account,
            &NewDevice {
                id,
                info: info(),
                token_hash: TokenHash::of(BearerToken::generate().reveal()),
                at: NOW,
            },
        )
        .await
        .unwrap();
    let mut m = E2eMachine::new(id);
    let keys = String::from_utf8(accord_e2e::encode(&m.device_keys())).unwrap();
    server
        .mailboxes
        .put_device_keys(account, id, &keys, NOW)
        .await
        .unwrap();
    let otks: Vec<(String, String)> = m
        .generate_one_time_keys(5)
        .iter()
        .map(|k| {
            (
                k.key_id.as_str().to_owned(),
                String::from_utf8(accord_e2e::encode(k)).unwrap(),
            )
        })
        .collect();
    server
        .mailboxes
        .add_one_time_keys(id, &otks, None, 100)
        .await
        .unwrap();
    id
}

async fn mailbox_len(server: &Server, device: DeviceId) -> usize {
    server
        .mailboxes
        .fetch(device, 0, SystemClock.now(), 100)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_device_added_outside_the_directory_gets_nothing() {
    let server = Server::start().await;
    let mut alice = device(&server, "+6281100000101").await;
    let bob = device(&server, "+6281100000102").await;
    let to_bob = Recipient::Account(bob.device.account_id());
    alice
        .device
        .send_text(&alice.client, &to_bob, "hello")
        .await
        .unwrap();
    let sends = server.observed.count("POST /v1/messages");

    let evil = add_device_behind_the_directory(&server, bob.device.account_id()).await;
    // The relay keeps device lists 5 s; read Bob's afresh (publishing
    // nothing), as it would once that passed.
    let value = server
        .relay
        .directory_value(bob.device.account_id())
        .await
        .unwrap();
    assert_eq!(
        value.devices().len(),
        2,
        "the server now lists the added device"
    );
    let err = alice
        .device
        .send_text(&alice.client, &to_bob, "the secret plan")
        .await
        .unwrap_err();
    match err {
        MessagingError::Unproven { account, device } => {
            assert_eq!((account, device), (bob.device.account_id(), evil));
        }
        other => panic!("expected unproven_device, got {other:?}"),
    }
    // The first attempt (sessions cached) was refused as stale by the
    // server; after the fresh claim nothing went out at all.
    assert_eq!(
        server.observed.count("POST /v1/messages"),
        sends + 1,
        "one stale attempt, no send after the claim"
    );
    assert_eq!(
        mailbox_len(&server, evil).await,
        0,
        "nothing reached the added device"
    );
}

#[tokio::test]
async fn a_key_swapped_outside_the_directory_is_refused() {
    let server = Server::start().await;
    let mut alice = device(&server, "+6281100000111").await;
    let bob = device(&server, "+6281100000112").await;
    // The messenger replaces the identity keys of Bob's device with keys
    // it holds (validly self-signed), in its database only.
    let mut forged = E2eMachine::new(bob.device.device_id());
    let keys = String::from_utf8(accord_e2e::encode(&forged.device_keys())).unwrap();
    let otk = forged.generate_one_time_keys(1);
    let db = server.store.db().clone();
    sqlx::query("UPDATE e2e_device_keys SET keys_json = $1 WHERE device_id = $2")
        .bind(keys)
        .bind(bob.device.device_id().to_string())
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM e2e_one_time_keys WHERE device_id = $1")
        .bind(bob.device.device_id().to_string())
        .execute(&db.pool)
        .await
        .unwrap();
    server
        .mailboxes
        .add_one_time_keys(
            bob.device.device_id(),
            &[(
                otk[0].key_id.as_str().to_owned(),
                String::from_utf8(accord_e2e::encode(&otk[0])).unwrap(),
            )],
            None,
            100,
        )
        .await
        .unwrap();
    let err = alice
        .device
        .send_text(
            &alice.client,
            &Recipient::Account(bob.device.account_id()),
            "hi",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, MessagingError::Unproven { device, .. } if device == bob.device.device_id()),
        "{err:?}"
    );
    assert_eq!(server.observed.count("POST /v1/messages"), 0);
    assert_eq!(mailbox_len(&server, bob.device.device_id()).await, 0);
}

#[tokio::test]
async fn a_device_published_without_the_user_makes_the_own_audit_warn() {
    let server = Server::start().await;
    let mut alice = device(&server, "+6281100000121").await;
    let audit = alice.device.audit_own(&alice.client).await.unwrap();
    assert_eq!(audit.warnings, vec![], "only this device");
    assert_eq!(audit.devices, 1);

    // The messenger adds a device and even publishes it: the directory now
    // shows it, and Alice's device, which never published it, says so.
    let evil = add_device_behind_the_directory(&server, alice.device.account_id()).await;
    server
        .relay
        .publish_accounts(&[alice.device.account_id()])
        .await
        .unwrap();
    let audit = alice.device.audit_own(&alice.client).await.unwrap();
    assert_eq!(audit.warnings, vec![OwnWarning::UnknownDevice(evil)]);

    // Once the user says it is theirs, the warning goes.
    alice.device.accept_own_device(evil).unwrap();
    let audit = alice.device.audit_own(&alice.client).await.unwrap();
    assert_eq!(audit.warnings, vec![]);
    assert_eq!(audit.devices, 2);
}

#[tokio::test]
async fn a_verified_peers_key_change_blocks_sending_until_accepted() {
    let server = Server::start().await;
    let mut alice = device(&server, "+6281100000131").await;
    let mut bob = device(&server, "+6281100000132").await;
    let carol = device(&server, "+6281100000133").await;
    let (bob_id, carol_id) = (bob.device.account_id(), carol.device.account_id());
    for to in [bob_id, carol_id] {
        alice
            .device
            .send_text(&alice.client, &Recipient::Account(to), "hi")
            .await
            .unwrap();
    }

    // Alice and Bob compare safety numbers: both see the same digits.
    let n = alice
        .device
        .safety_number(&alice.client, bob_id)
        .await
        .unwrap();
    let theirs = bob
        .device
        .safety_number(&bob.client, alice.device.account_id())
        .await
        .unwrap();
    assert_eq!(n.number, theirs.number);
    assert_eq!(n.number.split(' ').count(), 12);
    alice.device.mark_verified(&n).unwrap();
    assert_eq!(alice.device.peer_status(bob_id), Some(PeerStatus::Verified));

    // Bob and Carol each add a device (published as it should be).
    let bob2: Dev = device(&server, "+6281100000132").await;
    let _carol2: Dev = device(&server, "+6281100000133").await;
    // Carol is unverified: the send goes through, with a notice.
    let sent = alice
        .device
        .send_text(&alice.client, &Recipient::Account(carol_id), "still there?")
        .await
        .unwrap();
    assert_eq!(sent.key_changes, vec![carol_id]);
    assert_eq!(sent.devices, 2);
    // Bob is verified: blocked, and it stays blocked.
    for _ in 0..2 {
        let err = alice
            .device
            .send_text(&alice.client, &Recipient::Account(bob_id), "secret")
            .await
            .unwrap_err();
        assert!(
            matches!(err, MessagingError::PeerChanged { account } if account == bob_id),
            "{err:?}"
        );
    }
    assert!(matches!(
        alice.device.peer_status(bob_id),
        Some(PeerStatus::Changed { .. })
    ));
    assert_eq!(mailbox_len(&server, bob2.device.device_id()).await, 0);

    // Accepted: sending works again, to both of Bob's devices, and the
    // new safety number differs from the one compared.
    assert!(alice.device.accept_peer_change(bob_id).unwrap());
    let sent = alice
        .device
        .send_text(&alice.client, &Recipient::Account(bob_id), "ok")
        .await
        .unwrap();
    assert_eq!(sent.devices, 2);
    assert_eq!(
        alice.device.peer_status(bob_id),
        Some(PeerStatus::Unverified)
    );
    let again = alice
        .device
        .safety_number(&alice.client, bob_id)
        .await
        .unwrap();
    assert_ne!(again.number, n.number);
}

/// Gives epoch 2 of the messenger's key-directory log in `data_dir`
/// epoch 1's value, as a writer of the database would; the database,
/// still open.
async fn rewrite_epoch_2(data_dir: &std::path::Path) -> accord_storage::Db {
    let db = accord_storage::Db::open_service(data_dir.to_str().unwrap(), "messenger")
        .await
        .unwrap();
    let value: Vec<u8> = sqlx::query_scalar("SELECT value FROM kt_updates WHERE epoch = 1")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE kt_updates SET value = $1 WHERE epoch = 2")
        .bind(value)
        .execute(&db.pool)
        .await
        .unwrap();
    db
}

async fn roots(client: &Client) -> KtRoots {
    client
        .request(Method::GET, "/v1/kt/roots", None)
        .await
        .unwrap()
}

fn failed(r: Result<accord_client::kt::AuditReport, AuditError>) -> KtError {
    match r {
        Err(AuditError::Failed(k)) => k,
        other => panic!("expected a failed audit, got {other:?}"),
    }
}

#[tokio::test]
async fn the_auditor_refuses_a_rewritten_history() {
    let server = Server::start().await;
    for n in 0..3 {
        let _ = device(&server, &format!("+62811000001{n}1")).await;
    }
    let anon = Client::new(&server.base);
    assert_eq!(roots(&anon).await.latest_epoch, 3);
    let state = tempfile::tempdir().unwrap();
    let mut auditor = Auditor::open(&state.path().join("audit.json")).unwrap();
    let r = auditor.run(&anon).await.unwrap();
    assert_eq!((r.latest_epoch, r.proven), (3, Some((1, 3))));

    // The operator rewrites epoch 2 in the log. With the signed roots
    // left in place the messenger does not even start...
    let dir = server.stop();
    let db = rewrite_epoch_2(dir.path()).await;
    db.pool.close().await;
    let err = Server::start_in(dir).await.err().expect("refuses to start");
    assert!(err.to_string().contains("epoch 2"), "{err}");
    // (`start_in` consumed the directory: rebuild the case on a new one.)

    // ...so it also drops the roots and signs the rewritten history anew.
    let server = Server::start().await;
    for n in 0..3 {
        let _ = device(&server, &format!("+62811000002{n}1")).await;
    }
    let anon = Client::new(&server.base);
    let state = tempfile::tempdir().unwrap();
    let mut auditor = Auditor::open(&state.path().join("audit.json")).unwrap();
    auditor.run(&anon).await.unwrap();
    let dir = server.stop();
    let db = rewrite_epoch_2(dir.path()).await;
    sqlx::query("UPDATE kt_epochs SET root = NULL, signature = NULL")
        .execute(&db.pool)
        .await
        .unwrap();
    db.pool.close().await;
    let server = Server::start_in(dir).await.unwrap();
    let anon = Client::new(&server.base);
    // The rewritten history is consistent in itself: a new auditor passes.
    let fresh = tempfile::tempdir().unwrap();
    Auditor::open(&fresh.path().join("audit.json"))
        .unwrap()
        .run(&anon)
        .await
        .unwrap();
    // The auditor that saw the old roots does not.
    assert_eq!(failed(auditor.run(&anon).await), KtError::Fork(2));
}

#[tokio::test]
async fn the_auditor_refuses_a_forked_history_and_a_bad_append_only_proof() {
    // Two messengers with the same directory keys and different
    // histories: what a messenger showing different views would serve.
    let a = Server::start().await;
    let keys = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    for f in [
        accord_messenger::kt::VRF_KEY_FILE,
        accord_messenger::kt::ROOT_KEY_FILE,
    ] {
        std::fs::copy(a.data_path().join(f), b_dir.path().join(f)).unwrap();
    }
    drop(keys);
    let b = Server::start_in(b_dir).await.unwrap();
    for n in 0..2 {
        let _ = device(&a, &format!("+62811000003{n}1")).await;
        let _ = device(&b, &format!("+62811000004{n}1")).await;
    }
    let (ca, cb) = (Client::new(&a.base), Client::new(&b.base));
    assert_eq!(roots(&ca).await.keys, roots(&cb).await.keys);
    let state = tempfile::tempdir().unwrap();
    let mut auditor = Auditor::open(&state.path().join("audit.json")).unwrap();
    auditor.run(&ca).await.unwrap();
    assert_eq!(failed(auditor.run(&cb).await), KtError::Fork(1));

    // An append-only proof checked against roots it does not join fails.
    let _ = device(&a, "+6281100000351").await;
    let r = roots(&ca).await.roots;
    let keys = accord_client::kt::DirectoryKeys::from_wire(&roots(&ca).await.keys).unwrap();
    let checked: Vec<(u64, [u8; 32])> = r.iter().map(|x| keys.verify_root(x).unwrap()).collect();
    let audit: accord_messenger_wire::KtAudit = ca
        .request(Method::GET, "/v1/kt/audit?from=1&to=2", None)
        .await
        .unwrap();
    accord_client::kt::verify::verify_audit(&checked[0..2], &audit)
        .await
        .unwrap();
    let wrong = [checked[0], (2, checked[2].1)];
    assert!(matches!(
        accord_client::kt::verify::verify_audit(&wrong, &audit).await,
        Err(KtError::Proof(_))
    ));
    // A root whose signature does not verify is refused.
    let mut bad: SignedRoot = r[0].clone();
    bad.root_hash = r[1].root_hash.clone();
    assert_eq!(keys.verify_root(&bad), Err(KtError::BadSignature(1)));
}
