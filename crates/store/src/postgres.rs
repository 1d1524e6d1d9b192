//! The PostgreSQL backend: one connection pool; tables live in the first schema on
//! the connection's `search_path`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool, Row};
use time::OffsetDateTime;

use crate::rows::{cert_from_row, mark_from_row, revoked_from_row, revoked_row, user_from_row};
use crate::{
    Arg, IssuedCert, IssuedFilter, NEXT_CRL_NUMBER, REVOCATION_MARK, Result, RevocationMark,
    RevokeOutcome, RevokedEntry, StoreError, User, already_revoked, count, found,
    is_unique_violation, list_issued_sql, map_err, migrations, to_secs,
};

/// Upper bound on connections to the server.
const MAX_CONNECTIONS: u32 = 16;
/// How long an operation waits for a pooled connection before giving up (503).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A store in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to the `postgres://` or `postgresql://` URL (sqlx syntax; no TLS in
    /// this build) and applies pending migrations.
    ///
    /// Every session runs with `synchronous_commit=on`, whatever the server default:
    /// a recorded issuance must survive a server crash.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(connect_options(url, &crate::PgOptions::default())?).await
    }

    /// Like [`PgStore::connect`], from parsed options (which are used as given).
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self> {
        Self::connect_with_policy(options, migrations::Migrate::Auto).await
    }

    /// Connects with `url` and the TLS and password settings of `opts`, changing the
    /// schema only as `opts.migrate` allows.
    pub async fn connect_opts(url: &str, opts: &crate::OpenOptions) -> Result<Self> {
        Self::connect_with_policy(connect_options(url, &opts.postgres)?, opts.migrate).await
    }

    async fn connect_with_policy(
        options: PgConnectOptions,
        policy: migrations::Migrate,
    ) -> Result<Self> {
        let pool = pool(options).await?;
        migrations::migrate_postgres(&pool, policy).await?;
        Ok(Self { pool })
    }
}

/// A connection pool; the first connection is made here, so that a server that
/// cannot be reached, refuses our credentials or whose certificate does not verify
/// is a start-up error.
async fn pool(options: PgConnectOptions) -> Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(map_err)
}

/// The schema's version and the migrations applied, without changing anything.
pub(crate) async fn schema_rows(
    url: &str,
    opts: &crate::PgOptions,
) -> Result<Vec<(i64, String, i64)>> {
    let pool = pool(connect_options(url, opts)?).await?;
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
         WHERE table_name = 'schema_version' AND table_schema = current_schema())",
    )
    .fetch_one(&pool)
    .await
    .map_err(map_err)?;
    let rows = if exists {
        sqlx::query(migrations::SELECT_APPLIED)
            .fetch_all(&pool)
            .await
            .map_err(map_err)?
            .iter()
            .map(crate::rows::applied_from_row)
            .collect::<Result<Vec<_>>>()?
    } else {
        Vec::new()
    };
    pool.close().await;
    Ok(rows)
}

/// Parses `url` and forces `synchronous_commit=on` and a 10 s `statement_timeout`, so a
/// hung database becomes a 503 rather than a request timeout (appended last, so they win over
/// any `options` in the URL).
fn connect_options(url: &str, extra: &crate::PgOptions) -> Result<PgConnectOptions> {
    // The error must not echo the URL, which may hold a password.
    let mut o = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("bad PostgreSQL URL: {e}")))?
        .options([("synchronous_commit", "on"), ("statement_timeout", "10s")]);
    if let Some(mode) = &extra.sslmode {
        let mode = sqlx::postgres::PgSslMode::from_str(mode).map_err(|_| {
            StoreError::Config(format!(
                "sslmode {mode:?}: one of disable, prefer, require, verify-ca, verify-full"
            ))
        })?;
        o = o.ssl_mode(mode);
    }
    if let Some(p) = &extra.sslrootcert {
        o = o.ssl_root_cert(p);
    }
    if let Some(p) = &extra.sslcert {
        o = o.ssl_client_cert(p);
    }
    if let Some(p) = &extra.sslkey {
        o = o.ssl_client_key(p);
    }
    if let Some(pw) = &extra.password {
        o = o.password(pw);
    }
    Ok(o)
}

/// Taken by every certificate INSERT for its key (`$1`, the SPKI hash), shared.
const LOCK_KEY_SHARED: &str = "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))";
/// Taken by a revocation for keyCompromise, exclusive: it waits for the INSERTs in
/// progress for that key and holds off new ones until it commits.
const LOCK_KEY: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

