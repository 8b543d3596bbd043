//! Reading and accepting the policy in force.

use crate::http::extract::AnyUser;
use crate::http::AppState;
use crate::service::ConsentView;
use accord_domain::PolicyVersion;
use accord_http::{ApiError, ApiResult, ErrorBody, Json, OptionalJson, Path};
use accord_messenger_wire::AcceptChoice;
use axum::extract::State;

/// The policy version in force: text, hash, purposes, profile, deadline.
#[utoipa::path(get, path = "/v1/policies/current", tag = "policy",
    responses((status = 200, body = PolicyVersion), (status = 404, body = ErrorBody)))]
pub async fn current(State(s): State<AppState>) -> ApiResult<Json<PolicyVersion>> {
    s.messenger
        .current_policy()
        .await?
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

/// Accepts a policy version, with the sharing choice. Open to restricted users.
#[utoipa::path(post, path = "/v1/policies/{version}/accept", tag = "policy", request_body = AcceptChoice,
    params(("version" = u32, Path)), security(("bearer" = [])),
    responses((status = 200, body = ConsentView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn accept(
    State(s): State<AppState>,
    AnyUser(caller): AnyUser,
    Path(version): Path<u32>,
    OptionalJson(body): OptionalJson<AcceptChoice>,
) -> ApiResult<Json<ConsentView>> {
    // No body means "left as presented".
    let choice = body.unwrap_or_default();
    Ok(Json(
        s.messenger
            .accept(caller.account.id, version, choice.into())
            .await?,
    ))
}
