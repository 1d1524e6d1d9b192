//! The seed API end to end: the real server on 127.0.0.1 with real TLS, driven by the
//! `openssl` CLI and `curl`, and the issued certificates checked by `openssl verify`.

mod common;

use common::*;

fn x509_file(ca: &TestCa, name: &str, body: &[u8]) -> std::path::PathBuf {
    let p = ca.path(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// Fetches the trust roots in `format` into a directory and returns it.
fn trustroots_dir(ca: &TestCa, format: &str) -> std::path::PathBuf {
    let r = ca.curl(&[&ca.url(&format!("trustroots/?format={format}"))]);
    assert_eq!(r.status, 200, "{r:?}");
    let dir = ca.path(&format!("trust-{format}"));
    let names = write_trustroots(&r.text(), &dir);
    assert!(names.iter().any(|n| n.ends_with(".0")), "{names:?}");
    assert!(
        names.iter().any(|n| n.ends_with(".signing_policy")),
        "{names:?}"
    );
    dir
}

#[test]
fn every_key_type_and_hostile_csr_gets_a_client_certificate() {
    if !have("openssl") || !have("curl") {
        panic!("openssl and curl are required for the end-to-end tests");
    }
    let ca = TestCa::start_default();
    let pw = ca.add_user("alice");
    let trust = trustroots_dir(&ca, "fields");
    let dir = ca.dir.path();

    // (name, -newkey, curve, -subj, extra req arguments, RSA key)
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        &'a str,
        Vec<&'a str>,
        bool,
    );
    let cases: Vec<Case> = vec![
        ("rsa", "rsa:2048", None, "/", vec![], true),
        ("p256", "ec", Some("P-256"), "/CN=dummy", vec![], false),
        ("p384", "ec", Some("P-384"), "/CN=dummy", vec![], false),
        ("ed25519", "ed25519", None, "/CN=dummy", vec![], false),
        (
            "greedy",
            "rsa:2048",
            None,
            "/CN=dummy/O=Evil Corp",
            vec![
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "subjectAltName=DNS:evil.example,email:root@evil.example",
                "-addext",
                "extendedKeyUsage=serverAuth,codeSigning",
            ],
            true,
        ),
    ];
    for (name, newkey, curve, subj, extra, rsa) in cases {
        let (_key, csr) = make_csr(dir, name, newkey, curve, subj, &extra);
        let r = ca.post_csr("alice", &pw, &csr);
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert!(r.header("content-type").unwrap().starts_with("text/plain"));
        let body = r.text();
        // The certificate, then the issuing CA, and nothing else.
        assert_eq!(
            body.matches("-----BEGIN CERTIFICATE-----").count(),
            2,
            "{body}"
        );
        assert!(body.ends_with("-----END CERTIFICATE-----\n"));
        let cert = x509_file(&ca, &format!("{name}.pem"), &r.body);
        let text = x509_text(&cert);
        assert!(
            text.contains("Subject: O = onlineca, OU = Users, CN = alice"),
            "{name}: {text}"
        );
        assert!(text.contains("CA:FALSE"), "{text}");
        assert!(!text.contains("CA:TRUE"), "{text}");
        assert!(text.contains("TLS Web Client Authentication"), "{text}");
        assert!(
            !text.contains("Server Authentication") && !text.contains("Code Signing"),
            "{text}"
        );
        assert!(!text.contains("evil"), "{text}");
        assert!(!text.contains("dummy"), "{text}");
        assert!(text.contains("Digital Signature"), "{text}");
        assert_eq!(text.contains("Key Encipherment"), rsa, "{text}");
        assert!(text.contains("X509v3 Subject Key Identifier"));
        assert!(text.contains("X509v3 Authority Key Identifier"));
        let out = ok(&mut openssl(&[
            "verify",
            "-CApath",
            trust.to_str().unwrap(),
            "-purpose",
            "sslclient",
            cert.to_str().unwrap(),
        ]));
        assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
    }
}

#[test]
fn every_body_form_is_accepted() {
    let ca = TestCa::start_default();
    let pw = ca.add_user("bob");
    let auth = format!("bob:{pw}");
    let dir = ca.dir.path();
    let (_k, csr) = make_csr(dir, "b", "ec", Some("P-256"), "/CN=dummy", &[]);
    let der = ca.path("b.der");
    ok(&mut openssl(&[
        "req",
        "-in",
        csr.to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        der.to_str().unwrap(),
    ]));
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&der).unwrap())
    };
    let csr_s = csr.to_str().unwrap().to_string();
    let der_s = der.to_str().unwrap().to_string();
    let forms: Vec<(&str, Vec<String>)> = vec![
        (
            "form PEM",
            vec![
                "--data-urlencode".into(),
                format!("certificate_request@{csr_s}"),
            ],
        ),
        (
            "form base64 DER",
            vec![
                "--data-urlencode".into(),
                format!("certificate_request={b64}"),
            ],
        ),
        (
            "multipart",
            vec!["-F".into(), format!("certificate_request=@{csr_s}")],
        ),
        (
            "raw PEM",
            vec![
                "-H".into(),
                "Content-Type: application/x-pem-file".into(),
                "--data-binary".into(),
                format!("@{csr_s}"),
            ],
        ),
        (
            "text/plain PEM",
            vec![
                "-H".into(),
                "Content-Type: text/plain".into(),
                "--data-binary".into(),
                format!("@{csr_s}"),
            ],
        ),
        (
            "pkcs10 DER",
            vec![
                "-H".into(),
                "Content-Type: application/pkcs10".into(),
                "--data-binary".into(),
                format!("@{der_s}"),
            ],
        ),
    ];
    for (what, args) in forms {
        for path in ["certificate/", "certificate"] {
            let mut all: Vec<&str> = vec!["-u", &auth];
            all.extend(args.iter().map(String::as_str));
            let url = ca.url(path);
            all.push(&url);
            let r = ca.curl(&all);
            assert_eq!(r.status, 200, "{what} to {path}: {}", r.text());
            assert!(
                r.text().starts_with("-----BEGIN CERTIFICATE-----"),
                "{what}"
            );
        }
    }
    // HTTP/2 as well as HTTP/1.1.
    let field = format!("certificate_request@{csr_s}");
    let r = ca.curl(&[
        "--http2",
        "-u",
        &auth,
        "--data-urlencode",
        &field,
        &ca.url("certificate/"),
    ]);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = ca.curl(&[
        "--http1.1",
        "-u",
        &auth,
        "--data-urlencode",
        &field,
        &ca.url("certificate/"),
    ]);
    assert_eq!(r.status, 200, "{}", r.text());
    // TLS 1.2 as well as 1.3.
    for tls in [
        ["--tlsv1.2", "--tls-max", "1.2"],
        ["--tlsv1.3", "--tls-max", "1.3"],
    ] {
        let mut args: Vec<&str> = tls.to_vec();
        let url = ca.url("certificate/");
        args.extend(["-u", &auth, "--data-urlencode", &field, &url]);
        let r = ca.curl(&args);
        assert_eq!(r.status, 200, "{tls:?}: {}", r.text());
    }
}

