//! The OPRF itself: batch evaluation (API clients) and the key versions
//! (public).

use super::purpose;
use crate::error::KeydError;
use crate::http::extract::ApiClient;
use crate::http::AppState;
use crate::service::KeyVersions;
use crate::wire::{EvaluateRequest, EvaluateResponse};
use accord_crypto::oprf::{BlindedElementBytes, MAX_BATCH};
use accord_http::{ApiResult, ErrorBody, Json, Path};
use axum::extract::State;

/// Evaluates 1 to 10,000 blinded elements under the purpose's key
/// (RFC 9497 `BlindEvaluate`, ristretto255-SHA512, base mode).
///
/// The whole batch is checked before anything is charged or evaluated: an
/// invalid element, a wrong size, an unknown purpose or version, or an
/// exhausted quota refuses the batch, charges nothing and evaluates
/// nothing.
#[utoipa::path(post, path = "/v1/oprf/{purpose}/evaluate", tag = "oprf", params(("purpose" = String, Path, description = "coordination or contacts")),
    request_body = EvaluateRequest, security(("bearer" = [])),
    responses(
        (status = 200, body = EvaluateResponse),
        (status = 400, body = ErrorBody, description = "invalid_element (details.index), empty_batch, invalid_json"),
        (status = 401, body = ErrorBody, description = "unauthorized"),
        (status = 403, body = ErrorBody, description = "purpose_not_allowed"),
        (status = 404, body = ErrorBody, description = "unknown_purpose, unknown_key_version"),
        (status = 413, body = ErrorBody, description = "batch_too_large, payload_too_large"),
        (status = 429, body = ErrorBody, description = "quota_exceeded, with Retry-After"),
    ))]
pub async fn evaluate(
    State(s): State<AppState>,
    ApiClient(client): ApiClient,
    Path(p): Path<String>,
    Json(body): Json<EvaluateRequest>,
) -> ApiResult<Json<EvaluateResponse>> {
    let purpose = purpose(&p)?;
    let n = body.elements.len();
    if n == 0 {
        return Err(KeydError::EmptyBatch.into());
    }
    if n > MAX_BATCH {
        return Err(KeydError::BatchTooLarge { max: MAX_BATCH }.into());
    }
    let mut elements = Vec::with_capacity(n);
    for (index, e) in body.elements.iter().enumerate() {
        match BlindedElementBytes::from_base64(e) {
            Some(b) => elements.push(b),
            None => {
                // Report the first invalid element, wherever it fails.
                let earlier = s.service.first_invalid(elements).await?;
                return Err(KeydError::InvalidElement {
                    index: earlier.unwrap_or(index),
                }
                .into());
            }
        }
    }
    let done = s
        .service
        .evaluate(&client, purpose, body.key_version, elements)
        .await?;
    Ok(Json(EvaluateResponse {
        key_version: done.key_version,
        elements: done.elements,
    }))
}

/// The purpose's active key version and every version still evaluable.
/// Versions only: no key material is ever returned.
#[utoipa::path(get, path = "/v1/oprf/{purpose}/keys", tag = "oprf", params(("purpose" = String, Path, description = "coordination or contacts")),
    responses((status = 200, body = KeyVersions), (status = 404, body = ErrorBody, description = "unknown_purpose")))]
pub async fn keys(
    State(s): State<AppState>,
    Path(p): Path<String>,
) -> ApiResult<Json<KeyVersions>> {
    Ok(Json(s.service.key_versions(purpose(&p)?)?))
}
