//! Operator endpoints: publish policies, read and verify the ledger,
//! reconstruct consent at an instant, and (simulated clock only) move time.

use super::consent::parse_at;
use crate::http::extract::Admin;
use crate::http::status::policy_error;
use crate::http::AppState;
use crate::service::ConsentView;
use crate::service::LedgerReport;
use accord_domain::ledger::LedgerEntry;
use accord_domain::time::{DAY_MS, HOUR_MS, SECOND_MS};
use accord_domain::{AccountId, PolicyDraft, PolicyVersion, Timestamp};
use accord_http::{ApiError, ApiResult, ErrorBody, Json, Path, Query};
use accord_messenger_wire::{AdvanceClock, AtQuery, ClockView, LedgerQuery, PublishPolicy};
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

/// Publishes a new policy version; every user must accept it within 30 days.
#[utoipa::path(post, path = "/v1/admin/policies", tag = "admin", request_body = PublishPolicy, security(("admin" = [])),
    responses((status = 201, body = PolicyVersion), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn publish_policy(
    State(s): State<AppState>,
    _: Admin,
    Json(b): Json<PublishPolicy>,
) -> ApiResult<(StatusCode, Json<PolicyVersion>)> {
    let draft = PolicyDraft::new(b.text, b.purposes, b.profile.unwrap_or(s.default_profile))
        .map_err(policy_error)?;
    Ok((
        StatusCode::CREATED,
        Json(s.messenger.publish_policy(draft).await?),
    ))
}

/// Every published version.
#[utoipa::path(get, path = "/v1/admin/policies", tag = "admin", security(("admin" = [])),
    responses((status = 200, body = Vec<PolicyVersion>), (status = 403, body = ErrorBody)))]
pub async fn list_policies(
    State(s): State<AppState>,
    _: Admin,
) -> ApiResult<Json<Vec<PolicyVersion>>> {
    Ok(Json(s.messenger.policies().await?.versions().to_vec()))
}

/// A page of ledger entries.
#[utoipa::path(get, path = "/v1/admin/ledger", tag = "admin", params(LedgerQuery), security(("admin" = [])),
    responses((status = 200, body = Vec<Object>), (status = 403, body = ErrorBody)))]
pub async fn ledger(
    State(s): State<AppState>,
    _: Admin,
    Query(q): Query<LedgerQuery>,
) -> ApiResult<Json<Vec<LedgerEntry>>> {
    Ok(Json(
        s.messenger
            .ledger_page(
                q.shard.unwrap_or(0),
                q.after.unwrap_or(0),
                q.limit.unwrap_or(100),
            )
            .await?,
    ))
}

/// Walks every shard's chain: 200 when intact, 409 naming the first bad entry.
#[utoipa::path(get, path = "/v1/admin/ledger/verify", tag = "admin", security(("admin" = [])),
    responses((status = 200, body = Object), (status = 409, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn verify_ledger(State(s): State<AppState>, _: Admin) -> ApiResult<Json<LedgerReport>> {
    Ok(Json(s.messenger.verify_ledger().await?))
}

/// An account's consent at an instant, rebuilt from the ledger alone.
#[utoipa::path(get, path = "/v1/admin/accounts/{account_id}/consent", tag = "admin", params(("account_id" = String, Path), AtQuery), security(("admin" = [])),
    responses((status = 200, body = ConsentView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn consent_at(
    State(s): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    Query(q): Query<AtQuery>,
) -> ApiResult<Json<ConsentView>> {
    let id = AccountId::parse(&id).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_account_id",
            "account id must be a UUID",
        )
    })?;
    Ok(Json(s.messenger.consent_at(id, parse_at(&q.at)?).await?))
}

fn clock_view(t: Timestamp) -> ClockView {
    ClockView {
        now: t,
        now_rfc3339: t.to_rfc3339(),
    }
}

/// The simulated clock (exists only with `--simulated-clock`).
#[utoipa::path(get, path = "/v1/admin/clock", tag = "admin", security(("admin" = [])),
    responses((status = 200, body = ClockView), (status = 404, body = ErrorBody)))]
pub async fn clock(State(s): State<AppState>, _: Admin) -> ApiResult<Json<ClockView>> {
    Ok(Json(clock_view(s.messenger.now())))
}

/// Moves the simulated clock forward (exists only with `--simulated-clock`).
#[utoipa::path(post, path = "/v1/admin/clock", tag = "admin", request_body = AdvanceClock, security(("admin" = [])),
    responses((status = 200, body = ClockView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn advance_clock(
    State(s): State<AppState>,
    _: Admin,
    Json(b): Json<AdvanceClock>,
) -> ApiResult<Json<ClockView>> {
    let clock = s.simulated_clock.as_ref().ok_or_else(ApiError::not_found)?;
    let ms = b
        .days
        .checked_mul(DAY_MS)
        .and_then(|d| b.hours.checked_mul(HOUR_MS).and_then(|h| d.checked_add(h)))
        .and_then(|dh| {
            b.seconds
                .checked_mul(SECOND_MS)
                .and_then(|s| dh.checked_add(s))
        })
        .filter(|ms| (0..=3650 * DAY_MS).contains(ms))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_advance",
                "advance by 0 to 3650 days in total; time never runs back",
            )
        })?;
    Ok(Json(clock_view(clock.advance_millis(ms))))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FeedView {
    #[schema(value_type = Object)]
    pub stats: accord_storage::FeedStats,
    /// Age of the oldest pending event, in seconds (the feed's lag).
    pub lag_s: i64,
    /// Some work is unconfirmed past the deletion deadline (24 h): alert.
    pub overdue: bool,
}

/// The coordination feed: pending and failing deliveries, lag, holdings.
#[utoipa::path(get, path = "/v1/admin/feed", tag = "admin", security(("admin" = [])),
    responses((status = 200, body = FeedView), (status = 403, body = ErrorBody)))]
pub async fn feed(State(s): State<AppState>, _: Admin) -> ApiResult<Json<FeedView>> {
    let stats = s
        .messenger
        .store
        .feed_stats()
        .await
        .map_err(crate::service::ServiceError::from)?;
    let now = s.messenger.now();
    let lag_s = stats
        .oldest_pending_at
        .map_or(0, |t| (now.0 - t.0).max(0) / 1000);
    Ok(Json(FeedView {
        overdue: lag_s * 1000 > 24 * HOUR_MS,
        lag_s,
        stats,
    }))
}

/// Runs a reconciliation with the partner now (also every ten minutes).
#[utoipa::path(post, path = "/v1/admin/feed/reconcile", tag = "admin", security(("admin" = [])),
    responses((status = 200, body = crate::feed::ReconcileReport), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn reconcile(
    State(s): State<AppState>,
    _: Admin,
) -> ApiResult<Json<crate::feed::ReconcileReport>> {
    let cfg = s.feed.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_partner",
            "this messenger runs without a partner feed",
        )
    })?;
    let d = crate::feed::Dispatcher::new(s.messenger.clone(), cfg);
    Ok(Json(d.reconcile().await?))
}