// The Store methods are shared (backend.rs); PostgreSQL sorts user names bytewise
// (COLLATE "C"), as SQLite does, whatever the database locale.
crate::backend::impl_store!(
    PgStore,
    reads = pool,
    writes = pool,
    users_order = "username COLLATE \"C\"",
    users_order_name = "name COLLATE \"C\"",
    begin_write = "BEGIN",
    lock_row = " FOR UPDATE",
    lock_key = Some(LOCK_KEY)
);

impl PgStore {
    /// Records one certificate in its own transaction (PostgreSQL groups
    /// concurrent commits itself), unless its key was reported compromised or the
    /// certificate it renews is revoked. A revocation for keyCompromise waits for
    /// the key lock taken here, and one of the parent waits for the `FOR SHARE`
    /// lock (or this waits for it and then sees the revocation), so neither can
    /// miss a certificate being recorded at the same moment.
    async fn insert_issued(&self, c: &IssuedCert) -> Result<()> {
        use crate::backend::{KEY_COMPROMISED, PARENT_STATE};
        let serial = c.serial.to_ascii_lowercase();
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query(LOCK_KEY_SHARED)
            .bind(&c.spki_sha256)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let compromised = sqlx::query(KEY_COMPROMISED)
            .bind(&c.spki_sha256)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
            .is_some();
        if compromised {
            return Err(StoreError::KeyCompromised);
        }
        if let Some(parent) = &c.parent_serial {
            let state: Option<Option<i64>> =
                sqlx::query_scalar(AssertSqlSafe(format!("{PARENT_STATE} FOR SHARE")))
                    .bind(parent)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
            if !matches!(state, Some(None)) {
                return Err(StoreError::ParentRevoked(parent.clone()));
            }
        }
        crate::backend::insert_issued_query!(c, &serial)
            .execute(&mut *tx)
            .await
            .map_err(|e| crate::backend::insert_issued_err(e, &serial))?;
        tx.commit().await.map_err(map_err)?;
        Ok(())
    }

    async fn find_user(&self, username: &str) -> Result<Option<User>> {
        sqlx::query(crate::backend::USER_BY_NAME)
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .map(|r| user_from_row(&r))
            .transpose()
    }

    async fn find_login_failures(&self, name: &str) -> Result<Option<crate::LoginFailures>> {
        sqlx::query(crate::backend::LOGIN_FAILURES)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .map(|r| crate::rows::login_failures_from_row(&r))
            .transpose()
    }

    async fn find_issued_with_account(
        &self,
        serial: &str,
    ) -> Result<Option<(IssuedCert, Option<crate::Account>)>> {
        let row = sqlx::query(crate::backend::CERT_WITH_ACCOUNT)
            .bind(serial.to_ascii_lowercase())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.map(|row| Ok((cert_from_row(&row)?, crate::rows::account_from_row(&row)?)))
            .transpose()
    }

    /// Closes the connection pools (pending operations finish first).
    async fn close_pools(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, PgConnection};

    use super::*;

    /// TLS settings beside the URL are checked; the password never shows.
    #[test]
    fn tls_settings_are_checked_and_the_password_is_masked() {
        let url = "postgres://u@127.0.0.1/db";
        let bad = crate::PgOptions {
            sslmode: Some("sometimes".into()),
            ..Default::default()
        };
        let e = connect_options(url, &bad).unwrap_err().to_string();
        assert!(e.contains("verify-full"), "{e}");
        let good = crate::PgOptions {
            sslmode: Some("verify-full".into()),
            password: Some("s3cret-pw".into()),
            ..Default::default()
        };
        assert!(connect_options(url, &good).is_ok());
        assert!(!format!("{good:?}").contains("s3cret-pw"));
    }

    /// A URL asking for asynchronous commit still gets synchronous sessions.
    #[tokio::test]
    async fn sessions_commit_synchronously() {
        let base = std::env::var("ONLINECA_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20synchronous_commit%3Doff");
        let options = connect_options(&url, &crate::PgOptions::default()).unwrap();
        let mut conn = match PgConnection::connect_with(&options).await {
            Ok(c) => c,
            Err(e) => {
                onlineca_testkit::skip(
                    "PostgreSQL",
                    &e.to_string(),
                    "run PostgreSQL at 127.0.0.1:5432 with a database `test` (trust auth), \
                     or set ONLINECA_TEST_PG_URL",
                );
                return;
            }
        };
        let v: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(v, "on");
    }
}
