//! What a run measured, and how it is printed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::conn::Failure;
use crate::procfs::Memory;

/// Counts kept by one worker.
#[derive(Debug, Default)]
pub struct Tally {
    /// Latency of each certificate received inside the window, microseconds.
    pub latencies_us: Vec<u32>,
    /// Failures inside the window.
    pub failures: BTreeMap<Failure, u64>,
    /// Certificates received during the warm-up.
    pub warmup_ok: u64,
    /// Failures during the warm-up.
    pub warmup_failures: u64,
    /// The first failure seen (kind and the answer's first line), for the report.
    pub example: Option<String>,
}

impl Tally {
    /// Adds another worker's counts.
    pub fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        for (k, v) in other.failures {
            *self.failures.entry(k).or_default() += v;
        }
        self.warmup_ok += other.warmup_ok;
        self.warmup_failures += other.warmup_failures;
        self.example = self.example.take().or(other.example);
    }
}

/// The server's use of resources over the window.
#[derive(Debug, Clone, Copy)]
pub struct ServerUsage {
    /// The server's process id.
    pub pid: u32,
    /// CPU time over the window.
    pub cpu: Duration,
    /// Memory at the end of the window.
    pub memory: Memory,
}

/// The result of one run.
#[derive(Debug)]
pub struct Report {
    /// What was driven, as JSON fields (target, auth, connection, c, ...).
    pub run: Value,
    /// The same in one line of text.
    pub title: String,
    /// Length of the measurement window.
    pub window: Duration,
    /// Merged counts.
    pub tally: Tally,
    /// Server resources, given its pid.
    pub server: Option<ServerUsage>,
    /// The generator's own CPU time over the window.
    pub generator_cpu: Duration,
    /// TLS version, key exchange and cipher suite negotiated.
    pub tls: Option<String>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `sorted` (microseconds, ascending).
    pub fn of(sorted: &[u32]) -> Percentiles {
        if sorted.is_empty() {
            return Percentiles::default();
        }
        let at = |p: f64| {
            let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            f64::from(sorted[rank - 1]) / 1000.0
        };
        Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

impl Report {
    /// Certificates received inside the window.
    pub fn certificates(&self) -> u64 {
        self.tally.latencies_us.len() as u64
    }

    /// Failures inside the window.
    pub fn errors(&self) -> u64 {
        self.tally.failures.values().sum()
    }

    /// Certificates per second.
    pub fn rate(&self) -> f64 {
        self.certificates() as f64 / self.window.as_secs_f64().max(1e-9)
    }

    fn percentiles(&self) -> Percentiles {
        let mut l = self.tally.latencies_us.clone();
        l.sort_unstable();
        Percentiles::of(&l)
    }

    fn per_cert_ms(&self, cpu: Duration) -> Option<f64> {
        let n = self.certificates();
        (n > 0).then(|| cpu.as_secs_f64() * 1000.0 / n as f64)
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> Value {
        let p = self.percentiles();
        let errors: serde_json::Map<String, Value> = self
            .tally
            .failures
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let server = self.server.map(|s| {
            json!({
                "pid": s.pid,
                "cpu_ms": s.cpu.as_secs_f64() * 1000.0,
                "cpu_ms_per_cert": self.per_cert_ms(s.cpu),
                "vm_rss_kib": s.memory.rss_kib,
                "vm_hwm_kib": s.memory.hwm_kib,
            })
        });
        json!({
            "run": self.run,
            "window_s": self.window.as_secs_f64(),
            "certificates": self.certificates(),
            "certs_per_s": self.rate(),
            "latency_ms": { "p50": p.p50, "p90": p.p90, "p99": p.p99, "max": p.max },
            "errors": self.errors(),
            "errors_by_kind": errors,
            "first_error": self.tally.example,
            "tls": self.tls,
            "warmup": { "certificates": self.tally.warmup_ok, "errors": self.tally.warmup_failures },
            "server": server,
            "generator_cpu_ms": self.generator_cpu.as_secs_f64() * 1000.0,
            "generator_cpu_ms_per_cert": self.per_cert_ms(self.generator_cpu),
        })
    }

    /// The report as a few lines of text.
    pub fn to_text(&self) -> String {
        let p = self.percentiles();
        let mut out = format!(
            "{}\n  certificates  {} in {:.2} s = {:.1}/s\n  latency ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}\n",
            self.title,
            self.certificates(),
            self.window.as_secs_f64(),
            self.rate(),
            p.p50,
            p.p90,
            p.p99,
            p.max
        );
        let kinds: Vec<String> = self
            .tally
            .failures
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        out += &format!(
            "  errors        {}{}\n",
            self.errors(),
            if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({})", kinds.join(", "))
            }
        );
        if let Some(e) = &self.tally.example {
            out += &format!("  first error   {e}\n");
        }
        out += &format!(
            "  warm-up       {} certificates, {} errors\n",
            self.tally.warmup_ok, self.tally.warmup_failures
        );
        if let Some(s) = &self.server {
            out += &format!(
                "  server        pid {}: CPU {:.0} ms = {} ms/certificate; VmRSS {:.1} MiB, VmHWM {:.1} MiB\n",
                s.pid,
                s.cpu.as_secs_f64() * 1000.0,
                self.per_cert_ms(s.cpu)
                    .map_or("-".into(), |v| format!("{v:.3}")),
                s.memory.rss_kib as f64 / 1024.0,
                s.memory.hwm_kib as f64 / 1024.0
            );
        }
        out += &format!(
            "  generator     CPU {:.0} ms = {} ms/certificate\n",
            self.generator_cpu.as_secs_f64() * 1000.0,
            self.per_cert_ms(self.generator_cpu)
                .map_or("-".into(), |v| format!("{v:.3}"))
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        let p = Percentiles::of(&v);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(Percentiles::of(&[]), Percentiles::default());
        assert_eq!(Percentiles::of(&[3000]).p99, 3.0);
    }
}
