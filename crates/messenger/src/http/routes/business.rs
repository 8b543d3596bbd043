//! Business messaging. Three callers:
//! - a business's account, by its device token, registers and manages
//!   its API keys (`/v1/business`, `/v1/business/keys`);
//! - a business, by an API key, runs the business API: status,
//!   templates, sends, claims, events, webhook (`/v1/business/...`);
//! - a user, by its device token, reads business profiles and signed
//!   templates and sets its controls (`/v1/businesses/...`,
//!   `/v1/me/businesses`);
//! - the operator reviews templates and verifies or revokes businesses
//!   (`/v1/admin/...`).

use crate::business::BusinessError;
use crate::http::extract::{Admin, BusinessKey, User};
use crate::http::routes::keys::{claim_target, wire_body};
use crate::http::AppState;
use crate::relay::ClaimTarget;
use accord_domain::business::TemplateStatus;
use accord_domain::{AccountId, PhoneNumber};
use accord_e2e::wire::MAX_SEND_REQUEST_BYTES;
use accord_http::{ApiError, ApiResult, ErrorBody, Json, Path, Query};
use accord_messenger_wire::{
    ApiKeyCreated, ApiKeyView, BusinessControl, BusinessLookup, BusinessProfile, BusinessSend,
    BusinessSent, BusinessStatus, ClaimRequest, Claimed, EventView, NewApiKey, RegisterBusiness,
    ReviewTemplate, SetControls, SetWebhook, SignedTemplate, SubmitTemplate, TemplateView,
    WebhookCreated, WebhookOutcome,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use uuid::Uuid;

/// Largest body of `POST /v1/business/messages`.
pub const MAX_BUSINESS_SEND_BYTES: usize = MAX_SEND_REQUEST_BYTES + 4 * 1024;

/// Makes the caller's account a business; answers its first API key
/// (shown once).
#[utoipa::path(post, path = "/v1/business", tag = "business", security(("bearer" = [])),
    request_body = RegisterBusiness,
    responses((status = 201, body = ApiKeyCreated), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn register_business(
    State(s): State<AppState>,
    User(caller): User,
    Json(b): Json<RegisterBusiness>,
) -> ApiResult<(StatusCode, Json<ApiKeyCreated>)> {
    let key = s
        .business
        .register(caller.account.id, &b.display_name)
        .await?;
    Ok((StatusCode::CREATED, Json(key)))
}

/// A new API key of the caller's business (shown once).
#[utoipa::path(post, path = "/v1/business/keys", tag = "business", security(("bearer" = [])),
    request_body = NewApiKey,
    responses((status = 201, body = ApiKeyCreated), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_key(
    State(s): State<AppState>,
    User(caller): User,
    Json(b): Json<NewApiKey>,
) -> ApiResult<(StatusCode, Json<ApiKeyCreated>)> {
    let key = s
        .business
        .create_key(caller.account.id, &b.label, b.expires_in_days)
        .await?;
    Ok((StatusCode::CREATED, Json(key)))
}

/// The caller's business's API keys (without their secrets).
#[utoipa::path(get, path = "/v1/business/keys", tag = "business", security(("bearer" = [])),
    responses((status = 200, body = Vec<ApiKeyView>), (status = 403, body = ErrorBody)))]
pub async fn list_keys(
    State(s): State<AppState>,
    User(caller): User,
) -> ApiResult<Json<Vec<ApiKeyView>>> {
    Ok(Json(s.business.keys(caller.account.id).await?))
}

/// Revokes an API key of the caller's business: it stops working at once.
#[utoipa::path(delete, path = "/v1/business/keys/{key_id}", tag = "business", security(("bearer" = [])),
    params(("key_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn revoke_key(
    State(s): State<AppState>,
    User(caller): User,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    s.business.revoke_key(caller.account.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The business's standing: quality and tier with their reasons, and its
/// webhook's outbox.
#[utoipa::path(get, path = "/v1/business/status", tag = "business", security(("api_key" = [])),
    responses((status = 200, body = BusinessStatus), (status = 401, body = ErrorBody)))]
pub async fn status(
    State(s): State<AppState>,
    BusinessKey(b): BusinessKey,
) -> ApiResult<Json<BusinessStatus>> {
    Ok(Json(s.business.evaluate(b.account).await?))
}

/// Submits a template (the next version of its name and language),
/// pending an operator's review.
#[utoipa::path(post, path = "/v1/business/templates", tag = "business", security(("api_key" = [])),
    request_body = SubmitTemplate,
    responses((status = 201, body = TemplateView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn submit_template(
    State(s): State<AppState>,
    BusinessKey(b): BusinessKey,
    Json(t): Json<SubmitTemplate>,
) -> ApiResult<(StatusCode, Json<TemplateView>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.business.submit_template(b.account, t).await?),
    ))
}

/// The business's templates and their review state.
#[utoipa::path(get, path = "/v1/business/templates", tag = "business", security(("api_key" = [])),
    responses((status = 200, body = Vec<TemplateView>), (status = 401, body = ErrorBody)))]
