//! Users imported from an Apache htpasswd file made by the real `htpasswd` and
//! `openssl passwd`: each logs in with their old password, and the hash becomes
//! argon2id on the way.

mod common;

use common::*;

/// The PASSWORD column of `user list` for `name`.
fn scheme_of(ca: &TestCa, name: &str) -> String {
    let (out, _) = ca.cli_ok(&["user", "list"]);
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not listed:\n{out}"));
    line.split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn htpasswd_users_log_in_and_their_hashes_become_argon2id() {
    if !have("htpasswd") {
        onlineca_testkit::skip("htpasswd", "not on PATH", "apt-get install apache2-utils");
        return;
    }
    let ca = TestCa::start_default();
    let dir = ca.dir.path();
    let file = dir.join("users.htpasswd");
    let users: Vec<(&str, String, &str)> = vec![
        ("bea", random_password(), "bcrypt"),
        ("sid", random_password(), "sha512-crypt"),
        ("sam", random_password(), "sha256-crypt"),
        ("april", random_password(), "apr1-md5"),
    ];
    // bcrypt from htpasswd itself; the others as openssl writes them. Passwords go
    // on stdin: a random one may start with '-'.
    let out = run_with_stdin(
        std::process::Command::new("htpasswd")
            .args(["-B", "-i", "-c"])
            .arg(&file)
            .arg(users[0].0),
        users[0].1.as_bytes(),
    );
    assert!(out.status.success(), "htpasswd: {out:?}");
    let mut text = std::fs::read_to_string(&file).unwrap();
    for (name, pw, scheme) in &users[1..] {
        let flag = match *scheme {
            "sha512-crypt" => "-6",
            "sha256-crypt" => "-5",
            _ => "-apr1",
        };
        let out = run_with_stdin(&mut openssl(&["passwd", flag, "-stdin"]), pw.as_bytes());
        assert!(out.status.success(), "openssl passwd {flag}: {out:?}");
        text.push_str(&format!(
            "{name}:{}\n",
            String::from_utf8_lossy(&out.stdout).trim()
        ));
    }
    std::fs::write(&file, &text).unwrap();
    let path = file.to_str().unwrap();

    // A dry run changes nothing.
    let (_, err) = ca.cli_ok(&["user", "import", "--htpasswd", path, "--dry-run"]);
    assert!(err.contains("4 user(s) would be imported"), "{err}");
    let (out, _) = ca.cli_ok(&["user", "list"]);
    assert!(!out.contains("bea"), "{out}");

    let (_, err) = ca.cli_ok(&["user", "import", "--htpasswd", path]);
    assert!(err.contains("imported 4 user(s)"), "{err}");
    let (_k, csr) = make_csr(dir, "i", "ec", Some("P-256"), "/CN=x", &[]);
    for (name, pw, scheme) in &users {
        assert_eq!(&scheme_of(&ca, name), scheme);
        // A wrong password is refused and changes nothing.
        assert_eq!(ca.post_csr(name, "not-it", &csr).status, 401);
        assert_eq!(&scheme_of(&ca, name), scheme);
        let r = ca.post_csr(name, pw, &csr);
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(scheme_of(&ca, name), "argon2id", "{name}");
        // And the same password keeps working, now against argon2id.
        assert_eq!(ca.post_csr(name, pw, &csr).status, 200, "{name}");
    }
    // Importing again: every name exists now, and nothing is imported.
    let out = ca.cli(&["user", "import", "--htpasswd", path]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1: user \"bea\" already exists"), "{err}");
}

#[test]
fn weak_or_unknown_htpasswd_lines_are_refused_with_their_line_numbers() {
    let ca = TestCa::start_default();
    let file = ca.dir.path().join("weak.htpasswd");
    let good = "$apr1$saltsalt$5RsbPGLoMZxdcz01HfK2l.";
    std::fs::write(
        &file,
        format!(
            "# exported from the old service\n\
             ok1:{good}\n\
             plain:hunter22\n\
             des:abJnggxhB/yWI\n\
             sha1:{{SHA}}5en6G6MezRroT3XKqkdPOmY/BfQ=\n\
             \n\
             bad name:{good}\n\
             ok1:{good}\n"
        ),
    )
    .unwrap();
    let out = ca.cli(&["user", "import", "--htpasswd", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "line 3: user \"plain\": not a bcrypt",
        "line 4: user \"des\": DES-crypt",
        "line 5: user \"sha1\": {SHA}",
        "line 7: username \"bad name\"",
        "line 8: user \"ok1\" appears twice",
        "nothing imported: 5 line(s) refused",
    ] {
        assert!(err.contains(needle), "{needle:?} not in:\n{err}");
    }
    assert!(!err.contains("hunter22"), "a refused line is never echoed");
    let (out, _) = ca.cli_ok(&["user", "list"]);
    assert!(!out.contains("ok1"), "nothing imported:\n{out}");
}
