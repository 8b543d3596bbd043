//! JSON bodies of the evaluation endpoint, shared by the server and
//! [`HttpOprf`](crate::HttpOprf). Elements travel as unpadded URL-safe
//! base64 of their 32 bytes (43 characters).

use accord_crypto::oprf::{BlindedElementBytes, EvaluatedElementBytes, KeyVersion};
use serde::{Deserialize, Serialize};

/// `POST /v1/oprf/{purpose}/evaluate`, as the server reads it. Elements
/// are kept as strings here so that a malformed one is reported by index.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    /// A key version to evaluate under; the active one when absent.
    #[serde(default)]
    #[schema(value_type = Option<u32>)]
    pub key_version: Option<KeyVersion>,
    /// 1 to 10,000 blinded elements.
    #[schema(example = json!(["4gAFaDRGWgyLD7Y9aqU5ZFbPrQbGRYFHpOxXr8ghHXc"]))]
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
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EvaluateResponse {
    #[schema(value_type = u32)]
    pub key_version: KeyVersion,
    #[schema(value_type = Vec<String>)]
    pub elements: Vec<EvaluatedElementBytes>,
}
