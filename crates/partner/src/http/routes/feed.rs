//! The coordination feed's endpoints. The caller is the messenger, proved
//! by an HMAC over the method, the path, a timestamp, a nonce and the
//! exact body (`accord_crypto::mac`); a nonce seen before is refused.

use crate::http::AppState;
use crate::service::FeedAuth;
use accord_crypto::mac::{NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use accord_domain::coordination::{FeedAck, Mismatches, ReconcileBucketOutcome};
use accord_http::{ApiError, ApiResult, ErrorBody, Json};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

/// The authentication headers of a feed request: 401 `bad_signature`
/// when one is missing or malformed.
fn signed(headers: &HeaderMap) -> Result<FeedAuth, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let refused =
        |why: &str| ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", why.to_owned());
    let (Some(signature), Some(ts), Some(nonce)) = (
        header(SIGNATURE_HEADER),
        header(TIMESTAMP_HEADER),
        header(NONCE_HEADER),
    ) else {
        return Err(refused("missing feed signature, timestamp or nonce"));
    };
    Ok(FeedAuth {
        timestamp_ms: ts.parse().map_err(|_| refused("malformed timestamp"))?,
        nonce: nonce.to_owned(),
        signature: signature.to_owned(),
    })
}

/// A batch of coordination events from the messenger; the answer says
/// what is held now and what was deleted (the deletion confirmation).
#[utoipa::path(post, path = "/v1/feed/ingest", tag = "feed", params(("x-accord-signature" = String, Header, description = "v2=HMAC-SHA256 over method, path, timestamp, nonce and body, hex"), ("x-accord-timestamp" = i64, Header, description = "Unix milliseconds; 5-minute window"), ("x-accord-nonce" = String, Header, description = "16 to 64 hex digits, new for every request; a replay is refused")),
    request_body(content = Object, content_type = "application/json", description = "a signed feed message"),
    responses((status = 200, body = Object, description = "FeedAck"), (status = 400, body = ErrorBody, description = "invalid_batch, invalid_json"), (status = 401, body = ErrorBody, description = "bad_signature, replayed_request"), (status = 413, body = ErrorBody, description = "payload_too_large")))]
pub async fn ingest(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<FeedAck>> {
    Ok(Json(s.service.ingest(&signed(&headers)?, &body).await?))
}

/// Reconciliation, step 1: the digest of every reconciliation bucket
/// (pseudonyms by first byte, per purpose) compared with the partner's.
#[utoipa::path(post, path = "/v1/feed/reconcile/digests", tag = "feed", params(("x-accord-signature" = String, Header, description = "v2=HMAC-SHA256 over method, path, timestamp, nonce and body, hex"), ("x-accord-timestamp" = i64, Header, description = "Unix milliseconds; 5-minute window"), ("x-accord-nonce" = String, Header, description = "16 to 64 hex digits, new for every request; a replay is refused")),
    request_body(content = Object, content_type = "application/json", description = "a signed feed message"),
    responses((status = 200, body = Object, description = "Mismatches"), (status = 400, body = ErrorBody, description = "invalid_batch, invalid_json"), (status = 401, body = ErrorBody, description = "bad_signature, replayed_request"), (status = 413, body = ErrorBody, description = "payload_too_large")))]
pub async fn digests(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Mismatches>> {
    Ok(Json(
        s.service.compare_digests(&signed(&headers)?, &body).await?,
    ))
}

/// Reconciliation, step 2: one reconciliation bucket's contents; strays
/// are deleted. The path's `bucket` is a reconciliation bucket (the
/// pseudonyms whose first byte is `bucket`), not a rate limit or a
/// contact-discovery prefix bucket.
#[utoipa::path(post, path = "/v1/feed/reconcile/bucket", tag = "feed", params(("x-accord-signature" = String, Header, description = "v2=HMAC-SHA256 over method, path, timestamp, nonce and body, hex"), ("x-accord-timestamp" = i64, Header, description = "Unix milliseconds; 5-minute window"), ("x-accord-nonce" = String, Header, description = "16 to 64 hex digits, new for every request; a replay is refused")),
    request_body(content = Object, content_type = "application/json", description = "a signed feed message"),
    responses((status = 200, body = Object, description = "ReconcileBucketOutcome"), (status = 400, body = ErrorBody, description = "invalid_batch, invalid_json"), (status = 401, body = ErrorBody, description = "bad_signature, replayed_request"), (status = 413, body = ErrorBody, description = "payload_too_large")))]
pub async fn bucket(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<ReconcileBucketOutcome>> {
    Ok(Json(
        s.service
            .reconcile_bucket(&signed(&headers)?, &body)
            .await?,
    ))
}
