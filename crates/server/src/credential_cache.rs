//! Verified credentials kept for a while (the idea of Apache's `mod_authn_socache`),
//! so that a user who logs in again and again with the same password costs one
//! argon2 verification per `ttl`, not one per request.
//!
//! What is kept is a keyed hash (HMAC-SHA256 under a random per-process key) of the
//! username, the password *and the stored password hash it was verified against*:
//! never the password, and nothing an attacker who reads the process memory could
//! test guesses against offline without the key. An entry matches only the same
//! credentials checked against the same stored hash, so a changed password (a new
//! hash in the store, read on every request) misses at once, in every instance that
//! shares the store. Only successes are kept; the table is bounded.

use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// Verified credentials, one entry per username.
pub struct CredentialCache {
    ttl: Duration,
    capacity: usize,
    key: hmac::Key,
    entries: Mutex<HashMap<String, Entry>>,
    /// For the metrics: checks answered here, and checks of a known user that
    /// went on to argon2.
    hits: Counter,
    misses: Counter,
}

impl std::fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialCache")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

struct Entry {
    tag: hmac::Tag,
    verified_at: Instant,
}

impl CredentialCache {
    /// A cache keeping each verified credential for `ttl` (zero: nothing is kept),
    /// at most `capacity` usernames at once. The key is fresh random bytes.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        let mut key = [0u8; 32];
        // Without randomness the process cannot sign certificates either; a cache
        // under an all-zero key would still only ever match verified credentials.
        let _ = SystemRandom::new().fill(&mut key);
        CredentialCache {
            ttl,
            capacity,
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            entries: Mutex::new(HashMap::new()),
            hits: Counter::default(),
            misses: Counter::default(),
        }
    }

    /// Whether caching is on.
    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.capacity > 0
    }

    /// Whether `password` was verified for `username` (the canonical, lower-case
    /// name) against `stored_hash` within the last `ttl` before `now`.
    pub fn hit(&self, username: &str, password: &str, stored_hash: &str, now: Instant) -> bool {
        if !self.enabled() {
            return false;
        }
        let tag = self.tag(username, password, stored_hash);
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let hit = entries.get(username).is_some_and(|e| {
            now.saturating_duration_since(e.verified_at) < self.ttl
                && bool::from(e.tag.as_ref().ct_eq(tag.as_ref()))
        });
        if hit {
            self.hits.inc();
        }
        hit
    }

    /// Counts a password check of a known user that the cache could not answer
    /// (called once per check, where it goes on to argon2).
    pub fn missed(&self) {
        if self.enabled() {
            self.misses.inc();
        }
    }

    /// The hit and miss counters, for the metrics registry.
    pub fn counters(&self) -> (Counter, Counter) {
        (self.hits.clone(), self.misses.clone())
    }

    /// Records that `password` was just verified for `username` against
    /// `stored_hash`. When the table is full, expired entries go first, then the
    /// oldest one.
    pub fn insert(&self, username: &str, password: &str, stored_hash: &str, now: Instant) {
        if !self.enabled() {
            return;
        }
        let tag = self.tag(username, password, stored_hash);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(username) {
            let ttl = self.ttl;
            entries.retain(|_, e| now.saturating_duration_since(e.verified_at) < ttl);
            if entries.len() >= self.capacity
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.verified_at)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            username.to_string(),
            Entry {
                tag,
                verified_at: now,
            },
        );
    }

    /// How many usernames are kept.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tag binding the three strings, each length-prefixed so that no two
    /// different triples share an input.
    fn tag(&self, username: &str, password: &str, stored_hash: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [username, password, stored_hash] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        ctx.sign()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
    const H2: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdDI$aGFzaDI";

    #[test]
    fn hits_only_the_same_credentials_and_hash_while_fresh() {
        let c = CredentialCache::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        assert!(!c.hit("alice", "pw", H1, t0));
        c.insert("alice", "pw", H1, t0);
        assert!(c.hit("alice", "pw", H1, t0 + Duration::from_secs(59)));
        assert!(!c.hit("alice", "pw2", H1, t0), "another password");
        assert!(!c.hit("alice", "pw", H2, t0), "the stored hash changed");
        assert!(!c.hit("bob", "pw", H1, t0), "another user");
        assert!(
            !c.hit("alice", "pw", H1, t0 + Duration::from_secs(60)),
            "expired"
        );
    }

    #[test]
    fn length_prefixes_keep_fields_apart() {
        let c = CredentialCache::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        c.insert("ab", "c", H1, t0);
        assert!(!c.hit("a", "bc", H1, t0));
    }

    #[test]
    fn bounded_and_off() {
        let c = CredentialCache::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            c.insert(name, "pw", H1, t0 + Duration::from_secs(i as u64));
        }
        assert_eq!(c.len(), 3);
        // The oldest went first.
        let t = t0 + Duration::from_secs(10);
        assert!(!c.hit("a", "pw", H1, t) && !c.hit("b", "pw", H1, t));
        assert!(c.hit("e", "pw", H1, t));

        let off = CredentialCache::new(Duration::ZERO, 3);
        off.insert("a", "pw", H1, t0);
        assert!(off.is_empty() && !off.hit("a", "pw", H1, t0));
    }
}