#[test]
fn trust_roots_in_both_encodings_verify_server_and_certificates() {
    let ca = TestCa::start_default();
    let pw = ca.add_user("carol");
    let (_k, csr) = make_csr(ca.dir.path(), "c", "ec", Some("P-256"), "/CN=dummy", &[]);
    let r = ca.post_csr("carol", &pw, &csr);
    assert_eq!(r.status, 200);
    let cert = x509_file(&ca, "c.pem", &r.body);

    // The seed's encoding: TRUSTED_CERTS first, then FILEDATA_ lines.
    let fields = ca.curl(&[&ca.url("trustroots/")]);
    assert_eq!(fields.status, 200);
    let text = fields.text();
    assert!(text.starts_with("TRUSTED_CERTS="), "{text}");
    assert!(
        text.lines().skip(1).all(|l| l.starts_with("FILEDATA_")),
        "{text}"
    );
    assert!(text.ends_with('\n') && !text.contains("\n\n"));
    // The deployed clients' encoding: name=data only.
    let files = ca.curl(&[&ca.url("trustroots?format=files")]);
    assert_eq!(files.status, 200);
    assert!(!files.text().contains("TRUSTED_CERTS") && !files.text().contains("FILEDATA_"));
    assert!(!text.contains("PRIVATE KEY") && !files.text().contains("UFJJVkFURSBLRVk"));

    for format in ["fields", "files"] {
        let dir = trustroots_dir(&ca, format);
        // The directory is a CApath as written: no rehash step.
        ok(&mut openssl(&[
            "verify",
            "-CApath",
            dir.to_str().unwrap(),
            "-purpose",
            "sslclient",
            cert.to_str().unwrap(),
        ]));
        // And it verifies the server itself.
        let out = ok(std::process::Command::new("curl")
            .args(["-s", "-S", "--capath", dir.to_str().unwrap()])
            .arg(ca.url("trustroots/")));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("TRUSTED_CERTS="));
        // The hash names are OpenSSL's.
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            if name.ends_with(".0") {
                let out = ok(&mut openssl(&[
                    "x509",
                    "-noout",
                    "-subject_hash",
                    "-in",
                    p.to_str().unwrap(),
                ]));
                assert_eq!(
                    format!("{}.0", String::from_utf8_lossy(&out.stdout).trim()),
                    name
                );
            }
            if name.ends_with(".signing_policy") {
                let policy = std::fs::read_to_string(&p).unwrap();
                assert!(policy.contains("access_id_CA"), "{policy}");
                assert!(policy.contains("pos_rights"), "{policy}");
                assert!(policy.contains("cond_subjects"), "{policy}");
            }
        }
    }
    // The issuing CA's policy names the users' namespace.
    let dir = ca.path("trust-files");
    let all: String = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect();
    assert!(all.contains("/O=onlineca/OU=Users/*"), "{all}");

    let bad = ca.curl(&[&ca.url("trustroots/?format=xml")]);
    assert_eq!(bad.status, 405, "{}", bad.text());
}

