//! Who is calling. The evaluation endpoint takes an API client; the admin
//! endpoints the operator; health, the OpenAPI document and the key
//! versions are public by design.

use super::error::ApiError;
use super::AppState;
use accord_crypto::token::TokenHash;
use accord_storage::keyd::Client;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::StatusCode;

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// An API client of the key service (messenger, partner, business, device).
#[derive(Debug)]
pub struct ApiClient(pub Client);

impl FromRequestParts<AppState> for ApiClient {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        let client = state
            .service
            .authenticate(token)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        Ok(ApiClient(client))
    }
}

/// The operator.
#[derive(Debug)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        if TokenHash::of(token) == state.admin_token {
            Ok(Admin)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_required",
                "this endpoint needs the operator's admin token",
            ))
        }
    }
}
