//! The user's commands through the real binary against a real CA:
//! `onlineca trustroots` (pinned, bootstrap, refresh) and `onlineca getcert`
//! (outputs, modes, key types, cron renewal, errors a person can act on).

mod common;
mod userkit;

use std::os::unix::fs::PermissionsExt;

use common::{TestCa, ok, onlineca, openssl, run, run_with_stdin};
use userkit::{fingerprint, getcert, text, trustroots};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The files in `dir`, but for the record of what `onlineca trustroots` wrote
/// (temporary files left behind would show).
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != onlineca_client::trustdir::MANIFEST)
        .collect();
    v.sort();
    v
}

#[test]
fn trustroots_pinned_by_the_root_fingerprint_writes_a_capath() {
    let ca = TestCa::start_default();
    let dir = ca.path("tr");
    let fp = fingerprint(&ca.root_pem());
    // Colons optional, case-insensitive, as people paste it.
    let pasted = fp.replace(':', "").to_lowercase();
    let out = trustroots(&ca, &dir, &["--fingerprint", &pasted]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("pinned CA found"), "{said}");
    // Two CA certificates, their signing policies, and the issuing CA's CRL.
    assert!(said.contains("5 added"), "{said}");
    let files = listing(&dir);
    assert_eq!(files.len(), 5, "{files:?}");
    assert_eq!(files.iter().filter(|f| f.ends_with(".0")).count(), 2);
    assert_eq!(files.iter().filter(|f| f.ends_with(".r0")).count(), 1);
    assert_eq!(
        files
            .iter()
            .filter(|f| f.ends_with(".signing_policy"))
            .count(),
        2
    );
    // It works as an OpenSSL CApath for the CA's own TLS certificate.
    ok(openssl(&["verify", "-CApath"])
        .arg(&dir)
        .arg(ca.home.join("tls/server.pem")));
}

