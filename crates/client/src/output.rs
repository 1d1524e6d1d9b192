//! The forms a certificate and key are written in: separate PEM files, one PEM
//! bundle (certificate(s) then key, the deployed layout), and PKCS#12.

use std::path::{Path, PathBuf};

use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
use time::OffsetDateTime;

use crate::certificate::Issued;
use crate::certs::{CertSummary, first_not_after};
use crate::error::{ClientError, Result};
use crate::files::{PRIVATE, PUBLIC, write_all_atomic};
use crate::fingerprint::Fingerprint;

/// Where to write an issued certificate. At least one output is needed.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// The certificate(s), PEM (mode 0644).
    pub cert: Option<PathBuf>,
    /// The private key, PKCS#8 PEM (mode 0600).
    pub key: Option<PathBuf>,
    /// Certificate(s) then private key in one PEM file (mode 0600).
    pub bundle: Option<PathBuf>,
    /// PKCS#12 (mode 0600) and its password.
    pub p12: Option<(PathBuf, String)>,
}

impl Outputs {
    /// Whether no output is set.
    pub fn is_empty(&self) -> bool {
        self.cert.is_none() && self.key.is_none() && self.bundle.is_none() && self.p12.is_none()
    }

    /// The paths, for messages.
    pub fn paths(&self) -> Vec<&Path> {
        [
            self.cert.as_deref(),
            self.key.as_deref(),
            self.bundle.as_deref(),
            self.p12.as_ref().map(|(p, _)| p.as_path()),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// When the certificate already written expires: the earliest expiry among the
    /// outputs holding a certificate, or `None` if any of them is missing (then a
    /// new certificate is due).
    pub fn existing_not_after(&self) -> Result<Option<OffsetDateTime>> {
        let mut earliest: Option<OffsetDateTime> = None;
        let mut any = false;
        for p in [self.cert.as_deref(), self.bundle.as_deref()]
            .into_iter()
            .flatten()
        {
            any = true;
            match first_not_after(p)? {
                Some(t) => earliest = Some(earliest.map_or(t, |e| e.min(t))),
                None => return Ok(None),
            }
        }
        if let Some((p, password)) = &self.p12 {
            any = true;
            match p12_not_after(p, password)? {
                Some(t) => earliest = Some(earliest.map_or(t, |e| e.min(t))),
                None => return Ok(None),
            }
        }
        if let Some(k) = &self.key
            && !k.exists()
        {
            return Ok(None);
        }
        Ok(if any { earliest } else { None })
    }

    /// Writes every output: all are staged first and then renamed into place, so a
    /// failure leaves the previous files as they were.
    pub fn write(&self, issued: &Issued) -> Result<()> {
        let cert = issued.cert_pem();
        let bundle = issued.bundle_pem();
        let p12 = match &self.p12 {
            Some((_, password)) => Some(pkcs12(issued, password)?),
            None => None,
        };
        let mut files: Vec<(&Path, &[u8], u32)> = Vec::new();
        if let Some(p) = &self.cert {
            files.push((p, cert.as_bytes(), PUBLIC));
        }
        if let Some(p) = &self.key {
            files.push((p, issued.key_pem().as_bytes(), PRIVATE));
        }
        if let Some(p) = &self.bundle {
            files.push((p, bundle.as_bytes(), PRIVATE));
        }
        if let (Some((p, _)), Some(data)) = (&self.p12, &p12) {
            files.push((p, data, PRIVATE));
        }
        write_all_atomic(&files)
    }
}

/// A PKCS#12 file with the key and the chain, encrypted with PBES2 (PBKDF2-SHA256,
/// AES-256-CBC) and MACed with HMAC-SHA256: what OpenSSL 3, curl, browsers and
/// Python `cryptography` read without legacy algorithms.
pub fn pkcs12(issued: &Issued, password: &str) -> Result<Vec<u8>> {
    let err = |e: p12_keystore::error::Error| ClientError::Key(format!("PKCS#12: {e}"));
    let key = PrivateKey::from_der(issued.key_der()).map_err(err)?;
    let certs = issued
        .chain
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    let local_key_id = Fingerprint::of(issued.chain[0].as_ref()).as_bytes()[..20].to_vec();
    let mut store = KeyStore::new();
    let alias = friendly_name(&issued.summary);
    store.add_entry(
        &alias,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)),
    );
    store.writer(password).write().map_err(err)
}

/// The PKCS#12 friendly name: the certificate's CN, else its subject.
fn friendly_name(s: &CertSummary) -> String {
    s.subject
        .split(',')
        .map(str::trim)
        .find_map(|rdn| rdn.strip_prefix("CN="))
        .unwrap_or(&s.subject)
        .to_string()
}

/// When the certificate in a PKCS#12 file expires; `None` if the file is missing.
pub fn p12_not_after(path: &Path, password: &str) -> Result<Option<OffsetDateTime>> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ClientError::io(path)(e)),
    };
    let store = KeyStore::from_pkcs12(&data, password, p12_keystore::Pkcs12ImportPolicy::default())
        .map_err(|e| {
            ClientError::Key(format!(
                "{}: cannot read it with the PKCS#12 password given (wrong password?): {e}",
                path.display()
            ))
        })?;
    let (_, chain) = store
        .private_key_chain()
        .ok_or_else(|| ClientError::Key(format!("{}: no key and certificate", path.display())))?;
    let first = chain
        .certs()
        .first()
        .ok_or_else(|| ClientError::Key(format!("{}: no certificate", path.display())))?;
    Ok(Some(CertSummary::of(first.as_der())?.not_after))
}
