//! The operator's side: init, config check, users, imported CAs, key types,
//! shutdown, and what happens when the store fails.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_private_keys_0600_and_refuses_to_overwrite() {
    let ca = TestCa::init(&[]);
    for key in [
        "ca/root.key",
        "ca/issuing.key",
        "tls/server.key",
        "onlineca.db",
    ] {
        assert_eq!(mode(&ca.home.join(key)), 0o600, "{key}");
    }
    assert_eq!(mode(&ca.home.join("ca")), 0o700);
    let before = std::fs::read(ca.home.join("ca/issuing.key")).unwrap();
    let out = run(onlineca().arg("init").arg("--dir").arg(&ca.home));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
    assert_eq!(
        std::fs::read(ca.home.join("ca/issuing.key")).unwrap(),
        before
    );
    // The configuration is commented and names every section.
    let cfg = std::fs::read_to_string(&ca.config).unwrap();
    for section in [
        "[server]",
        "[tls]",
        "[ca]",
        "[certificate]",
        "[auth]",
        "[store]",
        "[trustroots]",
    ] {
        assert!(cfg.contains(section), "{section}");
    }
    assert!(
        cfg.lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .count()
            > 3
    );
}

#[test]
fn config_check_prints_settings_and_names_bad_keys() {
    let ca = TestCa::init(&["--org", "Example Org", "--cert-lifetime", "2h"]);
    let out = ok(onlineca()
        .args(["config", "check", "--config"])
        .arg(&ca.config));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("server.prefix") && text.contains("/onlineca"),
        "{text}"
    );
    assert!(
        text.contains("certificate.subject")
            && text.contains("/O=Example Org/OU=Users/CN={username}"),
        "{text}"
    );
    assert!(
        text.contains("certificate.lifetime") && text.contains("2h"),
        "{text}"
    );
    assert!(text.contains("ok: issuing CA"), "{text}");

    ca.append_config("\n[extra]\nfoo = 1\n");
    let out = run(onlineca()
        .args(["config", "check", "--config"])
        .arg(&ca.config));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("extra") && err.contains("onlineca.toml"),
        "{err}"
    );

    let ca = TestCa::init(&[]);
    ca.edit_config("realm = \"onlineca\"", "realm = \"x\"\nrelam = \"y\"");
    let out = run(onlineca()
        .args(["config", "check", "--config"])
        .arg(&ca.config));
    assert!(String::from_utf8_lossy(&out.stderr).contains("relam"));
}

#[test]
fn users_are_validated_managed_and_enforced() {
    let mut ca = TestCa::init(&[]);
    ca.start();
    for bad in ["a/CN=b", "a,CN=b", "a+CN=b", "a b", &"x".repeat(65)] {
        let out = run_with_stdin(
            onlineca()
                .args(["user", "add", bad, "--password-stdin", "--config"])
                .arg(&ca.config),
            b"long enough password\n",
        );
        assert!(!out.status.success(), "{bad} was accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not allowed"),
            "{bad}"
        );
    }
    // Short passwords are refused.
    let out = run_with_stdin(
        onlineca()
            .args(["user", "add", "shorty", "--password-stdin", "--config"])
            .arg(&ca.config),
        b"short\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("too short"));

    let pw = ca.add_user("frank");
    let dup = run_with_stdin(
        onlineca()
            .args(["user", "add", "frank", "--password-stdin", "--config"])
            .arg(&ca.config),
        b"another password\n",
    );
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let list = ok(onlineca()
        .args(["user", "list", "--config"])
        .arg(&ca.config));
    assert!(String::from_utf8_lossy(&list.stdout).contains("frank"));

    let (_k, csr) = make_csr(ca.dir.path(), "f", "ec", Some("P-256"), "/CN=dummy", &[]);
    assert_eq!(ca.post_csr("frank", &pw, &csr).status, 200);
    // Password change: the old one stops working at once (the server reads the store).
    let new_pw = random_password();
    let out = run_with_stdin(
        onlineca()
            .args(["user", "passwd", "frank", "--password-stdin", "--config"])
            .arg(&ca.config),
        format!("{new_pw}\n").as_bytes(),
    );
    assert!(out.status.success());
    assert_eq!(ca.post_csr("frank", &pw, &csr).status, 401);
    assert_eq!(ca.post_csr("frank", &new_pw, &csr).status, 200);
    ok(onlineca()
        .args(["user", "remove", "frank", "--config"])
        .arg(&ca.config));
    assert_eq!(ca.post_csr("frank", &new_pw, &csr).status, 401);
    let out = run(onlineca()
        .args(["user", "remove", "frank", "--config"])
        .arg(&ca.config));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user"));
}

