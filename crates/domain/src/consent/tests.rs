use super::*;
use crate::policy::{PolicyDraft, PolicyHistory};
use crate::time::DAY_MS;
use proptest::prelude::*;

const T0: Timestamp = Timestamp(1_800_000_000_000);

fn history(profile: ConsentProfile) -> PolicyHistory {
    PolicyHistory::new(vec![PolicyDraft::new("v1", Purpose::ALL, profile)
        .unwrap()
        .publish(1, T0)])
}

fn run(
    state: &mut ConsentState,
    cmd: ConsentCommand,
    p: &PolicyHistory,
    now: Timestamp,
) -> Result<(), ConsentError> {
    for e in state.decide(&cmd, p, now)? {
        state.apply(&e);
    }
    Ok(())
}

fn registered_before(p: &PolicyHistory) -> ConsentState {
    let mut s = ConsentState::default();
    run(
        &mut s,
        ConsentCommand::Register { accept: None },
        &PolicyHistory::default(),
        Timestamp(0),
    )
    .unwrap();
    assert_eq!(s.access(p, T0), Access::Full);
    s
}

fn accept(version: u32, share: Option<bool>) -> ConsentCommand {
    ConsentCommand::Accept {
        version,
        choice: SharingChoice {
            share,
            grants: Default::default(),
        },
        channel: ConsentChannel::AcceptanceScreen,
    }
}

#[test]
fn deadline_restricts_until_acceptance() {
    let p = history(ConsentProfile::Strict);
    let mut s = registered_before(&p);
    assert_eq!(s.access(&p, T0.plus_days(30).plus_millis(-1)), Access::Full);
    let late = T0.plus_days(30);
    assert!(matches!(
        s.access(&p, late),
        Access::Restricted { version: 1, .. }
    ));
    run(&mut s, accept(1, None), &p, late).unwrap();
    assert_eq!(s.access(&p, late), Access::Full);
}

#[test]
fn whatsapp_box_is_pre_ticked_and_covers_both_purposes() {
    let p = history(ConsentProfile::Whatsapp2016);
    let mut s = registered_before(&p);
    run(&mut s, accept(1, None), &p, T0).unwrap();
    assert_eq!(
        s.granted_purposes(&p, T0),
        Purpose::ALL.into_iter().collect()
    );
    assert!(matches!(
        s.purposes[&Purpose::Ads],
        PurposeState::Granted {
            pre_ticked: true,
            ..
        }
    ));

    let mut unticked = registered_before(&p);
    run(&mut unticked, accept(1, Some(false)), &p, T0).unwrap();
    assert!(unticked.granted_purposes(&p, T0).is_empty());
}

#[test]
fn whatsapp_opt_out_window_is_thirty_days() {
    let p = history(ConsentProfile::Whatsapp2016);
    let mut inside = registered_before(&p);
    run(&mut inside, accept(1, None), &p, T0).unwrap();
    let day29 = T0.plus_days(29);
    run(
        &mut inside,
        ConsentCommand::Withdraw {
            purpose: Purpose::Ads,
            channel: ConsentChannel::PrivacyCentre,
        },
        &p,
        day29,
    )
    .unwrap();
    assert!(
        inside.granted_purposes(&p, day29).is_empty(),
        "opt-out covers both purposes"
    );

    let mut outside = registered_before(&p);
    run(&mut outside, accept(1, None), &p, T0).unwrap();
    let day31 = T0.plus_days(31);
    let err = run(
        &mut outside,
        ConsentCommand::Withdraw {
            purpose: Purpose::Product,
            channel: ConsentChannel::PrivacyCentre,
        },
        &p,
        day31,
    )
    .unwrap_err();
    assert_eq!(err.code(), "opt_out_window_closed");
    assert_eq!(outside.granted_purposes(&p, day31).len(), 2);
}

#[test]
fn strict_purposes_are_separate_and_off_by_default() {
    let p = history(ConsentProfile::Strict);
    let mut s = registered_before(&p);
    run(&mut s, accept(1, None), &p, T0).unwrap();
    assert!(s.granted_purposes(&p, T0).is_empty());
    let later = T0.plus_days(400);
    run(
        &mut s,
        ConsentCommand::Grant {
            purpose: Purpose::Product,
            channel: ConsentChannel::PrivacyCentre,
        },
        &p,
        later,
    )
    .unwrap();
    assert_eq!(
        s.granted_purposes(&p, later),
        [Purpose::Product].into_iter().collect()
    );
    let much_later = later.plus_days(400);
    run(
        &mut s,
        ConsentCommand::Withdraw {
            purpose: Purpose::Product,
            channel: ConsentChannel::PrivacyCentre,
        },
        &p,
        much_later,
    )
    .unwrap();
    assert!(s.granted_purposes(&p, much_later).is_empty());
    assert_eq!(
        s.access(&p, much_later),
        Access::Full,
        "refusing never restricts the messenger"
    );
}

