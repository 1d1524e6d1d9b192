//! Why a client operation failed, phrased so that a person can act on it.

use std::path::PathBuf;

/// A failure of the client library. Every message says what happened and, where
/// there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service URL is not usable.
    #[error("service URL {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No TCP connection could be made.
    #[error("cannot reach {addr}: {error} (is the URL right and the service running?)")]
    Unreachable {
        /// host:port.
        addr: String,
        /// The connection error (shown in the message, so not a `source`).
        error: std::io::Error,
    },
    /// The service took too long.
    #[error("no answer from {addr} within {secs} s")]
    Timeout {
        /// host:port.
        addr: String,
        /// The limit.
        secs: u64,
    },
    /// The server's TLS certificate was not trusted.
    #[error("{0}")]
    UntrustedServer(Box<UntrustedServer>),
    /// The TLS handshake failed for a reason other than trust.
    #[error("TLS handshake with {addr} failed: {reason}")]
    Tls {
        /// host:port.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The HTTP exchange failed.
    #[error("HTTP exchange with {addr} failed: {reason}")]
    Http {
        /// host:port.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The service answered with an error status.
    #[error("{}", status_message(*.status, .message, .retry_after.as_deref(), .url))]
    Status {
        /// The HTTP status.
        status: u16,
        /// The server's one-line explanation (sanitised).
        message: String,
        /// `Retry-After`, when given.
        retry_after: Option<String>,
        /// The URL asked.
        url: String,
    },
    /// The trust roots received are unusable, or do not match the pin.
    #[error("trust roots: {0}")]
    TrustRoots(String),
    /// The certificate received is not what was asked for.
    #[error("the certificate received was refused: {0}")]
    Certificate(String),
    /// A key or certificate could not be made or read.
    #[error("{0}")]
    Key(String),
    /// An output file's directory does not exist.
    #[error(
        "cannot write {}: the directory {} does not exist (create it, or choose another path)",
        .path.display(),
        .dir.display()
    )]
    NoDirectory {
        /// The file to be written.
        path: PathBuf,
        /// Its missing directory.
        dir: PathBuf,
    },
    /// A local file could not be read or written.
    #[error("{}: {error}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error (shown in the message, so not a `source`).
        error: std::io::Error,
    },
}

/// A server certificate that failed verification: what was seen, so that a person
/// can compare it with what the operator publishes.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "TLS: the certificate of {addr} is not trusted by {trust}: {reason}\n  server certificate: {subject}\n  SHA-256 fingerprint: {fingerprint}\n  issued by: {issuer}\n(if the CA really changed, fetch its trust roots again pinned by the fingerprint the operator publishes: onlineca trustroots --fingerprint ...)"
)]
pub struct UntrustedServer {
    /// host:port.
    pub addr: String,
    /// What the certificate was checked against.
    pub trust: String,
    /// Why it was refused.
    pub reason: String,
    /// Its subject.
    pub subject: String,
    /// Its issuer.
    pub issuer: String,
    /// Its SHA-256 fingerprint.
    pub fingerprint: String,
}

impl ClientError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ClientError {
        let path = path.into();
        move |error| ClientError::Io { path, error }
    }
}

fn status_message(status: u16, message: &str, retry_after: Option<&str>, url: &str) -> String {
    let said = if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    };
    match status {
        // The server's line says which credential failed (a disabled account, an
        // expired certificate...): generic advice would mislead, so it is only for a
        // server that gave no reason.
        401 if message.is_empty() => {
            "refused (401 Unauthorized) (check the username and password, or the certificate presented)".into()
        }
        401 => format!("refused (401 Unauthorized){said}"),
        405 => format!("the service refused the request (405){said}"),
        429 => {
            let wait = match retry_after {
                // Our server's line already names the wait ("retry after N seconds").
                Some(s) if message.contains(&format!("{s} second")) => String::new(),
                Some(s) => match s.parse::<u64>() {
                    Ok(n) => format!("; try again in {n} seconds"),
                    Err(_) => format!("; try again after {s}"),
                },
                None => "; try again later".into(),
            };
            format!("too many requests (429){said}{wait}")
        }
        404 => format!(
            "not found (404) at {url}: is the service URL its base, for example https://ca.example.org/onlineca?"
        ),
        s if s >= 500 => format!("the service failed ({s}){said}"),
        s => format!("unexpected answer {s} from {url}{said}"),
    }
}

/// Result of the client library.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, message: &str, retry_after: Option<&str>) -> String {
        ClientError::Status {
            status: code,
            message: message.into(),
            retry_after: retry_after.map(Into::into),
            url: "https://ca.example.org/onlineca/certificate/".into(),
        }
        .to_string()
    }

    #[test]
    fn statuses_read_as_advice() {
        let s = status(429, "user locked out", Some("120"));
        assert!(
            s.contains("user locked out") && s.contains("try again in 120 seconds"),
            "{s}"
        );
        let s = status(429, "slow down", Some("Wed, 21 Oct 2026 07:28:00 GMT"));
        assert!(s.contains("try again after Wed, 21 Oct"), "{s}");
        let s = status(405, "key type not allowed: RSA 1024", None);
        assert!(s.contains("(405): key type not allowed: RSA 1024"), "{s}");
        let s = status(401, "invalid username or password", None);
        assert!(
            s.contains("401") && s.contains("invalid username or password"),
            "{s}"
        );
        // A disabled account is not a typo in the password.
        let s = status(401, "user account is disabled", None);
        assert!(!s.contains("check the username"), "{s}");
        let s = status(401, "", None);
        assert!(s.contains("check the username and password"), "{s}");
        // The wait is said once, whoever says it.
        let s = status(
            429,
            "too many failed login attempts for this user; retry after 300 seconds",
            Some("300"),
        );
        assert_eq!(s.matches("300 seconds").count(), 1, "{s}");
        let s = status(404, "", None);
        assert!(s.contains("base"), "{s}");
        let s = status(503, "store unavailable", None);
        assert!(s.contains("(503): store unavailable"), "{s}");
    }
}