#[test]
fn every_ca_key_type_works_end_to_end() {
    for key_type in ["p384", "ed25519", "rsa2048"] {
        let mut ca = TestCa::init(&["--key-type", key_type]);
        ca.start();
        let pw = ca.add_user("gina");
        let (_k, csr) = make_csr(ca.dir.path(), "g", "rsa:2048", None, "/", &[]);
        let r = ca.post_csr("gina", &pw, &csr);
        assert_eq!(r.status, 200, "{key_type}: {}", r.text());
        let cert = ca.path("g.pem");
        std::fs::write(&cert, &r.body).unwrap();
        let out = ok(&mut openssl(&[
            "verify",
            "-CAfile",
            ca.root_pem().to_str().unwrap(),
            "-untrusted",
            cert.to_str().unwrap(),
            "-purpose",
            "sslclient",
            cert.to_str().unwrap(),
        ]));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("OK"),
            "{key_type}"
        );
    }
}

#[test]
fn an_openssl_made_ca_can_be_imported() {
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("ext.key");
    let cert = work.path().join("ext.pem");
    ok(&mut openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "30",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
        "-subj",
        "/C=GB/O=Imported Org/CN=Imported CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]));
    let mut ca = TestCa::init(&[
        "--import-ca-cert",
        cert.to_str().unwrap(),
        "--import-ca-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(mode(&ca.home.join("ca/issuing.key")), 0o600);
    ca.start();
    let pw = ca.add_user("hank");
    let (_k, csr) = make_csr(ca.dir.path(), "h", "ec", Some("P-256"), "/CN=dummy", &[]);
    // The TLS certificate is signed by the imported CA: trust it alone.
    let field = format!("certificate_request@{}", csr.display());
    let out = ok(std::process::Command::new("curl")
        .args([
            "-s",
            "-S",
            "--cacert",
            cert.to_str().unwrap(),
            "-u",
            &format!("hank:{pw}"),
            "--data-urlencode",
            &field,
        ])
        .arg(ca.url("certificate/")));
    let body = String::from_utf8_lossy(&out.stdout).to_string();
    // A self-signed issuing CA is the root: only the leaf comes back.
    assert_eq!(body.matches("BEGIN CERTIFICATE").count(), 1, "{body}");
    let leaf = ca.path("h.pem");
    std::fs::write(&leaf, &body).unwrap();
    let text = x509_text(&leaf);
    assert!(
        text.contains("Issuer: C = GB, O = Imported Org, CN = Imported CA"),
        "{text}"
    );
    ok(&mut openssl(&[
        "verify",
        "-CAfile",
        cert.to_str().unwrap(),
        "-purpose",
        "sslclient",
        leaf.to_str().unwrap(),
    ]));

    // A key that does not match is refused, and nothing is left half-made.
    let other = work.path().join("other.key");
    ok(&mut openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        other.to_str().unwrap(),
    ]));
    let dir = work.path().join("bad");
    let out = run(onlineca().arg("init").arg("--dir").arg(&dir).args([
        "--import-ca-cert",
        cert.to_str().unwrap(),
        "--import-ca-key",
        other.to_str().unwrap(),
    ]));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not match"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.join("onlineca.toml").exists());
}

#[test]
fn sigterm_lets_a_request_in_flight_finish() {
    let mut ca = TestCa::start_default();
    let pw = ca.add_user("ivy");
    let (_k, csr) = make_csr(ca.dir.path(), "i", "rsa:4096", None, "/CN=dummy", &[]);
    // Upload the (~1.7 KB) form slowly: 300 bytes a second.
    let field = format!("certificate_request@{}", csr.display());
    let body = ca.path("i.pem");
    let child = std::process::Command::new("curl")
        .args([
            "-s",
            "-S",
            "--limit-rate",
            "300",
            "--cacert",
            ca.root_pem().to_str().unwrap(),
        ])
        .args([
            "-u",
            &format!("ivy:{pw}"),
            "--data-urlencode",
            &field,
            "-o",
            body.to_str().unwrap(),
            "-w",
            "%{http_code}",
        ])
        .arg(ca.url("certificate/"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let status = ca.stop(Duration::from_secs(30));
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "the request in flight was cut off"
    );
    assert!(
        std::fs::read_to_string(&body)
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    assert_eq!(
        status.map(|s| s.success()),
        Some(true),
        "server did not exit cleanly"
    );
}

#[test]
fn a_store_that_cannot_record_means_no_certificate() {
    if !have("python3") {
        // It holds the SQLite write lock from outside the server.
        onlineca_testkit::skip("python3", "not on PATH", "apt-get install python3");
        return;
    }
    let ca = TestCa::start_default();
    let pw = ca.add_user("jack");
    let (_k, csr) = make_csr(ca.dir.path(), "j", "ec", Some("P-256"), "/CN=dummy", &[]);
    // Another process holds SQLite's write lock longer than the server waits for it.
    let db = ca.home.join("onlineca.db");
    let mut locker = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys,time\nc=sqlite3.connect(sys.argv[1],isolation_level=None)\nc.execute('BEGIN IMMEDIATE')\nprint('locked',flush=True)\ntime.sleep(12)\nc.execute('ROLLBACK')",
        ])
        .arg(&db)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(locker.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let r = ca.post_csr("jack", &pw, &csr);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(!r.text().contains("BEGIN CERTIFICATE"));
    assert!(r.text().contains("nothing was issued"), "{}", r.text());
    assert!(r.header("retry-after").is_some());
    let _ = locker.wait();
    // Once the lock is gone, service resumes.
    let r = ca.post_csr("jack", &pw, &csr);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn issued_certificates_are_recorded_before_they_are_returned() {
    let ca = TestCa::start_default();
    let pw = ca.add_user("kate");
    let (_k, csr) = make_csr(ca.dir.path(), "k", "ec", Some("P-256"), "/CN=dummy", &[]);
    let r = ca.post_csr("kate", &pw, &csr);
    assert_eq!(r.status, 200);
    let pem_path = ca.path("k.pem");
    std::fs::write(&pem_path, &r.body).unwrap();
    let serial = cert_serial(&pem_path);
    assert_eq!(serial.len(), 40, "{serial}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rec = rt.block_on(async {
        let store = onlineca_store::open(&format!(
            "sqlite://{}",
            ca.home.join("onlineca.db").display()
        ))
        .await
        .unwrap();
        store.get_issued(&serial).await.unwrap()
    });
    let rec = rec.expect("the issued certificate is in the store");
    assert_eq!(rec.username, "kate");
    assert_eq!(rec.auth_method, "password");
    assert_eq!(rec.subject, "/O=onlineca/OU=Users/CN=kate");
    assert_eq!(rec.client_addr.as_deref(), Some("127.0.0.1"));
    assert_eq!(rec.spki_sha256.len(), 64);
    assert!(rec.not_after > rec.not_before);
}

#[test]
fn the_deployed_python_client_request_works_unchanged() {
    if !have("python3") {
        panic!("python3 is required for this test");
    }
    let ca = TestCa::start_default();
    let pw = ca.add_user("testuser");
    // The deployed client's CSR: empty subject, RSA-2048, SHA-256.
    let (_k, csr) = make_csr(ca.dir.path(), "py", "rsa:2048", None, "/", &["-sha256"]);
    // Exactly its request: form-encoded PEM with '+' for spaces and %0A newlines,
    // Basic credentials sent pre-emptively, no retry after a 401.
    let script = r#"
import base64, http.client, ssl, sys, urllib.parse
host, port, prefix, user, pw, csr, cafile = sys.argv[1:8]
pem = open(csr).read()
body = urllib.parse.urlencode({'certificate_request': pem})
ctx = ssl.create_default_context(cafile=cafile)
conn = http.client.HTTPSConnection(host, int(port), context=ctx)
auth = base64.b64encode(f'{user}:{pw}'.encode()).decode()
conn.request('POST', prefix + '/certificate/', body, {
    'Content-Type': 'application/x-www-form-urlencoded',
    'Authorization': 'Basic ' + auth,
})
r = conn.getresponse()
data = r.read().decode()
print(r.status)
sys.stdout.write(data)
"#;
    let out = ok(std::process::Command::new("python3")
        .args([
            "-c",
            script,
            "127.0.0.1",
            &ca.port.to_string(),
            "/onlineca",
            "testuser",
            &pw,
        ])
        .arg(&csr)
        .arg(ca.root_pem()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("200\n-----BEGIN CERTIFICATE-----"),
        "{text}"
    );
    // Its trust-roots call, in the encoding it reads (files): every key a file name
    // (certificates, signing policies, and the CRL as <hash>.r0).
    let r = ca.curl(&[&ca.url("trustroots/?format=files")]);
    for line in r.text().lines() {
        let (k, _) = line.split_once('=').unwrap();
        assert!(
            k.ends_with(".0") || k.ends_with(".signing_policy") || k.ends_with(".r0"),
            "{k}"
        );
    }
}

#[test]
fn a_request_slower_than_the_timeout_is_refused_with_408() {
    let mut ca = TestCa::init(&[]);
    ca.edit_config("request_timeout = \"30s\"", "request_timeout = \"2s\"");
    ca.start();
    let pw = ca.add_user("liam");
    let (_k, csr) = make_csr(ca.dir.path(), "l", "rsa:4096", None, "/CN=dummy", &[]);
    let field = format!("certificate_request@{}", csr.display());
    // ~2.3 KB at 200 bytes a second: well past two seconds.
    let r = ca.curl(&[
        "--http1.1",
        "--limit-rate",
        "200",
        "-u",
        &format!("liam:{pw}"),
        "--data-urlencode",
        &field,
        &ca.url("certificate/"),
    ]);
    assert_eq!(r.status, 408, "{r:?}");
    assert_eq!(r.text(), "request not completed within 2 seconds\n");
    // Nothing was issued, and the server still serves.
    assert_eq!(ca.post_csr("liam", &pw, &csr).status, 200);
}

#[test]
fn a_client_that_connects_and_says_nothing_cannot_hold_a_connection_slot() {
    let mut ca = TestCa::init(&[]);
    ca.edit_config("max_connections = 1024", "max_connections = 1");
    ca.edit_config("idle_timeout = \"60s\"", "idle_timeout = \"2s\"");
    ca.start();
    // A TLS client that completes the handshake and then sends nothing.
    let mut silent = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &format!("127.0.0.1:{}", ca.port),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // The only slot is taken; it comes free when the silent connection is closed as idle.
    let r = ca.curl(&["--max-time", "20", &ca.url("trustroots/")]);
    assert_eq!(r.status, 200, "{r:?}");
    let _ = silent.kill();
    let _ = silent.wait();
}

/// Stderr of a finished command.
fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn serve_on_a_busy_port_names_the_address_and_creates_nothing() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new-ca");
    let out = run(onlineca()
        .arg("serve")
        .arg("--dir")
        .arg(&new)
        .args(["--listen", &addr]));
    let said = stderr_of(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains(&format!("cannot listen on {addr}")), "{said}");
    assert!(said.contains("--listen"), "{said}");
    assert_eq!(said.matches("os error 98").count(), 1, "{said}");
    // Bound (or not) before anything was made.
    assert!(!new.exists(), "a CA was created in {}", new.display());

    // An existing CA on its configured address: the same, naming the flag to change.
    let ca = TestCa::init(&["--listen", &addr]);
    let out = run(onlineca().arg("serve").arg("--config").arg(&ca.config));
    let said = stderr_of(&out);
    assert!(said.contains(&format!("cannot listen on {addr}")), "{said}");
    assert!(said.contains("--listen"), "{said}");
    drop(busy);
}

#[test]
fn io_errors_are_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("x.toml");
    for args in [&["config", "check"][..], &["user", "list"], &["serve"]] {
        let out = run(onlineca().args(args).arg("--config").arg(&missing));
        let said = stderr_of(&out);
        assert!(!out.status.success(), "{args:?}: {said}");
        assert!(
            said.contains(&format!("cannot read {}", missing.display())),
            "{args:?}: {said}"
        );
        assert_eq!(said.matches("os error 2").count(), 1, "{args:?}: {said}");
    }
}

#[test]
fn user_add_without_a_terminal_says_to_use_password_stdin() {
    if !have("setsid") {
        onlineca_testkit::skip("setsid", "not on PATH", "apt-get install util-linux");
        return;
    }
    let ca = TestCa::init(&[]);
    ca.add_user("alice");
    // A new session has no controlling terminal, as under cron or CI; run from a
    // terminal, the prompt would otherwise wait for someone to type.
    for (sub, name) in [("add", "bob"), ("passwd", "alice")] {
        let out = run(Command::new("setsid")
            .arg("-w")
            .arg(env!("CARGO_BIN_EXE_onlineca"))
            .args(["user", sub, name, "--config"])
            .arg(&ca.config)
            .stdin(Stdio::null()));
        let said = stderr_of(&out);
        assert!(!out.status.success(), "{sub}: {said}");
        assert!(
            said.contains("no terminal to ask for the password: use --password-stdin"),
            "{sub}: {said}"
        );
    }
}

#[test]
fn serve_without_arguments_names_both_ways() {
    let out = run(onlineca().arg("serve"));
    let said = stderr_of(&out);
    assert!(!out.status.success(), "{said}");
    for way in ["--dir", "--config", "ONLINECA_CONFIG"] {
        assert!(said.contains(way), "{way}: {said}");
    }
}