#[test]
fn new_version_never_inherits_consent() {
    let mut p = history(ConsentProfile::Strict);
    let mut s = registered_before(&p);
    run(
        &mut s,
        ConsentCommand::Accept {
            version: 1,
            choice: SharingChoice {
                share: Some(true),
                grants: Default::default(),
            },
            channel: ConsentChannel::AcceptanceScreen,
        },
        &p,
        T0,
    )
    .unwrap();
    let t2 = T0.plus_days(100);
    p.push(
        PolicyDraft::new("v2", Purpose::ALL, ConsentProfile::Strict)
            .unwrap()
            .publish(2, t2),
    );
    // The old grant lasts until v2's deadline, then lapses.
    assert_eq!(s.granted_purposes(&p, t2.plus_days(29)).len(), 2);
    assert!(s.granted_purposes(&p, t2.plus_days(30)).is_empty());
    // Accepting v2 without granting leaves nothing granted.
    run(&mut s, accept(2, None), &p, t2.plus_days(1)).unwrap();
    assert!(s.granted_purposes(&p, t2.plus_days(1)).is_empty());
    // A grant under v1 cannot be made once v2 is in force.
    let mut stale = registered_before(&p);
    let e = stale
        .decide(
            &ConsentCommand::Grant {
                purpose: Purpose::Ads,
                channel: ConsentChannel::PrivacyCentre,
            },
            &p,
            t2,
        )
        .unwrap_err();
    assert_eq!(e.code(), "policy_acceptance_required");
    let e = run(&mut stale, accept(1, None), &p, t2).unwrap_err();
    assert_eq!(e.code(), "policy_version_superseded");
}

#[test]
fn registration_after_publication_requires_acceptance() {
    let p = history(ConsentProfile::Strict);
    let s = ConsentState::default();
    assert_eq!(
        s.decide(&ConsentCommand::Register { accept: None }, &p, T0)
            .unwrap_err()
            .code(),
        "policy_acceptance_required"
    );
    let ev = s
        .decide(
            &ConsentCommand::Register {
                accept: Some((1, SharingChoice::default())),
            },
            &p,
            T0,
        )
        .unwrap();
    assert!(matches!(
        ev[1],
        ConsentEvent::PolicyAccepted {
            version: 1,
            channel: ConsentChannel::Registration,
            ..
        }
    ));
    assert_eq!(
        s.decide(
            &ConsentCommand::Register {
                accept: Some((9, SharingChoice::default()))
            },
            &p,
            T0
        )
        .unwrap_err()
        .code(),
        "unknown_policy_version"
    );
}

#[test]
fn deleted_account_holds_nothing() {
    let p = history(ConsentProfile::Whatsapp2016);
    let mut s = registered_before(&p);
    run(&mut s, accept(1, None), &p, T0).unwrap();
    run(&mut s, ConsentCommand::Delete, &p, T0.plus_days(60)).unwrap();
    assert!(s.granted_purposes(&p, T0.plus_days(60)).is_empty());
    assert_eq!(s.access(&p, T0.plus_days(60)), Access::Deleted);
    assert_eq!(
        s.decide(&ConsentCommand::Delete, &p, T0.plus_days(61))
            .unwrap_err()
            .code(),
        "account_not_found"
    );
}

// ---- property tests -------------------------------------------------------

#[derive(Clone, Debug)]
enum Step {
    Advance(i64),
    Publish(ConsentProfile),
    Accept(Option<bool>, Vec<Purpose>),
    Grant(Purpose),
    Withdraw(Purpose),
    Delete,
}

fn step() -> impl Strategy<Value = Step> {
    let purpose = prop::sample::select(Purpose::ALL.to_vec());
    let profile = prop::sample::select(vec![ConsentProfile::Strict, ConsentProfile::Whatsapp2016]);
    prop_oneof![
        4 => (0i64..45 * DAY_MS).prop_map(Step::Advance),
        1 => profile.prop_map(Step::Publish),
        3 => (prop::option::of(any::<bool>()), prop::collection::vec(purpose.clone(), 0..3)).prop_map(|(s, g)| Step::Accept(s, g)),
        3 => purpose.clone().prop_map(Step::Grant),
        3 => purpose.prop_map(Step::Withdraw),
        1 => Just(Step::Delete),
    ]
}

