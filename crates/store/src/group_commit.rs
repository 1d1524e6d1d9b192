//! Certificate records on SQLite, committed in groups.
//!
//! With `synchronous=FULL` every commit waits for an fsync of the WAL (milliseconds
//! on real disks), and SQLite has one writer: one commit per certificate caps
//! issuance at a few hundred a second however many cores there are. Records that
//! arrive while a commit is in progress wait for it, then go together in one
//! transaction and one fsync. Each caller still returns only after its own record
//! is durable; nothing about durability is weakened.

use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use crate::backend::{insert_issued_err, insert_issued_query};
use crate::{IssuedCert, Result, StoreError, map_err};

/// The most records in one transaction.
const MAX_BATCH: usize = 256;
/// Records that may wait for the writer (beyond, callers wait to queue).
const QUEUE: usize = 1024;

struct Pending {
    cert: IssuedCert,
    done: oneshot::Sender<Result<()>>,
}

/// The queue of records for the one writer task.
#[derive(Debug, Clone)]
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the writer task on `pool` (the store's one writer connection). It ends
    /// when the last `GroupCommit` is dropped.
    pub(crate) fn start(pool: SqlitePool) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write(pool, rx));
        GroupCommit { queue }
    }

    /// Records `cert`; returns once it is committed (or was not).
    pub(crate) async fn record(&self, cert: &IssuedCert) -> Result<()> {
        let (done, outcome) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the store's writer has stopped".into());
        self.queue
            .send(Pending {
                cert: cert.clone(),
                done,
            })
            .await
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

/// The writer: takes whatever has queued up (at least one record), commits it as
/// one transaction, answers each caller, repeats.
async fn write(pool: SqlitePool, mut rx: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let outcomes = commit(&pool, &batch).await;
        for (p, outcome) in batch.drain(..).zip(outcomes) {
            // A caller that gave up (its request timed out) still has its record.
            let _ = p.done.send(outcome);
        }
    }
}

/// Inserts `batch` in one transaction. A clashing serial fails only its own record
/// (SQLite aborts the statement, not the transaction); any other error fails the
/// whole batch, which is rolled back, so an outcome of `Ok` always means committed.
async fn commit(pool: &SqlitePool, batch: &[Pending]) -> Vec<Result<()>> {
    let all_failed = |e: sqlx::Error| {
        let e = map_err(e);
        batch.iter().map(|_| Err(e.clone())).collect()
    };
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => return all_failed(e),
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    for p in batch {
        let serial = p.cert.serial.to_ascii_lowercase();
        match insert_issued_query!(p.cert, &serial)
            .execute(&mut *tx)
            .await
        {
            Ok(_) => outcomes.push(Ok(())),
            Err(e) if crate::is_unique_violation(&e) => {
                outcomes.push(Err(insert_issued_err(e, &serial)));
            }
            Err(e) => {
                let _ = tx.rollback().await;
                return all_failed(e);
            }
        }
    }
    match tx.commit().await {
        Ok(()) => outcomes,
        Err(e) => all_failed(e),
    }
}
