//! Custom audiences, the partner's use cases (issue 13): advertisers,
//! audiences, uploads of customer-list pseudonyms, the match, what an
//! advertiser may learn (differentially private counts only), campaigns
//! and the ad endpoint.
//!
//! **An upload is matched whole or not at all.** It declares its batch
//! count at the start; batches are staged (idempotently, by number) and
//! nothing is matched until every one arrived and the uploader completes
//! it. An upload that is never completed is discarded whole: by the
//! uploader (`DELETE`, which the CLI sends when it fails) or when it
//! expires ([`AudienceConfig::upload_ttl_ms`]). There is no resume: a
//! restarted upload is a new one (decided: resuming would need the
//! business tool to reproduce the same shuffled rows, and a discarded
//! upload costs only its quota).
//!
//! **The match** is the hash join of [`crate::matching`], as a stream:
//! each batch is probed on arrival against the standing index of the
//! eligible set ([`crate::eligible`]), and only its matched rows are
//! staged, with the member each names (still eligible when the batch
//! commits). An uploaded pseudonym that matches no one is never written.
//! Completion makes the staged rows members, distinct people, in one
//! transaction that deletes what was staged.
//!
//! **Releases.** An audience's size is released (ε spent, noise drawn) at
//! the completion of each upload, never on a read: a read repeats the
//! last figure. Releasing on a change of the true size would tell the
//! advertiser whether the size changed, which is the membership of a
//! single added row. A campaign's reach and impressions are released at
//! most once per [`AudienceConfig::campaign_release_every_ms`], on a
//! read; both budgets repeat the last figure once spent.

use crate::eligible::EligibleIndex;
use crate::matching::{probe_rows, thread_cpu_time};
use crate::service::{PartnerError, PartnerService};
use accord_crypto::token::{BearerToken, TokenHash};
use accord_domain::audience::report::{release, DpRules, DpState, NoiseSource, Released};
use accord_domain::time::HOUR_MS;
use accord_domain::{PseudonymId, Purpose, Timestamp};
use accord_storage::audience::{
    Advertiser, Audience, AudienceStats, AudienceStore, Campaign, Candidate, Upload,
};
use accord_storage::partner::PartnerUser;
use accord_storage::StoreError;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Rows in one upload batch, at most.
pub const MAX_BATCH_ROWS: usize = 10_000;
/// Batches in one upload, at most (10,000,000 rows).
pub const MAX_BATCHES: u64 = 1_000;
/// Pseudonyms in one row: a phone and an email.
pub const MAX_ROW_KEYS: usize = 2;

/// The release rules and upload limits.
#[derive(Clone, Copy, Debug)]
pub struct AudienceConfig {
    /// An audience's size.
    pub size_rules: DpRules,
    /// A campaign's reach and its impressions, each.
    pub campaign_rules: DpRules,
    /// An unfinished upload is discarded this long after its start.
    pub upload_ttl_ms: i64,
    /// A campaign's figures are released at most this often.
    pub campaign_release_every_ms: i64,
}

impl Default for AudienceConfig {
    fn default() -> Self {
        AudienceConfig {
            size_rules: DpRules::default(),
            campaign_rules: DpRules::default(),
            upload_ttl_ms: 24 * HOUR_MS,
            campaign_release_every_ms: HOUR_MS,
        }
    }
}

/// Totals of every match since start (operator metrics, the bench): the
/// join (index refreshes and probes), then storing what it found
/// (staging matched rows with their consent check, completions).
#[derive(Debug, Default)]
pub struct MatchCounters {
    /// Uploaded pseudonyms probed against the eligible set.
    pub lookups: AtomicU64,
    /// Nanoseconds spent probing (the hash join alone).
    pub probe_ns: AtomicU64,
    /// The probes' thread CPU time (no await inside, so one thread's).
    pub probe_cpu_ns: AtomicU64,
    /// Nanoseconds spent bringing the eligible index up to date before
    /// the probes (taking the marks, reading changed partitions).
    pub refresh_ns: AtomicU64,
    /// Nanoseconds spent staging batches' matched rows.
    pub stage_ns: AtomicU64,
    /// Nanoseconds spent completing uploads (staged rows to members).
    pub finish_ns: AtomicU64,
    /// Rows matched (staged and made members) by completed uploads.
    pub matched_rows: AtomicU64,
}

