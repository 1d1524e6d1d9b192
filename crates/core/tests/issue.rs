//! The profile, end to end inside the core: create a CA, check CSRs of every allowed
//! key type, issue, and read the result back with an independent parser.

use std::time::Duration;

use onlineca_core::csr::{self, CsrError};
use onlineca_core::pki::{self, KeyType, PkiOptions};
use onlineca_core::{IssuingCa, Principal, Profile, SubjectTemplate};
use rcgen::{BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, KeyPair, SanType};
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn make_ca(key_type: KeyType, ca_lifetime: Duration) -> (IssuingCa, pki::Pki) {
    let created = pki::create(&PkiOptions {
        key_type,
        org: "Example".into(),
        ca_name: "Test CA".into(),
        hostnames: vec!["localhost".into(), "127.0.0.1".into()],
        root_lifetime: Duration::from_secs(10 * 365 * 86400),
        ca_lifetime,
        tls_lifetime: Duration::from_secs(86400),
        now: now(),
    })
    .unwrap();
    let ca = IssuingCa::from_pem(
        &created.issuing.cert_pem,
        &created.issuing.key_pem,
        &created.root.cert_pem,
    )
    .unwrap();
    (ca, created)
}

fn profile() -> Profile {
    Profile {
        template: SubjectTemplate::parse("/O=Example/OU=Users/CN={username}").unwrap(),
        lifetime: Duration::from_secs(12 * 3600),
        backdate: Duration::from_secs(300),
        crl_url: None,
    }
}

/// A CSR whose subject and requested extensions try to get more than they may.
fn greedy_csr(key: &KeyPair) -> Vec<u8> {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, "admin");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.subject_alt_names = vec![SanType::DnsName("evil.example".try_into().unwrap())];
    p.custom_extensions = vec![CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![5, 0])];
    p.serialize_request(key).unwrap().der().to_vec()
}

fn check_certificate(der: &[u8], ca: &IssuingCa, expect_rsa: bool) {
    let (rest, cert) = X509Certificate::from_der(der).unwrap();
    assert!(rest.is_empty());
    assert_eq!(cert.version().0, 2, "v3");
    assert_eq!(cert.subject().to_string(), "O=Example, OU=Users, CN=alice");
    assert_eq!(cert.issuer().as_raw(), ca.subject_der());
    let serial = cert.raw_serial();
    assert_eq!(serial.len(), 20, "20 serial bytes, never a 21st");
    assert_eq!(serial[0] & 0x80, 0);

    let mut seen = Vec::new();
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => {
                assert!(ext.critical);
                assert!(!bc.ca);
                seen.push("bc");
            }
            ParsedExtension::KeyUsage(ku) => {
                assert!(ext.critical);
                assert!(ku.digital_signature());
                assert_eq!(ku.key_encipherment(), expect_rsa);
                assert!(!ku.key_cert_sign());
                seen.push("ku");
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                assert!(eku.client_auth);
                assert!(!eku.server_auth && !eku.any);
                seen.push("eku");
            }
            ParsedExtension::SubjectKeyIdentifier(_) => seen.push("ski"),
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                assert_eq!(aki.key_identifier.as_ref().unwrap().0, ca.key_id());
                seen.push("aki");
            }
            other => panic!("unexpected extension {other:?}"),
        }
    }
    seen.sort();
    assert_eq!(seen, ["aki", "bc", "eku", "ku", "ski"]);

    let (_, ca_cert) = X509Certificate::from_der(ca.cert_der()).unwrap();
    cert.verify_signature(Some(ca_cert.public_key())).unwrap();
}

#[test]
fn every_ca_key_type_signs_every_csr_key_type() {
    for ca_type in [
        KeyType::P256,
        KeyType::P384,
        KeyType::Ed25519,
        KeyType::Rsa2048,
    ] {
        let (ca, _) = make_ca(ca_type, Duration::from_secs(365 * 86400));
        for csr_alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let key = KeyPair::generate_for(csr_alg).unwrap();
            let checked = csr::check(&greedy_csr(&key)).unwrap();
            let issued = profile()
                .issue(&ca, &checked, &Principal::password("alice"), now(), None)
                .unwrap();
            check_certificate(&issued.der, &ca, false);
            assert_eq!(issued.subject, "/O=Example/OU=Users/CN=alice");
            assert_eq!(issued.serial_hex.len(), 40);
            assert!(issued.pem.ends_with("-----END CERTIFICATE-----\n"));
        }
        let rsa =
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
        let checked = csr::check(&greedy_csr(&rsa)).unwrap();
        assert_eq!(checked.key, onlineca_core::KeyKind::Rsa(2048));
        let issued = profile()
            .issue(&ca, &checked, &Principal::password("alice"), now(), None)
            .unwrap();
        check_certificate(&issued.der, &ca, true);
    }
}

#[test]
fn validity_is_backdated_and_capped() {
    let t = now();
    let (ca, _) = make_ca(KeyType::P256, Duration::from_secs(3600));
    let key = KeyPair::generate().unwrap();
    let checked = csr::check(&greedy_csr(&key)).unwrap();
    // 12 h requested, the CA lives only one more hour: capped at the CA's notAfter.
    let issued = profile()
        .issue(&ca, &checked, &Principal::password("alice"), t, None)
        .unwrap();
    assert_eq!(issued.not_after, ca.not_after());
    assert!(issued.not_before <= t - Duration::from_secs(299));
    // A shorter cap wins over the profile's lifetime.
    let issued = profile()
        .issue(
            &ca,
            &checked,
            &Principal::password("alice"),
            t,
            Some(Duration::from_secs(600)),
        )
        .unwrap();
    let secs = (issued.not_after - t).whole_seconds();
    assert!((599..=600).contains(&secs), "{secs}");
    // An expired CA issues nothing.
    assert!(
        profile()
            .issue(
                &ca,
                &checked,
                &Principal::password("alice"),
                t + Duration::from_secs(7200),
                None
            )
            .is_err()
    );
}