#[test]
fn refusals_carry_the_documented_status_and_a_precise_message() {
    let mut ca = TestCa::init(&[]);
    ca.start();
    let pw = ca.add_user("dave");
    let auth = format!("dave:{pw}");
    let dir = ca.dir.path().to_path_buf();
    let (_k, csr) = make_csr(&dir, "d", "ec", Some("P-256"), "/CN=dummy", &[]);
    let csr_s = csr.to_str().unwrap().to_string();
    let field = format!("certificate_request@{csr_s}");
    let url = ca.url("certificate/");

    // No credentials.
    let r = ca.curl(&["--data-urlencode", &field, &url]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"onlineca\", charset=\"UTF-8\"")
    );
    assert!(r.text().contains("authentication required"), "{}", r.text());
    // Wrong password and unknown user: same status, same message.
    let wrong = ca.curl(&[
        "-u",
        "dave:not-the-password",
        "--data-urlencode",
        &field,
        &url,
    ]);
    let unknown = ca.curl(&[
        "-u",
        "nobody:not-the-password",
        "--data-urlencode",
        &field,
        &url,
    ]);
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.text(), "invalid username or password\n");
    assert_eq!(wrong.text(), unknown.text());
    // GET on the certificate path.
    let r = ca.curl(&["-u", &auth, &url]);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert!(r.text().contains("method GET not allowed"), "{}", r.text());
    // POST on trust roots.
    let r = ca.curl(&["-X", "POST", &ca.url("trustroots/")]);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    // Missing field.
    let r = ca.curl(&["-u", &auth, "--data-urlencode", "something_else=1", &url]);
    assert_eq!(r.status, 405);
    assert_eq!(r.text(), "missing form field 'certificate_request'\n");
    // Garbage.
    let r = ca.curl(&[
        "-u",
        &auth,
        "--data-urlencode",
        "certificate_request=hello world!",
        &url,
    ]);
    assert_eq!(r.status, 405);
    assert!(r.text().contains("neither PEM nor base64"), "{}", r.text());
    let r = ca.curl(&[
        "-u",
        &auth,
        "-H",
        "Content-Type: application/pkcs10",
        "--data-binary",
        "0garbage",
        &url,
    ]);
    assert_eq!(r.status, 405);
    assert!(r.text().contains("could not be parsed"), "{}", r.text());
    // A broken signature: flip a byte inside the signature of a DER CSR.
    let der = ca.path("d.der");
    ok(&mut openssl(&[
        "req",
        "-in",
        &csr_s,
        "-outform",
        "DER",
        "-out",
        der.to_str().unwrap(),
    ]));
    let mut bytes = std::fs::read(&der).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0x40;
    std::fs::write(&der, &bytes).unwrap();
    let r = ca.curl(&[
        "-u",
        &auth,
        "-H",
        "Content-Type: application/pkcs10",
        "--data-binary",
        &format!("@{}", der.display()),
        &url,
    ]);
    assert_eq!(r.status, 405);
    assert!(
        r.text().contains("signature does not verify"),
        "{}",
        r.text()
    );
    // RSA-1024.
    let (_k, small) = make_csr(&dir, "small", "rsa:1024", None, "/CN=dummy", &[]);
    let r = ca.post_csr("dave", &pw, &small);
    assert_eq!(r.status, 405);
    assert!(
        r.text().contains("RSA key of 1024 bits not allowed"),
        "{}",
        r.text()
    );
    // P-521.
    let (_k, p521) = make_csr(&dir, "p521", "ec", Some("P-521"), "/CN=dummy", &[]);
    let r = ca.post_csr("dave", &pw, &p521);
    assert_eq!(r.status, 405);
    assert!(r.text().contains("P-521 not allowed"), "{}", r.text());
    // A body over the limit (64 KiB by default).
    let big = ca.path("big");
    std::fs::write(&big, format!("certificate_request={}", "A".repeat(100_000))).unwrap();
    let r = ca.curl(&[
        "-u",
        &auth,
        "--data-binary",
        &format!("@{}", big.display()),
        &url,
    ]);
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(r.text(), "request body exceeds the limit of 65536 bytes\n");
    // Unsupported content type.
    let r = ca.curl(&[
        "-u",
        &auth,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        "{}",
        &url,
    ]);
    assert_eq!(r.status, 405);
    assert!(
        r.text().contains("unsupported Content-Type"),
        "{}",
        r.text()
    );
    // Unknown paths under the prefix and elsewhere.
    assert_eq!(ca.curl(&[&ca.url("certificates/")]).status, 404);
    assert_eq!(
        ca.curl(&[&format!("https://127.0.0.1:{}/", ca.port)])
            .status,
        404
    );

    // Still serving.
    let r = ca.post_csr("dave", &pw, &csr);
    assert_eq!(r.status, 200, "{}", r.text());

    // The log has a line per request with a request id, and never the password.
    let log = ca.log_text();
    assert!(!log.contains(&pw), "password in the log");
    assert!(log.contains("request_id"), "{log}");
    assert!(
        log.contains("status=401") && log.contains("status=405") && log.contains("status=200"),
        "{log}"
    );
    assert_eq!(
        ca.stop(std::time::Duration::from_secs(20))
            .map(|s| s.success()),
        Some(true)
    );
}

