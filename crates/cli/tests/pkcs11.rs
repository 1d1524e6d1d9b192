//! The issuing CA key on a PKCS#11 token, end to end on a real SoftHSM token made
//! for each test: `init` generates the key on the token (and writes no key file),
//! `serve` signs certificates and CRLs through it for EC and RSA CAs, as `openssl`
//! verifies; a wrong PIN, an absent key and a missing module stop `serve` with a
//! message naming them; a token failing at request time answers 503 and issues
//! nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const INSTALL: &str = "apt-get install softhsm2 opensc";
const URI: &str = "pkcs11:token=onlineca;object=onlineca-issuing";

/// Whether SoftHSM (module and softhsm2-util) and pkcs11-tool are here; says so
/// visibly when not.
fn tools() -> bool {
    if !Path::new(MODULE).exists() || !have("softhsm2-util") {
        onlineca_testkit::skip(
            "softhsm2",
            &format!("{MODULE} or softhsm2-util not found"),
            INSTALL,
        );
        return false;
    }
    if !have("pkcs11-tool") {
        onlineca_testkit::skip("pkcs11-tool", "pkcs11-tool not found", INSTALL);
        return false;
    }
    true
}

/// A SoftHSM token of its own in a temporary directory, labelled `onlineca`, with
/// PINs made now and the user PIN in a 0600 file.
struct Token {
    dir: tempfile::TempDir,
    conf: PathBuf,
    pin: String,
    pin_file: PathBuf,
}

impl Token {
    fn new() -> Token {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let pin = random_password();
        let token = Token {
            pin_file: dir.path().join("token.pin"),
            dir,
            conf,
            pin,
        };
        let so_pin = random_password();
        ok(token
            .command("softhsm2-util")
            .args(["--init-token", "--free", "--label", "onlineca"])
            .args(["--so-pin", &so_pin, "--pin", &token.pin]));
        token.write_pin(&token.pin);
        token
    }

    /// Replaces the PIN file's content (mode 0600 from creation).
    fn write_pin(&self, pin: &str) {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&self.pin_file);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.pin_file)
            .unwrap();
        writeln!(f, "{pin}").unwrap();
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("SOFTHSM2_CONF".into(), self.conf.display().to_string())]
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.envs(self.env());
        c
    }

    /// `pkcs11-tool --list-objects`, logged in: what the token holds.
    fn objects(&self) -> String {
        let out = ok(self
            .command("pkcs11-tool")
            .args(["--module", MODULE, "--token-label", "onlineca"])
            .args(["--list-objects", "--login", "--pin", &self.pin]));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// A CA whose issuing key `init` makes on this token under `uri`.
    fn ca(&self, key_type: &str, uri: &str) -> TestCa {
        TestCa::init_with_env(&self.init_args(key_type, uri), &self.env())
    }

    fn init_args<'a>(&'a self, key_type: &'a str, uri: &'a str) -> Vec<&'a str> {
        vec![
            "--key-type",
            key_type,
            "--pkcs11-module",
            MODULE,
            "--issuing-key-pkcs11",
            uri,
            "--pin-file",
            self.pin_file.to_str().unwrap(),
        ]
    }
}

/// Gets a certificate for a fresh key into `<name>.pem` (certificate, then chain).
fn issue(ca: &TestCa, user: &str, pw: &str, name: &str) -> PathBuf {
    let (_, csr) = make_csr(ca.dir.path(), name, "ec", Some("P-256"), "/CN=x", &[]);
    let r = ca.post_csr(user, pw, &csr);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), ca.log_text());
    let pem = ca.path(&format!("{name}.pem"));
    std::fs::write(&pem, &r.body).unwrap();
    pem
}

fn openssl_ok(args: &[&str]) -> String {
    let out = run(&mut openssl(args));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {args:?}: {text}");
    text
}

