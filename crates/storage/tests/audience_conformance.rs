//! The audience store's conformance suite, on SQLite and PostgreSQL (a
//! fresh database per run on 127.0.0.1:5432, dropped afterwards, whose
//! audience tables are partitioned by prefix; `ACCORD_SKIP_POSTGRES=1`
//! skips that half): staging is idempotent, partitions are bounded by the
//! first byte (0 and 255 included), the eligible set follows both kinds
//! of consent, finishing stores members and deletes everything staged,
//! and members leave when consent goes.

mod common;

use accord_domain::audience::report::DpState;
use accord_domain::{PseudonymId, Purpose, Timestamp};
use accord_storage::audience::{
    Advertiser, Audience, AudienceStore, SqlAudienceStore, StagedKey, Upload,
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
        let keys = [
            StagedKey {
                row: 0,
                slot: 0,
                pseudonym: p(0, 1),
            },
            StagedKey {
                row: 0,
                slot: 1,
                pseudonym: p(255, 9),
            },
            StagedKey {
                row: 1,
                slot: 0,
                pseudonym: p(255, 2),
            },
        ];
        assert!(store.stage_batch(up.id, 0, 2, &keys).await.unwrap());
        assert!(
            !store.stage_batch(up.id, 0, 2, &keys).await.unwrap(),
            "staged once"
        );
        assert_eq!(store.staged(up.id).await.unwrap(), (1, 2));
        assert_eq!(store.staged_partition(up.id, 255).await.unwrap().len(), 2);
        assert_eq!(store.staged_partition(up.id, 0).await.unwrap().len(), 1);
        store
            .stage_batch(
                up.id,
                1,
                1,
                &[StagedKey {
                    row: 10,
                    slot: 0,
                    pseudonym: p(9, 9),
                }],
            )
            .await
            .unwrap();
        assert_eq!(store.staged(up.id).await.unwrap(), (2, 3));

        assert!(store.begin_match(up.id, T0).await.unwrap());
        assert!(
            !store.begin_match(up.id, T0).await.unwrap(),
            "one match an upload"
        );
        store
            .finish_upload(up.id, &[p(0, 1), p(255, 2)], T0)
            .await
            .unwrap();
        assert_eq!(store.member_count(aud.id).await.unwrap(), 2);
        let s = store.stats().await.unwrap();
        assert_eq!((s.staged_pseudonyms, s.open_uploads, s.members), (0, 0, 2));
        assert!(
            store.finish_upload(up.id, &[p(0, 1)], T0).await.is_err(),
            "finished once"
        );

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

        // An unfinished upload expires whole (and the matched one's row,
        // kept for its answer, with it).
        let up2 = Upload {
            id: Uuid::new_v4(),
            ..up.clone()
        };
        store.start_upload(&up2).await.unwrap();
        store.stage_batch(up2.id, 0, 1, &keys[..1]).await.unwrap();
        assert_eq!(store.purge_uploads(T0.plus_millis(1_001)).await.unwrap(), 2);
        assert!(store.upload(up.id).await.unwrap().is_none());
        assert_eq!(store.stats().await.unwrap().staged_pseudonyms, 0);
        t.finish().await;
    }
}
