//! Certificate revocation lists: RFC 5280 reason codes and the v2 CRL the issuing
//! CA signs (thisUpdate, nextUpdate, CRL number, authority key identifier, a reason
//! code per entry). Which certificates to list, and the number, come from outside.

use time::OffsetDateTime;
use yasna::Tag;

use crate::der::{write_extension, write_time};
use crate::issuer::{IssuerError, IssuingCa};

const OID_AKI: &[u64] = &[2, 5, 29, 35];
const OID_CRL_NUMBER: &[u64] = &[2, 5, 29, 20];
const OID_REASON_CODE: &[u64] = &[2, 5, 29, 21];

/// A CRL reason code (RFC 5280 section 5.3.1) that an operator may give when
/// revoking an end-entity certificate. `certificateHold` and `removeFromCRL` are
/// left out on purpose: a revocation here is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No reason given; the CRL entry then carries no reason code extension.
    Unspecified,
    /// The certificate's private key is known or suspected to be compromised.
    KeyCompromise,
    /// The CA's key is known or suspected to be compromised.
    CaCompromise,
    /// The subject's name or other information changed.
    AffiliationChanged,
    /// The certificate was replaced.
    Superseded,
    /// The certificate is no longer needed.
    CessationOfOperation,
    /// A privilege it stood for was withdrawn.
    PrivilegeWithdrawn,
}

impl Reason {
    /// Every reason, in code order.
    pub const ALL: [Reason; 7] = [
        Reason::Unspecified,
        Reason::KeyCompromise,
        Reason::CaCompromise,
        Reason::AffiliationChanged,
        Reason::Superseded,
        Reason::CessationOfOperation,
        Reason::PrivilegeWithdrawn,
    ];

    /// The CRLReason value.
    pub fn code(self) -> i32 {
        match self {
            Reason::Unspecified => 0,
            Reason::KeyCompromise => 1,
            Reason::CaCompromise => 2,
            Reason::AffiliationChanged => 3,
            Reason::Superseded => 4,
            Reason::CessationOfOperation => 5,
            Reason::PrivilegeWithdrawn => 9,
        }
    }

    /// The reason with this CRLReason value, if it is one of [`Reason::ALL`].
    pub fn from_code(code: i32) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The RFC 5280 name, as OpenSSL's `-crl_reason` takes it (`keyCompromise`).
    pub fn name(self) -> &'static str {
        match self {
            Reason::Unspecified => "unspecified",
            Reason::KeyCompromise => "keyCompromise",
            Reason::CaCompromise => "cACompromise",
            Reason::AffiliationChanged => "affiliationChanged",
            Reason::Superseded => "superseded",
            Reason::CessationOfOperation => "cessationOfOperation",
            Reason::PrivilegeWithdrawn => "privilegeWithdrawn",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown reason name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown revocation reason {0:?}: use one of {names}", names = Reason::ALL.map(Reason::name).join(", "))]
pub struct UnknownReason(pub String);

impl std::str::FromStr for Reason {
    type Err = UnknownReason;

    /// The RFC 5280 name in any case, with or without `-`/`_` between words
    /// (`keyCompromise`, `key-compromise`, `KEY_COMPROMISE`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fold = |n: &str| {
            n.chars()
                .filter(|c| *c != '-' && *c != '_')
                .collect::<String>()
                .to_ascii_lowercase()
        };
        let wanted = fold(s);
        Reason::ALL
            .into_iter()
            .find(|r| fold(r.name()) == wanted)
            .ok_or_else(|| UnknownReason(s.to_string()))
    }
}

/// One entry of a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The certificate's serial number, big-endian bytes (leading zeros allowed).
    pub serial: Vec<u8>,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
    /// The CRLReason value; `None` or 0 (unspecified) writes no reason extension,
    /// as RFC 5280 section 5.3.1 recommends.
    pub reason: Option<i32>,
}

/// A signed CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    /// The CRL, DER.
    pub der: Vec<u8>,
    /// The CRL, PEM (`X509 CRL`, ending in a newline).
    pub pem: String,
    /// Its CRL number.
    pub number: u64,
    /// Its thisUpdate (whole seconds).
    pub this_update: OffsetDateTime,
    /// Its nextUpdate (whole seconds).
    pub next_update: OffsetDateTime,
    /// How many certificates it lists.
    pub entries: usize,
}

/// Builds and signs a v2 CRL of `ca` listing `revoked`, numbered `number`, valid from
/// `this_update` to `next_update`. The caller chooses the entries (revoked and not
/// yet expired keeps it small) and must give each CRL a larger number than the last.
pub fn build(
    ca: &IssuingCa,
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    revoked: &[Revoked],
) -> Result<Crl, IssuerError> {
    if next_update <= this_update {
        return Err(IssuerError::Sign(
            "a CRL's nextUpdate must come after its thisUpdate".into(),
        ));
    }
    // The extension values, written once rather than per entry.
    let reason_values: Vec<Option<Vec<u8>>> = (0..=10)
        .map(|code| (code != 0).then(|| yasna::construct_der(|w| w.write_enum(i64::from(code)))))
        .collect();
    let aki = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next()
                .write_tagged_implicit(Tag::context(0), |w| w.write_bytes(ca.key_id()))
        })
    });
    let crl_number = yasna::construct_der(|w| w.write_u64(number));
    let tbs = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            // version v2 (1): required once extensions are present.
            w.next().write_u8(1);
            w.next().write_der(ca.signature_algorithm_der());
            w.next().write_der(ca.subject_der());
            write_time(w.next(), this_update);
            write_time(w.next(), next_update);
            // An empty revokedCertificates must be absent, not an empty SEQUENCE.
            if !revoked.is_empty() {
                w.next().write_sequence(|w| {
                    for r in revoked {
                        w.next().write_sequence(|w| {
                            w.next().write_bigint_bytes(&r.serial, true);
                            write_time(w.next(), r.revoked_at);
                            let value = r
                                .reason
                                .and_then(|c| usize::try_from(c).ok())
                                .and_then(|c| reason_values.get(c))
                                .and_then(Option::as_ref);
                            if let Some(value) = value {
                                w.next().write_sequence(|w| {
                                    write_extension(w.next(), OID_REASON_CODE, false, value)
                                });
                            }
                        });
                    }
                });
            }
            w.next().write_tagged(Tag::context(0), |w| {
                w.write_sequence(|w| {
                    write_extension(w.next(), OID_AKI, false, &aki);
                    write_extension(w.next(), OID_CRL_NUMBER, false, &crl_number);
                })
            });
        })
    });
    let der = ca.sign_wrapped(&tbs)?;
    let pem = pem::encode_config(
        &pem::Pem::new("X509 CRL", der.clone()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    let whole = |t: OffsetDateTime| t.replace_nanosecond(0).unwrap_or(t);
    Ok(Crl {
        der,
        pem,
        number,
        this_update: whole(this_update),
        next_update: whole(next_update),
        entries: revoked.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_round_trip() {
        for r in Reason::ALL {
            assert_eq!(r.name().parse::<Reason>().unwrap(), r);
            assert_eq!(Reason::from_code(r.code()), Some(r));
        }
        assert_eq!(
            "key-compromise".parse::<Reason>().unwrap(),
            Reason::KeyCompromise
        );
        assert_eq!(
            "CESSATION_OF_OPERATION".parse::<Reason>().unwrap(),
            Reason::CessationOfOperation
        );
        let e = "certificateHold".parse::<Reason>().unwrap_err().to_string();
        assert!(
            e.contains("certificateHold") && e.contains("keyCompromise"),
            "{e}"
        );
        assert_eq!(Reason::from_code(6), None);
    }
}
