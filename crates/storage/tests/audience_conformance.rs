//! The audience store's conformance suite, on SQLite and PostgreSQL (a
//! fresh database per run on 127.0.0.1:5432, dropped afterwards, whose
//! audience tables are partitioned by prefix; `ACCORD_SKIP_POSTGRES=1`
//! skips that half): triggers mark the partitions whose eligible entries
//! change, staging is idempotent and keeps only eligible candidates,
//! partitions are bounded by the first byte (0 and 255 included), the
//! eligible set follows both kinds of consent, finishing stores members
//! and deletes everything staged, and members and candidates leave when
//! consent goes.

mod common;

use accord_domain::audience::report::DpState;
use accord_domain::{PseudonymId, Purpose, Timestamp};
use accord_storage::audience::{
    Advertiser, Audience, AudienceStore, Candidate, SqlAudienceStore, Upload,
};
use accord_storage::partner::{IncomingEvent, PartnerStore, PartnerUser, SqlPartnerStore};
use uuid::Uuid;

const T0: Timestamp = Timestamp(1_800_000_000_000);

fn p(first: u8, n: u8) -> PseudonymId {
    let mut b = [n; 32];
    b[0] = first;
    PseudonymId::from_bytes(b)
}

fn ads(id: u64, who: PseudonymId, purposes: &[Purpose]) -> IncomingEvent {
    IncomingEvent {
        event_id: id,
        pseudonym: who,
        key_version: 1,
        purposes: purposes.iter().copied().collect(),
        devices: vec![],
        citations: Default::default(),
    }
}

async fn user(partner: &SqlPartnerStore, phone: PseudonymId, ads_on: bool) -> Uuid {
    let u = PartnerUser {
        id: Uuid::new_v4(),
        name: "u".into(),
        phone_pseudonym: None,
        ads_personalisation: false,
        created_at: T0,
    };
    let token = *Uuid::new_v4().as_bytes();
    let mut th = [0u8; 32];
    th[..16].copy_from_slice(&token);
    partner.create_user(&u, &th).await.unwrap();
    partner.set_phone_pseudonym(u.id, &phone, T0).await.unwrap();
    partner.set_ads_personalisation(u.id, ads_on).await.unwrap();
    u.id
}

