//! The certificate profile and the one place certificates are built.
//!
//! Everything in an issued certificate is decided here: subject from the principal,
//! public key from the checked CSR, the validity window, and a fixed set of
//! extensions. Nothing from the CSR other than its public key is ever copied.

use std::time::Duration;

use time::OffsetDateTime;
use yasna::Tag;

use crate::csr::{CheckedCsr, KeyKind};
use crate::der::{write_extension, write_time};
use crate::issuer::{IssuerError, IssuingCa, key_identifier, to_pem};
use crate::principal::Principal;
use crate::serial::random_serial;
use crate::subject::{SubjectError, SubjectTemplate};

const OID_BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const OID_KEY_USAGE: &[u64] = &[2, 5, 29, 15];
const OID_EXT_KEY_USAGE: &[u64] = &[2, 5, 29, 37];
const OID_SKI: &[u64] = &[2, 5, 29, 14];
const OID_AKI: &[u64] = &[2, 5, 29, 35];
const OID_CRL_DP: &[u64] = &[2, 5, 29, 31];
const OID_CLIENT_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 2];

/// Why a certificate could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The principal's username cannot go into the subject.
    #[error(transparent)]
    Subject(#[from] SubjectError),
    /// The issuing CA's own validity has ended.
    #[error("the issuing CA certificate expired at {0}")]
    CaExpired(OffsetDateTime),
    /// The issuing CA is not yet valid.
    #[error("the issuing CA certificate is not valid before {0}")]
    CaNotYetValid(OffsetDateTime),
    /// Randomness or signing failed.
    #[error(transparent)]
    Signer(#[from] IssuerError),
}

/// What the CA issues: the subject template, lifetimes and optional URLs.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Builds the subject from the username.
    pub template: SubjectTemplate,
    /// How long certificates live.
    pub lifetime: Duration,
    /// How far notBefore is set in the past, for clients whose clocks run behind.
    pub backdate: Duration,
    /// A CRL distribution point URL put in every certificate, if set.
    pub crl_url: Option<String>,
}

/// An issued certificate and the facts recorded about it.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The certificate, PEM (ends in a newline).
    pub pem: String,
    /// The serial's bytes as lowercase hex.
    pub serial_hex: String,
    /// Subject in OpenSSL's one-line form.
    pub subject: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// SHA-256 of the SubjectPublicKeyInfo, lowercase hex.
    pub spki_sha256: String,
    /// The key type certified.
    pub key: KeyKind,
}

impl Profile {
    /// Issues a certificate for `principal` carrying the key of `csr`, valid from
    /// `now - backdate` until `now + lifetime` (or `lifetime_cap`, if shorter), never
    /// beyond the CA's own notAfter.
    pub fn issue(
        &self,
        ca: &IssuingCa,
        csr: &CheckedCsr,
        principal: &Principal,
        now: OffsetDateTime,
        lifetime_cap: Option<Duration>,
    ) -> Result<Issued, IssueError> {
        let subject = self.template.render(&principal.username)?;
        if now >= ca.not_after() {
            return Err(IssueError::CaExpired(ca.not_after()));
        }
        if now < ca.not_before() {
            return Err(IssueError::CaNotYetValid(ca.not_before()));
        }
        let lifetime = match lifetime_cap {
            Some(cap) if cap < self.lifetime => cap,
            _ => self.lifetime,
        };
        let not_before = (now - self.backdate).max(ca.not_before());
        let not_after = (now + lifetime).min(ca.not_after());
        let serial = random_serial().map_err(|_| IssuerError::Sign("no randomness".into()))?;

        let mut extensions = end_entity_extensions(ca, csr, OID_CLIENT_AUTH);
        if let Some(url) = &self.crl_url {
            extensions.push(crl_distribution_point(url));
        }
        let signed = Tbs {
            serial: &serial,
            not_before,
            not_after,
            subject_der: &subject.der,
            extensions: &extensions,
        };
        let mut issued = sign(ca, csr, &signed)?;
        issued.subject = subject.oneline;
        Ok(issued)
    }
}

