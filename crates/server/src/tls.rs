//! The TLS side of the listener: rustls with TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1,
//! client certificates optional.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::client_cert::OptionalClientCert;
use crate::config::TlsSection;
use crate::state::StartError;

/// Makes sure exactly one crypto provider (aws-lc-rs) is the process default, so
/// that no dependency's choice can make rustls panic at run time.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Builds the server's rustls configuration from its certificate and key files.
pub fn server_config(tls: &TlsSection) -> Result<Arc<ServerConfig>, StartError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| StartError::Invalid(format!("{}: {e}", tls.cert.display())))?;
    if certs.is_empty() {
        return Err(StartError::Invalid(format!(
            "{}: no certificate found",
            tls.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| StartError::Invalid(format!("{}: {e}", tls.key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| StartError::Invalid(format!("TLS: {e}")))?
        // Client certificates are optional and judged by the route (see client_cert).
        .with_client_cert_verifier(Arc::new(OptionalClientCert::new()))
        .with_single_cert(certs, key)
        .map_err(|e| StartError::Invalid(format!("TLS certificate and key: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
