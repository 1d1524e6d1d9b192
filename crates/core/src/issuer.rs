//! The issuing CA: its certificate, its key, and the chain handed out with every
//! certificate it signs.

use rcgen::{KeyPair, PublicKeyData, SigningKey};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a CA could not be loaded or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The certificate PEM/DER is unreadable.
    #[error("CA certificate: {0}")]
    Certificate(String),
    /// The private key is unreadable or of an unsupported kind.
    #[error("CA private key: {0}")]
    Key(String),
    /// Key and certificate do not belong together.
    #[error("the CA private key does not match the CA certificate's public key")]
    KeyMismatch,
    /// The certificate is not allowed to sign certificates.
    #[error("the certificate is not a CA: {0}")]
    NotACa(String),
    /// A certificate of the chain is unreadable.
    #[error("CA chain: {0}")]
    Chain(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
    /// The device holding the key (a PKCS#11 token) failed or cannot be reached: a
    /// condition that may pass, unlike a key that cannot sign at all.
    #[error("the signing device failed: {0}")]
    Device(String),
}

/// The issuing CA's private key, wherever it lives: in memory (an [`rcgen::KeyPair`]
/// read from a file) or on a device such as a PKCS#11 token, which signs without
/// ever showing the key.
pub trait CaKey: Send + Sync {
    /// The signature algorithm this key signs with.
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm;
    /// The subjectPublicKey bits, when the key knows them.
    fn public_key_bits(&self) -> Option<&[u8]>;
    /// Signs `message` (hashing it as the algorithm says); returns the signature as
    /// X.509 carries it (DER `Ecdsa-Sig-Value` for ECDSA).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, IssuerError>;
    /// Whether signing waits on a device, and so belongs on a blocking thread.
    fn is_device(&self) -> bool {
        false
    }
}

impl CaKey for KeyPair {
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        PublicKeyData::algorithm(self)
    }
    fn public_key_bits(&self) -> Option<&[u8]> {
        Some(self.der_bytes())
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, IssuerError> {
        SigningKey::sign(self, message).map_err(|e| IssuerError::Sign(e.to_string()))
    }
}

/// A CA able to sign: certificate, key and what the profile copies from them.
pub struct IssuingCa {
    cert_der: Vec<u8>,
    subject_der: Vec<u8>,
    subject_oneline: String,
    key_id: Vec<u8>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    self_signed: bool,
    key: Box<dyn CaKey>,
    sig_alg_der: Vec<u8>,
    /// PEM of the CA certificate and of every intermediate above it, excluding the root.
    chain_pem: String,
}

