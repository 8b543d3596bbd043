//! The key service's errors as answers: the mapping of [`KeydError`] to
//! the shared [`ApiError`] (status and stable `code`). The error type, its
//! JSON body and the extractors are `accord-http`'s.

use crate::error::KeydError;
use axum::http::StatusCode;
use serde_json::json;

use accord_http::ApiError;

/// 404 for a purpose named in a path that the key service does not have.
pub fn unknown_purpose() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_purpose",
        "unknown OPRF purpose (expected one of: coordination, contacts)",
    )
}

impl From<KeydError> for ApiError {
    fn from(e: KeydError) -> Self {
        use KeydError as K;
        match e {
            K::EmptyBatch => ApiError::new(
                StatusCode::BAD_REQUEST,
                "empty_batch",
                "the batch has no elements",
            ),
            K::BatchTooLarge { max } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch_too_large",
                format!("a batch holds at most {max} elements; split it"),
            )
            .with_details(json!({ "max": max })),
            K::InvalidElement { index } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_element", e.to_string())
                    .with_details(json!({ "index": index }))
            }
            K::UnknownKeyVersion { purpose, version } => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_key_version", e.to_string())
                    .with_details(json!({ "purpose": purpose, "version": version }))
            }
            K::PurposeNotAllowed { purpose } => {
                ApiError::new(StatusCode::FORBIDDEN, "purpose_not_allowed", e.to_string())
                    .with_details(json!({ "purpose": purpose }))
            }
            K::QuotaExceeded(q) => {
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "quota_exceeded",
                    format!("this batch would exceed the client's quota of {} elements per rolling day; nothing was evaluated", q.quota),
                )
                .with_details(json!({
                    "quota": q.quota,
                    "used": q.used,
                    "requested": q.requested,
                    "retry_after_s": q.retry_after_s,
                }))
                .with_retry_after(q.retry_after_s)
            }
            K::UnknownClient => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_client", "no such client")
            }
            K::InvalidName(why) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_name",
                format!("invalid client name: {why}"),
            ),
            K::Store(accord_storage::StoreError::Conflict(what)) => ApiError::conflict(what),
            other => {
                tracing::error!(error = %other, "key service failure");
                ApiError::internal()
            }
        }
    }
}
