//! Key transparency: the directory's signed roots, and its lookup, history
//! and append-only proofs.
//!
//! Who may ask: lookups and histories name an account, so they take a
//! signed-in user (as claims do: any user may learn any account's public
//! keys, which a claim hands out anyway). Roots and audit proofs name no
//! account (akd's VRF hides the labels) and are for auditors, who need no
//! account: they are public, like the policy text.

use crate::http::extract::User;
use crate::http::AppState;
use crate::kt::{KeyDirectory, KtError};
use accord_domain::AccountId;
use accord_http::{ApiError, ApiResult, ErrorBody, Json, Path, Query};
use accord_messenger_wire::{
    AuditQuery, KtAudit, KtHistory, KtLookup, KtRoots, RootsQuery, MAX_ROOTS_PER_PAGE,
};
use axum::extract::State;
use axum::http::StatusCode;

impl From<KtError> for ApiError {
    fn from(e: KtError) -> Self {
        match e {
            KtError::NotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_in_directory",
                "the account is not in the key directory",
            ),
            KtError::BadRange(m) => ApiError::new(StatusCode::BAD_REQUEST, "bad_range", m),
            other => {
                tracing::error!(error = %other, "key directory failure");
                ApiError::internal()
            }
        }
    }
}

fn directory(s: &AppState) -> ApiResult<&KeyDirectory> {
    s.e2e.key_directory().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_key_directory",
            "this messenger runs without a key directory",
        )
    })
}

/// The directory's public keys and its signed epoch roots from `from` on.
#[utoipa::path(get, path = "/v1/kt/roots", tag = "kt", params(RootsQuery),
    responses((status = 200, body = KtRoots), (status = 503, body = ErrorBody)))]
pub async fn roots(
    State(s): State<AppState>,
    Query(q): Query<RootsQuery>,
) -> ApiResult<Json<KtRoots>> {
    let kt = directory(&s)?;
    let (latest_epoch, roots) = kt.roots(q.from.unwrap_or(1), MAX_ROOTS_PER_PAGE).await?;
    Ok(Json(KtRoots {
        keys: kt.keys().clone(),
        latest_epoch,
        roots,
    }))
}

/// An account's current device list with its lookup proof.
#[utoipa::path(get, path = "/v1/kt/lookup/{account_id}", tag = "kt", security(("bearer" = [])),
    params(("account_id" = String, Path)),
    responses((status = 200, body = KtLookup), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody, description = "not_in_directory")))]
pub async fn lookup(
    State(s): State<AppState>,
    User(_caller): User,
    Path(account): Path<AccountId>,
) -> ApiResult<Json<KtLookup>> {
    Ok(Json(directory(&s)?.lookup(account).await?))
}

/// Every device list an account had, with its history proof.
#[utoipa::path(get, path = "/v1/kt/history/{account_id}", tag = "kt", security(("bearer" = [])),
    params(("account_id" = String, Path)),
    responses((status = 200, body = KtHistory), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody, description = "not_in_directory")))]
pub async fn history(
    State(s): State<AppState>,
    User(_caller): User,
    Path(account): Path<AccountId>,
) -> ApiResult<Json<KtHistory>> {
    Ok(Json(directory(&s)?.history(account).await?))
}

/// That the directory only grew between two epochs (an append-only proof).
#[utoipa::path(get, path = "/v1/kt/audit", tag = "kt", params(AuditQuery),
    responses((status = 200, body = KtAudit), (status = 400, body = ErrorBody, description = "bad_range")))]
pub async fn audit(
    State(s): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<KtAudit>> {
    Ok(Json(directory(&s)?.audit(q.from, q.to).await?))
}
