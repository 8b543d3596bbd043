//! The coordination feed's ingest endpoint. The caller is the messenger,
//! proved by an HMAC over the timestamp and the exact body.

use crate::http::error::{ApiError, ApiResult, ErrorBody, Json};
use crate::http::AppState;
use accord_crypto::mac::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use accord_domain::coordination::{FeedAck, Mismatches, ReconcileBucketOutcome};
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

/// A batch of coordination events from the messenger; the answer says
/// what is held now and what was deleted (the deletion confirmation).
#[utoipa::path(post, path = "/v1/feed/ingest", tag = "feed", params(("x-accord-signature" = String, Header, description = "HMAC-SHA256 of timestamp and body, hex"), ("x-accord-timestamp" = i64, Header, description = "Unix milliseconds; 5-minute window")),
    request_body(content = Object, content_type = "application/json", description = "a signed feed message"),
    responses((status = 200, body = Object, description = "FeedAck"), (status = 400, body = ErrorBody, description = "invalid_batch, invalid_json"), (status = 401, body = ErrorBody, description = "bad_signature"), (status = 413, body = ErrorBody, description = "payload_too_large")))]
pub async fn ingest(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<FeedAck>> {
    let (ts, sig) = signed(&headers)?;
    Ok(Json(s.service.ingest(ts, sig, &body).await?))
}

/// Reconciliation, step 1: the digest of every reconciliation bucket
/// (pseudonyms by first byte, per purpose) compared with the partner's.
#[utoipa::path(post, path = "/v1/feed/reconcile/digests", tag = "feed", params(("x-accord-signature" = String, Header, description = "HMAC-SHA256 of timestamp and body, hex"), ("x-accord-timestamp" = i64, Header, description = "Unix milliseconds; 5-minute window")),
    request_body(content = Object, content_type = "application/json", description = "a signed feed message"),
    responses((status = 200, body = Object, description = "Mismatches"), (status = 400, body = ErrorBody, description = "invalid_batch, invalid_json"), (status = 401, body = ErrorBody, description = "bad_signature"), (status = 413, body = ErrorBody, description = "payload_too_large")))]
pub async fn digests(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Mismatches>> {
    let (ts, sig) = signed(&headers)?;
    Ok(Json(s.service.compare_digests(ts, sig, &body).await?))
}

/// Reconciliation, step 2: one reconciliation bucket's contents; strays
/// are deleted. The path's `bucket` is a reconciliation bucket (the
/// pseudonyms whose first byte is `bucket`), not a rate limit or a
/// contact-discovery prefix bucket.
#[utoipa::path(post, path = "/v1/feed/reconcile/bucket", tag = "feed", params(("x-accord-signature" = String, Header, description = "HMAC-SHA256 of timestamp and body, hex"), ("x-accord-timestamp" = i64, Header, description = "Unix milliseconds; 5-minute window")),
    request_body(content = Object, content_type = "application/json", description = "a signed feed message"),
    responses((status = 200, body = Object, description = "ReconcileBucketOutcome"), (status = 400, body = ErrorBody, description = "invalid_batch, invalid_json"), (status = 401, body = ErrorBody, description = "bad_signature"), (status = 413, body = ErrorBody, description = "payload_too_large")))]
pub async fn bucket(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<ReconcileBucketOutcome>> {
    let (ts, sig) = signed(&headers)?;
    Ok(Json(s.service.reconcile_bucket(ts, sig, &body).await?))
}
