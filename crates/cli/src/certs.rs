//! `onlineca cert ...`: the inventory of issued certificates, and revocation.
//!
//! Revocation is an admin action on the store; running servers notice it within
//! their `[crl] poll` interval and publish a new CRL.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use onlineca_core::crl::Reason;
use onlineca_server::audit::{CliAudit, Event};
use onlineca_store::{IssuedCert, IssuedFilter, RevokeOutcome, StatusFilter, Store};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Rows `cert list` shows unless told otherwise: a whole store can be millions.
const DEFAULT_LIMIT: u32 = 1000;

/// `onlineca cert` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// List issued certificates, newest first.
    #[command(after_long_help = crate::help::CERT_LIST)]
    List {
        /// Only this user's certificates.
        #[arg(long)]
        user: Option<String>,
        /// Only certificates that are neither revoked nor expired.
        #[arg(long, group = "state")]
        valid: bool,
        /// Only expired certificates.
        #[arg(long, group = "state")]
        expired: bool,
        /// Only revoked certificates.
        #[arg(long, group = "state")]
        revoked: bool,
        /// Only certificates issued since: a date (2026-11-01), an RFC 3339 time, or
        /// a duration ago (24h, 7days).
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// At most this many (the newest).
        #[arg(long, default_value_t = DEFAULT_LIMIT, conflicts_with = "all")]
        limit: u32,
        /// No limit.
        #[arg(long)]
        all: bool,
        /// JSON (an array of objects) instead of a table.
        #[arg(long)]
        json: bool,
        /// Only users' certificates (`user`) or only server certificates (`server`,
        /// signed with `cert sign`).
        #[arg(long, value_name = "KIND")]
        kind: Option<CertKind>,
    },
    /// Sign a server certificate (TLS server of a service that accepts this CA's
    /// users) from a CSR, or with a key made here; or, for testing, self-signed.
    #[command(after_long_help = crate::help::CERT_SIGN)]
    Sign(Box<crate::sign_cmd::SignArgs>),
    /// Show one certificate: a summary, then its PEM.
    #[command(after_long_help = crate::help::CERT_SHOW)]
    Show {
        /// The serial number in hex, as `cert list` or `openssl x509 -serial` prints it.
        serial: String,
    },
    /// Revoke a certificate, or every unexpired certificate of a user.
    #[command(after_long_help = crate::help::CERT_REVOKE)]
    Revoke {
        /// The serial number in hex.
        #[arg(required_unless_present = "user", conflicts_with = "user")]
        serial: Option<String>,
        /// Revoke every certificate of this user that has not expired.
        #[arg(long)]
        user: Option<String>,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise,
        /// affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn.
        #[arg(long, default_value = "unspecified")]
        reason: Reason,
    },
}

/// Which certificates `cert list --kind` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CertKind {
    /// Users' client certificates.
    User,
    /// Server certificates signed with `cert sign`.
    Server,
}

