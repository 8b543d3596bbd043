//! The partner's own users: sign-up with a verified phone number (two
//! steps), their phone pseudonym, ad-personalisation setting, blinded
//! evaluation under their own quota, contact upload, suggestions.

use crate::http::extract::{ClientAddr, User};
use crate::http::AppState;
use accord_domain::PseudonymId;
use accord_http::{ApiError, ApiResult, ErrorBody, Json, Path};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

pub use crate::service::RegistrationStarted;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRegistration {
    /// The number to verify, E.164 or national with `region`. It is sent
    /// the code and not stored.
    pub phone: String,
    /// ISO 3166-1 alpha-2, for national formats.
    pub region: Option<String>,
}

/// Signs up, step 1: a code to the phone number (the partner's own
/// verifier; with a dev verifier the code is in the answer). Limited per
/// client address, per number and in all, per rolling day.
#[utoipa::path(post, path = "/v1/partner/registrations", tag = "partner", request_body = StartRegistration,
    responses((status = 201, body = RegistrationStarted), (status = 400, body = ErrorBody, description = "invalid_phone, invalid_json"),
        (status = 413, body = ErrorBody), (status = 429, body = ErrorBody, description = "rate_limited, with Retry-After"),
        (status = 502, body = ErrorBody, description = "verifier_unavailable")))]
pub async fn start_registration(
    State(s): State<AppState>,
    ClientAddr(addr): ClientAddr,
    Json(b): Json<StartRegistration>,
) -> ApiResult<(StatusCode, Json<RegistrationStarted>)> {
    let r = s
        .service
        .start_registration(&b.phone, b.region.as_deref(), addr)
        .await?;
    Ok((StatusCode::CREATED, Json(r)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRegistration {
    pub code: String,
    /// The display name of a new partner user (kept when the number
    /// already has one).
    pub name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Created {
    pub user_id: String,
    /// This device's bearer token, shown once.
    pub token: String,
    /// False when the number already had a partner user (a new token of it).
    pub new_user: bool,
}

/// Signs up, step 2: the code; answers the partner user and a token.
#[utoipa::path(post, path = "/v1/partner/registrations/{registration_id}/verify", tag = "partner", request_body = VerifyRegistration,
    params(("registration_id" = String, Path, description = "from step 1")),
    responses((status = 201, body = Created), (status = 400, body = ErrorBody, description = "wrong_code, bad_request, invalid_json, invalid_path"),
        (status = 410, body = ErrorBody, description = "verification_expired"), (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "too_many_attempts")))]
pub async fn verify_registration(
    State(s): State<AppState>,
    Path(id): Path<Uuid>,
    Json(b): Json<VerifyRegistration>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    let (u, token, new_user) = s.service.verify_registration(id, &b.code, &b.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            user_id: u.id.to_string(),
            token,
            new_user,
        }),
    ))
}

