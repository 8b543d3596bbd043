//! The messenger's errors as answers: the mapping of [`ServiceError`] and
//! [`PolicyError`] to the shared [`ApiError`] (status and stable `code`).
//! The error type, its JSON body and the extractors are `accord-http`'s.

use crate::service::ServiceError;
use accord_domain::consent::ConsentError;
use accord_domain::PolicyError;
use accord_storage::StoreError;
use axum::http::StatusCode;
use serde_json::json;

use accord_http::ApiError;

fn consent_status(e: &ConsentError) -> StatusCode {
    match e {
        ConsentError::NoAccount => StatusCode::NOT_FOUND,
        ConsentError::UnknownPolicyVersion(_) => StatusCode::NOT_FOUND,
        ConsentError::PolicyAcceptanceRequired(_) | ConsentError::OptOutWindowClosed(_) => {
            StatusCode::FORBIDDEN
        }
        ConsentError::PurposeNotInPolicy(_) | ConsentError::GrantsNotOffered => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::CONFLICT,
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use ServiceError as S;
        match e {
            S::Phone(p) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_phone", p.to_string()),
            S::DeviceInfo(d) => ApiError::new(StatusCode::BAD_REQUEST, d.code(), d.to_string()),
            S::Consent(c) => {
                let details = match &c {
                    ConsentError::OptOutWindowClosed(t) => Some(json!({ "closed_at": t.to_rfc3339() })),
                    ConsentError::PolicyAcceptanceRequired(v) => Some(json!({ "version": v })),
                    _ => None,
                };
                let mut a = ApiError::new(consent_status(&c), c.code(), c.to_string());
                a.details = details;
                a
            }
            S::VerificationExpired => ApiError::new(StatusCode::GONE, "verification_expired", e.to_string()),
            S::WrongCode { attempts_left } => ApiError::new(StatusCode::BAD_REQUEST, "wrong_code", e.to_string())
                .with_details(json!({ "attempts_left": attempts_left })),
            S::TooManyAttempts => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", e.to_string()),
            S::RateLimited { retry_after_s } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string()).with_retry_after(retry_after_s)
            }
            S::Verifier(v) => {
                tracing::warn!(error = %v, "verifier failed");
                ApiError::new(StatusCode::BAD_GATEWAY, "verifier_unavailable", "could not send the code; try again later")
            }
            S::Restricted { version } => ApiError::new(
                StatusCode::FORBIDDEN,
                "policy_acceptance_required",
                format!("the deadline to accept policy version {version} has passed; you can read and accept it, export your data, or delete your account"),
            )
            .with_details(json!({ "version": version })),
            S::BadRequest(m) => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m),
            S::NotFound => ApiError::not_found(),
            S::LedgerTampered(c) => ApiError::new(StatusCode::CONFLICT, "ledger_tampered", c.to_string())
                .with_details(json!({ "first_bad_entry": c.seq() })),
            S::KeyService(m) => {
                tracing::warn!(error = %m, "key service failed");
                ApiError::new(StatusCode::BAD_GATEWAY, "key_service_unavailable", "the key service is not available; try again later")
            }
            S::Partner(m) => {
                tracing::warn!(error = %m, "partner failed");
                ApiError::new(StatusCode::BAD_GATEWAY, "partner_unavailable", "the partner is not available; try again later")
            }
            S::PhoneTaken => ApiError::new(StatusCode::CONFLICT, "phone_taken", e.to_string()),
            S::NoAccountForNumber => ApiError::new(StatusCode::NOT_FOUND, "no_account", e.to_string()),
            S::NoKeyService => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "contact_discovery_unavailable", e.to_string()),
            S::Store(StoreError::Conflict(what)) => ApiError::conflict(what),
            S::Store(StoreError::NotFound(_)) => ApiError::not_found(),
            S::Store(other) => {
                tracing::error!(error = %other, "store failure");
                ApiError::internal()
            }
        }
    }
}

/// A policy that cannot be published, or a purpose or profile that does
/// not exist: 400 with its code.
pub fn policy_error(e: PolicyError) -> ApiError {
    let code = match e {
        PolicyError::UnknownPurpose => "unknown_purpose",
        PolicyError::UnknownProfile => "unknown_profile",
        _ => "invalid_policy",
    };
    ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
}

impl From<crate::business::BusinessError> for ApiError {
    fn from(e: crate::business::BusinessError) -> Self {
        use crate::business::BusinessError as B;
        use accord_domain::business::Refusal;
        let msg = e.to_string();
        match e {
            B::Refused(r) => {
                let status = match r {
                    Refusal::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                    _ => StatusCode::FORBIDDEN,
                };
                let a = ApiError::new(status, r.code(), msg).with_details(json!({
                    "refusal": r.code(),
                    "error_number": r.number(),
                }));
                if r == Refusal::RateLimited {
                    a.with_retry_after(1)
                } else {
                    a
                }
            }
            B::NotABusiness => ApiError::new(StatusCode::FORBIDDEN, "not_a_business", msg),
            B::AlreadyBusiness => ApiError::new(StatusCode::CONFLICT, "business_exists", msg),
            B::ApiKeyInvalid => ApiError::new(StatusCode::UNAUTHORIZED, "api_key_invalid", msg),
            B::ApiKeyExpired => ApiError::new(StatusCode::UNAUTHORIZED, "api_key_expired", msg),
            B::ApiKeyRevoked => ApiError::new(StatusCode::UNAUTHORIZED, "api_key_revoked", msg),
            B::BusinessRevoked => ApiError::new(StatusCode::FORBIDDEN, "business_revoked", msg),
            B::UnknownTemplate => ApiError::new(StatusCode::NOT_FOUND, "unknown_template", msg),
            B::UnknownBusiness => ApiError::new(StatusCode::NOT_FOUND, "unknown_business", msg),
            B::UnknownRecipient => ApiError::new(StatusCode::NOT_FOUND, "unknown_recipient", msg),
            B::UseBusinessApi => ApiError::new(StatusCode::FORBIDDEN, "use_business_api", msg),
            B::BadRequest(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", m),
            B::NotFound => ApiError::not_found(),
            B::Relay(r) => r.into(),
            B::Store(StoreError::Conflict(what)) => ApiError::conflict(what),
            B::Store(StoreError::NotFound(_)) => ApiError::not_found(),
            B::Store(other) => {
                tracing::error!(error = %other, "store failure");
                ApiError::internal()
            }
        }
    }
}
