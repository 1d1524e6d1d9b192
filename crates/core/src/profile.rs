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

        let extensions = self.extensions(ca, csr);
        let tbs = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_tagged(Tag::context(0), |w| w.write_u8(2));
                w.next().write_bigint_bytes(&serial, true);
                w.next().write_der(ca.signature_algorithm_der());
                w.next().write_der(ca.subject_der());
                w.next().write_sequence(|w| {
                    write_time(w.next(), not_before);
                    write_time(w.next(), not_after);
                });
                w.next().write_der(&subject.der);
                w.next().write_der(&csr.spki_der);
                w.next().write_tagged(Tag::context(3), |w| {
                    w.write_sequence(|w| {
                        for (arcs, critical, value) in &extensions {
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
            serial_hex: hex::encode(serial),
            subject: subject.oneline,
            not_before: truncate(not_before),
            not_after: truncate(not_after),
            spki_sha256,
            key: csr.key,
        })
    }

    /// The fixed extension set, whatever the CSR asked for.
    fn extensions(&self, ca: &IssuingCa, csr: &CheckedCsr) -> Vec<(&'static [u64], bool, Vec<u8>)> {
        // basicConstraints CA:FALSE is the empty SEQUENCE (DER omits the default).
        let basic_constraints = yasna::construct_der(|w| w.write_sequence(|_| {}));
        // keyUsage: digitalSignature (bit 0), plus keyEncipherment (bit 2) for RSA keys,
        // which TLS 1.2 RSA key exchange needs.
        let key_usage = match csr.key {
            KeyKind::Rsa(_) => yasna::construct_der(|w| w.write_bitvec_bytes(&[0xa0], 3)),
            _ => yasna::construct_der(|w| w.write_bitvec_bytes(&[0x80], 1)),
        };
        let eku = yasna::construct_der(|w| {
            w.write_sequence(|w| w.next().write_oid(&crate::der::oid(OID_CLIENT_AUTH)))
        });
        let ski = yasna::construct_der(|w| w.write_bytes(&key_identifier(&csr.public_key_bits)));
        let aki = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next()
                    .write_tagged_implicit(Tag::context(0), |w| w.write_bytes(ca.key_id()))
            })
        });
        let mut exts = vec![
            (OID_BASIC_CONSTRAINTS, true, basic_constraints),
            (OID_KEY_USAGE, true, key_usage),
            (OID_EXT_KEY_USAGE, false, eku),
            (OID_SKI, false, ski),
            (OID_AKI, false, aki),
        ];
        if let Some(url) = &self.crl_url {
            // CRLDistributionPoints: one DistributionPoint with a fullName URI.
            let dp = yasna::construct_der(|w| {
                w.write_sequence(|w| {
                    w.next().write_sequence(|w| {
                        w.next().write_tagged(Tag::context(0), |w| {
                            // fullName [0] IMPLICIT GeneralNames (a SEQUENCE OF).
                            w.write_tagged_implicit(Tag::context(0), |w| {
                                w.write_sequence(|w| {
                                    w.next().write_tagged_implicit(Tag::context(6), |w| {
                                        w.write_ia5_string(url)
                                    })
                                })
                            })
                        })
                    })
                })
            });
            exts.push((OID_CRL_DP, false, dp));
        }
        exts
    }
}

fn truncate(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}
