//! The PostgreSQL backend: one connection pool; tables live in the first schema on
//! the connection's `search_path`.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};
use time::OffsetDateTime;

use crate::rows::{cert_from_row, user_from_row};
use crate::{
    IssuedCert, IssuedFilter, Result, Store, StoreError, User, found, is_unique_violation,
    limit_of, map_err, migrations, to_secs,
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
        Self::connect_with(connect_options(url)?).await
    }

    /// Like [`PgStore::connect`], from parsed options (which are used as given).
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(map_err)?;
        migrations::migrate_postgres(&pool).await?;
        Ok(Self { pool })
    }
}

/// Parses `url` and forces `synchronous_commit=on` (appended last, so it wins over
/// any `options` in the URL).
fn connect_options(url: &str) -> Result<PgConnectOptions> {
    // The error must not echo the URL, which may hold a password.
    Ok(PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("bad PostgreSQL URL: {e}")))?
        .options([("synchronous_commit", "on")]))
}

#[async_trait]
impl Store for PgStore {
    async fn add_user(&self, u: &User) -> Result<()> {
        sqlx::query(concat!(
            "INSERT INTO users (",
            user_columns!(),
            ") VALUES ($1, $2, $3, $4, $5)"
        ))
        .bind(&u.username)
        .bind(&u.password_hash)
        .bind(u.disabled)
        .bind(to_secs(u.created_at))
        .bind(to_secs(u.updated_at))
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::UserExists(u.username.clone())
            } else {
                map_err(e)
            }
        })?;
        Ok(())
    }

    async fn set_password(&self, username: &str, hash: &str, now: OffsetDateTime) -> Result<()> {
        let r =
            sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE username = $3")
                .bind(hash)
                .bind(to_secs(now))
                .bind(username)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
        found(r.rows_affected(), username)
    }

    async fn set_disabled(
        &self,
        username: &str,
        disabled: bool,
        now: OffsetDateTime,
    ) -> Result<()> {
        let r = sqlx::query("UPDATE users SET disabled = $1, updated_at = $2 WHERE username = $3")
            .bind(disabled)
            .bind(to_secs(now))
            .bind(username)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        found(r.rows_affected(), username)
    }

    async fn remove_user(&self, username: &str) -> Result<()> {
        let r = sqlx::query("DELETE FROM users WHERE username = $1")
            .bind(username)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        found(r.rows_affected(), username)
    }

    async fn get_user(&self, username: &str) -> Result<Option<User>> {
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?
        .map(|r| user_from_row(&r))
        .transpose()
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        // COLLATE "C": bytewise order, the same as SQLite, whatever the database locale.
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY username COLLATE \"C\""
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?
        .iter()
        .map(user_from_row)
        .collect()
    }

    async fn record_issued(&self, c: &IssuedCert) -> Result<()> {
        let serial = c.serial.to_ascii_lowercase();
        // Autocommit with synchronous_commit=on: flushed to the WAL before this returns.
        sqlx::query(concat!(
            "INSERT INTO certificates (",
            cert_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(&serial)
        .bind(&c.username)
        .bind(&c.subject)
        .bind(&c.auth_method)
        .bind(&c.retriever)
        .bind(&c.spki_sha256)
        .bind(to_secs(c.not_before))
        .bind(to_secs(c.not_after))
        .bind(to_secs(c.issued_at))
        .bind(&c.client_addr)
        .bind(&c.der)
        .bind(c.revoked_at.map(to_secs))
        .bind(c.revocation_reason)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::DuplicateSerial(serial.clone())
            } else {
                map_err(e)
            }
        })?;
        Ok(())
    }

    async fn get_issued(&self, serial: &str) -> Result<Option<IssuedCert>> {
        sqlx::query(concat!(
            "SELECT ",
            cert_columns!(),
            " FROM certificates WHERE serial = $1"
        ))
        .bind(serial.to_ascii_lowercase())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?
        .map(|r| cert_from_row(&r))
        .transpose()
    }

    async fn list_issued(&self, filter: &IssuedFilter) -> Result<Vec<IssuedCert>> {
        // One static statement per filter shape, so each gets a plan that uses the
        // right index (a `$1 IS NULL OR ...` condition would defeat it).
        let query = match (&filter.username, filter.since) {
            (None, None) => sqlx::query(concat!(
                "SELECT ",
                cert_columns!(),
                " FROM certificates ORDER BY issued_at DESC, serial DESC LIMIT $1"
            )),
            (Some(u), None) => sqlx::query(concat!(
                "SELECT ",
                cert_columns!(),
                " FROM certificates WHERE username = $1",
                " ORDER BY issued_at DESC, serial DESC LIMIT $2"
            ))
            .bind(u),
            (None, Some(since)) => sqlx::query(concat!(
                "SELECT ",
                cert_columns!(),
                " FROM certificates WHERE issued_at >= $1",
                " ORDER BY issued_at DESC, serial DESC LIMIT $2"
            ))
            .bind(to_secs(since)),
            (Some(u), Some(since)) => sqlx::query(concat!(
                "SELECT ",
                cert_columns!(),
                " FROM certificates WHERE username = $1 AND issued_at >= $2",
                " ORDER BY issued_at DESC, serial DESC LIMIT $3"
            ))
            .bind(u)
            .bind(to_secs(since)),
        };
        query
            .bind(limit_of(filter))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?
            .iter()
            .map(cert_from_row)
            .collect()
    }

    async fn count_issued(&self) -> Result<u64> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM certificates")
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get("n"))
            .map_err(map_err)?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {n}")))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn schema_version(&self) -> Result<i64> {
        sqlx::query(migrations::SELECT_VERSION)
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get("v"))
            .map_err(map_err)
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, PgConnection};

    use super::*;

    /// A URL asking for asynchronous commit still gets synchronous sessions.
    #[tokio::test]
    async fn sessions_commit_synchronously() {
        let base = std::env::var("ONLINECA_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20synchronous_commit%3Doff");
        let options = connect_options(&url).unwrap();
        let mut conn = match PgConnection::connect_with(&options).await {
            Ok(c) => c,
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("\n!!!!!!!! SKIPPING PostgreSQL test: cannot connect: {e} !!!!!!!!\n");
                return;
            }
            Err(e) => panic!("PostgreSQL unreachable and CI is set: {e}"),
        };
        let v: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(v, "on");
    }
}
