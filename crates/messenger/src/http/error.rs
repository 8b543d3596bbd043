//! One error type for the API: every failure has a status, a stable
//! machine-readable `code` and a human `message`. Internal causes are
//! logged, never returned.

use crate::service::ServiceError;
use accord_domain::consent::ConsentError;
use accord_domain::PolicyError;
use accord_storage::StoreError;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::FromRequest;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after_s: Option<u64>,
}

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable.
    pub code: String,
    /// For humans; may change.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after_s: None,
        }
    }
    pub fn with_details(mut self, d: Value) -> Self {
        self.details = Some(d);
        self
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing, malformed, unknown or revoked bearer token",
        )
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.to_owned(),
            message: self.message,
            details: self.details,
        };
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after_s {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

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
            S::DeviceInfo(d) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_device_info", d.to_string()),
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
                let mut a = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string());
                a.retry_after_s = Some(retry_after_s);
                a
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
            S::PhoneTaken => ApiError::new(StatusCode::CONFLICT, "phone_taken", e.to_string()),
            S::NoKeyService => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "contact_discovery_unavailable", e.to_string()),
            S::Store(StoreError::Conflict(what)) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", format!("concurrent change to {what}; retry"))
            }
            S::Store(StoreError::NotFound(_)) => ApiError::not_found(),
            S::Store(other) => {
                tracing::error!(error = %other, "store failure");
                ApiError::internal()
            }
        }
    }
}

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        let code = match e {
            PolicyError::UnknownPurpose => "unknown_purpose",
            PolicyError::UnknownProfile => "unknown_profile",
            _ => "invalid_policy",
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected `Content-Type: application/json`",
            ),
            JsonRejection::BytesRejection(_) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body is too large or could not be read",
            ),
            other => ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", r.body_text())
    }
}

/// `Json` whose rejections come back as [`ApiError`].
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// An optional JSON body: an empty body gives `None`; anything else must
/// be `application/json` and parse, with the same errors as [`Json`].
pub struct OptionalJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body is too large or could not be read",
                )
            })?;
        if bytes.is_empty() {
            return Ok(OptionalJson(None));
        }
        if !json_type {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected `Content-Type: application/json`",
            ));
        }
        serde_json::from_slice(&bytes)
            .map(|v| OptionalJson(Some(v)))
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("invalid JSON body: {e}"),
                )
            })
    }
}

/// `Path` whose rejections come back as [`ApiError`].
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `Query` whose rejections come back as [`ApiError`].
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

pub type ApiResult<T> = Result<T, ApiError>;
