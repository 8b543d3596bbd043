//! Operator reads: every read names its purpose.

use crate::http::error::{ApiError, ApiResult, Json, Path, Query};
use crate::http::extract::Admin;
use crate::http::AppState;
use accord_domain::coordination::parse_pseudonym_hex;
use accord_domain::Purpose;
use accord_storage::partner::PartnerStats;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
pub struct PurposeQuery {
    pub purpose: String,
}

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
    let p = parse_pseudonym_hex(&p).ok_or_else(|| {
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

pub async fn stats(State(s): State<AppState>, _: Admin) -> ApiResult<Json<PartnerStats>> {
    Ok(Json(s.service.stats().await?))
}
