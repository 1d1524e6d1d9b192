//! Getting a certificate: a key made here, a CSR, `POST {prefix}/certificate/`
//! authenticated by password or by the current certificate (renewal), and the
//! checks that the answer is what was asked for.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use hyper::{Method, StatusCode};
use onlineca_core::pki::KeyType;
use rcgen::{CertificateParams, DnType, KeyPair, PublicKeyData};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::certs::{CertSummary, pem_certificates, public_key_info, to_pem};
use crate::endpoint::Endpoint;
use crate::error::{ClientError, Result};
use crate::http::{Outgoing, send};
use crate::tls::{ClientIdentity, RecordingVerifier, root_store, verify_client_chain};
use crate::trustdir::load_cas;

/// How the request is authenticated.
pub enum Credentials {
    /// HTTP Basic with a username and password.
    Password {
        /// The username.
        user: String,
        /// The password.
        password: String,
    },
    /// Renewal: the current certificate and key, presented as a TLS client
    /// certificate; no `Authorization` header is sent.
    Certificate(ClientIdentity),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password { user, .. } => f
                .debug_struct("Password")
                .field("user", user)
                .finish_non_exhaustive(),
            Credentials::Certificate(id) => f.debug_tuple("Certificate").field(id).finish(),
        }
    }
}

impl Credentials {
    /// The current certificate chain and key from PEM files, for renewal.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Credentials> {
        let data = std::fs::read(cert).map_err(ClientError::io(cert))?;
        let chain = pem_certificates(&data)?;
        if chain.is_empty() {
            return Err(ClientError::Key(format!(
                "{}: no certificate in it",
                cert.display()
            )));
        }
        let key_der = rustls_pki_types::PrivateKeyDer::from_pem_file(key).map_err(|e| {
            ClientError::Key(format!("{}: no usable private key: {e}", key.display()))
        })?;
        Ok(Credentials::Certificate(ClientIdentity {
            chain,
            key: key_der,
        }))
    }
}

/// A fresh key pair of the given type, made on this machine.
pub fn generate_key(kind: KeyType) -> Result<KeyPair> {
    kind.generate()
        .map_err(|e| ClientError::Key(format!("key generation failed: {e}")))
}

/// Reads a PEM private key (PKCS#8, or PKCS#1 / SEC1), to keep it on renewal.
pub fn load_key(path: &Path) -> Result<KeyPair> {
    let der = rustls_pki_types::PrivateKeyDer::from_pem_file(path)
        .map_err(|e| ClientError::Key(format!("{}: no usable private key: {e}", path.display())))?;
    KeyPair::try_from(&der)
        .map_err(|e| ClientError::Key(format!("{}: unsupported private key: {e}", path.display())))
}

