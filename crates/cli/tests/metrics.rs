//! The admin listener of a real server, scraped with curl: the counters follow the
//! requests made, promtool accepts the exposition and the example alert rules,
//! `/readyz` follows the store, and nothing of it is on the public listener.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::admin::{ADMIN, admin_port, get, sample};
use common::*;
use sqlx::Connection;

const PROMTOOL_INSTALL: &str = "apt-get install prometheus (it brings promtool)";

fn promtool() -> bool {
    if Command::new("promtool").arg("--version").output().is_ok() {
        return true;
    }
    onlineca_testkit::skip("promtool", "promtool not found", PROMTOOL_INSTALL);
    false
}

/// `promtool check metrics` on `text`: it must parse (exit 1 is a parse error). It
/// reads the classic text format, where a counter's HELP names the family with its
/// `_total`; in the OpenMetrics format we serve, HELP names it without, so promtool
/// reports "no help text" for exactly those series (exit 3). Anything else fails.
fn promtool_check_metrics(dir: &Path, text: &str) {
    let file = dir.join("metrics.txt");
    std::fs::write(&file, text).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", file.display()))
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = out.status.code().unwrap_or(-1);
    assert!(code == 0 || code == 3, "promtool: {code}\n{report}\n{text}");
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        let family = line
            .strip_suffix("_total no help text")
            .unwrap_or_else(|| panic!("promtool: {line}\n{text}"));
        assert!(
            text.contains(&format!("# HELP {family} "))
                && text.contains(&format!("# TYPE {family} counter")),
            "promtool: {line}\n{text}"
        );
    }
}

