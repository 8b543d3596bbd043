//! Registration by phone number: request a code, then verify it with the
//! device's information. Public by nature; limited per number (codes per
//! hour) and per verification (attempts).

use crate::http::error::{ApiResult, ErrorBody, Json, Path};
use crate::http::AppState;
use crate::service::{Registered, RegistrationStarted, VerifyRequest};
use accord_domain::consent::SharingChoice;
use accord_domain::{DeviceInfo, Purpose};
use accord_http::ClientAddr;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRegistration {
    /// International (`+62 812-3456-7890`) or national with `region`.
    pub phone: String,
    /// ISO 3166-1 alpha-2 region for national formats, e.g. `ID`.
    pub region: Option<String>,
}

/// The user's choice on the acceptance screen.
#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AcceptChoice {
    /// The sharing box. Omitted: left as presented (ticked under
    /// `whatsapp-2016`, nothing granted under `strict`).
    pub share: Option<bool>,
    /// `strict` only: purposes granted one by one.
    #[serde(default)]
    pub grants: Vec<Purpose>,
}

impl From<AcceptChoice> for SharingChoice {
    fn from(c: AcceptChoice) -> Self {
        SharingChoice {
            share: c.share,
            grants: c.grants.into_iter().collect(),
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Acceptance {
    pub version: u32,
    #[serde(flatten)]
    pub choice: AcceptChoice,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRegistration {
    pub code: String,
    pub device: DeviceInfo,
    /// Required for a new account when a policy is in force.
    pub accept: Option<Acceptance>,
}

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