pub async fn list_templates(
    State(s): State<AppState>,
    BusinessKey(b): BusinessKey,
) -> ApiResult<Json<Vec<TemplateView>>> {
    Ok(Json(s.business.templates(b.account).await?))
}

/// The keys of a recipient's devices, for a business's device: only users
/// who opted in to the business or wrote to it in the last 24 hours
/// (anyone else, user or not, is 404 `unknown_recipient`).
#[utoipa::path(post, path = "/v1/business/claim", tag = "business", security(("api_key" = [])),
    request_body = ClaimRequest,
    responses((status = 200, body = Claimed), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn claim(
    State(s): State<AppState>,
    BusinessKey(b): BusinessKey,
    body: Bytes,
) -> ApiResult<Json<Claimed>> {
    let c: ClaimRequest = wire_body(&body, 1024)?;
    let target = claim_target(c)?;
    Ok(Json(s.business.claim(&b, target).await?))
}

fn item_error(a: ApiError) -> accord_messenger_wire::ItemError {
    accord_messenger_wire::ItemError {
        status: a.status.as_u16(),
        code: a.code.to_owned(),
        message: a.message,
    }
}

/// Many claims in one request (1 to 100), each answered as
/// `POST /v1/business/claim` would (`claimed` or `error`), in order.
#[utoipa::path(post, path = "/v1/business/claims", tag = "business", security(("api_key" = [])),
    request_body = accord_messenger_wire::BusinessClaims,
    responses((status = 200, body = accord_messenger_wire::ClaimOutcomes), (status = 400, body = ErrorBody)))]
pub async fn claims(
    State(s): State<AppState>,
    BusinessKey(b): BusinessKey,
    body: Bytes,
) -> ApiResult<Json<accord_messenger_wire::ClaimOutcomes>> {
    let c: accord_messenger_wire::BusinessClaims =
        wire_body(&body, accord_messenger_wire::MAX_BATCH_ITEMS * 1024)?;
    if c.targets.is_empty() || c.targets.len() > accord_messenger_wire::MAX_BATCH_ITEMS {
        return Err(BusinessError::BadRequest(format!(
            "`targets` has 1 to {} items",
            accord_messenger_wire::MAX_BATCH_ITEMS
        ))
        .into());
    }
    let runs = c.targets.into_iter().map(|t| {
        let (s, b) = (&s, &b);
        async move {
            match claim_target(t) {
                Err(e) => Err(e),
                Ok(t) => s.business.claim(b, t).await.map_err(ApiError::from),
            }
        }
    });
    let results = futures_util::future::join_all(runs)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(c) => accord_messenger_wire::ClaimOutcome {
                claimed: Some(c),
                error: None,
            },
            Err(e) => accord_messenger_wire::ClaimOutcome {
                claimed: None,
                error: Some(item_error(e)),
            },
        })
        .collect();
    Ok(Json(accord_messenger_wire::ClaimOutcomes { results }))
}

/// Largest body of `POST /v1/business/messages/batch`.
pub const MAX_BUSINESS_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Many sends in one request (1 to 100), each admitted on its own and
/// answered as `POST /v1/business/messages` would (`sent` or `error`), in
/// order.
#[utoipa::path(post, path = "/v1/business/messages/batch", tag = "business", security(("api_key" = [])),
    request_body = accord_messenger_wire::BusinessSends,
    responses((status = 200, body = accord_messenger_wire::SendOutcomes), (status = 400, body = ErrorBody)))]
pub async fn send_batch(
    State(s): State<AppState>,
    BusinessKey(b): BusinessKey,
    body: Bytes,
) -> ApiResult<Json<accord_messenger_wire::SendOutcomes>> {
    let m: accord_messenger_wire::BusinessSends = wire_body(&body, MAX_BUSINESS_BATCH_BYTES)?;
    if m.messages.is_empty() || m.messages.len() > accord_messenger_wire::MAX_BATCH_ITEMS {
        return Err(BusinessError::BadRequest(format!(
            "`messages` has 1 to {} items",
            accord_messenger_wire::MAX_BATCH_ITEMS
        ))
        .into());
    }
    let runs = m.messages.into_iter().map(|one| {
        let (s, b) = (&s, &b);
        async move { s.business.send(b, one).await }
    });
    let results = futures_util::future::join_all(runs)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(sent) => accord_messenger_wire::SendOutcomeItem {
                sent: Some(sent),
                error: None,
            },
            Err(e) => accord_messenger_wire::SendOutcomeItem {
                sent: None,
                error: Some(item_error(e.into())),
            },
        })
        .collect();
    Ok(Json(accord_messenger_wire::SendOutcomes { results }))
}

