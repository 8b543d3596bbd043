#![no_main]
use accord_domain::ledger::{ChainVerifier, LedgerEntry};
use accord_domain::{ConsentEvent, ConsentState, DeviceInfo};
use libfuzzer_sys::fuzz_target;

// JSON decoders of stored and received data: entries, events, device info.
fuzz_target!(|data: &[u8]| {
    if let Ok(e) = serde_json::from_slice::<LedgerEntry>(data) {
        let _ = e.event();
        let mut v = ChainVerifier::default();
        let _ = v.feed(&e);
    }
    if let Ok(ev) = serde_json::from_slice::<ConsentEvent>(data) {
        let mut s = ConsentState::default();
        s.apply(&ev);
    }
    if let Ok(d) = serde_json::from_slice::<DeviceInfo>(data) {
        let _ = d.validated();
    }
});
