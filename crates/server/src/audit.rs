//! The audit log: one JSON object per line for every issuance, every refused
//! certificate request, every revocation, user change and CRL publication, and the
//! server's start and stop — written by the server and by the CLI to the same file.
//!
//! Each batch of lines goes out in one `write` on a file opened with `O_APPEND`, so
//! the server and CLI commands running beside it never interleave within a line. A
//! file moved away (logrotate) is noticed at the next line, which goes to a new file
//! at the configured path. A record holds names, serials, digests and addresses:
//! never a password, a key or a token.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// `[audit]`: where the audit log goes (off when the section is absent).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// A file (relative to the configuration), or `-` for standard output.
    pub path: PathBuf,
    /// A line that cannot be written fails what it records: an issuance answers 503
    /// and a CLI command changes nothing. When false, the failure is only logged.
    #[serde(default = "yes")]
    pub required: bool,
    /// Whether each batch of lines is flushed to the disk (`fdatasync`) before the
    /// action it records completes; off by default (the page cache survives a
    /// crash of the process, not of the machine).
    #[serde(default)]
    pub fsync: bool,
}

fn yes() -> bool {
    true
}

impl AuditSection {
    /// Whether the log goes to standard output.
    pub fn is_stdout(&self) -> bool {
        self.path.as_os_str() == "-"
    }

    /// One line for `config check`.
    pub fn describe(&self) -> String {
        let target = if self.is_stdout() {
            "standard output".to_string()
        } else {
            self.path.display().to_string()
        };
        format!(
            "{target} ({}{})",
            if self.required {
                "required: an event that cannot be recorded fails"
            } else {
                "best effort: failures are only logged"
            },
            if self.fsync { ", fsync" } else { "" }
        )
    }
}

