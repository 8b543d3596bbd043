//! The OpenAPI 3 document, generated from the handlers' annotations.

use super::routes::*;
use super::AppState;
use accord_http::openapi::Standard;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Accord messenger", description = "Accounts, devices, policies, consent and the consent ledger."),
    paths(
        start, verify, super::routes::number::start, super::routes::number::verify, current, accept, me, export, delete_me,
        my_consent, my_consent_at, receipt, grant, withdraw,
        discovery, bucket, refresh,
        publish_policy, list_policies, feed, reconcile, ledger, verify_ledger, consent_at, clock, advance_clock,
        put_device_keys, upload_one_time_keys, one_time_key_count, claim_keys,
        send_message, fetch_messages, ack_messages, stream,
        block_account, unblock_account, report_message,
    ),
    modifiers(&Standard),
)]
pub struct ApiDoc;

/// The document of the routes `state` serves: the admin clock exists only
/// with a simulated clock.
pub fn document(state: &AppState) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    if state.simulated_clock.is_none() {
        doc.paths.paths.remove("/v1/admin/clock");
    }
    doc
}
