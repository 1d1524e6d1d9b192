//! The CSR path: decode (PEM or base64 text, or DER as sent), parse, verify the
//! self-signature, apply the key policy, then issue with a fixed test CA for a fixed
//! user, and check that the certificate carries the CSR's key and nothing else of it.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use onlineca_core::pki::{self, KeyType, PkiOptions};
use onlineca_core::{IssuingCa, Principal, Profile, SubjectTemplate, csr};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

struct Fixture {
    ca: IssuingCa,
    profile: Profile,
    principal: Principal,
    now: OffsetDateTime,
}

/// A throwaway P-256 CA made once per process (no key on disk).
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // 2027-01-01T00:00:00Z: fixed, so a crash reproduces.
        let now = OffsetDateTime::from_unix_timestamp(1_798_761_600).unwrap();
        let created = pki::create(&PkiOptions {
            key_type: KeyType::P256,
            org: "Fuzz".into(),
            ca_name: "Fuzz".into(),
            hostnames: vec!["localhost".into()],
            root_lifetime: Duration::from_secs(86400 * 3650),
            ca_lifetime: Duration::from_secs(86400 * 365),
            tls_lifetime: Duration::from_secs(86400),
            now: now - time::Duration::days(1),
        })
        .expect("test CA");
        let ca = IssuingCa::from_pem(&created.issuing.cert_pem, &created.issuing.key_pem, "")
            .expect("test issuing CA");
        Fixture {
            ca,
            profile: Profile {
                template: SubjectTemplate::parse("/O=Fuzz/OU=Users/CN={username}").unwrap(),
                lifetime: Duration::from_secs(12 * 3600),
                backdate: Duration::from_secs(300),
                crl_url: Some("http://localhost/onlineca/crl".into()),
            },
            principal: Principal::password("alice"),
            now,
        }
    })
}

fn exercise(der: &[u8]) {
    let Ok(checked) = csr::check(der) else {
        return;
    };
    let f = fixture();
    let issued = f
        .profile
        .issue(&f.ca, &checked, &f.principal, f.now, None)
        .expect("a CSR that passed the checks must issue");
    let (rest, cert) = X509Certificate::from_der(&issued.der).expect("issued certificate parses");
    assert!(
        rest.is_empty(),
        "trailing bytes after the issued certificate"
    );
    assert_eq!(
        cert.public_key().raw,
        &checked.spki_der[..],
        "the issued certificate must carry exactly the CSR's public key"
    );
    assert_eq!(issued.subject, "/O=Fuzz/OU=Users/CN=alice");
}

fuzz_target!(|data: &[u8]| {
    // DER as sent (application/pkcs10, a multipart part)...
    exercise(data);
    // ...and the same bytes as the text of a form field (PEM or base64).
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(der) = csr::decode_text(text)
    {
        exercise(&der);
    }
});
