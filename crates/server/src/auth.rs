//! Turning HTTP Basic credentials into a [`Principal`]: the password check, with a
//! per-username lockout, one check in flight per username, a cache of verified
//! credentials, and argon2 on a bounded pool of workers.

use std::time::Instant;

use axum::http::HeaderMap;
use base64::Engine;
use onlineca_core::Principal;
use onlineca_core::subject::validate_username;
use onlineca_store::{Store, User};
use time::OffsetDateTime;

use crate::config::AuthSection;
use crate::credential_cache::CredentialCache;
use crate::error::ApiError;
use crate::lockout::Lockout;
use crate::password_pool::{PasswordPool, PoolError};
use crate::user_gate::UserGates;

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
    // Refused before anything keys on it (the lockout, the lookup, the log): no
    // certificate can carry a longer name.
    if username.chars().count() > onlineca_core::subject::MAX_USERNAME_CHARS {
        return Err(ApiError::MalformedCredentials(
            "the username is longer than 64 characters",
        ));
    }
    Ok(Some(BasicCredentials {
        username: username.to_string(),
        password: password.to_string(),
    }))
}

/// Everything a password check uses, built once at start-up.
#[derive(Debug)]
pub struct PasswordCheck {
    /// Failed-password bookkeeping, in the store.
    pub lockout: Lockout,
    /// Credentials verified recently.
    pub cache: CredentialCache,
    gates: UserGates,
    pool: PasswordPool,
    /// `[ldap]`, if configured: the source for names without a local password.
    pub directory: Option<crate::ldap::Directory>,
    /// Where the user lookup's latency and failures are counted.
    pub store_metrics: crate::metrics::StoreMetrics,
}

impl PasswordCheck {
    /// From the `[auth]` settings; starts the argon2 workers.
    pub fn new(auth: &AuthSection) -> std::io::Result<Self> {
        Ok(PasswordCheck {
            lockout: Lockout::new(auth.max_failures, auth.lockout),
            cache: CredentialCache::new(auth.credential_cache, auth.credential_cache_size),
            gates: UserGates::new(),
            pool: PasswordPool::start(auth.password_threads, auth.password_queue)?,
            directory: None,
            store_metrics: Default::default(),
        })
    }

    /// The same check, with the directory as a second source.
    pub fn with_directory(mut self, directory: Option<crate::ldap::Directory>) -> Self {
        self.directory = directory;
        self
    }

    /// The gauges of argon2 verifications in flight and queued.
    pub fn pool_gauges(
        &self,
    ) -> (
        prometheus_client::metrics::gauge::Gauge,
        prometheus_client::metrics::gauge::Gauge,
    ) {
        self.pool.gauges()
    }

    /// How many argon2 verifications were made (cache hits make none).
    pub fn verifications(&self) -> u64 {
        self.pool.verifications()
    }

    /// Checks a username and password against the store. Unknown users cost the
    /// same argon2 verification as wrong passwords; credentials verified within
    /// `[auth] credential_cache` against the hash the store still holds cost none.
    pub async fn check(
        &self,
        store: &dyn Store,
        creds: BasicCredentials,
        now: OffsetDateTime,
    ) -> Result<Principal, ApiError> {
        // Keyed like the store's names, ignoring ASCII case: "Bob" and "bob" are one
        // user and share one count.
        let name = creds.username.to_ascii_lowercase();
        let recorded = self.lockout.check(store, &name, now).await?;
        // A name the subject could never carry cannot be in the store: skip the
        // lookup, but not the hashing time. The row is read on every request, so a
        // changed password, a disabled or removed account counts at once, whichever
        // process changed it.
        let user = if validate_username(&creds.username).is_ok() {
            self.store_metrics
                .time("get_user", store.get_user(&creds.username))
                .await?
        } else {
            None
        };
        if let Some(u) = &user
            && self
                .cache
                .hit(&name, &creds.password, &u.password_hash, Instant::now())
        {
            if recorded.is_some() {
                store.clear_login_failures(&name).await?;
            }
            return accept(u);
        }
        let _turn = self.gates.enter(&name).await;
        // Counted as a failure now, before the slow hash: see `Lockout::attempt`.
        let attempt = self.lockout.attempt(store, &name, now).await?;
        // The check this one waited for may have verified the same credentials.
        if let Some(u) = &user
            && self
                .cache
                .hit(&name, &creds.password, &u.password_hash, Instant::now())
        {
            attempt.succeeded().await?;
            return accept(u);
        }
        // Names without a local password go to the directory (a validated name
        // only: the directory never sees what the subject could not carry).
        if let Some(dir) = &self.directory
            && user
                .as_ref()
                .map_or(validate_username(&creds.username).is_ok(), |u| {
                    u.password_hash == crate::ldap::LDAP_MARKER
                })
        {
            let user = user.as_ref();
            return crate::ldap::check(self, dir, store, &name, &creds, user, attempt, now).await;
        }
        if user.is_some() {
            self.cache.missed();
        }
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let ok = match self.pool.verify(creds.password.clone(), stored).await {
            Ok(ok) => ok,
            Err(e) => {
                attempt.abandoned().await;
                return Err(match e {
                    PoolError::Busy => ApiError::Busy,
                    PoolError::Stopped => ApiError::Internal(e.to_string()),
                });
            }
        };
        match &user {
            Some(u) if ok => {
                attempt.succeeded().await?;
                upgrade_imported(store, u, &creds.password, now).await;
                self.cache
                    .insert(&name, &creds.password, &u.password_hash, Instant::now());
                accept(u)
            }
            _ => {
                attempt.failed();
                Err(ApiError::BadCredentials)
            }
        }
    }
}

