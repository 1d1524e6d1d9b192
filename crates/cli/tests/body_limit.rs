//! A body over the limit gets its 405 over HTTP/1.1 and HTTP/2 alike, with curl,
//! whatever its size and whether its length was declared, from the real server; so
//! does a refusal answered before the body was read (the per-address limit).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

const REFUSAL: &str = "request body exceeds the limit of 65536 bytes\n";

/// curl POSTing `body` on its standard input without declaring a length (chunked
/// over HTTP/1.1, DATA frames without `content-length` over HTTP/2).
fn post_undeclared(ca: &TestCa, version: &str, auth: &str, body: &[u8]) -> CurlResult {
    let out_file = ca.path(&format!("undeclared{version}"));
    let mut child = Command::new("curl")
        .args(["-s", "-S", "--max-time", "60", "--cacert"])
        .arg(ca.root_pem())
        .args([
            version, "-u", auth, "-X", "POST", "-T", "-", "-D", "-", "-o",
        ])
        .arg(&out_file)
        .args(["-H", "Content-Type: application/x-www-form-urlencoded"])
        .arg(ca.url("certificate/"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // curl may stop reading once it has the answer: a broken pipe is not a failure.
    let _ = stdin.write_all(body);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let headers = String::from_utf8_lossy(&out.stdout).to_string();
    let status = headers
        .split("\r\n\r\n")
        .filter(|b| b.starts_with("HTTP/"))
        .last()
        .and_then(|b| b.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    CurlResult {
        transport_ok: out.status.success(),
        status,
        headers: Vec::new(),
        body: std::fs::read(&out_file).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

#[test]
fn an_oversized_body_gets_its_refusal_over_http2_as_over_http1() {
    if !have("openssl") || !have("curl") {
        panic!("openssl and curl are required for the end-to-end tests");
    }
    let ca = TestCa::start_default();
    let pw = ca.add_user("olga");
    let auth = format!("olga:{pw}");
    // Sizes around and far past what the server reads before answering (16 × the
    // 64 KiB limit): a declared length that large is answered before any is read.
    for size in [100_000, 2_000_000, 8_000_000] {
        let big = ca.path(&format!("big-{size}"));
        std::fs::write(
            &big,
            format!("certificate_request={}", "A".repeat(size)).as_bytes(),
        )
        .unwrap();
        let data = format!("@{}", big.display());
        for version in ["--http1.1", "--http2"] {
            let url = ca.url("certificate/");
            let r = ca.curl(&[version, "-u", &auth, "--data-binary", &data, &url]);
            assert!(
                r.transport_ok && r.status == 405 && r.text() == REFUSAL,
                "{size} bytes, declared, {version}: {r:?}"
            );
            let body = std::fs::read(&big).unwrap();
            let r = post_undeclared(&ca, version, &auth, &body);
            assert!(
                r.transport_ok && r.status == 405 && r.text() == REFUSAL,
                "{size} bytes, undeclared, {version}: {r:?}"
            );
        }
    }
    // Still serving, on both versions.
    let (_k, csr) = make_csr(ca.dir.path(), "o", "ec", Some("P-256"), "/CN=dummy", &[]);
    for version in ["--http1.1", "--http2"] {
        let field = format!("certificate_request@{}", csr.display());
        let url = ca.url("certificate/");
        let r = ca.curl(&[version, "-u", &auth, "--data-urlencode", &field, &url]);
        assert_eq!(r.status, 200, "{version}: {r:?}");
    }
}

#[test]
fn a_rate_limited_large_upload_gets_its_429_over_http2() {
    if !have("openssl") || !have("curl") {
        panic!("openssl and curl are required for the end-to-end tests");
    }
    let mut ca = TestCa::init(&[]);
    ca.edit_config("rate_limit = 120", "rate_limit = 1");
    ca.edit_config("rate_burst = 30", "rate_burst = 1");
    ca.start();
    let big = ca.path("big");
    std::fs::write(
        &big,
        format!("certificate_request={}", "A".repeat(8_000_000)),
    )
    .unwrap();
    let data = format!("@{}", big.display());
    let url = ca.url("certificate/");
    // The first spends the burst (refused: unknown user); the rest are refused by the
    // per-address limit before their bodies are read, and drained after.
    let r = ca.curl(&["--http2", "-u", "x:y", "--data-binary", &data, &url]);
    assert!(r.transport_ok && r.status == 401, "{r:?}");
    for version in ["--http2", "--http1.1"] {
        let r = ca.curl(&[version, "-u", "x:y", "--data-binary", &data, &url]);
        assert!(
            r.transport_ok
                && r.status == 429
                && r.text().starts_with("too many requests from this address"),
            "{version}: {r:?}"
        );
    }
}
