//! One error type for the API: every failure has a status, a stable
//! machine-readable `code` and a human `message`. Internal causes are
//! logged, never returned.

use crate::error::KeydError;
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
            "missing, malformed or unknown bearer token",
        )
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }
    pub fn unknown_purpose() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_purpose",
            "unknown OPRF purpose (expected one of: coordination, contacts)",
        )
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
                let mut a = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "quota_exceeded",
                    format!("this batch would exceed the client's quota of {} elements per rolling day; nothing was evaluated", q.quota),
                )
                .with_details(json!({
                    "quota": q.quota,
                    "used": q.used,
                    "requested": q.requested,
                    "retry_after_s": q.retry_after_s,
                }));
                a.retry_after_s = Some(q.retry_after_s);
                a
            }
            K::UnknownClient => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_client", "no such client")
            }
            K::InvalidName(why) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_name",
                format!("invalid client name: {why}"),
            ),
            K::Store(accord_storage::StoreError::Conflict(what)) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("concurrent change to {what}; retry"),
            ),
            other => {
                tracing::error!(error = %other, "key service failure");
                ApiError::internal()
            }
        }
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

/// `Path` whose rejections come back as [`ApiError`].
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `Query` whose rejections come back as [`ApiError`].
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

pub type ApiResult<T> = Result<T, ApiError>;
