//! The failed-password lockout is shared by every instance on one store: two real
//! servers on one SQLite file give an attacker the guesses of one, and the
//! operator's `user list` and `user unlock` see and clear it.

mod common;

use common::*;

/// A second instance of `a` on the same database file.
fn twin(a: &TestCa, store_line: &str) -> TestCa {
    let mut b = TestCa::twin_of(a);
    b.edit_config("url = \"sqlite://onlineca.db\"", store_line);
    b.edit_config("max_failures = 5", "max_failures = 3");
    b.start();
    b
}

#[test]
fn two_instances_share_one_lockout() {
    let mut a = TestCa::init(&[]);
    let db = a.home.join("onlineca.db");
    let store_line = format!("url = \"sqlite://{}\"", db.display());
    a.edit_config("url = \"sqlite://onlineca.db\"", &store_line);
    a.edit_config("max_failures = 5", "max_failures = 3");
    a.start();
    let b = twin(&a, &store_line);
    let pw = a.add_user("Mallory-Target");
    let (_k, csr) = make_csr(a.dir.path(), "m", "ec", Some("P-256"), "/CN=x", &[]);

    // Three wrong guesses spread over both instances lock the name on both.
    for (ca, guess) in [(&a, "guess-1"), (&b, "guess-2"), (&a, "guess-3")] {
        let r = ca.post_csr("mallory-target", guess, &csr);
        assert_eq!(r.status, 401, "{}", r.text());
    }
    for ca in [&b, &a] {
        let r = ca.post_csr("MALLORY-target", &pw, &csr);
        assert_eq!(r.status, 429, "{}", r.text());
        assert!(r.header("retry-after").is_some());
    }
    // An unknown name is locked alike (nothing tells the two apart).
    for ca in [&a, &b, &b] {
        assert_eq!(ca.post_csr("nobody", "x", &csr).status, 401);
    }
    assert_eq!(a.post_csr("nobody", "x", &csr).status, 429);

    // The operator sees it ...
    let (out, err) = a.cli_ok(&["user", "list"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("Mallory-Target"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains(" locked "), "{line}");
    assert!(
        err.contains("1 name(s) without an account are locked"),
        "{err}"
    );
    // ... and clears it, for both instances.
    let (_, err) = a.cli_ok(&["user", "unlock", "mallory-TARGET"]);
    assert!(err.contains("unlocked"), "{err}");
    assert_eq!(b.post_csr("Mallory-Target", &pw, &csr).status, 200);
    let (out, _) = b.cli_ok(&["user", "list"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("Mallory-Target") && l.contains(" active ")),
        "{out}"
    );
    // A right password forgets the failures: three more wrong ones are needed.
    for ca in [&a, &b] {
        assert_eq!(ca.post_csr("Mallory-Target", "wrong", &csr).status, 401);
    }
    assert_eq!(a.post_csr("Mallory-Target", &pw, &csr).status, 200);
    for ca in [&a, &b] {
        assert_eq!(ca.post_csr("Mallory-Target", "wrong", &csr).status, 401);
    }
    assert_eq!(b.post_csr("Mallory-Target", &pw, &csr).status, 200);
}
