//! Hostile bytes never panic: every input the network can reach the engine with
//! (CSR text and DER, names, trust-roots text) is fed mutations of valid data and
//! random noise. Deterministic (a fixed xorshift seed), so a failure reproduces.

use onlineca_core::csr;
use onlineca_core::trustroots::{self, CaEntry, Encoding, TrustBundle};
use rcgen::{CertificateParams, DnType, KeyPair};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn valid_csr() -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, "dummy");
    p.serialize_request(&key).unwrap().der().to_vec()
}

#[test]
fn mutated_csrs_are_refused_or_accepted_never_a_panic() {
    let der = valid_csr();
    assert!(csr::check(&der).is_ok());
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    // Every byte, several values each: structure, lengths, OIDs, key, signature.
    for i in 0..der.len() {
        for v in [0x00, 0xff, 0x80, 0x7f, der[i] ^ 0x01, rng.next() as u8] {
            let mut m = der.clone();
            m[i] = v;
            let _ = csr::check(&m);
        }
    }
    // Truncations and extensions.
    for n in 0..der.len() {
        let _ = csr::check(&der[..n]);
    }
    for _ in 0..2000 {
        let mut m = der.clone();
        let extra = (rng.next() % 64) as usize;
        m.extend(rng.bytes(extra));
        let _ = csr::check(&m);
        let len = (rng.next() % 600) as usize;
        let _ = csr::check(&rng.bytes(len));
    }
}

#[test]
fn text_decoders_survive_noise() {
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", valid_csr()));
    for _ in 0..3000 {
        let len = (rng.next() % 300) as usize;
        let noise = String::from_utf8_lossy(&rng.bytes(len)).to_string();
        let _ = csr::decode_text(&noise);
        let _ = trustroots::decode(&noise);
        let mut m = pem.clone().into_bytes();
        let i = (rng.next() as usize) % m.len();
        m[i] = rng.next() as u8 & 0x7f;
        let _ = csr::decode_text(&String::from_utf8_lossy(&m));
    }
}

#[test]
fn names_and_trust_roots_survive_mutation() {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::OrganizationName, "Example  Org");
    p.distinguished_name
        .push(DnType::CommonName, "Mixed Case CA");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = p.self_signed(&key).unwrap().der().to_vec();
    let bundle = TrustBundle::build(&[CaEntry {
        cert_der: cert.clone(),
        cond_subjects: vec!["/O=Example/*".into()],
    }])
    .unwrap();
    let text = bundle.encode(Encoding::Fields);
    let mut rng = XorShift(0x0bad_cafe_dead_beef);
    for i in 0..cert.len() {
        let mut m = cert.clone();
        m[i] ^= 1 << (rng.next() % 8);
        let _ = trustroots::cert_subject_hash(&m);
        let _ = TrustBundle::build(&[CaEntry {
            cert_der: m,
            cond_subjects: vec![],
        }]);
    }
    for _ in 0..2000 {
        let mut m = text.clone().into_bytes();
        let i = (rng.next() as usize) % m.len();
        m[i] = b"=,\n.A/+_-"[(rng.next() % 9) as usize];
        let _ = trustroots::decode(&String::from_utf8_lossy(&m));
        let len = (rng.next() % 200) as usize;
        let _ = trustroots::subject_hash(&rng.bytes(len));
    }
}
