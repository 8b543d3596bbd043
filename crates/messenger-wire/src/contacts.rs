//! Private contact discovery: which key version and key service to use,
//! and buckets of registered users' pseudonyms.

use serde::{Deserialize, Serialize};

/// `GET /v1/contacts/discovery`: what a device needs for discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DiscoveryConfig {
    /// Evaluate contacts under this `contacts` key version.
    pub key_version: u32,
    /// Where the key service is.
    pub keyd_url: String,
    /// Buckets are keyed by this many leading bits of a pseudonym.
    pub prefix_bits: u32,
}

/// `?key_version=` of `GET /v1/contacts/buckets/{prefix}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct BucketQuery {
    /// The `contacts` key version the device evaluated under.
    pub key_version: u32,
}

/// The registered users' `contacts` pseudonyms with one 16-bit prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Bucket {
    pub key_version: u32,
    /// Four hex digits: the first 16 bits of every pseudonym in the bucket.
    pub prefix: String,
    /// Pseudonyms (32 bytes, unpadded URL-safe base64), sorted.
    pub pseudonyms: Vec<String>,
}