#[test]
fn serials_differ_for_the_same_key() {
    let (ca, _) = make_ca(KeyType::P256, Duration::from_secs(86400));
    let key = KeyPair::generate().unwrap();
    let checked = csr::check(&greedy_csr(&key)).unwrap();
    let a = profile()
        .issue(&ca, &checked, &Principal::password("alice"), now(), None)
        .unwrap();
    let b = profile()
        .issue(&ca, &checked, &Principal::password("alice"), now(), None)
        .unwrap();
    assert_ne!(a.serial_hex, b.serial_hex);
}

#[test]
fn hostile_username_is_refused_before_signing() {
    let (ca, _) = make_ca(KeyType::P256, Duration::from_secs(86400));
    let key = KeyPair::generate().unwrap();
    let checked = csr::check(&greedy_csr(&key)).unwrap();
    for bad in ["a/CN=b", "a,CN=b", "a+CN=b", "a\nb"] {
        assert!(
            profile()
                .issue(&ca, &checked, &Principal::password(bad), now(), None)
                .is_err()
        );
    }
}

#[test]
fn crl_distribution_point_when_configured() {
    let (ca, _) = make_ca(KeyType::P256, Duration::from_secs(86400));
    let key = KeyPair::generate().unwrap();
    let checked = csr::check(&greedy_csr(&key)).unwrap();
    let mut p = profile();
    p.crl_url = Some("http://ca.example.org/onlineca/crl".into());
    let issued = p
        .issue(&ca, &checked, &Principal::password("alice"), now(), None)
        .unwrap();
    let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
    let found = cert
        .extensions()
        .iter()
        .any(|e| match e.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(dps) => {
                format!("{dps:?}").contains("http://ca.example.org/onlineca/crl")
            }
            _ => false,
        });
    assert!(found);
}

#[test]
fn csr_refusals_say_what_is_wrong() {
    assert_eq!(
        csr::decode_text("not a csr at all!"),
        Err(CsrError::Undecodable)
    );
    assert!(matches!(
        csr::decode_text("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"),
        Err(CsrError::WrongPemLabel(_))
    ));
    assert!(matches!(
        csr::check(b"\x30\x03\x02\x01\x00"),
        Err(CsrError::Unparsable(_))
    ));

    let key = KeyPair::generate().unwrap();
    let mut der = greedy_csr(&key);
    let mut trailing = der.clone();
    trailing.push(0);
    assert_eq!(csr::check(&trailing).unwrap_err(), CsrError::TrailingData);
    // Flip a bit in the signature (the last bytes).
    let n = der.len();
    der[n - 3] ^= 0x01;
    assert!(matches!(csr::check(&der), Err(CsrError::BadSignature(_))));
}

#[test]
fn key_and_certificate_must_match() {
    let (_, a) = make_ca(KeyType::P256, Duration::from_secs(86400));
    let (_, b) = make_ca(KeyType::P256, Duration::from_secs(86400));
    let e = IssuingCa::from_pem(&a.issuing.cert_pem, &b.issuing.key_pem, "").unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
    // The TLS certificate is no CA.
    let e = IssuingCa::from_pem(&a.tls.cert_pem, &a.tls.key_pem, "").unwrap_err();
    assert!(e.to_string().contains("not a CA"), "{e}");
}

/// A key that, like a token, signs without showing its public half.
struct Device(KeyPair);

impl onlineca_core::CaKey for Device {
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        rcgen::PublicKeyData::algorithm(&self.0)
    }
    fn public_key_bits(&self) -> Option<&[u8]> {
        None
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, onlineca_core::IssuerError> {
        rcgen::SigningKey::sign(&self.0, message)
            .map_err(|e| onlineca_core::IssuerError::Sign(e.to_string()))
    }
    fn is_device(&self) -> bool {
        true
    }
}

#[test]
fn a_device_key_proves_it_belongs_to_the_certificate() {
    for key_type in [KeyType::P384, KeyType::Rsa2048] {
        let (_, a) = make_ca(key_type, Duration::from_secs(86400));
        let (_, b) = make_ca(key_type, Duration::from_secs(86400));
        let cert = onlineca_core::issuer::pem_certificates(&a.issuing.cert_pem).unwrap();
        let device = |pem: &str| Box::new(Device(KeyPair::from_pem(pem).unwrap()));
        let e = IssuingCa::with_key(cert[0].clone(), device(&b.issuing.key_pem), &[]).unwrap_err();
        assert!(
            e.to_string().contains("does not match"),
            "{key_type:?}: {e}"
        );
        let ca = IssuingCa::with_key(cert[0].clone(), device(&a.issuing.key_pem), &[]).unwrap();
        assert!(ca.signs_on_device());
        // What it signs verifies under the certificate.
        let user = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let checked = csr::check(&greedy_csr(&user)).unwrap();
        let issued = profile()
            .issue(&ca, &checked, &Principal::password("alice"), now(), None)
            .unwrap();
        check_certificate(&issued.der, &ca, false);
    }
}

#[test]
fn chain_excludes_the_root() {
    let (ca, created) = make_ca(KeyType::P256, Duration::from_secs(86400));
    assert_eq!(ca.chain_pem(), created.issuing.cert_pem);
    assert!(!ca.is_self_signed());
    let root = IssuingCa::from_pem(&created.root.cert_pem, &created.root.key_pem, "").unwrap();
    assert!(root.is_self_signed());
    assert_eq!(root.chain_pem(), "");
}
