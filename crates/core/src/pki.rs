//! Creating a CA: a root, an issuing CA signed by it, and the server's TLS
//! certificate. Used once, by `onlineca init`.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, RsaKeySize, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::serial::random_serial;

/// Why a CA could not be created.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Key generation or certificate signing failed.
    #[error("{what}: {error}")]
    Rcgen {
        /// What was being made.
        what: &'static str,
        /// The underlying failure (shown in the message, so not a `source`).
        error: rcgen::Error,
    },
    /// A host name is not a valid DNS name or IP address.
    #[error("host name {0:?} is neither a DNS name nor an IP address")]
    Hostname(String),
    /// An option is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// Key algorithms a CA can be created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA P-256 with SHA-256.
    P256,
    /// ECDSA P-384 with SHA-384.
    P384,
    /// Ed25519.
    Ed25519,
    /// RSA 2048 with SHA-256.
    Rsa2048,
    /// RSA 3072 with SHA-256.
    Rsa3072,
    /// RSA 4096 with SHA-256.
    Rsa4096,
}

impl KeyType {
    /// All names accepted by [`FromStr`].
    pub const NAMES: &'static [&'static str] =
        &["p256", "p384", "ed25519", "rsa2048", "rsa3072", "rsa4096"];

    /// Generates a fresh key pair of this type.
    pub fn generate(self) -> Result<KeyPair, rcgen::Error> {
        match self {
            KeyType::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyType::P384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            KeyType::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
            KeyType::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)
            }
            KeyType::Rsa3072 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072)
            }
            KeyType::Rsa4096 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096)
            }
        }
    }

    fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096)
    }
}

impl FromStr for KeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "p256" | "p-256" | "ec" => KeyType::P256,
            "p384" | "p-384" => KeyType::P384,
            "ed25519" => KeyType::Ed25519,
            "rsa2048" | "rsa" => KeyType::Rsa2048,
            "rsa3072" => KeyType::Rsa3072,
            "rsa4096" => KeyType::Rsa4096,
            _ => {
                return Err(format!(
                    "unknown key type {s:?} (one of {})",
                    Self::NAMES.join(", ")
                ));
            }
        })
    }
}

/// What to create.
#[derive(Debug, Clone)]
pub struct PkiOptions {
    /// Key algorithm of every key created.
    pub key_type: KeyType,
    /// Organisation name in every subject.
    pub org: String,
    /// Name of the CA: the root is "<name> Root CA", the issuing CA "<name> Issuing CA".
    pub ca_name: String,
    /// DNS names and IP addresses of the server's TLS certificate.
    pub hostnames: Vec<String>,
    /// Root CA lifetime.
    pub root_lifetime: Duration,
    /// Issuing CA lifetime.
    pub ca_lifetime: Duration,
    /// TLS server certificate lifetime.
    pub tls_lifetime: Duration,
    /// The time of creation.
    pub now: OffsetDateTime,
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct CertAndKey {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

/// A freshly created CA.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The self-signed root.
    pub root: CertAndKey,
    /// The issuing CA, signed by the root: it signs user certificates.
    pub issuing: CertAndKey,
    /// The server's TLS certificate, signed by the root.
    pub tls: CertAndKey,
}

fn rc(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |error| PkiError::Rcgen { what, error }
}

fn dn(parts: &[(DnType, &str)]) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    for (t, v) in parts {
        d.push(t.clone(), *v);
    }
    d
}

fn base_params(
    dn: DistinguishedName,
    now: OffsetDateTime,
    lifetime: Duration,
) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn;
    // A little slack for relying parties whose clocks run behind.
    p.not_before = now - Duration::from_secs(300);
    p.not_after = now + lifetime;
    let serial = random_serial().map_err(|_| PkiError::Invalid("no randomness".into()))?;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(p)
}

