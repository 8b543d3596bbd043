#![no_main]
use accord_e2e::wire::{
    decode_client_frame, decode_device_keys, decode_envelope, decode_one_time_keys, decode_send_request,
    decode_server_frame,
};
use libfuzzer_sys::fuzz_target;

// Every decoder of the E2E relay: a clear error or a value, never a panic;
// signatures of whatever decodes are checked without panicking either.
fuzz_target!(|data: &[u8]| {
    if let Ok(k) = decode_device_keys(data) {
        let _ = k.verify();
    }
    let _ = decode_one_time_keys(data);
    let _ = decode_envelope(data);
    let _ = decode_send_request(data);
    let _ = decode_client_frame(data);
    let _ = decode_server_frame(data);
});