/// Issues over HTTPS, revokes, and checks with openssl that the certificate and
/// the CRLs, all signed on the token, verify under the issuing certificate.
fn issue_revoke_and_verify(ca: &mut TestCa) {
    ca.edit_config("poll = \"5s\"", "poll = \"200ms\"");
    ca.start();
    let pw = ca.add_user("alice");
    let cert = issue(ca, "alice", &pw, "alice");
    let root = ca.root_pem();
    let issuing = ca.home.join("ca/issuing.pem");
    let (root, issuing, cert_s) = (
        root.to_str().unwrap(),
        issuing.to_str().unwrap(),
        cert.to_str().unwrap(),
    );
    openssl_ok(&["verify", "-CAfile", root, "-untrusted", issuing, cert_s]);

    let crl0 = ca.fetch_crl("crl0.pem");
    let n0 = crl_number(&crl0);
    let serial = cert_serial(&cert);
    ca.cli_ok(&["cert", "revoke", &serial, "--reason", "keyCompromise"]);
    let (crl1, _) = ca.wait_for_crl_after(n0, "crl1.pem");
    let text = crl_text(&crl1);
    assert!(text.contains(&serial.to_uppercase()), "{text}");
    let out = openssl_ok(&[
        "crl",
        "-noout",
        "-verify",
        "-CAfile",
        issuing,
        "-in",
        crl1.to_str().unwrap(),
    ]);
    assert!(out.contains("verify OK"), "{out}");
    // A relying party checking the CRL refuses the certificate for the right reason.
    let out = run(&mut openssl(&[
        "verify",
        "-CAfile",
        root,
        "-untrusted",
        issuing,
        "-crl_check",
        "-CRLfile",
        crl1.to_str().unwrap(),
        cert_s,
    ]));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("certificate revoked"),
        "{text}"
    );
}

#[test]
fn an_ec_ca_on_a_token_issues_and_signs_crls_with_no_key_file() {
    if !tools() {
        return;
    }
    let token = Token::new();
    let mut ca = token.ca("p256", URI);
    assert!(
        !ca.home.join("ca/issuing.key").exists(),
        "init wrote an issuing key file"
    );
    let config = std::fs::read_to_string(&ca.config).unwrap();
    assert!(config.contains(&format!("key = \"{URI}\"")), "{config}");
    assert!(
        config.contains(&format!("pkcs11_module = \"{MODULE}\"")),
        "{config}"
    );
    assert!(
        config.contains(&format!("pin_file = \"{}\"", token.pin_file.display())),
        "{config}"
    );

    // The token holds the key pair under the URI's label, the private key sensitive
    // and never extractable, able only to sign.
    let objects = token.objects();
    let private = objects
        .split("Private Key Object")
        .nth(1)
        .unwrap_or_else(|| panic!("no private key on the token:\n{objects}"));
    assert!(private.starts_with("; EC"), "{objects}");
    assert!(
        private.contains("label:      onlineca-issuing"),
        "{objects}"
    );
    assert!(private.contains("ID:"), "{objects}");
    assert!(private.contains("never extractable"), "{objects}");
    assert!(private.contains("sensitive"), "{objects}");
    let usage = private.lines().find(|l| l.contains("Usage:")).unwrap();
    assert_eq!(usage.trim(), "Usage:      sign", "{objects}");

    // config check opens the token; it shows the module and URI, never the PIN.
    let (out, _) = ca.cli_ok(&["config", "check"]);
    assert!(out.contains(URI) && out.contains(MODULE), "{out}");
    assert!(out.contains("ok: issuing CA"), "{out}");
    assert!(!out.contains(&token.pin), "the PIN is shown:\n{out}");

    issue_revoke_and_verify(&mut ca);
    let log = ca.log_text();
    assert!(
        log.contains("the issuing CA key is on a PKCS#11 token"),
        "{log}"
    );
    assert!(!log.contains(&token.pin), "the PIN is logged:\n{log}");
}

#[test]
fn an_rsa_ca_on_a_token_issues_and_signs_crls() {
    if !tools() {
        return;
    }
    let token = Token::new();
    let mut ca = token.ca("rsa2048", URI);
    assert!(!ca.home.join("ca/issuing.key").exists());
    assert!(token.objects().contains("Private Key Object; RSA"));
    let text = x509_text(&ca.home.join("ca/issuing.pem"));
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
    issue_revoke_and_verify(&mut ca);
    let cert = x509_text(&ca.path("alice.pem"));
    assert!(cert.contains("sha256WithRSAEncryption"), "{cert}");
}

#[test]
fn a_p384_ca_on_a_token_signs_with_sha384() {
    if !tools() {
        return;
    }
    let token = Token::new();
    let mut ca = token.ca("p384", URI);
    issue_revoke_and_verify(&mut ca);
    let cert = x509_text(&ca.path("alice.pem"));
    assert!(cert.contains("ecdsa-with-SHA384"), "{cert}");
}

