//! The key service's rules: who its clients are, and the quota window.
//!
//! **Why here.** These rules are pure (no I/O) and both the key service
//! (`accord-keyd`) and its store (`accord-storage`, which charges quotas
//! inside one SQL transaction) need them. `accord-domain` is the one crate
//! both already depend on, and it stays free of HTTP and SQL; the key
//! service's client crate (`accord-keyd-client`) was the other candidate,
//! but it carries `reqwest`, which storage should not. So storage keeps
//! only SQL (`accord_storage::keyd`, which re-exports these names), and
//! the rules live here. The store's records (`Client`, `StoredKey`, ...)
//! stay with the store: they name `accord-crypto`'s `OprfPurpose` and
//! `TokenHash`, and this crate sits below `accord-crypto`.
//!
//! - [`ClientId`], [`ClientKind`]: an API client of the key service and
//!   what it is (which decides its default quotas).
//! - The **quota window**: the "rolling day" is the sum of the last
//!   [`WINDOW_HOURS`] usage hours ([`UsageHour`], [`hour_of`]), the
//!   current (partial) hour included. An element charged at time `t` therefore counts until
//!   the end of the hour 23 hours after `t`'s hour: for between 23 and 24
//!   hours, never longer, so that a client that used its quota at `t` can
//!   always evaluate again at `t + 24 h`. The price of hourly granularity
//!   is that a client timing its bursts at hour edges gets at most one
//!   quota per 23 hours (about 4% more than one per 24 h); never more than
//!   that.
//! - [`check_charge`]: whether a charge fits into the window, and if not,
//!   [`QuotaExceeded`] with [`retry_after_s`], the earliest time it would.

use crate::time::{Timestamp, DAY_MS, HOUR_MS, SECOND_MS};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// How many usage hours make the rolling day (see the module docs).
pub const WINDOW_HOURS: i64 = 24;

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// An API client of the key service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(pub Uuid);

impl ClientId {
    pub fn random() -> Self {
        ClientId(Uuid::new_v4())
    }
    pub fn parse(s: &str) -> Option<Self> {
        Uuid::parse_str(s).ok().map(ClientId)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Who a client is, which decides its default quotas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    Messenger,
    Partner,
    Business,
    /// A user's device (contact discovery).
    Device,
}

impl ClientKind {
    pub const ALL: [ClientKind; 4] = [
        ClientKind::Messenger,
        ClientKind::Partner,
        ClientKind::Business,
        ClientKind::Device,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Messenger => "messenger",
            ClientKind::Partner => "partner",
            ClientKind::Business => "business",
            ClientKind::Device => "device",
        }
    }
}

/// A string that names no [`ClientKind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown client kind")]
pub struct UnknownClientKind;

impl FromStr for ClientKind {
    type Err = UnknownClientKind;
    fn from_str(s: &str) -> Result<Self, UnknownClientKind> {
        ClientKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(UnknownClientKind)
    }
}

// ---------------------------------------------------------------------------
// The quota window
// ---------------------------------------------------------------------------

/// A charge that would take the client over its quota. Nothing was charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("quota exceeded: {used} of {quota} used in the last 24 hours, {requested} requested; retry after {retry_after_s} s")]
pub struct QuotaExceeded {
    /// Seconds until enough of the window has expired for this request to
    /// pass; a full day when the request alone exceeds the quota.
    pub retry_after_s: u64,
    pub quota: u64,
    pub used: u64,
    pub requested: u64,
}

/// One usage hour of a client and purpose: `(hour, elements)`, the hour
/// as hours since the epoch ([`hour_of`]) and the elements charged in it.
/// (Not a token bucket of a rate limit.)
pub type UsageHour = (i64, u64);

/// The usage hour of an instant (hours since the epoch).
pub fn hour_of(t: Timestamp) -> i64 {
    t.0.div_euclid(HOUR_MS)
}

