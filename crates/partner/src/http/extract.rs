//! Who is calling: a partner user (bearer token) or the operator.

use super::error::ApiError;
use super::AppState;
use accord_crypto::token::TokenHash;
use accord_storage::partner::PartnerUser;
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

pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let t = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        if TokenHash::of(t) == s.admin_token {
            return Ok(Admin);
        }
        match s.service.authenticate(t).await? {
            Some(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_required",
                "this endpoint needs the operator's admin token",
            )),
            None => Err(ApiError::unauthorized()),
        }
    }
}
