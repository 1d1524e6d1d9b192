//! The access log says how each request was authenticated, prints durations with a
//! fixed precision, and the server ends its log with a line saying it stopped.

mod common;

use common::*;

/// The access-log lines of the server's log.
fn access_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("onlineca::access"))
        .collect()
}

#[test]
fn access_lines_name_the_method_and_the_stop_is_logged() {
    let mut ca = TestCa::start_default();
    let pw = ca.add_user("ada");
    let (key, csr) = make_csr(ca.dir.path(), "a", "ec", Some("P-256"), "/CN=x", &[]);
    let r = ca.post_csr("ada", &pw, &csr);
    assert_eq!(r.status, 200, "{}", r.text());
    let cert = ca.path("ada.pem");
    std::fs::write(&cert, &r.body).unwrap();
    let field = format!("certificate_request@{}", csr.display());
    let r = ca.curl(&[
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--data-urlencode",
        &field,
        &ca.url("certificate/"),
    ]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(ca.post_csr("ada", "wrong", &csr).status, 401);
    ca.stop(std::time::Duration::from_secs(30));

    let log = ca.log_text();
    let lines = access_lines(&log);
    let with = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(with("auth=\"password\""), 1, "{log}");
    assert_eq!(with("auth=\"renewal\""), 1, "{log}");
    assert!(with("auth=\"-\"") >= 1, "the refusal: {log}");
    assert!(lines.iter().all(|l| l.contains("retriever=")), "{log}");
    // Every duration with exactly three decimals.
    for l in &lines {
        let d = l
            .split("duration_ms=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no duration: {l}"));
        let (whole, frac) = d.split_once('.').unwrap_or_else(|| panic!("{d}"));
        assert!(whole.chars().all(|c| c.is_ascii_digit()), "{d}");
        assert_eq!(frac.len(), 3, "{d}");
    }
    let last = log
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(last.contains("stopped"), "last line: {last}");
}
