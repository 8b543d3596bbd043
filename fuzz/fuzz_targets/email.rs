#![no_main]
use accord_domain::Email;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(e) = Email::parse(s) {
        assert_eq!(Email::parse(e.as_str()).expect("normalised email parses again"), e);
    }
});
