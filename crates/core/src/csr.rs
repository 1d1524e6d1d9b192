//! Certificate signing requests: decoding, signature check and key policy.
//!
//! Only the public key survives this module. The CSR's subject, attributes and
//! requested extensions are read by nobody: the profile builds the certificate from
//! the authenticated identity alone.

use base64::Engine;
use x509_parser::prelude::{FromDer, X509CertificationRequest};
use x509_parser::public_key::PublicKey;

/// Smallest RSA modulus accepted, in bits.
pub const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (bigger keys only cost the CA time).
pub const RSA_MAX_BITS: usize = 8192;

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// Why a CSR was refused. Every variant is the client's fault (HTTP 405 per the seed).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsrError {
    /// Neither PEM nor base64 of DER.
    #[error("certificate request is neither PEM nor base64-encoded DER")]
    Undecodable,
    /// PEM with a label other than CERTIFICATE REQUEST.
    #[error("expected a PEM block 'CERTIFICATE REQUEST', found '{0}'")]
    WrongPemLabel(String),
    /// The DER does not parse as PKCS#10.
    #[error("certificate request could not be parsed: {0}")]
    Unparsable(String),
    /// Bytes after the CSR's DER.
    #[error("certificate request has trailing data after the DER structure")]
    TrailingData,
    /// Self-signature does not verify (or uses an algorithm we do not know).
    #[error("certificate request signature does not verify: {0}")]
    BadSignature(String),
    /// RSA key outside the allowed sizes.
    #[error("RSA key of {0} bits not allowed (allowed: {RSA_MIN_BITS} to {RSA_MAX_BITS} bits)")]
    RsaKeySize(usize),
    /// EC key on a curve we do not accept.
    #[error("elliptic curve {0} not allowed (allowed: P-256, P-384)")]
    Curve(String),
    /// Any other key algorithm.
    #[error("key algorithm {0} not allowed (allowed: RSA, ECDSA P-256/P-384, Ed25519)")]
    KeyAlgorithm(String),
}

/// The kind of public key in an accepted CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA with this many modulus bits.
    Rsa(usize),
    /// ECDSA on NIST P-256.
    P256,
    /// ECDSA on NIST P-384.
    P384,
    /// Ed25519.
    Ed25519,
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyKind::Rsa(bits) => write!(f, "RSA-{bits}"),
            KeyKind::P256 => f.write_str("ECDSA P-256"),
            KeyKind::P384 => f.write_str("ECDSA P-384"),
            KeyKind::Ed25519 => f.write_str("Ed25519"),
        }
    }
}

/// A CSR whose self-signature verified and whose key is allowed: only its public key.
#[derive(Debug, Clone)]
pub struct CheckedCsr {
    /// DER of the SubjectPublicKeyInfo, exactly as the requester sent it.
    pub spki_der: Vec<u8>,
    /// The contents of the subjectPublicKey BIT STRING (for key identifiers).
    pub public_key_bits: Vec<u8>,
    /// What kind of key it is.
    pub key: KeyKind,
}

/// Decodes a CSR given as text: a PEM block, or base64 of the DER (as some form
/// clients send it). Whitespace in base64 is ignored.
pub fn decode_text(text: &str) -> Result<Vec<u8>, CsrError> {
    let trimmed = text.trim();
    if trimmed.starts_with("-----BEGIN") {
        let block = pem::parse(trimmed).map_err(|_| CsrError::Undecodable)?;
        // OpenSSL writes "NEW CERTIFICATE REQUEST" with -newhdr; both mean PKCS#10.
        if block.tag() != "CERTIFICATE REQUEST" && block.tag() != "NEW CERTIFICATE REQUEST" {
            return Err(CsrError::WrongPemLabel(block.tag().to_string()));
        }
        return Ok(block.into_contents());
    }
    let compact: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err(CsrError::Undecodable);
    }
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(compact.as_bytes()))
        .map_err(|_| CsrError::Undecodable)
}

/// Parses a DER CSR, verifies its self-signature and applies the key policy.
pub fn check(der: &[u8]) -> Result<CheckedCsr, CsrError> {
    let (rest, csr) =
        X509CertificationRequest::from_der(der).map_err(|e| CsrError::Unparsable(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CsrError::TrailingData);
    }
    let spki = &csr.certification_request_info.subject_pki;
    let key = key_kind(spki)?;
    csr.verify_signature()
        .map_err(|e| CsrError::BadSignature(e.to_string()))?;
    Ok(CheckedCsr {
        spki_der: spki.raw.to_vec(),
        public_key_bits: spki.subject_public_key.data.to_vec(),
        key,
    })
}

fn key_kind(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<KeyKind, CsrError> {
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        OID_RSA => {
            let bits = match spki.parsed() {
                Ok(PublicKey::RSA(rsa)) => rsa.key_size(),
                _ => return Err(CsrError::Unparsable("malformed RSA public key".into())),
            };
            if (RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                Ok(KeyKind::Rsa(bits))
            } else {
                Err(CsrError::RsaKeySize(bits))
            }
        }
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .ok_or_else(|| CsrError::Unparsable("EC key without a named curve".into()))?;
            match curve.as_str() {
                OID_P256 => Ok(KeyKind::P256),
                OID_P384 => Ok(KeyKind::P384),
                other => Err(CsrError::Curve(curve_name(other))),
            }
        }
        OID_ED25519 => Ok(KeyKind::Ed25519),
        other => Err(CsrError::KeyAlgorithm(algorithm_name(other))),
    }
}

fn curve_name(oid: &str) -> String {
    match oid {
        "1.3.132.0.35" => "P-521".into(),
        "1.3.132.0.10" => "secp256k1".into(),
        "1.2.840.10045.3.1.1" => "P-192".into(),
        "1.3.132.0.33" => "P-224".into(),
        _ => oid.into(),
    }
}

fn algorithm_name(oid: &str) -> String {
    match oid {
        "1.2.840.10040.4.1" => "DSA".into(),
        "1.3.101.113" => "Ed448".into(),
        "1.3.101.110" => "X25519".into(),
        "1.3.101.111" => "X448".into(),
        "1.2.840.113549.1.1.10" => "RSASSA-PSS".into(),
        _ => oid.into(),
    }
}