/// One auditable event. Field names are the record's keys; `docs/operations.md`
/// shows one line of each.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event<'a> {
    /// `onlineca serve` is ready to answer.
    ServerStarted {
        /// The onlineca version.
        version: &'a str,
        /// The public listener's address.
        listen: String,
        /// The issuing CA's subject.
        issuing_ca: String,
        /// The store, with any password masked.
        store: String,
    },
    /// `onlineca serve` has answered every request and stops.
    ServerStopped {
        /// Why it stops.
        reason: &'a str,
    },
    /// A certificate was issued and recorded (written before the response is sent).
    Issued {
        /// The request id, as in the access log and the `X-Request-Id` header.
        request_id: &'a str,
        /// Serial, hex.
        serial: &'a str,
        /// Subject, OpenSSL one-line form.
        subject: &'a str,
        /// The user it was issued to.
        user: &'a str,
        /// How the user was authenticated: password, ldap, retriever, renewal.
        method: &'a str,
        /// The retriever's subject, for a retriever's request.
        #[serde(skip_serializing_if = "Option::is_none")]
        retriever: Option<&'a str>,
        /// The serial of the certificate this one renews, for a renewal.
        #[serde(skip_serializing_if = "Option::is_none")]
        renews: Option<&'a str>,
        /// SHA-256 of the certificate's SubjectPublicKeyInfo, hex.
        spki_sha256: &'a str,
        /// notBefore, RFC 3339.
        not_before: String,
        /// notAfter, RFC 3339.
        not_after: String,
        /// The client's address.
        #[serde(skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    /// A certificate request was refused.
    Refused {
        /// The request id.
        request_id: &'a str,
        /// The HTTP status answered.
        status: u16,
        /// The reason, as the client was told it (or the log's, for a 5xx).
        reason: &'a str,
        /// The user the request named or authenticated as, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<&'a str>,
        /// How the user was authenticated, when that succeeded.
        #[serde(skip_serializing_if = "Option::is_none")]
        method: Option<&'a str>,
        /// The retriever's subject, when a retriever asked.
        #[serde(skip_serializing_if = "Option::is_none")]
        retriever: Option<&'a str>,
        /// The client's address.
        #[serde(skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    /// Certificates were revoked: one by serial (and the renewals descending from it),
    /// or every unexpired one of a user.
    Revoked {
        /// The serial named, hex; absent when all of a user's were revoked.
        #[serde(skip_serializing_if = "Option::is_none")]
        serial: Option<&'a str>,
        /// Whose certificates.
        user: &'a str,
        /// RFC 5280 reason name.
        reason: &'a str,
        /// How many certificates were revoked in all.
        count: u64,
    },
    /// A user was added (`user add`).
    UserAdded {
        /// The user.
        user: &'a str,
    },
    /// A user was imported with a password hash from another system (`user import`).
    UserImported {
        /// The user.
        user: &'a str,
        /// The hash's scheme (not the hash).
        scheme: &'a str,
    },
    /// A user's password was changed (`user passwd`).
    PasswordChanged {
        /// The user.
        user: &'a str,
    },
    /// A user was disabled (`user disable`).
    UserDisabled {
        /// The user.
        user: &'a str,
        /// True when the user had no local account and a disabled marker was
        /// recorded to refuse a directory user of that name.
        directory_marker: bool,
    },
    /// A user was enabled again (`user enable`).
    UserEnabled {
        /// The user.
        user: &'a str,
    },
    /// A user was removed (`user remove`).
    UserRemoved {
        /// The user.
        user: &'a str,
        /// Certificates revoked with it (`--revoke`).
        revoked: u64,
    },
    /// A name's failed passwords were forgotten (`user unlock`).
    UserUnlocked {
        /// The name.
        user: &'a str,
        /// Whether any failures were recorded.
        had_failures: bool,
    },
    /// The issuing CA was replaced (`ca rotate`); the old one is retired.
    CaRotated {
        /// The CA that issued until now.
        old_ca: &'a str,
        /// The CA that issues from now on (once the servers restart).
        new_ca: &'a str,
        /// Where the retired CA's certificate is kept.
        retired_cert: &'a str,
    },
    /// A new CRL was signed and published.
    CrlPublished {
        /// The CA that signed it (the active issuing CA, or a retired one).
        issuer: String,
        /// Its CRL number.
        number: u64,
        /// Entries (revoked, unexpired certificates).
        entries: usize,
        /// thisUpdate, RFC 3339.
        this_update: String,
        /// nextUpdate, RFC 3339.
        next_update: String,
    },
}

impl Event<'_> {
    /// The event's name, as in the record's `event` key.
    pub fn name(&self) -> &'static str {
        match self {
            Event::ServerStarted { .. } => "server_started",
            Event::ServerStopped { .. } => "server_stopped",
            Event::Issued { .. } => "issued",
            Event::Refused { .. } => "refused",
            Event::Revoked { .. } => "revoked",
            Event::UserAdded { .. } => "user_added",
            Event::UserImported { .. } => "user_imported",
            Event::PasswordChanged { .. } => "password_changed",
            Event::UserDisabled { .. } => "user_disabled",
            Event::UserEnabled { .. } => "user_enabled",
            Event::UserRemoved { .. } => "user_removed",
            Event::UserUnlocked { .. } => "user_unlocked",
            Event::CrlPublished { .. } => "crl_published",
            Event::CaRotated { .. } => "ca_rotated",
        }
    }
}

/// Who wrote a record: the server, or a CLI command and the account running it.
#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    /// `server` or `cli`.
    pub source: &'static str,
    /// The process id.
    pub pid: u32,
    /// For the CLI: the user id it ran as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// For the CLI: the login name of whoever ran it (`SUDO_USER`, else `USER` or
    /// `LOGNAME`), as the environment says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_user: Option<String>,
}

impl Actor {
    /// The server process.
    pub fn server() -> Actor {
        Actor {
            source: "server",
            pid: std::process::id(),
            uid: None,
            os_user: None,
        }
    }

