//! Custom audiences over HTTP (`crate::audience`): advertisers' audiences,
//! uploads, campaigns (advertiser token), the ad endpoint and the email
//! pseudonym (partner user), advertiser registration (operator).

use crate::audience::{Ad, AudienceView, CampaignView, NewCampaign, UploadStarted, UploadState};
use crate::http::extract::{Admin, AdvertiserAuth, User};
use crate::http::AppState;
use accord_domain::{PseudonymId, Timestamp};
use accord_http::{ApiError, ApiResult, ErrorBody, Json, Path};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

fn invalid_pseudonym() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_pseudonym",
        "64 hex digits expected",
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAdvertiser {
    pub name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AdvertiserCreated {
    pub advertiser_id: Uuid,
    pub name: String,
    /// Its bearer token, shown once.
    pub token: String,
}

/// Registers an advertiser (the operator).
#[utoipa::path(post, path = "/v1/admin/advertisers", tag = "admin", security(("admin" = [])), request_body = NewAdvertiser,
    responses((status = 201, body = AdvertiserCreated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn create_advertiser(
    State(s): State<AppState>,
    _: Admin,
    Json(b): Json<NewAdvertiser>,
) -> ApiResult<(StatusCode, Json<AdvertiserCreated>)> {
    let (a, token) = s.service.create_advertiser(&b.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(AdvertiserCreated {
            advertiser_id: a.id,
            name: a.name,
            token,
        }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAudience {
    pub name: String,
}

/// Creates an audience (empty until an upload is matched).
#[utoipa::path(post, path = "/v1/audiences", tag = "audiences", security(("api_key" = [])), request_body = NewAudience,
    responses((status = 201, body = AudienceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "audience_exists"), (status = 413, body = ErrorBody)))]
pub async fn create_audience(
    State(s): State<AppState>,
    AdvertiserAuth(a): AdvertiserAuth,
    Json(b): Json<NewAudience>,
) -> ApiResult<(StatusCode, Json<AudienceView>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.service.create_audience(&a, &b.name).await?),
    ))
}

/// The advertiser's audiences, each with its last released size.
#[utoipa::path(get, path = "/v1/audiences", tag = "audiences", security(("api_key" = [])),
    responses((status = 200, body = Vec<AudienceView>), (status = 401, body = ErrorBody)))]
pub async fn list_audiences(
    State(s): State<AppState>,
    AdvertiserAuth(a): AdvertiserAuth,
) -> ApiResult<Json<Vec<AudienceView>>> {
    Ok(Json(s.service.list_audiences(&a).await?))
}

/// One audience and its last released size (a read never releases).
#[utoipa::path(get, path = "/v1/audiences/{name}", tag = "audiences", security(("api_key" = [])),
    params(("name" = String, Path, description = "the audience's name")),
    responses((status = 200, body = AudienceView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody, description = "unknown_audience")))]
pub async fn audience(
    State(s): State<AppState>,
    AdvertiserAuth(a): AdvertiserAuth,
    Path(name): Path<String>,
) -> ApiResult<Json<AudienceView>> {
    Ok(Json(s.service.audience(&a, &name).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartUpload {
    /// Batches the upload will have (1 to 1,000, each of at most 10,000 rows).
    pub batches: u64,
}

/// Starts an upload into an audience: nothing is matched until every
/// declared batch arrived and the upload is completed.
#[utoipa::path(post, path = "/v1/audiences/{name}/uploads", tag = "audiences", security(("api_key" = [])), request_body = StartUpload,
    params(("name" = String, Path, description = "the audience's name")),
    responses((status = 201, body = UploadStarted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "unknown_audience"), (status = 413, body = ErrorBody)))]
pub async fn start_upload(
    State(s): State<AppState>,
    AdvertiserAuth(a): AdvertiserAuth,
    Path(name): Path<String>,
    Json(b): Json<StartUpload>,
) -> ApiResult<(StatusCode, Json<UploadStarted>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.service.start_upload(&a, &name, b.batches).await?),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Rows: each the `coordination` pseudonyms (64 hex digits) of one
    /// customer, phone first, then email; 1 or 2 a row.
    pub rows: Vec<Vec<String>>,
}

/// Stages one batch of an upload (idempotent by number).
#[utoipa::path(put, path = "/v1/uploads/{upload_id}/batches/{seq}", tag = "audiences", security(("api_key" = [])), request_body = Batch,
    params(("upload_id" = String, Path), ("seq" = u64, Path, description = "0 to batches - 1")),
    responses((status = 200, body = Object, description = "{\"staged\": bool}: false when the batch arrived before"),
        (status = 400, body = ErrorBody, description = "bad_request, invalid_pseudonym"), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "upload_closed"), (status = 413, body = ErrorBody)))]
pub async fn put_batch(
    State(s): State<AppState>,
    AdvertiserAuth(a): AdvertiserAuth,
    Path((upload, seq)): Path<(Uuid, u64)>,
    Json(b): Json<Batch>,
) -> ApiResult<Json<Value>> {
    let rows = b
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|p| PseudonymId::from_hex(p).ok_or_else(invalid_pseudonym))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let staged = s.service.put_batch(&a, upload, seq, &rows).await?;
    Ok(Json(json!({ "staged": staged })))
}

