//! Command-line options and their bounds.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, ValueEnum};

/// Longest measurement window accepted.
const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Longest warm-up accepted.
const MAX_WARMUP: Duration = Duration::from_secs(600);
/// Most concurrent workers accepted.
const MAX_CONCURRENCY: usize = 4096;
/// Most connections `--hold` opens.
const MAX_HOLD: usize = 10_000;
/// Longest per-request timeout accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest oversized body `--mix` sends.
const MAX_OVERSIZED: usize = 64 * 1024 * 1024;
/// Most measured requests `--requests` may ask for.
const MAX_REQUESTS: u64 = 1_000_000_000;

/// Closed-loop load generator for onlineca's `POST {url}/certificate/` (and cfssl's
/// `POST /api/v1/cfssl/authsign`, for comparison). Drives servers on this machine
/// only: the URL's host must be a loopback address or `localhost`.
#[derive(Debug, Parser)]
#[command(
    name = "onlineca-load",
    version,
    after_help = "Exit status: 0 after a run that obtained certificates (errors are \
                  reported, not fatal), 1 on bad arguments or setup, 3 if no \
                  certificate was obtained in the window."
)]
pub struct Args {
    /// Service URL: `https://127.0.0.1:PORT/onlineca` (onlineca) or
    /// `https://127.0.0.1:PORT` (cfssl). Loopback hosts only.
    #[arg(long)]
    pub url: String,
    /// Which API to speak.
    #[arg(long, value_enum, default_value_t = Target::Onlineca)]
    pub target: Target,
    /// How onlineca requests authenticate (onlineca only; default password).
    #[arg(long, value_enum)]
    pub auth: Option<AuthMode>,
    /// Concurrent workers, each with one request in flight (closed loop).
    #[arg(short = 'c', long = "concurrency", default_value_t = 1)]
    pub concurrency: usize,
    /// Measurement window, after the warm-up.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Warm-up before measuring (answers are checked, not counted).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Stop measuring after this many certificates (the window ends earlier).
    #[arg(long)]
    pub requests: Option<u64>,
    /// A new TCP + TLS connection per request, or one kept-alive HTTP/1.1 connection
    /// per worker (re-opened when it closes).
    #[arg(long, value_enum, default_value_t = ConnMode::New)]
    pub connection: ConnMode,
    /// PEM file of the CA certificate(s) the server's certificate must chain to.
    #[arg(long)]
    pub cacert: PathBuf,
    /// Client certificate (PEM, then any chain) to present: a portal's (retriever) or
    /// one of this CA's (renewal).
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of `--cert`.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Username: the password user, the user a retriever names, or the user whose
    /// password bootstraps a renewal certificate.
    #[arg(long)]
    pub user: Option<String>,
    /// File holding the password (first line); else the environment variable
    /// `ONLINECA_LOAD_PASSWORD`.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// File holding cfssl's HMAC key, hex-encoded (cfssl's `auth_keys` "standard").
    #[arg(long)]
    pub hmac_key_hex_file: Option<PathBuf>,
    /// Key type of the CSRs sent.
    #[arg(long, value_enum, default_value_t = CsrKey::Rsa2048)]
    pub csr_key: CsrKey,
    /// Number of distinct CSRs made at start and used in turn.
    #[arg(long, default_value_t = 64)]
    pub csr_pool: usize,
    /// PEM file of CSRs to reuse across runs: read if it holds enough CSRs of
    /// `--csr-key`'s type, else written with a fresh pool.
    #[arg(long)]
    pub csr_cache: Option<PathBuf>,
    /// Per-request timeout (connection, handshake, request and answer).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The server's process id: its CPU time over the window (from /proc) and memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Allow TLS session resumption on new connections (off: a full handshake each time).
    #[arg(long)]
    pub tls_resume: bool,
    /// Instead of load: open this many TLS connections (one `GET trustroots/` each on
    /// onlineca), hold them, and report the server's memory.
    #[arg(long)]
    pub hold: Option<usize>,
    /// How long `--hold` keeps its connections open.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub hold_for: Duration,
    /// Runtime worker threads of the generator itself.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Hostile mix instead of certificates only: weights of request kinds, e.g.
    /// `good=4,bad=3,unknown=3,oversized=2` (good: `--user`'s password; bad: a wrong
    /// password for `--bad-user`; unknown: users that do not exist; oversized: a body
    /// over the server's limit). Every answer is counted by kind and status; the run
    /// ends after `--requests` answers (or the window).
    #[arg(long)]
    pub mix: Option<String>,
    /// The user whose password the `bad` requests of `--mix` guess (default `--user`).
    #[arg(long)]
    pub bad_user: Option<String>,
    /// Sizes in bytes of the `oversized` bodies of `--mix`, used in turn.
    #[arg(long, value_delimiter = ',', default_value = "131072,262144,2097152")]
    pub oversized_bytes: Vec<usize>,
    /// Loopback source addresses the workers' connections are bound to, in turn
    /// (e.g. `127.0.0.2,127.0.0.3`): several clients from one machine.
    #[arg(long, value_delimiter = ',')]
    pub source: Vec<std::net::IpAddr>,
}

