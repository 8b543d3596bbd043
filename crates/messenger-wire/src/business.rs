//! Business messaging's bodies: registration and API keys, templates and
//! their review, the business send, status and events, webhooks and
//! their payload, and users' controls per business.

use accord_domain::business::{Category, Quality, Refusal, Review, TemplateContent};
use accord_domain::{AccountId, DeviceId, Timestamp};
use accord_e2e::{BusinessMeta, SendRequest};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `POST /v1/business`: makes the caller's account a business.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterBusiness {
    /// Shown to users only once an operator verified the business.
    pub display_name: String,
}

/// A new API key: the secret is shown this once (the server keeps its
/// hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyCreated {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub business: AccountId,
    pub key_id: Uuid,
    pub api_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub expires_at: Option<Timestamp>,
}

/// `POST /v1/business/keys`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    #[serde(default)]
    pub label: String,
    /// Days until it stops working (none: until revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
}

/// An API key, without its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyView {
    pub key_id: Uuid,
    pub label: String,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub revoked_at: Option<Timestamp>,
}

/// `POST /v1/business/templates`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SubmitTemplate {
    pub name: String,
    pub language: String,
    pub category: Category,
    /// Text with numbered parameters `{{1}}`, `{{2}}`, ...
    pub body: String,
}

/// A template and its review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateView {
    pub id: Uuid,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub business: AccountId,
    pub name: String,
    pub language: String,
    pub version: u32,
    pub category: Category,
    pub body: String,
    pub params: u32,
    /// `pending`, `approved`, `rejected` or `paused`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub submitted_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub reviewed_at: Option<Timestamp>,
}

/// `POST /v1/admin/templates/{id}/review`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReviewTemplate {
    pub decision: Review,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An approved template as a recipient's client renders it: its content
/// signed by the messenger's log key (`GET /v1/transparency/key`) over
/// [`TemplateContent::signed_message`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedTemplate {
    pub content: TemplateContent,
    /// ed25519, 64 bytes as hex.
    pub signature: String,
    /// The signing key, 32 bytes as hex (the client checks it against the
    /// key it pinned).
    pub key: String,
}

/// A business as a user sees it: the name only when it is verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BusinessProfile {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub business: AccountId,
    pub verified: bool,
    /// Present only when `verified`: an unverified sender's chosen name is
    /// never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The business can no longer send.
    pub revoked: bool,
}

/// `POST /v1/businesses/lookup`: a business by its number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BusinessLookup {
    pub phone: String,
}

/// `POST /v1/business/messages`: one business message, encrypted by the
/// business's device (`device_id`) for every device of `to_account` and
/// the business's other devices, with what the server admits it as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BusinessSend {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub device_id: DeviceId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub to_account: AccountId,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub meta: BusinessMeta,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub send: SendRequest,
}

/// The answer to an admitted business send (202). The message id is the
/// send's client message id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BusinessSent {
    pub message_id: String,
    pub accepted: u32,
    pub duplicate: bool,
}

/// The details of a refused business send (the error body's `details`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefusalDetails {
    pub refusal: Refusal,
    /// The hosted business APIs' number for the same failure.
    pub error_number: u32,
}

/// A business's standing: quality, tier and their reasons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BusinessStatus {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub business: AccountId,
    pub display_name: String,
    pub verified: bool,
    pub revoked: bool,
    pub quality: Quality,
    pub quality_reason: String,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub quality_changed_at: Timestamp,
    /// 0-based index on the tier ladder.
    pub tier: u32,
    /// Unique users per rolling 24 hours; absent: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier_limit: Option<u64>,
    pub tier_reason: String,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub tier_changed_at: Timestamp,
    /// Unique users the business started conversations with in the last
    /// 24 hours.
    pub started_24h: u64,
    /// Over the quality window (7 days).
    pub delivered_7d: u64,
    pub blocks_7d: u64,
    pub reports_7d: u64,
    /// Whether marketing templates are paused (quality red).
    pub marketing_paused: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookStatus>,
}

