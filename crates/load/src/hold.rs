//! `--hold N`: many open connections at once, to see the server's memory with them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::conn::{Conn, Connector};
use crate::procfs::{self, Memory};

/// Handshakes (and requests) in progress at once while opening.
const OPENING_AT_ONCE: usize = 16;

/// What a hold run saw.
#[derive(Debug)]
pub struct Held {
    /// Connections open at the end.
    pub open: usize,
    /// Connections that failed to open (or whose request failed).
    pub failed: usize,
    /// The server's memory before opening any.
    pub before: Option<Memory>,
    /// The server's memory while all were open (after `hold_for`).
    pub holding: Option<Memory>,
}

impl Held {
    /// As one JSON object.
    pub fn to_json(&self) -> Value {
        let mem = |m: &Option<Memory>| {
            m.map(|m| json!({ "vm_rss_kib": m.rss_kib, "vm_hwm_kib": m.hwm_kib }))
        };
        json!({
            "held_connections": self.open,
            "failed": self.failed,
            "server_before": mem(&self.before),
            "server_holding": mem(&self.holding),
        })
    }

    /// As text.
    pub fn to_text(&self) -> String {
        let mem = |m: &Option<Memory>| {
            m.map_or("-".to_string(), |m| {
                format!(
                    "VmRSS {:.1} MiB (VmHWM {:.1} MiB)",
                    m.rss_kib as f64 / 1024.0,
                    m.hwm_kib as f64 / 1024.0
                )
            })
        };
        format!(
            "held {} connections ({} failed)\n  server before  {}\n  server holding {}\n",
            self.open,
            self.failed,
            mem(&self.before),
            mem(&self.holding)
        )
    }
}

/// Opens `n` connections (each sends `GET {probe}` if given, and reads the answer,
/// keeping the connection), holds them for `hold_for`, then closes them all.
pub async fn hold(
    n: usize,
    connector: Arc<Connector>,
    probe: Option<(String, String)>,
    hold_for: Duration,
    timeout: Duration,
    server_pid: Option<u32>,
) -> Result<Held> {
    let before = server_pid.map(procfs::memory).transpose()?;
    let gate = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let probe = Arc::new(probe);
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (connector, gate, probe) = (connector.clone(), gate.clone(), probe.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.ok()?;
            tokio::time::timeout(timeout, open(&connector, probe.as_ref().as_ref()))
                .await
                .ok()
                .flatten()
        }));
    }
    let mut conns = Vec::with_capacity(n);
    for t in tasks {
        if let Ok(Some(c)) = t.await {
            conns.push(c);
        }
    }
    let failed = n - conns.len();
    if conns.is_empty() {
        bail!("no connection could be opened");
    }
    tokio::time::sleep(hold_for).await;
    let open = conns.iter().filter(|c| c.is_open()).count();
    let holding = server_pid.map(procfs::memory).transpose()?;
    drop(conns);
    Ok(Held {
        open,
        failed,
        before,
        holding,
    })
}

async fn open(connector: &Connector, probe: Option<&(String, String)>) -> Option<Conn> {
    let mut conn = connector.connect().await.ok()?;
    if let Some((path, host)) = probe {
        let req = Request::builder()
            .method(Method::GET)
            .uri(path.as_str())
            .header(hyper::header::HOST, host.as_str())
            .body(Full::new(Bytes::new()))
            .ok()?;
        let (status, _) = conn.send(req).await.ok()?;
        if !status.is_success() {
            return None;
        }
    }
    Some(conn)
}
