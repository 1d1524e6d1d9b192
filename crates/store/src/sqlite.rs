//! The SQLite backend.
//!
//! Writes go through a pool of exactly one connection, so concurrent writers queue
//! in order inside this process instead of spinning on SQLite's busy handler;
//! reads use a separate pool, which WAL mode lets run alongside the writer.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, SqlitePool};
use time::OffsetDateTime;

use crate::rows::{cert_from_row, mark_from_row, revoked_from_row, revoked_row, user_from_row};
use crate::{
    Arg, IssuedCert, IssuedFilter, NEXT_CRL_NUMBER, REVOCATION_MARK, Result, RevocationMark,
    RevokeOutcome, RevokedEntry, Store, StoreError, User, already_revoked, count, found,
    is_unique_violation, list_issued_sql, map_err, migrations, to_secs,
};

/// How long SQLite waits for another process (e.g. the CLI) to release a lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an operation waits for a pooled connection before giving up (503).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections for reading; WAL readers do not block each other or the writer.
const READERS: u32 = 4;

/// A store in a SQLite database file (or in memory, for tests).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it with mode 0600 if missing) the SQLite database at `path`
    /// and applies pending migrations. The database runs in WAL mode with
    /// `synchronous=FULL`, so a committed write survives power loss.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        create_private_file(path).await?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL would be enough against crashes of the process but not of the
            // machine: a certificate must never be handed out unrecorded.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(|e| open_err(path, e))?;
        migrations::migrate_sqlite(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| open_err(path, e))?;
        Ok(Self { writer, reader })
    }

    /// Opens a private, empty in-memory database, for tests. It lives as long as
    /// this store (one connection that is never recycled).
    pub async fn open_memory() -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(map_err)?;
        migrations::migrate_sqlite(&pool).await?;
        Ok(Self {
            writer: pool.clone(),
            reader: pool,
        })
    }
}

/// Failing to open the file is most often a bad path or permissions: say which file.
fn open_err(path: &Path, e: sqlx::Error) -> StoreError {
    match map_err(e) {
        StoreError::Unavailable(m) => {
            StoreError::Unavailable(format!("cannot open {}: {m}", path.display()))
        }
        other => other,
    }
}

