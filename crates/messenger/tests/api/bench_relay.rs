//! `accord bench relay` end to end, scaled down: the figures it prints must
//! come from envelopes that really went through the server. Checks what
//! the report is made of, never how fast it was.

use accord_messenger::bench_relay::{bench_relay, RelayBenchOptions};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_relay_bench_reports_what_it_delivered() {
    let opts = RelayBenchOptions {
        duration: Duration::from_millis(700),
        latency_rate: 400,
        senders: 4,
        recipients: 2,
        devices_per_recipient: 2,
        idle_connections: 30,
        ciphertext_bytes: 64,
        idle_client_exe: None,
    };
    let report = bench_relay(opts).await.expect("the bench runs");
    assert!(report.envelopes_per_s > 0.0, "{report}");
    assert!(
        report.p50_ms > 0.0 && report.p50_ms <= report.p99_ms,
        "{report}"
    );
    assert_eq!(report.idle_connections, 30, "{report}");
    assert!(report.rss_mb > 0.0, "{report}");
    let text = report.to_string();
    for name in [
        "envelopes_per_s",
        "p50_ms",
        "p99_ms",
        "idle_connections",
        "rss_mb",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} line in:\n{text}"));
        let value = line.split_once(": ").map(|(_, v)| v).unwrap_or_default();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
}
