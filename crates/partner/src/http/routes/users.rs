//! The partner's own users: sign-up (optionally with a phone pseudonym),
//! their ad-personalisation setting, contact upload, suggestions.

use crate::http::error::{ApiError, ApiResult, ErrorBody, Json};
use crate::http::extract::User;
use crate::http::AppState;
use accord_domain::coordination::parse_pseudonym_hex;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub name: String,
    /// The user's `coordination` pseudonym (64 hex digits), computed by
    /// their client through the key service. Never a number.
    pub phone_pseudonym: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Created {
    pub user_id: String,
    pub token: String,
}

/// Signs up a partner user, optionally with its phone pseudonym.
#[utoipa::path(post, path = "/v1/partner/users", tag = "partner", request_body = CreateUser,
    responses((status = 201, body = Created), (status = 400, body = ErrorBody, description = "invalid_pseudonym, invalid_json"), (status = 413, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    Json(b): Json<CreateUser>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    let p = match &b.phone_pseudonym {
        Some(h) => Some(parse_pseudonym_hex(h).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_pseudonym",
                "phone_pseudonym must be 64 hex digits",
            )
        })?),
        None => None,
    };
    let (u, token) = s.service.create_user(&b.name, p).await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            user_id: u.id.to_string(),
            token,
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
    let p = parse_pseudonym_hex(&b.phone_pseudonym).ok_or_else(|| {
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
/// the numbers) under its own key-service client, at most 1,000 a request.
#[utoipa::path(post, path = "/v1/oprf/coordination/evaluate", tag = "partner", security(("bearer" = [])),
    request_body(content = Object, description = "the key service's EvaluateRequest"),
    responses((status = 200, body = Object, description = "the key service's EvaluateResponse"),
        (status = 400, body = ErrorBody, description = "invalid_batch, invalid_element, invalid_json"), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn evaluate(
    State(s): State<AppState>,
    _: User,
    Json(b): Json<accord_keyd_client::wire::EvaluateRequest>,
) -> ApiResult<Json<accord_keyd_client::wire::EvaluateResponse>> {
    let oprf = s.service.oprf.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "key_service_unavailable",
            "this partner runs without a key service",
        )
    })?;
    if b.elements.is_empty() || b.elements.len() > 1000 {
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
    let r = oprf
        .evaluate_blinded(
            accord_crypto::oprf::OprfPurpose::Coordination,
            b.key_version,
            elements,
        )
        .await
        .map_err(|e| crate::PartnerError::KeyService(e.to_string()))?;
    Ok(Json(accord_keyd_client::wire::EvaluateResponse {
        key_version: r.key_version,
        elements: r.elements,
    }))
}
