//! Turning request credentials into a [`Principal`]: HTTP Basic passwords, with a
//! per-username lockout after repeated failures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use base64::Engine;
use onlineca_core::{Principal, password};
use onlineca_store::Store;

use crate::error::ApiError;

/// Credentials from an `Authorization: Basic` header.
pub struct BasicCredentials {
    /// Everything before the first `:` (RFC 7617).
    pub username: String,
    /// Everything after it.
    pub password: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Reads the Basic credentials of a request; `Ok(None)` when there are none.
pub fn basic_credentials(headers: &HeaderMap) -> Result<Option<BasicCredentials>, ApiError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::MalformedCredentials("Authorization header is not ASCII"))?;
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| ApiError::MalformedCredentials("not valid base64"))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| ApiError::MalformedCredentials("not valid UTF-8"))?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or(ApiError::MalformedCredentials(
            "no ':' between username and password",
        ))?;
    Ok(Some(BasicCredentials {
        username: username.to_string(),
        password: password.to_string(),
    }))
}

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

/// Checks a username and password against the store. The argon2 work runs on the
/// blocking pool; unknown users cost the same time as wrong passwords.
pub async fn password(
    store: &Arc<dyn Store>,
    lockout: &Lockout,
    creds: BasicCredentials,
) -> Result<Principal, ApiError> {
    // Keyed like the store's names, ignoring ASCII case: "Bob" and "bob" are one
    // user and share one count.
    let attempt = lockout
        .attempt(&creds.username.to_ascii_lowercase(), Instant::now())
        .map_err(ApiError::LockedOut)?;
    // A name the subject could never carry cannot be in the store: skip the lookup,
    // but not the hashing time.
    let user = if onlineca_core::subject::validate_username(&creds.username).is_ok() {
        store.get_user(&creds.username).await?
    } else {
        None
    };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let given = creds.password;
    let ok = tokio::task::spawn_blocking(move || match stored {
        Some(hash) => password::verify(&given, &hash),
        None => {
            password::verify_dummy(&given);
            false
        }
    })
    .await
    .map_err(|e| ApiError::Internal(format!("password check task failed: {e}")))?;
    match user {
        Some(u) if ok => {
            attempt.succeeded();
            if u.disabled {
                return Err(ApiError::UserDisabled);
            }
            Ok(Principal::password(u.username))
        }
        _ => {
            attempt.failed();
            Err(ApiError::BadCredentials)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn basic_splits_at_first_colon() {
        // "testuser:chan:ge me"
        let h = headers("Basic dGVzdHVzZXI6Y2hhbjpnZSBtZQ==");
        let c = basic_credentials(&h).unwrap().unwrap();
        assert_eq!(c.username, "testuser");
        assert_eq!(c.password, "chan:ge me");
        assert!(
            !format!("{c:?}").contains("chan"),
            "Debug must not show the password"
        );
    }

    #[test]
    fn basic_errors() {
        assert!(basic_credentials(&HeaderMap::new()).unwrap().is_none());
        assert!(basic_credentials(&headers("Bearer abc")).unwrap().is_none());
        assert!(basic_credentials(&headers("Basic !!!")).is_err());
        // "nocolon"
        assert!(basic_credentials(&headers("Basic bm9jb2xvbg==")).is_err());
    }

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