/// Sends one business message, encrypted by the business's device: a
/// template (needs the user's opt-in) or a free-form `service` reply
/// (inside the 24-hour window). A refusal is 403 (429 for the
/// throughput limit) with a stable code and `details.error_number`.
#[utoipa::path(post, path = "/v1/business/messages", tag = "business", security(("api_key" = [])),
    request_body = BusinessSend,
    responses((status = 202, body = BusinessSent), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not_opted_in, outside_service_window, template_not_approved, template_paused, tier_limit_reached, quality_paused, blocked_by_user, muted_by_user, business_revoked"),
        (status = 409, body = ErrorBody), (status = 429, body = ErrorBody), (status = 404, body = ErrorBody, description = "the recipient account does not exist")))]
pub async fn send(
    State(s): State<AppState>,
    BusinessKey(b): BusinessKey,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<BusinessSent>)> {
    let m: BusinessSend = wire_body(&body, MAX_BUSINESS_SEND_BYTES)?;
    Ok((StatusCode::ACCEPTED, Json(s.business.send(&b, m).await?)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct EventsQuery {
    /// 1 to 500 (default 100).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// The business's newest status events and their webhook deliveries.
#[utoipa::path(get, path = "/v1/business/events", tag = "business", security(("api_key" = [])),
    params(EventsQuery),
    responses((status = 200, body = Vec<EventView>), (status = 401, body = ErrorBody)))]
pub async fn events(
    State(s): State<AppState>,
    BusinessKey(b): BusinessKey,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Json<Vec<EventView>>> {
    Ok(Json(
        s.business.events(b.account, q.limit.unwrap_or(100)).await?,
    ))
}

/// Registers (or replaces) the business's status webhook; answers its
/// signing secret (shown once).
#[utoipa::path(put, path = "/v1/business/webhook", tag = "business", security(("api_key" = [])),
    request_body = SetWebhook,
    responses((status = 200, body = WebhookCreated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn set_webhook(
    State(s): State<AppState>,
    BusinessKey(b): BusinessKey,
    Json(w): Json<SetWebhook>,
) -> ApiResult<Json<WebhookCreated>> {
    Ok(Json(s.business.set_webhook(b.account, w).await?))
}

/// Removes the business's webhook (due events are then kept, not sent).
#[utoipa::path(delete, path = "/v1/business/webhook", tag = "business", security(("api_key" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_webhook(
    State(s): State<AppState>,
    BusinessKey(b): BusinessKey,
) -> ApiResult<StatusCode> {
    s.business.delete_webhook(b.account).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Posts one signed test event to the webhook now, and says what the
/// receiver answered.
#[utoipa::path(post, path = "/v1/business/webhook/test", tag = "business", security(("api_key" = [])),
    responses((status = 200, body = WebhookOutcome), (status = 404, body = ErrorBody)))]
pub async fn test_webhook(
    State(s): State<AppState>,
    BusinessKey(b): BusinessKey,
) -> ApiResult<Json<WebhookOutcome>> {
    Ok(Json(s.business.test_webhook(b.account).await?))
}

/// A business as users see it: its name only once it is verified.
#[utoipa::path(get, path = "/v1/businesses/{business}", tag = "business", security(("bearer" = [])),
    params(("business" = String, Path)),
    responses((status = 200, body = BusinessProfile), (status = 404, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn profile(
    State(s): State<AppState>,
    User(_caller): User,
    Path(b): Path<AccountId>,
) -> ApiResult<Json<BusinessProfile>> {
    Ok(Json(s.business.profile(b).await?))
}

/// A business by its number (404 `unknown_business` for any number that
/// is not a business's).
#[utoipa::path(post, path = "/v1/businesses/lookup", tag = "business", security(("bearer" = [])),
    request_body = BusinessLookup,
    responses((status = 200, body = BusinessProfile), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn lookup_business(
    State(s): State<AppState>,
    User(_caller): User,
    Json(l): Json<BusinessLookup>,
) -> ApiResult<Json<BusinessProfile>> {
    let phone = PhoneNumber::parse(&l.phone, None).map_err(crate::service::ServiceError::from)?;
    let account = match s.e2e.claim_target(ClaimTarget::Phone(phone)).await {
        Ok(a) => a,
        Err(crate::relay::RelayError::NotFound) => {
            return Err(BusinessError::UnknownBusiness.into())
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Json(s.business.profile(account).await?))
}

/// An approved template's content signed by the messenger, for a
/// recipient's client to render a business message with.
#[utoipa::path(get, path = "/v1/businesses/{business}/templates/{name}/{language}/{version}", tag = "business", security(("bearer" = [])),
    params(("business" = String, Path), ("name" = String, Path), ("language" = String, Path), ("version" = u32, Path)),
    responses((status = 200, body = SignedTemplate), (status = 404, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn signed_template(
    State(s): State<AppState>,
    User(_caller): User,
    Path((b, name, language, version)): Path<(AccountId, String, String, u32)>,
) -> ApiResult<Json<SignedTemplate>> {
    Ok(Json(
        s.business
            .signed_template(b, &name, &language, version)
            .await?,
    ))
}

/// The businesses that may message the caller, and why.
#[utoipa::path(get, path = "/v1/me/businesses", tag = "business", security(("bearer" = [])),
    responses((status = 200, body = Vec<BusinessControl>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn my_businesses(
    State(s): State<AppState>,
    User(caller): User,
) -> ApiResult<Json<Vec<BusinessControl>>> {
    Ok(Json(s.business.controls_for(caller.account.id).await?))
}

/// Opts in or out, mutes or unmutes categories, blocks or unblocks one
/// business.
#[utoipa::path(put, path = "/v1/me/businesses/{business}", tag = "business", security(("bearer" = [])),
    params(("business" = String, Path)), request_body = SetControls,
    responses((status = 200, body = BusinessControl), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn set_controls(
    State(s): State<AppState>,
    User(caller): User,
    Path(b): Path<AccountId>,
    Json(c): Json<SetControls>,
) -> ApiResult<Json<BusinessControl>> {
    Ok(Json(
        s.business.set_controls(caller.account.id, b, c).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct TemplateQueueQuery {
    /// `pending` (default), `approved`, `rejected` or `paused`.
    #[serde(default)]
    pub status: Option<String>,
}

/// Templates by review state (the operator's queue).
#[utoipa::path(get, path = "/v1/admin/templates", tag = "admin", security(("admin" = [])),
    params(TemplateQueueQuery),
    responses((status = 200, body = Vec<TemplateView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn template_queue(
    State(s): State<AppState>,
    _: Admin,
    Query(q): Query<TemplateQueueQuery>,
) -> ApiResult<Json<Vec<TemplateView>>> {
    let status = TemplateStatus::parse(q.status.as_deref().unwrap_or("pending"))
        .map_err(BusinessError::from)?;
    Ok(Json(s.business.templates_in(status).await?))
}

/// Approves, rejects, pauses or resumes a template.
#[utoipa::path(post, path = "/v1/admin/templates/{id}/review", tag = "admin", security(("admin" = [])),
    params(("id" = Uuid, Path)), request_body = ReviewTemplate,
    responses((status = 200, body = TemplateView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn review_template(
    State(s): State<AppState>,
    _: Admin,
    Path(id): Path<Uuid>,
    Json(r): Json<ReviewTemplate>,
) -> ApiResult<Json<TemplateView>> {
    Ok(Json(s.business.review(id, r).await?))
}

/// Every business and its standing.
#[utoipa::path(get, path = "/v1/admin/businesses", tag = "admin", security(("admin" = [])),
    responses((status = 200, body = Vec<BusinessStatus>), (status = 403, body = ErrorBody)))]
pub async fn list_businesses(
    State(s): State<AppState>,
    _: Admin,
) -> ApiResult<Json<Vec<BusinessStatus>>> {
    let mut out = Vec::new();
    for b in s.business.all().await? {
        out.push(s.business.evaluate(b.account).await?);
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetFlag {
    pub value: bool,
}

/// Marks a business verified (its name and badge are shown to users) or
/// not.
#[utoipa::path(put, path = "/v1/admin/businesses/{business}/verified", tag = "admin", security(("admin" = [])),
    params(("business" = String, Path)), request_body = SetFlag,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_verified(
    State(s): State<AppState>,
    _: Admin,
    Path(b): Path<AccountId>,
    Json(f): Json<SetFlag>,
) -> ApiResult<StatusCode> {
    s.business.set_verified(b, f.value).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes a business (its API keys stop working: 403
/// `business_revoked`) or reinstates it.
#[utoipa::path(put, path = "/v1/admin/businesses/{business}/revoked", tag = "admin", security(("admin" = [])),
    params(("business" = String, Path)), request_body = SetFlag,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_revoked(
    State(s): State<AppState>,
    _: Admin,
    Path(b): Path<AccountId>,
    Json(f): Json<SetFlag>,
) -> ApiResult<StatusCode> {
    s.business.set_revoked(b, f.value).await?;
    Ok(StatusCode::NO_CONTENT)
}
