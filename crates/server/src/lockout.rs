//! Failed-password bookkeeping per username, kept in the store: every instance
//! sharing it counts the same failures, so N instances behind a load balancer give
//! an attacker no more guesses than one. After `max_failures` wrong passwords a name
//! is refused for a while. Kept for existing and unknown names alike, so that a
//! lockout reveals nothing about which names exist.

use std::sync::atomic::{AtomicU64, Ordering};

use onlineca_store::{LockoutPolicy, LoginAttempt, LoginFailures, Store};
use time::OffsetDateTime;

use crate::error::ApiError;

/// The lockout policy, applied through the store.
#[derive(Debug)]
pub struct Lockout {
    policy: LockoutPolicy,
    /// Attempts counted by this process, to sweep old records now and then.
    counted: AtomicU64,
    /// Where the lockout's store calls (made on every password request) are timed.
    pub store_metrics: crate::metrics::StoreMetrics,
}

/// Counted attempts between two sweeps of failures too old to count, bounding the
/// table under a spray of made-up names (whose rate the password workers bound).
const SWEEP_EVERY: u64 = 1024;

impl Lockout {
    /// After `max_failures` failures, a username is refused for `period` after its
    /// last failure.
    pub fn new(max_failures: u32, period: std::time::Duration) -> Self {
        Lockout {
            policy: LockoutPolicy {
                max_failures,
                period: time::Duration::try_from(period).unwrap_or(time::Duration::MAX),
            },
            counted: AtomicU64::new(0),
            store_metrics: Default::default(),
        }
    }

    /// The policy, for listing who is locked.
    pub fn policy(&self) -> &LockoutPolicy {
        &self.policy
    }

    /// Refuses `name` (lower case) if it is locked out at `now`, without counting
    /// an attempt: a cheap refusal before any other work. Otherwise returns the
    /// failures recorded, if any (a success must clear them).
    pub async fn check(
        &self,
        store: &dyn Store,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<Option<LoginFailures>, ApiError> {
        let recorded = self
            .store_metrics
            .time("login_failures", store.login_failures(name))
            .await?;
        if let Some(until) = recorded.and_then(|f| f.locked_until(&self.policy, now)) {
            return Err(locked(until, now));
        }
        Ok(recorded)
    }

    /// Starts a password check for `name`: refused if it is locked out, else the
    /// attempt counts as a failure *now*, before the slow hash, so that concurrent
    /// guesses (at any instance) cannot all pass the check before any of them is
    /// recorded. The returned [`Attempt`] settles it. An attempt abandoned midway
    /// (the client went away during the hash) stays counted.
    pub async fn attempt<'a>(
        &self,
        store: &'a dyn Store,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<Attempt<'a>, ApiError> {
        if let LoginAttempt::Locked(until) = self
            .store_metrics
            .time(
                "count_login_attempt",
                store.count_login_attempt(name, now, &self.policy),
            )
            .await?
        {
            return Err(locked(until, now));
        }
        if self.counted.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            // Failures older than the period count for nothing: forget them.
            if let Err(e) = store.sweep_login_failures(now - self.policy.period).await {
                tracing::warn!(error = %e, "could not sweep old failed-password records");
            }
        }
        Ok(Attempt {
            store,
            name: name.to_string(),
        })
    }
}

/// The refusal of a name locked until `until`.
fn locked(until: OffsetDateTime, now: OffsetDateTime) -> ApiError {
    ApiError::LockedOut((until - now).try_into().unwrap_or_default())
}

/// A password check in progress, counted as a failure until it succeeds.
#[must_use = "settle the attempt: succeeded, failed or abandoned"]
pub struct Attempt<'a> {
    store: &'a dyn Store,
    name: String,
}

impl Attempt<'_> {
    /// The password was right: the username's failures are forgotten.
    pub async fn succeeded(self) -> Result<(), ApiError> {
        self.store.clear_login_failures(&self.name).await?;
        Ok(())
    }

    /// The password was wrong: the failure counted at the start stands.
    pub fn failed(self) {}

    /// No verdict (no worker could take the check): not the user's failure.
    pub async fn abandoned(self) {
        if let Err(e) = self.store.forgive_login_attempt(&self.name).await {
            tracing::warn!(error = %e, "could not take back an unjudged password attempt");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + s).unwrap()
    }

    async fn store() -> std::sync::Arc<dyn Store> {
        onlineca_store::open("sqlite::memory:").await.unwrap()
    }

    #[tokio::test]
    async fn concurrent_attempts_are_counted_before_the_verdict() {
        let s = store().await;
        let s = s.as_ref();
        let l = Lockout::new(3, std::time::Duration::from_secs(60));
        // Three checks in flight at once: the fourth is refused before any verdict.
        let a = l.attempt(s, "eve", at(0)).await.unwrap();
        let b = l.attempt(s, "eve", at(0)).await.unwrap();
        let c = l.attempt(s, "eve", at(0)).await.unwrap();
        assert!(l.attempt(s, "eve", at(0)).await.is_err());
        assert!(l.check(s, "eve", at(0)).await.is_err());
        // A check that ended without a verdict gives its count back.
        c.abandoned().await;
        let c = l.attempt(s, "eve", at(0)).await.unwrap();
        a.failed();
        b.failed();
        // A success forgets everything.
        c.succeeded().await.unwrap();
        assert_eq!(l.check(s, "eve", at(0)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn lockout_after_max_failures_then_expires() {
        let s = store().await;
        let s = s.as_ref();
        let l = Lockout::new(3, std::time::Duration::from_secs(60));
        for _ in 0..3 {
            l.attempt(s, "bob", at(0)).await.unwrap().failed();
        }
        let Err(ApiError::LockedOut(wait)) = l.attempt(s, "bob", at(10)).await else {
            panic!("not locked")
        };
        assert_eq!(wait, std::time::Duration::from_secs(50));
        assert!(
            l.attempt(s, "alice", at(10)).await.is_ok(),
            "other names are not affected"
        );
        // After the period, bob may try again, from a count of one.
        let a = l.attempt(s, "bob", at(61)).await.unwrap();
        a.failed();
        let f = l.check(s, "bob", at(61)).await.unwrap().unwrap();
        assert_eq!((f.failures, f.last), (1, at(61)));
        // Old records are swept, so that made-up names do not pile up.
        assert_eq!(s.sweep_login_failures(at(61)).await.unwrap(), 1, "alice");
    }

    #[tokio::test]
    async fn two_instances_share_one_count() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("l.db").display());
        let one = onlineca_store::open(&url).await.unwrap();
        let two = onlineca_store::open(&url).await.unwrap();
        let (l1, l2) = (
            Lockout::new(3, std::time::Duration::from_secs(60)),
            Lockout::new(3, std::time::Duration::from_secs(60)),
        );
        l1.attempt(one.as_ref(), "eve", at(0))
            .await
            .unwrap()
            .failed();
        l2.attempt(two.as_ref(), "eve", at(1))
            .await
            .unwrap()
            .failed();
        l1.attempt(one.as_ref(), "eve", at(2))
            .await
            .unwrap()
            .failed();
        assert!(l2.attempt(two.as_ref(), "eve", at(3)).await.is_err());
        // The operator's unlock, from anywhere.
        assert!(one.clear_login_failures("eve").await.unwrap());
        assert!(l2.attempt(two.as_ref(), "eve", at(3)).await.is_ok());
    }
}
