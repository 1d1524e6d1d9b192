//! Renewal follows the account, and revocation reaches what was renewed: a real
//! server, real TLS, curl presenting the certificates, the operator's CLI revoking.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A certificate and its key, as curl presents them.
type Client = (PathBuf, PathBuf);

/// Writes the certificate of a 200 answer to `name.pem`, paired with `key`.
fn keep(ca: &TestCa, r: &CurlResult, name: &str, key: &Path) -> Client {
    assert_eq!(r.status, 200, "{}", r.text());
    let p = ca.path(&format!("{name}.pem"));
    std::fs::write(&p, &r.body).unwrap();
    (p, key.to_path_buf())
}

/// A renewal: the current certificate as client certificate, no password.
fn renew(ca: &TestCa, client: &Client, csr: &Path) -> CurlResult {
    let field = format!("certificate_request@{}", csr.display());
    ca.curl(&[
        "--cert",
        client.0.to_str().unwrap(),
        "--key",
        client.1.to_str().unwrap(),
        "--data-urlencode",
        &field,
        &ca.url("certificate/"),
    ])
}

fn assert_refused(r: &CurlResult, status: u16, needle: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert!(r.text().contains(needle), "{:?} lacks {needle:?}", r.text());
}

#[test]
fn renewal_follows_the_account_not_the_name() {
    let ca = TestCa::start_default();
    let dir = ca.dir.path();
    let (key, csr) = make_csr(dir, "erin", "ec", Some("P-256"), "/CN=x", &[]);
    let pw = ca.add_user("erin");
    let erin = keep(&ca, &ca.post_csr("erin", &pw, &csr), "erin", &key);
    // While the account lives, the certificate renews.
    let r = renew(&ca, &erin, &csr);
    assert_eq!(r.status, 200, "{}", r.text());

    // The account is removed and another person gets the name, in other letters.
    ca.cli_ok(&["user", "remove", "erin"]);
    let other_pw = ca.add_user("ERIN");
    let r = renew(&ca, &erin, &csr);
    assert_refused(&r, 401, "no longer has an account");
    // The new ERIN gets certificates of their own, by password, which renew.
    let (key2, csr2) = make_csr(dir, "erin2", "ec", Some("P-256"), "/CN=x", &[]);
    let erin2 = keep(&ca, &ca.post_csr("ERIN", &other_pw, &csr2), "erin2", &key2);
    assert!(x509_text(&erin2.0).contains("CN = ERIN"));
    let r = renew(&ca, &erin2, &csr2);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn key_compromise_reaches_renewals_and_refuses_the_key() {
    let ca = TestCa::start_default();
    let dir = ca.dir.path();
    let (key, csr) = make_csr(dir, "k0", "ec", Some("P-256"), "/CN=x", &[]);
    let pw = ca.add_user("alice");
    let c0 = keep(&ca, &ca.post_csr("alice", &pw, &csr), "c0", &key);
    // c1 renews c0 for the same key; c2 renews c1 with a new key.
    let c1 = keep(&ca, &renew(&ca, &c0, &csr), "c1", &key);
    let (key2, csr2) = make_csr(dir, "k2", "ec", Some("P-256"), "/CN=x", &[]);
    let c2 = keep(&ca, &renew(&ca, &c1, &csr2), "c2", &key2);
    // Another certificate for the same key, by password.
    let c3 = keep(&ca, &ca.post_csr("alice", &pw, &csr), "c3", &key);
    // An unrelated certificate of the same user stays valid.
    let (key4, csr4) = make_csr(dir, "k4", "ec", Some("P-256"), "/CN=x", &[]);
    let c4 = keep(&ca, &ca.post_csr("alice", &pw, &csr4), "c4", &key4);

    let (_, err) = ca.cli_ok(&[
        "cert",
        "revoke",
        &cert_serial(&c0.0),
        "--reason",
        "keyCompromise",
    ]);
    assert!(
        err.contains("also revoked 3 certificates for the same key or renewed from one"),
        "{err}"
    );
    for (name, c) in [("c1", &c1), ("c2", &c2), ("c3", &c3)] {
        let r = renew(&ca, c, &csr4);
        assert_refused(&r, 401, "the certificate is revoked");
        let (out, _) = ca.cli_ok(&["cert", "show", &cert_serial(&c.0)]);
        assert!(out.contains("keyCompromise"), "{name}: {out}");
    }
    // The key is refused by every route, with a reason the user can act on.
    let r = ca.post_csr("alice", &pw, &csr);
    assert_refused(&r, 405, "reported compromised; generate a new key pair");
    let r = renew(&ca, &c4, &csr);
    assert_refused(&r, 405, "reported compromised");
    // A new key is fine, and c4 was left alone.
    let r = renew(&ca, &c4, &csr4);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn revoking_a_certificate_revokes_its_renewals() {
    let ca = TestCa::start_default();
    let dir = ca.dir.path();
    let (key, csr) = make_csr(dir, "k", "ec", Some("P-256"), "/CN=x", &[]);
    let pw = ca.add_user("bob");
    let c0 = keep(&ca, &ca.post_csr("bob", &pw, &csr), "c0", &key);
    let c1 = keep(&ca, &renew(&ca, &c0, &csr), "c1", &key);
    let c2 = keep(&ca, &renew(&ca, &c1, &csr), "c2", &key);

    // Revoking the middle one: its renewal goes, what it renewed stays.
    let (_, err) = ca.cli_ok(&[
        "cert",
        "revoke",
        &cert_serial(&c1.0),
        "--reason",
        "superseded",
    ]);
    assert!(
        err.contains("also revoked 1 certificate renewed from it"),
        "{err}"
    );
    let r = renew(&ca, &c2, &csr);
    assert_refused(&r, 401, "the certificate is revoked");
    let r = renew(&ca, &c0, &csr);
    assert_eq!(r.status, 200, "{}", r.text());
    // Not a compromise: the key stays usable.
    let r = ca.post_csr("bob", &pw, &csr);
    assert_eq!(r.status, 200, "{}", r.text());
}
