//! Criterion micro-benchmarks of trust-roots rendering (`onlineca_core::trustroots`)
//! for a P-256 CA laid out as the server publishes it: the root and the issuing CA
//! with their signing policies, plus the issuing CA's (empty) CRL as `<hash>.r0`.
//!
//! - `trustroots/build`: `TrustBundle::build` (parse, OpenSSL subject hashes,
//!   signing policies, PEM) and `add_file` of the CRL;
//! - `trustroots/encode_fields`, `trustroots/encode_files`: one encoding of a built
//!   bundle (what `GET {prefix}/trustroots/` serves, computed once per CRL);
//! - `trustroots/build_and_encode_both`: all of the above together.
//!
//! Certificates and the CRL are made once, outside the timed loop.
//!
//! Run: `cargo bench -p onlineca-core --bench trustroots` (append e.g.
//! `-- --warm-up-time 1 --measurement-time 3` for a quick run).
//! `cargo test -p onlineca-core --benches` runs each once.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use onlineca_core::issuer::pem_certificates;
use onlineca_core::pki::{self, KeyType, PkiOptions};
use onlineca_core::trustroots::{
    self, CaEntry, Encoding, TrustBundle, TrustRootsError, cert_subject_hash,
};
use onlineca_core::{IssuingCa, SubjectTemplate, crl};
use time::OffsetDateTime;

/// What the server publishes: the CA entries and the CRL file (name, PEM).
struct Input {
    cas: Vec<CaEntry>,
    crl_name: String,
    crl_pem: Vec<u8>,
}

fn input() -> Input {
    let now = OffsetDateTime::now_utc();
    let created = pki::create(&PkiOptions {
        key_type: KeyType::P256,
        org: "Example".into(),
        ca_name: "Bench".into(),
        hostnames: vec!["localhost".into()],
        root_lifetime: Duration::from_secs(86400 * 3650),
        ca_lifetime: Duration::from_secs(86400 * 365),
        tls_lifetime: Duration::from_secs(86400),
        now,
    })
    .expect("create CA");
    let ca = IssuingCa::from_pem(&created.issuing.cert_pem, &created.issuing.key_pem, "")
        .expect("issuing CA");
    let root_der = pem_certificates(&created.root.cert_pem).unwrap().remove(0);
    let template = SubjectTemplate::parse("/O=Example/OU=Users/CN={username}").unwrap();
    // As the server lays it out: the root may sign the issuing CA, which may sign
    // the users' namespace.
    let cas = vec![
        CaEntry {
            cert_der: root_der,
            cond_subjects: vec![ca.subject_oneline().to_string()],
        },
        CaEntry {
            cert_der: ca.cert_der().to_vec(),
            cond_subjects: vec![trustroots::namespace(&template.fixed_prefix())],
        },
    ];
    let crl = crl::build(&ca, 1, now, now + Duration::from_secs(3600), &[]).expect("CRL");
    let hash = cert_subject_hash(ca.cert_der()).unwrap();
    Input {
        cas,
        crl_name: format!("{hash:08x}.r0"),
        crl_pem: crl.pem.into_bytes(),
    }
}

/// The bundle with the CRL, as the server publishes it.
fn build(input: &Input) -> Result<TrustBundle, TrustRootsError> {
    let mut bundle = TrustBundle::build(&input.cas)?;
    bundle.add_file(input.crl_name.clone(), input.crl_pem.clone())?;
    Ok(bundle)
}

fn benches(c: &mut Criterion) {
    let input = input();
    let built = build(&input).unwrap();
    assert_eq!(built.files().len(), 5, "two CAs, two policies, one CRL");

    let mut group = c.benchmark_group("trustroots");
    group.bench_function("build", |b| b.iter(|| build(black_box(&input)).unwrap()));
    group.bench_function("encode_fields", |b| {
        b.iter(|| black_box(&built).encode(Encoding::Fields))
    });
    group.bench_function("encode_files", |b| {
        b.iter(|| black_box(&built).encode(Encoding::Files))
    });
    group.bench_function("build_and_encode_both", |b| {
        b.iter(|| {
            let bundle = build(black_box(&input)).unwrap();
            (
                bundle.encode(Encoding::Fields),
                bundle.encode(Encoding::Files),
            )
        })
    });
    group.finish();
}

criterion_group!(trustroots_benches, benches);
criterion_main!(trustroots_benches);
