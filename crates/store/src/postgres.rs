//! The PostgreSQL backend: one connection pool; tables live in the first schema on
//! the connection's `search_path`.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool, Row};
use time::OffsetDateTime;

use crate::rows::{cert_from_row, mark_from_row, revoked_from_row, revoked_row, user_from_row};
use crate::{
    Arg, IssuedCert, IssuedFilter, NEXT_CRL_NUMBER, REVOCATION_MARK, Result, RevocationMark,
    RevokeOutcome, RevokedEntry, Store, StoreError, User, already_revoked, count, found,
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
        let (sql, args) = list_issued_sql(filter, |n| format!("${n}"));
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for a in args {
            query = match a {
                Arg::Text(t) => query.bind(t),
                Arg::Int(i) => query.bind(i),
            };
        }
        query
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
        count(n)
    }

    async fn revoke(&self, serial: &str, at: OffsetDateTime, reason: i32) -> Result<RevokeOutcome> {
        let serial = serial.to_ascii_lowercase();
        // One statement, so that two admins revoking at once cannot both "win".
        let r = sqlx::query(
            "UPDATE certificates SET revoked_at = $1, revocation_reason = $2 \
             WHERE serial = $3 AND revoked_at IS NULL",
        )
        .bind(to_secs(at))
        .bind(reason)
        .bind(&serial)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        if r.rows_affected() > 0 {
            return Ok(RevokeOutcome::Revoked);
        }
        let row =
            sqlx::query("SELECT revoked_at, revocation_reason FROM certificates WHERE serial = $1")
                .bind(&serial)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
        already_revoked(row.as_ref().map(revoked_row).transpose()?)
    }

    async fn revoke_user(&self, username: &str, at: OffsetDateTime, reason: i32) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE certificates SET revoked_at = $1, revocation_reason = $2 \
             WHERE username = $3 AND revoked_at IS NULL AND not_after > $4",
        )
        .bind(to_secs(at))
        .bind(reason)
        .bind(username)
        .bind(to_secs(at))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected())
    }

    async fn revoked_unexpired(&self, now: OffsetDateTime) -> Result<Vec<RevokedEntry>> {
        sqlx::query(
            "SELECT serial, revoked_at, revocation_reason FROM certificates \
             WHERE revoked_at IS NOT NULL AND not_after > $1 ORDER BY serial",
        )
        .bind(to_secs(now))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?
        .iter()
        .map(revoked_from_row)
        .collect()
    }

    async fn revocation_mark(&self) -> Result<RevocationMark> {
        let row = sqlx::query(REVOCATION_MARK)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        mark_from_row(&row)
    }

    async fn next_crl_number(&self) -> Result<u64> {
        // The row lock taken by the UPDATE serialises concurrent instances.
        let n: i64 = sqlx::query(NEXT_CRL_NUMBER)
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get("value"))
            .map_err(map_err)?;
        count(n)
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
