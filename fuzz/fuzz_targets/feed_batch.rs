#![no_main]
use accord_domain::coordination::{parse_pseudonym_hex, BucketList, Digests, FeedAck, FeedBatch};
use libfuzzer_sys::fuzz_target;

// The coordination feed's bodies, as the partner and the messenger parse them.
fuzz_target!(|data: &[u8]| {
    if let Ok(b) = serde_json::from_slice::<FeedBatch>(data) {
        for e in &b.events {
            let _ = parse_pseudonym_hex(&e.pseudonym);
        }
    }
    let _ = serde_json::from_slice::<FeedAck>(data);
    let _ = serde_json::from_slice::<Digests>(data);
    let _ = serde_json::from_slice::<BucketList>(data);
});
