//! Measures the engine's share of an issuance (CSR parse + signature check + key
//! policy, certificate build + sign + PEM) for each CA key type, on one core.
//! Run: `cargo run --release -p onlineca-core --example issue_bench [iterations]`.

use std::time::{Duration, Instant};

use onlineca_core::pki::{self, KeyType, PkiOptions};
use onlineca_core::{IssuingCa, Principal, Profile, SubjectTemplate, csr};
use rcgen::{CertificateParams, KeyPair};
use time::OffsetDateTime;

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let now = OffsetDateTime::now_utc();
    let profile = Profile {
        template: SubjectTemplate::parse("/O=Example/OU=Users/CN={username}").unwrap(),
        lifetime: Duration::from_secs(12 * 3600),
        backdate: Duration::from_secs(300),
        crl_url: None,
    };
    let csrs = [
        (
            "P-256 CSR",
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        ),
        (
            "RSA-2048 CSR",
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap(),
        ),
    ]
    .map(|(name, key)| {
        (
            name,
            CertificateParams::default()
                .serialize_request(&key)
                .unwrap()
                .der()
                .to_vec(),
        )
    });
    println!("{n} issuances each; time per issuance");
    for ca_type in [
        KeyType::P256,
        KeyType::P384,
        KeyType::Ed25519,
        KeyType::Rsa2048,
    ] {
        let created = pki::create(&PkiOptions {
            key_type: ca_type,
            org: "Example".into(),
            ca_name: "Bench".into(),
            hostnames: vec!["localhost".into()],
            root_lifetime: Duration::from_secs(86400 * 3650),
            ca_lifetime: Duration::from_secs(86400 * 365),
            tls_lifetime: Duration::from_secs(86400),
            now,
        })
        .unwrap();
        let ca =
            IssuingCa::from_pem(&created.issuing.cert_pem, &created.issuing.key_pem, "").unwrap();
        for (name, der) in &csrs {
            let (mut check, mut sign) = (Duration::ZERO, Duration::ZERO);
            for _ in 0..n {
                let t = Instant::now();
                let checked = csr::check(der).unwrap();
                let t2 = Instant::now();
                let issued = profile
                    .issue(&ca, &checked, &Principal::password("alice"), now, None)
                    .unwrap();
                std::hint::black_box(issued);
                check += t2 - t;
                sign += t2.elapsed();
            }
            println!(
                "{ca_type:?} CA, {name:<12}: {:>7.1} µs  (CSR check {:>6.1} µs, build+sign {:>6.1} µs)",
                (check + sign).as_secs_f64() * 1e6 / n as f64,
                check.as_secs_f64() * 1e6 / n as f64,
                sign.as_secs_f64() * 1e6 / n as f64,
            );
        }
    }
    let t = Instant::now();
    let h = onlineca_core::password::hash("a password of ordinary length").unwrap();
    let hash_time = t.elapsed();
    let t = Instant::now();
    for _ in 0..20 {
        onlineca_core::password::verify("a password of ordinary length", &h);
    }
    println!(
        "argon2id (default parameters): hash {:.1} ms, verify {:.1} ms",
        hash_time.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64() * 1e3 / 20.0
    );
}
