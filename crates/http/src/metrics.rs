//! Prometheus metrics of a service, in the text exposition format.
//!
//! Each service has its own [`Metrics`]: a `prometheus-client` registry
//! (no process-global recorder, so several services and the tests' many
//! servers in one process never mix their series), prefixed `accord_` and
//! labelled with the service's name. The shared layer counts every request
//! and times it, by method, route *template* and status
//! (`accord_http_requests_total`, `accord_http_request_duration_seconds`).
//! A service registers its own series with [`MetricsBuilder::registry`]
//! and refreshes the gauges that are read from its database in a hook that
//! runs before each scrape ([`MetricsBuilder::on_scrape`]).
//!
//! **Architecture invariant:** no label carries a phone number, a token,
//! an account or device id or any other value from a request: routes are
//! templates (`/v1/blocks/{account_id}`), unmatched paths are
//! `<unmatched>`, and unusual methods are `OTHER`.

use futures_util::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

type Refresh = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Collects what a service registers before it serves.
pub struct MetricsBuilder {
    registry: Registry,
    refresh: Vec<Refresh>,
}

impl MetricsBuilder {
    /// A registry for `service` (the value of the `service` label).
    pub fn new(service: &'static str) -> Self {
        MetricsBuilder {
            registry: Registry::with_prefix_and_labels(
                "accord",
                [("service".into(), service.into())].into_iter(),
            ),
            refresh: Vec::new(),
        }
    }

    /// Where the service registers its own series.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Registers a gauge named `name` (prefixed `accord_`) and returns it.
    pub fn gauge(&mut self, name: &str, help: &str) -> Gauge {
        let g = Gauge::default();
        self.registry.register(name, help, g.clone());
        g
    }

    /// Registers a family of gauges with the labels `L` and returns it.
    pub fn gauges<L>(&mut self, name: &str, help: &str) -> Family<L, Gauge>
    where
        L: prometheus_client::encoding::EncodeLabelSet
            + Clone
            + std::hash::Hash
            + Eq
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let f = Family::<L, Gauge>::default();
        self.registry.register(name, help, f.clone());
        f
    }

    /// Runs `refresh` before every scrape (gauges read from a database).
    /// It must not fail the scrape: on an error it logs and leaves the
    /// gauges as they were.
    pub fn on_scrape<F, Fut>(&mut self, refresh: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.refresh.push(Arc::new(move || Box::pin(refresh())));
    }

    pub fn build(mut self) -> Metrics {
        let requests = Family::<RequestLabels, Counter>::default();
        let durations: Family<RequestLabels, Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16)));
        self.registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        self.registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status",
            durations.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry: self.registry,
                refresh: self.refresh,
                requests,
                durations,
            }),
        }
    }
}

/// A count as a gauge value (saturating).
pub fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A service's metrics: cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    refresh: Vec<Refresh>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RequestLabels, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with the request series only.
    pub fn new(service: &'static str) -> Self {
        MetricsBuilder::new(service).build()
    }

    /// Refreshes the gauges, then encodes every series.
    pub async fn render(&self) -> String {
        for refresh in &self.inner.refresh {
            refresh().await;
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }

    pub(crate) fn observe(
        &self,
        method: &axum::http::Method,
        route: String,
        status: u16,
        seconds: f64,
    ) {
        let labels = RequestLabels {
            method: method_label(method),
            route,
            status,
        };
        self.inner.requests.get_or_create(&labels).inc();
        self.inner.durations.get_or_create(&labels).observe(seconds);
    }
}

/// The standard methods by name; anything else is `OTHER`, so that a
/// caller cannot mint series.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *m {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::PATCH => "PATCH",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
