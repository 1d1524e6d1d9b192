//! Client certificates: optional at the TLS layer, judged by the route.
//!
//! rustls's stock `WebPkiClientVerifier` aborts the handshake on an untrusted or
//! expired certificate, but the contract wants a 401 that says what was wrong. So the
//! handshake accepts any certificate chain *as sent*, while still checking that the
//! client holds the certificate's private key (the handshake signature), and the
//! route verifies the chain against the anchors that matter for it (retriever
//! anchors, or this CA for renewal) with [`verify_chain`], at the request's time.

use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use time::OffsetDateTime;

/// A client-certificate verifier that makes certificates optional and lets any chain
/// through the handshake, but verifies the handshake signature with the certificate's
/// key, so a client can only present a certificate whose key it holds.
#[derive(Debug)]
pub struct OptionalClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl OptionalClientCert {
    /// With the signature algorithms of the aws-lc-rs provider.
    pub fn new() -> Self {
        OptionalClientCert {
            algorithms: rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms,
        }
    }
}

impl Default for OptionalClientCert {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientCertVerifier for OptionalClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // Password clients (the deployed Python client, curl -u) send no certificate.
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a client may then present whatever certificate it was given.
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Judged by the route, which can answer 401 with the reason.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A trust anchor owned for the life of the service, from a CA certificate.
pub fn anchor(cert_der: &[u8]) -> Result<TrustAnchor<'static>, String> {
    let der = CertificateDer::from(cert_der);
    webpki::anchor_from_trusted_cert(&der)
        .map(|a| a.to_owned())
        .map_err(|e| describe(&e))
}

/// Verifies a client chain (leaf first, as sent) for client authentication against
/// `anchors` at `now`: signatures, validity periods, CA constraints and, when the
/// leaf has one, an extendedKeyUsage that includes clientAuth. The error is the
/// reason, for a one-line 401.
pub fn verify_chain(
    chain: &[CertificateDer<'static>],
    anchors: &[TrustAnchor<'static>],
    now: OffsetDateTime,
) -> Result<(), String> {
    verify_chain_with(chain, anchors, None, now)
}

/// [`verify_chain`], and with `revocation` also the revocation status of every
/// certificate of the chain below the anchor, by the CRLs and policy it holds.
pub fn verify_chain_with(
    chain: &[CertificateDer<'static>],
    anchors: &[TrustAnchor<'static>],
    revocation: Option<webpki::RevocationOptions<'_>>,
    now: OffsetDateTime,
) -> Result<(), String> {
    let (leaf, intermediates) = chain.split_first().ok_or("no certificate")?;
    if anchors.is_empty() {
        return Err("no trust anchors are configured for it".into());
    }
    let ee = webpki::EndEntityCert::try_from(leaf).map_err(|e| describe(&e))?;
    let secs = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let time = UnixTime::since_unix_epoch(Duration::from_secs(secs));
    let algorithms = rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all;
    ee.verify_for_usage(
        algorithms,
        anchors,
        intermediates,
        time,
        webpki::KeyUsage::client_auth(),
        revocation,
        None,
    )
    .map(|_| ())
    .map_err(|e| describe(&e))
}

/// The validity-period check of [`verify_chain`] alone, with its wording: valid from
/// `not_before` through `not_after`, both inclusive, as webpki has it.
pub fn validity(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(), String> {
    if now < not_before {
        Err(format!("it is not valid before {}", rfc3339(not_before)))
    } else if now > not_after {
        Err(format!("it expired at {}", rfc3339(not_after)))
    } else {
        Ok(())
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{} (Unix time)", t.unix_timestamp()))
}

fn unix(t: UnixTime) -> String {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .map_or_else(|| format!("{} (Unix time)", t.as_secs()), rfc3339)
}

/// A webpki error in words.
fn describe(e: &webpki::Error) -> String {
    use webpki::Error as E;
    match e {
        E::CertExpired { not_after, .. } => format!("it expired at {}", unix(*not_after)),
        E::CertNotValidYet { not_before, .. } => {
            format!("it is not valid before {}", unix(*not_before))
        }
        E::UnknownIssuer => "it does not chain to a trusted CA".into(),
        E::InvalidSignatureForPublicKey | E::SignatureAlgorithmMismatch => {
            "a signature in its chain does not verify".into()
        }
        E::UnsupportedSignatureAlgorithmContext(_) => {
            "its chain uses an unsupported signature algorithm".into()
        }
        E::UnsupportedCriticalExtension => "it has an unsupported critical extension".into(),
        E::RequiredEkuNotFoundContext(_) => {
            "its extendedKeyUsage does not allow client authentication".into()
        }
        E::CaUsedAsEndEntity => "it is a CA certificate, not a client certificate".into(),
        E::EndEntityUsedAsCa => "its chain uses an end-entity certificate as a CA".into(),
        E::PathLenConstraintViolated => "its chain violates a path length constraint".into(),
        E::NameConstraintViolation => "its chain violates a name constraint".into(),
        E::MaximumPathDepthExceeded | E::MaximumPathBuildCallsExceeded => {
            "its chain is too long".into()
        }
        E::BadDer | E::BadDerTime | E::TrailingData(_) => "it is malformed DER".into(),
        E::UnsupportedCertVersion => "its X.509 version is not supported".into(),
        E::CertRevoked => "it is revoked (it is on its issuer's CRL)".into(),
        E::CrlExpired { next_update, .. } => format!(
            "its revocation status cannot be checked: its issuer's CRL is out of date (its nextUpdate was {}); the CA's operator must install a current CRL",
            unix(*next_update)
        ),
        E::UnknownRevocationStatus => {
            "its revocation status is unknown: no configured CRL covers its issuer".into()
        }
        E::IssuerNotCrlSigner => "its issuer may not sign CRLs (keyUsage lacks cRLSign)".into(),
        E::InvalidCrlSignatureForPublicKey => "its issuer's CRL does not verify".into(),
        other => format!("it was refused ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn validity_is_inclusive_at_both_ends() {
        let (nb, na) = (
            datetime!(2026-01-01 00:00:00 UTC),
            datetime!(2026-01-01 12:00:00 UTC),
        );
        assert!(validity(nb, na, nb).is_ok());
        assert!(validity(nb, na, na).is_ok());
        let early = validity(nb, na, nb - time::Duration::SECOND).unwrap_err();
        assert_eq!(early, "it is not valid before 2026-01-01T00:00:00Z");
        let late = validity(nb, na, na + time::Duration::SECOND).unwrap_err();
        assert_eq!(late, "it expired at 2026-01-01T12:00:00Z");
    }
}
