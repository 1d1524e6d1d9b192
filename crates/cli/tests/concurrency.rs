//! Passwords under concurrency and the credential cache, against the real server:
//! the right password is never refused for the company it arrives in, the lockout
//! stays exact for wrong ones, and a cached credential dies with the account change
//! that should end it, made by the CLI while the server runs.

mod common;

use common::*;

/// A CA with the per-address limit off (every request here comes from one address),
/// started.
fn ca_with(edits: &[(&str, &str)]) -> TestCa {
    let mut ca = TestCa::init(&[]);
    ca.edit_config("rate_limit = 120", "rate_limit = 0");
    for (from, to) in edits {
        ca.edit_config(from, to);
    }
    ca.start();
    ca
}

fn all_ok(statuses: &[u16]) -> bool {
    statuses.iter().all(|&s| s == 200)
}

#[test]
fn right_password_in_parallel_is_never_refused() {
    // Without the cache every request is a full argon2 check, taken in turn per
    // username; with it, the first check fills the cache for the rest.
    for cache in ["\"0s\"", "\"5m\""] {
        let ca = ca_with(&[(
            "credential_cache = \"5m\"",
            &format!("credential_cache = {cache}"),
        )]);
        let pw = ca.add_user("paula");
        let (_k, csr) = make_csr(ca.dir.path(), "p", "ec", Some("P-256"), "/CN=x", &[]);
        for (n, http2) in [(16, false), (16, true), (64, false), (64, true)] {
            let statuses = ca.post_csr_parallel("paula", &pw, &csr, n, http2);
            assert!(
                all_ok(&statuses),
                "cache {cache}, {n} requests, http2 {http2}: {statuses:?}\n{}",
                ca.log_text()
            );
        }
    }
}

#[test]
fn wrong_passwords_stay_counted_when_the_right_one_is_cached() {
    let ca = ca_with(&[("max_failures = 5", "max_failures = 3")]);
    let pw = ca.add_user("quinn");
    let (_k, csr) = make_csr(ca.dir.path(), "q", "ec", Some("P-256"), "/CN=x", &[]);
    assert_eq!(ca.post_csr("quinn", &pw, &csr).status, 200);
    // Cached now; a wrong password is still a full check and still counts.
    for _ in 0..3 {
        assert_eq!(ca.post_csr("quinn", "not-the-password", &csr).status, 401);
    }
    let r = ca.post_csr("quinn", &pw, &csr);
    assert_eq!(
        r.status, 429,
        "the lockout holds for the cached password too"
    );
    // Parallel wrong guesses at once: three get a check, the rest wait it out.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let (ca, csr) = (&ca, &csr);
                s.spawn(move || ca.post_csr("rhea", &format!("guess-{i}"), csr).status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let count = |code| statuses.iter().filter(|&&s| s == code).count();
    assert_eq!((count(401), count(429)), (3, 7), "{statuses:?}");
}

#[test]
fn account_changes_end_a_cached_credential_at_once() {
    let ca = ca_with(&[]);
    let pw = ca.add_user("sam");
    let (_k, csr) = make_csr(ca.dir.path(), "s", "ec", Some("P-256"), "/CN=x", &[]);
    assert_eq!(ca.post_csr("sam", &pw, &csr).status, 200);
    assert_eq!(ca.post_csr("sam", &pw, &csr).status, 200, "cached");

    // A new password: the old one is refused on the very next request.
    let new_pw = random_password();
    let out = run_with_stdin(
        onlineca()
            .args(["user", "passwd", "sam", "--password-stdin", "--config"])
            .arg(&ca.config),
        format!("{new_pw}\n").as_bytes(),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(ca.post_csr("sam", &pw, &csr).status, 401);
    assert_eq!(ca.post_csr("sam", &new_pw, &csr).status, 200);
    assert_eq!(ca.post_csr("sam", &new_pw, &csr).status, 200, "cached");

    // Disabled: refused while cached; enabled again: accepted.
    ca.cli_ok(&["user", "disable", "sam"]);
    let r = ca.post_csr("sam", &new_pw, &csr);
    assert_eq!(r.status, 401);
    assert!(r.text().contains("disabled"), "{}", r.text());
    ca.cli_ok(&["user", "enable", "sam"]);
    assert_eq!(ca.post_csr("sam", &new_pw, &csr).status, 200);

    // Removed: refused while cached, and a new account of the same name with
    // another password does not inherit the old credential.
    ca.cli_ok(&["user", "remove", "sam"]);
    assert_eq!(ca.post_csr("sam", &new_pw, &csr).status, 401);
    let other = ca.add_user("sam");
    assert_eq!(ca.post_csr("sam", &new_pw, &csr).status, 401);
    assert_eq!(ca.post_csr("sam", &other, &csr).status, 200);
}
