//! Test kit: a real `onlineca` CA in a temporary directory, served on 127.0.0.1 with
//! real TLS, driven by the real `openssl` and `curl`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

/// The binary under test. `HOME` points nowhere, so that no test can write into the
/// developer's `~/.onlineca` through a default path; tests of those defaults set it.
pub fn onlineca() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_onlineca"));
    c.env("HOME", "/nonexistent/onlineca-tests-home")
        .env_remove("ONLINECA_CONFIG")
        .env_remove("ONLINECA_URL")
        .env_remove("ONLINECA_USER");
    c
}

/// Runs a command, returning its output; panics (with the command) if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command with `input` on stdin.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs a command and insists it succeeded.
pub fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `openssl` with arguments.
pub fn openssl(args: &[&str]) -> Command {
    let mut c = Command::new("openssl");
    c.args(args);
    c
}

/// A fresh random password (never a fixed one).
pub fn random_password() -> String {
    use std::io::Read;
    let mut b = [0u8; 18];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A CA directory with a running server.
pub struct TestCa {
    /// Holds everything; removed on drop.
    pub dir: tempfile::TempDir,
    /// `DIR/ca`.
    pub home: PathBuf,
    /// The configuration file.
    pub config: PathBuf,
    /// `https://127.0.0.1:PORT/onlineca`.
    pub base: String,
    /// The port.
    pub port: u16,
    /// Where the server's stderr (its log) goes.
    pub log: PathBuf,
    /// Environment variables for every `onlineca` this CA runs (init, serve, cli).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl TestCa {
    /// `onlineca init` with extra arguments, not started.
    pub fn init(extra: &[&str]) -> TestCa {
        TestCa::init_with_env(extra, &[])
    }

    /// [`TestCa::init`] with environment variables, kept for every later run.
    pub fn init_with_env(extra: &[&str], env: &[(String, String)]) -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("ca");
        let mut cmd = onlineca();
        cmd.arg("init")
            .arg("--dir")
            .arg(&home)
            .args(extra)
            .envs(env.iter().cloned());
        ok(&mut cmd);
        TestCa {
            config: home.join("onlineca.toml"),
            log: dir.path().join("server.log"),
            env: env.to_vec(),
            home,
            dir,
            base: String::new(),
            port: 0,
            child: None,
        }
    }

    /// A second instance of `first`, not started: a CA directory of its own with
    /// `first`'s CA and TLS certificates and keys, for tests of instances that share
    /// a store (point its `[store] url` at the same database).
    pub fn twin_of(first: &TestCa) -> TestCa {
        let twin = TestCa::init(&[]);
        for f in [
            "ca/issuing.pem",
            "ca/issuing.key",
            "ca/root.pem",
            "tls/server.pem",
            "tls/server.key",
        ] {
            std::fs::copy(first.home.join(f), twin.home.join(f)).unwrap();
        }
        twin
    }

    /// A default CA, started.
    pub fn start_default() -> TestCa {
        let mut ca = TestCa::init(&[]);
        ca.start();
        ca
    }

    /// Appends TOML to the configuration (before start).
    pub fn append_config(&self, toml: &str) {
        let mut text = std::fs::read_to_string(&self.config).unwrap();
        text.push_str(toml);
        std::fs::write(&self.config, text).unwrap();
    }

    /// Replaces `from` with `to` in the configuration (before start).
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        assert!(text.contains(from), "config has no {from:?}");
        std::fs::write(&self.config, text.replacen(from, to, 1)).unwrap();
    }

    /// Starts `onlineca serve` on a free port and waits for its URL line.
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Like [`TestCa::start`], with more arguments for `serve`.
    pub fn start_with(&mut self, extra: &[&str]) {
        let log = std::fs::File::create(&self.log).unwrap();
        let mut child = onlineca()
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let rest_path = self.stdout_path();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe; what follows
            // the URL line (an audit log on standard output) goes to a file.
            let mut rest = std::fs::File::create(rest_path).unwrap();
            for line in lines.map_while(Result::ok) {
                use std::io::Write;
                let _ = writeln!(rest, "{line}");
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "server did not start; log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            });
        let url = line
            .strip_prefix("onlineca listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        self.port = url
            .split(':')
            .nth(2)
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap();
        self.base = url;
        self.child = Some(child);
    }

    /// Sends SIGTERM and waits for the exit (at most `limit`).
    pub fn stop(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        unsafe_kill(child.id(), "TERM");
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        None
    }

    /// The process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The root CA certificate file.
    pub fn root_pem(&self) -> PathBuf {
        self.home.join("ca/root.pem")
    }

    /// Adds a user with a random password, returned.
    pub fn add_user(&self, name: &str) -> String {
        let pw = random_password();
        let out = run_with_stdin(
            onlineca()
                .args(["user", "add", name, "--password-stdin", "--config"])
                .arg(&self.config),
            format!("{pw}\n").as_bytes(),
        );
        assert!(
            out.status.success(),
            "user add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pw
    }

    /// A path inside the temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Where the server's standard output after its URL line goes.
    pub fn stdout_path(&self) -> PathBuf {
        self.dir.path().join("server.stdout")
    }

    /// The server log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `curl` against this server, trusting its root; `-s -S` and status in the
    /// output's last line via `-w`.
    pub fn curl(&self, args: &[&str]) -> CurlResult {
        // Each call writes its own body file, so calls may run in parallel.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let body_file = self.path(&format!("curl-body-{n}"));
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-S", "--max-time", "60", "--cacert"])
            .arg(self.root_pem())
            .args(["-D", "-", "-o"])
            .arg(&body_file)
            .args(args);
        let out = run(&mut cmd);
        let headers = String::from_utf8_lossy(&out.stdout).to_string();
        let body = std::fs::read(&body_file).unwrap_or_default();
        let _ = std::fs::remove_file(&body_file);
        CurlResult::parse(
            out.status.success(),
            &headers,
            body,
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// The URL of an API path under the prefix.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path)
    }

    /// Sends `n` certificate requests with Basic auth all at once from one curl
    /// (`--parallel`): over HTTP/2 they share one connection as concurrent streams,
    /// over HTTP/1.1 each has its own. Returns the statuses, in request order.
    pub fn post_csr_parallel(
        &self,
        user: &str,
        password: &str,
        csr: &Path,
        n: usize,
        http2: bool,
    ) -> Vec<u16> {
        let field = format!("certificate_request@{}", csr.display());
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-S", "--max-time", "120", "--cacert"])
            .arg(self.root_pem())
            .args(["--parallel", "--parallel-max", &n.to_string()])
            .arg(if http2 { "--http2" } else { "--http1.1" })
            .args(["-u", &format!("{user}:{password}")])
            .args(["--data-urlencode", &field])
            .args(["-w", "%{http_code}\n"]);
        let url = self.url("certificate/");
        for _ in 0..n {
            cmd.args(["-o", "/dev/null", &url]);
        }
        let out = run(&mut cmd);
        let text = String::from_utf8_lossy(&out.stdout);
        let statuses: Vec<u16> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        assert_eq!(
            statuses.len(),
            n,
            "curl --parallel: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        statuses
    }

    /// POSTs a PEM CSR file as the deployed clients do (form field) with Basic auth.
    pub fn post_csr(&self, user: &str, password: &str, csr: &Path) -> CurlResult {
        let field = format!("certificate_request@{}", csr.display());
        self.curl(&[
            "-u",
            &format!("{user}:{password}"),
            "--data-urlencode",
            &field,
            &self.url("certificate/"),
        ])
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// The result of a curl call.
#[derive(Debug)]
pub struct CurlResult {
    /// curl exited 0.
    pub transport_ok: bool,
    /// Final HTTP status (0 if none).
    pub status: u16,
    /// Response headers, lowercase names.
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
    /// curl's stderr.
    pub stderr: String,
}

impl CurlResult {
    fn parse(transport_ok: bool, headers: &str, body: Vec<u8>, stderr: String) -> Self {
        // With -D -, every response's header block is printed; keep the last.
        let block = headers
            .split("\r\n\r\n")
            .filter(|b| b.starts_with("HTTP/"))
            .last()
            .unwrap_or("");
        let mut lines = block.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        CurlResult {
            transport_ok,
            status,
            headers,
            body,
            stderr,
        }
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// Makes a key and CSR with `openssl req`; returns (key path, csr path).
/// `newkey` is an `-newkey` argument (`rsa:2048`, `ec`, `ed25519`); for `ec` the
/// curve comes from `curve`.
pub fn make_csr(
    dir: &Path,
    name: &str,
    newkey: &str,
    curve: Option<&str>,
    subj: &str,
    extra: &[&str],
) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let mut cmd = openssl(&["req", "-new", "-newkey", newkey]);
    if let Some(c) = curve {
        cmd.args(["-pkeyopt", &format!("ec_paramgen_curve:{c}")]);
    }
    cmd.args(["-nodes", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .args(["-subj", subj])
        .args(extra);
    ok(&mut cmd);
    (key, csr)
}

/// Decodes a trust-roots response (either encoding) into a directory.
pub fn write_trustroots(body: &str, dir: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut names = Vec::new();
    for line in body.lines() {
        let (k, v) = line.split_once('=').unwrap();
        if k == "TRUSTED_CERTS" {
            continue;
        }
        let name = k.strip_prefix("FILEDATA_").unwrap_or(k);
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                && !name.starts_with('.'),
            "hostile file name {name:?}"
        );
        std::fs::write(dir.join(name), b64.decode(v).unwrap()).unwrap();
        names.push(name.to_string());
    }
    names
}

/// One field of a PEM certificate as `openssl x509 -noout FLAG` prints it (`-subject`,
/// `-subject_hash`, ...), trimmed.
pub fn x509_field(pem: &Path, flag: &str) -> String {
    let out = ok(&mut openssl(&[
        "x509",
        "-noout",
        flag,
        "-in",
        pem.to_str().unwrap(),
    ]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether a tool is on PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `openssl x509 -text` of a PEM file.
pub fn x509_text(pem: &Path) -> String {
    let out = ok(&mut openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        pem.to_str().unwrap(),
    ]));
    String::from_utf8_lossy(&out.stdout).to_string()
}

impl TestCa {
    /// `onlineca ARGS --config <this CA's config>`, run to completion.
    pub fn cli(&self, args: &[&str]) -> Output {
        run(onlineca()
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().cloned()))
    }

    /// Like [`TestCa::cli`], insisting on success; returns (stdout, stderr).
    pub fn cli_ok(&self, args: &[&str]) -> (String, String) {
        let out = self.cli(args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "onlineca {args:?} failed: {stderr}\n{stdout}"
        );
        (stdout, stderr)
    }

    /// Fetches the CRL as PEM into `name` (in the temporary directory); returns the path.
    pub fn fetch_crl(&self, name: &str) -> PathBuf {
        let r = self.curl(&[&self.url("crl?format=pem")]);
        assert_eq!(r.status, 200, "{}", r.text());
        let p = self.path(name);
        std::fs::write(&p, &r.body).unwrap();
        p
    }

    /// Polls the CRL until its number exceeds `after` (the server notices a revocation
    /// made by the CLI within its poll interval); returns the PEM path and the number.
    pub fn wait_for_crl_after(&self, after: u64, name: &str) -> (PathBuf, u64) {
        let start = Instant::now();
        loop {
            let p = self.fetch_crl(name);
            let n = crl_number(&p);
            if n > after {
                return (p, n);
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the CRL number stayed at {n}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `openssl crl -text` of a PEM CRL file.
pub fn crl_text(pem: &Path) -> String {
    let out = ok(&mut openssl(&[
        "crl",
        "-noout",
        "-text",
        "-in",
        pem.to_str().unwrap(),
    ]));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The CRL number of a PEM CRL, as OpenSSL reads it.
pub fn crl_number(pem: &Path) -> u64 {
    let out = ok(&mut openssl(&[
        "crl",
        "-noout",
        "-crlnumber",
        "-in",
        pem.to_str().unwrap(),
    ]));
    // `crlNumber=0x0A`
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .trim()
        .strip_prefix("crlNumber=")
        .unwrap_or_else(|| panic!("no CRL number in {text:?}"));
    let hex = hex.strip_prefix("0x").unwrap_or(hex);
    u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad CRL number {text:?}"))
}

/// The serial of a PEM certificate in lowercase hex, as OpenSSL prints it.
pub fn cert_serial(pem: &Path) -> String {
    let out = ok(&mut openssl(&[
        "x509",
        "-noout",
        "-serial",
        "-in",
        pem.to_str().unwrap(),
    ]));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase()
}

/// The admin listener (`[admin] listen`): its port and plain-HTTP requests to it.
pub mod admin {
    use std::process::Command;
    use std::time::{Duration, Instant};

    use super::TestCa;

    /// `[admin] listen` on a free loopback port.
    pub const ADMIN: &str = "\n[admin]\nlisten = \"127.0.0.1:0\"\n";

    /// The admin port, from the line the server prints on stderr at start.
    pub fn admin_port(ca: &TestCa) -> u16 {
        let start = Instant::now();
        loop {
            let log = ca.log_text();
            if let Some(rest) = log
                .lines()
                .find_map(|l| l.strip_prefix("onlineca admin listening on http://127.0.0.1:"))
            {
                return rest.trim().parse().unwrap();
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no admin line:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET http://127.0.0.1:PORT/path` with curl: (status, body).
    pub fn get(port: u16, path: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "-S", "--max-time", "30", "-w", "\n%{http_code}"])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, status) = text.rsplit_once('\n').unwrap();
        (status.trim().parse().unwrap_or(0), body.to_string())
    }

    /// The value of the sample line `series` (name and labels, exactly as exposed).
    pub fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }
}

/// A PostgreSQL schema of its own per test, in the database CI runs at
/// 127.0.0.1:5432 (or `ONLINECA_TEST_PG_URL`).
pub mod pg {
    use super::random_password;
    use sqlx::Connection;

    pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
    pub const PG_INSTALL: &str = "run PostgreSQL at 127.0.0.1:5432 with a database `test` (trust auth), \
                              or set ONLINECA_TEST_PG_URL";

    /// A fresh schema on the test PostgreSQL, or None (a loud skip; a failure in CI).
    pub fn pg_schema(rt: &tokio::runtime::Runtime) -> Option<(String, String)> {
        let base = std::env::var("ONLINECA_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into());
        let schema = format!(
            "e2e_{}",
            random_password()
                .to_ascii_lowercase()
                .replace(['-', '_'], "")
        );
        let made = rt.block_on(async {
            let mut c = sqlx::PgConnection::connect(&base).await?;
            // The name is ours: letters and digits only.
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&mut c)
                .await?;
            Ok::<_, sqlx::Error>(())
        });
        match made {
            Ok(()) => {
                let sep = if base.contains('?') { '&' } else { '?' };
                Some((
                    format!("{base}{sep}options=-c%20search_path%3D{schema}"),
                    schema,
                ))
            }
            Err(e) => {
                onlineca_testkit::skip("PostgreSQL", &format!("{base}: {e}"), PG_INSTALL);
                None
            }
        }
    }

    pub fn drop_schema(rt: &tokio::runtime::Runtime, schema: &str) {
        let base = std::env::var("ONLINECA_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into());
        let _ = rt.block_on(async {
            let mut c = sqlx::PgConnection::connect(&base).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&mut c)
                .await
        });
    }
}