/// Creates `path` empty with mode 0600 unless it exists: the database holds password
/// hashes, and SQLite would create it 0644. SQLite gives the `-wal` and `-shm` files
/// the mode of the database file. An existing file's mode is left alone.
async fn create_private_file(path: &Path) -> Result<()> {
    let mut opts = tokio::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    match opts.open(path).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Config(format!(
            "cannot create database file {}: {e}",
            path.display()
        ))),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn add_user(&self, u: &User) -> Result<()> {
        sqlx::query(concat!(
            "INSERT INTO users (",
            user_columns!(),
            ") VALUES (?, ?, ?, ?, ?)"
        ))
        .bind(&u.username)
        .bind(&u.password_hash)
        .bind(u.disabled)
        .bind(to_secs(u.created_at))
        .bind(to_secs(u.updated_at))
        .execute(&self.writer)
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
            sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE username = ?")
                .bind(hash)
                .bind(to_secs(now))
                .bind(username)
                .execute(&self.writer)
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
        let r = sqlx::query("UPDATE users SET disabled = ?, updated_at = ? WHERE username = ?")
            .bind(disabled)
            .bind(to_secs(now))
            .bind(username)
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        found(r.rows_affected(), username)
    }

    async fn remove_user(&self, username: &str) -> Result<()> {
        let r = sqlx::query("DELETE FROM users WHERE username = ?")
            .bind(username)
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        found(r.rows_affected(), username)
    }

    async fn get_user(&self, username: &str) -> Result<Option<User>> {
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username = ?"
        ))
        .bind(username)
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?
        .map(|r| user_from_row(&r))
        .transpose()
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY username"
        ))
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?
        .iter()
        .map(user_from_row)
        .collect()
    }

    async fn record_issued(&self, c: &IssuedCert) -> Result<()> {
        let serial = c.serial.to_ascii_lowercase();
        // Autocommit: with WAL + synchronous=FULL the WAL is synced before this returns.
        sqlx::query(concat!(
            "INSERT INTO certificates (",
            cert_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
        .execute(&self.writer)
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
            " FROM certificates WHERE serial = ?"
        ))
        .bind(serial.to_ascii_lowercase())
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?
        .map(|r| cert_from_row(&r))
        .transpose()
    }

    async fn list_issued(&self, filter: &IssuedFilter) -> Result<Vec<IssuedCert>> {
        let (sql, args) = list_issued_sql(filter, |_| "?".into());
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for a in args {
            query = match a {
                Arg::Text(t) => query.bind(t),
                Arg::Int(i) => query.bind(i),
            };
        }
        query
            .fetch_all(&self.reader)
            .await
            .map_err(map_err)?
            .iter()
            .map(cert_from_row)
            .collect()
    }

    async fn count_issued(&self) -> Result<u64> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM certificates")
            .fetch_one(&self.reader)
            .await
            .and_then(|r| r.try_get("n"))
            .map_err(map_err)?;
        count(n)
    }

    async fn revoke(&self, serial: &str, at: OffsetDateTime, reason: i32) -> Result<RevokeOutcome> {
        let serial = serial.to_ascii_lowercase();
        // One statement, so that two admins revoking at once cannot both "win".
        let r = sqlx::query(
            "UPDATE certificates SET revoked_at = ?, revocation_reason = ? \
             WHERE serial = ? AND revoked_at IS NULL",
        )
        .bind(to_secs(at))
        .bind(reason)
        .bind(&serial)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        if r.rows_affected() > 0 {
            return Ok(RevokeOutcome::Revoked);
        }
        let row =
            sqlx::query("SELECT revoked_at, revocation_reason FROM certificates WHERE serial = ?")
                .bind(&serial)
                .fetch_optional(&self.writer)
                .await
                .map_err(map_err)?;
        already_revoked(row.as_ref().map(revoked_row).transpose()?)
    }

    async fn revoke_user(&self, username: &str, at: OffsetDateTime, reason: i32) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE certificates SET revoked_at = ?, revocation_reason = ? \
             WHERE username = ? AND revoked_at IS NULL AND not_after > ?",
        )
        .bind(to_secs(at))
        .bind(reason)
        .bind(username)
        .bind(to_secs(at))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected())
    }

    async fn revoked_unexpired(&self, now: OffsetDateTime) -> Result<Vec<RevokedEntry>> {
        sqlx::query(
            "SELECT serial, revoked_at, revocation_reason FROM certificates \
             WHERE revoked_at IS NOT NULL AND not_after > ? ORDER BY serial",
        )
        .bind(to_secs(now))
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?
        .iter()
        .map(revoked_from_row)
        .collect()
    }

    async fn revocation_mark(&self) -> Result<RevocationMark> {
        let row = sqlx::query(REVOCATION_MARK)
            .fetch_one(&self.reader)
            .await
            .map_err(map_err)?;
        mark_from_row(&row)
    }

    async fn next_crl_number(&self) -> Result<u64> {
        // Through the single writer connection; SQLite's write lock serialises other
        // processes on the same file.
        let n: i64 = sqlx::query(NEXT_CRL_NUMBER)
            .fetch_one(&self.writer)
            .await
            .and_then(|r| r.try_get("value"))
            .map_err(map_err)?;
        count(n)
    }

    async fn ping(&self) -> Result<()> {
        // Through the writer: issuance needs it, so health should reflect it.
        sqlx::query("SELECT 1")
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn schema_version(&self) -> Result<i64> {
        sqlx::query(migrations::SELECT_VERSION)
            .fetch_one(&self.reader)
            .await
            .and_then(|r| r.try_get("v"))
            .map_err(map_err)
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The durability settings hold on every connection, not just the first.
    #[tokio::test]
    async fn pragmas_on_writer_and_readers() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("p.db")).await.unwrap();
        for pool in [&store.writer, &store.reader] {
            let mut conn = pool.acquire().await.unwrap();
            let int = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
            // 2 = FULL.
            assert_eq!(
                int("PRAGMA synchronous")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap(),
                2
            );
            assert_eq!(
                int("PRAGMA foreign_keys")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap(),
                1
            );
            assert_eq!(
                int("PRAGMA busy_timeout")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap(),
                5000
            );
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(mode, "wal");
        }
    }
}
