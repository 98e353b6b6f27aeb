//! The objects this process put in the last moments, kept in memory.
//!
//! A synchronous request that asked for base64 reads its images back right
//! after the worker put them, and a client fetching a fresh signed URL does
//! the same. From the store that is a file read on a blocking thread (local)
//! or a GET round trip (S3) for bytes we held a moment ago. Objects are
//! written once under a new key and never changed, so a copy cannot go
//! stale; deletes evict it. Bounded in age and in total size, oldest out
//! first, so an idle process holds nothing for long and a busy one at most
//! the budget.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// How long a put object is kept.
const TTL: Duration = Duration::from_secs(30);
/// Most bytes kept in all.
const BUDGET: usize = 64 << 20;

#[derive(Debug, Default)]
struct Kept {
    by_key: HashMap<String, (Instant, Bytes)>,
    order: VecDeque<(Instant, String)>,
    bytes: usize,
}

/// Recently put objects (see the module notes).
#[derive(Debug, Default)]
pub(crate) struct Fresh {
    kept: Mutex<Kept>,
}

impl Fresh {
    fn lock(&self) -> MutexGuard<'_, Kept> {
        // A poisoned lock only means a panic elsewhere mid-update of maps that are still valid.
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `bytes` as the object under `key`.
    pub fn insert(&self, key: &str, bytes: Bytes) {
        if bytes.len() > BUDGET / 4 {
            return;
        }
        let now = Instant::now();
        let mut k = self.lock();
        if let Some((_, old)) = k.by_key.insert(key.to_string(), (now, bytes.clone())) {
            k.bytes -= old.len();
        }
        k.bytes += bytes.len();
        k.order.push_back((now, key.to_string()));
        while let Some((at, _)) = k.order.front() {
            if k.bytes <= BUDGET && now.duration_since(*at) < TTL {
                break;
            }
            let (at, key) = k.order.pop_front().expect("front exists");
            // Only the entry this queue slot was made for; a later put of the same key has its own slot.
            if k.by_key.get(&key).is_some_and(|(t, _)| *t == at)
                && let Some((_, b)) = k.by_key.remove(&key)
            {
                k.bytes -= b.len();
            }
        }
    }

    /// The object under `key`, if put here less than the TTL ago.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        let k = self.lock();
        k.by_key.get(key).filter(|(at, _)| at.elapsed() < TTL).map(|(_, b)| b.clone())
    }

    /// Forgets `key` (the object was deleted).
    pub fn remove(&self, key: &str) {
        let mut k = self.lock();
        if let Some((_, b)) = k.by_key.remove(key) {
            k.bytes -= b.len();
        }
    }

    /// Bytes kept now (tests).
    #[cfg(test)]
    fn kept_bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_puts_until_deleted_and_stays_within_its_budget() {
        let f = Fresh::default();
        f.insert("a", Bytes::from_static(b"abc"));
        assert_eq!(f.get("a").as_deref(), Some(&b"abc"[..]));
        assert_eq!(f.get("b"), None);
        f.remove("a");
        assert_eq!((f.get("a"), f.kept_bytes()), (None, 0));
        let chunk = Bytes::from(vec![7u8; BUDGET / 8]);
        for n in 0..20 {
            f.insert(&format!("k{n}"), chunk.clone());
        }
        assert!(f.kept_bytes() <= BUDGET, "{} kept", f.kept_bytes());
        assert_eq!(f.get("k0"), None, "the oldest went first");
        assert_eq!(f.get("k19").map(|b| b.len()), Some(BUDGET / 8), "the newest stays");
        // The same key put twice is counted once.
        f.insert("k19", Bytes::from_static(b"x"));
        assert_eq!(f.get("k19").as_deref(), Some(&b"x"[..]));
        let expected: usize = (0..19).filter_map(|n| f.get(&format!("k{n}"))).map(|b| b.len()).sum::<usize>() + 1;
        assert_eq!(f.kept_bytes(), expected);
    }

    #[test]
    fn objects_too_large_for_a_quarter_of_the_budget_are_not_kept() {
        let f = Fresh::default();
        f.insert("big", Bytes::from(vec![0u8; BUDGET / 4 + 1]));
        assert_eq!((f.get("big"), f.kept_bytes()), (None, 0));
    }
}
