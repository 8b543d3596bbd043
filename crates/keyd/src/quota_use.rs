//! How much of its quotas the key service's clients used today: per client
//! kind and purpose (the metrics and the operator page), and per client
//! for every client that is not a device (the operator page; devices are
//! many and are shown as their kind's total). Two store queries however
//! many clients there are: the clients with their quotas, and the usage of
//! the current UTC day.

use crate::error::KeydError;
use crate::service::KeyService;
use accord_crypto::oprf::OprfPurpose;
use accord_domain::time::DAY_MS;
use accord_domain::Timestamp;
use accord_storage::keyd::ClientKind;
use std::collections::{BTreeMap, HashMap};

/// Quotas granted and elements evaluated today, for one kind or client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Use {
    pub quota: u64,
    pub used_today: u64,
}

/// One client that is not a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientUse {
    pub name: String,
    pub kind: ClientKind,
    pub purposes: BTreeMap<OprfPurpose, Use>,
}

/// The day's quota use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaUse {
    /// Per kind (`ClientKind::as_str`) and purpose.
    pub by_kind: BTreeMap<(&'static str, OprfPurpose), Use>,
    /// How many clients of each kind.
    pub clients: BTreeMap<&'static str, u64>,
    /// Every client that is not a device, by name.
    pub named: Vec<ClientUse>,
}

impl KeyService {
    /// Quota use of the current UTC day (see the module docs). Usage is
    /// kept per meter (a client's own, or its quota group's): a device's
    /// evaluations are its account's, counted once.
    pub async fn quota_use(&self) -> Result<QuotaUse, KeydError> {
        let now = self.now();
        let today = Timestamp(now.0.div_euclid(DAY_MS) * DAY_MS);
        let clients = self.clients().await?;
        let usage = self.audit(None, today, now).await?;
        let mut by_meter: HashMap<_, BTreeMap<OprfPurpose, u64>> = HashMap::new();
        for u in &usage {
            *by_meter
                .entry(u.client)
                .or_default()
                .entry(u.purpose)
                .or_default() += u.elements;
        }
        let mut out = QuotaUse::default();
        let mut counted_meters = std::collections::HashSet::new();
        for c in &clients {
            let kind = c.kind.as_str();
            *out.clients.entry(kind).or_default() += 1;
            let used = by_meter.get(&c.meter());
            let first_of_meter = counted_meters.insert(c.meter());
            for p in OprfPurpose::ALL {
                let quota = c.quota(p);
                let used_today = if first_of_meter {
                    used.and_then(|u| u.get(&p)).copied().unwrap_or(0)
                } else {
                    0
                };
                if quota == 0 && used_today == 0 {
                    continue;
                }
                let e = out.by_kind.entry((kind, p)).or_default();
                e.quota = e.quota.saturating_add(quota);
                e.used_today = e.used_today.saturating_add(used_today);
            }
            if c.kind != ClientKind::Device {
                out.named.push(ClientUse {
                    name: c.name.clone(),
                    kind: c.kind,
                    purposes: OprfPurpose::ALL
                        .into_iter()
                        .map(|p| {
                            let used_today = used.and_then(|u| u.get(&p)).copied().unwrap_or(0);
                            (
                                p,
                                Use {
                                    quota: c.quota(p),
                                    used_today,
                                },
                            )
                        })
                        .filter(|(_, u)| u.quota > 0 || u.used_today > 0)
                        .collect(),
                });
            }
        }
        out.named.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