/// What the audiences need besides the partner's own store.
#[derive(Clone)]
pub struct Audiences {
    pub store: Arc<dyn AudienceStore>,
    pub config: AudienceConfig,
    pub noise: Arc<std::sync::Mutex<dyn NoiseSource + Send>>,
    pub counters: Arc<MatchCounters>,
    pub index: Arc<EligibleIndex>,
    /// Held by a batch's staging (see `put_batch`).
    pub stage_gate: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Audiences {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audiences")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Audiences {
    /// With OpenDP's noise ([`crate::dp::OpenDpNoise`]).
    pub fn new(store: Arc<dyn AudienceStore>, config: AudienceConfig) -> Self {
        Audiences {
            store,
            config,
            noise: Arc::new(std::sync::Mutex::new(crate::dp::OpenDpNoise)),
            counters: Arc::default(),
            index: Arc::default(),
            stage_gate: Arc::default(),
        }
    }
}

/// An audience as its advertiser sees it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AudienceView {
    pub audience_id: Uuid,
    pub name: String,
    /// The last released size: `{"shown": "about", "count": N}` or
    /// `{"shown": "fewer_than", "threshold": 100}`; absent before the
    /// first matched upload.
    #[schema(value_type = Option<Object>)]
    pub size: Option<Released>,
    /// ε left for size releases, in thousandths.
    pub budget_left_milli: u32,
    #[schema(value_type = i64)]
    pub created_at: Timestamp,
}

/// A started upload.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct UploadStarted {
    pub upload_id: Uuid,
    pub batches: u64,
    pub max_batch_rows: usize,
    #[schema(value_type = i64)]
    pub expires_at: Timestamp,
}

/// How long `complete` waits for a match before it answers "matching".
pub const MATCH_WAIT: Duration = Duration::from_secs(20);

/// Where an upload stands.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum UploadState {
    /// Batches are arriving.
    Staged { received: u64, declared: u64 },
    /// Its match runs; ask again.
    Matching,
    /// Matched: the audience with its released size.
    Matched(UploadMatched),
}

/// A matched upload.
#[derive(Clone, Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct UploadMatched {
    pub audience: AudienceView,
    /// Whether the size was released anew (false: the budget is spent,
    /// the last figure is repeated).
    pub fresh: bool,
}

/// A campaign as its advertiser sees it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CampaignView {
    pub campaign_id: Uuid,
    pub audience: String,
    pub title: String,
    pub text: String,
    pub link: String,
    #[schema(value_type = i64)]
    pub starts_at: Timestamp,
    #[schema(value_type = i64)]
    pub ends_at: Timestamp,
    /// Distinct users shown the ad, released under DP.
    #[schema(value_type = Option<Object>)]
    pub reach: Option<Released>,
    /// Impressions, released under DP.
    #[schema(value_type = Option<Object>)]
    pub impressions: Option<Released>,
    pub budget_left_milli: u32,
}

/// What a partner user is shown.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Ad {
    pub campaign_id: Uuid,
    pub title: String,
    pub text: String,
    pub link: String,
}

/// A new campaign.
#[derive(Clone, Debug)]
pub struct NewCampaign {
    pub audience: String,
    pub title: String,
    pub text: String,
    pub link: String,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
}

fn view(a: &Audience, rules: &DpRules) -> AudienceView {
    AudienceView {
        audience_id: a.id,
        name: a.name.clone(),
        size: a.size.last,
        budget_left_milli: a.size.left_milli(rules),
        created_at: a.created_at,
    }
}

fn check_text(what: &str, v: &str, max: usize) -> Result<(), PartnerError> {
    if v.trim().is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(PartnerError::BadRequest(format!(
            "{what} must be 1 to {max} characters, without control characters"
        )));
    }
    Ok(())
}

impl PartnerService {
    fn audiences(&self) -> Result<&Audiences, PartnerError> {
        self.audiences.as_ref().ok_or(PartnerError::Unavailable(
            "custom audiences are not configured",
        ))
    }

    fn draw(&self, count: u64, state: &mut DpState, rules: &DpRules) -> Result<bool, PartnerError> {
        let a = self.audiences()?;
        let mut noise = a
            .noise
            .lock()
            .map_err(|_| PartnerError::Unavailable("noise source poisoned"))?;
        let r = release(count, state, rules, &mut *noise)
            .map_err(|e| PartnerError::BadRequest(e.to_string()))?;
        Ok(r.fresh)
    }

