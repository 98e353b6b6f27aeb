//! A short-lived in-process cache of authenticated keys, so that a busy
//! client does not cost a database read per request. Keys are revoked from
//! another process (`imagegate keys revoke`), which this one cannot hear
//! about, so an entry lives at most `ttl` (`[server] auth_cache_ms`,
//! default 1 s; 0 turns the cache off): that bounds how long a revoked key
//! keeps working here. A key's own expiry is checked on every hit. Only
//! successful lookups are kept, so unknown keys cannot grow the map, and
//! entries are indexed by the key's SHA-256, never the key itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use imagegate_store::Caller;
use sha2::{Digest, Sha256};
use std::time::Instant;

/// Most keys kept; past it the cache starts over rather than track age.
const MAX_ENTRIES: usize = 10_000;

/// Recently authenticated keys.
#[derive(Debug)]
pub struct AuthCache {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (Instant, Caller)>>,
}

impl AuthCache {
    /// A cache whose entries live `ttl` (zero: nothing is cached).
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::default() }
    }

    fn digest(key: &str) -> [u8; 32] {
        Sha256::digest(key.as_bytes()).into()
    }

    /// The caller cached for `key`, if still fresh and the key not expired.
    pub fn get(&self, key: &str, now_ms: i64) -> Option<Caller> {
        if self.ttl.is_zero() {
            return None;
        }
        let digest = Self::digest(key);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(&digest) {
            Some((at, caller)) if at.elapsed() < self.ttl && caller.key_expires_at.is_none_or(|t| t > now_ms) => Some(caller.clone()),
            Some(_) => {
                entries.remove(&digest);
                None
            }
            None => None,
        }
    }

    /// Remembers a successful authentication.
    pub fn put(&self, key: &str, caller: &Caller) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(Self::digest(key), (Instant::now(), caller.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(expires: Option<i64>) -> Caller {
        Caller { account_id: "a".into(), key_id: "k".into(), plan: "free".into(), is_admin: false, allowed_models: None, key_expires_at: expires }
    }

    #[test]
    fn entries_live_their_ttl_and_no_longer() {
        let cache = AuthCache::new(Duration::from_millis(200));
        cache.put("sk-ig-one", &caller(None));
        assert_eq!(cache.get("sk-ig-one", 0), Some(caller(None)));
        assert_eq!(cache.get("sk-ig-two", 0), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(cache.get("sk-ig-one", 0), None, "stale after the ttl");
    }

    #[test]
    fn an_expired_key_is_not_served_from_the_cache() {
        let cache = AuthCache::new(Duration::from_secs(60));
        cache.put("sk-ig-one", &caller(Some(1_000)));
        assert!(cache.get("sk-ig-one", 999).is_some());
        assert!(cache.get("sk-ig-one", 1_000).is_none());
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let cache = AuthCache::new(Duration::ZERO);
        cache.put("sk-ig-one", &caller(None));
        assert!(cache.get("sk-ig-one", 0).is_none());
    }
}
