//! API tokens: generated at random, shown once, stored only as a SHA-256 hash.
//!
//! A plain hash (not a password KDF) is enough because tokens carry 256 random bits: there is
//! no dictionary to attack, and the check stays cheap on every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub const TOKEN_PREFIX: &str = "qb_";

pub fn generate() -> String {
    format!("{TOKEN_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()))
}

pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Remembers which user a token hash belongs to for a short while, so the hot path of a build
/// post does not need a database read. Entries expire so that a token replaced in the database
/// (the demo rotates its token on start) stops working within `TTL` even in a running server.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], (i64, Instant)>>,
}

const TTL: Duration = Duration::from_secs(30);
const MAX_ENTRIES: usize = 10_000;

impl TokenCache {
    pub fn get(&self, hash: &[u8; 32], now: Instant) -> Option<i64> {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.get(hash)
            .filter(|(_, at)| now.duration_since(*at) < TTL)
            .map(|(user, _)| *user)
    }

    pub fn put(&self, hash: [u8; 32], user: i64, now: Instant) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (_, at)| now.duration_since(*at) < TTL);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(hash, (user, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_stably() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == 67);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
    }

    #[test]
    fn cache_entries_expire() {
        let cache = TokenCache::default();
        let t0 = Instant::now();
        cache.put([1; 32], 9, t0);
        assert_eq!(cache.get(&[1; 32], t0), Some(9));
        assert_eq!(cache.get(&[1; 32], t0 + TTL), None);
    }
}
