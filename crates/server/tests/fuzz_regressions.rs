//! Replays the fuzzer's kept inputs (`fuzz/regressions/<target>/`: crashes it found
//! and a small minimized corpus) for the server's targets, through the same calls
//! as the fuzz targets `body`, `client_chain` and `config`, so the default test run
//! covers them without cargo-fuzz.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderValue, Request, header};
use onlineca_core::csr;
use onlineca_core::trustroots::{canonical_name, oneline};
use onlineca_server::Config;
use onlineca_server::body::{self, RawBody};
use onlineca_server::client_cert::{anchor, verify_chain};
use onlineca_server::renewal::Renewal;
use onlineca_server::retriever::Retrievers;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use onlineca_testkit::fuzz_inputs as inputs;

/// 2027-01-01T00:00:00Z, the fuzz targets' fixed time.
fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_798_761_600).unwrap()
}

#[tokio::test]
async fn body_regressions_are_parsed_or_refused_never_a_panic() {
    let mut parsed = 0;
    for (path, data) in inputs("body") {
        // As the fuzz target: Content-Type line, then the body.
        let (content_type, bytes) = match data.iter().position(|&b| b == b'\n') {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (&data[..0], &data[..]),
        };
        let mut req = Request::builder()
            .method("POST")
            .uri("/onlineca/certificate/");
        if !content_type.is_empty() {
            let Ok(v) = HeaderValue::from_bytes(content_type) else {
                continue;
            };
            req = req.header(header::CONTENT_TYPE, v);
        }
        let (parts, ()) = req.body(()).unwrap().into_parts();
        let raw = RawBody::new(parts, Bytes::copy_from_slice(bytes));
        let found = tokio::time::timeout(Duration::from_secs(10), body::parse(raw))
            .await
            .unwrap_or_else(|_| panic!("{}: body::parse did not finish", path.display()));
        if let Ok(found) = found {
            parsed += 1;
            let _ = csr::check(&found.der);
        }
    }
    assert!(parsed > 0, "no regression body was accepted");
}

#[test]
fn config_regressions_are_parsed_or_refused_never_a_panic() {
    let mut parsed = 0;
    for (path, data) in inputs("config") {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        match Config::parse(text, Path::new("/etc/onlineca/onlineca.toml")) {
            Ok(cfg) => {
                parsed += 1;
                let _ = cfg.summary();
                cfg.subject_template()
                    .expect("checked subject template parses");
                let _ = onlineca_server::config::redact_url(&cfg.store.url);
            }
            Err(e) => {
                // What `onlineca init` writes is kept as a seed and must stay valid.
                assert!(
                    !path
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("init"),
                    "{}: {e}",
                    path.display()
                );
                // A refusal names the file.
                assert!(
                    e.to_string().contains("onlineca.toml"),
                    "{}: {e}",
                    path.display()
                );
            }
        }
    }
    assert!(parsed > 0, "no regression configuration parsed");
}

fn split_chain(mut data: &[u8]) -> Vec<CertificateDer<'static>> {
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
    let mut chain = Vec::new();
    while !data.is_empty() && chain.len() < 8 {
        let n = tlv_len(data).unwrap_or(data.len());
        chain.push(CertificateDer::from(data[..n].to_vec()));
        data = &data[n..];
    }
    chain
}

#[test]
fn client_chain_regressions_are_refused_or_verified_never_a_panic() {
    // The anchors the kept chains were made with (certificates only: issuing CA,
    // then root), so the paths past verification are replayed too.
    let now = now();
    let anchor_path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions/client_chain.anchor.pem");
    let dir = tempfile::tempdir().unwrap();
    let pem = std::fs::read_to_string(&anchor_path).unwrap();
    let issuing = onlineca_core::issuer::pem_certificates(&pem).unwrap()[0].clone();
    let renewal = Renewal::new(true, [issuing.as_slice()]).unwrap();
    let issuing_anchor = vec![anchor(&issuing).unwrap()];
    let toml = format!(
        "[tls]\ncert = \"tls.pem\"\nkey = \"tls.key\"\n[ca]\ncert = \"ca.pem\"\nkey = \"ca.key\"\n\
         [auth]\nretriever = true\nretriever_anchors = [{:?}]\n\n\
         [[retrievers]]\nsubject = \"/O=Fuzz/OU=Portals/CN=portal.example.org\"\nusers = [\"alice\", \"lab-*\"]\n",
        anchor_path.display().to_string()
    );
    let cfg = Config::parse(&toml, &dir.path().join("onlineca.toml")).unwrap();
    let retrievers = Retrievers::load(&cfg).unwrap();

    let (mut verified, mut retriever) = (0, 0);
    for (path, data) in inputs("client_chain") {
        let chain = split_chain(&data);
        let Some(leaf) = chain.first() else {
            continue;
        };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let ours = renewal.claims_ours(leaf);
            if let Ok((_, cert)) = X509Certificate::from_der(leaf) {
                let _ = canonical_name(cert.issuer().as_raw());
                let _ = oneline(cert.subject());
                let _ = canonical_name(cert.subject().as_raw());
            }
            let ok = verify_chain(&chain[..1], &issuing_anchor, now).is_ok();
            if ok {
                assert!(ours);
            }
            let _ = verify_chain(&chain, &issuing_anchor, now);
            let _ = retrievers.could_be_retriever(&chain, now);
            (ok, retrievers.authenticate(&chain, "alice", now).is_ok())
        }));
        let (ok, as_retriever) = r.unwrap_or_else(|_| panic!("{} panicked", path.display()));
        verified += ok as usize;
        retriever += as_retriever as usize;
    }
    assert!(verified > 0, "no kept chain verified against its anchor");
    assert!(retriever > 0, "no kept chain authenticated as a retriever");
}