fn ca_params(
    dn: DistinguishedName,
    now: OffsetDateTime,
    lifetime: Duration,
    path_len: Option<u8>,
) -> Result<CertificateParams, PkiError> {
    let mut p = base_params(dn, now, lifetime)?;
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

/// Creates a root, an issuing CA and a TLS server certificate.
pub fn create(opts: &PkiOptions) -> Result<Pki, PkiError> {
    let ca_key = opts.key_type.generate().map_err(rc("issuing CA key"))?;
    let made = create_for(opts, &ca_key)?;
    Ok(Pki {
        root: made.root,
        issuing: CertAndKey {
            cert_pem: made.issuing_cert_pem,
            key_pem: ca_key.serialize_pem(),
        },
        tls: made.tls,
    })
}

/// A CA whose issuing key lives elsewhere (on a token): everything [`Pki`] holds
/// but the issuing CA's private key.
#[derive(Debug, Clone)]
pub struct PkiFor {
    /// The self-signed root.
    pub root: CertAndKey,
    /// The issuing CA certificate, PEM, signed by the root.
    pub issuing_cert_pem: String,
    /// The server's TLS certificate, signed by the root.
    pub tls: CertAndKey,
}

/// Creates a root, an issuing CA certificate for the public key `issuing_key` (its
/// private half stays where it is) and a TLS server certificate.
pub fn create_for(
    opts: &PkiOptions,
    issuing_key: &impl rcgen::PublicKeyData,
) -> Result<PkiFor, PkiError> {
    if opts.ca_lifetime > opts.root_lifetime {
        return Err(PkiError::Invalid(
            "the issuing CA lifetime may not exceed the root's".into(),
        ));
    }
    let root_key = opts.key_type.generate().map_err(rc("root key"))?;
    let root_name = format!("{} Root CA", opts.ca_name);
    let issuing_name = format!("{} Issuing CA", opts.ca_name);
    let mut root_params = ca_params(
        dn(&[
            (DnType::OrganizationName, &opts.org),
            (DnType::OrganizationalUnitName, "Online CA"),
            (DnType::CommonName, &root_name),
        ]),
        opts.now,
        opts.root_lifetime,
        None,
    )?;
    root_params.use_authority_key_identifier_extension = false;
    let root_cert = root_params
        .self_signed(&root_key)
        .map_err(rc("root certificate"))?;
    let root_issuer = Issuer::new(root_params, &root_key);

    let ca_params = ca_params(
        dn(&[
            (DnType::OrganizationName, &opts.org),
            (DnType::OrganizationalUnitName, "Online CA"),
            (DnType::CommonName, &issuing_name),
        ]),
        opts.now,
        opts.ca_lifetime,
        Some(0),
    )?;
    let ca_cert = ca_params
        .signed_by(issuing_key, &root_issuer)
        .map_err(rc("issuing CA certificate"))?;

    let tls = tls_certificate(opts, &root_issuer)?;
    Ok(PkiFor {
        root: CertAndKey {
            cert_pem: root_cert.pem(),
            key_pem: root_key.serialize_pem(),
        },
        issuing_cert_pem: ca_cert.pem(),
        tls,
    })
}

/// Creates only a TLS server certificate, signed by an existing CA (used when the
/// issuing CA is imported).
pub fn create_tls_with(
    opts: &PkiOptions,
    ca_cert_pem: &str,
    ca_key_pem: &str,
) -> Result<CertAndKey, PkiError> {
    let key = KeyPair::from_pem(ca_key_pem).map_err(rc("CA key"))?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, &key).map_err(rc("CA certificate"))?;
    tls_certificate(opts, &issuer)
}

fn tls_certificate(
    opts: &PkiOptions,
    issuer: &Issuer<'_, &KeyPair>,
) -> Result<CertAndKey, PkiError> {
    let first = opts
        .hostnames
        .first()
        .ok_or_else(|| PkiError::Invalid("at least one host name is needed".into()))?;
    let key = opts.key_type.generate().map_err(rc("TLS key"))?;
    let mut p = base_params(
        dn(&[
            (DnType::OrganizationName, &opts.org),
            (DnType::CommonName, first),
        ]),
        opts.now,
        opts.tls_lifetime,
    )?;
    p.is_ca = IsCa::ExplicitNoCa;
    p.use_authority_key_identifier_extension = true;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if opts.key_type.is_rsa() {
        p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    p.subject_alt_names = opts
        .hostnames
        .iter()
        .map(|h| match h.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => h
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|_| PkiError::Hostname(h.clone())),
        })
        .collect::<Result<_, _>>()?;
    let cert = p.signed_by(&key, issuer).map_err(rc("TLS certificate"))?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The issuing CA that replaces another: a fresh key of the same kind, the same
