//! Operator reads: every read names its purpose.

use crate::http::extract::Admin;
use crate::http::AppState;
use accord_domain::{PseudonymId, Purpose};
use accord_http::{ApiError, ApiResult, ErrorBody, Json, Path, Query};
use accord_storage::partner::PartnerStats;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize, utoipa::IntoParams)]
pub struct PurposeQuery {
    /// `ads` or `product`.
    pub purpose: String,
}

/// What the partner holds of a pseudonym for a purpose (a read that names
/// its purpose; refused and counted without a grant).
#[utoipa::path(get, path = "/v1/admin/partner/records/{pseudonym}", tag = "admin", security(("admin" = [])),
    params(("pseudonym" = String, Path, description = "64 hex digits"), PurposeQuery),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody, description = "unknown_purpose, invalid_pseudonym"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "admin_required, purpose_not_granted"), (status = 404, body = ErrorBody)))]
pub async fn read(
    State(s): State<AppState>,
    _: Admin,
    Path(p): Path<String>,
    Query(q): Query<PurposeQuery>,
) -> ApiResult<Json<Value>> {
    let purpose: Purpose = q.purpose.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_purpose",
            "purpose must be ads or product",
        )
    })?;
    let p = PseudonymId::from_hex(&p).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_pseudonym",
            "64 hex digits expected",
        )
    })?;
    let r = s.service.read(&p, purpose).await?;
    Ok(Json(json!({
        "purpose": r.purpose,
        "devices": r.devices,
        "ledger_ref": r.ledger_ref,
        "received_at": r.received_at,
    })))
}

/// Counts of what the partner holds, and of refused reads.
#[utoipa::path(get, path = "/v1/admin/partner/stats", tag = "admin", security(("admin" = [])),
    responses((status = 200, body = Object, description = "PartnerStats"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn stats(State(s): State<AppState>, _: Admin) -> ApiResult<Json<PartnerStats>> {
    Ok(Json(s.service.stats().await?))
}

/// Every checkpoint of the messenger's consent log that the feed brought,
/// signatures checked on arrival: this partner's witness of that log
/// (`accord ledger verify --witness partner`).
#[utoipa::path(get, path = "/v1/admin/partner/checkpoints", tag = "admin", security(("admin" = [])),
    responses((status = 200, body = Vec<Object>, description = "SignedCheckpoint"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn checkpoints(
    State(s): State<AppState>,
    _: Admin,
) -> ApiResult<Json<Vec<accord_domain::transparency::SignedCheckpoint>>> {
    Ok(Json(s.service.checkpoints().await?))
}
