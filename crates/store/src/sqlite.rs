//! The SQLite backend.
//!
//! Writes go through a pool of exactly one connection, so concurrent writers queue
//! in order inside this process instead of spinning on SQLite's busy handler;
//! reads use a separate pool, which WAL mode lets run alongside the writer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, SqlitePool};
use time::OffsetDateTime;

use crate::rows::{cert_from_row, mark_from_row, revoked_from_row, revoked_row, user_from_row};
use crate::sqlite_hot::HotPath;
use crate::{
    Arg, IssuedCert, IssuedFilter, NEXT_CRL_NUMBER, REVOCATION_MARK, Result, RevocationMark,
    RevokeOutcome, RevokedEntry, StoreError, User, already_revoked, count, found,
    is_unique_violation, list_issued_sql, map_err, migrations, to_secs,
};

/// How long SQLite waits for another process (e.g. the CLI) to release a lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at the first connection while another process makes the file WAL.
const OPEN_RETRIES: u32 = 100;
/// How long an operation waits for a pooled connection before giving up (503).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections for reading; WAL readers do not block each other or the writer.
const READERS: u32 = 4;

/// A store in a SQLite database file (or in memory, for tests).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// The operations of every issuance, off sqlx (see `sqlite_hot`).
    hot: Arc<HotPath>,
    /// For `open_memory`: the temporary directory holding the file, removed with
    /// the last clone of the store.
    _temp: Option<Arc<tempfile::TempDir>>,
}

impl SqliteStore {
    /// Opens (creating it with mode 0600 if missing) the SQLite database at `path`
    /// and applies pending migrations. The database runs in WAL mode with
    /// `synchronous=FULL`, so a committed write survives power loss.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, migrations::Migrate::Auto).await
    }

    /// Like [`SqliteStore::open`], changing the schema only as `policy` allows.
    pub async fn open_with(path: impl AsRef<Path>, policy: migrations::Migrate) -> Result<Self> {
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
        // Switching a new file to WAL takes a lock that SQLite's busy handler does
        // not wait for: processes opening the same new database at once may see
        // "database is locked" here, and try again.
        let mut attempt = 0;
        let writer = loop {
            let opened = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options.clone())
                .await;
            match opened {
                Ok(pool) => break pool,
                Err(e) if attempt < OPEN_RETRIES && e.to_string().contains("locked") => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(open_err(path, e)),
            }
        };
        migrations::migrate_sqlite(&writer, policy).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| open_err(path, e))?;
        Ok(Self {
            hot: HotPath::open(path)?,
            writer,
            reader,
            _temp: None,
        })
    }

    /// Opens a private, empty database that vanishes with the store, for tests: a
    /// file in a temporary directory of its own (the issuance path reads and writes
    /// on connections of its own, which an in-memory database could not share).
    pub async fn open_memory() -> Result<Self> {
        let dir = tempfile::tempdir().map_err(|e| {
            StoreError::Unavailable(format!("cannot make a temporary directory: {e}"))
        })?;
        let mut store = Self::open(dir.path().join("onlineca.db")).await?;
        store._temp = Some(Arc::new(dir));
        Ok(store)
    }
}

/// The migrations applied to the database file at `path` (none if it does not
/// exist), read without changing anything.
pub(crate) async fn schema_rows(path: &str) -> Result<Vec<(i64, String, i64)>> {
    if !Path::new(path).exists() {
        return Ok(Vec::new());
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| open_err(Path::new(path), e))?;
    let exists: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
    )
    .fetch_optional(&pool)
    .await
    .map_err(map_err)?;
    let rows = if exists.is_some() {
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

// The Store methods are shared (backend.rs); here only what is SQLite's own.
crate::backend::impl_store!(
    SqliteStore,
    reads = reader,
    writes = writer,
    users_order = "username",
    users_order_name = "name",
    // IMMEDIATE: the write lock from the start, so that the record read is the
    // one updated (the writer thread's INSERTs wait for it).
    begin_write = "BEGIN IMMEDIATE",
    lock_row = "",
    lock_key = None::<&'static str>
);

impl SqliteStore {
    /// Records one certificate: committed together with whatever others arrived
    /// meanwhile, one fsync for the group.
    async fn insert_issued(&self, c: &IssuedCert) -> Result<()> {
        self.hot.record(c).await
    }

    async fn find_user(&self, username: &str) -> Result<Option<User>> {
        self.hot.get_user(username)
    }

    async fn find_login_failures(&self, name: &str) -> Result<Option<crate::LoginFailures>> {
        self.hot.login_failures(name)
    }

    async fn find_issued_with_account(
        &self,
        serial: &str,
    ) -> Result<Option<(IssuedCert, Option<crate::Account>)>> {
        self.hot.get_issued_with_account(serial)
    }

    /// Closes the connection pools (pending operations finish first).
    async fn close_pools(&self) {
        self.hot.close();
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
