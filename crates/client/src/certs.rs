//! Reading certificates: PEM blocks, subjects, validity, public keys.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{ClientError, Result};
use crate::fingerprint::Fingerprint;

/// Every `CERTIFICATE` PEM block in `data`, in order (other blocks are skipped).
pub fn pem_certificates(data: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_slice_iter(data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientError::Certificate(format!("bad PEM: {e}")))
}

/// A certificate as PEM (LF line ends, final newline).
pub fn to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// What a person needs to recognise a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Subject in RFC 4514 form.
    pub subject: String,
    /// Issuer in RFC 4514 form.
    pub issuer: String,
    /// SHA-256 fingerprint.
    pub fingerprint: Fingerprint,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Whether basicConstraints says CA:TRUE.
    pub is_ca: bool,
}

impl CertSummary {
    /// Reads a DER certificate.
    pub fn of(der: &[u8]) -> Result<CertSummary> {
        let (_, c) = X509Certificate::from_der(der)
            .map_err(|e| ClientError::Certificate(format!("unreadable certificate: {e}")))?;
        Ok(CertSummary {
            subject: c.subject().to_string(),
            issuer: c.issuer().to_string(),
            fingerprint: Fingerprint::of(der),
            not_after: c.validity().not_after.to_datetime(),
            is_ca: c.is_ca(),
        })
    }

    /// A best-effort description that never fails (for error messages).
    pub fn describe(der: &[u8]) -> (String, String, String) {
        match CertSummary::of(der) {
            Ok(s) => (s.subject, s.issuer, s.fingerprint.to_string()),
            Err(_) => (
                "(unreadable)".into(),
                "(unreadable)".into(),
                Fingerprint::of(der).to_string(),
            ),
        }
    }
}

/// The DER SubjectPublicKeyInfo of a certificate.
pub fn public_key_info(der: &[u8]) -> Result<Vec<u8>> {
    let (_, c) = X509Certificate::from_der(der)
        .map_err(|e| ClientError::Certificate(format!("unreadable certificate: {e}")))?;
    Ok(c.public_key().raw.to_vec())
}

/// The first certificate of a PEM file and when it expires; `None` if the file does
/// not exist. Used to decide whether renewing is due.
pub fn first_not_after(path: &std::path::Path) -> Result<Option<OffsetDateTime>> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ClientError::io(path)(e)),
    };
    let certs = pem_certificates(&data)?;
    let first = certs.first().ok_or_else(|| {
        ClientError::Certificate(format!("{}: no certificate in it", path.display()))
    })?;
    Ok(Some(CertSummary::of(first)?.not_after))
}
