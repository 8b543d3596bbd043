//! Who is calling. Every handler takes one of these (or is public by
//! design: health, the OpenAPI document, the current policy text, and the
//! two registration steps, which are rate limited instead).

use super::AppState;
use crate::service::Caller;
use accord_crypto::token::TokenHash;
use accord_domain::consent::Access;
use accord_http::ApiError;
use accord_http::{bearer, AdminAuth};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// The operator (`accord_http::Admin`): the admin token. A real device
/// token is known but not allowed there (403); anything else is not a
/// credential at all (401).
pub use accord_http::Admin;

/// A device of an account, whatever its access. Only for what a
/// restricted user may still do: read and accept the policy, export,
/// delete.
#[derive(Debug)]
pub struct AnyUser(pub Caller);

impl FromRequestParts<AppState> for AnyUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        let caller = state
            .messenger
            .authenticate(token)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        Ok(AnyUser(caller))
    }
}

/// A device of an account with full access: the policy in force is
/// accepted, or its deadline has not passed.
#[derive(Debug)]
pub struct User(pub Caller);

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let AnyUser(caller) = AnyUser::from_request_parts(parts, state).await?;
        match caller.access {
            Access::Full => Ok(User(caller)),
            Access::Restricted { version, .. } => {
                Err(crate::service::ServiceError::Restricted { version }.into())
            }
            Access::Deleted | Access::Unregistered => Err(ApiError::unauthorized()),
        }
    }
}

impl AdminAuth for AppState {
    fn admin_token(&self) -> &TokenHash {
        &self.admin_token
    }
    async fn is_credential(&self, token: &str) -> Result<bool, ApiError> {
        Ok(self.messenger.authenticate(token).await?.is_some())
    }
}

/// A business, by one of its API keys (`Authorization: Bearer acb_…`):
/// 401 `api_key_invalid`, `api_key_expired` or `api_key_revoked`, 403
/// `business_revoked`.
#[derive(Debug)]
pub struct BusinessKey(pub std::sync::Arc<accord_storage::business::BusinessRow>);

impl FromRequestParts<AppState> for BusinessKey {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        Ok(BusinessKey(state.business.authenticate(token).await?))
    }
}
