//! The consent ledger as a transparency log, tried as an attacker with
//! write access to the messenger's database would: a truncation or a
//! rewrite with the chain and the head rows recomputed passes the chain
//! check, and is caught by checkpoints held outside the database (the
//! partner's, a user's receipt); a forged append is named; the partner
//! refuses shares whose citation does not allow them, and everything it
//! holds cites an active grant of its purpose.

use crate::helpers::{share, spawn_app, AppOptions, TestApp, LOG_SEED};
use accord_domain::consent::{ConsentChannel, ConsentEvent};
use accord_domain::coordination::{Citation, FeedBatch, FeedEvent};
use accord_domain::ledger::{entry_hash, ChainError, Hash, LedgerEntry, LedgerRecord, GENESIS};
use accord_domain::receipt::ConsentReceipt;
use accord_domain::transparency::testing::{granted, TestLog};
use accord_domain::transparency::{shard_of, LogKey, LogSigner, SignedCheckpoint, WitnessError};
use accord_domain::{AccountId, ConsentProfile, PseudonymId, Purpose, Timestamp};
use accord_messenger::service::{verify_ledger, LedgerVerifyError};
use accord_storage::MessengerStore;
use serde_json::Value;

fn opts() -> AppOptions {
    AppOptions {
        with_keyd: true,
        with_partner: true,
        default_profile: ConsentProfile::Strict,
        ..AppOptions::default()
    }
}

fn key() -> LogKey {
    LogSigner::from_seed(&LOG_SEED).public()
}

/// Users sharing every purpose, delivered to the partner (which keeps
/// the batches' checkpoints); returns their accounts and one's receipt.
async fn shared_users(app: &TestApp, n: u16) -> (Vec<AccountId>, ConsentReceipt) {
    let v = app.publish(ConsentProfile::Strict, &Purpose::ALL).await;
    let mut accounts = Vec::new();
    let mut first = None;
    for i in 0..n {
        let u = app
            .register(
                &format!("+6281234569{i:03}"),
                Some((v.version, share(Some(true)))),
            )
            .await;
        accounts.push(u.consent().await.unwrap().account_id);
        first.get_or_insert(u);
    }
    app.feed.as_ref().unwrap().drain(20).await.unwrap();
    // The first user's receipt, after the propagations were recorded.
    let r: Value = first.unwrap().receipt().await.unwrap();
    (accounts, serde_json::from_value(r).unwrap())
}

async fn partner_checkpoints(app: &TestApp) -> Vec<SignedCheckpoint> {
    app.partner.as_ref().unwrap().checkpoints().await.unwrap()
}