/// A PEM CSR for `key`. The CA ignores the subject; `cn` only makes the request
/// recognisable in logs.
pub fn make_csr(key: &KeyPair, cn: Option<&str>) -> Result<String> {
    let mut params = CertificateParams::default();
    if let Some(cn) = cn {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    params
        .serialize_request(key)
        .and_then(|csr| csr.pem())
        .map_err(|e| ClientError::Key(format!("cannot make the CSR: {e}")))
}

/// A certificate issued to a key held here.
pub struct Issued {
    /// The certificate then the issuing chain, as received.
    pub chain: Vec<CertificateDer<'static>>,
    /// The certificate's subject, issuer, fingerprint and expiry.
    pub summary: CertSummary,
    key_pem: String,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("summary", &self.summary)
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// The certificate(s) as PEM: the certificate, then the issuing chain.
    pub fn cert_pem(&self) -> String {
        self.chain.iter().map(|c| to_pem(c)).collect()
    }

    /// The private key as PKCS#8 PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The private key as PKCS#8 DER.
    pub fn key_der(&self) -> &[u8] {
        &self.key_der
    }

    /// The deployed clients' layout: certificate(s), then the private key.
    pub fn bundle_pem(&self) -> String {
        let mut s = self.cert_pem();
        s.push_str(&self.key_pem);
        s
    }
}

/// Asks the service for a certificate for `key`, checks the answer, and returns
/// it. The server's TLS certificate and the issued chain must both verify against
/// the trust directory `trust_dir`.
pub async fn get_certificate(
    endpoint: &Endpoint,
    trust_dir: &Path,
    credentials: &Credentials,
    key: &KeyPair,
    timeout: Duration,
) -> Result<Issued> {
    let cas = load_cas(trust_dir)?;
    let trust = format!("the trust roots in {}", trust_dir.display());
    let roots = root_store(&cas, &trust_dir.display().to_string())?;
    let verifier = RecordingVerifier::new(Some(roots.clone()))?;

    let (authorization, identity, cn) = match credentials {
        Credentials::Password { user, password } => {
            if user.is_empty() || user.contains(':') {
                return Err(ClientError::Key(format!(
                    "username {user:?}: must be non-empty and without ':'"
                )));
            }
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            (Some(format!("Basic {token}")), None, Some(user.as_str()))
        }
        Credentials::Certificate(id) => (None, Some(id), None),
    };
    let csr = make_csr(key, cn)?;
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("certificate_request", &csr)
        .finish()
        .into_bytes();
    let route = "certificate/";
    let resp = send(
        endpoint,
        verifier,
        &trust,
        identity,
        Outgoing {
            method: Method::POST,
            route,
            content_type: Some("application/x-www-form-urlencoded"),
            authorization,
            body,
        },
        timeout,
    )
    .await?;
    if resp.status != StatusCode::OK {
        return Err(resp.error(endpoint, route));
    }
    let chain = pem_certificates(&resp.body)?;
    let leaf = chain
        .first()
        .ok_or_else(|| ClientError::Certificate("the answer holds no certificate".into()))?;
    if public_key_info(leaf)? != key.subject_public_key_info() {
        return Err(ClientError::Certificate(
            "it does not carry the public key that was sent".into(),
        ));
    }
    verify_client_chain(&chain, roots).map_err(|e| {
        ClientError::Certificate(format!(
            "it does not verify as a client certificate against {trust}: {e}"
        ))
    })?;
    let summary = CertSummary::of(leaf)?;
    if let Credentials::Certificate(id) = credentials {
        let current = CertSummary::of(id.chain[0].as_ref())?;
        if current.subject != summary.subject {
            return Err(ClientError::Certificate(format!(
                "renewal returned a certificate for {}, not for {}",
                summary.subject, current.subject
            )));
        }
    }
    let key_der = portable_pkcs8(key)?;
    Ok(Issued {
        chain,
        summary,
        key_pem: private_key_pem(&key_der),
        key_der,
    })
}

/// The key as PKCS#8 that every tool reads. aws-lc writes Ed25519 keys as PKCS#8
/// v2 (with the public key), which OpenSSL 3.0 refuses ("unsupported"); those are
/// rewritten as v1.
fn portable_pkcs8(key: &KeyPair) -> Result<Vec<u8>> {
    let der = key.serialize_der();
    if key.algorithm() != &rcgen::PKCS_ED25519 {
        return Ok(der);
    }
    aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(&der)
        .and_then(|k| k.to_pkcs8v1().map_err(Into::into))
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|e| ClientError::Key(format!("Ed25519 key: {e}")))
}

/// PKCS#8 DER as a `PRIVATE KEY` PEM block.
fn private_key_pem(der: &[u8]) -> String {
    to_pem(der).replace("CERTIFICATE-----", "PRIVATE KEY-----")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_carries_the_key_and_verifies() {
        for kind in [KeyType::P256, KeyType::P384, KeyType::Ed25519] {
            let key = generate_key(kind).unwrap();
            let pem = make_csr(&key, Some("alice")).unwrap();
            let der = onlineca_core::csr::decode_text(&pem).unwrap();
            let checked = onlineca_core::csr::check(&der).unwrap();
            assert_eq!(checked.spki_der, key.subject_public_key_info());
        }
    }

    #[test]
    fn ed25519_keys_are_written_as_pkcs8_v1() {
        let key = generate_key(KeyType::Ed25519).unwrap();
        let der = portable_pkcs8(&key).unwrap();
        // version 0, then the Ed25519 OID, then the 32-byte seed: 48 bytes.
        assert_eq!(der.len(), 48);
        assert_eq!(&der[..5], &[0x30, 0x2e, 0x02, 0x01, 0x00]);
        let back = KeyPair::try_from(der.as_slice()).unwrap();
        assert_eq!(
            back.subject_public_key_info(),
            key.subject_public_key_info()
        );
    }

    #[test]
    fn a_renewal_key_file_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let key = generate_key(KeyType::P256).unwrap();
        let p = dir.path().join("k.pem");
        std::fs::write(&p, key.serialize_pem()).unwrap();
        let back = load_key(&p).unwrap();
        assert_eq!(
            back.subject_public_key_info(),
            key.subject_public_key_info()
        );
        assert!(load_key(&dir.path().join("missing")).is_err());
    }
}
