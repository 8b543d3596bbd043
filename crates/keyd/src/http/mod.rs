//! The HTTP face of the key service.
//!
//! - [`routes`]: one module per endpoint family; `routes/mod.rs` only
//!   assembles them.
//! - [`error`]: [`ApiError`](error::ApiError), the one error type, and the
//!   extractors whose rejections use it.
//! - [`extract`]: who is calling: an API client (bearer token) or the
//!   operator (admin token).
//! - [`openapi`]: the OpenAPI 3 document, generated from the handlers.

pub mod error;
pub mod extract;
pub mod openapi;
pub mod routes;

use crate::service::KeyService;
use accord_crypto::token::TokenHash;
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
    pub service: KeyService,
    /// Hash of the operator's admin token.
    pub admin_token: TokenHash,
}

/// Largest request body: 10,000 elements of 43 characters, quoted and
/// separated, with room for whitespace.
pub const MAX_BODY: usize = 1024 * 1024;

/// The whole key service API.
pub fn router(state: AppState) -> Router {
    routes::router(state)
        .layer(DefaultBodyLimit::max(MAX_BODY))
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
