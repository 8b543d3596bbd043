//! Time as milliseconds since the Unix epoch, and the injected clock.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Milliseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

pub const SECOND_MS: i64 = 1_000;
pub const MINUTE_MS: i64 = 60 * SECOND_MS;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

impl Timestamp {
    pub fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }
    pub fn millis(self) -> i64 {
        self.0
    }
    pub fn plus_millis(self, ms: i64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }
    pub fn plus_days(self, days: i64) -> Self {
        self.plus_millis(days.saturating_mul(DAY_MS))
    }
    /// RFC 3339 rendering in UTC, for humans and receipts.
    pub fn to_rfc3339(self) -> String {
        let secs = self.0.div_euclid(1000);
        let ms = self.0.rem_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )
    }
    /// Parses `YYYY-MM-DDTHH:MM:SS[.mmm]Z` (UTC only) or plain milliseconds.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Ok(ms) = s.parse::<i64>() {
            return Some(Timestamp(ms));
        }
        let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
        let (date, time) = s.split_once('T')?;
        let mut dp = date.splitn(3, '-');
        let y: i64 = dp.next()?.parse().ok()?;
        let m: u32 = dp.next()?.parse().ok()?;
        let d: u32 = dp.next()?.parse().ok()?;
        let (hms, frac) = match time.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (time, None),
        };
        let mut tp = hms.splitn(3, ':');
        let hh: i64 = tp.next()?.parse().ok()?;
        let mm: i64 = tp.next()?.parse().ok()?;
        let ss: i64 = tp.next()?.parse().ok()?;
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
            return None;
        }
        let ms: i64 = match frac {
            Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
                let padded = format!("{f:0<3}");
                padded[..3].parse().ok()?
            }
            Some(_) => return None,
            None => 0,
        };
        let days = days_from_civil(y, m, d);
        Some(Timestamp(
            ((days * 86_400) + hh * 3600 + mm * 60 + ss) * 1000 + ms,
        ))
    }
}

// Howard Hinnant's civil-from-days algorithms.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Where "now" comes from. Services take an `Arc<dyn Clock>`.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;
    /// The simulated clock, when this is one (admin time travel).
    fn as_simulated(&self) -> Option<&SimulatedClock> {
        None
    }
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_millis() as i64)
    }
}

/// Wall clock plus an offset that only moves forward. Used with
/// `accord serve --simulated-clock` and in tests.
#[derive(Debug, Clone, Default)]
pub struct SimulatedClock {
    offset_ms: Arc<AtomicI64>,
    frozen_at: Option<i64>,
}

impl SimulatedClock {
    /// Follows the wall clock, shifted by whatever has been advanced.
    pub fn following_wall_clock() -> Self {
        Self::default()
    }
    /// Stands still at `t` until advanced; for deterministic tests.
    pub fn frozen_at(t: Timestamp) -> Self {
        SimulatedClock {
            offset_ms: Arc::new(AtomicI64::new(0)),
            frozen_at: Some(t.0),
        }
    }
    /// Moves time forward; negative amounts are ignored (time never runs back).
    pub fn advance_millis(&self, ms: i64) -> Timestamp {
        if ms > 0 {
            self.offset_ms.fetch_add(ms, Ordering::SeqCst);
        }
        self.now()
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> Timestamp {
        let base = self.frozen_at.unwrap_or_else(|| SystemClock.now().0);
        Timestamp(base + self.offset_ms.load(Ordering::SeqCst))
    }
    fn as_simulated(&self) -> Option<&SimulatedClock> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_764_390_896_123).to_rfc3339(),
            "2025-11-29T04:34:56.123Z"
        );
        assert_eq!(
            Timestamp::parse("2025-11-29T04:34:56.123Z"),
            Some(Timestamp(1_764_390_896_123))
        );
        assert_eq!(Timestamp::parse("2025-13-01T00:00:00Z"), None);
        assert_eq!(Timestamp::parse("yesterday"), None);
    }

    #[test]
    fn simulated_clock_only_moves_forward() {
        let c = SimulatedClock::frozen_at(Timestamp(1000));
        c.advance_millis(-500);
        assert_eq!(c.now(), Timestamp(1000));
        c.advance_millis(DAY_MS);
        assert_eq!(c.now(), Timestamp(1000 + DAY_MS));
    }

    proptest! {
        #[test]
        fn rfc3339_round_trips(ms in -62_000_000_000_000i64..253_000_000_000_000i64) {
            let t = Timestamp(ms);
            prop_assert_eq!(Timestamp::parse(&t.to_rfc3339()), Some(t));
        }
    }
}
