//! Private contact discovery: the device evaluates its contacts'
//! pseudonyms at the key service (blinded, under its own quota), then
//! downloads prefix buckets (registered users' pseudonyms by 16-bit
//! prefix) and tests membership locally. Nothing here ever sees a contact's number.

use crate::http::extract::{Admin, User};
use crate::http::AppState;
use crate::service::{DiscoveryConfig, PseudonymRefresh};
use accord_crypto::oprf::KeyVersion;
use accord_http::{ApiError, ApiResult, ErrorBody, Json, Path, Query};
use accord_messenger_wire::{Bucket, BucketQuery};
use axum::extract::State;
use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Which key version and key service to use for discovery.
#[utoipa::path(get, path = "/v1/contacts/discovery", tag = "contacts", security(("bearer" = [])),
    responses((status = 200, body = DiscoveryConfig), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn discovery(State(s): State<AppState>, _: User) -> ApiResult<Json<DiscoveryConfig>> {
    Ok(Json(s.messenger.discovery_config().await?))
}

/// The registered users' `contacts` pseudonyms with a 16-bit prefix. The
/// path's `buckets` are contact-discovery prefix buckets (see
/// `accord_storage::messenger::PrefixBucket`), not rate limits or the
/// coordination feed's reconciliation buckets.
#[utoipa::path(get, path = "/v1/contacts/buckets/{prefix}", tag = "contacts", params(("prefix" = String, Path, description = "4 hex digits"), BucketQuery), security(("bearer" = [])),
    responses((status = 200, body = Bucket), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn bucket(
    State(s): State<AppState>,
    _: User,
    Path(prefix): Path<String>,
    Query(q): Query<BucketQuery>,
) -> ApiResult<Json<Bucket>> {
    let p = (prefix.len() == 4)
        .then(|| u16::from_str_radix(&prefix, 16).ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_prefix",
                "prefix must be 4 hex digits",
            )
        })?;
    let ps = s
        .messenger
        .contacts_bucket(KeyVersion(q.key_version), p)
        .await?;
    Ok(Json(Bucket {
        key_version: q.key_version,
        prefix: format!("{p:04x}"),
        pseudonyms: ps
            .iter()
            .map(|p| URL_SAFE_NO_PAD.encode(p.as_bytes()))
            .collect(),
    }))
}

/// Computes missing pseudonyms now (also done in the background).
#[utoipa::path(post, path = "/v1/admin/pseudonyms/refresh", tag = "admin", security(("admin" = [])),
    responses((status = 200, body = PseudonymRefresh), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn refresh(State(s): State<AppState>, _: Admin) -> ApiResult<Json<PseudonymRefresh>> {
    Ok(Json(s.messenger.refresh_pseudonyms(10_000).await?))
}