#[test]
fn repeated_failures_lock_a_username_out() {
    let mut ca = TestCa::init(&[]);
    ca.edit_config("max_failures = 5", "max_failures = 3");
    ca.start();
    let pw = ca.add_user("erin");
    let (_k, csr) = make_csr(ca.dir.path(), "e", "ec", Some("P-256"), "/CN=dummy", &[]);
    for _ in 0..3 {
        assert_eq!(ca.post_csr("erin", "wrong-password", &csr).status, 401);
    }
    // Now even the right password waits.
    let r = ca.post_csr("erin", &pw, &csr);
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() > 0);
    assert!(r.text().contains("too many failed login attempts"));
    // Unknown names lock out the same way: nothing tells them apart.
    for _ in 0..3 {
        assert_eq!(ca.post_csr("ghost", "wrong-password", &csr).status, 401);
    }
    assert_eq!(ca.post_csr("ghost", "wrong-password", &csr).status, 429);
    // Guesses sent all at once are counted before their verdicts: only three get
    // as far as a password check.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let (ca, csr) = (&ca, &csr);
                s.spawn(move || ca.post_csr("zed", &format!("guess-{i}"), csr).status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&s| s == 401).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 429).count(),
        7,
        "{statuses:?}"
    );
}

#[test]
fn one_address_sending_too_many_requests_gets_429() {
    let mut ca = TestCa::init(&[]);
    ca.edit_config("rate_limit = 120", "rate_limit = 1");
    ca.edit_config("rate_burst = 30", "rate_burst = 3");
    ca.start();
    let pw = ca.add_user("mona");
    let (_k, csr) = make_csr(ca.dir.path(), "m", "ec", Some("P-256"), "/CN=dummy", &[]);
    for i in 0..3 {
        assert_eq!(ca.post_csr("mona", &pw, &csr).status, 200, "request {i}");
    }
    // The burst is spent and one request a minute trickles back.
    let r = ca.post_csr("mona", &pw, &csr);
    assert_eq!(r.status, 429, "{}", r.text());
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(
        r.text().starts_with("too many requests from this address"),
        "{}",
        r.text()
    );
    // Wrong passwords count too (spraying usernames from one address).
    assert_eq!(ca.post_csr("nobody", "guess-guess", &csr).status, 429);
    // Trust roots are not limited.
    assert_eq!(ca.curl(&[&ca.url("trustroots/")]).status, 200);
}

