//! Issuing-CA rotation with a real server and OpenSSL: after `ca rotate`, new
//! certificates come from the new CA, certificates of the old one still verify
//! against the trust roots the server publishes, renew, and when revoked appear on
//! the old CA's own CRL; `ca status` counts what each CA covers.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// `openssl verify -CApath DIR [-crl_check] CERT`: (success, output).
fn verify(dir: &Path, cert: &Path, crl_check: bool) -> (bool, String) {
    let mut args = vec!["verify", "-CApath", dir.to_str().unwrap()];
    if crl_check {
        args.push("-crl_check");
    }
    args.push(cert.to_str().unwrap());
    let out = run(&mut openssl(&args));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The server's trust roots, written into a fresh directory `name`.
fn trust_dir(ca: &TestCa, name: &str) -> PathBuf {
    let r = ca.curl(&[&ca.url("trustroots/")]);
    assert_eq!(r.status, 200);
    let dir = ca.path(name);
    write_trustroots(&r.text(), &dir);
    dir
}

fn save(ca: &TestCa, r: &CurlResult, name: &str) -> PathBuf {
    assert_eq!(r.status, 200, "{}", r.text());
    let p = ca.path(name);
    std::fs::write(&p, &r.body).unwrap();
    p
}

#[test]
fn after_a_rotation_old_and_new_certificates_verify_renew_and_revoke() {
    let mut ca = TestCa::init(&[]);
    ca.start();
    let pw = ca.add_user("alice");
    let (key, csr) = make_csr(ca.dir.path(), "a", "ec", Some("P-256"), "/CN=x", &[]);
    let old_cert = save(&ca, &ca.post_csr("alice", &pw, &csr), "old.pem");
    ca.stop(Duration::from_secs(30));

    let old_issuing = ca.path("old-issuing.pem");
    std::fs::copy(ca.home.join("ca/issuing.pem"), &old_issuing).unwrap();
    let (_, err) = ca.cli_ok(&["ca", "rotate"]);
    assert!(err.contains("Issuing CA G2"), "{err}");
    ca.start();

    let new_cert = save(&ca, &ca.post_csr("alice", &pw, &csr), "new.pem");
    let aki = |p: &Path| x509_field(p, "-ext=authorityKeyIdentifier");
    assert_ne!(aki(&old_cert), aki(&new_cert));
    assert!(x509_field(&new_cert, "-issuer").ends_with("Issuing CA G2"));
    assert_eq!(
        x509_field(&old_cert, "-issuer"),
        x509_field(&old_issuing, "-subject").replace("subject=", "issuer=")
    );

    // The old certificate renews (to a certificate of the new CA).
    let field = format!("certificate_request@{}", csr.display());
    let r = ca.curl(&[
        "--cert",
        old_cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--data-urlencode",
        &field,
        &ca.url("certificate/"),
    ]);
    let renewed = save(&ca, &r, "renewed.pem");
    assert!(x509_field(&renewed, "-issuer").ends_with("Issuing CA G2"));

    // Both generations verify against the published trust roots, with their CRLs.
    let dir = trust_dir(&ca, "trust1");
    for c in [&old_cert, &new_cert, &renewed] {
        let (ok, out) = verify(&dir, c, true);
        assert!(ok, "{}: {out}", c.display());
    }

    // Revoking the old certificate reaches the old CA's own CRL.
    let old_hash = x509_field(&old_issuing, "-subject_hash");
    let serial = cert_serial(&old_cert).to_ascii_uppercase();
    ca.cli_ok(&["cert", "revoke", &cert_serial(&old_cert)]);
    let start = Instant::now();
    loop {
        let r = ca.curl(&[&ca.url(&format!("crl?ca={old_hash}&format=pem"))]);
        assert_eq!(r.status, 200, "{}", r.text());
        let p = ca.path("old.crl");
        std::fs::write(&p, &r.body).unwrap();
        let text = crl_text(&p);
        if text.contains(&serial) {
            assert!(
                text.contains("Issuing CA\n") || !text.contains("G2"),
                "{text}"
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let dir = trust_dir(&ca, "trust2");
    let (ok, out) = verify(&dir, &old_cert, true);
    assert!(!ok && out.contains("revoked"), "{out}");
    // The renewal was revoked with it; the new CA's other certificate stands.
    let (ok, out) = verify(&dir, &renewed, true);
    assert!(!ok && out.contains("revoked"), "{out}");
    let (ok, out) = verify(&dir, &new_cert, true);
    assert!(ok, "{out}");
    // The active CA's CRL is still the one without a query.
    let active = ca.fetch_crl("active.crl");
    assert!(crl_text(&active).contains("Issuing CA G2"));

    let (status, _) = ca.cli_ok(&["ca", "status"]);
    let lines: Vec<&str> = status.lines().collect();
    let after = |role: &str| {
        let i = lines
            .iter()
            .position(|l| l.starts_with(role))
            .unwrap_or_else(|| panic!("{role}: {status}"));
        lines[i + 1]
    };
    assert!(after("issuing").contains("2 unexpired"), "{status}");
    assert!(after("retired").contains("1 unexpired"), "{status}");
    assert!(after("root").contains("-"), "{status}");

    // A second rotation makes G3 and keeps both older CAs while they cover anything.
    ca.stop(Duration::from_secs(30));
    ca.cli_ok(&["ca", "rotate"]);
    ca.start();
    let third = save(&ca, &ca.post_csr("alice", &pw, &csr), "third.pem");
    assert!(x509_field(&third, "-issuer").ends_with("Issuing CA G3"));
    let dir = trust_dir(&ca, "trust3");
    for c in [&new_cert, &third] {
        let (ok, out) = verify(&dir, c, true);
        assert!(ok, "{}: {out}", c.display());
    }
}

#[test]
fn a_retired_ca_with_nothing_left_to_cover_leaves_the_trust_roots() {
    let mut ca = TestCa::init(&[]);
    let old_hash = x509_field(&ca.home.join("ca/issuing.pem"), "-subject_hash");
    ca.cli_ok(&["ca", "rotate"]);
    ca.start();
    let r = ca.curl(&[&ca.url("trustroots/")]);
    let names = write_trustroots(&r.text(), &ca.path("trust"));
    // Published once the first CRLs are built; the old CA signed nothing.
    let start = Instant::now();
    let mut names = names;
    while names.iter().any(|n| n.starts_with(&old_hash)) {
        assert!(start.elapsed() < Duration::from_secs(30), "{names:?}");
        std::thread::sleep(Duration::from_millis(200));
        let r = ca.curl(&[&ca.url("trustroots/")]);
        names = write_trustroots(&r.text(), &ca.path("trust-again"));
    }
    let r = ca.curl(&[&ca.url(&format!("crl?ca={old_hash}"))]);
    assert_eq!(r.status, 404, "{}", r.text());
    let (status, _) = ca.cli_ok(&["ca", "status"]);
    assert!(
        status.contains("remove its [[ca.retired]] entry"),
        "{status}"
    );
}
