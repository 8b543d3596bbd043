//! JSON bodies of the key service's public endpoints, shared by the
//! server (`accord-keyd`) and [`HttpOprf`](crate::HttpOprf). Elements
//! travel as unpadded URL-safe base64 of their 32 bytes (43 characters).
//!
//! With the `openapi` feature (which `accord-keyd` turns on) the types
//! also derive `utoipa::ToSchema` for the server's OpenAPI document.

use accord_crypto::oprf::{BlindedElementBytes, EvaluatedElementBytes, KeyVersion, OprfPurpose};
use serde::{Deserialize, Serialize};

/// `POST /v1/oprf/{purpose}/evaluate`, as the server reads it. Elements
/// are kept as strings here so that a malformed one is reported by index.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    /// A key version to evaluate under; the active one when absent.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>))]
    pub key_version: Option<KeyVersion>,
    /// 1 to 10,000 blinded elements.
    #[cfg_attr(feature = "openapi", schema(example = json!(["4gAFaDRGWgyLD7Y9aqU5ZFbPrQbGRYFHpOxXr8ghHXc"])))]
    pub elements: Vec<String>,
}

/// The same request, as a client writes it.
#[derive(Debug, Serialize)]
pub struct EvaluateRequestRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_version: Option<KeyVersion>,
    pub elements: &'a [BlindedElementBytes],
}

/// The evaluated elements, in request order, and the key version used.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvaluateResponse {
    #[cfg_attr(feature = "openapi", schema(value_type = u32))]
    pub key_version: KeyVersion,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub elements: Vec<EvaluatedElementBytes>,
}

/// A purpose's key versions: public information.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyVersions {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "contacts"))]
    pub purpose: OprfPurpose,
    /// Used when a request names no version.
    #[cfg_attr(feature = "openapi", schema(value_type = u32))]
    pub active: KeyVersion,
    /// Every version that can still be evaluated, ascending.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<u32>))]
    pub versions: Vec<KeyVersion>,
}
