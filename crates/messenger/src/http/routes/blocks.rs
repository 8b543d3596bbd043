//! Blocking accounts and reporting received messages. A block is never
//! revealed to the blocked sender; a report names the sender and the
//! envelope, and carries plaintext only if the user chose to include it.

use crate::http::extract::User;
use crate::http::routes::keys::wire_body;
use crate::http::AppState;
use accord_domain::AccountId;
use accord_http::{ApiResult, ErrorBody, Json, Path};
use accord_messenger_wire::{ReportAccepted, ReportRequest};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;

/// Blocks an account: its messages are accepted but never delivered.
#[utoipa::path(post, path = "/v1/blocks/{account_id}", tag = "e2e", security(("bearer" = [])),
    params(("account_id" = String, Path)), responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn block_account(
    State(s): State<AppState>,
    User(caller): User,
    Path(blocked): Path<AccountId>,
) -> ApiResult<StatusCode> {
    s.e2e.block(caller.account.id, blocked).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lifts a block.
#[utoipa::path(delete, path = "/v1/blocks/{account_id}", tag = "e2e", security(("bearer" = [])),
    params(("account_id" = String, Path)), responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn unblock_account(
    State(s): State<AppState>,
    User(caller): User,
    Path(blocked): Path<AccountId>,
) -> ApiResult<StatusCode> {
    s.e2e.unblock(caller.account.id, blocked).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reports an envelope this device received.
#[utoipa::path(post, path = "/v1/reports", tag = "e2e", security(("bearer" = [])),
    request_body = ReportRequest,
    responses((status = 202, body = ReportAccepted), (status = 404, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn report_message(
    State(s): State<AppState>,
    User(caller): User,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<ReportAccepted>)> {
    let r: ReportRequest = wire_body(&body, 128 * 1024)?;
    s.e2e
        .report(caller.device, r.envelope_id, r.plaintext)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ReportAccepted { reported: true }),
    ))
}