/// The API spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// onlineca's seed API: `POST {url}/certificate/`, form field `certificate_request`.
    Onlineca,
    /// cfssl's `POST {url}/api/v1/cfssl/authsign`, HMAC-SHA256 token.
    Cfssl,
}

/// How onlineca requests authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// HTTP Basic username and password.
    Password,
    /// A portal's client certificate, naming the user as the Basic username.
    Retriever,
    /// A client certificate of this CA and no `Authorization` header.
    Renewal,
}

/// Connection handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConnMode {
    /// A new TCP + TLS connection per request.
    New,
    /// One persistent HTTP/1.1 connection per worker.
    Keepalive,
}

/// Key type of the CSRs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CsrKey {
    /// RSA 2048-bit.
    Rsa2048,
    /// ECDSA P-256.
    P256,
}

impl Args {
    /// Refuses values outside the bounds that keep a run finite and small.
    pub fn check(&self) -> Result<()> {
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            bail!("-c must be between 1 and {MAX_CONCURRENCY}");
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            bail!("--duration must be more than 0 and at most 1h");
        }
        if self.warmup > MAX_WARMUP {
            bail!("--warmup must be at most 10m");
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            bail!("--timeout must be more than 0 and at most 5m");
        }
        if matches!(self.requests, Some(n) if n == 0 || n > MAX_REQUESTS) {
            bail!("--requests must be between 1 and {MAX_REQUESTS}");
        }
        if self.csr_pool == 0 || self.csr_pool > 4096 {
            bail!("--csr-pool must be between 1 and 4096");
        }
        if matches!(self.hold, Some(n) if n == 0 || n > MAX_HOLD) {
            bail!("--hold must be between 1 and {MAX_HOLD}");
        }
        if self.hold_for > MAX_WARMUP {
            bail!("--hold-for must be at most 10m");
        }
        if self.threads == 0 || self.threads > 64 {
            bail!("--threads must be between 1 and 64");
        }
        if let Some(ip) = self.source.iter().find(|ip| !ip.is_loopback()) {
            bail!("--source {ip}: loopback addresses only");
        }
        if self
            .oversized_bytes
            .iter()
            .any(|&n| n == 0 || n > MAX_OVERSIZED)
        {
            bail!("--oversized-bytes must be between 1 and {MAX_OVERSIZED}");
        }
        if self.mix.is_some()
            && (self.target != Target::Onlineca || self.auth_mode() != AuthMode::Password)
        {
            bail!("--mix drives onlineca with passwords only");
        }
        if self.target == Target::Cfssl && self.auth.is_some() {
            bail!("--auth applies to onlineca only (cfssl authenticates with --hmac-key-hex-file)");
        }
        Ok(())
    }

    /// The authentication mode in effect (onlineca: password unless given).
    pub fn auth_mode(&self) -> AuthMode {
        self.auth.unwrap_or(AuthMode::Password)
    }

    /// The password from `--password-file` or `ONLINECA_LOAD_PASSWORD`, if any.
    pub fn password(&self) -> Result<Option<String>> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            let line = text.lines().next().unwrap_or("").to_string();
            if line.is_empty() {
                bail!("{} holds no password", path.display());
            }
            return Ok(Some(line));
        }
        Ok(std::env::var("ONLINECA_LOAD_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty()))
    }
}