    /// Registers an advertiser (the operator); its token is shown once.
    pub async fn create_advertiser(
        &self,
        name: &str,
    ) -> Result<(Advertiser, String), PartnerError> {
        check_text("name", name, 100)?;
        let token = BearerToken::generate();
        let a = Advertiser {
            id: Uuid::new_v4(),
            name: name.trim().to_owned(),
            created_at: self.now(),
        };
        self.audiences()?
            .store
            .create_advertiser(&a, &TokenHash::of(token.reveal()).0)
            .await?;
        Ok((a, token.reveal().to_owned()))
    }

    pub async fn authenticate_advertiser(
        &self,
        token: &str,
    ) -> Result<Option<Advertiser>, PartnerError> {
        Ok(self
            .audiences()?
            .store
            .advertiser_by_token(&TokenHash::of(token).0)
            .await?)
    }

    pub async fn create_audience(
        &self,
        adv: &Advertiser,
        name: &str,
    ) -> Result<AudienceView, PartnerError> {
        check_text("audience name", name, 100)?;
        let a = self.audiences()?;
        let audience = Audience {
            id: Uuid::new_v4(),
            advertiser_id: adv.id,
            name: name.trim().to_owned(),
            size: DpState::default(),
            created_at: self.now(),
        };
        a.store
            .create_audience(&audience)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => PartnerError::Conflict("audience_exists"),
                e => e.into(),
            })?;
        Ok(view(&audience, &a.config.size_rules))
    }

    async fn own_audience(&self, adv: &Advertiser, name: &str) -> Result<Audience, PartnerError> {
        self.audiences()?
            .store
            .audience(adv.id, name)
            .await?
            .ok_or_else(|| PartnerError::UnknownAudience(name.to_owned()))
    }

    pub async fn audience(
        &self,
        adv: &Advertiser,
        name: &str,
    ) -> Result<AudienceView, PartnerError> {
        let a = self.own_audience(adv, name).await?;
        Ok(view(&a, &self.audiences()?.config.size_rules))
    }

    pub async fn list_audiences(
        &self,
        adv: &Advertiser,
    ) -> Result<Vec<AudienceView>, PartnerError> {
        let a = self.audiences()?;
        Ok(a.store
            .audiences(adv.id)
            .await?
            .iter()
            .map(|x| view(x, &a.config.size_rules))
            .collect())
    }

    pub async fn start_upload(
        &self,
        adv: &Advertiser,
        audience: &str,
        batches: u64,
    ) -> Result<UploadStarted, PartnerError> {
        if batches == 0 || batches > MAX_BATCHES {
            return Err(PartnerError::BadRequest(format!(
                "batches must be 1 to {MAX_BATCHES} (of at most {MAX_BATCH_ROWS} rows each)"
            )));
        }
        let aud = self.own_audience(adv, audience).await?;
        let a = self.audiences()?;
        let now = self.now();
        let u = Upload {
            id: Uuid::new_v4(),
            audience_id: aud.id,
            batches,
            created_at: now,
            expires_at: now.plus_millis(a.config.upload_ttl_ms),
            matching_since: None,
            result: None,
        };
        a.store.purge_uploads(now).await?;
        a.store.start_upload(&u).await?;
        Ok(UploadStarted {
            upload_id: u.id,
            batches,
            max_batch_rows: MAX_BATCH_ROWS,
            expires_at: u.expires_at,
        })
    }

    /// The upload, if it is `adv`'s and not expired.
    async fn own_upload(&self, adv: &Advertiser, id: Uuid) -> Result<Upload, PartnerError> {
        let a = self.audiences()?;
        let u = a.store.upload(id).await?.ok_or(PartnerError::NotFound)?;
        let aud = a
            .store
            .audience_by_id(u.audience_id)
            .await?
            .ok_or(PartnerError::NotFound)?;
        if aud.advertiser_id != adv.id {
            return Err(PartnerError::NotFound);
        }
        if u.expires_at <= self.now() {
            a.store.discard_upload(id).await?;
            return Err(PartnerError::NotFound);
        }
        Ok(u)
    }

    /// Takes batch `seq`: each row is its pseudonyms (phone first, then
    /// email). The batch is probed against the eligible index and only
    /// its matched rows are staged (see the module docs). A batch sent
    /// twice is staged once (`false` the second time).
    pub async fn put_batch(
        &self,
        adv: &Advertiser,
        upload: Uuid,
        seq: u64,
        rows: &[Vec<PseudonymId>],
    ) -> Result<bool, PartnerError> {
        let u = self.own_upload(adv, upload).await?;
        if seq >= u.batches {
            return Err(PartnerError::BadRequest(format!(
                "batch {seq} is beyond the {} declared (numbered from 0)",
                u.batches
            )));
        }
        if rows.is_empty() || rows.len() > MAX_BATCH_ROWS {
            return Err(PartnerError::BadRequest(format!(
                "a batch has 1 to {MAX_BATCH_ROWS} rows"
            )));
        }
        for (i, row) in rows.iter().enumerate() {
            if row.is_empty() || row.len() > MAX_ROW_KEYS {
                return Err(PartnerError::BadRequest(format!(
                    "row {i}: a row has 1 or {MAX_ROW_KEYS} pseudonyms (phone, email)"
                )));
            }
        }
        let a = self.audiences()?;
        let refreshed = Instant::now();
        if let Err(w) = a.index.ensure_current(&a.store).await? {
            return Err(PartnerError::WarmingUp(w.retry_after.as_secs()));
        }
        let refreshed = refreshed.elapsed();
        let t = Instant::now();
        let cpu = thread_cpu_time();
        let parts = a.index.snapshot();
        let (matched, lookups) = probe_rows(&parts, rows, seq * MAX_BATCH_ROWS as u64);
        drop(parts);
        let candidates: Vec<Candidate> = matched
            .into_iter()
            .map(|(row, member)| Candidate { row, member })
            .collect();
        let probed = t.elapsed();
        let probed_cpu = thread_cpu_time().saturating_sub(cpu);
        // One batch's staging at a time in this process (each is one
        // write transaction; SQLite has one writer anyway), timed from
        // when it may start.
        let (staged, staging) = {
            let _gate = a.stage_gate.lock().await;
            let t = Instant::now();
            let r = a
                .store
                .stage_batch(upload, seq, rows.len() as u64, &candidates)
                .await;
            (r, t.elapsed())
        };
        let staged = staged.map_err(|e| match e {
            StoreError::NotFound(_) => PartnerError::NotFound,
            StoreError::Conflict("upload_matching") => PartnerError::UploadClosed,
            e => e.into(),
        })?;
        if staged {
            let c = &a.counters;
            c.lookups.fetch_add(lookups, Ordering::Relaxed);
            c.refresh_ns
                .fetch_add(refreshed.as_nanos() as u64, Ordering::Relaxed);
            c.probe_ns
                .fetch_add(probed.as_nanos() as u64, Ordering::Relaxed);
            c.probe_cpu_ns
                .fetch_add(probed_cpu.as_nanos() as u64, Ordering::Relaxed);
            c.stage_ns
                .fetch_add(staging.as_nanos() as u64, Ordering::Relaxed);
        }
        Ok(staged)
    }

    /// Completes an upload: starts its match (once; a second call reports
    /// on the first) and waits for it up to [`MATCH_WAIT`]. A larger
    /// match goes on in the background; [`PartnerService::upload_state`]
    /// reports it. A match that fails discards the upload whole.
    pub async fn complete_upload(
        &self,
        adv: &Advertiser,
        upload: Uuid,
    ) -> Result<UploadState, PartnerError> {
        let u = self.own_upload(adv, upload).await?;
        if u.result.is_some() || u.matching_since.is_some() {
            return self.upload_state(adv, upload).await;
        }
        let a = self.audiences()?;
        let (received, _) = a.store.staged(upload).await?;
        if received != u.batches {
            return Err(PartnerError::UploadIncomplete {
                received,
                declared: u.batches,
            });
        }
        if !a.store.begin_match(upload, self.now()).await? {
            return self.upload_state(adv, upload).await;
        }
        let me = self.clone();
        let task = tokio::spawn(async move {
            let r = me.match_and_release(&u).await;
            if let Err(e) = &r {
                tracing::error!(upload = %u.id, error = %e, "audience match failed; the upload is discarded whole");
                if let Some(a) = &me.audiences {
                    let _ = a.store.discard_upload(u.id).await;
                }
            }
            r
        });
        match tokio::time::timeout(MATCH_WAIT, task).await {
            Ok(Ok(r)) => r.map(UploadState::Matched),
            Ok(Err(_)) => Err(PartnerError::Unavailable("the match stopped")),
            Err(_) => Ok(UploadState::Matching),
        }
    }

    /// Where an upload stands.
    pub async fn upload_state(
        &self,
        adv: &Advertiser,
        upload: Uuid,
    ) -> Result<UploadState, PartnerError> {
        let u = self.own_upload(adv, upload).await?;
        if let Some(r) = &u.result {
            let m: UploadMatched = serde_json::from_str(r)
                .map_err(|_| PartnerError::Unavailable("a stored match result does not parse"))?;
            return Ok(UploadState::Matched(m));
        }
        if u.matching_since.is_some() {
            return Ok(UploadState::Matching);
        }
        let (received, _) = self.audiences()?.store.staged(upload).await?;
        Ok(UploadState::Staged {
            received,
            declared: u.batches,
        })
    }

    /// The match's completion (see the module docs), then the size's
    /// release.
    async fn match_and_release(&self, u: &Upload) -> Result<UploadMatched, PartnerError> {
        let a = self.audiences()?;
        let started = Instant::now();
        let rows = a
            .store
            .finish_upload(u.id, self.now())
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => PartnerError::NotFound,
                e => e.into(),
            })?;
        a.counters
            .finish_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        a.counters.matched_rows.fetch_add(rows, Ordering::Relaxed);
        tracing::info!(
            upload = %u.id,
            matched_rows = rows,
            ms = started.elapsed().as_millis() as u64,
            "audience upload matched; what it staged is deleted"
        );
        // The release: drawn from the stored state and written only if
        // that state is still the stored one; otherwise drawn again.
        loop {
            let aud = a
                .store
                .audience_by_id(u.audience_id)
                .await?
                .ok_or(PartnerError::NotFound)?;
            let size = a.store.member_count(aud.id).await?;
            let mut next = aud.size;
            let fresh = self.draw(size, &mut next, &a.config.size_rules)?;
            if a.store.set_size_release(aud.id, &aud.size, &next).await? {
                let matched = UploadMatched {
                    audience: view(&Audience { size: next, ..aud }, &a.config.size_rules),
                    fresh,
                };
                let json = serde_json::to_string(&matched)
                    .map_err(|_| PartnerError::Unavailable("a match result does not serialise"))?;
                a.store.set_upload_result(u.id, &json).await?;
                return Ok(matched);
            }
        }
    }

    pub async fn discard_upload(&self, adv: &Advertiser, upload: Uuid) -> Result<(), PartnerError> {
        self.own_upload(adv, upload).await?;
        self.audiences()?.store.discard_upload(upload).await?;
        Ok(())
    }

    pub async fn create_campaign(
        &self,
        adv: &Advertiser,
        c: NewCampaign,
    ) -> Result<CampaignView, PartnerError> {
        check_text("title", &c.title, 80)?;
        check_text("text", &c.text, 500)?;
        if !(c.link.starts_with("https://") || c.link.starts_with("http://"))
            || c.link.len() > 2_000
            || c.link
                .chars()
                .any(|ch| ch.is_whitespace() || ch.is_control())
        {
            return Err(PartnerError::BadRequest(
                "link must be an http(s) URL of at most 2,000 characters".into(),
            ));
        }
        if c.ends_at <= c.starts_at {
            return Err(PartnerError::BadRequest(
                "the campaign must end after it starts".into(),
            ));
        }
        let aud = self.own_audience(adv, &c.audience).await?;
        let campaign = Campaign {
            id: Uuid::new_v4(),
            advertiser_id: adv.id,
            audience_id: aud.id,
            title: c.title,
            body: c.text,
            link: c.link,
            starts_at: c.starts_at,
            ends_at: c.ends_at,
            reach: DpState::default(),
            impressions: DpState::default(),
            released_at: None,
            created_at: self.now(),
        };
        let a = self.audiences()?;
        a.store.create_campaign(&campaign).await?;
        Ok(self.campaign_view(&campaign, &aud.name))
    }

    fn campaign_view(&self, c: &Campaign, audience: &str) -> CampaignView {
        let rules = self
            .audiences
            .as_ref()
            .map(|a| a.config.campaign_rules)
            .unwrap_or_default();
        CampaignView {
            campaign_id: c.id,
            audience: audience.to_owned(),
            title: c.title.clone(),
            text: c.body.clone(),
            link: c.link.clone(),
            starts_at: c.starts_at,
            ends_at: c.ends_at,
            reach: c.reach.last,
            impressions: c.impressions.last,
            budget_left_milli: c
                .reach
                .left_milli(&rules)
                .min(c.impressions.left_milli(&rules)),
        }
    }

    /// A campaign's report: reach and impressions, released anew when the
    /// last release is older than the release interval.
    pub async fn campaign_report(
        &self,
        adv: &Advertiser,
        id: Uuid,
    ) -> Result<CampaignView, PartnerError> {
        let a = self.audiences()?;
        let mut c = a
            .store
            .campaign(id)
            .await?
            .filter(|c| c.advertiser_id == adv.id)
            .ok_or(PartnerError::NotFound)?;
        let now = self.now();
        let due = c
            .released_at
            .is_none_or(|t| now.0 - t.0 >= a.config.campaign_release_every_ms);
        if due {
            let (reach, shown) = a.store.campaign_counts(id).await?;
            let rules = a.config.campaign_rules;
            let (mut reach_s, mut shown_s) = (c.reach, c.impressions);
            let fresh_r = self.draw(reach, &mut reach_s, &rules)?;
            let fresh_i = self.draw(shown, &mut shown_s, &rules)?;
            if fresh_r || fresh_i {
                let won = a
                    .store
                    .set_campaign_release(id, (&c.reach, &c.impressions), (&reach_s, &shown_s), now)
                    .await?;
                if won {
                    (c.reach, c.impressions) = (reach_s, shown_s);
                } else {
                    // Another read released first: show its figures.
                    c = a.store.campaign(id).await?.ok_or(PartnerError::NotFound)?;
                }
            }
        }
        let aud = a.store.audience_by_id(c.audience_id).await?;
        Ok(self.campaign_view(&c, aud.as_ref().map_or("", |x| x.name.as_str())))
    }

    pub async fn list_campaigns(
        &self,
        adv: &Advertiser,
    ) -> Result<Vec<CampaignView>, PartnerError> {
        let a = self.audiences()?;
        let auds = a.store.audiences(adv.id).await?;
        Ok(a.store
            .campaigns(adv.id)
            .await?
            .iter()
            .map(|c| {
                let name = auds
                    .iter()
                    .find(|x| x.id == c.audience_id)
                    .map_or("", |x| x.name.as_str());
                self.campaign_view(c, name)
            })
            .collect())
    }

    /// Whether `user` has ad consent: its own setting, or `ads` granted
    /// at the messenger for its number.
    pub async fn has_ad_consent(&self, user: &PartnerUser) -> Result<bool, PartnerError> {
        if user.ads_personalisation {
            return Ok(true);
        }
        Ok(match &user.phone_pseudonym {
            Some(p) => self.store.record(p, Purpose::Ads).await?.is_some(),
            None => false,
        })
    }

    /// The ads for `user`: creatives of running campaigns whose audience
    /// holds them, each impression recorded; nothing without ad consent.
    pub async fn ads_for(&self, user: &PartnerUser) -> Result<Vec<Ad>, PartnerError> {
        let Some(member) = user.phone_pseudonym else {
            return Ok(Vec::new());
        };
        if !self.has_ad_consent(user).await? {
            return Ok(Vec::new());
        }
        let campaigns = self
            .audiences()?
            .store
            .serve_ads(&member, user.id, self.now())
            .await?;
        Ok(campaigns
            .into_iter()
            .map(|c| Ad {
                campaign_id: c.id,
                title: c.title,
                text: c.body,
                link: c.link,
            })
            .collect())
    }

    /// The operator's counts (true, un-noised: never for an advertiser).
    pub async fn audience_stats(&self) -> Result<AudienceStats, PartnerError> {
        Ok(self.audiences()?.store.stats().await?)
    }

    /// Totals of every match since start.
    pub fn match_counters(&self) -> Option<Arc<MatchCounters>> {
        self.audiences.as_ref().map(|a| a.counters.clone())
    }

    /// What the eligible index holds.
    pub fn eligible_index_stats(&self) -> Option<crate::eligible::IndexStats> {
        self.audiences.as_ref().map(|a| a.index.stats())
    }

    /// Brings the eligible index up to date, building it if it is not:
    /// what the first batch after a start would do, awaited (the bench
    /// and operators warming a partner up).
    pub async fn refresh_eligible_index(&self) -> Result<usize, PartnerError> {
        let a = self.audiences()?;
        Ok(a.index.refresh(&*a.store).await?)
    }

    /// Discards expired uploads (also done at every upload's start).
    pub async fn purge_uploads(&self) -> Result<u64, PartnerError> {
        match &self.audiences {
            Some(a) => Ok(a.store.purge_uploads(self.now()).await?),
            None => Ok(0),
        }
    }
}
