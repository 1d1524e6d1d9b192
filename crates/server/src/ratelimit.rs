//! Per-client-address rate limiting of certificate requests: the contract's second
//! 429 ("the client sends too many requests"). Complements the per-username lockout,
//! which cannot see one address spraying passwords over many usernames.
//!
//! IPv6 clients are limited per /64: one subscriber or host usually holds a whole
//! /64, and could otherwise take a fresh bucket with every request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked before idle ones are swept, bounding memory.
const SWEEP_AT: usize = 10_000;

/// A token bucket per client address: `burst` requests at once, refilled at `rate`
/// per minute.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_minute` requests a minute with bursts of `burst`; `per_minute == 0` means
    /// no limit (the limiter is then not built at all: see the caller).
    pub fn new(per_minute: u32, burst: u32) -> Self {
        RateLimiter {
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `ip` (its /64, for IPv6) at `now`, or says how long until
    /// one is available.
    pub fn take(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let ip = client_key(ip);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= SWEEP_AT {
            // A bucket refilled to the brim is the same as no bucket.
            let full_after =
                Duration::from_secs_f64(self.burst / self.per_second.max(f64::MIN_POSITIVE));
            buckets.retain(|_, b| now.saturating_duration_since(b.at) < full_after);
        }
        let b = buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / self.per_second.max(f64::MIN_POSITIVE);
            Err(Duration::from_secs_f64(wait.min(86_400.0)))
        }
    }
}

/// The key a client is counted under: an IPv4 address as it is (also when written
/// IPv4-mapped), an IPv6 address cut to its /64.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Open connections per client (by [`client_key`]), capped: one address may not
/// take every connection slot of the server.
#[derive(Debug)]
pub struct ConnectionCounts {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    counts: std::sync::Arc<ConnectionCounts>,
    key: IpAddr,
}

impl ConnectionCounts {
    /// At most `cap` connections per client.
    pub fn new(cap: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(ConnectionCounts {
            cap,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a new connection from `ip`, or `None` if its client holds `cap` already.
    /// The table holds only clients with a connection open, so it is bounded by the
    /// server's connection limit.
    pub fn open(self: &std::sync::Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let key = client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.cap {
            if *n == 0 {
                open.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            counts: self.clone(),
            key,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_address() {
        let l = RateLimiter::new(60, 3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take(a, t0).is_ok());
        }
        let wait = l.take(a, t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another address has its own bucket.
        assert!(l.take(b, t0).is_ok());
        // One token a second comes back.
        assert!(l.take(a, t0 + Duration::from_millis(1100)).is_ok());
        assert!(l.take(a, t0 + Duration::from_millis(1200)).is_err());
    }

    #[test]
    fn ipv6_shares_a_bucket_per_64() {
        let l = RateLimiter::new(60, 2);
        let t0 = Instant::now();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(l.take(ip("2001:db8:1:2::1"), t0).is_ok());
        assert!(l.take(ip("2001:db8:1:2:ffff::9"), t0).is_ok());
        assert!(
            l.take(ip("2001:db8:1:2:abcd::"), t0).is_err(),
            "the same /64 is one client"
        );
        assert!(l.take(ip("2001:db8:1:3::1"), t0).is_ok(), "another /64");
        // IPv4, also IPv4-mapped, keeps one bucket per address.
        assert!(l.take(ip("192.0.2.7"), t0).is_ok());
        assert!(l.take(ip("::ffff:192.0.2.7"), t0).is_ok());
        assert!(l.take(ip("192.0.2.7"), t0).is_err());
        assert!(l.take(ip("192.0.2.8"), t0).is_ok());
    }

    #[test]
    fn connections_capped_per_client_and_given_back() {
        let c = ConnectionCounts::new(2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a1 = c.open(ip("127.0.0.1")).unwrap();
        let _a2 = c.open(ip("127.0.0.1")).unwrap();
        assert!(c.open(ip("127.0.0.1")).is_none(), "the third is refused");
        assert!(c.open(ip("127.0.0.2")).is_some(), "another client is not");
        let _v6 = c.open(ip("2001:db8::1")).unwrap();
        let _v6b = c.open(ip("2001:db8::2")).unwrap();
        assert!(c.open(ip("2001:db8::3")).is_none(), "one /64 is one client");
        drop(a1);
        assert!(
            c.open(ip("127.0.0.1")).is_some(),
            "a closed one gives its slot back"
        );
    }
}