/// Replaces a hash imported from an htpasswd file by argon2id, now that the right
/// password is known: once per user, transparently. A failure leaves the old hash
/// (it still verifies) and is logged; the login stands.
async fn upgrade_imported(store: &dyn Store, u: &User, password: &str, now: OffsetDateTime) {
    let scheme = onlineca_core::password::Scheme::of(&u.password_hash);
    if !scheme.is_imported() {
        return;
    }
    let pw = password.to_string();
    let hashed = tokio::task::spawn_blocking(move || onlineca_core::password::hash(&pw)).await;
    let outcome = match hashed {
        Ok(Ok(new)) => store
            .upgrade_password(&u.username, &u.password_hash, &new, now)
            .await
            .map_err(|e| e.to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match outcome {
        Ok(true) => tracing::info!(
            user = %u.username,
            from = scheme.name(),
            "imported password hash replaced by argon2id"
        ),
        // Changed meanwhile (the operator set a password): theirs stands.
        Ok(false) => {}
        Err(e) => tracing::warn!(
            user = %u.username,
            error = %e,
            "could not replace an imported password hash; it stays in use"
        ),
    }
}

/// The verdict for a user whose password was right.
fn accept(u: &User) -> Result<Principal, ApiError> {
    if u.disabled {
        Err(ApiError::UserDisabled)
    } else if u.password_hash == crate::ldap::LDAP_MARKER {
        // A cached directory password: still the directory's method.
        Ok(Principal::ldap(u.username.clone(), u.account_id.clone()))
    } else {
        Ok(Principal::password(u.username.clone()).with_account(u.account_id.clone()))
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

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn creds(user: &str, pw: &str) -> BasicCredentials {
        BasicCredentials {
            username: user.into(),
            password: pw.into(),
        }
    }

    #[tokio::test]
    async fn cache_skips_argon2_for_repeat_credentials_only() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = onlineca_store::open(&url).await.unwrap();
        let t = time::OffsetDateTime::now_utc();
        store
            .add_user(
                &User::new("Alice", onlineca_core::password::hash("right").unwrap(), t).unwrap(),
            )
            .await
            .unwrap();
        let auth = AuthSection {
            max_failures: 3,
            ..AuthSection::default()
        };
        let check = PasswordCheck::new(&auth).unwrap();
        let store = store.as_ref();

        let p = check
            .check(store, creds("alice", "right"), now())
            .await
            .unwrap();
        assert_eq!(p.username, "Alice", "the stored spelling");
        assert_eq!(check.verifications(), 1);
        for user in ["alice", "ALICE"] {
            check
                .check(store, creds(user, "right"), now())
                .await
                .unwrap();
        }
        assert_eq!(check.verifications(), 1, "repeat credentials hit the cache");
        assert_eq!(check.cache.len(), 1);

        // Unknown users and wrong passwords: a full check each, never cached.
        for _ in 0..2 {
            let e = check
                .check(store, creds("ghost", "x"), now())
                .await
                .unwrap_err();
            assert!(matches!(e, ApiError::BadCredentials), "{e}");
        }
        assert_eq!(check.verifications(), 3);
        assert_eq!(check.cache.len(), 1);
        for _ in 0..3 {
            let e = check
                .check(store, creds("alice", "wrong"), now())
                .await
                .unwrap_err();
            assert!(matches!(e, ApiError::BadCredentials), "{e}");
        }
        assert_eq!(check.verifications(), 6);
        // Three wrong ones lock the name, cached password or not.
        let e = check
            .check(store, creds("alice", "right"), now())
            .await
            .unwrap_err();
        assert!(matches!(e, ApiError::LockedOut(_)), "{e}");

        // With the cache off, every check is an argon2 verification.
        let off = PasswordCheck::new(&AuthSection {
            credential_cache: std::time::Duration::ZERO,
            ..AuthSection::default()
        })
        .unwrap();
        for _ in 0..2 {
            off.check(store, creds("alice", "right"), now())
                .await
                .unwrap();
        }
        assert_eq!(off.verifications(), 2);
        assert!(off.cache.is_empty());
    }

    #[test]
    fn basic_errors() {
        assert!(basic_credentials(&HeaderMap::new()).unwrap().is_none());
        assert!(basic_credentials(&headers("Bearer abc")).unwrap().is_none());
        assert!(basic_credentials(&headers("Basic !!!")).is_err());
        // "nocolon"
        assert!(basic_credentials(&headers("Basic bm9jb2xvbg==")).is_err());
        let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
        let long = |n| headers(&format!("Basic {}", b64(format!("{}:pw", "a".repeat(n)))));
        assert!(basic_credentials(&long(64)).unwrap().is_some());
        assert!(matches!(
            basic_credentials(&long(65)),
            Err(ApiError::MalformedCredentials(_))
        ));
    }
}