/// One extension: OID arcs, criticality, DER value.
pub(crate) type Extension = (&'static [u64], bool, Vec<u8>);

/// What varies between the certificates this CA signs (the rest is the CA's and
/// the CSR's).
pub(crate) struct Tbs<'a> {
    pub serial: &'a [u8],
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub subject_der: &'a [u8],
    pub extensions: &'a [Extension],
}

/// Builds the TBSCertificate for the key of `csr`, signs it with `ca`, and returns
/// it with the facts recorded about it (`subject` left empty for the caller).
pub(crate) fn sign(ca: &IssuingCa, csr: &CheckedCsr, t: &Tbs<'_>) -> Result<Issued, IssueError> {
    let tbs = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_tagged(Tag::context(0), |w| w.write_u8(2));
            w.next().write_bigint_bytes(t.serial, true);
            w.next().write_der(ca.signature_algorithm_der());
            w.next().write_der(ca.subject_der());
            w.next().write_sequence(|w| {
                write_time(w.next(), t.not_before);
                write_time(w.next(), t.not_after);
            });
            w.next().write_der(t.subject_der);
            w.next().write_der(&csr.spki_der);
            w.next().write_tagged(Tag::context(3), |w| {
                w.write_sequence(|w| {
                    for (arcs, critical, value) in t.extensions {
                        write_extension(w.next(), arcs, *critical, value);
                    }
                })
            });
        })
    });
    let der = ca.sign_wrapped(&tbs)?;
    let spki_sha256 = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &csr.spki_der,
    ));
    Ok(Issued {
        pem: to_pem(&der),
        der,
        serial_hex: hex::encode(t.serial),
        subject: String::new(),
        not_before: truncate(t.not_before),
        not_after: truncate(t.not_after),
        spki_sha256,
        key: csr.key,
    })
}

/// The fixed extensions of an end-entity certificate with the one extended key
/// usage `eku`, whatever the CSR asked for: CA:FALSE, keyUsage, SKI, AKI.
pub(crate) fn end_entity_extensions(
    ca: &IssuingCa,
    csr: &CheckedCsr,
    eku: &[u64],
) -> Vec<Extension> {
    // basicConstraints CA:FALSE is the empty SEQUENCE (DER omits the default).
    let basic_constraints = yasna::construct_der(|w| w.write_sequence(|_| {}));
    // keyUsage: digitalSignature (bit 0), plus keyEncipherment (bit 2) for RSA keys,
    // which TLS 1.2 RSA key exchange needs.
    let key_usage = match csr.key {
        KeyKind::Rsa(_) => yasna::construct_der(|w| w.write_bitvec_bytes(&[0xa0], 3)),
        _ => yasna::construct_der(|w| w.write_bitvec_bytes(&[0x80], 1)),
    };
    let eku =
        yasna::construct_der(|w| w.write_sequence(|w| w.next().write_oid(&crate::der::oid(eku))));
    let ski = yasna::construct_der(|w| w.write_bytes(&key_identifier(&csr.public_key_bits)));
    let aki = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next()
                .write_tagged_implicit(Tag::context(0), |w| w.write_bytes(ca.key_id()))
        })
    });
    vec![
        (OID_BASIC_CONSTRAINTS, true, basic_constraints),
        (OID_KEY_USAGE, true, key_usage),
        (OID_EXT_KEY_USAGE, false, eku),
        (OID_SKI, false, ski),
        (OID_AKI, false, aki),
    ]
}

/// CRLDistributionPoints: one DistributionPoint with a fullName URI.
pub(crate) fn crl_distribution_point(url: &str) -> Extension {
    let dp = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_tagged(Tag::context(0), |w| {
                    // fullName [0] IMPLICIT GeneralNames (a SEQUENCE OF).
                    w.write_tagged_implicit(Tag::context(0), |w| {
                        w.write_sequence(|w| {
                            w.next()
                                .write_tagged_implicit(Tag::context(6), |w| w.write_ia5_string(url))
                        })
                    })
                })
            })
        })
    });
    (OID_CRL_DP, false, dp)
}

fn truncate(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}
