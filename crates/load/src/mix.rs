//! `--mix`: a hostile mix of requests (right and wrong passwords, unknown users,
//! oversized bodies) from several loopback source addresses, every answer counted by
//! kind and status. Used by `bench/hostile.sh`; nothing here judges the answers.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper::StatusCode;
use hyper::body::Bytes;
use serde_json::{Value, json};

use crate::args::{Args, ConnMode};
use crate::conn::{Conn, Connector, Failure};
use crate::endpoint::Endpoint;
use crate::payload::{self, Payload};
use crate::procfs::{self, Memory};

/// Distinct unknown usernames tried, in turn.
const UNKNOWN_USERS: usize = 64;

/// What a request of the mix tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// The right password of `--user`.
    Good,
    /// A wrong password for `--bad-user`.
    Bad,
    /// A user that does not exist.
    Unknown,
    /// `--user`'s right password with a body over the server's limit.
    Oversized,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Good => "good",
            Kind::Bad => "bad",
            Kind::Unknown => "unknown",
            Kind::Oversized => "oversized",
        }
    }
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// An HTTP answer (a 200 whose body is a certificate).
    Status(u16),
    /// No usable answer.
    Failed(Failure),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Status(s) => write!(f, "{s}"),
            Outcome::Failed(x) => write!(f, "{x}"),
        }
    }
}

/// `good=4,bad=3,...` as a schedule: each kind as often as its weight, interleaved.
pub fn schedule(spec: &str) -> Result<Vec<Kind>> {
    let mut weights = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, w) = part
            .split_once('=')
            .with_context(|| format!("--mix: {part:?} is not KIND=WEIGHT"))?;
        let kind = match name.trim() {
            "good" => Kind::Good,
            "bad" => Kind::Bad,
            "unknown" => Kind::Unknown,
            "oversized" => Kind::Oversized,
            other => bail!("--mix: unknown kind {other:?} (good, bad, unknown, oversized)"),
        };
        let w: usize = w
            .trim()
            .parse()
            .ok()
            .filter(|w| *w <= 100)
            .with_context(|| format!("--mix: weight of {name} must be 0 to 100"))?;
        weights.push((kind, w));
    }
    let most = weights.iter().map(|(_, w)| *w).max().unwrap_or(0);
    let mut out = Vec::new();
    for round in 0..most {
        for (kind, w) in &weights {
            if round < *w {
                out.push(*kind);
            }
        }
    }
    if out.is_empty() {
        bail!("--mix: no request kind has a weight");
    }
    Ok(out)
}

/// The requests of every kind, built once.
pub struct Mix {
    schedule: Vec<Kind>,
    good: Payload,
    bad: Payload,
    unknown: Vec<Payload>,
    oversized: Payload,
}

impl Mix {
    /// Builds the requests from the arguments (`--user`, its password, `--bad-user`,
    /// `--oversized-bytes`) and the CSR pool.
    pub fn new(args: &Args, endpoint: &Endpoint, csrs: &[String]) -> Result<Mix> {
        let spec = args.mix.as_deref().context("no --mix")?;
        let user = args.user.as_deref().context("--mix needs --user")?;
        let password = args
            .password()?
            .context("--mix needs --password-file or ONLINECA_LOAD_PASSWORD")?;
        let bad_user = args.bad_user.as_deref().unwrap_or(user);
        let path = endpoint.path("/certificate/");
        let host = &endpoint.authority;
        let good_auth = payload::basic(user, &password)?;
        // A wrong password that cannot be the right one by accident.
        let wrong = format!("{password}-wrong");
        let salt = hex::encode(std::process::id().to_be_bytes());
        let unknown = (0..UNKNOWN_USERS)
            .map(|i| {
                let name = format!("nobody-{salt}-{i}");
                Payload::onlineca(&path, host, Some(payload::basic(&name, &password)?), csrs)
            })
            .collect::<Result<Vec<_>>>()?;
        let oversized = args
            .oversized_bytes
            .iter()
            .map(|&n| {
                let field = "certificate_request=";
                Bytes::from(format!(
                    "{field}{}",
                    "A".repeat(n.saturating_sub(field.len()))
                ))
            })
            .collect();
        Ok(Mix {
            schedule: schedule(spec)?,
            good: Payload::onlineca(&path, host, Some(good_auth.clone()), csrs)?,
            bad: Payload::onlineca(&path, host, Some(payload::basic(bad_user, &wrong)?), csrs)?,
            unknown,
            oversized: Payload::onlineca_bodies(&path, host, Some(good_auth), oversized)?,
        })
    }

