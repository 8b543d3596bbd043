//! Changing the account's phone number: a code to the new number, then
//! verification. Pseudonyms are recomputed; the partner gets the old one
//! revoked and (with consent) the new one shared.

use crate::http::extract::User;
use crate::http::AppState;
use crate::service::RegistrationStarted;
use accord_http::ClientAddr;
use accord_http::{ApiResult, ErrorBody, Json, Path};
use accord_messenger_wire::{NewNumber, NumberCode};
use axum::extract::State;
use axum::http::StatusCode;
use uuid::Uuid;

/// Sends a verification code to the new number.
#[utoipa::path(post, path = "/v1/me/number", tag = "account", request_body = NewNumber, security(("bearer" = [])),
    responses((status = 202, body = RegistrationStarted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn start(
    State(s): State<AppState>,
    _: User,
    ClientAddr(client): ClientAddr,
    Json(b): Json<NewNumber>,
) -> ApiResult<(StatusCode, Json<RegistrationStarted>)> {
    let r = s
        .messenger
        .start_registration(&b.phone, b.region.as_deref(), client)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(r)))
}

/// Verifies the code and moves the account to the new number.
#[utoipa::path(post, path = "/v1/me/number/{registration_id}/verify", tag = "account", request_body = NumberCode,
    params(("registration_id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn verify(
    State(s): State<AppState>,
    User(c): User,
    Path(id): Path<Uuid>,
    Json(b): Json<NumberCode>,
) -> ApiResult<StatusCode> {
    s.messenger.change_number(c.account.id, id, &b.code).await?;
    Ok(StatusCode::NO_CONTENT)
}