impl std::fmt::Debug for IssuingCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("IssuingCa")
            .field("subject", &self.subject_oneline)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl IssuingCa {
    /// Loads the CA from its certificate PEM, its private key PEM (PKCS#8, PKCS#1 or
    /// SEC1) and the PEM of the certificates above it (may be empty; a self-signed root
    /// in it is skipped when building the response chain).
    pub fn from_pem(cert_pem: &str, key_pem: &str, chain_pem: &str) -> Result<Self, IssuerError> {
        let cert_der = pem_certificates(cert_pem)
            .map_err(IssuerError::Certificate)?
            .into_iter()
            .next()
            .ok_or_else(|| IssuerError::Certificate("no CERTIFICATE block found".into()))?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| IssuerError::Key(e.to_string()))?;
        let chain = pem_certificates(chain_pem).map_err(IssuerError::Chain)?;
        Self::new(cert_der, key, &chain)
    }

    /// Builds the CA from a DER certificate, its key and the DER certificates above it.
    pub fn new(cert_der: Vec<u8>, key: KeyPair, chain: &[Vec<u8>]) -> Result<Self, IssuerError> {
        Self::with_key(cert_der, Box::new(key), chain)
    }

    /// Like [`IssuingCa::new`], for a key anywhere. A device key proves that it
    /// belongs to the certificate by signing a probe that the certificate's public
    /// key verifies: the public half a device shows may not be the private half's.
    pub fn with_key(
        cert_der: Vec<u8>,
        key: Box<dyn CaKey>,
        chain: &[Vec<u8>],
    ) -> Result<Self, IssuerError> {
        let (rest, cert) = X509Certificate::from_der(&cert_der)
            .map_err(|e| IssuerError::Certificate(e.to_string()))?;
        if !rest.is_empty() {
            return Err(IssuerError::Certificate("trailing data after DER".into()));
        }
        match cert.basic_constraints() {
            Ok(Some(bc)) if bc.value.ca => {}
            _ => {
                return Err(IssuerError::NotACa(
                    "basicConstraints CA:TRUE is missing".into(),
                ));
            }
        }
        if let Ok(Some(ku)) = cert.key_usage()
            && !ku.value.key_cert_sign()
        {
            return Err(IssuerError::NotACa("keyUsage lacks keyCertSign".into()));
        }
        let cert_key = cert.public_key().subject_public_key.data.as_ref();
        if key.public_key_bits().is_some_and(|bits| bits != cert_key) {
            return Err(IssuerError::KeyMismatch);
        }
        if key.is_device() || key.public_key_bits().is_none() {
            probe(key.as_ref(), cert_key)?;
        }
        let sig_alg_der = crate::der::signature_algorithm_der(key.algorithm())
            .ok_or_else(|| IssuerError::Key("unsupported key algorithm".into()))?;
        let key_id = match cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                    Some(k.0.to_vec())
                }
                _ => None,
            }) {
            Some(k) => k,
            None => key_identifier(cert.public_key().subject_public_key.data.as_ref()),
        };
        let self_signed = cert.subject().as_raw() == cert.issuer().as_raw();
        let mut chain_pem = String::new();
        if !self_signed {
            chain_pem.push_str(&to_pem(&cert_der));
            for der in chain {
                let (_, c) = X509Certificate::from_der(der)
                    .map_err(|e| IssuerError::Chain(e.to_string()))?;
                if c.subject().as_raw() != c.issuer().as_raw() {
                    chain_pem.push_str(&to_pem(der));
                }
            }
        }
        Ok(IssuingCa {
            subject_der: cert.subject().as_raw().to_vec(),
            subject_oneline: crate::trustroots::oneline(cert.subject()),
            key_id,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            self_signed,
            key,
            sig_alg_der,
            chain_pem,
            cert_der,
        })
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }
    /// The CA's subject Name, DER exactly as in its certificate (becomes the issuer).
    pub fn subject_der(&self) -> &[u8] {
        &self.subject_der
    }
    /// The CA's subject in OpenSSL's one-line form.
    pub fn subject_oneline(&self) -> &str {
        &self.subject_oneline
    }
    /// The CA's key identifier (its SKI), used as the AKI of what it signs.
    pub fn key_id(&self) -> &[u8] {
        &self.key_id
    }
    /// Start of the CA certificate's validity.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }
    /// End of the CA certificate's validity: nothing it signs may outlive it.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }
    /// Whether the issuing CA is itself a root.
    pub fn is_self_signed(&self) -> bool {
        self.self_signed
    }
    /// PEM of the chain returned after an issued certificate (empty for a root CA).
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }
    /// The AlgorithmIdentifier of this CA's signatures, DER.
    pub fn signature_algorithm_der(&self) -> &[u8] {
        &self.sig_alg_der
    }
    /// The CA key (for other signed objects, such as CRLs).
    pub fn key(&self) -> &dyn CaKey {
        self.key.as_ref()
    }
    /// Whether signing waits on a device (a PKCS#11 token): callers on an async
    /// runtime then sign on a blocking thread.
    pub fn signs_on_device(&self) -> bool {
        self.key.is_device()
    }

    /// Signs a DER TBS structure and wraps it: `SEQUENCE { tbs, algorithm, signature }`.
    pub fn sign_wrapped(&self, tbs: &[u8]) -> Result<Vec<u8>, IssuerError> {
        let signature = self.key.sign(tbs)?;
        Ok(yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_der(tbs);
                w.next().write_der(&self.sig_alg_der);
                w.next().write_bitvec_bytes(&signature, signature.len() * 8);
            })
        }))
    }
}

/// Signs a fixed message with `key` and verifies it with the certificate's public key
/// bits `cert_key`: a key that signs for another certificate is a mismatch.
fn probe(key: &dyn CaKey, cert_key: &[u8]) -> Result<(), IssuerError> {
    use aws_lc_rs::signature;
    let alg = key.algorithm();
    let verify: &'static dyn signature::VerificationAlgorithm =
        if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
            &signature::ECDSA_P256_SHA256_ASN1
        } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
            &signature::ECDSA_P384_SHA384_ASN1
        } else if alg == &rcgen::PKCS_ED25519 {
            &signature::ED25519
        } else if alg == &rcgen::PKCS_RSA_SHA256 {
            &signature::RSA_PKCS1_2048_8192_SHA256
        } else if alg == &rcgen::PKCS_RSA_SHA384 {
            &signature::RSA_PKCS1_2048_8192_SHA384
        } else if alg == &rcgen::PKCS_RSA_SHA512 {
            &signature::RSA_PKCS1_2048_8192_SHA512
        } else {
            return Err(IssuerError::Key("unsupported key algorithm".into()));
        };
    let message = b"onlineca: does this key belong to the issuing CA certificate?";
    let sig = key.sign(message)?;
    signature::UnparsedPublicKey::new(verify, cert_key)
        .verify(message, &sig)
        .map_err(|_| IssuerError::KeyMismatch)
}

/// The key identifier of a public key: the first 160 bits of the SHA-256 of the
/// subjectPublicKey bits (RFC 7093 section 2, method 1).
pub fn key_identifier(public_key_bits: &[u8]) -> Vec<u8> {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, public_key_bits);
    d.as_ref()[..20].to_vec()
}

/// Every CERTIFICATE block of a PEM text, DER.
pub fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let blocks = pem::parse_many(text).map_err(|e| e.to_string())?;
    Ok(blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .collect())
}

/// A DER certificate as PEM, ending in a newline.
pub fn to_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}
