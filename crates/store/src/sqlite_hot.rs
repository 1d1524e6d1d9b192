//! The SQLite operations of every issuance, without sqlx's thread hop per statement.
//!
//! sqlx runs each SQLite connection on a thread of its own: every statement is a
//! message to that thread and a wake-up back, and a profile of renewals under load
//! showed those threads and the context switches around them taking most of the
//! server's CPU. Here the two lookups a request makes (a user; a certificate with its
//! user's account) run on the calling thread, on a small pool of read connections
//! (a WAL reader takes microseconds and never waits for the writer), and certificate
//! records go to one writer thread that commits whatever has queued up as one
//! transaction: one fsync for the group, each caller answered once its own record is
//! durable. Everything else stays on sqlx.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use tokio::sync::{mpsc, oneshot};

use crate::backend::{
    CERT_WITH_ACCOUNT, INSERT_CERT, KEY_COMPROMISED, LOGIN_FAILURES, PARENT_STATE, USER_BY_NAME,
};
use crate::{Account, IssuedCert, Result, StoreError, User, from_secs, to_secs};

/// How long the writer waits for a lock held by another process (the CLI).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle read connections kept for reuse.
const IDLE_READERS: usize = 8;
/// The most records in one transaction.
const MAX_BATCH: usize = 256;
/// Records that may wait for the writer (beyond, callers wait to queue).
const QUEUE: usize = 1024;

struct Pending {
    cert: IssuedCert,
    done: oneshot::Sender<Result<()>>,
}

/// The read connections and the writer thread's queue of one SQLite file.
#[derive(Debug)]
pub(crate) struct HotPath {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    records: mpsc::Sender<Pending>,
    closed: AtomicBool,
}

impl HotPath {
    /// Opens the writer connection and starts its thread, for the (migrated)
    /// database at `path`.
    pub(crate) fn open(path: &Path) -> Result<Arc<Self>> {
        let writer = connect(path, false)?;
        let (records, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("onlineca-sqlite-writer".into())
            .spawn(move || write(&writer, rx))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok(Arc::new(HotPath {
            path: path.to_path_buf(),
            readers: Mutex::new(Vec::new()),
            records,
            closed: AtomicBool::new(false),
        }))
    }

    /// Refuses every later call (the store is closing).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// A user by name, ignoring ASCII case.
    pub(crate) fn get_user(&self, username: &str) -> Result<Option<User>> {
        self.read(|c| {
            c.prepare_cached(USER_BY_NAME)?
                .query_row([username], user_from_row)
                .optional()
        })?
        .transpose()
    }

    /// The failed passwords recorded for `name`: read on every password check.
    pub(crate) fn login_failures(&self, name: &str) -> Result<Option<crate::LoginFailures>> {
        self.read(|c| {
            c.prepare_cached(LOGIN_FAILURES)?
                .query_row([name], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
                })
                .optional()
        })?
        .map(|(failures, last)| {
            Ok(crate::LoginFailures {
                failures: u32::try_from(failures)
                    .map_err(|_| StoreError::Corrupt(format!("column failures: {failures}")))?,
                last: from_secs("last_failure", last)?,
            })
        })
        .transpose()
    }

    /// A certificate record and its user's account.
    pub(crate) fn get_issued_with_account(
        &self,
        serial: &str,
    ) -> Result<Option<(IssuedCert, Option<Account>)>> {
        let serial = serial.to_ascii_lowercase();
        self.read(|c| {
            c.prepare_cached(CERT_WITH_ACCOUNT)?
                .query_row([&serial], |row| {
                    Ok(cert_from_row(row).and_then(|cert| Ok((cert, account_from_row(row)?))))
                })
                .optional()
        })?
        .transpose()
    }

    /// Records `cert`; returns once it is committed (or was not).
    pub(crate) async fn record(&self, cert: &IssuedCert) -> Result<()> {
        self.check_open()?;
        let (done, outcome) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the store's writer has stopped".into());
        self.records
            .send(Pending {
                cert: cert.clone(),
                done,
            })
            .await
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        Ok(())
    }

    /// Runs `f` on a pooled read connection, on this thread. A reader waits for no
    /// lock in WAL mode, so this takes microseconds; only the rare busy answer
    /// (another process recovering the WAL) is retried with the usual timeout.
    fn read<T>(&self, f: impl Fn(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        self.check_open()?;
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => connect(&self.path, true)?,
        };
        let mut outcome = f(&conn);
        if matches!(&outcome, Err(e) if is_busy(e)) {
            let _ = conn.busy_timeout(BUSY_TIMEOUT);
            outcome = f(&conn);
            let _ = conn.busy_timeout(Duration::ZERO);
        }
        let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_READERS && !self.closed.load(Ordering::SeqCst) {
            idle.push(conn);
        }
        outcome.map_err(map_err)
    }
}

/// A connection with the store's settings: WAL, `synchronous=FULL` (a committed
/// record survives power loss), foreign keys. Readers do not wait on busy locks.
fn connect(path: &Path, read_only: bool) -> Result<Connection> {
    // Opening can meet a lock another connection holds for a moment (a migration or
    // the switch to WAL by a process opening the same file): wait as a writer would.
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match try_connect(path, read_only) {
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => {
                return other.map_err(|e| {
                    StoreError::Unavailable(format!("cannot open {}: {e}", path.display()))
                });
            }
        }
    }
}

fn try_connect(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(if read_only {
        Duration::ZERO
    } else {
        BUSY_TIMEOUT
    })?;
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    Ok(conn)
}

