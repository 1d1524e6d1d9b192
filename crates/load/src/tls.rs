//! The one rustls client configuration shared by every connection.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    ServerName, UnixTime,
};

/// A client certificate chain and its key.
#[derive(Debug)]
pub struct Identity {
    /// The certificate, then any chain.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Reads `cert` (PEM certificates) and `key` (PKCS#8, SEC1 or PKCS#1 PEM).
    pub fn from_files(cert: &Path, key: &Path) -> Result<Identity> {
        let chain = certificates(&read(cert)?)
            .with_context(|| format!("{}: no certificate", cert.display()))?;
        let key = private_key(&read(key)?).with_context(|| format!("{}", key.display()))?;
        Ok(Identity { chain, key })
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Every `CERTIFICATE` block of a PEM text (at least one).
pub fn certificates(pem_text: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = pem::parse_many(pem_text)?
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| CertificateDer::from(p.into_contents()))
        .collect();
    if certs.is_empty() {
        bail!("no PEM certificate found");
    }
    Ok(certs)
}

/// The first private key of a PEM text.
pub fn private_key(pem_text: &str) -> Result<PrivateKeyDer<'static>> {
    for p in pem::parse_many(pem_text)? {
        let der = p.contents().to_vec();
        match p.tag() {
            "PRIVATE KEY" => return Ok(PrivatePkcs8KeyDer::from(der).into()),
            "EC PRIVATE KEY" => return Ok(PrivateSec1KeyDer::from(der).into()),
            "RSA PRIVATE KEY" => return Ok(PrivatePkcs1KeyDer::from(der).into()),
            _ => {}
        }
    }
    bail!("no PEM private key found")
}

/// A client configuration trusting the certificates in `cacert`, presenting
/// `identity` if given, speaking HTTP/1.1, with TLS session resumption only if
/// `resume` (else every new connection makes a full handshake).
pub fn client_config(
    cacert: &Path,
    identity: Option<Identity>,
    resume: bool,
) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(&read(cacert)?).with_context(|| format!("{}", cacert.display()))? {
        roots
            .add(cert)
            .with_context(|| format!("{}: unusable CA certificate", cacert.display()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("cannot build the server certificate verifier")?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RememberingVerifier {
            inner: verifier,
            verified: Mutex::new(None),
        }));
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key)
            .context("unusable client certificate or key")?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// The standard (webpki) verification of the server's certificate, done once: a
/// server presenting the very chain already verified for the same name is not
/// verified again (runs are short, far inside its validity). The handshake
/// signature, proof of the server's key, is still checked on every connection.
/// This keeps the generator's own CPU per new connection low.
#[derive(Debug)]
struct RememberingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    /// The last chain and name that verified.
    verified: Mutex<Option<Verified>>,
}

#[derive(Debug, PartialEq)]
struct Verified {
    chain: Vec<Vec<u8>>,
    name: ServerName<'static>,
}

impl Verified {
    fn of(
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
    ) -> Self {
        let mut chain = vec![end_entity.to_vec()];
        chain.extend(intermediates.iter().map(|c| c.to_vec()));
        Verified {
            chain,
            name: name.to_owned(),
        }
    }
}

impl ServerCertVerifier for RememberingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = Verified::of(end_entity, intermediates, server_name);
        let mut last = self.verified.lock().expect("verifier lock");
        if last.as_ref() == Some(&seen) {
            return Ok(ServerCertVerified::assertion());
        }
        let ok = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        *last = Some(seen);
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
