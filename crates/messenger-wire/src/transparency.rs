//! The consent log's public face: its key, checkpoints and proofs
//! (`/v1/transparency/...`), readable by anyone, as a Certificate
//! Transparency log is.

use accord_domain::transparency::{Inclusion, SignedCheckpoint};
use serde::{Deserialize, Serialize};

/// `GET /v1/transparency/key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogInfo {
    /// The first line of every signed checkpoint.
    pub origin: String,
    /// ed25519 public key, hex: what checkpoints are verified against.
    pub log_key: String,
    pub shards: u16,
}

/// `?shard=&from=&to=` of `GET /v1/transparency/consistency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    pub shard: u16,
    /// The older tree size.
    pub from: u64,
    /// The newer tree size (at most the shard's current size).
    pub to: u64,
}

/// `?shard=&seq=` of `GET /v1/transparency/inclusion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    pub shard: u16,
    pub seq: u64,
}

/// An inclusion proof with the checkpoint it is against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProvenInclusion {
    pub checkpoint: SignedCheckpoint,
    pub inclusion: Inclusion,
}
