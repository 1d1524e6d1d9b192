//! The closed loop: workers, warm-up, measurement window.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use tokio::sync::Notify;

use crate::args::ConnMode;
use crate::conn::{Conn, Connector, Failure};
use crate::payload::Payload;
use crate::procfs;
use crate::stats::{ServerUsage, Tally};

/// How to drive the server.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Workers, each with one request in flight.
    pub concurrency: usize,
    /// Warm-up before the window.
    pub warmup: Duration,
    /// The measurement window.
    pub duration: Duration,
    /// End the window after this many certificates.
    pub cap: Option<u64>,
    /// New connection per request or keep-alive.
    pub mode: ConnMode,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// What [`drive`] measured.
#[derive(Debug)]
pub struct Measured {
    /// The window actually measured (shorter than planned if the cap was reached).
    pub window: Duration,
    /// Every worker's counts, merged.
    pub tally: Tally,
    /// Server CPU and memory over the window, if its pid was given.
    pub server: Option<ServerUsage>,
    /// The generator's own CPU time over the window.
    pub generator_cpu: Duration,
}

/// State shared by the workers and the clock.
struct Shared {
    start: Instant,
    end: Instant,
    cap: Option<u64>,
    measured: AtomicU64,
    stop: AtomicBool,
    capped: Notify,
}

/// Runs the plan: `concurrency` workers loop until the window ends; certificates
/// received (and failures seen) inside the window are counted.
pub async fn drive(
    plan: Plan,
    connector: Arc<Connector>,
    payload: Arc<Payload>,
    server_pid: Option<u32>,
) -> anyhow::Result<Measured> {
    let t0 = Instant::now();
    let shared = Arc::new(Shared {
        start: t0 + plan.warmup,
        end: t0 + plan.warmup + plan.duration,
        cap: plan.cap,
        measured: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        capped: Notify::new(),
    });
    let mut tallies = Vec::with_capacity(plan.concurrency);
    let mut tasks = Vec::with_capacity(plan.concurrency);
    for w in 0..plan.concurrency {
        let tally = Arc::new(Mutex::new(Tally::default()));
        tallies.push(tally.clone());
        tasks.push(tokio::spawn(worker(
            w,
            plan,
            connector.clone(),
            payload.clone(),
            shared.clone(),
            tally,
        )));
    }

    tokio::time::sleep_until(shared.start.into()).await;
    let server_cpu0 = server_pid.map(|p| procfs::cpu_time(Some(p))).transpose()?;
    let own_cpu0 = procfs::cpu_time(None)?;
    let started = Instant::now();
    tokio::select! {
        _ = tokio::time::sleep_until(shared.end.into()) => {}
        _ = shared.capped.notified() => {}
    }
    let window = started.elapsed();
    shared.stop.store(true, Ordering::SeqCst);
    let server = match server_pid {
        Some(pid) => Some(ServerUsage {
            pid,
            cpu: procfs::cpu_time(Some(pid))?.saturating_sub(server_cpu0.unwrap_or_default()),
            memory: procfs::memory(pid)?,
        }),
        None => None,
    };
    let generator_cpu = procfs::cpu_time(None)?.saturating_sub(own_cpu0);
    // Requests still in flight fall outside the window: drop them.
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut tally = Tally::default();
    for t in tallies {
        tally.merge(std::mem::take(&mut *t.lock().expect("tally lock")));
    }
    Ok(Measured {
        window,
        tally,
        server,
        generator_cpu,
    })
}

async fn worker(
    id: usize,
    plan: Plan,
    connector: Arc<Connector>,
    payload: Arc<Payload>,
    shared: Arc<Shared>,
    tally: Arc<Mutex<Tally>>,
) {
    let mut next = id;
    let mut kept: Option<Conn> = None;
    loop {
        let begin = Instant::now();
        if begin >= shared.end || shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let req = payload.request(next);
        next = next.wrapping_add(plan.concurrency);
        let outcome = tokio::time::timeout(plan.timeout, async {
            let mut conn = match kept.take() {
                Some(c) if c.is_open() => c,
                _ => connector.connect().await?,
            };
            let answer = conn.send(req).await;
            if plan.mode == ConnMode::Keepalive && answer.is_ok() {
                kept = Some(conn);
            }
            answer
        })
        .await
        .unwrap_or(Err(Failure::Timeout));
        let outcome = match outcome {
            Ok((status, body)) if status == hyper::StatusCode::OK => payload
                .check(status, &body)
                .map_err(|why| (Failure::BadBody, Some(Bytes::from(why)))),
            Ok((status, body)) => Err((Failure::Status(status.as_u16()), Some(body))),
            Err(f) => Err((f, None)),
        };
        if matches!(outcome, Err((Failure::Connect, _))) {
            // Nothing listening: do not spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let done = Instant::now();
        if shared.stop.load(Ordering::Relaxed) || done >= shared.end {
            return;
        }
        let mut t = tally.lock().expect("tally lock");
        let in_window = done >= shared.start;
        match outcome {
            Ok(()) if in_window => {
                let us = done.duration_since(begin).as_micros().min(u32::MAX as u128) as u32;
                t.latencies_us.push(us);
                drop(t);
                let n = shared.measured.fetch_add(1, Ordering::Relaxed) + 1;
                if shared.cap == Some(n) {
                    shared.stop.store(true, Ordering::SeqCst);
                    shared.capped.notify_one();
                    return;
                }
            }
            Ok(()) => t.warmup_ok += 1,
            Err((f, detail)) => {
                if in_window {
                    *t.failures.entry(f).or_default() += 1;
                } else {
                    t.warmup_failures += 1;
                }
                if t.example.is_none() {
                    t.example = Some(describe(f, detail.as_deref()));
                }
            }
        }
    }
}

/// One line about a failure: its kind and the first line of the answer, if any.
fn describe(f: Failure, detail: Option<&[u8]>) -> String {
    let line = detail
        .map(|d| {
            let text = String::from_utf8_lossy(d);
            let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            line.chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect::<String>()
        })
        .unwrap_or_default();
    if line.is_empty() {
        f.to_string()
    } else {
        format!("{f}: {}", line.trim())
    }
}
