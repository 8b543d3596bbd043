//! The partner's errors as answers: the mapping of [`PartnerError`] to
//! the shared [`ApiError`] (status and stable `code`). The error type, its
//! JSON body and the extractors are `accord-http`'s.

use crate::service::PartnerError;
use accord_storage::StoreError;
use axum::http::StatusCode;
use serde_json::json;

use accord_http::ApiError;

impl From<PartnerError> for ApiError {
    fn from(e: PartnerError) -> Self {
        let message = e.to_string();
        match e {
            PartnerError::Signature(accord_crypto::mac::MacError::Replayed) => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "replayed_request",
                "this feed request was received before; a retry is a new request",
            ),
            PartnerError::Signature(m) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", m.to_string())
            }
            PartnerError::BadBatch(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_batch", m),
            PartnerError::Citation { error, .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, error.code(), message)
            }
            PartnerError::Checkpoint(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_checkpoint", message)
            }
            PartnerError::Equivocation => {
                ApiError::new(StatusCode::CONFLICT, "log_equivocation", message)
            }
            PartnerError::NoLogKey => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_log_key", message)
            }
            PartnerError::PurposeNotGranted(p) => ApiError::new(
                StatusCode::FORBIDDEN,
                "purpose_not_granted",
                format!("no grant for purpose `{p}`; the read was refused and counted"),
            ),
            PartnerError::BadRequest(m) => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m),
            PartnerError::NotFound => ApiError::not_found(),
            PartnerError::Unavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
            }
            PartnerError::WarmingUp(retry_after_s) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "warming_up", message)
                    .with_retry_after(retry_after_s)
            }
            PartnerError::Conflict(code) => ApiError::new(StatusCode::CONFLICT, code, message),
            PartnerError::UnknownAudience(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_audience", message)
            }
            PartnerError::UploadClosed => {
                ApiError::new(StatusCode::CONFLICT, "upload_closed", message)
            }
            PartnerError::UploadIncomplete { received, declared } => {
                ApiError::new(StatusCode::CONFLICT, "upload_incomplete", message)
                    .with_details(json!({ "received": received, "declared": declared }))
            }
            PartnerError::KeyService(m) => {
                tracing::warn!(error = %m, "key service failed");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "key_service_unavailable",
                    "the key service is not available",
                )
            }
            PartnerError::Phone(p) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_phone", p.to_string())
            }
            PartnerError::VerificationExpired => {
                ApiError::new(StatusCode::GONE, "verification_expired", e.to_string())
            }
            PartnerError::WrongCode { attempts_left } => {
                ApiError::new(StatusCode::BAD_REQUEST, "wrong_code", e.to_string())
                    .with_details(json!({ "attempts_left": attempts_left }))
            }
            PartnerError::TooManyAttempts => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                e.to_string(),
            ),
            PartnerError::RateLimited(_, retry_after_s) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string())
                    .with_retry_after(retry_after_s)
            }
            PartnerError::QuotaExceeded {
                retry_after_s,
                quota,
                used,
                requested,
            } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "quota_exceeded",
                e.to_string(),
            )
            .with_retry_after(retry_after_s)
            .with_details(json!({ "quota": quota, "used": used, "requested": requested })),
            PartnerError::Verifier(v) => {
                tracing::warn!(error = %v, "verifier failed");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "verifier_unavailable",
                    "could not send the code; try again later",
                )
            }
            PartnerError::Store(StoreError::Conflict(w)) => ApiError::conflict(w),
            PartnerError::Store(other) => {
                tracing::error!(error = %other, "store failure");
                ApiError::internal()
            }
        }
    }
}
