//! The relay's tunables.

use accord_domain::time::DAY_MS;

/// Tunables, with defaults for local use.
#[derive(Clone, Copy, Debug)]
pub struct E2eConfig {
    /// How long an undelivered envelope (or receipt) is kept.
    pub envelope_ttl_ms: i64,
    /// Most one-time keys stored per device.
    pub max_one_time_keys: u32,
    /// Claims per requesting device: per second and burst.
    pub claims_per_s: f64,
    pub claim_burst: f64,
    /// Sends per sender device: per second and burst.
    pub sends_per_s: f64,
    pub send_burst: f64,
    /// Sends from unknown senders per recipient account.
    pub unknown_sends_per_s: f64,
    pub unknown_send_burst: f64,
    /// Most sends and acks in one group commit.
    pub max_batch: usize,
    /// Longest plaintext a report may carry, in bytes.
    pub max_report_plaintext: usize,
}

impl Default for E2eConfig {
    fn default() -> Self {
        E2eConfig {
            envelope_ttl_ms: 30 * DAY_MS,
            max_one_time_keys: 200,
            claims_per_s: 1.0,
            claim_burst: 60.0,
            sends_per_s: 20.0,
            send_burst: 200.0,
            unknown_sends_per_s: 0.5,
            unknown_send_burst: 30.0,
            max_batch: 1024,
            max_report_plaintext: 64 * 1024,
        }
    }
}
