//! Revocation end to end: the CLI revokes in the store, the running server notices
//! and publishes a new CRL, and real relying parties (`openssl verify`, nginx) act
//! on it. Also the inventory (`cert list|show`) and disabled users.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A started CA whose server polls the store for revocations often, so tests wait
/// little (the pace is configuration, never asserted).
fn fast_crl_ca() -> TestCa {
    let mut ca = TestCa::init(&[]);
    ca.edit_config("poll = \"5s\"", "poll = \"200ms\"");
    ca.edit_config("# crl_url = ", "crl_url = ");
    ca.start();
    ca
}

/// Gets a certificate for `user` into `<name>.pem` (certificate, then the chain).
fn issue(ca: &TestCa, user: &str, pw: &str, name: &str) -> (PathBuf, PathBuf) {
    let (key, csr) = make_csr(ca.dir.path(), name, "ec", Some("P-256"), "/CN=x", &[]);
    let r = ca.post_csr(user, pw, &csr);
    assert_eq!(r.status, 200, "{}", r.text());
    let pem = ca.path(&format!("{name}.pem"));
    std::fs::write(&pem, &r.body).unwrap();
    (pem, key)
}

/// `openssl verify` of `cert` against the CA's root and issuing CA with CRL checking.
fn verify_with_crl(ca: &TestCa, crl: &Path, cert: &Path) -> (bool, String) {
    let out = run(&mut openssl(&[
        "verify",
        "-CAfile",
        ca.root_pem().to_str().unwrap(),
        "-untrusted",
        ca.home.join("ca/issuing.pem").to_str().unwrap(),
        "-crl_check",
        "-CRLfile",
        crl.to_str().unwrap(),
        cert.to_str().unwrap(),
    ]));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn revocations_reach_the_crl_openssl_and_the_trust_roots() {
    let mut ca = fast_crl_ca();
    let alice_pw = ca.add_user("alice");
    let bob_pw = ca.add_user("bob");
    let (a1, _) = issue(&ca, "alice", &alice_pw, "a1");
    let (a2, _) = issue(&ca, "alice", &alice_pw, "a2");
    let (b1, _) = issue(&ca, "bob", &bob_pw, "b1");
    let (a1_serial, b1_serial) = (cert_serial(&a1), cert_serial(&b1));
    // The configured distribution point is in what was issued.
    let text = x509_text(&a1);
    assert!(
        text.contains("CRL Distribution Points")
            && text.contains("URI:https://ca.example.org/onlineca/crl"),
        "{text}"
    );

    // The CRL: DER by default, PEM on request, the same CRL.
    let der = ca.curl(&[&ca.url("crl")]);
    assert_eq!(der.status, 200);
    assert_eq!(der.header("content-type"), Some("application/pkix-crl"));
    let der_path = ca.path("crl.der");
    std::fs::write(&der_path, &der.body).unwrap();
    let crl0 = ca.fetch_crl("crl0.pem");
    let from_der = ok(&mut openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        der_path.to_str().unwrap(),
    ]));
    assert_eq!(from_der.stdout, std::fs::read(&crl0).unwrap());
    assert_eq!(ca.curl(&[&ca.url("crl/")]).status, 200);
    assert_eq!(ca.curl(&[&ca.url("crl?format=xml")]).status, 405);
    assert_eq!(ca.curl(&["-X", "POST", &ca.url("crl")]).status, 405);
    let n0 = crl_number(&crl0);
    let text = crl_text(&crl0);
    assert!(text.contains("No Revoked Certificates"), "{text}");
    assert!(text.contains("Next Update"), "{text}");
    assert!(text.contains("Authority Key Identifier"), "{text}");
    for cert in [&a1, &a2, &b1] {
        let (good, out) = verify_with_crl(&ca, &crl0, cert);
        assert!(good, "{out}");
    }

    // Revoke one of alice's certificates, by the serial as OpenSSL prints it.
    let (_, err) = ca.cli_ok(&["cert", "revoke", &a1_serial, "--reason", "keyCompromise"]);
    assert!(err.contains("revoked certificate"), "{err}");
    // Twice: harmless, and it says so.
    let (_, err) = ca.cli_ok(&["cert", "revoke", &a1_serial.to_uppercase()]);
    assert!(
        err.contains("already revoked") && err.contains("keyCompromise"),
        "{err}"
    );

    let (crl1, n1) = ca.wait_for_crl_after(n0, "crl1.pem");
    let text = crl_text(&crl1);
    assert!(text.contains(&a1_serial.to_uppercase()), "{text}");
    assert!(text.contains("Key Compromise"), "{text}");
    let (good, out) = verify_with_crl(&ca, &crl1, &a1);
    assert!(!good && out.contains("certificate revoked"), "{out}");
    for cert in [&a2, &b1] {
        let (good, out) = verify_with_crl(&ca, &crl1, cert);
        assert!(good, "{out}");
    }

    // The trust roots carry the CRL as <hash>.r0 in both encodings, so the directory
    // is a CApath that OpenSSL's CRL checking uses as it is.
    for format in ["fields", "files"] {
        let r = ca.curl(&[&ca.url(&format!("trustroots/?format={format}"))]);
        let dir = ca.path(&format!("trust-{format}"));
        let names = write_trustroots(&r.text(), &dir);
        let r0: Vec<&String> = names.iter().filter(|n| n.ends_with(".r0")).collect();
        assert_eq!(r0.len(), 1, "{names:?}");
        let hash = ok(&mut openssl(&[
            "x509",
            "-noout",
            "-subject_hash",
            "-in",
            ca.home.join("ca/issuing.pem").to_str().unwrap(),
        ]));
        assert_eq!(
            *r0[0],
            format!("{}.r0", String::from_utf8_lossy(&hash.stdout).trim())
        );
        assert!(crl_number(&dir.join(r0[0])) >= n1);
        let verify = |cert: &Path| {
            run(&mut openssl(&[
                "verify",
                "-CApath",
                dir.to_str().unwrap(),
                "-crl_check",
                cert.to_str().unwrap(),
            ]))
            .status
            .success()
        };
        assert!(!verify(&a1), "{format}: revoked certificate accepted");
        assert!(verify(&a2), "{format}: valid certificate refused");
    }

    // Every unexpired certificate of a user, with a reason by its other spelling.
    let (_, err) = ca.cli_ok(&["cert", "revoke", "--user", "bob", "--reason", "superseded"]);
    assert!(err.contains("revoked 1 certificate"), "{err}");
    let (_, err) = ca.cli_ok(&["cert", "revoke", "--user", "bob"]);
    assert!(err.contains("nothing changed"), "{err}");
    let (crl2, n2) = ca.wait_for_crl_after(n1, "crl2.pem");
    assert!(n2 > n1);
    let text = crl_text(&crl2);
    assert!(
        text.contains("Superseded") && text.contains("Key Compromise"),
        "{text}"
    );
    assert!(text.contains(&b1_serial.to_uppercase()), "{text}");
    let (good, _) = verify_with_crl(&ca, &crl2, &b1);
    assert!(!good);

    // Refusals are one precise line.
    let out = ca.cli(&["cert", "revoke", &a1_serial, "--reason", "certificateHold"]);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("unknown revocation reason"),
        "{}",
        stderr_of(&out)
    );
    let out = ca.cli(&["cert", "revoke", "00ff"]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("no certificate with serial"));
    let out = ca.cli(&["cert", "revoke", "not-hex"]);
    assert!(stderr_of(&out).contains("not a serial number"));

    // A restarted server (or another instance on the store) continues the numbering.
    ca.stop(Duration::from_secs(30)).expect("server stops");
    ca.start();
    let crl3 = ca.fetch_crl("crl3.pem");
    assert!(crl_number(&crl3) > n2);
    let text = crl_text(&crl3);
    assert!(text.contains(&a1_serial.to_uppercase()) && text.contains(&b1_serial.to_uppercase()));
}

