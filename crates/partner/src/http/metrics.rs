//! The partner's own series, read from its store before each scrape: the
//! pseudonyms it holds something of, records per purpose, partner users,
//! links, contact edges, and reads refused for want of a grant, per
//! purpose. Labels are purposes only.

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
        }
    });
    b.build()
}
