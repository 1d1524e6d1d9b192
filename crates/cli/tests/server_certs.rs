//! Seed 002's scenario with onlineca on both sides: nginx serves with a server
//! certificate from `onlineca cert sign` and requires client certificates; curl
//! verifies nginx with the trust-roots directory and presents a user's certificate.
//! Also: names only from the flags, CA:FALSE whatever the CSR asks, the CSR's names
//! only when allowed, server certificates listed and revocable, and seed 003's
//! self-signed certificate for testing.

mod common;
mod userkit;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use userkit::{Holder, Nginx, curl, have_nginx};

fn mode(p: &std::path::Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777
}

#[test]
fn nginx_with_a_signed_server_certificate_and_a_user_certificate_verify_each_other() {
    if !have_nginx() {
        return;
    }
    let h = Holder::new();
    let (host, host_key) = (h.ca.path("host.pem"), h.ca.path("host.key"));
    let (_, err) = h.ca.cli_ok(&[
        "cert",
        "sign",
        "--generate-key",
        "--key-out",
        host_key.to_str().unwrap(),
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--out",
        host.to_str().unwrap(),
    ]);
    assert!(err.contains("signed server certificate"), "{err}");
    assert_eq!(mode(&host_key), 0o600);
    let text = x509_text(&host);
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");

    let nginx = Nginx::start_with_host(&h, &host, &host_key);
    let (cert, key) = (h.cert.to_str().unwrap(), h.key.to_str().unwrap());
    // Both directions verified with the one trust-roots directory.
    let (status, body) = curl(&h.trust, &nginx.url, &["--cert", cert, "--key", key]);
    assert_eq!(status, 200, "{body}\n{}", nginx.log());
    assert!(body.contains("CN=alice"), "{body}");
    let port = nginx.url.rsplit(':').next().unwrap().trim_end_matches('/');
    let by_name = format!("https://localhost:{port}/");
    let (status, body) = curl(&h.trust, &by_name, &["--cert", cert, "--key", key]);
    assert_eq!(status, 200, "{body}");
    // A name the certificate does not carry fails hostname verification.
    let other = format!("https://other.example:{port}/");
    let resolve = format!("other.example:{port}:127.0.0.1");
    let out = run(Command::new("curl")
        .args(["-s", "-S", "--max-time", "30", "--capath"])
        .arg(&h.trust)
        .args(["--resolve", &resolve, "--cert", cert, "--key", key, &other]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("other.example") || err.contains("does not match"),
        "{err}"
    );

    // Listed as a server certificate, revocable, and then on the CRL.
    let serial = cert_serial(&host);
    let (list, _) = h.ca.cli_ok(&["cert", "list", "--kind", "server"]);
    assert!(list.contains(serial.trim_start_matches('0')), "{list}");
    assert!(list.contains("server"), "{list}");
    let (users, _) = h.ca.cli_ok(&["cert", "list", "--kind", "user"]);
    assert!(!users.contains(serial.trim_start_matches('0')), "{users}");
    let before = crl_number(&h.ca.fetch_crl("before.crl"));
    h.ca.cli_ok(&["cert", "revoke", &serial, "--reason", "superseded"]);
    let (crl, _) = h.ca.wait_for_crl_after(before, "after.crl");
    assert!(
        crl_text(&crl).contains(&serial.to_ascii_uppercase()),
        "{}",
        crl_text(&crl)
    );
}

#[test]
fn names_come_from_the_flags_and_a_csr_asking_for_a_ca_still_gets_ca_false() {
    let ca = TestCa::init(&[]);
    // The CSR asks for CA:TRUE and names of its own; neither is granted.
    let (_k, csr) = make_csr(
        ca.dir.path(),
        "greedy",
        "ec",
        Some("P-256"),
        "/CN=api.example.org",
        &[
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "subjectAltName=DNS:api.example.org,DNS:evil.example.com",
        ],
    );
    let out = ca.path("api.pem");
    ca.cli_ok(&[
        "cert",
        "sign",
        "--csr",
        csr.to_str().unwrap(),
        "--dns",
        "svc.internal",
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = x509_text(&out);
    assert!(
        text.contains("CA:FALSE") && !text.contains("CA:TRUE"),
        "{text}"
    );
    assert!(text.contains("DNS:svc.internal"), "{text}");
    assert!(
        !text.contains("evil.example.com") && !text.contains("api.example.org"),
        "{text}"
    );
    ok(&mut openssl(&[
        "verify",
        "-purpose",
        "sslserver",
        "-CAfile",
        ca.root_pem().to_str().unwrap(),
        "-untrusted",
        ca.home.join("ca/issuing.pem").to_str().unwrap(),
        out.to_str().unwrap(),
    ]));

    // The CSR's names only when every one is allowed.
    let r = ca.cli(&[
        "cert",
        "sign",
        "--csr",
        csr.to_str().unwrap(),
        "--use-csr-names",
    ]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("allow_domains") && err.contains("evil.example.com"),
        "{err}"
    );
    let (_k2, good) = make_csr(
        ca.dir.path(),
        "good",
        "ec",
        Some("P-256"),
        "/CN=x",
        &[
            "-addext",
            "subjectAltName=DNS:api.example.org,DNS:web.example.org",
        ],
    );
    let r = ca.cli(&[
        "cert",
        "sign",
        "--csr",
        good.to_str().unwrap(),
        "--use-csr-names",
    ]);
    assert!(
        !r.status.success(),
        "no pattern configured: nothing allowed"
    );
    ca.append_config(
        "\n[server_certificate]\nallow_domains = [\"*.example.org\"]\nlifetime = \"30days\"\n",
    );
    let signed = ca.path("good.pem");
    ca.cli_ok(&[
        "cert",
        "sign",
        "--csr",
        good.to_str().unwrap(),
        "--use-csr-names",
        "--out",
        signed.to_str().unwrap(),
    ]);
    let text = x509_text(&signed);
    assert!(
        text.contains("DNS:api.example.org, DNS:web.example.org"),
        "{text}"
    );
    // The policy's lifetime: 30 days (valid in 29, expired in 31).
    let checkend = |days: u64| {
        run(&mut openssl(&[
            "x509",
            "-noout",
            "-checkend",
            &(days * 86_400).to_string(),
            "-in",
            signed.to_str().unwrap(),
        ]))
        .status
        .success()
    };
    assert!(checkend(29) && !checkend(31), "{text}");
}

#[test]
fn a_self_signed_certificate_is_trusted_only_when_given() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("test.pem"), dir.path().join("test.key"));
    let out = run(onlineca().args([
        "cert",
        "sign",
        "--self-signed",
        "--dns",
        "localhost",
        "--key-out",
        key.to_str().unwrap(),
        "--out",
        cert.to_str().unwrap(),
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("TESTING ONLY"));
    assert_eq!(mode(&key), 0o600);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept", &port.to_string()])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("https://localhost:{port}/");
    let without =
        run(Command::new("curl").args(["-s", "-S", "--max-time", "20", "-o", "/dev/null", &url]));
    assert!(!without.status.success(), "trusted without --cacert");
    let with = run(Command::new("curl")
        .args([
            "-s",
            "-S",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "--cacert",
        ])
        .arg(&cert)
        .arg(&url));
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
}
