//! Assembles the endpoint families; no handler lives here.

mod account;
mod admin;
mod blocks;
mod business;
mod consent;
mod contacts;
mod keys;
mod kt;
mod messages;
pub mod number;
mod policy;
mod registration;
mod stream;
mod transparency;

pub use account::*;
pub use admin::*;
pub use blocks::*;
pub use business::*;
pub use consent::*;
pub use contacts::*;
pub use keys::*;
pub use kt::*;
pub use messages::*;
pub use policy::*;
pub use registration::*;
pub use stream::*;
pub use transparency::*;

use super::AppState;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

/// The messenger's own routes and their OpenAPI document, from one list
/// (`utoipa-axum`: a handler is routed where its `#[utoipa::path]` says,
/// so the router and the document cannot disagree); `accord_http::finish`
/// adds the standard routes, the fallbacks and the layers. The admin
/// clock exists only with a simulated clock.
pub fn router(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let mut r = OpenApiRouter::with_openapi(super::openapi::ApiDoc::openapi())
        .routes(routes!(registration::start))
        .routes(routes!(registration::verify))
        .routes(routes!(policy::current))
        .routes(routes!(policy::accept))
        .routes(routes!(account::me, account::delete_me))
        .routes(routes!(account::export))
        .routes(routes!(number::start))
        .routes(routes!(number::verify))
        .routes(routes!(consent::my_consent))
        .routes(routes!(consent::my_consent_at))
        .routes(routes!(consent::receipt))
        .routes(routes!(consent::grant))
        .routes(routes!(consent::withdraw))
        .routes(routes!(consent::withdraw_purpose))
        .routes(routes!(contacts::discovery))
        .routes(routes!(contacts::bucket))
        .routes(routes!(keys::put_device_keys))
        .routes(routes!(keys::upload_one_time_keys))
        .routes(routes!(keys::one_time_key_count))
        .routes(routes!(keys::claim_keys))
        .routes(routes!(kt::roots))
        .routes(routes!(kt::lookup))
        .routes(routes!(kt::history))
        .routes(routes!(kt::audit))
        .routes(
            routes!(messages::send_message, messages::fetch_messages)
                .layer(DefaultBodyLimit::max(messages::MAX_SEND_BODY_BYTES)),
        )
        .routes(routes!(messages::ack_messages))
        .routes(routes!(stream::stream))
        .routes(routes!(blocks::block_account, blocks::unblock_account))
        .routes(routes!(blocks::report_message))
        .routes(routes!(admin::publish_policy, admin::list_policies))
        .routes(routes!(admin::ledger))
        .routes(routes!(admin::feed))
        .routes(routes!(admin::reconcile))
        .routes(routes!(contacts::refresh))
        .routes(routes!(admin::verify_ledger))
        .routes(routes!(admin::consent_at))
        .routes(routes!(transparency::log_key))
        .routes(routes!(transparency::checkpoints))
        .routes(routes!(transparency::inclusion))
        .routes(routes!(transparency::consistency))
        .routes(routes!(business::register_business))
        .routes(routes!(business::create_key, business::list_keys))
        .routes(routes!(business::revoke_key))
        .routes(routes!(business::status))
        .routes(routes!(business::submit_template, business::list_templates))
        .routes(routes!(business::claim))
        .routes(routes!(business::claims))
        .routes(
            routes!(business::send_batch)
                .layer(DefaultBodyLimit::max(business::MAX_BUSINESS_BATCH_BYTES)),
        )
        .routes(
            routes!(business::send).layer(DefaultBodyLimit::max(business::MAX_BUSINESS_SEND_BYTES)),
        )
        .routes(routes!(business::events))
        .routes(routes!(business::set_webhook, business::delete_webhook))
        .routes(routes!(business::test_webhook))
        .routes(routes!(business::profile))
        .routes(routes!(business::lookup_business))
        .routes(routes!(business::signed_template))
        .routes(routes!(business::my_businesses))
        .routes(routes!(business::set_controls))
        .routes(routes!(business::template_queue))
        .routes(routes!(business::review_template))
        .routes(routes!(business::list_businesses))
        .routes(routes!(business::set_verified))
        .routes(routes!(business::set_revoked));
    if state.simulated_clock.is_some() {
        r = r.routes(routes!(admin::clock, admin::advance_clock));
    }
    r.split_for_parts()
}