/// The caller: name, link to the messenger, ad personalisation.
#[utoipa::path(get, path = "/v1/partner/me", tag = "partner", security(("bearer" = [])),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody)))]
pub async fn me(State(s): State<AppState>, User(u): User) -> ApiResult<Json<Value>> {
    let linked = s
        .service
        .store
        .link_of(u.id)
        .await
        .map_err(crate::PartnerError::from)?
        .is_some();
    Ok(Json(json!({
        "user_id": u.id,
        "name": u.name,
        "linked_to_messenger": linked,
        "ads_personalisation": u.ads_personalisation,
    })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ads {
    pub enabled: bool,
}

/// Turns the caller's ad personalisation on or off.
#[utoipa::path(put, path = "/v1/partner/me/ads", tag = "partner", security(("bearer" = [])), request_body = Ads,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn set_ads(
    State(s): State<AppState>,
    User(u): User,
    Json(b): Json<Ads>,
) -> ApiResult<StatusCode> {
    s.service
        .store
        .set_ads_personalisation(u.id, b.enabled)
        .await
        .map_err(crate::PartnerError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Contacts {
    /// `coordination` pseudonyms (64 hex digits each), computed through
    /// the key service by the uploader's client.
    pub pseudonyms: Vec<String>,
}

/// Uploads the caller's contacts as pseudonyms; only matches are kept.
#[utoipa::path(post, path = "/v1/partner/me/contacts", tag = "partner", security(("bearer" = [])), request_body = Contacts,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn upload_contacts(
    State(s): State<AppState>,
    User(u): User,
    Json(b): Json<Contacts>,
) -> ApiResult<Json<Value>> {
    let kept = s.service.upload_contacts(&u, &b.pseudonyms).await?;
    Ok(Json(
        json!({ "received": b.pseudonyms.len(), "kept": kept }),
    ))
}

/// Friend suggestions (only of users who granted `product`).
#[utoipa::path(get, path = "/v1/partner/me/suggestions", tag = "partner", security(("bearer" = [])),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody)))]
pub async fn suggestions(State(s): State<AppState>, User(u): User) -> ApiResult<Json<Value>> {
    let list = s.service.suggestions(&u).await?;
    Ok(Json(json!({
        "suggestions": list.iter().map(|x| json!({ "user_id": x.id, "name": x.name })).collect::<Vec<_>>()
    })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Phone {
    /// The user's `coordination` pseudonym (64 hex digits).
    pub phone_pseudonym: String,
}

/// Sets the caller's phone pseudonym (and links them when the messenger
/// shared the same pseudonym for `product`).
#[utoipa::path(put, path = "/v1/partner/me/phone", tag = "partner", security(("bearer" = [])), request_body = Phone,
    responses((status = 204), (status = 400, body = ErrorBody, description = "invalid_pseudonym, invalid_json"), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn set_phone(
    State(s): State<AppState>,
    User(u): User,
    Json(b): Json<Phone>,
) -> ApiResult<StatusCode> {
    let p = PseudonymId::from_hex(&b.phone_pseudonym).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_pseudonym",
            "64 hex digits expected",
        )
    })?;
    s.service
        .store
        .set_phone_pseudonym(u.id, &p, s.service.now())
        .await
        .map_err(crate::PartnerError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Blinded evaluation for the partner's users, in the key service's wire
/// format: the partner forwards blinded elements (it learns nothing of
/// the numbers) under its own key-service client, at most 1,000 a
/// request, each charged first to the caller's own quota per rolling day
/// (per person: all its tokens share it).
#[utoipa::path(post, path = "/v1/oprf/coordination/evaluate", tag = "partner", security(("bearer" = [])),
    request_body(content = Object, description = "the key service's EvaluateRequest"),
    responses((status = 200, body = Object, description = "the key service's EvaluateResponse"),
        (status = 400, body = ErrorBody, description = "invalid_batch, invalid_element, invalid_json"), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 429, body = ErrorBody, description = "quota_exceeded, with Retry-After"),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn evaluate(
    State(s): State<AppState>,
    User(u): User,
    Json(b): Json<accord_keyd_client::wire::EvaluateRequest>,
) -> ApiResult<Json<accord_keyd_client::wire::EvaluateResponse>> {
    if s.service.oprf.is_none() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "key_service_unavailable",
            "this partner runs without a key service",
        ));
    }
    if b.elements.is_empty() || b.elements.len() > crate::service::MAX_EVALUATE {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_batch",
            "1 to 1,000 elements",
        ));
    }
    let elements = b
        .elements
        .iter()
        .enumerate()
        .map(|(i, e)| {
            accord_crypto::oprf::BlindedElementBytes::from_base64(e).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_element",
                    format!("element {i} is not 32 bytes of base64url"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let r = s.service.evaluate(&u, b.key_version, elements).await?;
    Ok(Json(accord_keyd_client::wire::EvaluateResponse {
        key_version: r.key_version,
        elements: r.elements,
    }))
}
