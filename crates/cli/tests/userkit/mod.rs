//! Test kit for the user's side: trust roots fetched and a certificate obtained
//! with the real `onlineca trustroots` / `onlineca getcert`, and the real relying
//! parties (nginx, curl, Python, PHP) that use them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestCa, ok, onlineca, openssl, random_password, run, run_with_stdin};

/// Whether a tool needed by a test is present (`check` succeeds). Missing: a skip
/// shown in the test run and its summary, a failure in CI (where `.ci/run`
/// installs everything).
pub fn require(what: &str, install: &str, check: &mut Command) -> bool {
    let present = check
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !present {
        onlineca_testkit::skip(what, &format!("{check:?} failed"), install);
    }
    present
}

/// The SHA-256 fingerprint of a PEM certificate, as OpenSSL prints it.
pub fn fingerprint(pem: &Path) -> String {
    let out = ok(&mut openssl(&[
        "x509",
        "-noout",
        "-fingerprint",
        "-sha256",
        "-in",
        pem.to_str().unwrap(),
    ]));
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim().split_once('=').unwrap().1.to_string()
}

/// `onlineca trustroots --url BASE --dir DIR` with extra arguments.
pub fn trustroots(ca: &TestCa, dir: &Path, extra: &[&str]) -> Output {
    run(onlineca()
        .arg("trustroots")
        .args(["--url", &ca.base, "--dir"])
        .arg(dir)
        .args(extra))
}

/// `onlineca getcert` for `user` with the password on stdin.
pub fn getcert(ca: &TestCa, trust: &Path, user: &str, password: &str, extra: &[&str]) -> Output {
    run_with_stdin(
        onlineca()
            .arg("getcert")
            .args([
                "--url",
                &ca.base,
                "--user",
                user,
                "--password-stdin",
                "--trustroots",
            ])
            .arg(trust)
            .args(extra),
        format!("{password}\n").as_bytes(),
    )
}

/// Text of stdout then stderr.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A running CA, a user, pinned trust roots and that user's certificate in every
/// output form.
pub struct Holder {
    /// The CA (its temporary directory holds everything below).
    pub ca: TestCa,
    /// The username.
    pub user: String,
    /// The trust-roots directory.
    pub trust: PathBuf,
    /// Certificate(s), PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
    /// Certificate(s) then key.
    pub bundle: PathBuf,
    /// PKCS#12.
    pub p12: PathBuf,
    /// The PKCS#12 password.
    pub p12_password: String,
}