#[tokio::test]
async fn audiences_stage_match_and_forget_on_both_backends() {
    for t in common::backends("audience").await {
        let partner = SqlPartnerStore::new(t.db.clone()).await.unwrap();
        let store = SqlAudienceStore::new(t.db.clone());

        // Eligible: phone (0,1) with ads on and email (255,9); (255,2)
        // held for ads. Not: (0,3) ads off, with email (7,7).
        let u1 = user(&partner, p(0, 1), true).await;
        partner
            .set_email_pseudonym(u1, Some(&p(255, 9)))
            .await
            .unwrap();
        partner
            .apply_event(&ads(1, p(255, 2), &[Purpose::Ads]), T0)
            .await
            .unwrap();
        let u3 = user(&partner, p(0, 3), false).await;
        partner
            .set_email_pseudonym(u3, Some(&p(7, 7)))
            .await
            .unwrap();
        let mut e0 = store.eligible_partition(0).await.unwrap();
        e0.sort();
        assert_eq!(e0, vec![(p(0, 1), p(0, 1))]);
        let mut e255 = store.eligible_partition(255).await.unwrap();
        e255.sort();
        assert_eq!(e255, vec![(p(255, 2), p(255, 2)), (p(255, 9), p(0, 1))]);
        assert!(store.eligible_partition(7).await.unwrap().is_empty());
        assert!(store.eligible_partition(1).await.unwrap().is_empty());
        // Every partition a change touched is marked, once; taking the
        // marks clears them.
        assert_eq!(store.take_dirty().await.unwrap(), vec![0, 7, 255]);
        assert!(store.take_dirty().await.unwrap().is_empty());

        let adv = Advertiser {
            id: Uuid::new_v4(),
            name: "Shop".into(),
            created_at: T0,
        };
        store.create_advertiser(&adv, &[3; 32]).await.unwrap();
        assert_eq!(
            store.advertiser_by_token(&[3; 32]).await.unwrap(),
            Some(adv.clone())
        );
        let aud = Audience {
            id: Uuid::new_v4(),
            advertiser_id: adv.id,
            name: "a".into(),
            size: DpState::default(),
            created_at: T0,
        };
        store.create_audience(&aud).await.unwrap();
        assert!(store
            .create_audience(&Audience {
                id: Uuid::new_v4(),
                ..aud.clone()
            })
            .await
            .is_err());
        let up = Upload {
            id: Uuid::new_v4(),
            audience_id: aud.id,
            batches: 2,
            created_at: T0,
            expires_at: T0.plus_millis(1_000),
            matching_since: None,
            result: None,
        };
        store.start_upload(&up).await.unwrap();
        let cand = |row: u64, member: PseudonymId| Candidate { row, member };
        // Row 2 names (0,3), whose ads are off: not kept.
        let batch0 = [cand(0, p(0, 1)), cand(1, p(255, 2)), cand(2, p(0, 3))];
        assert!(store.stage_batch(up.id, 0, 3, &batch0).await.unwrap());
        assert!(
            !store.stage_batch(up.id, 0, 3, &batch0).await.unwrap(),
            "staged once"
        );
        assert_eq!(store.staged(up.id).await.unwrap(), (1, 3));
        assert_eq!(store.stats().await.unwrap().candidates, 2);
        // No one of that pseudonym: not kept either.
        assert!(store
            .stage_batch(up.id, 1, 1, &[cand(10, p(9, 9))])
            .await
            .unwrap());
        assert_eq!(store.staged(up.id).await.unwrap(), (2, 4));
        assert_eq!(store.stats().await.unwrap().candidates, 2);

        assert!(store.begin_match(up.id, T0).await.unwrap());
        assert!(
            !store.begin_match(up.id, T0).await.unwrap(),
            "one match an upload"
        );
        assert_eq!(store.finish_upload(up.id, T0).await.unwrap(), 2);
        assert_eq!(store.member_count(aud.id).await.unwrap(), 2);
        let s = store.stats().await.unwrap();
        assert_eq!((s.candidates, s.open_uploads, s.members), (0, 0, 2));
        assert!(
            store.finish_upload(up.id, T0).await.is_err(),
            "finished once"
        );

        // A second upload stages (0,1) while it is eligible.
        let up2 = Upload {
            id: Uuid::new_v4(),
            ..up.clone()
        };
        store.start_upload(&up2).await.unwrap();
        store
            .stage_batch(up2.id, 0, 1, &[cand(0, p(0, 1))])
            .await
            .unwrap();
        assert_eq!(store.stats().await.unwrap().candidates, 1);

        // A campaign serves (0,1), with impressions counted.
        let c = accord_storage::audience::Campaign {
            id: Uuid::new_v4(),
            advertiser_id: adv.id,
            audience_id: aud.id,
            title: "t".into(),
            body: "b".into(),
            link: "https://x/".into(),
            starts_at: T0,
            ends_at: T0.plus_millis(10),
            reach: DpState::default(),
            impressions: DpState::default(),
            released_at: None,
            created_at: T0,
        };
        store.create_campaign(&c).await.unwrap();
        assert_eq!(store.serve_ads(&p(0, 1), u1, T0).await.unwrap().len(), 1);
        assert_eq!(store.serve_ads(&p(0, 1), u1, T0).await.unwrap().len(), 1);
        assert_eq!(
            store
                .serve_ads(&p(0, 1), u1, T0.plus_millis(10))
                .await
                .unwrap()
                .len(),
            0
        );
        assert_eq!(store.campaign_counts(c.id).await.unwrap(), (1, 2));

        // Consent goes: the messenger's revoke, then ads off.
        partner
            .apply_event(&ads(2, p(255, 2), &[]), T0)
            .await
            .unwrap();
        assert_eq!(store.member_count(aud.id).await.unwrap(), 1);
        partner.set_ads_personalisation(u1, false).await.unwrap();
        assert_eq!(store.member_count(aud.id).await.unwrap(), 0);
        // ... and the staged row that named them, in the same change.
        assert_eq!(store.stats().await.unwrap().candidates, 0);
        // The index is told: (255,2)'s partition, (0,1)'s and its email's.
        assert_eq!(store.take_dirty().await.unwrap(), vec![0, 255]);

        // An unfinished upload expires whole (and the matched one's row,
        // kept for its answer, with it).
        store
            .stage_batch(up2.id, 1, 1, &[cand(10_000, p(0, 3))])
            .await
            .unwrap();
        assert_eq!(store.purge_uploads(T0.plus_millis(1_001)).await.unwrap(), 2);
        assert!(store.upload(up.id).await.unwrap().is_none());
        assert_eq!(store.stats().await.unwrap().open_uploads, 0);
        t.finish().await;
    }
}

/// Every partner-store write that can change the eligible set is counted
/// once it commits (the eligible index refreshes when the count moves);
/// a feed event that changes nothing, and reads, are not.
#[tokio::test]
async fn eligible_writes_count_each_change_of_the_eligible_set() {
    for t in common::backends("audience_writes").await {
        let partner = SqlPartnerStore::new(t.db.clone()).await.unwrap();
        let store = SqlAudienceStore::new(t.db.clone());
        let mut last = store.eligible_writes();
        let mut moved = |what: &str, store: &SqlAudienceStore| {
            let now = store.eligible_writes();
            assert!(now > last, "{what} was not counted");
            last = now;
        };
        let u = Uuid::new_v4();
        partner
            .create_user(
                &PartnerUser {
                    id: u,
                    name: "u".into(),
                    phone_pseudonym: None,
                    ads_personalisation: false,
                    created_at: T0,
                },
                &[8; 32],
            )
            .await
            .unwrap();
        moved("create_user", &store);
        partner.set_phone_pseudonym(u, &p(4, 4), T0).await.unwrap();
        moved("set_phone_pseudonym", &store);
        partner.set_ads_personalisation(u, true).await.unwrap();
        moved("set_ads_personalisation", &store);
        partner
            .set_email_pseudonym(u, Some(&p(5, 5)))
            .await
            .unwrap();
        moved("set_email_pseudonym", &store);
        partner
            .apply_event(&ads(7, p(6, 6), &[Purpose::Ads]), T0)
            .await
            .unwrap();
        moved("apply_event", &store);
        partner.delete_held(&p(6, 6), Purpose::Ads).await.unwrap();
        moved("delete_held", &store);
        // A duplicate event and reads change nothing.
        partner
            .apply_event(&ads(7, p(6, 6), &[Purpose::Ads]), T0)
            .await
            .unwrap();
        store.eligible_partition(4).await.unwrap();
        store.take_dirty().await.unwrap();
        assert_eq!(store.eligible_writes(), last);
    }
}