    /// A CLI command, run by the account the environment names.
    pub fn cli() -> Actor {
        let os_user = ["SUDO_USER", "USER", "LOGNAME"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
        // The owner of our /proc entry is our effective user id.
        let uid = std::fs::metadata("/proc/self").ok().map(|m| m.uid());
        Actor {
            source: "cli",
            pid: std::process::id(),
            uid,
            os_user,
        }
    }
}

#[derive(Serialize)]
struct Record<'a> {
    time: String,
    #[serde(flatten)]
    event: &'a Event<'a>,
    #[serde(flatten)]
    actor: &'a Actor,
}

/// RFC 3339 in UTC with exactly three decimals, as every time in a record is
/// written (fixed width: records sort and align as text).
pub fn timestamp(t: OffsetDateTime) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(FORMAT)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// The record of `event` at `now` by `actor`: one JSON object and a newline.
pub fn encode(now: OffsetDateTime, actor: &Actor, event: &Event<'_>) -> Vec<u8> {
    let record = Record {
        time: timestamp(now),
        event,
        actor,
    };
    // Serialising strings and numbers into a Vec cannot fail.
    let mut line = serde_json::to_vec(&record).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Why an audit record could not be written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot write the audit log {target}: {message}")]
pub struct AuditError {
    /// The file, or "standard output".
    pub target: String,
    /// The I/O error.
    pub message: String,
}

/// A file's name, or "standard output" when there is none.
fn target_name(path: Option<&Path>) -> String {
    path.map_or_else(|| "standard output".into(), |p| p.display().to_string())
}

/// Where records go, and the open file when it is one.
#[derive(Debug)]
pub struct Sink {
    path: Option<PathBuf>,
    fsync: bool,
    file: Option<(File, u64, u64)>,
}

impl Sink {
    /// A sink for `section`; the file is opened at the first write (or [`Sink::ready`]).
    pub fn new(section: &AuditSection) -> Sink {
        Sink {
            path: (!section.is_stdout()).then(|| section.path.clone()),
            fsync: section.fsync,
            file: None,
        }
    }

    /// The file, or "standard output", for messages.
    pub fn target(&self) -> String {
        target_name(self.path.as_deref())
    }

    fn error(&self, e: std::io::Error) -> AuditError {
        AuditError {
            target: self.target(),
            message: e.to_string(),
        }
    }

    /// Opens the file (or opens it again if it was moved or removed since), so that
    /// a command can find out it cannot write before it changes anything.
    pub fn ready(&mut self) -> Result<(), AuditError> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        self.file_for(&path).map(|_| ()).map_err(|e| self.error(e))
    }

    fn file_for(&mut self, path: &Path) -> std::io::Result<&mut File> {
        let current = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        let stale = match (&self.file, current) {
            (Some((_, dev, ino)), Some(now)) => (*dev, *ino) != now,
            _ => true,
        };
        if stale {
            let f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(path)?;
            let m = f.metadata()?;
            self.file = Some((f, m.dev(), m.ino()));
        }
        match &mut self.file {
            Some((f, _, _)) => Ok(f),
            None => Err(std::io::Error::other("audit file not open")),
        }
    }

    /// Appends whole lines in one write.
    pub fn write(&mut self, lines: &[u8]) -> Result<(), AuditError> {
        let Some(path) = self.path.clone() else {
            let mut out = std::io::stdout().lock();
            return out
                .write_all(lines)
                .and_then(|()| out.flush())
                .map_err(|e| self.error(e));
        };
        let fsync = self.fsync;
        let result = self.file_for(&path).and_then(|f| {
            f.write_all(lines)?;
            if fsync {
                f.sync_data()?;
            }
            Ok(())
        });
        if result.is_err() {
            // Opened afresh next time: the disk may have been fixed meanwhile.
            self.file = None;
        }
        result.map_err(|e| self.error(e))
    }
}

