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
//! - Two maps: token → (account id, device), and account id → account.
//!   Every value is stamped with the cache's clock read *before* the
//!   database read that produced it, and remembered for at most
//!   [`AUTH_CACHE_TTL`] from that moment.
//! - A consent change on this node does not forget its account: it
//!   *writes* the account as committed ([`AuthCache::account_written`]).
//!   Consent changes are the common write (thousands a second under
//!   load); forgetting every token on each one made every request read the
//!   database again, and forgetting the account made the next request of
//!   that user read it again. An account entry is replaced only by one of
//!   a higher `consent_rev` (or by any after it expired), so a read that
//!   raced a change, or two changes answered out of order, never put an
//!   older consent state back.
//! - Rarer writes that can change many answers or that `consent_rev` does
//!   not count (a policy publication, a number change, an account
//!   deletion) call [`AuthCache::invalidate`], which raises the floor of
//!   everything at once: a value stamped below it is stale.
//! - A write made by another node (several messengers on one PostgreSQL)
//!   is seen here at most [`AUTH_CACHE_TTL`] later. A deleted account's
//!   token can thus still authenticate on another node for up to a
//!   second; its data is already gone, and sends to or from it find no
//!   devices. A consent change made on another node within that second
//!   makes this node's next change of the account fail its `consent_rev`
//!   check once and retry on a fresh read.
//! - Unknown tokens are not remembered: every failed attempt reads the
//!   database.

use accord_crypto::token::TokenHash;
use accord_domain::policy::PolicyHistory;
use accord_domain::{AccountId, DeviceId};
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
struct TokenEntry {
    stamp: Stamp,
    account: AccountId,
    device: DeviceId,
}

#[derive(Debug)]
struct AccountEntry {
    stamp: Stamp,
    account: Account,
}

/// The cache's clock when a value was read, and the instant of that
/// reading.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    tick: u64,
    at: Instant,
}

#[derive(Debug, Default)]
pub struct AuthCache {
    /// Ticks once per invalidation.
    clock: AtomicU64,
    /// Values stamped below this are stale.
    floor: AtomicU64,
    tokens: Mutex<HashMap<[u8; 32], TokenEntry>>,
    accounts: Mutex<HashMap<AccountId, AccountEntry>>,
    policies: Mutex<Option<(Stamp, Arc<PolicyHistory>)>>,
}

impl AuthCache {
    fn fresh(&self, stamp: Stamp) -> bool {
        stamp.tick >= self.floor.load(Ordering::Acquire) && stamp.at.elapsed() < AUTH_CACHE_TTL
    }

    /// Forgets everything: call after a write that can change who many
    /// tokens are or what their accounts may do.
    pub fn invalidate(&self) {
        let tick = self.clock.fetch_add(1, Ordering::AcqRel) + 1;
        self.floor.fetch_max(tick, Ordering::AcqRel);
    }

    /// The stamp for a value about to be read. Take it *before* reading
    /// the database, so that an invalidation racing the read makes the
    /// value stale instead of keeping it.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            tick: self.clock.load(Ordering::Acquire),
            at: Instant::now(),
        }
    }

    pub fn token(&self, token: &TokenHash) -> Option<(Account, DeviceId)> {
        let (id, device) = {
            let map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            let e = map.get(&token.0).filter(|e| self.fresh(e.stamp))?;
            (e.account, e.device)
        };
        let accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        let a = accounts.get(&id).filter(|e| self.fresh(e.stamp))?;
        Some((a.account.clone(), device))
    }

    /// Remembers who `token` is, as read from the database under `stamp`.
    pub fn put_token(&self, stamp: Stamp, token: &TokenHash, account: Account, device: DeviceId) {
        if !self.fresh(stamp) {
            return;
        }
        let id = account.id;
        self.put_account(stamp, account);
        let mut map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(
            token.0,
            TokenEntry {
                stamp,
                account: id,
                device,
            },
        );
    }

    /// Records `account` as this node just committed it (a consent
    /// change): the next request of its tokens needs no read.
    pub fn account_written(&self, account: Account) {
        self.put_account(self.stamp(), account);
    }

    fn put_account(&self, stamp: Stamp, account: Account) {
        if !self.fresh(stamp) {
            return;
        }
        let mut map = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = map.get(&account.id) {
            if self.fresh(held.stamp) && held.account.consent_rev >= account.consent_rev {
                // What is held is as new or newer: an older read, or an
                // earlier change answered late, must not replace it.
                return;
            }
        }
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(account.id, AccountEntry { stamp, account });
    }

    pub fn policies(&self) -> Option<Arc<PolicyHistory>> {
        let slot = self.policies.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref()
            .filter(|(stamp, _)| self.fresh(*stamp))
            .map(|(_, p)| p.clone())
    }

    pub fn put_policies(&self, stamp: Stamp, policies: Arc<PolicyHistory>) {
        *self.policies.lock().unwrap_or_else(|e| e.into_inner()) = Some((stamp, policies));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accord_domain::{ConsentState, PhoneNumber, Timestamp};

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
        let g = cache.stamp();
        cache.put_token(g, &t, account(), DeviceId::random());
        assert!(cache.token(&t).is_some());
        cache.invalidate();
        assert!(cache.token(&t).is_none());
        // A value read before an invalidation but stored after it is stale.
        cache.put_token(g, &t, account(), DeviceId::random());
        assert!(cache.token(&t).is_none());
        cache.put_policies(g, Arc::new(PolicyHistory::new(Vec::new())));
        assert!(cache.policies().is_none());
        cache.put_policies(cache.stamp(), Arc::new(PolicyHistory::new(Vec::new())));
        assert!(cache.policies().is_some());
    }

    #[test]
    fn a_written_account_replaces_older_states_only() {
        let cache = AuthCache::default();
        let (a, b) = (account(), account());
        let (ta, tb) = (TokenHash::of("token-a"), TokenHash::of("token-b"));
        let before = cache.stamp();
        cache.put_token(before, &ta, a.clone(), DeviceId::random());
        cache.put_token(before, &tb, b.clone(), DeviceId::random());
        cache.put_policies(before, Arc::new(PolicyHistory::new(Vec::new())));
        let mut changed = a.clone();
        changed.consent_rev += 1;
        cache.account_written(changed.clone());
        let seen = |t: &TokenHash| cache.token(t).map(|(acct, _)| acct.consent_rev);
        assert_eq!(seen(&ta), Some(changed.consent_rev), "the change is seen");
        assert_eq!(seen(&tb), Some(b.consent_rev), "another account is kept");
        assert!(cache.policies().is_some(), "the policies are kept");
        // A read of `a` that raced the change does not put the old state back...
        cache.put_token(before, &ta, a.clone(), DeviceId::random());
        assert_eq!(seen(&ta), Some(changed.consent_rev));
        // ...nor does an earlier change answered late.
        cache.account_written(a);
        assert_eq!(seen(&ta), Some(changed.consent_rev));
        // A newer one does.
        changed.consent_rev += 1;
        cache.account_written(changed.clone());
        assert_eq!(seen(&ta), Some(changed.consent_rev));
    }

    #[test]
    fn entries_expire_from_the_moment_they_were_read() {
        let cache = AuthCache::default();
        let t = TokenHash::of("old-token");
        let old = Stamp {
            tick: cache.stamp().tick,
            at: Instant::now() - AUTH_CACHE_TTL,
        };
        cache.put_token(old, &t, account(), DeviceId::random());
        assert!(cache.token(&t).is_none());
    }
}
