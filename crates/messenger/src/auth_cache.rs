//! A short-lived, per-node memory of who a bearer token is.
//!
//! Authenticating a request costs three reads (the device by token hash,
//! its account, the policy history); a device sending messages presents
//! the same token many times a second. The cache keeps those reads for
//! [`AUTH_CACHE_TTL`] and **never** the decision itself: access
//! (full / restricted / deleted) is recomputed from the cached account and
//! policies with the clock's `now` on every request, so deadlines pass on
//! time, in simulated time too.
//!
//! Decisions:
//! - Every write on this node that can change the answer (a consent
//!   change, a policy publication, a number change, an account deletion)
//!   calls [`AuthCache::invalidate`], which forgets everything at once
//!   (a generation counter). Such writes are rare next to reads.
//! - A write made by another node (several messengers on one PostgreSQL)
//!   is seen here at most [`AUTH_CACHE_TTL`] later. A deleted account's
//!   token can thus still authenticate on another node for up to a
//!   second; its data is already gone, and sends to or from it find no
//!   devices.
//! - Unknown tokens are not remembered: every failed attempt reads the
//!   database.

use accord_crypto::token::TokenHash;
use accord_domain::policy::PolicyHistory;
use accord_domain::DeviceId;
use accord_storage::Account;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a token's account and the policy history are remembered.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(1);
/// Entries kept before the map is cleared (a bound on memory).
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug)]
struct Entry {
    generation: u64,
    at: Instant,
    account: Account,
    device: DeviceId,
}

#[derive(Debug, Default)]
pub struct AuthCache {
    generation: AtomicU64,
    tokens: Mutex<HashMap<[u8; 32], Entry>>,
    policies: Mutex<Option<(u64, Instant, Arc<PolicyHistory>)>>,
}

impl AuthCache {
    fn fresh(&self, generation: u64, at: Instant) -> bool {
        generation == self.generation.load(Ordering::Acquire) && at.elapsed() < AUTH_CACHE_TTL
    }

    /// Forgets everything: call after any write that can change who a
    /// token is or what its account may do.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The generation to stamp a value read now with. Read it *before*
    /// reading the database, so that an invalidation racing the read
    /// makes the value stale instead of keeping it.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn token(&self, token: &TokenHash) -> Option<(Account, DeviceId)> {
        let map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&token.0)
            .filter(|e| self.fresh(e.generation, e.at))
            .map(|e| (e.account.clone(), e.device))
    }

    pub fn put_token(
        &self,
        generation: u64,
        token: &TokenHash,
        account: Account,
        device: DeviceId,
    ) {
        let mut map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(
            token.0,
            Entry {
                generation,
                at: Instant::now(),
                account,
                device,
            },
        );
    }

    pub fn policies(&self) -> Option<Arc<PolicyHistory>> {
        let slot = self.policies.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref()
            .filter(|(g, at, _)| self.fresh(*g, *at))
            .map(|(_, _, p)| p.clone())
    }

    pub fn put_policies(&self, generation: u64, policies: Arc<PolicyHistory>) {
        *self.policies.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((generation, Instant::now(), policies));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accord_domain::{AccountId, ConsentState, PhoneNumber, Timestamp};

    fn account() -> Account {
        Account {
            id: AccountId::random(),
            phone: PhoneNumber::parse("+14155550100", None).expect("valid"),
            created_at: Timestamp(0),
            consent: ConsentState::default(),
            consent_rev: 0,
        }
    }

    #[test]
    fn invalidation_forgets_entries_read_before_it() {
        let cache = AuthCache::default();
        let t = TokenHash::of("some-token");
        let g = cache.generation();
        cache.put_token(g, &t, account(), DeviceId::random());
        assert!(cache.token(&t).is_some());
        cache.invalidate();
        assert!(cache.token(&t).is_none());
        // A value read before an invalidation but stored after it is stale.
        cache.put_token(g, &t, account(), DeviceId::random());
        assert!(cache.token(&t).is_none());
        cache.put_policies(g, Arc::new(PolicyHistory::new(Vec::new())));
        assert!(cache.policies().is_none());
        cache.put_policies(cache.generation(), Arc::new(PolicyHistory::new(Vec::new())));
        assert!(cache.policies().is_some());
    }
}