/// Runs a cert subcommand against the store at `now`; `poll` is how soon servers
/// notice a revocation (for the message).
pub async fn run(
    cmd: CertCommand,
    store: &dyn Store,
    now: OffsetDateTime,
    poll: std::time::Duration,
    audit: &mut CliAudit,
) -> Result<()> {
    match cmd {
        CertCommand::List {
            user,
            valid,
            expired,
            revoked,
            since,
            limit,
            all,
            json,
            kind,
        } => {
            let status = if valid {
                Some(StatusFilter::Valid(now))
            } else if expired {
                Some(StatusFilter::Expired(now))
            } else if revoked {
                Some(StatusFilter::Revoked)
            } else {
                None
            };
            let since = since.map(|s| parse_since(&s, now)).transpose()?;
            let filter = IssuedFilter {
                username: match user {
                    Some(u) => Some(canonical_user(store, &u).await?),
                    None => None,
                },
                since,
                status,
                limit: (!all).then_some(limit),
                server: kind.map(|k| k == CertKind::Server),
            };
            let certs = store.list_issued(&filter).await?;
            if json {
                let rows: Vec<serde_json::Value> = certs.iter().map(|c| to_json(c, now)).collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                print_table(&certs, now);
            }
            if !all && certs.len() == limit as usize {
                eprintln!("(the newest {limit} shown; use --limit N or --all for more)");
            }
        }
        CertCommand::Show { serial } => {
            let c = find(store, &serial).await?;
            print!("{}", summary(&c, now));
            print!("{}", onlineca_core::issuer::to_pem(&c.der));
        }
        CertCommand::Revoke {
            serial: Some(serial),
            reason,
            ..
        } => {
            let c = find(store, &serial).await?;
            audit.ready()?;
            match store.revoke(&c.serial, now, reason.code()).await? {
                RevokeOutcome::Revoked { also } => {
                    audit.record(
                        now,
                        &Event::Revoked {
                            serial: Some(&c.serial),
                            user: &c.username,
                            reason: reason.name(),
                            count: 1 + also,
                        },
                    )?;
                    eprintln!(
                        "revoked certificate {} of {:?} ({reason}); running servers publish a new CRL within {}",
                        c.serial,
                        c.username,
                        humantime::format_duration(poll)
                    );
                    if also > 0 {
                        eprintln!("{}", also_revoked(also, reason.code()));
                    }
                }
                RevokeOutcome::AlreadyRevoked { at, reason } => eprintln!(
                    "certificate {} was already revoked at {} ({}); nothing changed",
                    c.serial,
                    rfc3339(at),
                    reason_name(reason)
                ),
                RevokeOutcome::NotFound => bail!("no certificate with serial {}", c.serial),
            }
        }
        CertCommand::Revoke {
            serial: None,
            user: Some(user),
            reason,
        } => {
            let user = canonical_user(store, &user).await?;
            audit.ready()?;
            let n = store.revoke_user(&user, now, reason.code()).await?;
            if n > 0 {
                audit.record(
                    now,
                    &Event::Revoked {
                        serial: None,
                        user: &user,
                        reason: reason.name(),
                        count: n,
                    },
                )?;
            }
            if n == 0 {
                eprintln!(
                    "{user:?} has no certificate that is both unexpired and unrevoked; nothing changed"
                );
            } else {
                eprintln!(
                    "revoked {n} certificate{} of {user:?} ({reason}); running servers publish a new CRL within {}",
                    if n == 1 { "" } else { "s" },
                    humantime::format_duration(poll)
                );
            }
        }
        CertCommand::Revoke { .. } => bail!("give a serial number or --user NAME"),
        // Needs the CA, not only the store: main.rs runs it.
        CertCommand::Sign(_) => bail!("cert sign is run with its configuration"),
    }
    Ok(())
}

/// The certificate with this serial: hex in any case, with or without `0x` or colons.
/// OpenSSL prints serials without leading zero bytes, so a short serial is also
/// looked up zero-padded to the 20 bytes this CA uses.
async fn find(store: &dyn Store, serial: &str) -> Result<IssuedCert> {
    let hex = normalize_serial(serial)?;
    if let Some(c) = store.get_issued(&hex).await? {
        return Ok(c);
    }
    if hex.len() < 40 {
        let padded = format!("{hex:0>40}");
        if let Some(c) = store.get_issued(&padded).await? {
            return Ok(c);
        }
    }
    bail!("no certificate with serial {hex}")
}

fn normalize_serial(serial: &str) -> Result<String> {
    let s = serial.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("serial="))
        .unwrap_or(s);
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("{serial:?} is not a serial number: give it in hex, as 'cert list' prints it");
    }
    let hex = hex.to_ascii_lowercase();
    // Stored serials are whole bytes.
    Ok(if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex
    })
}

/// `--since`: a date, an RFC 3339 time, or a duration before `now`.
fn parse_since(s: &str, now: OffsetDateTime) -> Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, date_format) {
        return Ok(d.midnight().assume_utc());
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return now
            .checked_sub(time::Duration::try_from(d).context("--since: duration too long")?)
            .context("--since: duration too long");
    }
    bail!(
        "--since {s:?}: expected a date (2026-11-01), an RFC 3339 time, or a duration ago (24h, 7days)"
    )
}

/// `valid`, `expired` or `revoked`, at `now`.
fn status(c: &IssuedCert, now: OffsetDateTime) -> &'static str {
    if c.revoked_at.is_some() {
        "revoked"
    } else if c.not_after <= now {
        "expired"
    } else {
        "valid"
    }
}

/// The line about the certificates a revocation reached beyond the one named.
fn also_revoked(also: u64, code: i32) -> String {
    let noun = if also == 1 {
        "certificate"
    } else {
        "certificates"
    };
    if code == onlineca_store::REASON_KEY_COMPROMISE {
        format!("also revoked {also} {noun} for the same key or renewed from one")
    } else {
        format!("also revoked {also} {noun} renewed from it")
    }
}