#[test]
fn a_repeated_field_is_refused_in_every_body_form() {
    let ca = TestCa::start_default();
    let pw = ca.add_user("fay");
    let auth = format!("fay:{pw}");
    let (_k, csr) = make_csr(ca.dir.path(), "f", "ec", Some("P-256"), "/CN=dummy", &[]);
    let csr_s = csr.to_str().unwrap().to_string();
    let field = format!("certificate_request@{csr_s}");
    let url = ca.url("certificate/");
    // Which of two usernames was meant is a guess: refused, as a second CSR is.
    let form = |extra: &[&str]| {
        let mut args = vec!["-u", &auth, "--data-urlencode", &field];
        for e in extra {
            args.extend(["--data-urlencode", e]);
        }
        args.push(&url);
        ca.curl(&args)
    };
    let r = form(&["username=fay", "username=ann"]);
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.text(), "form field 'username' given more than once\n");
    let r = form(&["extra=1", "extra=2"]);
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.text(), "form field 'extra' given more than once\n");
    let part = format!("certificate_request=@{csr_s}");
    let r = ca.curl(&[
        "-u",
        &auth,
        "-F",
        &part,
        "-F",
        "username=fay",
        "-F",
        "username=ann",
        &url,
    ]);
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.text(), "multipart part 'username' given more than once\n");
    // One of each is still fine.
    assert_eq!(form(&["username=fay", "extra=1"]).status, 200);
}

#[test]
fn an_overlong_username_is_refused_before_anything_keys_on_it() {
    let ca = TestCa::start_default();
    let (_k, csr) = make_csr(ca.dir.path(), "g", "ec", Some("P-256"), "/CN=dummy", &[]);
    let field = format!("certificate_request@{}", csr.display());
    // 40,000 characters: a name no certificate could carry.
    let long = "q".repeat(40_000);
    let r = ca.post_csr(&long, "guess", &csr);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        r.text(),
        "malformed HTTP Basic credentials: the username is longer than 64 characters\n"
    );
    // As a form field (a retriever's way) without a certificate: refused, unnamed.
    let named = format!("username={long}");
    let r = ca.curl(&[
        "--data-urlencode",
        &field,
        "--data-urlencode",
        &named,
        &ca.url("certificate/"),
    ]);
    assert_eq!(r.status, 401, "{}", r.text());
    // Neither the refusal nor the access log keeps the name.
    assert!(
        !ca.log_text().contains(&long[..100]),
        "the name reached the log"
    );
}

#[test]
fn one_address_cannot_take_every_connection_slot() {
    let mut ca = TestCa::init(&[]);
    ca.edit_config("max_connections = 1024", "max_connections = 6");
    ca.edit_config(
        "max_connections_per_address = 64",
        "max_connections_per_address = 3",
    );
    ca.start();
    // Six idle plain-TCP connections from 127.0.0.1, saying nothing: as many as there
    // are slots. Past its three, the server closes them at once.
    let idle: Vec<std::net::TcpStream> = (0..6)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", ca.port)).unwrap())
        .collect();
    let mut closed = 0;
    for s in &idle {
        use std::io::Read;
        s.set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .unwrap();
        let mut b = [0u8; 1];
        if matches!((&*s).read(&mut b), Ok(0)) {
            closed += 1;
        }
    }
    assert_eq!(closed, 3, "connections past the per-address cap are closed");
    // Another client still gets served, well before the idle ones time out.
    let r = ca.curl(&[
        "--interface",
        "127.0.0.2",
        "--max-time",
        "5",
        &ca.url("trustroots/"),
    ]);
    assert_eq!(r.status, 200, "{r:?}");
    drop(idle);
}
