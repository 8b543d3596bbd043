//! Sending (one envelope per recipient device, idempotent per client
//! message id), and the long-poll fetch and ack for clients without a
//! WebSocket. Frames are the same JSON as on `/v1/stream`.

use crate::http::extract::User;
use crate::http::routes::keys::wire_body;
use crate::http::AppState;
use accord_e2e::wire::MAX_SEND_REQUEST_BYTES;
use accord_e2e::{EnvelopeId, ServerFrame, MAX_ACK_IDS};
use accord_http::{ApiError, ApiResult, ErrorBody, Json, Query};
use accord_messenger_wire::{AckRequest, AckResponse, FetchQuery, SendMessage, SendOutcome};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use std::collections::BTreeSet;
use std::time::Duration;

/// Largest body of `POST /v1/messages`.
pub const MAX_SEND_BODY_BYTES: usize = MAX_SEND_REQUEST_BYTES + 1024;

/// Sends one message: an envelope for every device of `to_account` and
/// every other device of the sender's account.
#[utoipa::path(post, path = "/v1/messages", tag = "e2e", security(("bearer" = [])),
    request_body = SendMessage,
    responses((status = 202, body = SendOutcome), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 429, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn send_message(
    State(s): State<AppState>,
    User(caller): User,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<SendOutcome>)> {
    let b: SendMessage = wire_body(&body, MAX_SEND_BODY_BYTES)?;
    if s.business.is_business(caller.account.id).await? {
        return Err(crate::business::BusinessError::UseBusinessApi.into());
    }
    let out = s
        .e2e
        .send(caller.account.id, caller.device, b.to_account, b.send)
        .await?;
    // A message to a business opens its customer-service window.
    s.business
        .note_user_message(caller.account.id, b.to_account)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(out)))
}

/// Most frames one fetch returns.
const FETCH_LIMIT: u32 = 200;

/// The queued envelopes and receipts of this device, oldest first; waits
/// up to `wait_s` when there are none.
#[utoipa::path(get, path = "/v1/messages", tag = "e2e", security(("bearer" = [])), params(FetchQuery),
    responses((status = 200, body = Vec<Object>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn fetch_messages(
    State(s): State<AppState>,
    User(caller): User,
    Query(q): Query<FetchQuery>,
) -> ApiResult<Json<Vec<ServerFrame>>> {
    if q.wait_s > 30 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "wait_s must be 0 to 30",
        ));
    }
    let mut sub = s.e2e.wake().subscribe(caller.device);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(q.wait_s);
    loop {
        // This answer reads the mailbox itself; pushed items only wake it.
        let _ = sub.take();
        let (frames, _, _) = s.e2e.fetch(caller.device, 0, FETCH_LIMIT).await?;
        if !frames.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(frames));
        }
        if tokio::time::timeout_at(deadline, sub.changed())
            .await
            .is_err()
        {
            return Ok(Json(Vec::new()));
        }
    }
}

/// Acks envelopes and receipts of this device's mailbox: an acked
/// envelope loses its ciphertext and is marked acked (the row stays as
/// the delivered record, which reports are checked against, until its
/// expiry); an acked receipt is deleted. Answers how many items were
/// acked.
#[utoipa::path(post, path = "/v1/messages/ack", tag = "e2e", security(("bearer" = [])),
    request_body = AckRequest,
    responses((status = 200, body = AckResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
pub async fn ack_messages(
    State(s): State<AppState>,
    User(caller): User,
    body: Bytes,
) -> ApiResult<Json<AckResponse>> {
    let a: AckRequest = wire_body(&body, accord_e2e::wire::MAX_CLIENT_FRAME_BYTES)?;
    if a.ids.is_empty() || a.ids.len() > MAX_ACK_IDS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_many_items",
            format!("ids must have 1 to {MAX_ACK_IDS} items"),
        ));
    }
    let ids: BTreeSet<EnvelopeId> = a.ids.into_iter().collect();
    let n = s.e2e.ack(caller.device, ids.into_iter().collect()).await?;
    Ok(Json(AckResponse { acked: n }))
}