fn reason_name(code: Option<i32>) -> String {
    match code {
        None => Reason::Unspecified.name().to_string(),
        Some(c) => Reason::from_code(c)
            .map(|r| r.name().to_string())
            .unwrap_or_else(|| format!("reason code {c}")),
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn print_table(certs: &[IssuedCert], now: OffsetDateTime) {
    use std::io::Write;
    // One locked, buffered writer: a long listing is dominated by terminal writes.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let _ = writeln!(
        out,
        "{:<40} {:<20} {:<8} {:<20} {:<20} AUTH",
        "SERIAL", "USER", "STATUS", "ISSUED", "NOT_AFTER"
    );
    for c in certs {
        let _ = writeln!(
            out,
            "{:<40} {:<20} {:<8} {:<20} {:<20} {}",
            c.serial,
            c.username,
            status(c, now),
            rfc3339(c.issued_at),
            rfc3339(c.not_after),
            c.auth_method
        );
    }
    let _ = out.flush();
}

fn to_json(c: &IssuedCert, now: OffsetDateTime) -> serde_json::Value {
    serde_json::json!({
        "serial": c.serial,
        "username": c.username,
        "subject": c.subject,
        "status": status(c, now),
        "auth_method": c.auth_method,
        "retriever": c.retriever,
        "client_addr": c.client_addr,
        "spki_sha256": c.spki_sha256,
        "not_before": rfc3339(c.not_before),
        "not_after": rfc3339(c.not_after),
        "issued_at": rfc3339(c.issued_at),
        "revoked_at": c.revoked_at.map(rfc3339),
        "revocation_reason": c.revoked_at.map(|_| reason_name(c.revocation_reason)),
    })
}

/// The readable summary of `cert show`.
fn summary(c: &IssuedCert, now: OffsetDateTime) -> String {
    let auth = match (&c.auth_method[..], &c.retriever) {
        (m, Some(r)) => format!("{m} (retriever {r})"),
        (m, None) => m.to_string(),
    };
    let status = match c.revoked_at {
        Some(at) => format!(
            "revoked at {} ({})",
            rfc3339(at),
            reason_name(c.revocation_reason)
        ),
        None => status(c, now).to_string(),
    };
    let mut s = String::new();
    let mut line = |k: &str, v: &str| s.push_str(&format!("{k:<15} {v}\n"));
    line("serial", &c.serial);
    line("subject", &c.subject);
    line("user", &c.username);
    line("status", &status);
    line("not before", &rfc3339(c.not_before));
    line("not after", &rfc3339(c.not_after));
    line("issued at", &rfc3339(c.issued_at));
    line("authenticated", &auth);
    line("client", c.client_addr.as_deref().unwrap_or("(unknown)"));
    line("key sha256", &c.spki_sha256);
    s
}

/// The name certificates are recorded under: the stored spelling of a known user
/// (names are unique regardless of ASCII case), else the name in lower case, as the
/// server issues for users it does not know.
async fn canonical_user(store: &dyn Store, name: &str) -> Result<String> {
    Ok(match store.get_user(name).await? {
        Some(u) => u.username,
        None => name.to_ascii_lowercase(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_forms() {
        assert_eq!(normalize_serial("0A:1b:2C").unwrap(), "0a1b2c");
        assert_eq!(normalize_serial("serial=ABC").unwrap(), "0abc");
        assert_eq!(normalize_serial("0xff").unwrap(), "ff");
        assert!(normalize_serial("xyz").is_err());
        assert!(normalize_serial("").is_err());
    }

    #[test]
    fn since_forms() {
        let now = time::macros::datetime!(2026-11-23 12:00 UTC);
        assert_eq!(
            parse_since("2026-11-01", now).unwrap(),
            time::macros::datetime!(2026-11-01 00:00 UTC)
        );
        assert_eq!(
            parse_since("2026-11-22T10:00:00Z", now).unwrap(),
            time::macros::datetime!(2026-11-22 10:00 UTC)
        );
        assert_eq!(
            parse_since("24h", now).unwrap(),
            time::macros::datetime!(2026-11-22 12:00 UTC)
        );
        assert!(parse_since("yesterday", now).is_err());
    }
}
