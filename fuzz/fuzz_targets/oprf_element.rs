#![no_main]
use accord_crypto::oprf::{evaluate_batch, BlindedElementBytes, OprfSecretKey};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

// Arbitrary bytes as blinded elements: a clear error or an evaluation, never a panic.
fuzz_target!(|data: &[u8]| {
    static KEY: OnceLock<OprfSecretKey> = OnceLock::new();
    let key = KEY.get_or_init(OprfSecretKey::generate);
    let elements: Vec<BlindedElementBytes> = data
        .chunks_exact(32)
        .map(|c| BlindedElementBytes(c.try_into().unwrap()))
        .collect();
    let _ = evaluate_batch(key, &elements);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = BlindedElementBytes::from_base64(s);
    }
});
