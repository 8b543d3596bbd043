//! `accord demo`, the custom-audience chapter: a business uploads its
//! customer list (through the key service, as `accord audience upload`
//! does), the audience matches, the business sees only a noised size, a
//! campaign runs, matched users with ad consent see the ad, and a user
//! who withdraws at the messenger drops out of the audience.

use super::demo::Demo;
use crate::error::{CliError, CliResult};
use crate::upload::UploadJob;
use accord_client::{AcceptChoice, Client};
use accord_crypto::oprf::OprfPurpose;
use accord_domain::{PhoneNumber, Purpose};
use accord_keyd::{ClientKind, HttpOprf, Oprf};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

fn internal(e: impl std::fmt::Display) -> CliError {
    CliError::Internal(anyhow::anyhow!("{e}"))
}

/// A partner user signed up with `phone` (dev code), its number given as
/// a pseudonym computed blind through the partner; its client.
async fn partner_user(partner: &str, name: &str, phone: &str) -> CliResult<Client> {
    let c = Client::new(partner);
    let started = c
        .request_raw(
            Method::POST,
            "/v1/partner/registrations",
            Some(&json!({ "phone": phone })),
        )
        .await?;
    let id = started["registration_id"].as_str().unwrap_or_default();
    let code = started["dev_code"].as_str().unwrap_or_default();
    let made = c
        .request_raw(
            Method::POST,
            &format!("/v1/partner/registrations/{id}/verify"),
            Some(&json!({ "code": code, "name": name })),
        )
        .await?;
    let token = made["token"].as_str().unwrap_or_default().to_owned();
    let number = PhoneNumber::parse(phone, None).map_err(|e| CliError::Input(e.to_string()))?;
    let ps = HttpOprf::new(partner.to_owned(), SecretString::from(token.clone()))
        .phone_pseudonyms(OprfPurpose::Coordination, None, &[number])
        .await
        .map_err(internal)?;
    let user = Client::new(partner).with_token(token);
    user.request_raw(
        Method::PUT,
        "/v1/partner/me/phone",
        Some(&json!({ "phone_pseudonym": ps[0].id() })),
    )
    .await?;
    Ok(user)
}

async fn ads_of(user: &Client) -> CliResult<Vec<String>> {
    let v: Value = user
        .request_raw(Method::GET, "/v1/partner/ads", None)
        .await?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .map(|a| a["title"].as_str().unwrap_or("").to_owned())
        .collect())
}

async fn members(d: &Demo) -> CliResult<u64> {
    Ok(d.partner.audience_stats().await.map_err(internal)?.members)
}