#[test]
fn scrapes_follow_issuances_and_refusals() {
    let mut ca = TestCa::init(&[]);
    ca.append_config(ADMIN);
    ca.start();
    let admin = admin_port(&ca);
    let pw = ca.add_user("alice");
    let (_k, csr) = make_csr(ca.dir.path(), "a", "ec", Some("P-256"), "/CN=x", &[]);

    for _ in 0..3 {
        let r = ca.post_csr("alice", &pw, &csr);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for _ in 0..2 {
        assert_eq!(ca.post_csr("alice", "wrong", &csr).status, 401);
    }
    assert_eq!(ca.curl(&[&ca.url("certificate/")]).status, 405);
    // Nothing of the admin listener on the public one.
    for path in ["metrics", "healthz", "readyz"] {
        let url = format!("https://127.0.0.1:{}/{path}", ca.port);
        assert_eq!(ca.curl(&[&url]).status, 404, "{path}");
        assert_eq!(ca.curl(&[&ca.url(path)]).status, 404, "{path}");
    }

    assert_eq!(get(admin, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(admin, "/readyz").0, 200);
    assert_eq!(get(admin, "/other").0, 404);
    let (status, text) = get(admin, "/metrics");
    assert_eq!(status, 200, "{text}");
    let want = [
        (
            "onlineca_certificates_issued_total{method=\"password\"}",
            3.0,
        ),
        (
            "onlineca_requests_total{route=\"certificate\",status=\"200\"}",
            3.0,
        ),
        (
            "onlineca_requests_total{route=\"certificate\",status=\"401\"}",
            2.0,
        ),
        (
            "onlineca_requests_total{route=\"certificate\",status=\"405\"}",
            1.0,
        ),
        (
            "onlineca_requests_total{route=\"other\",status=\"404\"}",
            6.0,
        ),
        (
            "onlineca_request_duration_seconds_count{route=\"certificate\"}",
            6.0,
        ),
        // The first right password and both wrong ones go to argon2; the repeats hit.
        ("onlineca_credential_cache_hits_total", 2.0),
        ("onlineca_credential_cache_misses_total", 3.0),
        ("onlineca_password_verifications_in_flight", 0.0),
        ("onlineca_password_verifications_queued", 0.0),
        (
            "onlineca_store_operation_duration_seconds_count{op=\"record_issued\"}",
            3.0,
        ),
        (
            "onlineca_store_operation_duration_seconds_count{op=\"get_user\"}",
            5.0,
        ),
        (
            "onlineca_store_operation_duration_seconds_count{op=\"login_failures\"}",
            5.0,
        ),
        // Cache hits skip the counted attempt.
        (
            "onlineca_store_operation_duration_seconds_count{op=\"count_login_attempt\"}",
            3.0,
        ),
    ];
    for (series, value) in want {
        assert_eq!(sample(&text, series), Some(value), "{series}\n{text}");
    }
    assert!(!text.contains("onlineca_store_errors_total{"), "{text}");
    assert!(
        sample(&text, "onlineca_open_connections").is_some(),
        "{text}"
    );
    // Both CA certificates served (issuing and root), with their real end dates.
    for cn in [" Issuing CA\"}", " Root CA\"}"] {
        let line = text
            .lines()
            .find(|l| l.starts_with("onlineca_ca_not_after_seconds{") && l.contains(cn))
            .unwrap_or_else(|| panic!("{cn}\n{text}"));
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(v > now + 86400.0 * 300.0, "{line}");
    }
    // No password in the exposition.
    assert!(!text.contains(&pw));

    if promtool() {
        promtool_check_metrics(ca.dir.path(), &text);
    }

    // `config check` names the listener, and warns when it is not on loopback.
    let (out, _) = ca.cli_ok(&["config", "check"]);
    let line = out.lines().find(|l| l.starts_with("admin.listen")).unwrap();
    assert!(
        line.contains("127.0.0.1:0") && !line.contains("WARNING"),
        "{line}"
    );
    ca.edit_config("listen = \"127.0.0.1:0\"\n", "listen = \"0.0.0.0:0\"\n");
    let (out, _) = ca.cli_ok(&["config", "check"]);
    let line = out.lines().find(|l| l.starts_with("admin.listen")).unwrap();
    assert!(line.contains("WARNING: not loopback"), "{line}");
}

#[test]
fn admin_listener_is_off_unless_configured() {
    let ca = TestCa::start_default();
    std::thread::sleep(Duration::from_millis(200));
    assert!(!ca.log_text().contains("admin listening"));
    let (out, _) = ca.cli_ok(&["config", "check"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("admin.listen") && l.ends_with(" off")),
        "{out}"
    );
    // The template's commented example is valid as it stands, once uncommented.
    ca.edit_config(
        "# [admin]\n# listen = \"127.0.0.1:9100\"\n",
        "[admin]\nlisten = \"127.0.0.1:9100\"\n",
    );
    let (out, _) = ca.cli_ok(&["config", "check"]);
    let line = out.lines().find(|l| l.starts_with("admin.listen")).unwrap();
    assert!(line.contains("http://127.0.0.1:9100 ("), "{line}");
}

#[test]
fn example_alert_rules_pass_promtool() {
    if !promtool() {
        return;
    }
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/alerts.yml");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const PG_INSTALL: &str = "run PostgreSQL at 127.0.0.1:5432 with a database `test` (trust auth), \
                          or set ONLINECA_TEST_PG_URL";

/// Runs SQL statements as the test database's administrator.
fn pg_exec(rt: &tokio::runtime::Runtime, base: &str, sql: &[String]) -> Result<(), sqlx::Error> {
    rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(base).await?;
        for s in sql {
            sqlx::query(sqlx::AssertSqlSafe(s.clone()))
                .execute(&mut c)
                .await?;
        }
        Ok(())
    })
}

/// Polls `/readyz` until it answers `want`; returns the last body.
fn wait_ready(port: u16, want: u16) -> String {
    let start = Instant::now();
    loop {
        let (status, body) = get(port, "/readyz");
        if status == want {
            return body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "/readyz still {status}: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The store becomes unreachable when the server's database role may no longer
/// log in and its connections are ended: the same, to the server, as a database
/// that went away; it comes back when the role may log in again.
#[test]
fn readyz_follows_the_postgresql_store() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = std::env::var("ONLINECA_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into());
    // Letters and digits only: safe in SQL as a name.
    let name = format!(
        "ready_{}",
        random_password()
            .to_ascii_lowercase()
            .replace(['-', '_'], "")
    );
    if let Err(e) = pg_exec(
        &rt,
        &base,
        &[
            format!("CREATE ROLE {name} LOGIN"),
            format!("CREATE SCHEMA {name} AUTHORIZATION {name}"),
        ],
    ) {
        onlineca_testkit::skip("PostgreSQL", &format!("{base}: {e}"), PG_INSTALL);
        return;
    }
    let url = base.replacen("postgres@", &format!("{name}@"), 1);
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}options=-c%20search_path%3D{name}");

    let mut ca = TestCa::init(&[]);
    ca.edit_config(
        "url = \"sqlite://onlineca.db\"",
        &format!("url = \"{url}\""),
    );
    ca.append_config(ADMIN);
    ca.start();
    let admin = admin_port(&ca);
    assert_eq!(wait_ready(admin, 200), "ready\n");
    let pw = ca.add_user("alice");
    let (_k, csr) = make_csr(ca.dir.path(), "a", "ec", Some("P-256"), "/CN=x", &[]);
    assert_eq!(ca.post_csr("alice", &pw, &csr).status, 200);

    pg_exec(
        &rt,
        &base,
        &[
            format!("ALTER ROLE {name} NOLOGIN"),
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'"
            ),
        ],
    )
    .unwrap();
    let body = wait_ready(admin, 503);
    assert!(body.starts_with("not ready: store:"), "{body}");
    assert_eq!(body.lines().count(), 1, "{body}");
    assert_eq!(get(admin, "/healthz").0, 200, "the process still answers");
    // A certificate request meanwhile fails on its first store call, and says so
    // in the metrics.
    let r = ca.post_csr("alice", &pw, &csr);
    assert_eq!(r.status, 503, "{}", r.text());
    let (_, text) = get(admin, "/metrics");
    let errors = sample(&text, "onlineca_store_errors_total{op=\"login_failures\"}");
    assert!(errors.is_some_and(|n| n >= 1.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "onlineca_requests_total{route=\"certificate\",status=\"503\"}"
        ),
        Some(1.0),
        "{text}"
    );

    pg_exec(&rt, &base, &[format!("ALTER ROLE {name} LOGIN")]).unwrap();
    assert_eq!(wait_ready(admin, 200), "ready\n");
    assert_eq!(ca.post_csr("alice", &pw, &csr).status, 200);
    let (_, text) = get(admin, "/metrics");
    assert_eq!(
        sample(
            &text,
            "onlineca_certificates_issued_total{method=\"password\"}"
        ),
        Some(2.0),
        "{text}"
    );

    drop(ca);
    let _ = pg_exec(
        &rt,
        &base,
        &[
            format!("DROP SCHEMA {name} CASCADE"),
            format!("DROP ROLE {name}"),
        ],
    );
}

/// Polls /metrics until `series` has `want`.
fn wait_sample(port: u16, series: &str, want: f64) {
    let start = Instant::now();
    loop {
        let (_, text) = get(port, "/metrics");
        if sample(&text, series) == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{series} never {want}\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn open_connections_and_a_bounded_admin_listener() {
    let mut ca = TestCa::init(&[]);
    ca.append_config(ADMIN);
    ca.start();
    let admin = admin_port(&ca);

    // A connection to the public listener counts from accept until it ends.
    let conn = std::net::TcpStream::connect(("127.0.0.1", ca.port)).unwrap();
    wait_sample(admin, "onlineca_open_connections", 1.0);
    drop(conn);
    wait_sample(admin, "onlineca_open_connections", 0.0);

    // Clients that connect to the admin listener and say nothing take its few
    // slots only until the header timeout: a probe still gets through.
    let silent: Vec<_> = (0..24)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", admin)).unwrap())
        .collect();
    let started = Instant::now();
    assert_eq!(get(admin, "/healthz").0, 200);
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(silent);
}
