//! CA key custody: keys encrypted at rest that OpenSSL reads with the passphrase and
//! `serve` opens only with it, encrypted keys made by OpenSSL imported, and default
//! CA names that never clash between two CAs.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// A fresh random passphrase in a 0600 file under `dir`; returns (path, passphrase).
fn passphrase_file(dir: &Path, name: &str) -> (PathBuf, String) {
    let pass = format!("pp-{}", random_password());
    let path = dir.join(name);
    std::fs::write(&path, format!("{pass}\n")).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    (path, pass)
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// `serve` with `extra` arguments, expected to fail at start: its stderr.
fn serve_fails(ca: &TestCa, extra: &[&str], env: &[(&str, &Path)]) -> String {
    let mut cmd = onlineca();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&ca.config)
        .args(extra)
        .env_remove("ONLINECA_PASSPHRASE_FILE")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    assert!(!out.status.success(), "serve started: {out:?}");
    stderr_of(&out)
}

#[test]
fn encrypted_keys_open_in_openssl_and_serve_needs_their_passphrase() {
    let work = tempfile::tempdir().unwrap();
    let (pp, pass) = passphrase_file(work.path(), "pass");
    let (wrong, _) = passphrase_file(work.path(), "wrong");
    let mut ca = TestCa::init(&["--encrypt-key", "--passphrase-file", pp.to_str().unwrap()]);

    for key in ["ca/root.key", "ca/issuing.key"] {
        let path = ca.home.join(key);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"),
            "{key}"
        );
        assert!(!text.contains(&pass));
        let parsed = ok(&mut openssl(&["asn1parse", "-in", path.to_str().unwrap()]));
        let parsed = String::from_utf8_lossy(&parsed.stdout);
        for alg in ["PBES2", "PBKDF2", "hmacWithSHA256", "aes-256-cbc"] {
            assert!(parsed.contains(alg), "{key}: no {alg} in\n{parsed}");
        }
        // OpenSSL opens it with the passphrase, and not without.
        let passin = format!("file:{}", pp.display());
        ok(&mut openssl(&[
            "pkey",
            "-noout",
            "-in",
            path.to_str().unwrap(),
            "-passin",
            &passin,
        ]));
        let out = run(&mut openssl(&[
            "pkey",
            "-noout",
            "-in",
            path.to_str().unwrap(),
            "-passin",
            &format!("file:{}", wrong.display()),
        ]));
        assert!(
            !out.status.success(),
            "{key} opened with a wrong passphrase"
        );
    }

    // No passphrase (and no terminal): a message naming the key file and the flag.
    let err = serve_fails(&ca, &[], &[]);
    let key = ca.home.join("ca/issuing.key");
    assert!(
        err.contains(key.to_str().unwrap()) && err.contains("--passphrase-file"),
        "{err}"
    );
    let err = serve_fails(&ca, &["--passphrase-file", wrong.to_str().unwrap()], &[]);
    assert!(err.contains("wrong passphrase"), "{err}");
    let err = serve_fails(&ca, &[], &[("ONLINECA_PASSPHRASE_FILE", &wrong)]);
    assert!(err.contains("wrong passphrase"), "{err}");

    ca.start_with(&["--passphrase-file", pp.to_str().unwrap()]);
    let pw = ca.add_user("alice");
    let (_k, csr) = make_csr(ca.dir.path(), "a", "ec", Some("P-256"), "/CN=x", &[]);
    let r = ca.post_csr("alice", &pw, &csr);
    assert_eq!(r.status, 200, "{}", r.text());
    let cert = ca.path("alice.pem");
    std::fs::write(&cert, &r.body).unwrap();
    ok(&mut openssl(&[
        "verify",
        "-CAfile",
        ca.root_pem().to_str().unwrap(),
        "-untrusted",
        ca.home.join("ca/issuing.pem").to_str().unwrap(),
        cert.to_str().unwrap(),
    ]));
    ca.stop(Duration::from_secs(30));
    assert!(
        !ca.log_text().contains(&pass),
        "the passphrase is in the log"
    );

    // The root key signs its CRL with the passphrase too; config check opens it.
    let crl = ca.path("root.crl");
    let out = run(onlineca()
        .args(["crl", "root", "--cert"])
        .arg(ca.root_pem())
        .arg("--key")
        .arg(ca.home.join("ca/root.key"))
        .arg("--out")
        .arg(&crl)
        .arg("--passphrase-file")
        .arg(&pp));
    assert!(out.status.success(), "{}", stderr_of(&out));
    ok(&mut openssl(&[
        "crl",
        "-noout",
        "-in",
        crl.to_str().unwrap(),
        "-CAfile",
        ca.root_pem().to_str().unwrap(),
    ]));
    let out = run(onlineca()
        .args(["config", "check", "--config"])
        .arg(&ca.config)
        .arg("--passphrase-file")
        .arg(&pp));
    assert!(out.status.success(), "{}", stderr_of(&out));
}

