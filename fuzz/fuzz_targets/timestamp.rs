#![no_main]
use accord_domain::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Some(t) = Timestamp::parse(s) {
        if (-62_000_000_000_000..253_000_000_000_000).contains(&t.0) {
            assert_eq!(Timestamp::parse(&t.to_rfc3339()), Some(t));
        }
    }
});