async fn exec(app: &TestApp, sql: &str) {
    sqlx::query(sql)
        .execute(&app.store.db().pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn shard_entries(app: &TestApp, shard: u16) -> Vec<LedgerEntry> {
    app.store.ledger_page(shard, 0, 10_000).await.unwrap()
}

/// Rewrites shard `shard` from entry `from` on (1-based) with `edit`
/// applied to that entry, re-chaining everything after it and the head,
/// as an attacker who can write the database would.
async fn rewrite(app: &TestApp, shard: u16, from: u64, edit: impl Fn(&mut LedgerEntry)) {
    let mut es = shard_entries(app, shard).await;
    let mut prev: Hash = if from == 1 {
        GENESIS
    } else {
        es[from as usize - 2].hash
    };
    for e in es.iter_mut().skip(from as usize - 1) {
        if e.seq == from {
            edit(e);
        }
        e.prev_hash = prev;
        e.hash = entry_hash(&prev, e.seq, e.at, e.account, &e.kind, &e.payload);
        prev = e.hash;
        sqlx::query(
            "UPDATE ledger SET at = $1, payload = $2, prev_hash = $3, hash = $4 WHERE shard = $5 AND seq = $6",
        )
        .bind(e.at.0)
        .bind(&e.payload)
        .bind(e.prev_hash.to_vec())
        .bind(e.hash.to_vec())
        .bind(shard as i64)
        .bind(e.seq as i64)
        .execute(&app.store.db().pool)
        .await
        .unwrap();
    }
    sqlx::query("UPDATE ledger_shards SET hash = $1 WHERE shard = $2")
        .bind(prev.to_vec())
        .bind(shard as i64)
        .execute(&app.store.db().pool)
        .await
        .unwrap();
}

/// The shard holding most of the users' entries, and its size.
async fn busiest_shard(app: &TestApp) -> (u16, u64) {
    let heads = app.store.ledger_heads().await.unwrap();
    let (shard, size, _) = heads.into_iter().max_by_key(|h| h.1).unwrap();
    (shard, size)
}

#[tokio::test]
async fn truncation_with_the_head_updated_passes_the_chain_and_contradicts_outside_checkpoints() {
    let app = spawn_app(opts()).await;
    let (accounts, receipt) = shared_users(&app, 6).await;
    let held = partner_checkpoints(&app).await;
    assert!(!held.is_empty(), "the feed brought checkpoints");
    let report = verify_ledger(&*app.store, &held, Some(&key()))
        .await
        .unwrap();
    assert!(report.checkpoints_checked >= held.len());
    // The receipt holds offline.
    receipt.verify(&key()).unwrap();

    // Remove the entries of the receipt holder's shard from the last one
    // the partner's newest checkpoint covers, and set the head to match,
    // as an attacker who can write the database would. (Entries after the
    // newest checkpoint anyone holds, such as the propagations recorded
    // after the last batch, are not covered: see the threat model.)
    let shard = shard_of(accounts[0]);
    let es = shard_entries(&app, shard).await;
    let covered = held
        .iter()
        .filter(|c| c.checkpoint.shard == shard)
        .map(|c| c.checkpoint.size)
        .max()
        .expect("the partner holds a checkpoint of the shard") as usize;
    let keep = covered - 1;
    exec(
        &app,
        &format!("DELETE FROM ledger WHERE shard = {shard} AND seq > {keep}"),
    )
    .await;
    sqlx::query("UPDATE ledger_shards SET seq = $1, hash = $2 WHERE shard = $3")
        .bind(keep as i64)
        .bind(es[keep - 1].hash.to_vec())
        .bind(shard as i64)
        .execute(&app.store.db().pool)
        .await
        .unwrap();

    // The chain and its head alone say "intact": that was the hole.
    verify_ledger(&*app.store, &[], None).await.unwrap();
    // The partner's checkpoints say otherwise.
    match verify_ledger(&*app.store, &held, Some(&key())).await {
        Err(LedgerVerifyError::Witness(WitnessError::Truncated {
            shard: s, found, ..
        })) => {
            assert_eq!((s, found), (shard, keep as u64));
        }
        other => panic!("the partner's checkpoints must catch the truncation: {other:?}"),
    }
    // So do the receipt's.
    match verify_ledger(&*app.store, &receipt.ledger.checkpoints, Some(&key())).await {
        Err(LedgerVerifyError::Witness(WitnessError::Truncated { .. })) => {}
        other => panic!("the receipt's checkpoints must catch the truncation: {other:?}"),
    }
}

#[tokio::test]
async fn a_rewrite_with_the_chain_recomputed_contradicts_outside_checkpoints() {
    let app = spawn_app(opts()).await;
    let (accounts, receipt) = shared_users(&app, 6).await;
    let held = partner_checkpoints(&app).await;
    let shard = shard_of(accounts[0]);
    // Back-date the receipt holder's first grant, and re-chain.
    let grant = shard_entries(&app, shard)
        .await
        .into_iter()
        .find(|e| e.account == Some(accounts[0]) && e.kind == "granted")
        .unwrap();
    rewrite(&app, shard, grant.seq, |e| {
        e.at = Timestamp(e.at.0 - 86_400_000)
    })
    .await;
    verify_ledger(&*app.store, &[], None)
        .await
        .expect("a recomputed chain passes the chain check alone");
    assert!(matches!(
        verify_ledger(&*app.store, &held, Some(&key())).await,
        Err(LedgerVerifyError::Witness(WitnessError::Rewritten { .. }))
    ));
    assert!(matches!(
        verify_ledger(&*app.store, &receipt.ledger.checkpoints, Some(&key())).await,
        Err(LedgerVerifyError::Witness(WitnessError::Rewritten { .. }))
    ));
}

#[tokio::test]
async fn a_forged_append_without_the_head_is_named() {
    let app = spawn_app(opts()).await;
    shared_users(&app, 3).await;
    let (shard, size) = busiest_shard(&app).await;
    let last = shard_entries(&app, shard).await.pop().unwrap();
    let forged = LedgerRecord::consent(
        last.account.unwrap(),
        ConsentEvent::Granted {
            purpose: Purpose::Ads,
            version: 1,
            at: Timestamp(last.at.0 + 1),
            channel: ConsentChannel::PrivacyCentre,
            pre_ticked: false,
        },
    )
    .seal(size + 1, last.hash);
    sqlx::query(
        "INSERT INTO ledger (shard, seq, at, account_id, kind, payload, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(shard as i64)
    .bind(forged.seq as i64)
    .bind(forged.at.0)
    .bind(forged.account.map(|a| a.0.to_string()))
    .bind(&forged.kind)
    .bind(&forged.payload)
    .bind(forged.prev_hash.to_vec())
    .bind(forged.hash.to_vec())
    .execute(&app.store.db().pool)
    .await
    .unwrap();
    match verify_ledger(&*app.store, &[], None).await {
        Err(LedgerVerifyError::Chain {
            shard: s,
            error: ChainError::Unrecorded { seq },
        }) => assert_eq!((s, seq), (shard, size + 1)),
        other => panic!("the forged entry must be named: {other:?}"),
    }
}

const FAKE_SHARD: u16 = 9;

fn share_of(id: u64, p: PseudonymId, citations: Vec<Citation>) -> FeedEvent {
    FeedEvent {
        event_id: id,
        pseudonym: p,
        key_version: 1,
        purposes: [Purpose::Ads].into_iter().collect(),
        devices: vec![crate::helpers::device_info()],
        citations,
        reason: "share".into(),
    }
}

async fn ingest(
    app: &TestApp,
    batch: &FeedBatch,
) -> Result<accord_domain::coordination::FeedAck, accord_partner::service::PartnerError> {
    let partner = app.partner.as_ref().unwrap();
    let body = serde_json::to_vec(batch).unwrap();
    let now = partner.now().0;
    let nonce = accord_crypto::mac::nonce();
    let signature = accord_crypto::mac::sign(
        b"feed secret of this test",
        &accord_crypto::mac::SignedRequest {
            method: "POST",
            path: accord_domain::coordination::INGEST_PATH,
            timestamp_ms: now,
            nonce: &nonce,
            body: &body,
        },
    );
    partner
        .ingest(
            &accord_partner::service::FeedAuth {
                timestamp_ms: now,
                nonce,
                signature,
            },
            &body,
        )
        .await
}

#[tokio::test]
async fn the_partner_refuses_shares_whose_citation_does_not_allow_them() {
    use accord_partner::service::PartnerError;
    let app = spawn_app(opts()).await;
    let partner = app.partner.clone().unwrap();
    let mut log = TestLog::new(LOG_SEED, FAKE_SHARD);
    let p = PseudonymId::from_bytes([0x5a; 32]);
    let refused = |code: &str, r: Result<_, PartnerError>| match r {
        Err(PartnerError::Citation { error, .. }) => assert_eq!(error.code(), code),
        other => panic!("expected {code}, got {other:?}"),
    };

    // Nothing cited.
    refused(
        "citation_missing",
        ingest(
            &app,
            &FeedBatch {
                events: vec![share_of(10, p, vec![])],
                checkpoints: vec![],
            },
        )
        .await,
    );
    // A refusal cited.
    let e = log.append(ConsentEvent::Refused {
        purpose: Purpose::Ads,
        version: 1,
        at: Timestamp(1),
        channel: ConsentChannel::PrivacyCentre,
    });
    let (c, cp) = (log.cite(Purpose::Ads, &e), log.checkpoint());
    refused(
        "citation_not_a_grant",
        ingest(
            &app,
            &FeedBatch {
                events: vec![share_of(11, p, vec![c])],
                checkpoints: vec![cp],
            },
        )
        .await,
    );
    // The other purpose's grant cited.
    let e = log.append(granted(Purpose::Product));
    let (c, cp) = (log.cite(Purpose::Ads, &e), log.checkpoint());
    refused(
        "citation_other_purpose",
        ingest(
            &app,
            &FeedBatch {
                events: vec![share_of(12, p, vec![c])],
                checkpoints: vec![cp],
            },
        )
        .await,
    );
    // A grant that is not in the signed log (its proof does not hold).
    let e = log.append(granted(Purpose::Ads));
    let (mut c, cp) = (log.cite(Purpose::Ads, &e), log.checkpoint());
    c.entry.at = Timestamp(2);
    refused(
        "citation_proof_invalid",
        ingest(
            &app,
            &FeedBatch {
                events: vec![share_of(13, p, vec![c])],
                checkpoints: vec![cp.clone()],
            },
        )
        .await,
    );
    // A checkpoint signed by another key.
    let e = log.append(granted(Purpose::Ads));
    let c = log.cite(Purpose::Ads, &e);
    let forged = LogSigner::from_seed(&[1; 32]).sign(log.tree.checkpoint(FAKE_SHARD, Timestamp(1)));
    assert!(matches!(
        ingest(
            &app,
            &FeedBatch {
                events: vec![share_of(14, p, vec![c.clone()])],
                checkpoints: vec![forged],
            },
        )
        .await,
        Err(PartnerError::Checkpoint(_))
    ));
    // Nothing of any of them was stored.
    assert!(partner
        .store
        .record(&p, Purpose::Ads)
        .await
        .unwrap()
        .is_none());
    // The same share with its grant proven is applied, and the record
    // keeps the citation.
    let cp = log.checkpoint();
    let ack = ingest(
        &app,
        &FeedBatch {
            events: vec![share_of(15, p, vec![c.clone()])],
            checkpoints: vec![cp],
        },
    )
    .await
    .unwrap();
    assert!(ack.results[0].applied);
    let r = partner
        .store
        .record(&p, Purpose::Ads)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.ledger_ref.unwrap().seq, c.entry.seq);
    // A checkpoint that contradicts a kept one (same size, other root) is
    // equivocation, and refused.
    let mut other = TestLog::new(LOG_SEED, FAKE_SHARD);
    for _ in 0..log.tree.len() {
        other.append(granted(Purpose::Ads));
    }
    let fork = other.checkpoint();
    assert!(matches!(
        ingest(
            &app,
            &FeedBatch {
                events: vec![],
                checkpoints: vec![fork],
            },
        )
        .await,
        Err(PartnerError::Equivocation)
    ));
}

#[tokio::test]
async fn every_record_the_partner_holds_cites_an_active_grant_of_its_purpose() {
    let app = spawn_app(opts()).await;
    let v = app.publish(ConsentProfile::Strict, &Purpose::ALL).await;
    let mut users = Vec::new();
    for i in 0..8u16 {
        let u = app
            .register(
                &format!("+6281234570{i:03}"),
                Some((v.version, share(Some(true)))),
            )
            .await;
        users.push(u);
    }
    app.feed.as_ref().unwrap().drain(20).await.unwrap();
    // A realistic history: withdrawals, re-grants, the other purpose.
    users[1].withdraw(Purpose::Ads).await.unwrap();
    users[2].withdraw(Purpose::Product).await.unwrap();
    users[3].withdraw(Purpose::Ads).await.unwrap();
    users[3].grant(Purpose::Ads).await.unwrap();
    users[4].withdraw(Purpose::Ads).await.unwrap();
    users[4].withdraw(Purpose::Product).await.unwrap();
    app.feed.as_ref().unwrap().drain(20).await.unwrap();
    users[5].withdraw(Purpose::Product).await.unwrap();
    users[5].grant(Purpose::Product).await.unwrap();
    app.feed.as_ref().unwrap().drain(20).await.unwrap();

    let partner = app.partner.as_ref().unwrap();
    let mut checked = 0;
    for u in &users {
        let a = u.consent().await.unwrap().account_id;
        let p = app
            .store
            .pseudonym_of(
                a,
                accord_crypto::oprf::OprfPurpose::Coordination,
                accord_crypto::oprf::KeyVersion(1),
            )
            .await
            .unwrap()
            .unwrap();
        let entries = app.store.ledger_for_account(a).await.unwrap();
        for purpose in Purpose::ALL {
            let Some(record) = partner.store.record(&p, purpose).await.unwrap() else {
                continue;
            };
            let r = record.ledger_ref.expect("every record cites its grant");
            let (_, cited) = entries
                .iter()
                .find(|(s, e)| *s == r.shard && e.seq == r.seq)
                .expect("the cited entry is the account's");
            assert_eq!(hex::encode(cited.hash), r.hash);
            // A grant of this purpose, and the latest decision about it.
            let latest = entries
                .iter()
                .rev()
                .filter_map(|(_, e)| e.consent_event().map(|ev| (e, ev)))
                .find(|(_, ev)| match ev {
                    ConsentEvent::Granted { purpose: q, .. }
                    | ConsentEvent::Refused { purpose: q, .. }
                    | ConsentEvent::Withdrawn { purpose: q, .. } => *q == purpose,
                    _ => false,
                })
                .unwrap();
            assert_eq!(latest.0, cited, "{purpose} cites its active grant");
            assert!(matches!(latest.1, ConsentEvent::Granted { .. }));
            checked += 1;
        }
    }
    // 8 users × 2 purposes, less user 1's ads, user 2's product and
    // user 4's both.
    assert_eq!(checked, 16 - 4);
}

#[tokio::test]
async fn proofs_are_served_publicly_and_verify() {
    let app = spawn_app(opts()).await;
    shared_users(&app, 4).await;
    let get = |path: String| {
        let http = app.http.clone();
        let url = format!("{}{path}", app.base_url);
        async move {
            let r = http.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let info = get("/v1/transparency/key".into()).await;
    assert_eq!(info["log_key"], key().to_hex());
    let cps: Vec<SignedCheckpoint> =
        serde_json::from_value(get("/v1/transparency/checkpoints".into()).await).unwrap();
    assert_eq!(cps.len(), 16);
    for c in &cps {
        key().verify(c).unwrap();
    }
    let (shard, size) = busiest_shard(&app).await;
    let old = cps.iter().find(|c| c.checkpoint.shard == shard).unwrap();
    // Grow the shard, then prove the old checkpoint is a prefix of the new.
    let u = app
        .register("+6281234571000", Some((1, share(Some(true)))))
        .await;
    u.withdraw(Purpose::Ads).await.unwrap();
    let new: Vec<SignedCheckpoint> =
        serde_json::from_value(get("/v1/transparency/checkpoints".into()).await).unwrap();
    let new = new.iter().find(|c| c.checkpoint.shard == shard).unwrap();
    let proof: accord_domain::transparency::Consistency = serde_json::from_value(
        get(format!(
            "/v1/transparency/consistency?shard={shard}&from={size}&to={}",
            new.checkpoint.size
        ))
        .await,
    )
    .unwrap();
    proof.verify(&old.checkpoint, &new.checkpoint).unwrap();
    let inc: accord_messenger_wire::ProvenInclusion = serde_json::from_value(
        get(format!("/v1/transparency/inclusion?shard={shard}&seq=1")).await,
    )
    .unwrap();
    key().verify(&inc.checkpoint).unwrap();
    let first = shard_entries(&app, shard).await.remove(0);
    inc.inclusion
        .verify(&first, &inc.checkpoint.checkpoint)
        .unwrap();
    assert!(
        inc.inclusion.path.len() as f64 <= (inc.checkpoint.checkpoint.size as f64).log2().ceil()
    );
}