impl Holder {
    /// Starts a CA, adds `alice`, fetches the trust roots pinned by the root's
    /// fingerprint and gets a certificate written as --cert/--key, --bundle, --p12.
    pub fn new() -> Holder {
        let ca = TestCa::start_default();
        let user = "alice".to_string();
        let password = ca.add_user(&user);
        let trust = ca.path("trustroots");
        let fp = fingerprint(&ca.root_pem());
        let out = trustroots(&ca, &trust, &["--fingerprint", &fp]);
        assert!(out.status.success(), "trustroots: {}", text(&out));
        let p12_password = random_password();
        let pwfile = ca.path("p12-password");
        std::fs::write(&pwfile, format!("{p12_password}\n")).unwrap();
        let (cert, key, bundle, p12) = (
            ca.path("alice.pem"),
            ca.path("alice.key"),
            ca.path("alice-bundle.pem"),
            ca.path("alice.p12"),
        );
        let out = getcert(
            &ca,
            &trust,
            &user,
            &password,
            &[
                "--cert",
                cert.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
                "--bundle",
                bundle.to_str().unwrap(),
                "--p12",
                p12.to_str().unwrap(),
                "--p12-password-file",
                pwfile.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "getcert: {}", text(&out));
        Holder {
            ca,
            user,
            trust,
            cert,
            key,
            bundle,
            p12,
            p12_password,
        }
    }

    /// A client certificate for the same name from a CA that is not this one.
    pub fn foreign_cert(&self) -> (PathBuf, PathBuf) {
        let d = self.ca.dir.path();
        let (ca_key, ca_pem) = (d.join("other-ca.key"), d.join("other-ca.pem"));
        ok(openssl(&["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .arg("ec_paramgen_curve:P-256")
            .args(["-nodes", "-days", "1", "-subj", "/O=Elsewhere/CN=Other CA"])
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca_pem));
        let (key, csr) = crate::common::make_csr(
            d,
            "foreign",
            "ec",
            Some("P-256"),
            &format!("/O=onlineca/OU=Users/CN={}", self.user),
            &[],
        );
        let ext = d.join("foreign.ext");
        std::fs::write(&ext, "extendedKeyUsage=clientAuth\n").unwrap();
        let cert = d.join("foreign.pem");
        ok(openssl(&["x509", "-req", "-days", "1"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&ca_pem)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert));
        (cert, key)
    }
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx as a relying party: mutual TLS required (`ssl_verify_client on`), client
/// CAs from the trust roots, a page that shows the client's DN.
pub struct Nginx {
    /// `https://127.0.0.1:PORT/`.
    pub url: String,
    dir: PathBuf,
    child: Child,
}

impl Nginx {
    /// Starts nginx (not as a daemon) for `holder`. Its own TLS certificate is a
    /// host certificate for 127.0.0.1 signed by the CA's root, so that clients
    /// can verify the service with the same trust-roots directory.
    pub fn start(holder: &Holder) -> Nginx {
        Nginx::start_with(holder, "on", "")
    }

    /// Like [`Nginx::start`], with `ssl_verify_client {verify}` and more `location`
    /// blocks.
    pub fn start_with(holder: &Holder, verify: &str, locations: &str) -> Nginx {
        Nginx::start_full(holder, verify, locations, None)
    }

    /// Like [`Nginx::start`], with this host certificate (then its chain) and key
    /// instead of one made here.
    pub fn start_with_host(holder: &Holder, cert: &Path, key: &Path) -> Nginx {
        Nginx::start_full(holder, "on", "", Some((cert, key)))
    }

    fn start_full(
        holder: &Holder,
        verify: &str,
        locations: &str,
        host: Option<(&Path, &Path)>,
    ) -> Nginx {
        let dir = holder.ca.path("nginx");
        for sub in ["", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // The client CA file: every CA certificate of the trust roots.
        let mut cas = String::new();
        let mut names: Vec<_> = std::fs::read_dir(&holder.trust)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".0"))
            .collect();
        names.sort();
        for n in names {
            cas.push_str(&std::fs::read_to_string(holder.trust.join(n)).unwrap());
        }
        std::fs::write(dir.join("client-cas.pem"), cas).unwrap();

        // The service's own host certificate.
        let root_key = holder.ca.home.join("ca/root.key");
        let (key, csr) =
            crate::common::make_csr(&dir, "host", "ec", Some("P-256"), "/CN=127.0.0.1", &[]);
        let key = match host {
            Some((cert, host_key)) => {
                std::fs::copy(cert, dir.join("host.pem")).unwrap();
                host_key.to_path_buf()
            }
            None => key,
        };
        std::fs::write(
            dir.join("host.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        if host.is_none() {
            ok(openssl(&["x509", "-req", "-days", "1"])
                .arg("-in")
                .arg(&csr)
                .arg("-CA")
                .arg(holder.ca.root_pem())
                .arg("-CAkey")
                .arg(&root_key)
                .arg("-extfile")
                .arg(dir.join("host.ext"))
                .arg("-out")
                .arg(dir.join("host.pem")));
        }

        let port = free_port();
        let d = dir.display();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {d}/host.pem;
        ssl_certificate_key {key};
        ssl_client_certificate {d}/client-cas.pem;
        ssl_verify_client {verify};
        ssl_verify_depth 3;
        location / {{
            default_type text/plain;
            return 200 "client DN: $ssl_client_s_dn\n";
        }}
        {locations}
    }}
}}
"#,
            key = key.display()
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut child = Command::new(nginx_binary())
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let start = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "nginx exited ({st}): {}",
                    std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
                );
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("nginx did not start listening");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx {
            url: format!("https://127.0.0.1:{port}/"),
            dir,
            child,
        }
    }

    /// nginx's error log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx's path: on PATH, else Debian's /usr/sbin/nginx (not on a user's PATH).
pub fn nginx_binary() -> PathBuf {
    for p in std::env::var("PATH").unwrap_or_default().split(':') {
        let c = Path::new(p).join("nginx");
        if c.is_file() {
            return c;
        }
    }
    PathBuf::from("/usr/sbin/nginx")
}

/// Whether nginx can run here.
pub fn have_nginx() -> bool {
    require(
        "nginx",
        "apt-get install nginx",
        Command::new(nginx_binary()).arg("-v"),
    )
}

/// `curl` against a relying party, verifying it with the trust-roots directory;
/// returns (HTTP status, body).
pub fn curl(trust: &Path, url: &str, args: &[&str]) -> (u16, String) {
    let out = run(Command::new("curl")
        .args(["-s", "-S", "--max-time", "60", "--capath"])
        .arg(trust)
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .arg(url));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim().parse().unwrap_or_else(|_| {
            panic!(
                "curl gave no status: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        }),
        body.to_string(),
    )
}