    fn request(&self, i: usize) -> (Kind, hyper::Request<http_body_util::Full<Bytes>>) {
        let kind = self.schedule[i % self.schedule.len()];
        // Which body of a kind's pool: the round through the schedule.
        let n = i / self.schedule.len();
        let req = match kind {
            Kind::Good => self.good.request(n),
            Kind::Bad => self.bad.request(n),
            Kind::Unknown => self.unknown[n % self.unknown.len()].request(n),
            Kind::Oversized => self.oversized.request(n),
        };
        (kind, req)
    }
}

/// How to drive the mix.
#[derive(Debug, Clone)]
pub struct MixPlan {
    /// Workers, each with one request in flight.
    pub concurrency: usize,
    /// Answers to collect before stopping.
    pub requests: u64,
    /// The longest the run may take.
    pub duration: Duration,
    /// New connection per request or keep-alive.
    pub mode: ConnMode,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Source addresses, one per worker in turn (none: the system's choice).
    pub sources: Vec<IpAddr>,
}

/// What a mix run saw.
#[derive(Debug)]
pub struct MixReport {
    /// Requests that ended (answered or failed).
    pub requests: u64,
    /// How long the run took.
    pub window: Duration,
    /// Counts by kind and outcome.
    pub counts: BTreeMap<(Kind, Outcome), u64>,
    /// The first answer of each outcome other than 200: its first line.
    pub examples: BTreeMap<Outcome, String>,
    /// The source addresses used.
    pub sources: Vec<IpAddr>,
    /// The server's CPU time over the run and its memory at the end, given its pid.
    pub server: Option<(u32, Duration, Memory)>,
}

/// Runs the mix until `requests` requests have ended or `duration` has passed.
pub async fn drive(
    plan: MixPlan,
    connector: Arc<Connector>,
    mix: Arc<Mix>,
    server_pid: Option<u32>,
) -> Result<MixReport> {
    let next = Arc::new(AtomicU64::new(0));
    let counts = Arc::new(Mutex::new(BTreeMap::new()));
    let examples = Arc::new(Mutex::new(BTreeMap::new()));
    let end = Instant::now() + plan.duration;
    let cpu0 = server_pid.map(|p| procfs::cpu_time(Some(p))).transpose()?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(plan.concurrency);
    for w in 0..plan.concurrency {
        let source = (!plan.sources.is_empty()).then(|| plan.sources[w % plan.sources.len()]);
        let ctx = Worker {
            plan: plan.clone(),
            source,
            connector: connector.clone(),
            mix: mix.clone(),
            next: next.clone(),
            counts: counts.clone(),
            examples: examples.clone(),
            end,
        };
        tasks.push(tokio::spawn(ctx.run()));
    }
    for t in tasks {
        let _ = t.await;
    }
    let window = started.elapsed();
    let server = match server_pid {
        Some(pid) => Some((
            pid,
            procfs::cpu_time(Some(pid))?.saturating_sub(cpu0.unwrap_or_default()),
            procfs::memory(pid)?,
        )),
        None => None,
    };
    let counts = std::mem::take(&mut *counts.lock().expect("counts lock"));
    let examples = std::mem::take(&mut *examples.lock().expect("examples lock"));
    Ok(MixReport {
        requests: counts.values().sum(),
        window,
        counts,
        examples,
        sources: plan.sources,
        server,
    })
}

/// One closed-loop worker of the mix.
struct Worker {
    plan: MixPlan,
    source: Option<IpAddr>,
    connector: Arc<Connector>,
    mix: Arc<Mix>,
    next: Arc<AtomicU64>,
    counts: Arc<Mutex<BTreeMap<(Kind, Outcome), u64>>>,
    examples: Arc<Mutex<BTreeMap<Outcome, String>>>,
    end: Instant,
}

impl Worker {
    async fn run(self) {
        let mut kept: Option<Conn> = None;
        loop {
            if Instant::now() >= self.end {
                return;
            }
            let i = self.next.fetch_add(1, Ordering::SeqCst);
            if i >= self.plan.requests {
                return;
            }
            let (kind, req) = self.mix.request(i as usize);
            let answer = tokio::time::timeout(self.plan.timeout, async {
                let mut conn = match kept.take() {
                    Some(c) if c.is_open() => c,
                    _ => self.connector.connect_from(self.source).await?,
                };
                let answer = conn.send(req).await;
                if self.plan.mode == ConnMode::Keepalive && answer.is_ok() {
                    kept = Some(conn);
                }
                answer
            })
            .await
            .unwrap_or(Err(Failure::Timeout));
            let (outcome, detail) = match answer {
                Ok((StatusCode::OK, body)) => match payload::check_certificate(&body) {
                    Ok(()) => (Outcome::Status(200), None),
                    Err(why) => (Outcome::Failed(Failure::BadBody), Some(why)),
                },
                Ok((status, body)) => (
                    Outcome::Status(status.as_u16()),
                    Some(first_line(&body, kind)),
                ),
                Err(f) => {
                    let why = match f {
                        Failure::Http => crate::conn::first_http_error(),
                        _ => self.connector.first_error(),
                    };
                    (
                        Outcome::Failed(f),
                        Some(format!("{} ({})", why.unwrap_or("-"), kind.name())),
                    )
                }
            };
            *self
                .counts
                .lock()
                .expect("counts lock")
                .entry((kind, outcome))
                .or_default() += 1;
            if let Some(d) = detail {
                self.examples
                    .lock()
                    .expect("examples lock")
                    .entry(outcome)
                    .or_insert(d);
            }
            if matches!(outcome, Outcome::Failed(Failure::Connect)) {
                // Nothing listening or no free port: do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn first_line(body: &[u8], kind: Kind) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    format!("{line} ({})", kind.name())
}

impl MixReport {
    /// Counts by outcome over all kinds.
    pub fn by_outcome(&self) -> BTreeMap<Outcome, u64> {
        let mut out = BTreeMap::new();
        for ((_, o), n) in &self.counts {
            *out.entry(*o).or_default() += n;
        }
        out
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> Value {
        let by_outcome: serde_json::Map<String, Value> = self
            .by_outcome()
            .iter()
            .map(|(o, n)| (o.to_string(), json!(n)))
            .collect();
        let mut by_kind = serde_json::Map::new();
        for ((k, o), n) in &self.counts {
            let entry = by_kind
                .entry(k.name())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("an object");
            entry.insert(o.to_string(), json!(n));
        }
        let examples: serde_json::Map<String, Value> = self
            .examples
            .iter()
            .map(|(o, e)| (o.to_string(), json!(e)))
            .collect();
        json!({
            "requests": self.requests,
            "window_s": self.window.as_secs_f64(),
            "by_status": by_outcome,
            "by_kind": by_kind,
            "examples": examples,
            "sources": self.sources.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "server": self.server.map(|(pid, cpu, m)| json!({
                "pid": pid,
                "cpu_ms": cpu.as_secs_f64() * 1000.0,
                "vm_rss_kib": m.rss_kib,
                "vm_hwm_kib": m.hwm_kib,
            })),
        })
    }

    /// The report as a few lines of text.
    pub fn to_text(&self) -> String {
        let join = |m: &BTreeMap<Outcome, u64>| {
            m.iter()
                .map(|(o, n)| format!("{o}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = format!(
            "mix: {} requests in {:.2} s from {} source address(es)\n  by status     {}\n",
            self.requests,
            self.window.as_secs_f64(),
            self.sources.len().max(1),
            join(&self.by_outcome())
        );
        let mut kinds: BTreeMap<Kind, BTreeMap<Outcome, u64>> = BTreeMap::new();
        for ((k, o), n) in &self.counts {
            kinds.entry(*k).or_default().insert(*o, *n);
        }
        for (k, m) in &kinds {
            out += &format!("  {:<13} {}\n", k.name(), join(m));
        }
        for (o, e) in &self.examples {
            out += &format!("  first {o:<7} {e}\n");
        }
        if let Some((pid, cpu, m)) = &self.server {
            out += &format!(
                "  server        pid {pid}: CPU {:.0} ms; VmRSS {:.1} MiB, VmHWM {:.1} MiB\n",
                cpu.as_secs_f64() * 1000.0,
                m.rss_kib as f64 / 1024.0,
                m.hwm_kib as f64 / 1024.0
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_interleave() {
        let s = schedule("good=2,bad=1,oversized=0,unknown=3").unwrap();
        use Kind::*;
        assert_eq!(s, [Good, Bad, Unknown, Good, Unknown, Unknown]);
        assert!(schedule("good=0").is_err());
        assert!(schedule("evil=1").is_err());
        assert!(schedule("good").is_err());
    }
}
