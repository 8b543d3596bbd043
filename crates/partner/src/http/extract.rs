//! Who is calling: a partner user (bearer token) or the operator
//! (`accord_http::Admin`, through [`AdminAuth`]). The feed endpoints
//! authenticate the messenger by the HMAC of each request instead
//! (`routes/feed.rs`).

use super::error::ApiError;
use super::AppState;
use accord_crypto::token::TokenHash;
use accord_http::{bearer, AdminAuth};
use accord_storage::partner::PartnerUser;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

pub use accord_http::Admin;

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

/// The caller's address, as the connection shows it (`accord_http::serve`
/// records it). Behind a reverse proxy every caller has the proxy's
/// address: forwarded headers are not trusted.
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
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