/// The writer: takes whatever has queued up (at least one record), commits it as
/// one transaction, answers each caller, repeats until the store is dropped.
fn write(conn: &Connection, mut rx: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let outcomes = commit(conn, &batch);
        for (p, outcome) in batch.drain(..).zip(outcomes) {
            // A caller that gave up (its request timed out) still has its record.
            let _ = p.done.send(outcome);
        }
    }
}

/// Inserts `batch` in one transaction. A clashing serial, a compromised key or a
/// revoked parent fails only its own record; any other error fails the whole
/// batch, which is rolled back, so an outcome of `Ok` always means committed.
fn commit(conn: &Connection, batch: &[Pending]) -> Vec<Result<()>> {
    let all_failed = |e: rusqlite::Error| {
        let e = map_err(e);
        batch.iter().map(|_| Err(e.clone())).collect()
    };
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        return all_failed(e);
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    for p in batch {
        match insert(conn, &p.cert) {
            Ok(refused) => outcomes.push(refused),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return all_failed(e);
            }
        }
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => outcomes,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            all_failed(e)
        }
    }
}

/// Inserts one record inside the writer's transaction, unless its key was reported
/// compromised or the certificate it renews is revoked: checked here, where no
/// revocation can slip in between (SQLite's write transactions are serial). The
/// outer error fails the batch; the inner one refuses this record alone.
fn insert(conn: &Connection, c: &IssuedCert) -> rusqlite::Result<Result<()>> {
    let compromised = conn
        .prepare_cached(KEY_COMPROMISED)?
        .exists([&c.spki_sha256])?;
    if compromised {
        return Ok(Err(StoreError::KeyCompromised));
    }
    if let Some(parent) = &c.parent_serial {
        let state: Option<Option<i64>> = conn
            .prepare_cached(PARENT_STATE)?
            .query_row([parent], |r| r.get(0))
            .optional()?;
        if !matches!(state, Some(None)) {
            return Ok(Err(StoreError::ParentRevoked(parent.clone())));
        }
    }
    let serial = c.serial.to_ascii_lowercase();
    let inserted = conn.prepare_cached(INSERT_CERT)?.execute(params![
        serial,
        c.username,
        c.subject,
        c.auth_method,
        c.retriever,
        c.spki_sha256,
        to_secs(c.not_before),
        to_secs(c.not_after),
        to_secs(c.issued_at),
        c.client_addr,
        c.der,
        c.revoked_at.map(to_secs),
        c.revocation_reason,
        c.account_id,
        c.parent_serial,
        c.issuer_key_id,
    ]);
    match inserted {
        Ok(_) => Ok(Ok(())),
        // SQLite aborts the statement, not the transaction: the others stand.
        Err(e) if is_unique_violation(&e) => Ok(Err(StoreError::DuplicateSerial(serial))),
        Err(e) => Err(e),
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// The store's error for a SQLite failure: damage is corruption, the rest (busy,
/// I/O, full disk, read-only file) means the store cannot serve now.
fn map_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// Reads column `i`, naming it in the error.
fn get<T: rusqlite::types::FromSql>(row: &Row<'_>, i: usize, name: &str) -> Result<T> {
    row.get(i)
        .map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))
}

fn time(row: &Row<'_>, i: usize, name: &'static str) -> Result<time::OffsetDateTime> {
    from_secs(name, get(row, i, name)?)
}

/// A [`User`] from the `user_columns!()` columns. The outer `rusqlite::Result` is
/// the query's; decoding problems are the inner [`StoreError::Corrupt`].
fn user_from_row(row: &Row<'_>) -> rusqlite::Result<Result<User>> {
    Ok((|| {
        Ok(User {
            username: get(row, 0, "username")?,
            password_hash: get(row, 1, "password_hash")?,
            disabled: get(row, 2, "disabled")?,
            created_at: time(row, 3, "created_at")?,
            updated_at: time(row, 4, "updated_at")?,
            account_id: get(row, 5, "account_id")?,
        })
    })())
}

/// An [`IssuedCert`] from the `cert_columns!()` columns, which come first.
fn cert_from_row(row: &Row<'_>) -> Result<IssuedCert> {
    let revoked_at: Option<i64> = get(row, 11, "revoked_at")?;
    Ok(IssuedCert {
        serial: get(row, 0, "serial")?,
        username: get(row, 1, "username")?,
        subject: get(row, 2, "subject")?,
        auth_method: get(row, 3, "auth_method")?,
        retriever: get(row, 4, "retriever")?,
        spki_sha256: get(row, 5, "spki_sha256")?,
        not_before: time(row, 6, "not_before")?,
        not_after: time(row, 7, "not_after")?,
        issued_at: time(row, 8, "issued_at")?,
        client_addr: get(row, 9, "client_addr")?,
        der: get(row, 10, "der")?,
        revoked_at: revoked_at.map(|s| from_secs("revoked_at", s)).transpose()?,
        revocation_reason: get(row, 12, "revocation_reason")?,
        account_id: get(row, 13, "account_id")?,
        parent_serial: get(row, 14, "parent_serial")?,
        issuer_key_id: get(row, 15, "issuer_key_id")?,
    })
}

/// The account columns after the certificate's (both NULL without an account).
fn account_from_row(row: &Row<'_>) -> Result<Option<Account>> {
    let Some(username) = get::<Option<String>>(row, 16, "account")? else {
        return Ok(None);
    };
    Ok(Some(Account {
        username,
        disabled: get(row, 17, "account_disabled")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer commits durably and the readers see the same settings.
    #[tokio::test]
    async fn connections_are_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        // Migrated, in WAL mode, by the sqlx side.
        let _store = crate::SqliteStore::open(&path).await.unwrap();
        for read_only in [false, true] {
            let c = connect(&path, read_only).unwrap();
            let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
            assert_eq!(sync, 2, "FULL");
            let mode: String = c
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
        }
    }
}
