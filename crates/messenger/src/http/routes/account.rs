//! The caller's account: read, export, delete.

use crate::http::extract::{AnyUser, User};
use crate::http::AppState;
use crate::service::Export;
use accord_http::{ApiResult, ErrorBody, Json};
use accord_messenger_wire::Me;
use axum::extract::State;
use axum::http::StatusCode;

/// The caller's account.
#[utoipa::path(get, path = "/v1/me", tag = "account", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn me(State(s): State<AppState>, User(c): User) -> ApiResult<Json<Me>> {
    let devices = s
        .messenger
        .store
        .devices(c.account.id)
        .await
        .map_err(crate::service::ServiceError::from)?;
    Ok(Json(Me {
        account_id: c.account.id,
        device_id: c.device,
        devices: u32::try_from(devices.len()).unwrap_or(u32::MAX),
        consent: s.messenger.consent_view(&c.account).await?,
    }))
}

/// Everything the messenger holds about the caller, as JSON. Open to restricted users.
#[utoipa::path(get, path = "/v1/me/export", tag = "account", security(("bearer" = [])),
    responses((status = 200, body = Export), (status = 401, body = ErrorBody)))]
pub async fn export(State(s): State<AppState>, AnyUser(c): AnyUser) -> ApiResult<Json<Export>> {
    Ok(Json(s.messenger.export(&c.account).await?))
}

/// Deletes the caller's account: erases it and its devices, leaves a ledger entry. Open to restricted users.
#[utoipa::path(delete, path = "/v1/me", tag = "account", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn delete_me(State(s): State<AppState>, AnyUser(c): AnyUser) -> ApiResult<StatusCode> {
    s.messenger.delete(c.account.id).await?;
    // The account's devices leave the key directory (an empty list). The
    // deletion stands even if this fails; the next start does not redo
    // it, so it is logged loudly.
    if let Err(e) = s.e2e.publish_accounts(&[c.account.id]).await {
        tracing::error!(error = %e, account = %c.account.id, "deleted account not published to the key directory");
    }
    Ok(StatusCode::NO_CONTENT)
}
