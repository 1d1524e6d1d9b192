//! TLS for the client: rustls with the aws-lc-rs provider only, a verifier that
//! remembers what the server presented (for pinning and for error messages), and
//! the checks a trust decision needs.

use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::error::{ClientError, Result};

/// The one crypto provider of the client (never the process default, so that no
/// other dependency's choice matters).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A root store from CA certificates; fails if none is usable.
pub fn root_store(cas: &[CertificateDer<'static>], what: &str) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(cas.iter().cloned());
    if added == 0 {
        return Err(ClientError::TrustRoots(format!(
            "no usable CA certificate in {what}"
        )));
    }
    Ok(Arc::new(roots))
}

/// What the server presented during a handshake, and why it was refused if it was.
#[derive(Debug, Default)]
pub struct Seen {
    /// The server's chain, end entity first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The verification error, if the chain was refused.
    pub refused: Option<String>,
}

/// How the server's certificate is judged during the handshake.
#[derive(Debug)]
pub struct RecordingVerifier {
    /// `None`: accept any certificate (it is checked after the fact, or trust is
    /// explicitly taken on first use); the handshake signature is still verified.
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    /// What was seen.
    pub seen: Arc<Mutex<Seen>>,
}

impl RecordingVerifier {
    /// Verifies against `roots` (`None`: record only).
    pub fn new(roots: Option<Arc<RootCertStore>>) -> Result<Arc<RecordingVerifier>> {
        let provider = provider();
        let inner = match roots {
            Some(r) => Some(
                WebPkiServerVerifier::builder_with_provider(r, provider.clone())
                    .build()
                    .map_err(|e| ClientError::TrustRoots(e.to_string()))?,
            ),
            None => None,
        };
        Ok(Arc::new(RecordingVerifier {
            inner,
            provider,
            seen: Arc::default(),
        }))
    }

    /// A copy of what was seen.
    pub fn seen_chain(&self) -> Vec<CertificateDer<'static>> {
        self.seen
            .lock()
            .map(|s| s.chain.clone())
            .unwrap_or_default()
    }

    /// The refusal reason, if the server's certificate was refused.
    pub fn refusal(&self) -> Option<String> {
        self.seen.lock().ok().and_then(|s| s.refused.clone())
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = match &self.inner {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        };
        if let Ok(mut seen) = self.seen.lock() {
            seen.chain = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
            seen.refused = result.as_ref().err().map(|e| e.to_string());
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client certificate for mutual TLS (renewal).
pub struct ClientIdentity {
    /// The certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// The rustls configuration for one request.
pub fn client_config(
    verifier: Arc<RecordingVerifier>,
    identity: Option<&ClientIdentity>,
) -> Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ClientError::Key(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| ClientError::Key(format!("client certificate and key: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Checks a server chain (as presented) against `roots`, with `extra` certificates
/// usable as intermediates: used to confirm, after the fact, that a server whose
/// trust roots were just fetched is vouched for by the pinned CA.
pub fn verify_server_chain(
    chain: &[CertificateDer<'static>],
    extra: &[CertificateDer<'static>],
    roots: Arc<RootCertStore>,
    server_name: &ServerName<'_>,
) -> Result<(), String> {
    let (ee, rest) = chain
        .split_first()
        .ok_or_else(|| "the server presented no certificate".to_string())?;
    let intermediates: Vec<CertificateDer<'static>> =
        rest.iter().chain(extra.iter()).cloned().collect();
    let v = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| e.to_string())?;
    v.verify_server_cert(ee, &intermediates, server_name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Checks that an issued client certificate chains to `roots` and is fit for
/// client authentication (what a relying party will check).
pub fn verify_client_chain(
    chain: &[CertificateDer<'static>],
    roots: Arc<RootCertStore>,
) -> Result<(), String> {
    let (ee, rest) = chain
        .split_first()
        .ok_or_else(|| "no certificate".to_string())?;
    let v = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| e.to_string())?;
    v.verify_client_cert(ee, rest, UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}
