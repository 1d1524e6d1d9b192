//! The audit log of a real server and the CLI beside it: one JSON line per event
//! with the documented fields, the CLI's changes in the same file while the server
//! runs, no secret anywhere in it, and a log that cannot be written withholding
//! certificates (or, when not required, only counted).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::admin::{ADMIN, admin_port, get, sample};
use common::*;
use serde_json::Value;

/// The audit file `onlineca init` configures.
fn audit_file(ca: &TestCa) -> PathBuf {
    ca.home.join("audit.jsonl")
}

/// Every line of an audit file, parsed; a line that is not a JSON object fails.
fn records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
            assert!(v.is_object(), "{l}");
            // Fixed width: 2026-11-29T10:00:00.100Z.
            let t = v["time"].as_str().unwrap_or_default();
            assert!(t.len() == 24 && t.ends_with('Z'), "{l}");
            assert!(v["event"].is_string(), "{l}");
            assert!(v["pid"].is_u64(), "{l}");
            v
        })
        .collect()
}

fn of<'a>(recs: &'a [Value], event: &str) -> Vec<&'a Value> {
    recs.iter().filter(|r| r["event"] == event).collect()
}

/// Waits until the file holds a record of `event`.
fn wait_for(path: &Path, event: &str) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let recs = records(path);
        if !of(&recs, event).is_empty() {
            return recs;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no {event} record in {recs:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A serial as OpenSSL prints it, compared with the record's (zero-padded) hex.
fn same_serial(record: &Value, pem: &Path) -> bool {
    let ours = record.as_str().unwrap_or("").trim_start_matches('0');
    ours == cert_serial(pem).trim_start_matches('0')
}

#[test]
fn every_event_is_one_json_line_and_no_secret_is_in_the_file() {
    let mut ca = TestCa::init(&[]);
    let audit = audit_file(&ca);
    let pw_alice = ca.add_user("alice");
    ca.start();

    let (key, csr) = make_csr(ca.dir.path(), "a", "ec", Some("P-256"), "/CN=x", &[]);
    let r = ca.post_csr("alice", &pw_alice, &csr);
    assert_eq!(r.status, 200, "{}", r.text());
    let request_id = r.header("x-request-id").unwrap().to_string();
    let first = ca.path("alice.pem");
    std::fs::write(&first, &r.body).unwrap();
    let wrong = random_password();
    assert_eq!(ca.post_csr("alice", &wrong, &csr).status, 401);
    let field = format!("certificate_request@{}", csr.display());
    let r = ca.curl(&[
        "--cert",
        first.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--data-urlencode",
        &field,
        &ca.url("certificate/"),
    ]);
    assert_eq!(r.status, 200, "renewal: {}", r.text());

    // The CLI, while the server runs.
    let pw_bob = ca.add_user("bob");
    let pw_bob2 = random_password();
    let out = run_with_stdin(
        onlineca()
            .args(["user", "passwd", "bob", "--password-stdin", "--config"])
            .arg(&ca.config),
        format!("{pw_bob2}\n").as_bytes(),
    );
    assert!(out.status.success(), "{out:?}");
    ca.cli_ok(&["user", "disable", "bob"]);
    ca.cli_ok(&["user", "enable", "bob"]);
    ca.cli_ok(&["user", "unlock", "bob"]);
    ca.cli_ok(&["user", "remove", "bob", "--revoke"]);
    let carol_pw = random_password();
    let hash = run_with_stdin(
        &mut openssl(&["passwd", "-apr1", "-stdin"]),
        format!("{carol_pw}\n").as_bytes(),
    );
    let hash = String::from_utf8_lossy(&hash.stdout).trim().to_string();
    let htpasswd = ca.path("users.htpasswd");
    std::fs::write(&htpasswd, format!("carol:{hash}\n")).unwrap();
    ca.cli_ok(&["user", "import", "--htpasswd", htpasswd.to_str().unwrap()]);
    let crl_before = crl_number(&ca.fetch_crl("before.crl"));
    let serial = cert_serial(&first);
    ca.cli_ok(&["cert", "revoke", &serial, "--reason", "superseded"]);
    ca.wait_for_crl_after(crl_before, "after.crl");
    ca.stop(Duration::from_secs(30));

    let text = std::fs::read_to_string(&audit).unwrap();
    let recs = records(&audit);
    let issued = of(&recs, "issued");
    assert_eq!(issued.len(), 2, "{text}");
    let i = issued[0];
    assert_eq!(i["request_id"], request_id.as_str());
    assert!(same_serial(&i["serial"], &first), "{i}");
    assert_eq!(i["user"], "alice");
    assert_eq!(i["method"], "password");
    assert!(i["subject"].as_str().unwrap().ends_with("CN=alice"), "{i}");
    assert_eq!(i["spki_sha256"].as_str().unwrap().len(), 64, "{i}");
    assert_eq!(i["client"], "127.0.0.1");
    assert_eq!(i["source"], "server");
    for k in ["not_before", "not_after"] {
        assert!(i[k].as_str().is_some_and(|t| t.ends_with('Z')), "{i}");
    }
    assert!(i.get("retriever").is_none(), "{i}");
    let renewal = issued[1];
    assert_eq!(renewal["method"], "renewal");
    assert_eq!(renewal["renews"], i["serial"]);
    assert_eq!(renewal["spki_sha256"], i["spki_sha256"]);

    let refused = of(&recs, "refused");
    assert_eq!(refused.len(), 1, "{text}");
    assert_eq!(refused[0]["status"], 401);
    assert_eq!(refused[0]["user"], "alice");
    assert_eq!(refused[0]["reason"], "invalid username or password");
    assert_eq!(refused[0]["client"], "127.0.0.1");

    let revoked = of(&recs, "revoked");
    assert_eq!(revoked.len(), 1, "{text}");
    assert_eq!(revoked[0]["serial"], i["serial"]);
    assert_eq!(revoked[0]["user"], "alice");
    assert_eq!(revoked[0]["reason"], "superseded");
    assert_eq!(revoked[0]["count"], 2, "the renewal descends from it");
    assert_eq!(revoked[0]["source"], "cli");
    assert!(revoked[0]["uid"].is_u64(), "{}", revoked[0]);

    let one = |event: &str| {
        let found = of(&recs, event);
        assert_eq!(found.len(), 1, "{event}: {text}");
        assert_eq!(found[0]["source"], "cli", "{event}");
        found[0].clone()
    };
    let added: Vec<&Value> = of(&recs, "user_added");
    assert_eq!(
        added.iter().map(|r| r["user"].clone()).collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    assert_eq!(one("password_changed")["user"], "bob");
    assert_eq!(one("user_disabled")["directory_marker"], false);
    assert_eq!(one("user_enabled")["user"], "bob");
    assert_eq!(one("user_unlocked")["had_failures"], false);
    assert_eq!(one("user_removed")["revoked"], 0);
    let imported = one("user_imported");
    assert_eq!(imported["user"], "carol");
    assert_eq!(imported["scheme"], "apr1-md5");

    let crls = of(&recs, "crl_published");
    assert!(crls.len() >= 2, "{text}");
    let numbers: Vec<u64> = crls.iter().map(|r| r["number"].as_u64().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    assert!(crls.iter().any(|r| r["entries"] == 2), "{text}");

    let server: Vec<&Value> = recs.iter().filter(|r| r["source"] == "server").collect();
    assert_eq!(server.first().unwrap()["event"], "server_started", "{text}");
    assert_eq!(server.last().unwrap()["event"], "server_stopped", "{text}");
    assert_eq!(
        of(&recs, "server_started")[0]["listen"],
        format!("127.0.0.1:{}", ca.port)
    );

    // No secret, in any form a test can spell.
    for secret in [&pw_alice, &wrong, &pw_bob, &pw_bob2, &carol_pw, &hash] {
        assert!(
            !text.contains(secret.as_str()),
            "a secret is in the audit log"
        );
    }
    let key_pem = std::fs::read_to_string(&key).unwrap();
    let key_body = key_pem.lines().nth(1).unwrap();
    assert!(!text.contains(key_body));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&audit).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn an_unwritable_required_log_withholds_the_certificate_and_changes_nothing() {
    let mut ca = TestCa::init(&[]);
    ca.append_config(ADMIN);
    ca.start();
    let admin = admin_port(&ca);
    let audit = audit_file(&ca);
    let pw = ca.add_user("alice");
    let (_key, csr) = make_csr(ca.dir.path(), "a", "ec", Some("P-256"), "/CN=x", &[]);
    assert_eq!(ca.post_csr("alice", &pw, &csr).status, 200);
    assert_eq!(get(admin, "/readyz").0, 200);

    // A directory where the file was: nothing can append to it.
    std::fs::rename(&audit, ca.path("audit.jsonl.1")).unwrap();
    std::fs::create_dir(&audit).unwrap();
    let r = ca.post_csr("alice", &pw, &csr);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("audit log"), "{}", r.text());
    assert!(!r.text().contains("BEGIN CERTIFICATE"));
    assert_eq!(r.header("retry-after"), Some("5"));
    let (status, body) = get(admin, "/readyz");
    assert_eq!(status, 503);
    assert!(body.contains("audit.jsonl"), "{body}");
    let (_, metrics) = get(admin, "/metrics");
    assert!(
        sample(&metrics, "onlineca_audit_errors_total").unwrap() >= 1.0,
        "{metrics}"
    );
    assert!(ca.log_text().contains("audit record not written"));

    // The CLI refuses to change anything it cannot record.
    let out = run_with_stdin(
        onlineca()
            .args(["user", "add", "bob", "--password-stdin", "--config"])
            .arg(&ca.config),
        format!("{}\n", random_password()).as_bytes(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("audit.jsonl") && err.contains("nothing was changed"),
        "{err}"
    );
    let (users, _) = ca.cli_ok(&["user", "list"]);
    assert!(!users.contains("bob"), "{users}");

    // Fixed: the next request is issued and recorded in a fresh file.
    std::fs::remove_dir(&audit).unwrap();
    assert_eq!(ca.post_csr("alice", &pw, &csr).status, 200);
    assert_eq!(get(admin, "/readyz").0, 200);
    let recs = records(&audit);
    assert_eq!(of(&recs, "issued").len(), 1, "{recs:#?}");
}

#[test]
fn a_best_effort_log_only_counts_and_a_required_one_stops_the_start() {
    let mut ca = TestCa::init(&[]);
    ca.edit_config(
        "path = \"audit.jsonl\"",
        "path = \"no/such/dir/audit.jsonl\"",
    );
    let out = run(onlineca()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&ca.config));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no/such/dir/audit.jsonl") && err.contains("required = false"),
        "{err}"
    );

    ca.edit_config("required = true", "required = false");
    ca.append_config(ADMIN);
    ca.start();
    let admin = admin_port(&ca);
    let pw = ca.add_user("alice");
    let (_key, csr) = make_csr(ca.dir.path(), "a", "ec", Some("P-256"), "/CN=x", &[]);
    assert_eq!(ca.post_csr("alice", &pw, &csr).status, 200);
    let (_, metrics) = get(admin, "/metrics");
    assert!(
        sample(&metrics, "onlineca_audit_errors_total").unwrap() >= 1.0,
        "{metrics}"
    );
}

#[test]
fn a_log_on_standard_output_follows_the_url_line() {
    let mut ca = TestCa::init(&[]);
    ca.edit_config("path = \"audit.jsonl\"", "path = \"-\"");
    ca.start();
    let pw = ca.add_user("alice");
    let (_key, csr) = make_csr(ca.dir.path(), "a", "ec", Some("P-256"), "/CN=x", &[]);
    assert_eq!(ca.post_csr("alice", &pw, &csr).status, 200);
    let recs = wait_for(&ca.stdout_path(), "issued");
    assert_eq!(recs[0]["event"], "server_started");
    assert_eq!(of(&recs, "issued")[0]["user"], "alice");
    assert!(!audit_file(&ca).exists());
}