/// The audit log as a CLI command writes it: synchronously, after checking before
/// any change that it can.
#[derive(Debug)]
pub struct CliAudit {
    sink: Option<Sink>,
    required: bool,
    actor: Actor,
}

impl CliAudit {
    /// The audit log of `section` (none when absent).
    pub fn new(section: Option<&AuditSection>) -> CliAudit {
        CliAudit {
            sink: section.map(Sink::new),
            required: section.is_none_or(|s| s.required),
            actor: Actor::cli(),
        }
    }

    /// Before a change: an error if the log is required and cannot be written, so
    /// that nothing changes unaudited. A log that is not required only warns.
    pub fn ready(&mut self) -> Result<(), AuditError> {
        let Some(sink) = &mut self.sink else {
            return Ok(());
        };
        match sink.ready() {
            Err(e) if !self.required => {
                tracing::warn!(error = %e, "audit record will be missing ([audit] required = false)");
                Ok(())
            }
            Err(e) => Err(AuditError {
                message: format!("{}; nothing was changed ([audit] required)", e.message),
                ..e
            }),
            ok => ok,
        }
    }

    /// After a change: its record. An error only if the log is required.
    pub fn record(&mut self, now: OffsetDateTime, event: &Event<'_>) -> Result<(), AuditError> {
        let Some(sink) = &mut self.sink else {
            return Ok(());
        };
        match sink.write(&encode(now, &self.actor, event)) {
            Err(e) if !self.required => {
                tracing::error!(error = %e, event = event.name(), "audit record not written");
                Ok(())
            }
            Err(e) => Err(AuditError {
                message: format!(
                    "{}; the change was made, but its {} record is missing",
                    e.message,
                    event.name()
                ),
                ..e
            }),
            ok => ok,
        }
    }
}

/// A record waiting for the writer thread, and who to tell when it is written.
struct Job {
    line: Vec<u8>,
    done: tokio::sync::oneshot::Sender<Result<(), AuditError>>,
}

/// Records waiting for the writer at most; more writers wait their turn.
const QUEUE: usize = 1024;
/// Records written in one `write` at most.
const BATCH: usize = 256;

/// The server's audit log: a thread that appends records in batches, so that
/// requests never block the runtime on the disk and records queued together cost
/// one write.
#[derive(Debug)]
pub struct AuditLog {
    tx: Option<tokio::sync::mpsc::Sender<Job>>,
    path: Option<PathBuf>,
    required: bool,
    actor: Actor,
    errors: Counter,
}

impl AuditLog {
    /// No audit log.
    pub fn off() -> AuditLog {
        AuditLog {
            tx: None,
            path: None,
            required: false,
            actor: Actor::server(),
            errors: Counter::default(),
        }
    }