/// Completes an upload: matches it (once), stores the members, deletes
/// every uploaded pseudonym, releases the audience's size. Answers the
/// result within 20 s, else 202 `{"state": "matching"}`: ask
/// `GET /v1/uploads/{upload_id}`.
#[utoipa::path(post, path = "/v1/uploads/{upload_id}/complete", tag = "audiences", security(("api_key" = [])),
    params(("upload_id" = String, Path)),
    responses((status = 200, body = UploadState, description = "matched"), (status = 202, body = UploadState, description = "matching"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "upload_incomplete")))]
pub async fn complete_upload(
    State(s): State<AppState>,
    AdvertiserAuth(a): AdvertiserAuth,
    Path(upload): Path<Uuid>,
) -> ApiResult<(StatusCode, Json<UploadState>)> {
    let state = s.service.complete_upload(&a, upload).await?;
    Ok((status_of(&state), Json(state)))
}

fn status_of(s: &UploadState) -> StatusCode {
    match s {
        UploadState::Matched(_) => StatusCode::OK,
        _ => StatusCode::ACCEPTED,
    }
}

/// Where an upload stands: staged (batches received), matching, or
/// matched with the audience's released size.
#[utoipa::path(get, path = "/v1/uploads/{upload_id}", tag = "audiences", security(("api_key" = [])),
    params(("upload_id" = String, Path)),
    responses((status = 200, body = UploadState), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn upload_state(
    State(s): State<AppState>,
    AdvertiserAuth(a): AdvertiserAuth,
    Path(upload): Path<Uuid>,
) -> ApiResult<Json<UploadState>> {
    Ok(Json(s.service.upload_state(&a, upload).await?))
}

/// Discards an unfinished upload whole.
#[utoipa::path(delete, path = "/v1/uploads/{upload_id}", tag = "audiences", security(("api_key" = [])),
    params(("upload_id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn discard_upload(
    State(s): State<AppState>,
    AdvertiserAuth(a): AdvertiserAuth,
    Path(upload): Path<Uuid>,
) -> ApiResult<StatusCode> {
    s.service.discard_upload(&a, upload).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCampaignBody {
    pub audience: String,
    pub title: String,
    pub text: String,
    pub link: String,
    /// Milliseconds since the epoch.
    pub starts_at: i64,
    pub ends_at: i64,
}

/// Creates a campaign: an audience, a creative, a date range.
#[utoipa::path(post, path = "/v1/campaigns", tag = "audiences", security(("api_key" = [])), request_body = NewCampaignBody,
    responses((status = 201, body = CampaignView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "unknown_audience"), (status = 413, body = ErrorBody)))]
pub async fn create_campaign(
    State(s): State<AppState>,
    AdvertiserAuth(a): AdvertiserAuth,
    Json(b): Json<NewCampaignBody>,
) -> ApiResult<(StatusCode, Json<CampaignView>)> {
    let c = NewCampaign {
        audience: b.audience,
        title: b.title,
        text: b.text,
        link: b.link,
        starts_at: Timestamp(b.starts_at),
        ends_at: Timestamp(b.ends_at),
    };
    Ok((
        StatusCode::CREATED,
        Json(s.service.create_campaign(&a, c).await?),
    ))
}

/// The advertiser's campaigns with their last released figures.
#[utoipa::path(get, path = "/v1/campaigns", tag = "audiences", security(("api_key" = [])),
    responses((status = 200, body = Vec<CampaignView>), (status = 401, body = ErrorBody)))]
pub async fn list_campaigns(
    State(s): State<AppState>,
    AdvertiserAuth(a): AdvertiserAuth,
) -> ApiResult<Json<Vec<CampaignView>>> {
    Ok(Json(s.service.list_campaigns(&a).await?))
}

/// A campaign's report: reach and impressions under DP (released anew
/// at most once an hour, the last figures repeated once the budget is
/// spent).
#[utoipa::path(get, path = "/v1/campaigns/{campaign_id}", tag = "audiences", security(("api_key" = [])),
    params(("campaign_id" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn campaign(
    State(s): State<AppState>,
    AdvertiserAuth(a): AdvertiserAuth,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<CampaignView>> {
    Ok(Json(s.service.campaign_report(&a, id).await?))
}

/// The ads for the caller: running campaigns whose audience holds them
/// (each shown is an impression); none without ad consent.
#[utoipa::path(get, path = "/v1/partner/ads", tag = "partner", security(("bearer" = [])),
    responses((status = 200, body = Vec<Ad>), (status = 401, body = ErrorBody)))]
pub async fn ads(State(s): State<AppState>, User(u): User) -> ApiResult<Json<Vec<Ad>>> {
    Ok(Json(s.service.ads_for(&u).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Email {
    /// The pseudonym of the caller's email address (64 hex digits), from
    /// the key service through the caller's client; `null` removes it.
    pub email_pseudonym: Option<String>,
}

/// Sets the caller's email pseudonym (custom audiences match it as the
/// same person as the phone).
#[utoipa::path(put, path = "/v1/partner/me/email", tag = "partner", security(("bearer" = [])), request_body = Email,
    responses((status = 204), (status = 400, body = ErrorBody, description = "invalid_pseudonym, invalid_json"), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn set_email(
    State(s): State<AppState>,
    User(u): User,
    Json(b): Json<Email>,
) -> ApiResult<StatusCode> {
    let p = b
        .email_pseudonym
        .map(|h| PseudonymId::from_hex(&h).ok_or_else(invalid_pseudonym))
        .transpose()?;
    s.service
        .store
        .set_email_pseudonym(u.id, p.as_ref())
        .await
        .map_err(crate::PartnerError::from)?;
    Ok(StatusCode::NO_CONTENT)
}
