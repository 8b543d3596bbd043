//! Who is calling. The evaluation endpoint takes an API client; the admin
//! endpoints the operator (`accord_http::Admin`, through [`AdminAuth`]);
//! health, the OpenAPI document and the key versions are public by design.

use super::AppState;
use accord_crypto::token::TokenHash;
use accord_http::ApiError;
use accord_http::{bearer, AdminAuth};
use accord_storage::keyd::Client;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

pub use accord_http::Admin;

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

impl AdminAuth for AppState {
    fn admin_token(&self) -> &TokenHash {
        &self.admin_token
    }
    async fn is_credential(&self, token: &str) -> Result<bool, ApiError> {
        Ok(self.service.authenticate(token).await?.is_some())
    }
}
