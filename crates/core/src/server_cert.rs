//! Server certificates for the services that accept this CA's users: signed by the
//! issuing CA from an operator's CSR, with extendedKeyUsage serverAuth, CA:FALSE
//! and subjectAltNames only from the names the operator gives (or, when asked, the
//! CSR's own names, each checked against the allowed patterns).

use std::net::IpAddr;
use std::time::Duration;

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509CertificationRequest};
use yasna::Tag;

use crate::csr::CheckedCsr;
use crate::issuer::{IssuerError, IssuingCa};
use crate::profile::{IssueError, Issued, Tbs, end_entity_extensions, sign};
use crate::serial::random_serial;

const OID_SERVER_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 1];
const OID_SAN: &[u64] = &[2, 5, 29, 17];

/// One subjectAltName: a DNS name or an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SanName {
    /// A DNS name, lower case.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl std::fmt::Display for SanName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SanName::Dns(d) => f.write_str(d),
            SanName::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Why a server certificate was not signed.
#[derive(Debug, thiserror::Error)]
pub enum ServerCertError {
    /// No name to put in the certificate.
    #[error("no name given: pass --dns NAME (or --ip ADDR) at least once")]
    NoNames,
    /// A name that is not a valid DNS name.
    #[error("{0:?} is not a valid DNS name")]
    BadDns(String),
    /// A CSR name outside the configured patterns.
    #[error(
        "the CSR names {0}, which no [server_certificate] allow_domains pattern allows; \
         add a pattern, or name the certificate with --dns/--ip instead of --use-csr-names"
    )]
    NotAllowed(String),
    /// The CSR could not be read for its names.
    #[error("the CSR's names cannot be read: {0}")]
    Csr(String),
    /// Signing failed.
    #[error(transparent)]
    Issue(#[from] IssueError),
}

/// A DNS name as it goes into a certificate: lower case, LDH labels, an optional
/// leading `*.` wildcard label.
pub fn dns_name(name: &str) -> Result<SanName, ServerCertError> {
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    let rest = lower.strip_prefix("*.").unwrap_or(&lower);
    let ok = !rest.is_empty()
        && lower.len() <= 253
        && rest.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(SanName::Dns(lower))
    } else {
        Err(ServerCertError::BadDns(name.to_string()))
    }
}

/// Whether `name` matches the pattern: exact, or `*.suffix` for any name ending in
/// `.suffix` (any depth below it).
pub fn allowed(name: &SanName, patterns: &[String]) -> bool {
    let name = name.to_string();
    patterns.iter().any(|p| {
        let p = p.to_ascii_lowercase();
        match p.strip_prefix("*.") {
            Some(suffix) => name.ends_with(&format!(".{suffix}")),
            None => name == p,
        }
    })
}

/// The names a CSR asks for: its subjectAltName DNS names and IP addresses, or its
/// CN when it has none.
pub fn csr_names(csr_der: &[u8]) -> Result<Vec<SanName>, ServerCertError> {
    let (_, req) = X509CertificationRequest::from_der(csr_der)
        .map_err(|e| ServerCertError::Csr(e.to_string()))?;
    let mut names = Vec::new();
    for ext in req.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for g in &san.general_names {
                match g {
                    GeneralName::DNSName(d) => names.push(dns_name(d)?),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => names.push(SanName::Ip(IpAddr::from(
                            <[u8; 4]>::try_from(*b).unwrap_or_default(),
                        ))),
                        16 => names.push(SanName::Ip(IpAddr::from(
                            <[u8; 16]>::try_from(*b).unwrap_or_default(),
                        ))),
                        _ => {
                            return Err(ServerCertError::Csr("an IP address of odd length".into()));
                        }
                    },
                    other => {
                        return Err(ServerCertError::Csr(format!(
                            "subjectAltName {other:?} is neither a DNS name nor an IP address"
                        )));
                    }
                }
            }
        }
    }
    if names.is_empty() {
        for cn in req.certification_request_info.subject.iter_common_name() {
            let cn = cn
                .as_str()
                .map_err(|e| ServerCertError::Csr(e.to_string()))?;
            names.push(match cn.parse::<IpAddr>() {
                Ok(ip) => SanName::Ip(ip),
                Err(_) => dns_name(cn)?,
            });
        }
    }
    Ok(names)
}

/// Signs a server certificate for the key of `csr`, named `names` (the first is
/// also the subject's CN), valid from now (less `backdate`) for `lifetime`, never
/// beyond the CA's own end.
pub fn issue(
    ca: &IssuingCa,
    csr: &CheckedCsr,
    names: &[SanName],
    lifetime: Duration,
    backdate: Duration,
    now: OffsetDateTime,
) -> Result<Issued, ServerCertError> {
    let first = names.first().ok_or(ServerCertError::NoNames)?;
    if now >= ca.not_after() {
        return Err(IssueError::CaExpired(ca.not_after()).into());
    }
    let cn = first.to_string();
    let subject_der = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_set(|w| {
                w.next().write_sequence(|w| {
                    w.next().write_oid(&crate::der::oid(&[2, 5, 4, 3]));
                    w.next().write_utf8_string(&cn);
                })
            })
        })
    });
    let san = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            for n in names {
                match n {
                    SanName::Dns(d) => w
                        .next()
                        .write_tagged_implicit(Tag::context(2), |w| w.write_ia5_string(d)),
                    SanName::Ip(IpAddr::V4(a)) => w
                        .next()
                        .write_tagged_implicit(Tag::context(7), |w| w.write_bytes(&a.octets())),
                    SanName::Ip(IpAddr::V6(a)) => w
                        .next()
                        .write_tagged_implicit(Tag::context(7), |w| w.write_bytes(&a.octets())),
                }
            }
        })
    });
    let mut extensions = end_entity_extensions(ca, csr, OID_SERVER_AUTH);
    extensions.push((OID_SAN, false, san));
    let serial = random_serial()
        .map_err(|_| IssueError::Signer(IssuerError::Sign("no randomness".into())))?;
    let not_before = (now - backdate).max(ca.not_before());
    let not_after = (now + lifetime).min(ca.not_after());
    let mut issued = sign(
        ca,
        csr,
        &Tbs {
            serial: &serial,
            not_before,
            not_after,
            subject_der: &subject_der,
            extensions: &extensions,
        },
    )?;
    issued.subject = format!("/CN={cn}");
    Ok(issued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_matched() {
        assert_eq!(
            dns_name("API.Example.org.").unwrap(),
            SanName::Dns("api.example.org".into())
        );
        assert!(dns_name("*.example.org").is_ok());
        for bad in ["", "a..b", "-a.org", "a_b.org", "a b", "*.", "a.*.org"] {
            assert!(dns_name(bad).is_err(), "{bad}");
        }
        let p = vec!["*.example.org".to_string(), "db.internal".to_string()];
        assert!(allowed(&SanName::Dns("api.example.org".into()), &p));
        assert!(allowed(&SanName::Dns("a.b.example.org".into()), &p));
        assert!(!allowed(&SanName::Dns("example.org".into()), &p));
        assert!(!allowed(&SanName::Dns("evil-example.org".into()), &p));
        assert!(allowed(&SanName::Dns("db.internal".into()), &p));
        assert!(!allowed(&SanName::Ip("10.0.0.1".parse().unwrap()), &p));
    }
}
