//! Fetching the trust roots from `GET {prefix}/trustroots/`, with an explicit
//! trust decision: pinned by a CA fingerprint, taken on first use, or checked
//! against a trust directory already held.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::{Method, StatusCode};
use onlineca_core::trustroots::TrustFile;
use rustls_pki_types::CertificateDer;

use crate::certs::{CertSummary, pem_certificates};
use crate::endpoint::Endpoint;
use crate::error::{ClientError, Result};
use crate::fingerprint::Fingerprint;
use crate::http::{Outgoing, send};
use crate::tls::{RecordingVerifier, root_store, verify_server_chain};
use crate::trustdir::{WriteReport, load_cas, write_files};

/// How the server is trusted while its trust roots are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The trust roots must hold a CA certificate with this SHA-256 fingerprint,
    /// and the server's own TLS certificate must verify against that CA.
    Pinned(Fingerprint),
    /// Trust on first use, explicitly: whatever the server presents is accepted
    /// (its own certificate must still verify against the trust roots it sends).
    Bootstrap,
    /// The server's TLS certificate must verify against this trust directory (a
    /// refresh).
    Dir(PathBuf),
}

/// Trust roots received and checked.
#[derive(Debug, Clone)]
pub struct TrustRoots {
    /// The files, in the order sent.
    pub files: Vec<TrustFile>,
    /// The CA certificates among them.
    pub cas: Vec<CertSummary>,
    /// The server's TLS certificate.
    pub server: CertSummary,
    /// The CA that matched the pin, for [`Trust::Pinned`].
    pub pinned: Option<CertSummary>,
}

impl TrustRoots {
    /// Writes the files into `dir` (see [`write_files`]).
    pub fn write_to(&self, dir: &Path) -> Result<WriteReport> {
        write_files(dir, &self.files)
    }
}

/// A trust-roots answer read, before any trust decision.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The files, in the order sent.
    pub files: Vec<TrustFile>,
    /// Every CA certificate among them, DER.
    pub ca_ders: Vec<CertificateDer<'static>>,
    /// The same certificates, summarised.
    pub cas: Vec<CertSummary>,
}

/// Reads the body of a `GET {prefix}/trustroots/` answer (either encoding) into its
/// files and the CA certificates they hold; at least one certificate is required.
/// Pure: [`fetch_trustroots`] calls it on what the server sent, the fuzzer (`fuzz/`)
/// on anything.
pub fn parse_answer(body: &[u8]) -> Result<Answer> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ClientError::TrustRoots("the answer is not text".into()))?;
    let files = onlineca_core::trustroots::decode(text)
        .map_err(|e| ClientError::TrustRoots(e.to_string()))?;

    let mut ca_ders: Vec<CertificateDer<'static>> = Vec::new();
    for f in &files {
        let certs = pem_certificates(&f.data)
            .map_err(|e| ClientError::TrustRoots(format!("{}: {e}", f.name)))?;
        ca_ders.extend(certs);
    }
    if ca_ders.is_empty() {
        return Err(ClientError::TrustRoots(
            "the answer holds no CA certificate".into(),
        ));
    }
    let cas = ca_ders
        .iter()
        .map(|d| CertSummary::of(d))
        .collect::<Result<Vec<_>>>()?;
    Ok(Answer {
        files,
        ca_ders,
        cas,
    })
}

/// Fetches and checks the trust roots of the service at `endpoint`. Nothing is
/// written: on any failure there is nothing to undo.
pub async fn fetch_trustroots(
    endpoint: &Endpoint,
    trust: &Trust,
    timeout: Duration,
) -> Result<TrustRoots> {
    let (verifier, what) = match trust {
        Trust::Dir(dir) => (
            RecordingVerifier::new(Some(root_store(
                &load_cas(dir)?,
                &dir.display().to_string(),
            )?))?,
            format!("the trust roots in {}", dir.display()),
        ),
        Trust::Pinned(_) | Trust::Bootstrap => {
            (RecordingVerifier::new(None)?, "nothing yet".to_string())
        }
    };
    let route = "trustroots/";
    let resp = send(
        endpoint,
        verifier,
        &what,
        None,
        Outgoing {
            method: Method::GET,
            route,
            content_type: None,
            authorization: None,
            body: Vec::new(),
        },
        timeout,
    )
    .await?;
    if resp.status != StatusCode::OK {
        return Err(resp.error(endpoint, route));
    }
    let server_der = resp
        .server_chain
        .first()
        .cloned()
        .ok_or_else(|| ClientError::TrustRoots("the server presented no certificate".into()))?;
    let server = CertSummary::of(&server_der)?;
    let Answer {
        files,
        ca_ders,
        cas,
    } = parse_answer(&resp.body)?;
    let found = || {
        let mut s = String::new();
        for c in &cas {
            s.push_str(&format!(
                "\n  CA {}\n     SHA-256 {}",
                c.subject, c.fingerprint
            ));
        }
        s.push_str(&format!(
            "\n  server certificate {} (issued by {})\n     SHA-256 {}",
            server.subject, server.issuer, server.fingerprint
        ));
        s
    };
    let name = endpoint.server_name();

    let pinned = match trust {
        Trust::Pinned(fp) => {
            let Some(i) = cas.iter().position(|c| c.fingerprint == *fp) else {
                return Err(ClientError::TrustRoots(format!(
                    "refused: no CA certificate received has the SHA-256 fingerprint {fp}; nothing was written. Received:{}",
                    found()
                )));
            };
            let anchor = root_store(&ca_ders[i..=i], "the pinned CA")?;
            verify_server_chain(&resp.server_chain, &ca_ders, anchor, &name).map_err(|e| {
                ClientError::TrustRoots(format!(
                    "refused: the server's TLS certificate does not verify against the pinned CA {} ({e}); nothing was written. Received:{}",
                    cas[i].subject,
                    found()
                ))
            })?;
            Some(cas[i].clone())
        }
        Trust::Bootstrap | Trust::Dir(_) => {
            let all = root_store(&ca_ders, "the trust roots received")?;
            verify_server_chain(&resp.server_chain, &ca_ders, all, &name).map_err(|e| {
                ClientError::TrustRoots(format!(
                    "refused: the trust roots received do not verify the server's own TLS certificate ({e}); nothing was written. Received:{}",
                    found()
                ))
            })?;
            None
        }
    };
    Ok(TrustRoots {
        files,
        cas,
        server,
        pinned,
    })
}
