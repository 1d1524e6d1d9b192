//! The client certificate chain as the routes read it before authentication: the
//! renewal check of whether the leaf claims this CA as its issuer (x509-parser and
//! the canonical issuer name), chain verification against the issuing CA (renewal)
//! and against retriever anchors, and the retriever's subject lookup.
//!
//! Input: the chain as sent, leaf first, certificates back to back (each one DER
//! TLV; bytes that do not split are one certificate).
//!
//! Anchors: `seeds/client_chain.anchor.pem` (the issuing CA, then its root), written
//! by `seed.sh` with the certificates of the seed corpus, so that seeds verify and
//! the paths past verification are reached; without it, the committed
//! `regressions/client_chain.anchor.pem` that the kept chains were made with.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use onlineca_core::pki::{self, KeyType, PkiOptions};
use onlineca_core::trustroots::{canonical_name, oneline};
use onlineca_server::Config;
use onlineca_server::client_cert::{anchor, verify_chain};
use onlineca_server::renewal::Renewal;
use onlineca_server::retriever::Retrievers;
use rustls_pki_types::{CertificateDer, TrustAnchor};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

struct Fixture {
    renewal: Renewal,
    issuing_anchor: Vec<TrustAnchor<'static>>,
    retrievers: Retrievers,
    now: OffsetDateTime,
}

const ANCHOR_FILES: [&str; 2] = [
    concat!(env!("CARGO_MANIFEST_DIR"), "/seeds/client_chain.anchor.pem"),
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/regressions/client_chain.anchor.pem"
    ),
];

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // 2027-01-01T00:00:00Z: fixed, so a crash reproduces.
        let now = OffsetDateTime::from_unix_timestamp(1_798_761_600).unwrap();
        // Named in the configuration only; nothing is written there unless the
        // throwaway CA is needed.
        let dir = std::env::temp_dir().join(format!("onlineca-fuzz-{}", std::process::id()));
        let anchor_path = if let Some(found) = ANCHOR_FILES.iter().find(|f| Path::new(f).exists()) {
            Path::new(found).to_path_buf()
        } else {
            eprintln!("client_chain: no anchor file (run seed.sh); using a throwaway CA");
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
            std::fs::create_dir_all(&dir).unwrap();
            let p = dir.join("anchor.pem");
            std::fs::write(&p, created.issuing.cert_pem + &created.root.cert_pem).unwrap();
            p
        };
        let pem = std::fs::read_to_string(&anchor_path).unwrap();
        let certs = onlineca_core::issuer::pem_certificates(&pem).unwrap();
        let issuing = &certs[0];
        let renewal = Renewal::new(true, [issuing.as_slice()]).unwrap();
        let issuing_anchor = vec![anchor(issuing).unwrap()];
        // Retrievers as the server loads them: from the configuration.
        let toml = format!(
            "[tls]\ncert = \"tls.pem\"\nkey = \"tls.key\"\n[ca]\ncert = \"ca.pem\"\nkey = \"ca.key\"\n\
             [auth]\nretriever = true\nretriever_anchors = [{:?}]\n\n\
             [[retrievers]]\nsubject = \"/O=Fuzz/OU=Portals/CN=portal.example.org\"\nusers = [\"alice\", \"lab-*\"]\n",
            anchor_path.display().to_string()
        );
        let cfg = Config::parse(&toml, &dir.join("onlineca.toml")).expect("fixture config");
        let retrievers = Retrievers::load(&cfg).expect("fixture retrievers");
        Fixture {
            renewal,
            issuing_anchor,
            retrievers,
            now,
        }
    })
}

/// One DER TLV from the front of `data`: its length in bytes, if well formed.
fn tlv_len(data: &[u8]) -> Option<usize> {
    let first = *data.get(1)?;
    let (header, len) = if first < 0x80 {
        (2, first as usize)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *data.get(2 + i)? as usize;
        }
        (2 + n, len)
    };
    let total = header.checked_add(len)?;
    (total <= data.len()).then_some(total)
}

fn split_chain(mut data: &[u8]) -> Vec<CertificateDer<'static>> {
    let mut chain = Vec::new();
    while !data.is_empty() && chain.len() < 8 {
        let n = tlv_len(data).unwrap_or(data.len());
        chain.push(CertificateDer::from(data[..n].to_vec()));
        data = &data[n..];
    }
    chain
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let chain = split_chain(data);
    let Some(leaf) = chain.first() else {
        return;
    };
    // Renewal: does the leaf name this CA as its issuer?
    let ours = f.renewal.claims_ours(leaf);
    if let Ok((_, cert)) = X509Certificate::from_der(leaf) {
        let _ = canonical_name(cert.issuer().as_raw());
        let _ = oneline(cert.subject());
        let _ = canonical_name(cert.subject().as_raw());
        let _ = cert.raw_serial();
    }
    // Renewal verifies the leaf alone against the issuing CA.
    let renewal_ok = verify_chain(&chain[..1], &f.issuing_anchor, f.now);
    if renewal_ok.is_ok() {
        assert!(
            ours,
            "a leaf verifying against this CA must claim it as issuer"
        );
    }
    // Retrievers: the whole chain against their anchors, then the subject.
    let _ = verify_chain(&chain, &f.issuing_anchor, f.now);
    let _ = f.retrievers.could_be_retriever(&chain, f.now);
    let _ = f.retrievers.authenticate(&chain, "alice", f.now);
});
