//! Who is calling: a partner user (bearer token) or the operator
//! (`accord_http::Admin`, through [`AdminAuth`]). The feed endpoints
//! authenticate the messenger by the HMAC of each request instead
//! (`routes/feed.rs`).

use super::AppState;
use accord_crypto::token::TokenHash;
use accord_http::ApiError;
use accord_http::{bearer, AdminAuth};
use accord_storage::partner::PartnerUser;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

pub use accord_http::{Admin, ClientAddr};

/// A partner user.
pub struct User(pub PartnerUser);

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let t = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        s.service
            .authenticate(t)
            .await?
            .map(User)
            .ok_or_else(ApiError::unauthorized)
    }
}

/// An advertiser (custom audiences), by its bearer token.
pub struct AdvertiserAuth(pub accord_storage::audience::Advertiser);

impl FromRequestParts<AppState> for AdvertiserAuth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let t = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        s.service
            .authenticate_advertiser(t)
            .await?
            .map(AdvertiserAuth)
            .ok_or_else(ApiError::unauthorized)
    }
}

impl AdminAuth for AppState {
    fn admin_token(&self) -> &TokenHash {
        &self.admin_token
    }
    async fn is_credential(&self, token: &str) -> Result<bool, ApiError> {
        Ok(self.service.authenticate(token).await?.is_some()
            || matches!(
                self.service.authenticate_advertiser(token).await,
                Ok(Some(_))
            ))
    }
}