    /// Opens the log of `section` and starts its writer. A file that cannot be
    /// opened is an error when the log is required (the server does not start).
    /// Each record that cannot be written counts in `errors`.
    pub fn start(section: Option<&AuditSection>, errors: &Counter) -> Result<AuditLog, AuditError> {
        let Some(section) = section else {
            return Ok(AuditLog::off());
        };
        let mut sink = Sink::new(section);
        if let Err(e) = sink.ready() {
            if section.required {
                return Err(e);
            }
            tracing::error!(error = %e, "audit log not writable; continuing ([audit] required = false)");
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                // Ends when the last sender (the AuditLog) is dropped.
                while let Some(first) = rx.blocking_recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < BATCH {
                        match rx.try_recv() {
                            Ok(j) => jobs.push(j),
                            Err(_) => break,
                        }
                    }
                    let buf: Vec<u8> = jobs.iter().flat_map(|j| j.line.iter().copied()).collect();
                    let result = sink.write(&buf);
                    for j in jobs {
                        let _ = j.done.send(result.clone());
                    }
                }
            })
            .map_err(|e| AuditError {
                target: section.path.display().to_string(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(AuditLog {
            tx: Some(tx),
            path: (!section.is_stdout()).then(|| section.path.clone()),
            required: section.required,
            actor: Actor::server(),
            errors: errors.clone(),
        })
    }

    /// Whether a record that cannot be written must fail what it records.
    pub fn required(&self) -> bool {
        self.tx.is_some() && self.required
    }

    /// Writes the record of `event` at `now`, and waits until it is written.
    pub async fn record(&self, now: OffsetDateTime, event: &Event<'_>) -> Result<(), AuditError> {
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        let (done, written) = tokio::sync::oneshot::channel();
        let job = Job {
            line: encode(now, &self.actor, event),
            done,
        };
        let lost = || AuditError {
            target: self.target(),
            message: "the audit writer has stopped".into(),
        };
        let result = match tx.send(job).await {
            Ok(()) => written.await.unwrap_or_else(|_| Err(lost())),
            Err(_) => Err(lost()),
        };
        if let Err(e) = &result {
            self.errors.inc();
            tracing::error!(error = %e, event = event.name(), "audit record not written");
        }
        result
    }

    /// Whether the audit file can be opened for appending now (`/readyz`); `None`
    /// when there is no file to check.
    pub fn probe(&self) -> Option<Result<(), AuditError>> {
        let path = self.path.as_ref()?;
        let r = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map(|_| ())
            .map_err(|e| AuditError {
                target: path.display().to_string(),
                message: e.to_string(),
            });
        Some(r)
    }

    fn target(&self) -> String {
        target_name(self.path.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(path: PathBuf) -> AuditSection {
        AuditSection {
            path,
            required: true,
            fsync: false,
        }
    }

    #[test]
    fn a_record_is_one_json_line_with_time_event_and_actor() {
        let now = time::macros::datetime!(2026-11-29 10:00:00.123456 UTC);
        let line = encode(
            now,
            &Actor::server(),
            &Event::Revoked {
                serial: Some("0a\"\n"),
                user: "alice",
                reason: "keyCompromise",
                count: 2,
            },
        );
        let text = String::from_utf8(line).unwrap();
        assert!(text.ends_with('\n'));
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["time"], "2026-11-29T10:00:00.123Z");
        assert_eq!(v["event"], "revoked");
        assert_eq!(v["serial"], "0a\"\n");
        assert_eq!(v["count"], 2);
        assert_eq!(v["source"], "server");
        assert!(v.get("os_user").is_none());
        let whole = time::macros::datetime!(2026-11-29 10:00:00.1 UTC);
        assert_eq!(timestamp(whole), "2026-11-29T10:00:00.100Z");
    }

    #[test]
    fn a_moved_file_is_replaced_at_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut sink = Sink::new(&section(path.clone()));
        sink.write(b"one\n").unwrap();
        std::fs::rename(&path, dir.path().join("audit.jsonl.1")).unwrap();
        sink.write(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("audit.jsonl.1")).unwrap(),
            "one\n"
        );
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[tokio::test]
    async fn the_server_log_waits_for_the_write_and_reports_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::start(Some(&section(path.clone())), &Counter::default()).unwrap();
        let now = OffsetDateTime::now_utc();
        log.record(now, &Event::ServerStopped { reason: "test" })
            .await
            .unwrap();
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("server_stopped")
        );
        // A directory where the file was: the next write cannot open it.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let e = log
            .record(now, &Event::ServerStopped { reason: "test" })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("audit.jsonl"), "{e}");
        assert!(log.probe().unwrap().is_err());
    }

    #[test]
    fn a_required_log_that_cannot_open_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let s = section(dir.path().join("missing/audit.jsonl"));
        assert!(AuditLog::start(Some(&s), &Counter::default()).is_err());
        let best_effort = AuditSection {
            required: false,
            ..s
        };
        assert!(AuditLog::start(Some(&best_effort), &Counter::default()).is_ok());
    }
}
