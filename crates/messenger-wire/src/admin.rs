//! The operator's bodies: policy publication, ledger paging, the
//! simulated clock, pseudonym refresh.

use accord_domain::{ConsentProfile, Purpose, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `POST /v1/admin/policies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PublishPolicy {
    pub text: String,
    pub purposes: Vec<Purpose>,
    /// Defaults to the server's `--profile`.
    #[serde(default)]
    pub profile: Option<ConsentProfile>,
}

/// `?after=&limit=` of `GET /v1/admin/ledger`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct LedgerQuery {
    /// The shard (default 0; the ledger has `accord_domain::transparency::SHARDS`).
    pub shard: Option<u16>,
    /// Entries after this sequence number (default 0).
    pub after: Option<u64>,
    /// At most this many (default 100, max 1000).
    pub limit: Option<u32>,
}

/// The simulated clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClockView {
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub now: Timestamp,
    pub now_rfc3339: String,
}

/// `POST /v1/admin/clock`: how far to move the simulated clock forward.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AdvanceClock {
    #[serde(default)]
    pub days: i64,
    #[serde(default)]
    pub hours: i64,
    #[serde(default)]
    pub seconds: i64,
}

/// What one pass of pseudonym computation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PseudonymRefresh {
    /// Pseudonyms computed, per purpose.
    pub computed: BTreeMap<String, u64>,
    /// Pseudonyms of superseded key versions dropped, per purpose.
    pub dropped: BTreeMap<String, u64>,
    /// Accounts still waiting (the pass is bounded).
    pub remaining: bool,
}

/// What an intact ledger looks like (`GET /v1/admin/ledger/verify`, and
/// `accord ledger verify`): per shard, its entries, head and Merkle root,
/// and how many outside checkpoints it was checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerReport {
    pub entries: u64,
    pub shards: Vec<ShardReport>,
    /// Checkpoints held outside the database that the log agrees with.
    pub checkpoints_checked: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShardReport {
    pub shard: u16,
    pub entries: u64,
    pub head_hash: String,
    /// The RFC 6962 root over the shard's entries.
    pub root: String,
}