#[test]
fn init_refuses_a_key_name_the_token_already_holds() {
    if !tools() {
        return;
    }
    let token = Token::new();
    let _first = token.ca("p256", URI);
    let dir = tempfile::tempdir().unwrap();
    let out = run(onlineca()
        .arg("init")
        .arg("--dir")
        .arg(dir.path().join("second"))
        .args(token.init_args("p256", URI))
        .envs(token.env()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a second init on the same URI: {err}"
    );
    assert!(
        err.contains("already holds an object matching") && err.contains(URI),
        "{err}"
    );
    // Nothing was added: still one key pair under that label.
    assert_eq!(token.objects().matches("Private Key Object").count(), 1);
}

/// Runs `serve` on `ca`'s configuration, which must fail at start-up; returns its
/// standard error.
fn serve_fails(ca: &TestCa) -> String {
    let mut child = onlineca()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&ca.config)
        .envs(ca.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("serve did not stop");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out: Output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "serve started: {err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "{err}"
    );
    err
}

#[test]
fn serve_stops_on_a_wrong_pin_an_absent_key_or_a_missing_module() {
    if !tools() {
        return;
    }
    let token = Token::new();
    let ca = token.ca("p256", URI);

    token.write_pin("not-the-pin");
    let err = serve_fails(&ca);
    assert!(
        err.contains("CKR_PIN_INCORRECT") && err.contains(token.pin_file.to_str().unwrap()),
        "{err}"
    );
    token.write_pin(&token.pin);

    let absent = "pkcs11:token=onlineca;object=no-such-key";
    ca.edit_config(URI, absent);
    let err = serve_fails(&ca);
    assert!(
        err.contains("no private key matching") && err.contains(absent),
        "{err}"
    );
    ca.edit_config(absent, URI);

    ca.edit_config(MODULE, "/nonexistent/libpkcs11.so");
    let err = serve_fails(&ca);
    assert!(
        err.contains("/nonexistent/libpkcs11.so") && err.contains("does not exist"),
        "{err}"
    );
    ca.edit_config("/nonexistent/libpkcs11.so", MODULE);

    // A key on the token that is not the certificate's.
    let other = "pkcs11:token=onlineca;object=another";
    let _second = token.ca("p256", other);
    ca.edit_config(URI, other);
    let err = serve_fails(&ca);
    assert!(
        err.contains("does not match") && err.contains(other),
        "{err}"
    );
}

#[test]
fn a_token_failing_at_request_time_answers_503_and_issues_nothing() {
    if !tools() {
        return;
    }
    let token = Token::new();
    let mut ca = token.ca("p256", URI);
    ca.edit_config("poll = \"5s\"", "poll = \"200ms\"");
    ca.start();
    let pw = ca.add_user("alice");
    let before = issue(&ca, "alice", &pw, "before");
    let crl_before = crl_number(&ca.fetch_crl("crl-before.pem"));
    let count = || {
        let (out, _) = ca.cli_ok(&["cert", "list", "--json"]);
        let list: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        list.len()
    };
    assert_eq!(count(), 1);
    let audit = || std::fs::read_to_string(ca.home.join("audit.jsonl")).unwrap_or_default();
    let issued_before = audit().matches("\"issued\"").count();
    assert_eq!(issued_before, 1, "{}", audit());

    // The token's files vanish under the running server: SoftHSM then fails every
    // operation on the key (the session and handle the server holds are dead).
    std::fs::remove_dir_all(token.dir.path().join("tokens")).unwrap();
    std::fs::create_dir(token.dir.path().join("tokens")).unwrap();
    let (_, csr) = make_csr(ca.dir.path(), "after", "ec", Some("P-256"), "/CN=x", &[]);
    for _ in 0..2 {
        let r = ca.post_csr("alice", &pw, &csr);
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("5"));
        assert!(
            r.text().contains("signing key") && r.text().contains("nothing was issued"),
            "{}",
            r.text()
        );
    }
    assert_eq!(count(), 1, "a certificate was recorded");
    assert_eq!(audit().matches("\"issued\"").count(), issued_before);
    let log = ca.log_text();
    assert!(log.contains("signing key unavailable"), "{log}");

    // A revocation now cannot be signed into a CRL: the previous CRL stays published.
    ca.cli_ok(&["cert", "revoke", &cert_serial(&before)]);
    let start = Instant::now();
    while !ca.log_text().contains("keeping the current one") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no failed CRL build:\n{}",
            ca.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(crl_number(&ca.fetch_crl("crl-after.pem")), crl_before);
}
