//! The consent log's public endpoints: its key, the newest signed
//! checkpoint of every shard, inclusion and consistency proofs. Public by
//! design, as a Certificate Transparency log is: they are what outsiders
//! check the messenger with, and they reveal hashes only (an inclusion
//! proof names no account; entries themselves are not served here).

use crate::http::AppState;
use accord_domain::transparency::{Consistency, SignedCheckpoint, LOG_ORIGIN, SHARDS};
use accord_http::{ApiResult, ErrorBody, Json, Query};
use accord_messenger_wire::{ConsistencyQuery, InclusionQuery, LogInfo, ProvenInclusion};
use axum::extract::State;

/// The log's public key and shape.
#[utoipa::path(get, path = "/v1/transparency/key", tag = "transparency",
    responses((status = 200, body = LogInfo)))]
pub async fn log_key(State(s): State<AppState>) -> Json<LogInfo> {
    Json(LogInfo {
        origin: LOG_ORIGIN.to_owned(),
        log_key: s.messenger.log().public_key().to_hex(),
        shards: SHARDS,
    })
}

/// The newest signed checkpoint of every shard (signed now where a shard
/// grew since its last one). Save one to a file to witness the log.
#[utoipa::path(get, path = "/v1/transparency/checkpoints", tag = "transparency",
    responses((status = 200, body = Vec<SignedCheckpoint>), (status = 409, body = ErrorBody)))]
pub async fn checkpoints(State(s): State<AppState>) -> ApiResult<Json<Vec<SignedCheckpoint>>> {
    Ok(Json(s.messenger.log().checkpoints().await?))
}

/// The inclusion proof of one entry against a checkpoint signed at the
/// shard's current size.
#[utoipa::path(get, path = "/v1/transparency/inclusion", tag = "transparency", params(InclusionQuery),
    responses((status = 200, body = ProvenInclusion), (status = 400, body = ErrorBody)))]
pub async fn inclusion(
    State(s): State<AppState>,
    Query(q): Query<InclusionQuery>,
) -> ApiResult<Json<ProvenInclusion>> {
    let (checkpoint, mut proofs) = s.messenger.log().prove(q.shard, &[q.seq]).await?;
    Ok(Json(ProvenInclusion {
        checkpoint,
        inclusion: proofs.pop().expect("one proof per entry"),
    }))
}

/// A consistency proof between two sizes of one shard: that the older
/// tree is a prefix of the newer.
#[utoipa::path(get, path = "/v1/transparency/consistency", tag = "transparency", params(ConsistencyQuery),
    responses((status = 200, body = Consistency), (status = 400, body = ErrorBody)))]
pub async fn consistency(
    State(s): State<AppState>,
    Query(q): Query<ConsistencyQuery>,
) -> ApiResult<Json<Consistency>> {
    Ok(Json(
        s.messenger.log().consistency(q.shard, q.from, q.to).await?,
    ))
}
