//! Registration by phone number: request a code, then verify it with the
//! device's information. Public by nature; limited per number (codes per
//! hour) and per verification (attempts).

use crate::http::AppState;
use crate::service::{Registered, RegistrationStarted, VerifyRequest};
use accord_http::ClientAddr;
use accord_http::{ApiResult, ErrorBody, Json, Path};
use accord_messenger_wire::{StartRegistration, VerifyRegistration};
use axum::extract::State;
use axum::http::StatusCode;
use uuid::Uuid;

/// Sends a verification code to a phone number.
#[utoipa::path(post, path = "/v1/registrations", tag = "registration", request_body = StartRegistration,
    responses((status = 202, body = RegistrationStarted), (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn start(
    State(s): State<AppState>,
    ClientAddr(client): ClientAddr,
    Json(body): Json<StartRegistration>,
) -> ApiResult<(StatusCode, Json<RegistrationStarted>)> {
    let r = s
        .messenger
        .start_registration(&body.phone, body.region.as_deref(), client)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(r)))
}

/// Verifies the code; creates the account (or adds a device to it).
#[utoipa::path(post, path = "/v1/registrations/{registration_id}/verify", tag = "registration", request_body = VerifyRegistration,
    params(("registration_id" = Uuid, Path)),
    responses((status = 201, body = Registered), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 410, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn verify(
    State(s): State<AppState>,
    Path(id): Path<Uuid>,
    Json(body): Json<VerifyRegistration>,
) -> ApiResult<(StatusCode, Json<Registered>)> {
    let r = s
        .messenger
        .verify_registration(
            id,
            VerifyRequest {
                code: body.code,
                device: body.device,
                accept: body.accept.map(|a| (a.version, a.choice.into())),
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(r)))
}
