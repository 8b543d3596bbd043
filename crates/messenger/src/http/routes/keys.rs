//! The E2E key directory: identity keys, one-time and fallback keys, and
//! claims. Every key is signed by its device's ed25519 key and checked
//! here before it is stored; nothing here is secret.

use crate::http::extract::User;
use crate::http::AppState;
use crate::relay::{ClaimTarget, Claimed, KeyCount, RelayError};
use accord_domain::PhoneNumber;
use accord_e2e::wire::{MAX_KEY_JSON_BYTES, MAX_ONE_TIME_KEYS_JSON_BYTES};
use accord_e2e::{DeviceKeys, WireError};
use accord_http::{ApiError, ApiResult, ErrorBody, Json};
use accord_messenger_wire::{ClaimRequest, OneTimeKeysUpload};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

impl From<RelayError> for ApiError {
    fn from(e: RelayError) -> Self {
        use RelayError as R;
        match e {
            R::Wire(w) => wire_error(&w),
            R::InvalidSignature => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_signature", e.to_string())
            }
            R::DeviceMismatch => ApiError::new(
                StatusCode::BAD_REQUEST,
                "device_mismatch",
                "`device_id` must be the calling device",
            ),
            R::DeviceKeysExist => {
                ApiError::new(StatusCode::CONFLICT, "device_keys_exist", e.to_string())
            }
            R::NoDeviceKeys => ApiError::new(StatusCode::CONFLICT, "no_device_keys", e.to_string()),
            R::BadRequest(m) => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m),
            R::NotFound => ApiError::not_found(),
            R::StaleDevices { missing, extra } => ApiError::new(
                StatusCode::CONFLICT,
                "stale_devices",
                "the envelopes do not cover exactly the current devices",
            )
            .with_details(json!({ "missing": missing, "extra": extra })),
            R::RateLimited { retry_after_s } => {
                let mut a =
                    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string());
                a.retry_after_s = Some(retry_after_s);
                a
            }
            R::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
            R::Store(s) => crate::service::ServiceError::Store(s).into(),
            R::KeyDirectory(k) => k.into(),
        }
    }
}

/// The HTTP face of a [`WireError`]: its stable code, 413 for size.
pub(crate) fn wire_error(w: &WireError) -> ApiError {
    let status = match w {
        WireError::TooLarge { .. } | WireError::CiphertextTooLarge { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        WireError::BadSignature => {
            return ApiError::new(StatusCode::BAD_REQUEST, "invalid_signature", w.to_string())
        }
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, w.code(), w.to_string())
}

/// Strict JSON body: size cap first, then parse; errors keep the wire codes.
pub(crate) fn wire_body<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(wire_error(&WireError::Empty));
    }
    if bytes.len() > limit {
        return Err(wire_error(&WireError::TooLarge {
            limit,
            actual: bytes.len(),
        }));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        let mut detail: String = e.to_string().chars().take(200).collect();
        detail.retain(|c| !c.is_control());
        if detail.starts_with("ciphertext_too_large") {
            return wire_error(&WireError::CiphertextTooLarge {
                limit: accord_e2e::MAX_ENVELOPE_BYTES,
            });
        }
        match e.classify() {
            Category::Data => wire_error(&WireError::Invalid(detail)),
            _ => wire_error(&WireError::Malformed(detail)),
        }
    })
}

/// Publishes this device's identity keys (once; the same keys again is a no-op).
#[utoipa::path(put, path = "/v1/keys/device", tag = "e2e", security(("bearer" = [])),
    request_body(content = Object, description = "DeviceKeys"),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn put_device_keys(
    State(s): State<AppState>,
    User(caller): User,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let keys: DeviceKeys = wire_body(&body, MAX_KEY_JSON_BYTES)?;
    s.e2e
        .put_device_keys(caller.account.id, caller.device, keys)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Publishes signed one-time keys and, optionally, a new fallback key.
#[utoipa::path(post, path = "/v1/keys/one-time", tag = "e2e", security(("bearer" = [])),
    request_body = OneTimeKeysUpload,
    responses((status = 200, body = KeyCount), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn upload_one_time_keys(
    State(s): State<AppState>,
    User(caller): User,
    body: Bytes,
) -> ApiResult<Json<KeyCount>> {
    let up: OneTimeKeysUpload = wire_body(&body, MAX_ONE_TIME_KEYS_JSON_BYTES + 1024)?;
    Ok(Json(
        s.e2e
            .upload_one_time_keys(caller.device, up.one_time_keys, up.fallback)
            .await?,
    ))
}

/// How many one-time keys of this device are left.
#[utoipa::path(get, path = "/v1/keys/one-time/count", tag = "e2e", security(("bearer" = [])),
    responses((status = 200, body = KeyCount), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn one_time_key_count(
    State(s): State<AppState>,
    User(caller): User,
) -> ApiResult<Json<KeyCount>> {
    Ok(Json(s.e2e.key_count(caller.device).await?))
}

/// Whose keys a claim asks for: exactly one of a number and an account.
pub fn claim_target(c: ClaimRequest) -> Result<ClaimTarget, ApiError> {
    match (c.phone, c.account_id) {
        (Some(p), None) => Ok(ClaimTarget::Phone(
            PhoneNumber::parse(&p, None).map_err(crate::service::ServiceError::from)?,
        )),
        (None, Some(a)) => Ok(ClaimTarget::Account(a)),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "give exactly one of `phone` and `account_id`",
        )),
    }
}

/// One one-time key (or the fallback key) per device of an account.
#[utoipa::path(post, path = "/v1/keys/claim", tag = "e2e", security(("bearer" = [])),
    request_body = ClaimRequest,
    responses((status = 200, body = Claimed), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn claim_keys(
    State(s): State<AppState>,
    User(caller): User,
    body: Bytes,
) -> ApiResult<Response> {
    let c: ClaimRequest = wire_body(&body, 1024)?;
    let target = claim_target(c)?;
    // A business claims through `/v1/business/claim`, which resolves only
    // users who opted in to it or wrote to it.
    if s.business.is_business(caller.account.id).await? {
        return Err(crate::business::BusinessError::UseBusinessApi.into());
    }
    let claimed: Claimed = s.e2e.claim(caller.device, target).await?;
    let mut r = Json(claimed).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}
