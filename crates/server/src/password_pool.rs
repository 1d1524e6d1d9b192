//! Password verifications, bounded: a fixed set of worker threads (one per core by
//! default), each reusing one argon2 memory area, fed by a bounded queue.
//!
//! argon2id costs ~13 ms of CPU and 19 MiB of memory per check. Run on the runtime's
//! blocking pool, a burst of them took as many threads and as many 19 MiB areas as
//! there were requests, each slower for the thrashing; here a burst waits its turn,
//! memory stays at one area per worker, and a queue that is full is refused at once
//! (503 with `Retry-After`) instead of growing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use onlineca_core::password::Verifier;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::oneshot;

/// A worker idle this long gives its argon2 memory back.
const IDLE_RELEASE: Duration = Duration::from_secs(10);

/// Why a verification was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every worker is busy and the queue is full.
    #[error("too many password checks waiting")]
    Busy,
    /// The workers are gone (the service is shutting down).
    #[error("password workers stopped")]
    Stopped,
}

struct Job {
    /// Raised while the job waits for a worker (lowered when one takes it).
    queued: crate::metrics::GaugeGuard,
    password: String,
    /// The stored hash, or `None` for an unknown user (a dummy check of equal cost).
    stored: Option<String>,
    reply: oneshot::Sender<bool>,
}

/// The workers and their queue.
pub struct PasswordPool {
    jobs: SyncSender<Job>,
    done: Arc<AtomicU64>,
    threads: usize,
    queue: usize,
    /// Verifications being computed, and waiting for a worker (for the metrics).
    in_flight: Gauge,
    queued: Gauge,
}

impl std::fmt::Debug for PasswordPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordPool")
            .field("threads", &self.threads)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl PasswordPool {
    /// Starts `threads` workers (0: one per available core) behind a queue of `queue`
    /// checks. The workers end when the pool is dropped.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let (jobs, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let done = Arc::new(AtomicU64::new(0));
        let in_flight = Gauge::default();
        for i in 0..threads {
            let (rx, done, busy) = (rx.clone(), done.clone(), in_flight.clone());
            std::thread::Builder::new()
                .name(format!("onlineca-argon2-{i}"))
                .spawn(move || work(&rx, &done, &busy))?;
        }
        Ok(PasswordPool {
            jobs,
            done,
            threads,
            queue,
            in_flight,
            queued: Gauge::default(),
        })
    }

    /// The number of workers.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The gauges of verifications in flight and queued.
    pub fn gauges(&self) -> (Gauge, Gauge) {
        (self.in_flight.clone(), self.queued.clone())
    }

    /// How many argon2 verifications the workers have made.
    pub fn verifications(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Checks `password` against `stored` (`None`: an unknown user, checked against a
    /// dummy hash so that it costs the same). Waits for a worker; refused at once if
    /// the queue is full.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PoolError> {
        let (reply, verdict) = oneshot::channel();
        let job = Job {
            queued: crate::metrics::GaugeGuard::new(&self.queued),
            password,
            stored,
            reply,
        };
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => PoolError::Busy,
            TrySendError::Disconnected(_) => PoolError::Stopped,
        })?;
        verdict.await.map_err(|_| PoolError::Stopped)
    }
}

/// One worker: takes jobs until the pool is dropped, keeping its argon2 memory while
/// busy and releasing it when idle.
fn work(rx: &Mutex<Receiver<Job>>, done: &AtomicU64, busy: &Gauge) {
    let mut verifier = Verifier::new();
    loop {
        let next = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            rx.recv_timeout(IDLE_RELEASE)
        };
        let job = match next {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                verifier = Verifier::new();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let Job {
            queued,
            password,
            stored,
            reply,
        } = job;
        drop(queued);
        // The request gave up while queued (timeout, client gone): skip the work.
        if reply.is_closed() {
            continue;
        }
        let working = crate::metrics::GaugeGuard::new(busy);
        let ok = match &stored {
            Some(hash) => verifier.verify(&password, hash),
            None => {
                verifier.verify_dummy(&password);
                false
            }
        };
        drop(working);
        done.fetch_add(1, Ordering::Relaxed);
        let _ = reply.send(ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_and_refuses_when_full() {
        let pool = PasswordPool::start(1, 1).unwrap();
        let hash = onlineca_core::password::hash("pw").unwrap();
        assert_eq!(pool.verify("pw".into(), Some(hash.clone())).await, Ok(true));
        assert_eq!(
            pool.verify("no".into(), Some(hash.clone())).await,
            Ok(false)
        );
        assert_eq!(pool.verify("pw".into(), None).await, Ok(false));

        // One worker and a queue of one: of eight checks sent at once (each task
        // sends, then waits, long before a 13 ms check ends), at most two get in.
        let pool = Arc::new(pool);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (p, h) = (pool.clone(), hash.clone());
                tokio::spawn(async move { p.verify("pw".into(), Some(h)).await })
            })
            .collect();
        let (mut ok, mut busy) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(true) => ok += 1,
                Err(PoolError::Busy) => busy += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(
            (1..=2).contains(&ok) && ok + busy == 8,
            "{ok} ok, {busy} busy"
        );
    }
}