/// Whether `requested` more elements fit into `quota`, given the usage
/// hours of the window ending at `now` (any order, every usage hour after
/// hour `hour_of(now) - WINDOW_HOURS`).
pub fn check_charge(
    usage: &[UsageHour],
    quota: u64,
    requested: u64,
    now: Timestamp,
) -> Result<(), QuotaExceeded> {
    let used: u64 = usage.iter().map(|u| u.1).sum();
    if used.saturating_add(requested) > quota {
        return Err(QuotaExceeded {
            retry_after_s: retry_after_s(usage, quota, requested, now),
            quota,
            used,
            requested,
        });
    }
    Ok(())
}

/// Given the usage hours of the window (any order), what a charge answers
/// when `requested` more elements do not fit into `quota`: the earliest
/// instant at which enough usage hours have left the window, as seconds
/// from `now` (at least 1).
pub fn retry_after_s(usage: &[UsageHour], quota: u64, requested: u64, now: Timestamp) -> u64 {
    let used: u64 = usage.iter().map(|u| u.1).sum();
    if requested > quota {
        return (DAY_MS / SECOND_MS) as u64;
    }
    let mut sorted = usage.to_vec();
    sorted.sort_unstable();
    let mut left = used;
    for (hour, elements) in sorted {
        left = left.saturating_sub(elements);
        if left.saturating_add(requested) <= quota {
            // Usage hour `hour` leaves the window when hour `hour + WINDOW_HOURS` starts.
            let at = (hour + WINDOW_HOURS) * HOUR_MS;
            let ms = (at - now.0).max(1);
            return ms.div_euclid(SECOND_MS) as u64 + u64::from(ms % SECOND_MS != 0);
        }
    }
    (DAY_MS / SECOND_MS) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timestamp = Timestamp(1_800_000_000_000);

    #[test]
    fn retry_after_waits_for_the_oldest_usage_hours_needed() {
        let h = hour_of(T);
        // 600 used 20 hours ago, 400 used this hour, quota 1000.
        let usage = [(h, 400), (h - 20, 600)];
        // One more element needs the older usage hour to leave: at hour h - 20 + 24.
        let expect = ((h + 4) * HOUR_MS - T.0) / 1000;
        assert_eq!(retry_after_s(&usage, 1000, 1, T), expect as u64);
        // 700 more need both usage hours gone: the current hour's, 24 h from its start.
        let expect = ((h + 24) * HOUR_MS - T.0) / 1000;
        assert_eq!(retry_after_s(&usage, 1000, 700, T), expect as u64);
        // More than the quota can ever pass: a full day.
        assert_eq!(retry_after_s(&usage, 1000, 1001, T), 86_400);
    }

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one_second() {
        let h = hour_of(T);
        let just_before = Timestamp((h + 1) * HOUR_MS - 1);
        assert_eq!(retry_after_s(&[(h - 23, 5)], 5, 1, just_before), 1);
        let mid = Timestamp(h * HOUR_MS + 1_500);
        assert_eq!(retry_after_s(&[(h - 23, 5)], 5, 1, mid), 3599);
    }

    #[test]
    fn check_charge_admits_up_to_the_quota_and_reports_the_rest() {
        let h = hour_of(T);
        let usage = [(h, 400), (h - 20, 600)];
        assert_eq!(check_charge(&usage, 1000, 0, T), Ok(()));
        assert_eq!(check_charge(&usage, 1001, 1, T), Ok(()));
        let q = check_charge(&usage, 1000, 1, T).unwrap_err();
        assert_eq!(
            (q.used, q.quota, q.requested, q.retry_after_s),
            (1000, 1000, 1, retry_after_s(&usage, 1000, 1, T))
        );
    }

    #[test]
    fn client_kinds_round_trip() {
        for k in ClientKind::ALL {
            assert_eq!(k.as_str().parse::<ClientKind>().unwrap(), k);
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        assert!("admin".parse::<ClientKind>().is_err());
    }
}
