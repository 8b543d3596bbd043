//! The partner's own series, read from its store before each scrape: the
//! pseudonyms it holds something of, records per purpose, partner users,
//! links, contact edges, and reads refused for want of a grant, per
//! purpose. Labels are purposes only. And the partner's use of its
//! key-service quota: the quota, what its users' evaluations took in the
//! rolling day, what its user count needs, and an alert gauge that is 1
//! from 80% on (`PartnerConfig::keyd_alert_percent`; an error is logged
//! too); device records refused at ingest.

use crate::service::PartnerService;
use accord_http::metrics::count;
use accord_http::{Metrics, MetricsBuilder};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByPurpose {
    purpose: String,
}

#[derive(Clone)]
struct Gauges {
    subjects: Gauge,
    users: Gauge,
    links: Gauge,
    contact_edges: Gauge,
    records: Family<ByPurpose, Gauge>,
    denied_reads: Family<ByPurpose, Gauge>,
    keyd_quota: Gauge,
    keyd_used: Gauge,
    keyd_needed: Gauge,
    keyd_alert: Gauge,
    refused_devices: Gauge,
}

/// The partner's registry: the shared request series and its own.
pub fn build(service: &PartnerService) -> Metrics {
    let mut b = MetricsBuilder::new("partner");
    let g = Gauges {
        subjects: b.gauge(
            "partner_subjects",
            "Pseudonyms the partner holds something of",
        ),
        records: b.gauges(
            "partner_records",
            "Records held from the coordination feed, per purpose",
        ),
        users: b.gauge("partner_users", "Partner users"),
        links: b.gauge(
            "partner_links",
            "Partner users linked to a messenger pseudonym",
        ),
        contact_edges: b.gauge(
            "partner_contact_edges",
            "Contact edges kept (matched pseudonyms)",
        ),
        denied_reads: b.gauges(
            "partner_denied_reads",
            "Reads refused for want of a grant, per purpose",
        ),
        keyd_quota: b.gauge(
            "partner_keyd_quota_elements",
            "The partner's daily coordination quota at the key service",
        ),
        keyd_used: b.gauge(
            "partner_keyd_used_elements",
            "Elements the partner's users had evaluated in the rolling day",
        ),
        keyd_needed: b.gauge(
            "partner_keyd_needed_elements",
            "The key-service quota the partner's user count needs",
        ),
        keyd_alert: b.gauge(
            "partner_keyd_quota_alert",
            "1 when the key-service usage reached the alert share of its quota",
        ),
        refused_devices: b.gauge(
            "partner_refused_device_records",
            "Device records refused at ingest since start (an identifier or a broken format)",
        ),
    };
    let service = service.clone();
    b.on_scrape(move || {
        let (service, g) = (service.clone(), g.clone());
        async move {
            match service.stats().await {
                Ok(s) => {
                    g.subjects.set(count(s.subjects));
                    g.users.set(count(s.users));
                    g.links.set(count(s.links));
                    g.contact_edges.set(count(s.contact_edges));
                    for (purpose, n) in s.records {
                        g.records
                            .get_or_create(&ByPurpose { purpose })
                            .set(count(n));
                    }
                    for (purpose, n) in s.denied_reads {
                        g.denied_reads
                            .get_or_create(&ByPurpose { purpose })
                            .set(count(n));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "partner metrics not refreshed"),
            }
            match service.keyd_budget().await {
                Ok(k) => {
                    g.keyd_quota.set(count(k.quota));
                    g.keyd_used.set(count(k.used));
                    g.keyd_needed.set(count(k.needed));
                    g.keyd_alert.set(i64::from(k.alert));
                }
                Err(e) => tracing::warn!(error = %e, "partner key-service metrics not refreshed"),
            }
            g.refused_devices
                .set(count(service.refused_device_records()));
        }
    });
    b.build()
}
