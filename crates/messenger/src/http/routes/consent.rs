//! The privacy centre: consent state, grants, withdrawals, history, receipts.
//!
//! Withdrawal, the consent state, its history and the receipt are open to
//! a restricted user too (`AnyUser`): taking consent back, and seeing what
//! was given, are never blocked (GDPR Art. 7(3)); only a grant needs the
//! policy in force to be accepted.

use crate::http::extract::{AnyUser, User};
use crate::http::status::policy_error;
use crate::http::AppState;
use crate::service::ConsentView;
use accord_domain::consent::{ConsentChannel, ConsentCommand};
use accord_domain::receipt::ConsentReceipt;
use accord_domain::{Purpose, Timestamp};
use accord_http::{ApiError, ApiResult, ErrorBody, Json, Path, Query};
use accord_messenger_wire::AtQuery;
use axum::extract::State;
use axum::http::StatusCode;

/// The caller's consent now.
#[utoipa::path(get, path = "/v1/me/consent", tag = "consent", security(("bearer" = [])),
    responses((status = 200, body = ConsentView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn my_consent(
    State(s): State<AppState>,
    AnyUser(c): AnyUser,
) -> ApiResult<Json<ConsentView>> {
    Ok(Json(s.messenger.consent_view(&c.account).await?))
}

pub(crate) fn parse_at(raw: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse(raw).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_time",
            "`at` must be RFC 3339 UTC (…Z) or Unix milliseconds",
        )
    })
}

/// The caller's consent at a past instant, rebuilt from the ledger alone.
#[utoipa::path(get, path = "/v1/me/consent/history", tag = "consent", params(AtQuery), security(("bearer" = [])),
    responses((status = 200, body = ConsentView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn my_consent_at(
    State(s): State<AppState>,
    AnyUser(c): AnyUser,
    Query(q): Query<AtQuery>,
) -> ApiResult<Json<ConsentView>> {
    Ok(Json(
        s.messenger
            .consent_at(c.account.id, parse_at(&q.at)?)
            .await?,
    ))
}

/// A consent receipt (Kantara Consent Receipt v1.1 shape).
#[utoipa::path(get, path = "/v1/me/consent/receipt", tag = "consent", security(("bearer" = [])),
    responses((status = 200, body = ConsentReceipt), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn receipt(
    State(s): State<AppState>,
    AnyUser(c): AnyUser,
) -> ApiResult<Json<ConsentReceipt>> {
    Ok(Json(s.messenger.receipt(&c.account).await?))
}

fn purpose(raw: &str) -> Result<Purpose, ApiError> {
    raw.parse::<Purpose>().map_err(policy_error)
}

/// Grants a purpose (`ads` or `product`).
#[utoipa::path(post, path = "/v1/me/consent/{purpose}/grant", tag = "consent", params(("purpose" = Purpose, Path, description = "ads or product")), security(("bearer" = [])),
    responses((status = 200, body = ConsentView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn grant(
    State(s): State<AppState>,
    User(c): User,
    Path(p): Path<String>,
) -> ApiResult<Json<ConsentView>> {
    let cmd = ConsentCommand::Grant {
        purpose: purpose(&p)?,
        channel: ConsentChannel::PrivacyCentre,
    };
    Ok(Json(s.messenger.consent_command_by(&c.account, cmd).await?))
}

/// Withdraws a purpose (under `whatsapp-2016`: opts out of both, inside the window).
#[utoipa::path(post, path = "/v1/me/consent/{purpose}/withdraw", tag = "consent", params(("purpose" = Purpose, Path, description = "ads or product")), security(("bearer" = [])),
    responses((status = 200, body = ConsentView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn withdraw(
    State(s): State<AppState>,
    AnyUser(c): AnyUser,
    Path(p): Path<String>,
) -> ApiResult<Json<ConsentView>> {
    let cmd = ConsentCommand::Withdraw {
        purpose: purpose(&p)?,
        channel: ConsentChannel::PrivacyCentre,
    };
    Ok(Json(s.messenger.consent_command_by(&c.account, cmd).await?))
}

/// Withdraws a purpose: the same as `POST /v1/me/consent/{purpose}/withdraw`.
#[utoipa::path(delete, path = "/v1/me/consent/{purpose}", tag = "consent", params(("purpose" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = ConsentView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn withdraw_purpose(
    state: State<AppState>,
    caller: AnyUser,
    purpose: Path<String>,
) -> ApiResult<Json<ConsentView>> {
    withdraw(state, caller, purpose).await
}
