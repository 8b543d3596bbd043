//! Rate limits: token buckets, in memory, per key (a device or an
//! account).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

/// A token bucket per key: `burst` tokens, refilled at `per_s` a second.
#[derive(Debug)]
pub struct TokenBuckets<K> {
    per_s: f64,
    burst: f64,
    map: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq + Clone> TokenBuckets<K> {
    pub fn new(per_s: f64, burst: f64) -> Self {
        TokenBuckets {
            per_s,
            burst: burst.max(1.0),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or says in how many seconds one will be
    /// there.
    pub fn take(&self, key: &K) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            // Full buckets carry no information: drop them.
            let (per_s, burst) = (self.per_s, self.burst);
            map.retain(|_, (t, at)| *t + now.duration_since(*at).as_secs_f64() * per_s < burst);
        }
        let (tokens, at) = map.entry(key.clone()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_s).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_s).ceil().max(1.0) as u64)
        }
    }
}