pub(super) async fn audience_story(d: &mut Demo, dir: &std::path::Path) -> CliResult {
    d.say("Gita, Hadi and Indra join the messenger under policy v2: Gita and Hadi grant ads, Indra grants nothing.");
    let grant_ads = AcceptChoice {
        share: None,
        grants: vec![Purpose::Ads],
    };
    let gita = d
        .register("+62 813 2000 0010", None, Some(grant_ads.clone()))
        .await?;
    println!(
        "    gita shares {}",
        super::demo::shared(&gita.consent().await?)
    );
    d.register("+62 813 2000 0011", None, Some(grant_ads))
        .await?;
    d.register("+62 813 2000 0012", None, Some(AcceptChoice::default()))
        .await?;
    d.feed().await?;
    let p_gita = partner_user(&d.partner_url, "gita", "+6281320000010").await?;
    let p_hadi = partner_user(&d.partner_url, "hadi", "+6281320000011").await?;
    let p_indra = partner_user(&d.partner_url, "indra", "+6281320000012").await?;
    println!("    all three also use the partner's social app (signed up with their numbers, held as pseudonyms)");

    d.say("The operator sets up Kopi Kita for custom audiences: an advertiser at the partner, a business client of the key service.");
    let (adv, adv_token) = d
        .partner
        .create_advertiser("Kopi Kita")
        .await
        .map_err(internal)?;
    let (_, keyd_token) = d
        .keyd
        .create_client(
            "Kopi Kita",
            ClientKind::Business,
            &BTreeMap::from([(OprfPurpose::Coordination, 10_000)]),
        )
        .await
        .map_err(internal)?;
    d.partner
        .create_audience(&adv, "loyalty members")
        .await
        .map_err(internal)?;

    d.say("Kopi Kita uploads its loyalty list (accord audience upload): numbers and emails, normalised and blinded on its machine.");
    let list = dir.join("kopi-kita-customers.csv");
    std::fs::write(
        &list,
        "phone,email,fn,ln,country,points\n\
         0813-2000-0010,gita@example.com,Gita,G,ID,120\n\
         +62 813 2000 0011,,Hadi,H,,40\n\
         0813 2000 0012,,Indra,I,ID,75\n\
         +6281299990000,someone@example.com,Someone,Else,,3\n\
         call me,not an email,Bad,Row,,0\n",
    )
    .map_err(|e| CliError::Internal(e.into()))?;
    let job = UploadJob {
        file: list.clone(),
        region: Some("ID".into()),
        rejects: dir.join("kopi-kita-customers.rejects.csv"),
        audience: "loyalty members".into(),
        partner: Client::new(&d.partner_url).with_token(adv_token.clone()),
        oprf: Arc::new(HttpOprf::new(
            d.keyd_url.clone(),
            SecretString::from(keyd_token.reveal().to_owned()),
        )),
        progress: false,
    };
    let r = crate::upload::run(job).await?;
    println!(
        "    {} rows: {} valid phones, {} valid emails, {} rejected (its reason in the rejects file, never its content)",
        r.summary.rows, r.summary.valid_phones, r.summary.valid_emails, r.summary.rejected
    );
    println!(
        "    {} pseudonyms uploaded in shuffled order; the key service saw only blinded elements",
        r.pseudonyms
    );
    let size = &r.answer["audience"]["size"];
    println!(
        "    Kopi Kita sees its audience's size only with noise: {}",
        match size["shown"].as_str() {
            Some("about") => format!("about {}", size["count"]),
            _ => format!("fewer than {}", size["threshold"]),
        }
    );
    println!(
        "    (the partner matched {} people who allowed ads, Gita and Hadi; it never wrote an uploaded pseudonym that matched no one, and kept nothing staged: {} left)",
        members(d).await?,
        d.partner.audience_stats().await.map_err(internal)?.candidates
    );

    d.say("Kopi Kita runs a campaign to its audience; the partner shows the ad to matched users with ad consent.");
    let now = d.partner.now();
    let campaign = d
        .partner
        .create_campaign(
            &adv,
            accord_partner::audience::NewCampaign {
                audience: "loyalty members".into(),
                title: "Double points this week".into(),
                text: "Every coffee counts twice until Sunday.".into(),
                link: "https://kopikita.example/points".into(),
                starts_at: now,
                ends_at: now.plus_millis(7 * 86_400_000),
            },
        )
        .await
        .map_err(internal)?;
    println!("    gita's feed: {:?}", ads_of(&p_gita).await?);
    println!("    hadi's feed: {:?}", ads_of(&p_hadi).await?);
    println!(
        "    indra's feed: {:?} (on the list, but no ad consent)",
        ads_of(&p_indra).await?
    );
    let report = d
        .partner
        .campaign_report(&adv, campaign.campaign_id)
        .await
        .map_err(internal)?;
    println!(
        "    Kopi Kita's report, noised: reach {}, impressions {}",
        report.reach.map(|r| r.to_string()).unwrap_or_default(),
        report
            .impressions
            .map(|r| r.to_string())
            .unwrap_or_default()
    );

    d.say("Gita withdraws ads at the messenger; the feed's revocation removes her from every audience.");
    gita.withdraw(Purpose::Ads).await?;
    d.feed().await?;
    println!(
        "    the audience now holds {} person (the operator's count; Kopi Kita still sees only its last noised figure)",
        members(d).await?
    );
    println!("    gita's feed: {:?}", ads_of(&p_gita).await?);
    Ok(())
}
