//! Failed-password bookkeeping per username: after `max_failures` wrong passwords a
//! name is refused for a while. Kept for existing and unknown names alike, so that a
//! lockout reveals nothing about which names exist.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed-password bookkeeping, per username (existing or not, so that a lockout
/// reveals nothing about which names exist).
#[derive(Debug)]
pub struct Lockout {
    max_failures: u32,
    period: Duration,
    entries: Mutex<HashMap<String, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Entries kept before stale ones are swept, bounding memory under a spray attack.
const SWEEP_AT: usize = 10_000;

impl Lockout {
    /// After `max_failures` failures, a username is refused for `period` after its
    /// last failure.
    pub fn new(max_failures: u32, period: Duration) -> Self {
        Lockout {
            max_failures,
            period,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a password check for `username`: refused if it is locked out, else the
    /// attempt counts as a failure *now*, before the slow hash, so that concurrent
    /// guesses cannot all pass the check before any of them is recorded. The
    /// returned guard settles it: [`Attempt::succeeded`] forgets the failures; a
    /// guard dropped unsettled (the check could not be made) takes the count back.
    pub fn attempt<'a>(&'a self, username: &str, now: Instant) -> Result<Attempt<'a>, Duration> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = entries.get(username) {
            let until = f.last + self.period;
            if f.count >= self.max_failures && until > now {
                return Err(until - now);
            }
        }
        if entries.len() >= SWEEP_AT {
            let period = self.period;
            entries.retain(|_, f| f.last + period > now);
        }
        let e = entries.entry(username.to_string()).or_insert(Failures {
            count: 0,
            last: now,
        });
        // Failures older than the period no longer count.
        if e.last + self.period <= now {
            e.count = 0;
        }
        e.count += 1;
        e.last = now;
        Ok(Attempt {
            lockout: self,
            username: username.to_string(),
            settled: false,
        })
    }

    /// Whether `username` is locked out at `now` (and for how much longer), without
    /// counting an attempt: a cheap refusal before any other work.
    pub fn check(&self, username: &str, now: Instant) -> Result<(), Duration> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(username) {
            Some(f) if f.count >= self.max_failures && f.last + self.period > now => {
                Err(f.last + self.period - now)
            }
            _ => Ok(()),
        }
    }

    /// Forgets the failures of a user who just logged in.
    pub fn succeed(&self, username: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(username);
    }
}

/// A password check in progress, counted as a failure until it succeeds.
pub struct Attempt<'a> {
    lockout: &'a Lockout,
    username: String,
    settled: bool,
}

impl Attempt<'_> {
    /// The password was right: the username's failures are forgotten.
    pub fn succeeded(mut self) {
        self.settled = true;
        self.lockout.succeed(&self.username);
    }

    /// The password was wrong: the failure counted at the start stands.
    pub fn failed(mut self) {
        self.settled = true;
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // No verdict (the store or the hashing task failed): not the user's failure.
        let mut entries = self
            .lockout
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(f) = entries.get_mut(&self.username) {
            f.count = f.count.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_attempts_are_counted_before_the_verdict() {
        let l = Lockout::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        // Three checks in flight at once: the fourth is refused before any verdict.
        let a = l.attempt("eve", t0).unwrap();
        let b = l.attempt("eve", t0).unwrap();
        let c = l.attempt("eve", t0).unwrap();
        assert!(l.attempt("eve", t0).is_err());
        // A check that ended without a verdict gives its count back.
        drop(c);
        let c = l.attempt("eve", t0).unwrap();
        a.failed();
        b.failed();
        // A success forgets everything.
        c.succeeded();
        assert!(l.attempt("eve", t0).is_ok());
    }

    #[test]
    fn lockout_after_max_failures_then_expires() {
        let l = Lockout::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            l.attempt("bob", t0).unwrap().failed();
        }
        let wait = l.attempt("bob", t0).err().unwrap();
        assert_eq!(wait, Duration::from_secs(60));
        assert!(
            l.attempt("alice", t0).is_ok(),
            "other names are not affected"
        );
        // After the period, bob may try again; a success forgets his failures.
        l.attempt("bob", t0 + Duration::from_secs(61))
            .unwrap()
            .succeeded();
        assert!(l.attempt("bob", t0).is_ok());
    }
}