/// The webhook's outbox counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookStatus {
    pub url: String,
    pub due: u64,
    pub failing: u64,
    pub delivered: u64,
    pub given_up: u64,
}

/// `PUT /v1/business/webhook`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetWebhook {
    /// `https://`, or `http://` to a loopback address.
    pub url: String,
}

/// The webhook's secret, shown once: the HMAC-SHA256 key of the
/// `X-Hub-Signature-256` header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookCreated {
    pub url: String,
    pub secret: String,
}

/// One status event, as the business's console lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventView {
    pub event_id: String,
    pub message_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub recipient: AccountId,
    /// `sent`, `delivered` or `failed`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub at: Timestamp,
    /// `due`, `delivered`, `given_up` or `no_webhook`.
    pub webhook: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What a webhook receives: the envelope of the hosted business APIs'
/// status webhooks (`entry[].changes[].value.statuses[]`), each status
/// with an `event_id` to deduplicate on. Signed with
/// `X-Hub-Signature-256: sha256=<hex>` over the raw body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookPayload {
    /// `accord_business_account`.
    pub object: String,
    pub entry: Vec<WebhookEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEntry {
    /// The business's account id.
    pub id: String,
    pub changes: Vec<WebhookChange>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookChange {
    /// `messages`.
    pub field: String,
    pub value: WebhookValue,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookValue {
    pub statuses: Vec<WebhookStatusEvent>,
}

/// One status: `sent`, `delivered` or `failed` (with `errors`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookStatusEvent {
    /// Unique per event: deduplicate on it (delivery is at least once).
    pub event_id: String,
    /// The message id (the send's client message id).
    pub id: String,
    pub status: String,
    /// Seconds since the Unix epoch, as a string (as the hosted APIs).
    pub timestamp: String,
    /// The recipient's account id.
    pub recipient_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<WebhookError>,
    /// A test event from `POST /v1/business/webhook/test`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookError {
    pub code: u32,
    /// The stable code (`blocked_by_user`, ...).
    pub title: String,
    pub message: String,
}

/// `PUT /v1/me/businesses/{business}`: what to change (absent: keep).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetControls {
    /// Messages this business starts (templates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opted_in: Option<bool>,
    /// Its marketing (needs `opted_in` too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marketing: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mute: Vec<Category>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmute: Vec<Category>,
    /// Block (nothing of it is delivered) or unblock the business.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<bool>,
}

/// One business and what it may send the caller, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BusinessControl {
    pub business: BusinessProfile,
    pub opted_in: bool,
    pub marketing: bool,
    pub muted: Vec<Category>,
    pub blocked: bool,
    /// Free-form replies are allowed until then (24 hours after the
    /// caller last wrote to the business).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub service_window_until: Option<Timestamp>,
    /// The categories this business may send the caller now.
    pub may_send: Vec<Category>,
    /// Why, in words, one line per reason.
    pub why: Vec<String>,
}

/// What `POST /v1/business/webhook/test` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookOutcome {
    pub url: String,
    pub event_id: String,
    /// The receiver's HTTP status, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub delivered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Most items in one batch request.
pub const MAX_BATCH_ITEMS: usize = 100;

/// `POST /v1/business/claims`: many claims in one request (1 to
/// [`MAX_BATCH_ITEMS`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BusinessClaims {
    pub targets: Vec<crate::ClaimRequest>,
}

/// One item's failure in a batch: what the single request would have
/// answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// One claim's outcome: exactly one of `claimed` and `error`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClaimOutcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed: Option<crate::Claimed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
}

/// The answer to a batch of claims, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClaimOutcomes {
    pub results: Vec<ClaimOutcome>,
}

/// `POST /v1/business/messages/batch`: many sends in one request (1 to
/// [`MAX_BATCH_ITEMS`]), each admitted on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BusinessSends {
    pub messages: Vec<BusinessSend>,
}

/// One send's outcome: exactly one of `sent` and `error`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendOutcomeItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<BusinessSent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
}

/// The answer to a batch of sends, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendOutcomes {
    pub results: Vec<SendOutcomeItem>,
}
