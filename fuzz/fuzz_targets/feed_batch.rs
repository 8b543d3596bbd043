#![no_main]
use accord_domain::coordination::{Digests, FeedAck, FeedBatch, ReconcileBucketList};
use accord_domain::PseudonymId;
use libfuzzer_sys::fuzz_target;

// The coordination feed's bodies, as the partner and the messenger parse
// them (pseudonyms included: `PseudonymId` parses its own hex).
fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<FeedBatch>(data);
    let _ = serde_json::from_slice::<FeedAck>(data);
    let _ = serde_json::from_slice::<Digests>(data);
    let _ = serde_json::from_slice::<ReconcileBucketList>(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = PseudonymId::from_hex(s);
    }
});