#[test]
fn trustroots_with_a_wrong_pin_writes_nothing_and_shows_what_was_found() {
    let ca = TestCa::start_default();
    let dir = ca.path("tr");
    let wrong = "AB".repeat(32);
    let out = trustroots(&ca, &dir, &["--fingerprint", &wrong]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("nothing was written"), "{said}");
    assert!(said.contains(&fingerprint(&ca.root_pem())), "{said}");
    assert!(!dir.exists());

    // The issuing CA is in the bundle, but the server's TLS certificate does not
    // chain to it: pinning it must not be enough.
    let issuing = fingerprint(&ca.home.join("ca/issuing.pem"));
    let out = trustroots(&ca, &dir, &["--fingerprint", &issuing]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("does not verify against the pinned CA"),
        "{said}"
    );
    assert!(!dir.exists());

    let out = trustroots(&ca, &dir, &["--fingerprint", "not-a-fingerprint"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("64 hex digits"), "{}", text(&out));
}

#[test]
fn trustroots_bootstrap_warns_and_prints_the_fingerprints() {
    let ca = TestCa::start_default();
    let dir = ca.path("tr");
    let out = trustroots(&ca, &dir, &["--bootstrap"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("WARNING"),
        "{}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&fingerprint(&ca.root_pem())), "{stdout}");
    assert!(
        stdout.contains(&fingerprint(&ca.home.join("ca/issuing.pem"))),
        "{stdout}"
    );
}

#[test]
fn trustroots_refresh_checks_the_existing_dir_and_touches_nothing_else() {
    let ca = TestCa::start_default();
    let dir = ca.path("tr");
    let out = trustroots(&ca, &dir, &["--fingerprint", &fingerprint(&ca.root_pem())]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(dir.join("mine.pem.txt"), "not ours").unwrap();
    let policy = listing(&dir)
        .into_iter()
        .find(|f| f.ends_with(".signing_policy"))
        .unwrap();
    std::fs::write(dir.join(&policy), "stale").unwrap();

    let out = trustroots(&ca, &dir, &[]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("changed {}", dir.join(&policy).display())),
        "{said}"
    );
    assert!(said.contains("0 added, 1 changed, 4 unchanged"), "{said}");
    assert_eq!(
        std::fs::read_to_string(dir.join("mine.pem.txt")).unwrap(),
        "not ours"
    );
    assert_ne!(std::fs::read_to_string(dir.join(&policy)).unwrap(), "stale");
    assert_eq!(listing(&dir).len(), 6, "no temporary files left");

    // A refresh against a directory trusting another CA: refused, with the
    // fingerprint of the certificate the server presented.
    let other = TestCa::init(&[]);
    let other_dir = other.path("tr");
    std::fs::create_dir_all(&other_dir).unwrap();
    std::fs::copy(other.root_pem(), other_dir.join("root.pem")).unwrap();
    let out = trustroots(&ca, &other_dir, &[]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("not trusted"), "{said}");
    assert!(
        said.contains(&fingerprint(&ca.home.join("tls/server.pem"))),
        "{said}"
    );
    assert_eq!(listing(&other_dir), vec!["root.pem"]);

    // No directory yet and no trust decision: say what to do.
    let out = trustroots(&ca, &ca.path("none"), &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--fingerprint"), "{}", text(&out));
}

/// A CA the server stops publishing (an extra one the operator removes, as after a
/// rotation): the next refresh removes its files, and nothing of the user's.
#[test]
fn trustroots_refresh_removes_what_the_server_no_longer_publishes() {
    let mut ca = TestCa::init(&[]);
    let extra = ca.path("retired-ca.pem");
    ok(openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/O=Example/CN=Retired CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-keyout",
    ])
    .arg(ca.path("retired-ca.key"))
    .arg("-out")
    .arg(&extra));
    ca.edit_config("extra = []", &format!("extra = [\"{}\"]", extra.display()));
    ca.start();
    let dir = ca.path("tr");
    let out = trustroots(&ca, &dir, &["--fingerprint", &fingerprint(&ca.root_pem())]);
    assert!(out.status.success(), "{}", text(&out));
    let before = listing(&dir);
    assert_eq!(
        before.len(),
        7,
        "three CAs, their policies, the CRL: {before:?}"
    );
    assert!(dir.join(onlineca_client::trustdir::MANIFEST).is_file());
    ok(openssl(&["verify", "-no-CAfile", "-no-CAstore", "-CApath"])
        .arg(&dir)
        .arg(&extra));
    // The user's own files: one plain, one named as a CApath entry would be.
    std::fs::write(dir.join("mine.pem.txt"), "not ours").unwrap();
    std::fs::copy(ca.path("retired-ca.pem"), dir.join("0badcafe.0")).unwrap();

    // The operator drops the extra CA and restarts the server.
    ca.stop(std::time::Duration::from_secs(30));
    ca.edit_config(&format!("extra = [\"{}\"]", extra.display()), "extra = []");
    ca.start();
    let out = trustroots(&ca, &dir, &[]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    // (The CRL is re-signed on restart, so it may count as changed.)
    assert!(
        said.contains("0 added, ") && said.contains(" unchanged, 2 removed"),
        "{said}"
    );
    let after = listing(&dir);
    let gone: Vec<&String> = before.iter().filter(|f| !after.contains(f)).collect();
    assert_eq!(gone.len(), 2, "{before:?} -> {after:?}");
    for f in &gone {
        assert!(
            said.contains(&format!(
                "removed {} (no longer published)",
                dir.join(f).display()
            )),
            "{said}"
        );
    }
    // What is gone is the retired CA (certificate and policy); the user's files stay.
    assert!(gone.iter().any(|f| f.ends_with(".0")));
    assert!(gone.iter().any(|f| f.ends_with(".signing_policy")));
    assert_eq!(
        std::fs::read_to_string(dir.join("mine.pem.txt")).unwrap(),
        "not ours"
    );
    assert!(dir.join("0badcafe.0").is_file());
    // The directory still verifies the server, and no longer the retired CA (the
    // user's copy is not under its hash name, so OpenSSL does not look at it).
    ok(openssl(&["verify", "-CApath"])
        .arg(&dir)
        .arg(ca.home.join("tls/server.pem")));
    let out = run(openssl(&["verify", "-no-CAfile", "-no-CAstore", "-CApath"])
        .arg(&dir)
        .arg(&extra));
    assert!(!out.status.success(), "the retired CA is still trusted");
}

#[test]
fn trustroots_reads_the_deployed_files_encoding_too() {
    let mut ca = TestCa::init(&[]);
    ca.edit_config("format = \"fields\"", "format = \"files\"");
    ca.start();
    let dir = ca.path("tr");
    let out = trustroots(&ca, &dir, &["--fingerprint", &fingerprint(&ca.root_pem())]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(listing(&dir).len(), 5, "certificates, policies and the CRL");
}

/// A CA with alice and pinned trust roots; returns (ca, password, trust dir).
fn ca_with_alice() -> (TestCa, String, std::path::PathBuf) {
    let ca = TestCa::start_default();
    let pw = ca.add_user("alice");
    let dir = ca.path("tr");
    let out = trustroots(&ca, &dir, &["--fingerprint", &fingerprint(&ca.root_pem())]);
    assert!(out.status.success(), "{}", text(&out));
    (ca, pw, dir)
}

fn pubkey_of_cert(cert: &std::path::Path) -> Vec<u8> {
    ok(&mut openssl(&[
        "x509",
        "-noout",
        "-pubkey",
        "-in",
        cert.to_str().unwrap(),
    ]))
    .stdout
}

fn pubkey_of_key(key: &std::path::Path) -> Vec<u8> {
    ok(&mut openssl(&[
        "pkey",
        "-pubout",
        "-in",
        key.to_str().unwrap(),
    ]))
    .stdout
}

#[test]
fn getcert_writes_key_files_0600_for_every_key_type() {
    let (ca, pw, tr) = ca_with_alice();
    for kt in ["p256", "p384", "ed25519", "rsa2048"] {
        let (cert, key, bundle) = (
            ca.path(&format!("{kt}.pem")),
            ca.path(&format!("{kt}.key")),
            ca.path(&format!("{kt}-bundle.pem")),
        );
        let out = getcert(
            &ca,
            &tr,
            "alice",
            &pw,
            &[
                "--key-type",
                kt,
                "--cert",
                cert.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
                "--bundle",
                bundle.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{kt}: {}", text(&out));
        assert_eq!(mode(&key), 0o600, "{kt}");
        assert_eq!(mode(&bundle), 0o600, "{kt}");
        assert_eq!(pubkey_of_cert(&cert), pubkey_of_key(&key), "{kt}");
        // The bundle is certificate(s) then key, and openssl verifies the chain.
        let b = std::fs::read_to_string(&bundle).unwrap();
        assert!(b.starts_with("-----BEGIN CERTIFICATE-----"), "{kt}");
        assert_eq!(b.matches("BEGIN CERTIFICATE").count(), 2, "{kt}");
        assert!(b.trim_end().ends_with("-----END PRIVATE KEY-----"), "{kt}");
        ok(openssl(&["verify", "-purpose", "sslclient", "-CApath"])
            .arg(&tr)
            .arg(&cert));
        assert!(common::x509_text(&cert).contains("CN = alice"), "{kt}");
    }
}

#[test]
fn getcert_renew_within_is_quiet_until_renewal_is_due() {
    let (ca, pw, tr) = ca_with_alice();
    let (cert, key) = (ca.path("a.pem"), ca.path("a.key"));
    let args = |within: &'static str| {
        vec![
            "--cert".to_string(),
            cert.display().to_string(),
            "--key".to_string(),
            key.display().to_string(),
            "--renew-within".to_string(),
            within.to_string(),
        ]
    };
    let a = args("1h");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = getcert(&ca, &tr, "alice", &pw, &a);
    assert!(out.status.success(), "{}", text(&out));
    let first = std::fs::read(&cert).unwrap();

    // Valid for ~12 h: nothing to do within 1 h.
    let out = getcert(&ca, &tr, "alice", &pw, &a);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
    assert_eq!(std::fs::read(&cert).unwrap(), first);

    // Within 1 day: renewal is due.
    let b = args("1day");
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    let out = getcert(&ca, &tr, "alice", &pw, &b);
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(std::fs::read(&cert).unwrap(), first);
    assert_eq!(pubkey_of_cert(&cert), pubkey_of_key(&key));
}

#[test]
fn getcert_errors_say_what_to_do() {
    let (mut ca, pw, tr) = ca_with_alice();
    let bundle = ca.path("b.pem");
    let b = bundle.to_str().unwrap();

    // 401, and nothing written.
    let out = getcert(&ca, &tr, "alice", "wrong-password", &["--bundle", b]);
    let said = text(&out);
    assert!(!out.status.success());
    assert!(said.contains("401"), "{said}");
    assert!(!bundle.exists());

    // A certificate without its key.
    let out = getcert(&ca, &tr, "alice", &pw, &["--cert", b]);
    assert!(text(&out).contains("--key"), "{}", text(&out));

    // Trust roots missing.
    let out = getcert(&ca, &ca.path("nowhere"), "alice", &pw, &["--bundle", b]);
    assert!(text(&out).contains("onlineca trustroots"), "{}", text(&out));

    // ONLINECA_URL and ONLINECA_USER stand in for the flags.
    let out = run_with_stdin(
        onlineca()
            .args(["getcert", "--password-stdin", "--bundle", b, "--trustroots"])
            .arg(&tr)
            .env("ONLINECA_URL", &ca.base)
            .env("ONLINECA_USER", "alice"),
        format!("{pw}\n").as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(common::x509_text(&bundle).contains("CN = alice"));

    // Repeated failures: 429 with the wait.
    let mut last = String::new();
    for _ in 0..8 {
        let out = getcert(&ca, &tr, "alice", "wrong-password", &["--bundle", b]);
        last = text(&out);
        if last.contains("429") {
            break;
        }
    }
    assert!(last.contains("429"), "{last}");
    // The wait, said once (the server's line has it; the client adds nothing).
    let wait = last
        .split("retry after ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or_else(|| panic!("no wait in {last}"));
    assert_eq!(
        last.matches(&format!("{wait} seconds")).count(),
        1,
        "{last}"
    );

    // 405 with the server's message: a body over the server's limit.
    let (bob, pw_bob) = ("bob", ca.add_user("bob"));
    ca.stop(std::time::Duration::from_secs(30));
    ca.edit_config("max_body = 65536", "max_body = 1024");
    ca.start();
    let out = getcert(
        &ca,
        &tr,
        bob,
        &pw_bob,
        &["--key-type", "rsa4096", "--bundle", b],
    );
    let said = text(&out);
    assert!(said.contains("405"), "{said}");
    assert!(said.contains("limit of 1024 bytes"), "{said}");

    // Unreachable.
    let port = userkit::free_port();
    let out = run_with_stdin(
        onlineca()
            .args([
                "getcert",
                "--password-stdin",
                "--user",
                "alice",
                "--bundle",
                b,
            ])
            .args(["--url", &format!("https://127.0.0.1:{port}/onlineca")])
            .arg("--trustroots")
            .arg(&tr),
        format!("{pw}\n").as_bytes(),
    );
    assert!(
        text(&out).contains("cannot reach 127.0.0.1"),
        "{}",
        text(&out)
    );
}

#[test]
fn getcert_gives_up_on_a_silent_server() {
    let (ca, pw, tr) = ca_with_alice();
    // Accepts TCP connections (the kernel does) but never says anything.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let out = run_with_stdin(
        onlineca()
            .args([
                "getcert",
                "--password-stdin",
                "--user",
                "alice",
                "--timeout",
                "1s",
            ])
            .args(["--url", &format!("https://127.0.0.1:{port}/onlineca")])
            .arg("--bundle")
            .arg(ca.path("b.pem"))
            .arg("--trustroots")
            .arg(&tr),
        format!("{pw}\n").as_bytes(),
    );
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(&format!("no answer from 127.0.0.1:{port}")),
        "{said}"
    );
    drop(silent);
}

fn subject_of(cert: &std::path::Path) -> String {
    let out = ok(&mut openssl(&[
        "x509",
        "-noout",
        "-subject",
        "-in",
        cert.to_str().unwrap(),
    ]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `getcert --renew` against the real CA: no password, the current certificate as
/// TLS client certificate; the key kept, or rotated with `--rotate-key`.
#[test]
fn getcert_renew_over_mutual_tls_keeps_or_rotates_the_key() {
    let (ca, pw, tr) = ca_with_alice();
    let (cert, key) = (ca.path("r.pem"), ca.path("r.key"));
    let files = [
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    let out = getcert(&ca, &tr, "alice", &pw, &files);
    assert!(out.status.success(), "{}", text(&out));
    let (serial0, key0, subject0) = (
        common::cert_serial(&cert),
        std::fs::read(&key).unwrap(),
        subject_of(&cert),
    );

    let renew = |extra: &[&str]| {
        common::run(
            onlineca()
                .args(["getcert", "--renew", "--url", &ca.base, "--trustroots"])
                .arg(&tr)
                .args(files)
                .args(extra)
                .stdin(std::process::Stdio::null()),
        )
    };
    // Keep the key: a new serial, the same subject and key.
    let out = renew(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let serial1 = common::cert_serial(&cert);
    assert_ne!(serial1, serial0);
    assert_eq!(subject_of(&cert), subject0);
    assert_eq!(std::fs::read(&key).unwrap(), key0);
    assert_eq!(pubkey_of_cert(&cert), pubkey_of_key(&key));
    // Rotate the key: a new serial and a new key that matches the new certificate.
    let out = renew(&["--rotate-key"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(common::cert_serial(&cert), serial1);
    assert_ne!(std::fs::read(&key).unwrap(), key0);
    assert_eq!(pubkey_of_cert(&cert), pubkey_of_key(&key));
    assert_eq!(mode(&key), 0o600);
    ok(openssl(&["verify", "-purpose", "sslclient", "-CApath"])
        .arg(&tr)
        .arg(&cert));

    // The store records them as renewals, and no password was involved.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let methods: Vec<String> = rt.block_on(async {
        let url = format!("sqlite://{}", ca.home.join("onlineca.db").display());
        let store = onlineca_store::open(&url).await.unwrap();
        let filter = onlineca_store::IssuedFilter {
            username: Some("alice".into()),
            ..Default::default()
        };
        store
            .list_issued(&filter)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.auth_method)
            .collect()
    });
    let mut methods = methods;
    methods.sort();
    assert_eq!(methods, ["password", "renewal", "renewal"]);
    // A removed user cannot renew, and the files stay as they were.
    ok(onlineca()
        .args(["user", "remove", "alice", "--config"])
        .arg(&ca.config));
    let before = (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());
    let out = renew(&["--rotate-key"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("401"), "{}", text(&out));
    assert_eq!(
        (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap()),
        before
    );
}

#[test]
fn getcert_checks_every_output_before_a_certificate_is_issued() {
    let (ca, pw, tr) = ca_with_alice();
    let cert = ca.path("nodir/a.pem");
    let key = ca.path("nodir/a.key");
    let out = getcert(
        &ca,
        &tr,
        "alice",
        &pw,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    let dir = ca.path("nodir");
    assert!(
        said.contains(&format!("the directory {} does not exist", dir.display())),
        "{said}"
    );
    // Nothing was asked for, so nothing was issued and lost.
    let (listed, _) = ca.cli_ok(&["cert", "list", "--all"]);
    assert!(!listed.contains("alice"), "{listed}");
    let log = ca.log_text();
    assert!(
        !log.lines()
            .any(|l| l.contains("/certificate") && l.contains("status=200")),
        "{log}"
    );

    // The same for the other outputs, one bad among good ones.
    let good = ca.path("good.pem");
    let bad_p12 = ca.path("nodir/a.p12");
    let pwfile = ca.path("p12pw");
    std::fs::write(&pwfile, "p12 password\n").unwrap();
    let out = getcert(
        &ca,
        &tr,
        "alice",
        &pw,
        &["--bundle", good.to_str().unwrap(), "--p12"],
    );
    assert!(!out.status.success());
    let out = getcert(
        &ca,
        &tr,
        "alice",
        &pw,
        &[
            "--bundle",
            good.to_str().unwrap(),
            "--p12",
            bad_p12.to_str().unwrap(),
            "--p12-password-file",
            pwfile.to_str().unwrap(),
        ],
    );
    assert!(text(&out).contains("does not exist"), "{}", text(&out));
    assert!(!good.exists());
    let (listed, _) = ca.cli_ok(&["cert", "list", "--all"]);
    assert!(!listed.contains("alice"), "{listed}");
}

#[test]
fn trustroots_and_getcert_default_to_onlineca_in_home() {
    let ca = TestCa::start_default();
    let pw = ca.add_user("alice");
    let home = ca.path("home");
    std::fs::create_dir(&home).unwrap();
    let fp = fingerprint(&ca.root_pem());
    let out = run(onlineca().env("HOME", &home).args([
        "trustroots",
        "--url",
        &ca.base,
        "--fingerprint",
        &fp,
    ]));
    assert!(out.status.success(), "{}", text(&out));
    let trust = home.join(".onlineca/trustroots");
    assert_eq!(listing(&trust).len(), 5);
    assert_eq!(mode(&home.join(".onlineca")), 0o700);

    // `getcert --url U --user alice` is enough.
    let out = run_with_stdin(
        onlineca().env("HOME", &home).args([
            "getcert",
            "--url",
            &ca.base,
            "--user",
            "alice",
            "--password-stdin",
        ]),
        format!("{pw}\n").as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let (cert, key) = (
        home.join(".onlineca/alice.pem"),
        home.join(".onlineca/alice.key"),
    );
    assert!(text(&out).contains(&format!("wrote {}", cert.display())));
    assert!(common::x509_text(&cert).contains("CN = alice"));
    assert_eq!(mode(&key), 0o600);
    assert_eq!(pubkey_of_cert(&cert), pubkey_of_key(&key));

    // A fresh HOME: ~/.onlineca is made private, and the missing trust roots say
    // how to get them.
    let fresh = ca.path("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let out = run_with_stdin(
        onlineca().env("HOME", &fresh).args([
            "getcert",
            "--url",
            &ca.base,
            "--user",
            "alice",
            "--password-stdin",
        ]),
        format!("{pw}\n").as_bytes(),
    );
    assert!(text(&out).contains("onlineca trustroots"), "{}", text(&out));
    assert_eq!(mode(&fresh.join(".onlineca")), 0o700);
}

#[test]
fn a_disabled_user_is_not_told_to_check_the_password() {
    let (ca, pw, tr) = ca_with_alice();
    ca.cli_ok(&["user", "disable", "alice"]);
    let b = ca.path("b.pem");
    let out = getcert(&ca, &tr, "alice", &pw, &["--bundle", b.to_str().unwrap()]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("disabled"), "{said}");
    assert!(!said.contains("check the username"), "{said}");
}