#[test]
fn a_short_or_empty_passphrase_is_refused_before_anything_is_created() {
    let work = tempfile::tempdir().unwrap();
    let short = work.path().join("short");
    std::fs::write(&short, "abc\n").unwrap();
    let dir = work.path().join("ca");
    let out = run(onlineca()
        .args(["init", "--encrypt-key", "--dir"])
        .arg(&dir)
        .arg("--passphrase-file")
        .arg(&short));
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("too short"), "{}", stderr_of(&out));
    assert!(!dir.exists());
    std::fs::write(&short, "\n").unwrap();
    let out = run(onlineca()
        .args(["init", "--encrypt-key", "--dir"])
        .arg(&dir)
        .arg("--passphrase-file")
        .arg(&short));
    assert!(stderr_of(&out).contains("is empty"), "{}", stderr_of(&out));
    assert!(!dir.exists());
}

#[test]
fn an_encrypted_key_made_by_openssl_can_be_imported() {
    let work = tempfile::tempdir().unwrap();
    let (pp, _) = passphrase_file(work.path(), "pass");
    let key = work.path().join("ext.key");
    let cert = work.path().join("ext.pem");
    // `openssl req -keyout` encrypts with PBES2, PBKDF2 and 3DES by default.
    ok(&mut openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-days",
        "30",
        "-keyout",
        key.to_str().unwrap(),
        "-passout",
        &format!("file:{}", pp.display()),
        "-out",
        cert.to_str().unwrap(),
        "-subj",
        "/O=Imported Org/CN=Imported Encrypted CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]));
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .contains("ENCRYPTED PRIVATE KEY")
    );
    let dir = work.path().join("ca");
    let import = |extra: &[&str]| {
        run(onlineca()
            .args(["init", "--dir"])
            .arg(&dir)
            .arg("--import-ca-cert")
            .arg(&cert)
            .arg("--import-ca-key")
            .arg(&key)
            .args(extra)
            .env_remove("ONLINECA_PASSPHRASE_FILE")
            .stdin(std::process::Stdio::null()))
    };
    let out = import(&[]);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("--passphrase-file"),
        "{}",
        stderr_of(&out)
    );
    let out = import(&["--encrypt-key", "--passphrase-file", pp.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let written = std::fs::read_to_string(dir.join("ca/issuing.key")).unwrap();
    assert!(written.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let check = |extra: &[&str]| {
        run(onlineca()
            .args(["config", "check", "--config"])
            .arg(dir.join("onlineca.toml"))
            .args(extra)
            .env_remove("ONLINECA_PASSPHRASE_FILE")
            .stdin(std::process::Stdio::null()))
    };
    let out = check(&["--passphrase-file", pp.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Imported Encrypted CA"),
        "{out:?}"
    );
    assert!(!check(&[]).status.success());
}

#[test]
fn two_fresh_cas_never_share_a_subject_hash() {
    let a = TestCa::init(&[]);
    let b = TestCa::init(&[]);
    for f in ["ca/root.pem", "ca/issuing.pem"] {
        let (ha, hb) = (
            x509_field(&a.home.join(f), "-subject_hash"),
            x509_field(&b.home.join(f), "-subject_hash"),
        );
        assert_ne!(ha, hb, "{f}: both {ha}");
    }
    let named = TestCa::init(&["--ca-name", "Example Research"]);
    let subject = x509_text(&named.home.join("ca/root.pem"));
    assert!(
        subject.contains("CN=Example Research Root CA")
            || subject.contains("CN = Example Research Root CA"),
        "{subject}"
    );
}

#[test]
fn serve_needs_only_the_issuing_key_so_the_root_key_can_go_offline() {
    let mut ca = TestCa::init(&[]);
    let offline = ca.path("root.key.offline");
    std::fs::rename(ca.home.join("ca/root.key"), &offline).unwrap();
    ca.start();
    let pw = ca.add_user("alice");
    let (_k, csr) = make_csr(ca.dir.path(), "a", "ec", Some("P-256"), "/CN=x", &[]);
    assert_eq!(ca.post_csr("alice", &pw, &csr).status, 200);
    let crl = ca.fetch_crl("issuing.crl");
    assert!(crl_text(&crl).contains("Issuing CA"));
}
