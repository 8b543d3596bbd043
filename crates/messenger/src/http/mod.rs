//! The HTTP face of the messenger.
//!
//! - [`routes`]: one module per endpoint family; `routes/mod.rs` only
//!   assembles them.
//! - [`error`]: [`ApiError`](error::ApiError), the one error type, and the
//!   JSON extractors whose rejections use it.
//! - [`extract`]: who is calling: a device (bearer token) or the operator
//!   (admin token).
//! - [`openapi`]: the OpenAPI 3 document, generated from the handlers.

pub mod error;
pub mod extract;
pub mod openapi;
pub mod routes;

use crate::service::Messenger;
use accord_crypto::token::TokenHash;
use accord_domain::{ConsentProfile, SimulatedClock};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::Router;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Everything a handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub messenger: Messenger,
    /// SHA-256 of the operator's admin token.
    pub admin_token: TokenHash,
    /// Profile for policies published without one (`--profile`).
    pub default_profile: ConsentProfile,
    /// Present only with `--simulated-clock`; then the admin clock
    /// endpoint exists.
    pub simulated_clock: Option<SimulatedClock>,
    /// The coordination feed to the partner, when one is configured.
    pub feed: Option<crate::feed::FeedConfig>,
    /// The E2E relay (key directory, mailboxes, delivery).
    pub e2e: crate::e2e::Relay,
}

/// The whole messenger API.
pub fn router(state: AppState) -> Router {
    routes::router(state.clone())
        .layer(DefaultBodyLimit::max(2 * 1024 * 1024))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .layer(
            // Spans name the route template, never the URI's values or bodies.
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| "<unmatched>".to_owned());
                tracing::info_span!("http", method = %req.method(), route)
            }),
        )
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
