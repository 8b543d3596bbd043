//! The key service's own series, read from its store before each scrape:
//! per client kind and purpose, the daily quotas granted and the elements
//! evaluated so far in the current UTC day (`accord_keyd_quota_elements`,
//! `accord_keyd_evaluated_elements_today`). Two queries a scrape (clients
//! with their quotas, usage of the day), however many device credentials
//! there are; labels are kinds and purposes, never client ids.

use crate::service::KeyService;
use accord_domain::time::DAY_MS;
use accord_domain::Timestamp;
use accord_http::{Metrics, MetricsBuilder};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindPurpose {
    kind: &'static str,
    purpose: &'static str,
}

/// The key service's registry: the shared request series and its own.
pub fn build(service: &KeyService) -> Metrics {
    let mut b = MetricsBuilder::new("keyd");
    let quota: Family<KindPurpose, Gauge> = b.gauges(
        "keyd_quota_elements",
        "Sum of the daily quotas of the clients of a kind, per purpose",
    );
    let used: Family<KindPurpose, Gauge> = b.gauges(
        "keyd_evaluated_elements_today",
        "Elements evaluated for the clients of a kind in the current UTC day, per purpose",
    );
    let service = service.clone();
    b.on_scrape(move || {
        let (service, quota, used) = (service.clone(), quota.clone(), used.clone());
        async move {
            if let Err(e) = refresh(&service, &quota, &used).await {
                tracing::warn!(error = %e, "key service metrics not refreshed");
            }
        }
    });
    b.build()
}

async fn refresh(
    service: &KeyService,
    quota: &Family<KindPurpose, Gauge>,
    used: &Family<KindPurpose, Gauge>,
) -> Result<(), crate::KeydError> {
    let now = service.now();
    let today = Timestamp(now.0.div_euclid(DAY_MS) * DAY_MS);
    let clients = service.clients().await?;
    let usage = service.audit(None, today, now).await?;
    // Usage is kept per meter: a client's own, or its quota group's.
    let kinds: HashMap<_, _> = clients.iter().map(|c| (c.meter(), c.kind)).collect();
    let mut quotas: HashMap<KindPurpose, i64> = HashMap::new();
    for c in &clients {
        for (p, q) in &c.quotas {
            let k = KindPurpose {
                kind: c.kind.as_str(),
                purpose: p.as_str(),
            };
            *quotas.entry(k).or_default() += i64::try_from(*q).unwrap_or(i64::MAX);
        }
    }
    let mut evaluated: HashMap<KindPurpose, i64> = HashMap::new();
    for u in &usage {
        if let Some(kind) = kinds.get(&u.client) {
            let k = KindPurpose {
                kind: kind.as_str(),
                purpose: u.purpose.as_str(),
            };
            *evaluated.entry(k).or_default() += i64::try_from(u.elements).unwrap_or(i64::MAX);
        }
    }
    quota.clear();
    for (k, v) in quotas {
        quota.get_or_create(&k).set(v);
    }
    used.clear();
    for (k, v) in evaluated {
        used.get_or_create(&k).set(v);
    }
    Ok(())
}
