//! The coordination feed's ingest endpoint. The caller is the messenger,
//! proved by an HMAC over the timestamp and the exact body.

use crate::http::error::{ApiError, ApiResult, Json};
use crate::http::AppState;
use accord_crypto::mac::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use accord_domain::coordination::{BucketOutcome, FeedAck, Mismatches};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

fn signed(headers: &HeaderMap) -> Result<(i64, &str), ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(sig), Some(ts)) = (header(SIGNATURE_HEADER), header(TIMESTAMP_HEADER)) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "missing feed signature",
        ));
    };
    let ts: i64 = ts.parse().map_err(|_| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "malformed timestamp",
        )
    })?;
    Ok((ts, sig))
}

pub async fn ingest(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<FeedAck>> {
    let (ts, sig) = signed(&headers)?;
    Ok(Json(s.service.ingest(ts, sig, &body).await?))
}

pub async fn digests(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Mismatches>> {
    let (ts, sig) = signed(&headers)?;
    Ok(Json(s.service.compare_digests(ts, sig, &body).await?))
}

pub async fn bucket(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<BucketOutcome>> {
    let (ts, sig) = signed(&headers)?;
    Ok(Json(s.service.reconcile_bucket(ts, sig, &body).await?))
}
