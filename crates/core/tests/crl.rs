//! CRLs read back with an independent parser: structure, extensions, reason codes,
//! and the signature, for each CA key type.

use std::time::Duration;

use onlineca_core::IssuingCa;
use onlineca_core::crl::{self, Reason, Revoked};
use onlineca_core::pki::{self, KeyType, PkiOptions};
use time::OffsetDateTime;
use time::macros::datetime;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

fn make_ca(key_type: KeyType) -> IssuingCa {
    let created = pki::create(&PkiOptions {
        key_type,
        org: "Example".into(),
        ca_name: "CRL Test CA".into(),
        hostnames: vec!["localhost".into()],
        root_lifetime: Duration::from_secs(10 * 365 * 86400),
        ca_lifetime: Duration::from_secs(365 * 86400),
        tls_lifetime: Duration::from_secs(86400),
        now: OffsetDateTime::now_utc(),
    })
    .unwrap();
    IssuingCa::from_pem(
        &created.issuing.cert_pem,
        &created.issuing.key_pem,
        &created.root.cert_pem,
    )
    .unwrap()
}

#[test]
fn crl_reads_back_and_verifies_for_every_key_type() {
    let this = datetime!(2026-11-23 10:00:00.75 UTC);
    let next = this + time::Duration::hours(1);
    let entries = vec![
        Revoked {
            serial: vec![0x00, 0x7f, 0x01],
            revoked_at: datetime!(2026-11-23 09:00 UTC),
            reason: Some(Reason::KeyCompromise.code()),
        },
        Revoked {
            serial: vec![0x12; 20],
            revoked_at: datetime!(2026-11-23 09:30 UTC),
            reason: Some(Reason::Unspecified.code()),
        },
        Revoked {
            serial: vec![0x33],
            revoked_at: datetime!(2026-11-23 09:45 UTC),
            reason: None,
        },
        Revoked {
            serial: vec![0x44],
            revoked_at: datetime!(2026-11-23 09:50 UTC),
            reason: Some(Reason::PrivilegeWithdrawn.code()),
        },
    ];
    for key_type in [
        KeyType::P256,
        KeyType::P384,
        KeyType::Ed25519,
        KeyType::Rsa2048,
    ] {
        let ca = make_ca(key_type);
        let built = crl::build(&ca, 42, this, next, &entries).unwrap();
        assert_eq!(built.entries, 4);
        assert_eq!(built.this_update, datetime!(2026-11-23 10:00:00 UTC));
        assert!(built.pem.starts_with("-----BEGIN X509 CRL-----\n"));
        assert_eq!(pem::parse(&built.pem).unwrap().contents(), built.der);

        let (rest, parsed) = CertificateRevocationList::from_der(&built.der).unwrap();
        assert!(rest.is_empty());
        let (_, ca_cert) = X509Certificate::from_der(ca.cert_der()).unwrap();
        parsed
            .verify_signature(ca_cert.public_key())
            .unwrap_or_else(|e| panic!("{key_type:?}: {e}"));
        assert_eq!(parsed.version().map(|v| v.0), Some(1), "v2");
        assert_eq!(parsed.issuer().as_raw(), ca.subject_der());
        assert_eq!(parsed.last_update().timestamp(), this.unix_timestamp());
        assert_eq!(
            parsed.next_update().map(|t| t.timestamp()),
            Some(next.unix_timestamp())
        );
        assert_eq!(
            parsed.crl_number().map(|n| n.to_string()),
            Some("42".into())
        );
        let aki = parsed
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref(),
                _ => None,
            });
        assert_eq!(aki.map(|k| k.0), Some(ca.key_id()));

        let got: Vec<(Vec<u8>, i64, Option<u8>)> = parsed
            .iter_revoked_certificates()
            .map(|r| {
                (
                    r.raw_serial().to_vec(),
                    r.revocation_date.timestamp(),
                    r.reason_code().map(|(_, c)| c.0),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                // DER drops the leading zero byte.
                (
                    vec![0x7f, 0x01],
                    entries[0].revoked_at.unix_timestamp(),
                    Some(1)
                ),
                (vec![0x12; 20], entries[1].revoked_at.unix_timestamp(), None),
                (vec![0x33], entries[2].revoked_at.unix_timestamp(), None),
                (vec![0x44], entries[3].revoked_at.unix_timestamp(), Some(9)),
            ]
        );
    }
}

#[test]
fn empty_crl_has_no_revoked_list_and_bad_times_are_refused() {
    let ca = make_ca(KeyType::P256);
    let t = datetime!(2026-11-23 10:00 UTC);
    let built = crl::build(&ca, 1, t, t + time::Duration::hours(1), &[]).unwrap();
    let (_, parsed) = CertificateRevocationList::from_der(&built.der).unwrap();
    assert_eq!(parsed.iter_revoked_certificates().count(), 0);
    assert_eq!(parsed.crl_number().map(|n| n.to_string()), Some("1".into()));
    assert!(crl::build(&ca, 2, t, t, &[]).is_err());
}