#[test]
fn the_inventory_lists_and_shows_what_was_issued() {
    let ca = fast_crl_ca();
    let pw = ca.add_user("carol");
    let other = ca.add_user("dan");
    let (c1, _) = issue(&ca, "carol", &pw, "c1");
    let (c2, _) = issue(&ca, "carol", &pw, "c2");
    issue(&ca, "dan", &other, "d1");
    let (s1, s2) = (cert_serial(&c1), cert_serial(&c2));
    ca.cli_ok(&["cert", "revoke", &s1, "--reason", "affiliation-changed"]);

    let (out, _) = ca.cli_ok(&["cert", "list", "--user", "carol", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    // Newest first; serials may have lost a leading zero byte in OpenSSL's print.
    let find = |s: &str| {
        rows.iter()
            .find(|r| r["serial"].as_str().unwrap().ends_with(s))
            .unwrap_or_else(|| panic!("{s} not in {rows:?}"))
    };
    assert_eq!(find(&s1)["status"], "revoked");
    assert_eq!(find(&s1)["revocation_reason"], "affiliationChanged");
    assert_eq!(find(&s2)["status"], "valid");
    assert_eq!(find(&s2)["auth_method"], "password");
    assert_eq!(find(&s2)["client_addr"], "127.0.0.1");
    assert!(find(&s2)["subject"].as_str().unwrap().ends_with("CN=carol"));

    let (out, _) = ca.cli_ok(&["cert", "list", "--revoked"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains(&s1) && out.contains("revoked"), "{out}");
    let (out, _) = ca.cli_ok(&["cert", "list", "--valid"]);
    assert_eq!(out.lines().count(), 3, "header and two valid: {out}");
    let (out, _) = ca.cli_ok(&["cert", "list", "--expired"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let (out, _) = ca.cli_ok(&["cert", "list", "--since", "1h"]);
    assert_eq!(out.lines().count(), 4, "{out}");
    let (out, _) = ca.cli_ok(&["cert", "list", "--since", "2999-01-01"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let (out, err) = ca.cli_ok(&["cert", "list", "--limit", "1"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(err.contains("--all"), "{err}");
    let out = ca.cli(&["cert", "list", "--valid", "--revoked"]);
    assert!(!out.status.success());

    let (out, _) = ca.cli_ok(&["cert", "show", &s1]);
    assert!(out.contains("user            carol"), "{out}");
    assert!(out.contains("authenticated   password"), "{out}");
    assert!(out.contains("client          127.0.0.1"), "{out}");
    assert!(
        out.contains("revoked at") && out.contains("affiliationChanged"),
        "{out}"
    );
    // The PEM shown is the certificate issued.
    let pem_start = out.find("-----BEGIN CERTIFICATE-----").unwrap();
    let issued = std::fs::read_to_string(&c1).unwrap();
    assert!(issued.starts_with(&out[pem_start..]), "{out}");
}

#[test]
fn disabled_users_are_refused_and_removal_counts_valid_certificates() {
    let ca = fast_crl_ca();
    let pw = ca.add_user("erin");
    let (_k, csr) = make_csr(ca.dir.path(), "e", "ec", Some("P-256"), "/CN=x", &[]);
    assert_eq!(ca.post_csr("erin", &pw, &csr).status, 200);

    let (_, err) = ca.cli_ok(&["user", "disable", "erin"]);
    assert!(err.contains("1 certificate(s)"), "{err}");
    let r = ca.post_csr("erin", &pw, &csr);
    assert_eq!(r.status, 401);
    assert!(r.text().contains("disabled"), "{}", r.text());
    let (out, _) = ca.cli_ok(&["user", "list"]);
    assert!(out.contains("disabled"), "{out}");
    ca.cli_ok(&["user", "enable", "erin"]);
    assert_eq!(ca.post_csr("erin", &pw, &csr).status, 200);
    assert!(stderr_of(&ca.cli(&["user", "disable", "nobody"])).contains("no user"));

    // Removing a user says how many certificates remain valid ...
    let (_, err) = ca.cli_ok(&["user", "remove", "erin"]);
    assert!(err.contains("2 certificate(s) remain valid"), "{err}");
    assert!(err.contains("--revoke"), "{err}");
    // ... or revokes them.
    let pw = ca.add_user("finn");
    assert_eq!(ca.post_csr("finn", &pw, &csr).status, 200);
    let (_, err) = ca.cli_ok(&["user", "remove", "finn", "--revoke"]);
    assert!(err.contains("revoked 1 certificate"), "{err}");
    let (out, _) = ca.cli_ok(&["cert", "list", "--user", "finn", "--revoked", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["revocation_reason"], "cessationOfOperation");
}

/// nginx as a relying party: started from the test in the foreground on a free port,
/// trusting the CA's trust roots, with `ssl_crl` fetched from the server.
struct Nginx {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Nginx {
    fn start(ca: &TestCa, crl: &Path, name: &str) -> Nginx {
        let dir = ca.path(name);
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 32; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/tmp/body;\n proxy_temp_path {d}/tmp/proxy;\n\
             fastcgi_temp_path {d}/tmp/fcgi;\n uwsgi_temp_path {d}/tmp/uwsgi;\n scgi_temp_path {d}/tmp/scgi;\n\
             server {{\n  listen 127.0.0.1:{port} ssl;\n  ssl_certificate {tls};\n  ssl_certificate_key {tlskey};\n\
             ssl_client_certificate {cas};\n  ssl_verify_client on;\n  ssl_verify_depth 3;\n  ssl_crl {crl};\n\
             location / {{ return 200 \"hello $ssl_client_s_dn\\n\"; }}\n }}\n}}\n",
            tls = ca.home.join("tls/server.pem").display(),
            tlskey = ca.home.join("tls/server.key").display(),
            cas = dir.join("cas.pem").display(),
            crl = crl.display(),
        );
        let cas = format!(
            "{}{}",
            std::fs::read_to_string(ca.root_pem()).unwrap(),
            std::fs::read_to_string(ca.home.join("ca/issuing.pem")).unwrap()
        );
        std::fs::write(dir.join("cas.pem"), cas).unwrap();
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nginx");
        let nginx = Nginx { child, port, dir };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nginx did not start: {}",
                std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }

    /// The status nginx answers a request made with this client certificate.
    fn status_with(&self, ca: &TestCa, cert: &Path, key: &Path) -> u16 {
        let out = run(Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "30",
            ])
            .arg("--cacert")
            .arg(ca.root_pem())
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg(format!("https://127.0.0.1:{}/", self.port)));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx (OpenSSL's CRL_CHECK_ALL) wants a CRL for every CA of the chain, the root
/// too; the operator signs the root's (empty) CRL with `onlineca crl root` where the
/// root key is kept.
fn root_crl(ca: &TestCa) -> String {
    let out = ca.path("root-crl.pem");
    ok(onlineca()
        .args(["crl", "root", "--next-update", "30days", "--cert"])
        .arg(ca.root_pem())
        .arg("--key")
        .arg(ca.home.join("ca/root.key"))
        .arg("--out")
        .arg(&out));
    let text = crl_text(&out);
    assert!(text.contains("No Revoked Certificates"), "{text}");
    // OpenSSL accepts its signature against the root.
    ok(&mut openssl(&[
        "crl",
        "-noout",
        "-in",
        out.to_str().unwrap(),
        "-CAfile",
        ca.root_pem().to_str().unwrap(),
    ]));
    std::fs::read_to_string(out).unwrap()
}

#[test]
fn nginx_refuses_a_revoked_certificate_after_the_refresh() {
    if !have("nginx") {
        onlineca_testkit::skip("nginx", "not on PATH", "apt-get install nginx");
        return;
    }
    let ca = fast_crl_ca();
    let pw = ca.add_user("gwen");
    let (g1, g1_key) = issue(&ca, "gwen", &pw, "g1");
    let (g2, g2_key) = issue(&ca, "gwen", &pw, "g2");
    let root = root_crl(&ca);

    // Before: both accepted.
    let crl0 = ca.fetch_crl("n-crl0.pem");
    let both = ca.path("n-both0.pem");
    std::fs::write(
        &both,
        format!("{}{root}", std::fs::read_to_string(&crl0).unwrap()),
    )
    .unwrap();
    let nginx = Nginx::start(&ca, &both, "nginx0");
    assert_eq!(nginx.status_with(&ca, &g1, &g1_key), 200);
    assert_eq!(nginx.status_with(&ca, &g2, &g2_key), 200);
    drop(nginx);

    // Revoke g1; once the server has published the new CRL, nginx with it refuses
    // g1 and still accepts g2.
    ca.cli_ok(&[
        "cert",
        "revoke",
        &cert_serial(&g1),
        "--reason",
        "keyCompromise",
    ]);
    let (crl1, _) = ca.wait_for_crl_after(crl_number(&crl0), "n-crl1.pem");
    let both = ca.path("n-both1.pem");
    std::fs::write(
        &both,
        format!("{}{root}", std::fs::read_to_string(&crl1).unwrap()),
    )
    .unwrap();
    let nginx = Nginx::start(&ca, &both, "nginx1");
    assert_eq!(
        nginx.status_with(&ca, &g1, &g1_key),
        400,
        "revoked certificate accepted"
    );
    assert_eq!(nginx.status_with(&ca, &g2, &g2_key), 200);
    let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
    assert!(log.contains("certificate revoked"), "{log}");
}
