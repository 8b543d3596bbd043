//! # accord-http
//!
//! The one HTTP layer of every Accord service (messenger, key service,
//! partner). A service writes its routes and the mapping of its own error
//! enum to [`ApiError`]; everything else is here, once:
//!
//! - [`error`]: [`ApiError`] and [`ErrorBody`], the JSON body of every
//!   error answer (`code`, `message`, optional `details`, `Retry-After`),
//!   and the mapping of axum's JSON, path and query rejections.
//! - [`extract`]: [`Json`], [`OptionalJson`], [`Path`], [`Query`] with
//!   those rejections; [`bearer`]; the [`Admin`] caller, for any state
//!   that implements [`AdminAuth`].
//! - [`metrics`]: a service's Prometheus registry ([`Metrics`]), with the
//!   request series the layer records and the service's own gauges.
//! - [`openapi`]: the security schemes, the error schema and the standard
//!   routes every document shares.
//! - [`finish`]: the standard routes (`/healthz`, `/openapi.json`,
//!   `/metrics` for the operator), JSON 404 and 405 fallbacks, and the
//!   standard layers: body limit, timeout, request metrics, trace spans
//!   that name the route template only, panics caught as JSON 500s, and a
//!   last layer that turns any error answer that is not already JSON (an
//!   axum rejection such as a body over the limit, a WebSocket upgrade
//!   without its headers, the timeout's 408) into the JSON error body.
//! - [`web`]: server-rendered pages: the page frame, security headers
//!   (a strict CSP without script), sealed session cookies and CSRF.
//! - [`serve`]: serves a router until a shutdown signal, then drains;
//!   [`tasks`]: one stop signal for a service's server and background
//!   loops, and the one loop helper they use.
//! - `testing` (feature): a sweep of every documented route of a running
//!   service with bad requests, for the services' API tests.
//!
//! **Architecture invariant:** every error answer of every service is the
//! JSON error body, whatever failed; no span, log line or metric label
//! carries a request's body, a path's values or a token.

pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod tasks;
#[cfg(feature = "testing")]
pub mod testing;
pub mod web;

pub use error::{ApiError, ApiResult, ErrorBody};
pub use extract::{
    bearer, Admin, AdminAuth, ClientAddr, Json, OptionalJson, Path, Query, TrustedProxies,
};
pub use metrics::{Metrics, MetricsBuilder};
pub use tasks::{spawn_loop, spawn_server, stop_signal, Stop, Stopper, Task};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// What a service hands the shared layer besides its routes.
pub struct HttpSpec {
    /// Largest request body, in bytes (a route may set a smaller one with
    /// its own `DefaultBodyLimit`).
    pub body_limit: usize,
    /// A request that takes longer answers 408.
    pub timeout: Duration,
    /// The service's OpenAPI document, served at `/openapi.json`.
    pub openapi: utoipa::openapi::OpenApi,
    pub metrics: Metrics,
    /// Peers whose `X-Forwarded-For` names the client ([`ClientAddr`]).
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl HttpSpec {
    /// 30 s timeout, the given body limit and document, request metrics.
    pub fn new(
        service: &'static str,
        body_limit: usize,
        openapi: utoipa::openapi::OpenApi,
    ) -> Self {
        HttpSpec {
            body_limit,
            timeout: Duration::from_secs(30),
            openapi,
            metrics: Metrics::new(service),
            trusted_proxies: Vec::new(),
        }
    }
}

/// The serialised document, shared by every request for it.
#[derive(Clone, Debug)]
pub(crate) struct OpenApiJson(pub(crate) axum::body::Bytes);

/// A service's routes with the standard routes, fallbacks and layers; the
/// document it serves gets the shared layer's error answers on every
/// operation ([`openapi::add_layer_errors`]).
pub fn finish<S>(routes: Router<S>, state: S, spec: HttpSpec) -> Router
where
    S: AdminAuth + Clone + Send + Sync + 'static,
{
    let mut openapi = spec.openapi;
    openapi::add_layer_errors(&mut openapi);
    let doc = OpenApiJson(
        serde_json::to_vec(&openapi)
            .expect("an OpenAPI document serialises")
            .into(),
    );
    routes
        .route("/healthz", get(openapi::healthz))
        .route("/openapi.json", get(openapi::openapi_json))
        .route(
            "/metrics",
            get(openapi::metrics).route_layer(middleware::from_fn_with_state(
                state.clone(),
                require_admin::<S>,
            )),
        )
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .with_state(state)
        .layer(DefaultBodyLimit::max(spec.body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            spec.timeout,
        ))
        .layer(Extension(doc))
        .layer(Extension(TrustedProxies(std::sync::Arc::new(
            spec.trusted_proxies,
        ))))
        .layer(Extension(spec.metrics.clone()))
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            // The payload may quote request data: it is not logged.
            tracing::error!("a handler panicked");
            ApiError::internal().into_response()
        }))
        .layer(middleware::map_response(json_errors))
        .layer(middleware::from_fn_with_state(spec.metrics, track))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                tracing::info_span!("http", method = %req.method(), route = route_of(req))
            }),
        )
}

/// The route template of a request, or `<unmatched>`.
fn route_of(req: &Request) -> String {
    req.extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "<unmatched>".to_owned())
}

async fn require_admin<S: AdminAuth>(State(state): State<S>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    match <Admin as axum::extract::FromRequestParts<S>>::from_request_parts(&mut parts, &state)
        .await
    {
        Ok(Admin) => next.run(Request::from_parts(parts, body)).await,
        Err(e) => e.into_response(),
    }
}

async fn track(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let route = route_of(&req);
    let method = req.method().clone();
    let started = Instant::now();
    let response = next.run(req).await;
    metrics.observe(
        &method,
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim();
            m.eq_ignore_ascii_case("application/json") || m.ends_with("+json")
        })
}

/// Pages answer their errors as pages (`web::PageError`).
fn is_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/html"))
        })
}

/// Turns an error answer that is not JSON into the JSON error body, with
/// the code of its status and axum's text (if any) as the message.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || is_json(response.headers())
        || is_html(response.headers())
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let mut fixed = ApiError::for_status(status, text).into_response();
    for name in [header::RETRY_AFTER, header::ALLOW] {
        if let Some(v) = parts.headers.get(&name) {
            fixed.headers_mut().insert(name, v.clone());
        }
    }
    fixed
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // With each connection's peer address, for [`ClientAddr`].
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
