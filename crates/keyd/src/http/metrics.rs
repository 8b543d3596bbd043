//! The key service's own series, read from its store before each scrape:
//! per client kind and purpose, the daily quotas granted and the elements
//! evaluated so far in the current UTC day (`accord_keyd_quota_elements`,
//! `accord_keyd_evaluated_elements_today`). Two queries a scrape (clients
//! with their quotas, usage of the day), however many device credentials
//! there are; labels are kinds and purposes, never client ids.

use crate::service::KeyService;
use accord_http::{Metrics, MetricsBuilder};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

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
    let q = service.quota_use().await?;
    quota.clear();
    used.clear();
    for ((kind, purpose), u) in q.by_kind {
        let k = KindPurpose {
            kind,
            purpose: purpose.as_str(),
        };
        quota
            .get_or_create(&k)
            .set(i64::try_from(u.quota).unwrap_or(i64::MAX));
        used.get_or_create(&k)
            .set(i64::try_from(u.used_today).unwrap_or(i64::MAX));
    }
    Ok(())
}
