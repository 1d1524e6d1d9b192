//! Replays the fuzzer's kept inputs for the CSR path (`fuzz/regressions/csr/`:
//! crashes it found and a small minimized corpus) through the same calls as the
//! `csr` fuzz target, so the default test run covers them without cargo-fuzz.

use std::time::Duration;

use onlineca_core::pki::{self, KeyType, PkiOptions};
use onlineca_core::{IssuingCa, Principal, Profile, SubjectTemplate, csr};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use onlineca_testkit::fuzz_inputs as inputs;

#[test]
fn csr_regressions_are_refused_or_issued_never_a_panic() {
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
    .unwrap();
    let ca = IssuingCa::from_pem(&created.issuing.cert_pem, &created.issuing.key_pem, "").unwrap();
    let profile = Profile {
        template: SubjectTemplate::parse("/O=Fuzz/OU=Users/CN={username}").unwrap(),
        lifetime: Duration::from_secs(12 * 3600),
        backdate: Duration::from_secs(300),
        crl_url: Some("http://localhost/onlineca/crl".into()),
    };
    let principal = Principal::password("alice");
    let exercise = |der: &[u8]| -> bool {
        let Ok(checked) = csr::check(der) else {
            return false;
        };
        let issued = profile
            .issue(&ca, &checked, &principal, now, None)
            .expect("a CSR that passed the checks must issue");
        let (rest, cert) = X509Certificate::from_der(&issued.der).unwrap();
        assert!(rest.is_empty());
        assert_eq!(cert.public_key().raw, &checked.spki_der[..]);
        assert_eq!(issued.subject, "/O=Fuzz/OU=Users/CN=alice");
        true
    };
    let mut issued = 0;
    for (path, data) in inputs("csr") {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut n = exercise(&data) as usize;
            if let Ok(text) = std::str::from_utf8(&data)
                && let Ok(der) = csr::decode_text(text)
            {
                n += exercise(&der) as usize;
            }
            n
        }));
        match r {
            Ok(n) => issued += n,
            Err(_) => panic!("{} panicked", path.display()),
        }
    }
    // The corpus holds valid CSRs: the issuing path itself is replayed too.
    assert!(issued > 0, "no regression input reached issuance");
}
