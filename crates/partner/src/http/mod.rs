//! The partner's HTTP face: `routes/` one file per endpoint family,
//! [`error`] the one error type (status + stable `code` + message).

pub mod error;
mod extract;
mod routes;

use crate::service::PartnerService;
use accord_crypto::token::TokenHash;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::routing::{get, post, put};
use axum::Router;
use std::future::Future;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

#[derive(Clone, Debug)]
pub struct AppState {
    pub service: PartnerService,
    /// Hash of the operator's admin token.
    pub admin_token: TokenHash,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/v1/feed/ingest", post(routes::feed::ingest))
        .route("/v1/feed/reconcile/digests", post(routes::feed::digests))
        .route("/v1/feed/reconcile/bucket", post(routes::feed::bucket))
        .route("/v1/partner/users", post(routes::users::create))
        .route("/v1/partner/me", get(routes::users::me))
        .route("/v1/partner/me/ads", put(routes::users::set_ads))
        .route("/v1/partner/me/phone", put(routes::users::set_phone))
        .route(
            "/v1/oprf/coordination/evaluate",
            post(routes::users::evaluate),
        )
        .route(
            "/v1/partner/me/contacts",
            post(routes::users::upload_contacts),
        )
        .route(
            "/v1/partner/me/suggestions",
            get(routes::users::suggestions),
        )
        .route(
            "/v1/admin/partner/records/{pseudonym}",
            get(routes::admin::read),
        )
        .route("/v1/admin/partner/stats", get(routes::admin::stats))
        .fallback(|| async { error::ApiError::not_found() })
        .with_state(state)
        .layer(DefaultBodyLimit::max(4 * 1024 * 1024))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "<unmatched>".to_owned());
            tracing::info_span!("http", method = %req.method(), route)
        }))
}

pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
