//! Assembles the endpoint families; no handler lives here.

mod account;
mod admin;
mod blocks;
mod consent;
mod contacts;
mod keys;
mod messages;
pub mod number;
mod policy;
mod registration;
mod stream;

pub use account::*;
pub use admin::*;
pub use blocks::*;
pub use consent::*;
pub use contacts::*;
pub use keys::*;
pub use messages::*;
pub use policy::*;
pub use registration::*;
pub use stream::*;

use super::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;

/// The messenger's own routes; `accord_http::finish` adds the standard
/// ones, the fallbacks and the layers.
pub fn router(state: &AppState) -> Router<AppState> {
    let mut admin = Router::new()
        .route(
            "/v1/admin/policies",
            post(admin::publish_policy).get(admin::list_policies),
        )
        .route("/v1/admin/ledger", get(admin::ledger))
        .route("/v1/admin/feed", get(admin::feed))
        .route("/v1/admin/feed/reconcile", post(admin::reconcile))
        .route("/v1/admin/pseudonyms/refresh", post(contacts::refresh))
        .route("/v1/admin/ledger/verify", get(admin::verify_ledger))
        .route(
            "/v1/admin/accounts/{account_id}/consent",
            get(admin::consent_at),
        );
    if state.simulated_clock.is_some() {
        admin = admin.route(
            "/v1/admin/clock",
            get(admin::clock).post(admin::advance_clock),
        );
    }
    Router::new()
        .route("/v1/registrations", post(registration::start))
        .route(
            "/v1/registrations/{registration_id}/verify",
            post(registration::verify),
        )
        .route("/v1/policies/current", get(policy::current))
        .route("/v1/policies/{version}/accept", post(policy::accept))
        .route("/v1/me", get(account::me).delete(account::delete_me))
        .route("/v1/me/export", get(account::export))
        .route("/v1/me/number", post(number::start))
        .route(
            "/v1/me/number/{registration_id}/verify",
            post(number::verify),
        )
        .route("/v1/me/consent", get(consent::my_consent))
        .route("/v1/me/consent/history", get(consent::my_consent_at))
        .route("/v1/me/consent/receipt", get(consent::receipt))
        .route("/v1/me/consent/{purpose}/grant", post(consent::grant))
        .route("/v1/me/consent/{purpose}/withdraw", post(consent::withdraw))
        .route("/v1/me/consent/{purpose}", delete(consent::withdraw))
        .route("/v1/contacts/discovery", get(contacts::discovery))
        .route("/v1/contacts/buckets/{prefix}", get(contacts::bucket))
        .route("/v1/keys/device", put(keys::put_device_keys))
        .route("/v1/keys/one-time", post(keys::upload_one_time_keys))
        .route("/v1/keys/one-time/count", get(keys::one_time_key_count))
        .route("/v1/keys/claim", post(keys::claim_keys))
        .route(
            "/v1/messages",
            post(messages::send_message)
                .get(messages::fetch_messages)
                .layer(DefaultBodyLimit::max(messages::MAX_SEND_BODY_BYTES)),
        )
        .route("/v1/messages/ack", post(messages::ack_messages))
        .route("/v1/stream", get(stream::stream))
        .route(
            "/v1/blocks/{account_id}",
            post(blocks::block_account).delete(blocks::unblock_account),
        )
        .route("/v1/reports", post(blocks::report_message))
        .merge(admin)
}