/// subject with the next generation in its CN ("... Issuing CA" becomes "... Issuing
/// CA G2", then "G3"), so that its `<hash>.0` file never collides with the one it
/// replaces; the same lifetime, within the root's; signed by the root.
pub struct Rotation {
    /// The new issuing CA's certificate (PEM).
    pub cert_pem: String,
    /// Its key.
    pub key: KeyPair,
}

/// Makes the successor of the issuing CA `old_der`, signed by the root `root_pem`
/// with `root_key`, at `now`.
pub fn rotate_issuing(
    old_der: &[u8],
    root_pem: &str,
    root_key: &KeyPair,
    now: OffsetDateTime,
) -> Result<Rotation, PkiError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, old) = X509Certificate::from_der(old_der)
        .map_err(|e| PkiError::Invalid(format!("issuing CA certificate: {e}")))?;
    let root_der = pem_certificate(root_pem)
        .ok_or_else(|| PkiError::Invalid("unreadable root certificate".into()))?;
    let (_, root) = X509Certificate::from_der(&root_der)
        .map_err(|e| PkiError::Invalid(format!("root certificate: {e}")))?;
    let lifetime = old.validity().not_after.to_datetime() - old.validity().not_before.to_datetime();
    let not_after = (now + lifetime).min(root.validity().not_after.to_datetime());
    if not_after <= now + time::Duration::days(1) {
        return Err(PkiError::Invalid(
            "the root expires within a day: a new issuing CA under it would be useless".into(),
        ));
    }
    let key = key_like(old.public_key())?;
    let mut dn = DistinguishedName::new();
    for rdn in old.subject().iter() {
        for attr in rdn.iter() {
            let value = attr
                .as_str()
                .map_err(|_| PkiError::Invalid("the issuing CA's subject is not text".into()))?;
            let oid: Vec<u64> = attr
                .attr_type()
                .iter()
                .ok_or_else(|| PkiError::Invalid("odd attribute type".into()))?
                .collect();
            let kind = DnType::from_oid(&oid);
            let value = if kind == DnType::CommonName {
                next_generation(value)
            } else {
                value.to_string()
            };
            dn.push(kind, value);
        }
    }
    let mut p = ca_params(dn, now, Duration::from_secs(60), Some(0))?;
    p.not_after = not_after;
    let issuer = Issuer::from_ca_cert_pem(root_pem, root_key).map_err(rc("root certificate"))?;
    let cert = p
        .signed_by(&key, &issuer)
        .map_err(rc("issuing CA certificate"))?;
    Ok(Rotation {
        cert_pem: cert.pem(),
        key,
    })
}

/// The first certificate of a PEM text, DER.
fn pem_certificate(pem: &str) -> Option<Vec<u8>> {
    crate::issuer::pem_certificates(pem)
        .ok()?
        .into_iter()
        .next()
}

/// A fresh key of the same algorithm (and, for RSA, size) as `spki`.
fn key_like(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<KeyPair, PkiError> {
    use x509_parser::public_key::PublicKey;
    let kind = match spki.parsed() {
        Ok(PublicKey::EC(point)) if point.key_size() == 384 => KeyType::P384,
        Ok(PublicKey::EC(_)) => KeyType::P256,
        Ok(PublicKey::RSA(rsa)) => match rsa.key_size() {
            ..=2048 => KeyType::Rsa2048,
            2049..=3072 => KeyType::Rsa3072,
            _ => KeyType::Rsa4096,
        },
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => KeyType::Ed25519,
        _ => return Err(PkiError::Invalid("unsupported issuing CA key type".into())),
    };
    kind.generate().map_err(rc("issuing CA key"))
}

/// "X Issuing CA" → "X Issuing CA G2"; "X G2" → "X G3".
fn next_generation(cn: &str) -> String {
    if let Some((head, tail)) = cn.rsplit_once(" G")
        && let Ok(n) = tail.parse::<u32>()
    {
        return format!("{head} G{}", n + 1);
    }
    format!("{cn} G2")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_rotated_ca_takes_the_next_generation() {
        assert_eq!(super::next_generation("X Issuing CA"), "X Issuing CA G2");
        assert_eq!(super::next_generation("X Issuing CA G2"), "X Issuing CA G3");
        assert_eq!(super::next_generation("Acme G"), "Acme G G2");
    }
}
