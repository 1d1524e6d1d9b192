//! Smoke run: a real `onlineca` server on 127.0.0.1 driven briefly by the real
//! `onlineca-load`, in password and renewal modes. Asserts only that certificates
//! were issued without errors; never timings.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The load generator under test.
fn load_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_onlineca-load"))
}

/// The `onlineca` binary, beside the load generator in the same target directory
/// (`cargo test --workspace` builds both).
fn onlineca_bin() -> PathBuf {
    let bin = load_bin().with_file_name(format!("onlineca{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: build it first (`cargo build -p onlineca`; `cargo test --workspace` does)",
        bin.display()
    );
    bin
}

/// A running server, killed when dropped.
struct Server {
    child: Child,
    url: String,
    pid: u32,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ok(cmd: &mut Command, stdin: Option<&str>) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn random_password() -> String {
    let mut b = [0u8; 18];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A new CA in `dir` with user `loaduser`, served on a free loopback port.
fn start(dir: &Path, password: &str) -> Server {
    let bin = onlineca_bin();
    let home = dir.join("ca");
    ok(
        Command::new(&bin)
            .args(["init", "--key-type", "p256", "--dir"])
            .arg(&home),
        None,
    );
    let config = home.join("onlineca.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("\nrate_limit = 120"),
        "init's rate_limit line changed"
    );
    std::fs::write(
        &config,
        text.replacen("\nrate_limit = 120", "\nrate_limit = 0", 1),
    )
    .unwrap();
    ok(
        Command::new(&bin)
            .args(["user", "add", "loaduser", "--password-stdin", "--config"])
            .arg(&config),
        Some(&format!("{password}\n")),
    );
    let mut child = Command::new(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("onlineca listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let mut server = Server {
        child,
        url: String::new(),
        pid,
    };
    server.url = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "the server did not say where it listens within 60 s; its log:\n{}",
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            )
        });
    server
}

/// Runs the load generator with `extra` arguments and returns its JSON report.
fn drive(server: &Server, dir: &Path, password: &str, extra: &[&str]) -> serde_json::Value {
    let out = ok(
        Command::new(load_bin())
            .args(["--url", &server.url, "--cacert"])
            .arg(dir.join("ca/ca/root.pem"))
            .args(["--user", "loaduser", "-c", "2", "--warmup", "500ms"])
            .args(["--csr-key", "p256", "--csr-pool", "4"])
            // A measurement window unless the caller bounds the run itself.
            .args(if extra.contains(&"--duration") {
                &[][..]
            } else {
                &["--duration", "2s"][..]
            })
            .args(["--timeout", "20s", "--json", "--server-pid"])
            .arg(server.pid.to_string())
            .args(extra)
            .env("ONLINECA_LOAD_PASSWORD", password),
        None,
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn password_and_renewal_runs_issue_certificates_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let password = random_password();
    let server = start(dir.path(), &password);
    for (extra, what) in [
        (
            &["--auth", "password", "--connection", "new"][..],
            "password",
        ),
        (
            &["--auth", "renewal", "--connection", "keepalive"][..],
            "renewal",
        ),
    ] {
        let report = drive(&server, dir.path(), &password, extra);
        assert!(
            report["certificates"].as_u64().unwrap() > 0,
            "{what}: no certificate: {report}"
        );
        assert_eq!(report["errors"], 0, "{what}: errors: {report}");
        assert_eq!(
            report["warmup"]["errors"], 0,
            "{what}: warm-up errors: {report}"
        );
        assert_eq!(report["run"]["auth"], what, "{report}");
        assert!(report["server"]["cpu_ms"].is_number(), "{report}");
    }
}

#[test]
fn a_hostile_mix_from_two_addresses_is_counted_by_kind_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let password = random_password();
    let server = start(dir.path(), &password);
    let report = drive(
        &server,
        dir.path(),
        &password,
        &[
            "--mix",
            "good=2,bad=1,unknown=1,oversized=1",
            "--requests",
            "40",
            "--oversized-bytes",
            "100000,2000000",
            "--source",
            "127.0.0.2,127.0.0.3",
            "--connection",
            "keepalive",
            // Only an upper bound: the run ends after its 40 requests.
            "--duration",
            "120s",
        ],
    );
    assert_eq!(report["requests"], 40, "{report}");
    assert_eq!(
        report["sources"],
        serde_json::json!(["127.0.0.2", "127.0.0.3"])
    );
    // The per-address limit is off here: each kind gets its own answer.
    assert_eq!(
        report["by_kind"]["good"],
        serde_json::json!({"200": 16}),
        "{report}"
    );
    assert_eq!(
        report["by_kind"]["oversized"],
        serde_json::json!({"405": 8}),
        "{report}"
    );
    let unknown = &report["by_kind"]["unknown"];
    assert_eq!(unknown["401"], 8, "{report}");
    // Wrong passwords: refused, then locked out.
    let bad = &report["by_kind"]["bad"];
    let refused = bad["401"].as_u64().unwrap_or(0) + bad["429"].as_u64().unwrap_or(0);
    assert_eq!(refused, 8, "{report}");
}

#[test]
fn non_loopback_targets_are_refused() {
    let out = Command::new(load_bin())
        .args([
            "--url",
            "https://192.0.2.1:8443/onlineca",
            "--cacert",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only drives servers on this machine"), "{err}");
}
