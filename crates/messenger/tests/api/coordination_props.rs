//! Property: after the feed drains, what the partner holds is exactly the
//! function of the ledger that DESIGN.md states — for every user, the
//! purposes with an active grant now, under the user's coordination
//! pseudonym, and nothing of anyone else — whatever the history:
//! registrations, grants, withdrawals, policy publications, deadlines,
//! number changes, account deletions, partner outages, messenger restarts,
//! and earlier batches delivered again out of order.

use crate::helpers::{grants, share, spawn_app, AppOptions, TestApp};
use accord_client::Client;
use accord_crypto::oprf::{KeyVersion, OprfPurpose};
use accord_domain::{AccountId, ConsentProfile, Purpose};
use accord_messenger::feed::{Dispatcher, FeedConfig};
use accord_storage::MessengerStore;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug)]
enum Step {
    Register(u8, Option<bool>, Vec<Purpose>),
    Grant(u8, Purpose),
    Withdraw(u8, Purpose),
    Accept(u8, Option<bool>),
    Publish(ConsentProfile),
    AdvanceDays(i64),
    Delete(u8),
    /// A pass with the partner unreachable.
    Outage,
    /// A pass by a freshly started dispatcher (a messenger restart).
    Restart,
    /// An earlier batch delivered again, out of order (duplicate/replay).
    Replay(usize),
    /// The user moves to a new number.
    ChangeNumber(u8),
    Drain,
}

fn step() -> impl Strategy<Value = Step> {
    let user = 0u8..4;
    let purpose = prop::sample::select(Purpose::ALL.to_vec());
    let profile = prop::sample::select(vec![ConsentProfile::Strict, ConsentProfile::Whatsapp2016]);
    prop_oneof![
        3 => (user.clone(), prop::option::of(any::<bool>()), prop::collection::vec(purpose.clone(), 0..2)).prop_map(|(u, s, g)| Step::Register(u, s, g)),
        3 => (user.clone(), purpose.clone()).prop_map(|(u, p)| Step::Grant(u, p)),
        3 => (user.clone(), purpose).prop_map(|(u, p)| Step::Withdraw(u, p)),
        2 => (user.clone(), prop::option::of(any::<bool>())).prop_map(|(u, s)| Step::Accept(u, s)),
        1 => profile.prop_map(Step::Publish),
        2 => (1i64..40).prop_map(Step::AdvanceDays),
        1 => user.prop_map(Step::Delete),
        1 => Just(Step::Outage),
        1 => Just(Step::Restart),
        2 => any::<usize>().prop_map(Step::Replay),
        1 => (0u8..4).prop_map(Step::ChangeNumber),
        2 => Just(Step::Drain),
    ]
}

fn phone(u: u8, generation: u32) -> String {
    format!("+628123457{:01}{:02}", u, generation % 100)
}

async fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let app = spawn_app(AppOptions {
        with_keyd: true,
        with_partner: true,
        ..AppOptions::default()
    })
    .await;
    let mut live = app.feed.clone().unwrap();
    let tap = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    live.config.tap = Some(tap.clone());
    let live = live;
    let dead = Dispatcher::new(
        live.messenger.clone(),
        FeedConfig::new("http://127.0.0.1:9", b"x".to_vec()),
    );
    let mut users: BTreeMap<u8, (Client, AccountId)> = BTreeMap::new();
    let mut tokens: BTreeMap<u8, String> = BTreeMap::new();
    let mut ever: Vec<AccountId> = Vec::new();
    let mut generation = 0u32;
    app.publish(ConsentProfile::Strict, &Purpose::ALL).await;

    for s in steps {
        let current = app
            .admin
            .policies()
            .await
            .unwrap()
            .last()
            .map(|p| p.version);
        match s {
            Step::Register(u, share_box, gs) => {
                if users.contains_key(&u) {
                    continue;
                }
                generation += 1;
                let profile = app.admin.policies().await.unwrap().last().unwrap().profile;
                let choice = if profile == ConsentProfile::Whatsapp2016 || gs.is_empty() {
                    share(share_box)
                } else {
                    grants(&gs)
                };
                let dev = app
                    .register_device(&phone(u, generation), current.map(|v| (v, choice)))
                    .await;
                tokens.insert(u, dev.reg.token.clone());
                let c = dev.api;
                let id = c.consent().await.unwrap().account_id;
                ever.push(id);
                users.insert(u, (c, id));
            }
            Step::Grant(u, p) => {
                if let Some((c, _)) = users.get(&u) {
                    let _ = c.grant(p).await;
                }
            }
            Step::Withdraw(u, p) => {
                if let Some((c, _)) = users.get(&u) {
                    let _ = c.withdraw(p).await;
                }
            }
            Step::Accept(u, s) => {
                if let (Some((c, _)), Some(v)) = (users.get(&u), current) {
                    let _ = c.accept_policy(v, &share(s)).await;
                }
            }
            Step::Publish(profile) => {
                app.publish(profile, &Purpose::ALL).await;
            }
            Step::AdvanceDays(d) => {
                app.advance_days(d).await;
            }
            Step::Delete(u) => {
                if let Some((c, _)) = users.remove(&u) {
                    c.delete_account().await.unwrap();
                }
            }
            Step::Outage => {
                let r = dead.run_once().await.unwrap();
                prop_assert!(!r.failed || r.events_sent > 0);
            }
            Step::Restart => {
                let fresh = Dispatcher::new(live.messenger.clone(), live.config.clone());
                fresh.run_once().await.unwrap();
            }
            Step::ChangeNumber(u) => {
                if let Some(token) = tokens.get(&u).filter(|_| users.contains_key(&u)) {
                    generation += 1;
                    let body = crate::helpers::Body::Json(
                        serde_json::json!({ "phone": phone(u, generation) }),
                    );
                    let r = app
                        .send(reqwest::Method::POST, "/v1/me/number", Some(token), body)
                        .await;
                    if r.status == 202 {
                        let id = r.body["registration_id"].as_str().unwrap().to_owned();
                        let code = crate::helpers::Body::Json(
                            serde_json::json!({ "code": r.body["dev_code"] }),
                        );
                        let _ = app
                            .send(
                                reqwest::Method::POST,
                                &format!("/v1/me/number/{id}/verify"),
                                Some(token),
                                code,
                            )
                            .await;
                    }
                }
            }
            Step::Replay(k) => {
                let sent = tap.lock().unwrap().clone();
                if !sent.is_empty() {
                    let b = &sent[k % sent.len()];
                    // Refused as a replay (or stale); never harmful.
                    let auth = accord_partner::service::FeedAuth {
                        timestamp_ms: b.timestamp_ms,
                        nonce: b.nonce.clone(),
                        signature: b.signature.clone(),
                    };
                    let _ = app.partner.as_ref().unwrap().ingest(&auth, &b.body).await;
                }
            }
            Step::Drain => {
                live.drain(10).await.unwrap();
            }
        }
    }
    // Let every backoff expire, then drain.
    app.advance(0, 0, 3600).await;
    let r = live.drain(50).await.unwrap();
    prop_assert!(!r.failed);
    prop_assert_eq!(app.store.feed_stats().await.unwrap().pending_events, 0);
    check(&app, &ever).await
}

/// Partner state == the ledger's verdict, for every account ever created.
async fn check(app: &TestApp, ever: &[AccountId]) -> Result<(), TestCaseError> {
    let partner = app.partner.as_ref().unwrap();
    let policies = app.store.policies().await.unwrap();
    let now = app.now().await;
    let mut expected_records: BTreeMap<Purpose, BTreeSet<accord_domain::PseudonymId>> =
        BTreeMap::new();
    for a in ever {
        // The verdict comes from the ledger alone.
        let entries = app.store.ledger_for_account(*a).await.unwrap();
        let state =
            accord_domain::ledger::consent_state_at(entries.iter().map(|(_, e)| e), *a, now);
        let granted = state.granted_purposes(&policies, now);
        if granted.is_empty() {
            continue;
        }
        let p = app
            .store
            .pseudonym_of(*a, OprfPurpose::Coordination, KeyVersion(1))
            .await
            .unwrap()
            .expect("a granted account has a pseudonym");
        for g in granted {
            expected_records.entry(g).or_default().insert(p);
        }
    }
    for purpose in Purpose::ALL {
        let held: BTreeSet<accord_domain::PseudonymId> = partner
            .store
            .pseudonyms(purpose)
            .await
            .unwrap()
            .into_iter()
            .collect();
        let want = expected_records.remove(&purpose).unwrap_or_default();
        prop_assert_eq!(held, want, "purpose {}", purpose);
    }
    // Every holding the partner gave up is confirmed in the ledger.
    for a in ever {
        let kinds: Vec<String> = app
            .store
            .ledger_for_account(*a)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| e.account == Some(*a))
            .map(|e| e.kind)
            .collect();
        let shared = kinds.iter().filter(|k| *k == "propagated").count();
        let holding = app.store.partner_holding(*a).await.unwrap();
        if shared > 0 && holding.is_none() {
            prop_assert!(
                kinds.iter().any(|k| k == "deletion_confirmed"),
                "no confirmed deletion: {:?}",
                kinds
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn partner_state_is_the_function_of_the_ledger(steps in prop::collection::vec(step(), 1..25)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run(steps))?;
    }
}
