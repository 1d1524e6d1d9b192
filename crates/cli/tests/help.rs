//! What a newcomer reads before anything else: `--help` with examples and the
//! environment, shell completions and the manual page, all from the real binary.

mod common;

use common::{ok, onlineca};

fn stdout(args: &[&str]) -> String {
    String::from_utf8(ok(onlineca().args(args)).stdout).unwrap()
}

#[test]
fn long_help_has_examples_and_the_environment() {
    let top = stdout(&["--help"]);
    assert!(top.contains("Examples:"), "{top}");
    for var in [
        "ONLINECA_CONFIG",
        "ONLINECA_URL",
        "ONLINECA_USER",
        "RUST_LOG",
    ] {
        assert!(top.contains(var), "{var} not in:\n{top}");
    }
    for cmd in [
        &["init"][..],
        &["serve"],
        &["user", "add"],
        &["cert", "revoke"],
        &["crl", "root"],
        &["retriever", "list"],
        &["trustroots"],
        &["getcert"],
        &["config", "check"],
        &["completions"],
        &["man"],
    ] {
        let help = stdout(&[cmd, &["--help"]].concat());
        assert!(help.contains("Examples:"), "{cmd:?}:\n{help}");
    }
    let getcert = stdout(&["getcert", "--help"]);
    assert!(getcert.contains("[env: ONLINECA_URL"), "{getcert}");
    assert!(getcert.contains("~/.onlineca/trustroots"), "{getcert}");
    // -h stays short.
    assert!(!stdout(&["getcert", "-h"]).contains("Examples:"));
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout(&["completions", shell]);
        assert!(script.contains("getcert"), "{shell}:\n{script}");
        assert!(script.contains("password-stdin"), "{shell}:\n{script}");
    }
    let out = common::run(onlineca().args(["completions", "tcsh"]));
    assert!(!out.status.success());
}

#[test]
fn man_page_as_roff_and_one_per_command() {
    let page = stdout(&["man"]);
    assert!(page.contains(".TH onlineca 1"), "{page}");
    assert!(page.contains("getcert"), "{page}");
    assert!(page.contains("ONLINECA_CONFIG"), "{page}");
    let tmp = tempfile::tempdir().unwrap();
    // The directory is created, as for ~/.local/share/man/man1 on a new account.
    let dir = tmp.path().join("share/man/man1");
    ok(onlineca().arg("man").arg("--dir").arg(&dir));
    for name in ["onlineca.1", "onlineca-getcert.1", "onlineca-user-add.1"] {
        let text =
            std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH"), "{name}");
    }
    let getcert = std::fs::read_to_string(dir.join("onlineca-getcert.1")).unwrap();
    assert!(getcert.contains("Examples:"), "{getcert}");
}
