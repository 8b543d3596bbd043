//! The partner's own users: sign-up (optionally with a phone pseudonym),
//! their ad-personalisation setting, contact upload, suggestions.

use crate::http::error::{ApiError, ApiResult, Json};
use crate::http::extract::User;
use crate::http::AppState;
use accord_domain::coordination::parse_pseudonym_hex;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub name: String,
    /// The user's `coordination` pseudonym (64 hex digits), computed by
    /// their client through the key service. Never a number.
    pub phone_pseudonym: Option<String>,
}

#[derive(Serialize)]
pub struct Created {
    pub user_id: String,
    pub token: String,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ads {
    pub enabled: bool,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contacts {
    /// `coordination` pseudonyms (64 hex digits each), computed through
    /// the key service by the uploader's client.
    pub pseudonyms: Vec<String>,
}

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

pub async fn suggestions(State(s): State<AppState>, User(u): User) -> ApiResult<Json<Value>> {
    let list = s.service.suggestions(&u).await?;
    Ok(Json(json!({
        "suggestions": list.iter().map(|x| json!({ "user_id": x.id, "name": x.name })).collect::<Vec<_>>()
    })))
}
