//! Criterion micro-benchmarks of the issuance core: `csr::check` (parse the CSR,
//! verify its signature, key policy) followed by `Profile::issue` (subject, TBS,
//! signature, PEM), for every issuing-CA key type (P-256, P-384, Ed25519, RSA-2048)
//! crossed with every CSR key type (RSA-2048, P-256, P-384, Ed25519). Ids are
//! `issue/<ca>_ca/<csr>_csr`; `csr_check/<csr>_csr` times the CSR check alone, so the
//! difference is the build-and-sign share. Keys, CAs and CSRs are made once, outside
//! the timed loop.
//!
//! Run: `cargo bench -p onlineca-core --bench issue` (append e.g.
//! `-- --warm-up-time 1 --measurement-time 3` for a quick run, or a filter such as
//! `-- issue/p256_ca`). `cargo test -p onlineca-core --benches` runs each once.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use onlineca_core::pki::{self, KeyType, PkiOptions};
use onlineca_core::{IssuingCa, Principal, Profile, SubjectTemplate, csr};
use rcgen::CertificateParams;
use time::OffsetDateTime;

/// The key types benchmarked, with their names in benchmark ids.
const CA_TYPES: [(&str, KeyType); 4] = [
    ("p256", KeyType::P256),
    ("p384", KeyType::P384),
    ("ed25519", KeyType::Ed25519),
    ("rsa2048", KeyType::Rsa2048),
];
const CSR_TYPES: [(&str, KeyType); 4] = [
    ("rsa2048", KeyType::Rsa2048),
    ("p256", KeyType::P256),
    ("p384", KeyType::P384),
    ("ed25519", KeyType::Ed25519),
];

/// A CSR (DER) for a fresh key of type `key`, as a client would send it.
fn csr_der(key: KeyType) -> Vec<u8> {
    let key = key.generate().expect("CSR key");
    CertificateParams::default()
        .serialize_request(&key)
        .expect("CSR")
        .der()
        .to_vec()
}

/// A new issuing CA of type `key`, valid at `now`.
fn issuing_ca(key: KeyType, now: OffsetDateTime) -> IssuingCa {
    let created = pki::create(&PkiOptions {
        key_type: key,
        org: "Example".into(),
        ca_name: "Bench".into(),
        hostnames: vec!["localhost".into()],
        root_lifetime: Duration::from_secs(86400 * 3650),
        ca_lifetime: Duration::from_secs(86400 * 365),
        tls_lifetime: Duration::from_secs(86400),
        now,
    })
    .expect("create CA");
    IssuingCa::from_pem(&created.issuing.cert_pem, &created.issuing.key_pem, "").expect("CA")
}

fn benches(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let profile = Profile {
        template: SubjectTemplate::parse("/O=Example/OU=Users/CN={username}").unwrap(),
        lifetime: Duration::from_secs(12 * 3600),
        backdate: Duration::from_secs(300),
        crl_url: None,
    };
    let principal = Principal::password("alice");
    let csrs: Vec<(&str, Vec<u8>)> = CSR_TYPES
        .iter()
        .map(|&(name, key)| (name, csr_der(key)))
        .collect();

    let mut group = c.benchmark_group("csr_check");
    for (csr_name, der) in &csrs {
        group.bench_function(format!("{csr_name}_csr"), |b| {
            b.iter(|| csr::check(black_box(der)).unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("issue");
    for (ca_name, ca_type) in CA_TYPES {
        let ca = issuing_ca(ca_type, now);
        for (csr_name, der) in &csrs {
            let id = BenchmarkId::new(format!("{ca_name}_ca"), format!("{csr_name}_csr"));
            group.bench_function(id, |b| {
                b.iter(|| {
                    let checked = csr::check(black_box(der)).unwrap();
                    profile.issue(&ca, &checked, &principal, now, None).unwrap()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(issue, benches);
criterion_main!(issue);
