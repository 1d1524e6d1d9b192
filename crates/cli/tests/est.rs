//! EST (RFC 7030) driven by a client nobody here wrote: strongSwan's `pki --estca`
//! and `pki --est` (enroll by password, re-enroll by the current certificate), with
//! the responses read by `openssl pkcs7`, the certificates in the inventory and
//! revocable, and the seed API answering beside it over HTTP/1.1 and HTTP/2.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const PKI_INSTALL: &str =
    "apt-get install strongswan-pki libstrongswan-standard-plugins libstrongswan-extra-plugins";

fn have_pki() -> bool {
    if Command::new("pki").arg("--help").output().is_ok() {
        return true;
    }
    onlineca_testkit::skip("strongSwan pki", "pki not found", PKI_INSTALL);
    false
}

/// `https://127.0.0.1:PORT`: EST lives at the root, not under the seed prefix.
fn host(ca: &TestCa) -> String {
    ca.base.trim_end_matches("/onlineca").to_string()
}

fn pki(args: &[&str]) -> (bool, String, String) {
    let out = run(Command::new("pki").args(args));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn der_csr(dir: &Path, name: &str) -> (String, String) {
    let (key, csr) = make_csr(dir, name, "ec", Some("P-256"), "/CN=ignored", &[]);
    let der = dir.join(format!("{name}.der"));
    ok(&mut openssl(&[
        "req",
        "-in",
        csr.to_str().unwrap(),
        "-outform",
        "der",
        "-out",
        der.to_str().unwrap(),
    ]));
    (
        key.to_str().unwrap().to_string(),
        der.to_str().unwrap().to_string(),
    )
}

#[test]
fn strongswan_pki_enrolls_and_reenrolls_over_est() {
    if !have_pki() {
        return;
    }
    let mut ca = TestCa::init(&[]);
    ca.start();
    let pw = ca.add_user("alice");
    let url = host(&ca);
    let root = ca.root_pem();
    let root = root.to_str().unwrap();

    // cacerts: pki verifies the issuing CA against the root and writes it out.
    let cacert = ca.path("cacert.pem");
    let (ok_, _, err) = pki(&[
        "--estca",
        "--url",
        &url,
        "--cacert",
        root,
        "--caout",
        cacert.to_str().unwrap(),
        "--outform",
        "pem",
    ]);
    assert!(ok_, "{err}");
    let issuing = ca.path("cacert-1.pem");
    assert!(
        x509_field(&issuing, "-subject").ends_with("Issuing CA"),
        "{err}"
    );
    // The raw response: base64 certs-only CMS that OpenSSL reads.
    let r = ca.curl(&[&format!("{url}/.well-known/est/cacerts")]);
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/pkcs7-mime")
    );
    assert_eq!(r.header("content-transfer-encoding"), Some("base64"));
    let p7 = ca.path("cacerts.p7");
    use base64::Engine;
    std::fs::write(
        &p7,
        base64::engine::general_purpose::STANDARD
            .decode(r.text().trim())
            .unwrap(),
    )
    .unwrap();
    let printed = ok(&mut openssl(&[
        "pkcs7",
        "-inform",
        "der",
        "-in",
        p7.to_str().unwrap(),
        "-print_certs",
    ]));
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(
        printed.contains("Root CA") && printed.contains("Issuing CA"),
        "{printed}"
    );

    // simpleenroll with the password: the usual subject, a client certificate.
    let (key, csr) = der_csr(ca.dir.path(), "a");
    let cert = ca.path("est.pem");
    let (ok_, out, err) = pki(&[
        "--est",
        "--url",
        &url,
        "--cacert",
        root,
        "--cacert",
        issuing.to_str().unwrap(),
        "--userpass",
        &format!("alice:{pw}"),
        "--in",
        &csr,
        "--outform",
        "pem",
    ]);
    assert!(ok_, "{err}");
    std::fs::write(&cert, out).unwrap();
    assert!(x509_field(&cert, "-subject").ends_with("CN = alice"));
    ok(&mut openssl(&[
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        root,
        "-untrusted",
        issuing.to_str().unwrap(),
        cert.to_str().unwrap(),
    ]));

    // A wrong password: refused (401), nothing issued.
    let count = |ca: &TestCa| {
        let (json, _) = ca.cli_ok(&["cert", "list", "--json", "--all"]);
        serde_json::from_str::<serde_json::Value>(&json)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    let before = count(&ca);
    let (ok_, _, err) = pki(&[
        "--est",
        "--url",
        &url,
        "--cacert",
        root,
        "--userpass",
        "alice:wrong-password",
        "--in",
        &csr,
    ]);
    assert!(!ok_ && err.contains("401"), "{err}");
    assert_eq!(count(&ca), before);

    // simplereenroll with the current certificate: a new serial, same user.
    let (_key2, csr2) = der_csr(ca.dir.path(), "b");
    let (ok_, out, err) = pki(&[
        "--est",
        "--url",
        &url,
        "--cacert",
        root,
        "--cacert",
        issuing.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        &key,
        "--in",
        &csr2,
        "--outform",
        "pem",
    ]);
    assert!(ok_, "{err}");
    let renewed = ca.path("renewed.pem");
    std::fs::write(&renewed, out).unwrap();
    assert_ne!(cert_serial(&renewed), cert_serial(&cert));
    assert!(x509_field(&renewed, "-subject").ends_with("CN = alice"));

    // Both in the inventory, recorded as EST; revocable.
    let (json, _) = ca.cli_ok(&["cert", "list", "--json", "--user", "alice"]);
    assert!(
        json.contains("password+est") && json.contains("renewal+est"),
        "{json}"
    );
    ca.cli_ok(&["cert", "revoke", &cert_serial(&renewed)]);
    let (revoked, _) = ca.cli_ok(&["cert", "list", "--revoked"]);
    assert!(
        revoked.contains(cert_serial(&renewed).trim_start_matches('0')),
        "{revoked}"
    );

    // csrattrs: nothing needed.
    let r = ca.curl(&[&format!("{url}/.well-known/est/csrattrs")]);
    assert_eq!(r.status, 204);
    // A malformed CSR: EST's 400, with the reason.
    let bad = ca.path("bad.der");
    std::fs::write(&bad, "bm90IGEgY3Ny").unwrap();
    let r = ca.curl(&[
        "-u",
        &format!("alice:{pw}"),
        "-H",
        "Content-Type: application/pkcs10",
        "--data-binary",
        &format!("@{}", bad.display()),
        &format!("{url}/.well-known/est/simpleenroll"),
    ]);
    assert_eq!(r.status, 400, "{}", r.text());

    // The seed API beside it, over HTTP/1.1 and HTTP/2.
    let (_k, pem_csr) = make_csr(ca.dir.path(), "seed", "ec", Some("P-256"), "/CN=x", &[]);
    let field = format!("certificate_request@{}", pem_csr.display());
    for v in ["--http1.1", "--http2"] {
        let r = ca.curl(&[
            v,
            "-u",
            &format!("alice:{pw}"),
            "--data-urlencode",
            &field,
            &ca.url("certificate/"),
        ]);
        assert_eq!(r.status, 200, "{v}: {}", r.text());
    }
}

#[test]
fn est_can_be_switched_off() {
    let mut ca = TestCa::init(&[]);
    ca.edit_config(
        "enabled = true\n\n# [server_certificate]",
        "enabled = false\n\n# [server_certificate]",
    );
    ca.start();
    let r = ca.curl(&[&format!("{}/.well-known/est/cacerts", host(&ca))]);
    assert_eq!(r.status, 404);
}
