//! The OpenAPI 3 document, generated from the handlers' annotations.

use super::routes::*;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Accord messenger", description = "Accounts, devices, policies, consent and the consent ledger."),
    paths(
        healthz, openapi, start, verify, super::routes::number::start, super::routes::number::verify, current, accept, me, export, delete_me,
        my_consent, my_consent_at, receipt, grant, withdraw,
        discovery, bucket, refresh,
        publish_policy, list_policies, feed, reconcile, ledger, verify_ledger, consent_at, clock, advance_clock,
        put_device_keys, upload_one_time_keys, one_time_key_count, claim_keys,
        send_message, fetch_messages, ack_messages, stream,
        block_account, unblock_account, report_message,
    ),
    components(schemas(crate::http::error::ErrorBody)),
    modifiers(&Security),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let c = api.components.get_or_insert_with(Default::default);
        for name in ["bearer", "admin"] {
            c.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}