proptest! {
    /// Whatever the sequence, no accepted command breaks the profile in
    /// force, and folding the recorded events reproduces the live state
    /// at every instant (reconstruction at T equals live state at T).
    #[test]
    fn random_histories_respect_the_rules(steps in prop::collection::vec(step(), 1..60)) {
        let mut policies = PolicyHistory::default();
        let mut now = T0;
        let mut state = ConsentState::default();
        let mut log: Vec<ConsentEvent> = Vec::new();
        let mut snapshots: Vec<(Timestamp, ConsentState)> = Vec::new();
        state.decide(&ConsentCommand::Register { accept: None }, &policies, now).unwrap().into_iter().for_each(|e| { state.apply(&e); log.push(e); });

        for s in steps {
            let before = state.clone();
            let cmd = match s {
                Step::Advance(ms) => { now = now.plus_millis(ms); continue; }
                Step::Publish(profile) => {
                    let v = policies.next_version();
                    policies.push(PolicyDraft::new(format!("v{v}"), Purpose::ALL, profile).unwrap().publish(v, now));
                    // Publishing never grants anything by itself.
                    for p in Purpose::ALL { prop_assert!(!state.is_granted(p, &policies, now) || before.is_granted(p, &policies, now)); }
                    continue;
                }
                Step::Accept(share, grants) => ConsentCommand::Accept {
                    version: policies.latest().map_or(1, |p| p.version),
                    choice: SharingChoice { share, grants: grants.into_iter().collect() },
                    channel: ConsentChannel::AcceptanceScreen,
                },
                Step::Grant(purpose) => ConsentCommand::Grant { purpose, channel: ConsentChannel::PrivacyCentre },
                Step::Withdraw(purpose) => ConsentCommand::Withdraw { purpose, channel: ConsentChannel::PrivacyCentre },
                Step::Delete => ConsentCommand::Delete,
            };
            match state.decide(&cmd, &policies, now) {
                Ok(events) => {
                    for e in &events {
                        // Rule: a grant is only ever recorded under the version in force.
                        if let ConsentEvent::Granted { version, .. } = e {
                            prop_assert_eq!(Some(*version), policies.current_at(now).map(|p| p.version));
                        }
                        // Rule: whatsapp-2016 opt-outs only inside the window,
                        // unless the user is restricted (withdrawal is never blocked).
                        if let ConsentEvent::Withdrawn { .. } = e {
                            let acc = before.accepted.as_ref().unwrap();
                            let restricted = matches!(before.access(&policies, now), Access::Restricted { .. });
                            if let Some(until) = acc.opt_out_until { prop_assert!(now < until || restricted); }
                        }
                        state.apply(e);
                        log.push(e.clone());
                    }
                    if let ConsentCommand::Accept { .. } = cmd {
                        // Non-inheritance: right after acceptance, only what this acceptance granted is granted.
                        let granted_now: BTreeSet<Purpose> = events.iter().filter_map(|e| match e { ConsentEvent::Granted { purpose, .. } => Some(*purpose), _ => None }).collect();
                        prop_assert_eq!(state.granted_purposes(&policies, now), granted_now);
                    }
                    // whatsapp-2016: both purposes always move together.
                    if state.accepted.as_ref().map(|a| a.profile) == Some(ConsentProfile::Whatsapp2016) {
                        let g = state.granted_purposes(&policies, now);
                        prop_assert!(g.is_empty() || g.len() == Purpose::ALL.len());
                    }
                }
                Err(ConsentError::OptOutWindowClosed(until)) => {
                    prop_assert!(now >= until);
                    prop_assert_eq!(&state, &before);
                }
                Err(_) => prop_assert_eq!(&state, &before),
            }
            // Unknown means deny: no grant without an active account and an acceptance.
            for p in Purpose::ALL {
                if state.is_granted(p, &policies, now) {
                    prop_assert!(state.is_active());
                    let granted_here = matches!(state.purposes.get(&p), Some(PurposeState::Granted { .. }));
                    prop_assert!(granted_here);
                    prop_assert_eq!(state.access(&policies, now), Access::Full);
                }
            }
            snapshots.push((now, state.clone()));
        }
        // Reconstruction from the log alone equals the live state at each
        // instant (the last snapshot taken at each instant is the state then).
        snapshots.dedup_by(|later, earlier| {
            if later.0 == earlier.0 { *earlier = later.clone(); true } else { false }
        });
        for (t, live) in snapshots {
            let rebuilt = ConsentState::from_events(log.iter().filter(|e| e.at() <= t));
            prop_assert_eq!(rebuilt, live);
        }
    }
}
