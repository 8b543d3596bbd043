#![no_main]
use accord_domain::PhoneNumber;
use libfuzzer_sys::fuzz_target;

// Any input: no panic; any accepted number is a fixed point of normalisation.
fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (region, raw) = s.split_once('|').unwrap_or(("ID", s));
    if let Ok(p) = PhoneNumber::parse(raw, Some(region)) {
        let again = PhoneNumber::parse(p.e164(), None).expect("E.164 output parses again");
        assert_eq!(again, p);
    }
});
