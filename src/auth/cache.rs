//! The back end's decisions kept for `--auth-cache-ttl`, on the loop's side
//! of the auth thread (a hit answers a join without crossing threads).
//! Sans-IO: the time is passed in.
//!
//! Invariants:
//! - Keyed by the SHA-256 of the room, the `Cookie` and the `Origin` (each
//!   length-prefixed, so no two requests share a key unless all three are
//!   equal): 32 bytes a key whatever the cookie's size, and no way to make
//!   one client's cookie hit another's decision.
//! - Only decisions the back end made are kept: grants, 401 and 403; a 503
//!   (timeout, error) is never cached.
//! - At most `capacity` decisions; every entry has the same TTL, so
//!   insertion order is expiry order and the oldest goes first when full.

use super::{Refusal, Verdict};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A request's identity in the cache.
pub type CacheKey = [u8; 32];

/// Decisions by key, each until it expires.
#[derive(Debug)]
pub struct DecisionCache {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<CacheKey, (Verdict, Instant)>,
    /// Keys in insertion order with their expiry; an entry whose expiry no
    /// longer matches the map's was replaced and is skipped.
    order: VecDeque<(CacheKey, Instant)>,
}

/// The most decisions kept.
pub const CACHE_CAPACITY: usize = 16_384;

impl DecisionCache {
    pub fn new(ttl: Duration, capacity: usize) -> DecisionCache {
        DecisionCache {
            ttl,
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The key of a join request.
    pub fn key(room: &str, cookie: Option<&str>, origin: Option<&str>) -> CacheKey {
        let mut h = Sha256::new();
        h.update((room.len() as u64).to_le_bytes());
        h.update(room.as_bytes());
        for field in [cookie, origin] {
            match field {
                Some(v) => {
                    h.update([1]);
                    h.update((v.len() as u64).to_le_bytes());
                    h.update(v.as_bytes());
                }
                None => h.update([0]),
            }
        }
        h.finalize().into()
    }

    /// The decision for `key`, if one is still fresh at `now`.
    pub fn get(&mut self, key: &CacheKey, now: Instant) -> Option<Verdict> {
        match self.entries.get(key) {
            Some((verdict, expires)) if now < *expires => Some(verdict.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `verdict` for `key` from `now`, if it is a back end's decision.
    pub fn insert(&mut self, key: CacheKey, verdict: &Verdict, now: Instant) {
        let decided = matches!(
            verdict,
            Ok(_) | Err(Refusal::BackendUnauthorized | Refusal::BackendForbidden)
        );
        if !decided {
            return;
        }
        let expires = now + self.ttl;
        let grows = !self.entries.contains_key(&key);
        while let Some(&(old, at)) = self.order.front() {
            let full = (grows && self.entries.len() >= self.capacity)
                || self.order.len() >= 2 * self.capacity;
            if at > now && !full {
                break;
            }
            self.order.pop_front();
            if self.entries.get(&old).is_some_and(|(_, e)| *e == at) {
                self.entries.remove(&old);
            }
        }
        self.entries.insert(key, (verdict.clone(), expires));
        self.order.push_back((key, expires));
    }

    /// Decisions held (some may have expired and not been swept yet).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Grant, Unavailable};

    fn admit() -> Verdict {
        Ok(Grant {
            user: Some("\"ann\"".into()),
            write: true,
        })
    }

    #[test]
    fn keys_separate_every_field() {
        let k = DecisionCache::key;
        assert_ne!(k("a", Some("b"), None), k("a", None, Some("b")));
        assert_ne!(k("ab", Some("c"), None), k("a", Some("bc"), None));
        assert_ne!(k("a", Some(""), None), k("a", None, None));
        assert_eq!(k("a", Some("b"), Some("c")), k("a", Some("b"), Some("c")));
    }

    #[test]
    fn decisions_expire_and_errors_are_not_kept() {
        let t0 = Instant::now();
        let mut c = DecisionCache::new(Duration::from_secs(5), 10);
        let k = DecisionCache::key("lobby", Some("s=1"), None);
        c.insert(k, &admit(), t0);
        assert_eq!(c.get(&k, t0 + Duration::from_secs(4)), Some(admit()));
        assert_eq!(c.get(&k, t0 + Duration::from_secs(5)), None);
        assert!(c.is_empty());
        c.insert(k, &Err(Refusal::BackendForbidden), t0);
        assert_eq!(c.get(&k, t0), Some(Err(Refusal::BackendForbidden)));
        let k2 = DecisionCache::key("lobby", Some("s=2"), None);
        c.insert(
            k2,
            &Err(Refusal::BackendUnavailable(Unavailable::Timeout)),
            t0,
        );
        assert_eq!(c.get(&k2, t0), None);
    }

    #[test]
    fn the_oldest_goes_when_full() {
        let t0 = Instant::now();
        let mut c = DecisionCache::new(Duration::from_secs(60), 3);
        let keys: Vec<CacheKey> = (0..5)
            .map(|i| DecisionCache::key(&format!("r{i}"), None, None))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            c.insert(*k, &admit(), t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&keys[0], t0), None);
        assert_eq!(c.get(&keys[1], t0), None);
        assert!(c.get(&keys[4], t0).is_some());
        // Replacing a key many times keeps both structures bounded.
        for i in 0..100 {
            c.insert(keys[4], &admit(), t0 + Duration::from_millis(10 + i));
        }
        assert!(
            c.len() <= 3 && c.order.len() <= 6,
            "{} {}",
            c.len(),
            c.order.len()
        );
        assert!(c.get(&keys[4], t0).is_some());
    }
}
