//! Behind a TCP load balancer: a real HAProxy (`mode tcp`, `send-proxy-v2`) in front
//! of two real servers on one PostgreSQL database, driven by curl from two loopback
//! addresses. The client's address, from the PROXY header, is the one recorded,
//! logged, audited and rate-limited; a header from anyone not listed is refused, and
//! so is a listed balancer's connection without one; a v1 header (nginx's) works.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pg::{drop_schema, pg_schema};
use common::*;

const HAPROXY_INSTALL: &str = "apt-get install haproxy";

/// The servers' log level: info, and the accept loop's debug lines (the refusals
/// anyone can cause are logged at debug).
const LOG: &str = "info,onlineca_server::serve=debug";

/// The haproxy program (Debian puts it in /usr/sbin, which a user's PATH may lack),
/// or `None`, reported as a skip.
fn haproxy() -> Option<PathBuf> {
    let found = ["haproxy", "/usr/sbin/haproxy"]
        .into_iter()
        .find(|p| Command::new(p).arg("-v").output().is_ok());
    if found.is_none() {
        onlineca_testkit::skip(
            "haproxy",
            "neither haproxy on PATH nor /usr/sbin/haproxy",
            HAPROXY_INSTALL,
        );
    }
    found.map(PathBuf::from)
}

/// A CA whose server takes PROXY headers from `networks` (a TOML array).
fn ca_behind(networks: &str) -> TestCa {
    let ca = TestCa::init_with_env(&[], &[("RUST_LOG".into(), LOG.into())]);
    ca.edit_config(
        "# proxy_protocol_from = []",
        &format!("proxy_protocol_from = {networks}"),
    );
    ca
}

/// A free port on 127.0.0.1 (bound, then let go).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// HAProxy in the foreground, killed on drop.
struct Haproxy {
    child: Child,
    port: u16,
}

impl Haproxy {
    /// `mode tcp`, round robin over `backends` with `send-proxy-v2`, and a health
    /// check over TLS (which sends a PROXY `LOCAL` header) fetching the trust roots,
    /// verified against `root`.
    fn start(program: &Path, dir: &Path, backends: &[u16], root: &Path) -> Haproxy {
        let port = free_port();
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, p)| format!("    server s{i} 127.0.0.1:{p}\n"))
            .collect();
        let config = format!(
            "global\n    maxconn 256\n\
             defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
             frontend onlineca\n    bind 127.0.0.1:{port}\n    default_backend instances\n\
             backend instances\n    balance roundrobin\n\
             \x20   option httpchk\n\
             \x20   http-check send meth GET uri /onlineca/trustroots/ ver HTTP/1.1 hdr Host localhost\n\
             \x20   http-check expect status 200\n\
             \x20   default-server send-proxy-v2 check check-ssl verify required ca-file {root} verifyhost localhost inter 500ms\n\
             {servers}",
            root = root.display()
        );
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config).unwrap();
        let out = std::fs::File::create(dir.join("haproxy.out")).unwrap();
        let child = Command::new(program)
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut h = Haproxy { child, port };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = h.child.try_wait() {
                panic!(
                    "haproxy exited ({st}): {}",
                    std::fs::read_to_string(dir.join("haproxy.out")).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "haproxy did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        h
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}/onlineca/{path}", self.port)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A certificate request through HAProxy from loopback address `from`.
fn post_via(ca: &TestCa, lb: &Haproxy, from: &str, user: &str, pw: &str, csr: &Path) -> u16 {
    let field = format!("certificate_request@{}", csr.display());
    let r = ca.curl(&[
        "--interface",
        from,
        "-u",
        &format!("{user}:{pw}"),
        "--data-urlencode",
        &field,
        &lb.url("certificate/"),
    ]);
    assert!(r.transport_ok, "curl from {from}: {}", r.stderr);
    r.status
}

/// The `client=` values of a server's access-log lines for `path`.
fn access_clients(log: &str, path: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("onlineca::access") && l.contains(&format!("path={path} ")))
        .filter_map(|l| l.split(" client=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Waits until `cond` holds for the text `read` returns (at most 30 s).
fn wait_for(what: &str, read: impl Fn() -> String, cond: impl Fn(&str) -> bool) {
    let start = Instant::now();
    loop {
        let text = read();
        if cond(&text) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{what}:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn haproxy_in_front_of_two_instances_passes_the_client_address() {
    let Some(haproxy) = haproxy() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some((url, schema)) = pg_schema(&rt) else {
        return;
    };
    let setup = |ca: &TestCa| {
        ca.edit_config(
            "url = \"sqlite://onlineca.db\"",
            &format!("url = \"{url}\""),
        );
        ca.edit_config("rate_limit = 120", "rate_limit = 6");
        ca.edit_config("rate_burst = 30", "rate_burst = 3");
    };
    let mut a = ca_behind(r#"["127.0.0.1/32"]"#);
    setup(&a);
    a.start();
    let mut b = TestCa::twin_of(&a);
    b.env = a.env.clone();
    b.edit_config(
        "# proxy_protocol_from = []",
        r#"proxy_protocol_from = ["127.0.0.1/32"]"#,
    );
    setup(&b);
    b.start();
    let (check, _) = a.cli_ok(&["config", "check"]);
    assert!(
        check.contains("server.proxy_protocol_from   127.0.0.1/32 (a PROXY protocol header"),
        "{check}"
    );
    let lb = Haproxy::start(&haproxy, a.dir.path(), &[a.port, b.port], &a.root_pem());
    // HAProxy's health checks reach both servers through TLS with a LOCAL header:
    // logged as HAProxy's own address (so a LOCAL header is accepted, and keeps it).
    for ca in [&a, &b] {
        wait_for(
            "no health check from HAProxy in the log",
            || ca.log_text(),
            |log| access_clients(log, "/onlineca/trustroots/").contains(&"127.0.0.1".into()),
        );
    }

    let pw = a.add_user("alice");
    let (_k, csr) = make_csr(a.dir.path(), "c", "ec", Some("P-256"), "/CN=x", &[]);
    // Rate limit: 3 at once per instance, per client address. Round robin sends
    // 127.0.0.7 to each instance in turn: six pass, then the limit holds.
    let mut statuses = Vec::new();
    while statuses.len() < 12 && !statuses.contains(&429) {
        statuses.push(post_via(&a, &lb, "127.0.0.7", "alice", &pw, &csr));
    }
    assert!(
        statuses.iter().take(6).all(|&s| s == 200) && statuses.last() == Some(&429),
        "{statuses:?}\nA:\n{}\nB:\n{}",
        a.log_text(),
        b.log_text()
    );
    // ...and only for 127.0.0.7: another client through the same HAProxy (so from
    // the same TCP peer) is served, on both instances.
    for _ in 0..2 {
        assert_eq!(post_via(&a, &lb, "127.0.0.8", "alice", &pw, &csr), 200);
    }

    // The store records the client's address, whichever instance issued.
    let (json, _) = a.cli_ok(&["cert", "list", "--all", "--json"]);
    let json = json.replace([' ', '\n'], "");
    let count = |addr: &str| json.matches(&format!("\"client_addr\":\"{addr}\"")).count();
    let issued = statuses.iter().filter(|&&s| s == 200).count();
    assert_eq!(count("127.0.0.7"), issued, "{json}");
    assert_eq!(count("127.0.0.8"), 2, "{json}");
    assert_eq!(
        json.matches("\"client_addr\"").count(),
        issued + 2,
        "{json}"
    );
    // Both access logs and both audit logs name the clients, never HAProxy.
    for ca in [&a, &b] {
        let log = ca.log_text();
        let clients = access_clients(&log, "/onlineca/certificate/");
        assert!(clients.contains(&"127.0.0.7".into()), "{log}");
        assert!(clients.contains(&"127.0.0.8".into()), "{log}");
        assert!(
            clients.iter().all(|c| c == "127.0.0.7" || c == "127.0.0.8"),
            "{clients:?}"
        );
        let audit = std::fs::read_to_string(ca.home.join("audit.jsonl"))
            .unwrap()
            .replace(' ', "");
        assert!(audit.contains("\"client\":\"127.0.0.7\""), "{audit}");
        assert!(!audit.contains("\"client\":\"127.0.0.1\""), "{audit}");
    }
    // The 429s are 127.0.0.7's.
    let limited: usize = [&a, &b]
        .iter()
        .map(|ca| {
            ca.log_text()
                .lines()
                .filter(|l| l.contains("status=429") && l.contains("client=127.0.0.7"))
                .count()
        })
        .sum();
    assert_eq!(limited, 1);

    drop(lb);
    drop(a);
    drop(b);
    drop_schema(&rt, &schema);
}

/// A rustls client configuration trusting `ca`'s root.
fn tls_config(ca: &TestCa) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca.root_pem()).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Sends `prefix` on a fresh connection to `ca`, then a GET of `path` over TLS; the
/// response's status line, or what went wrong.
fn get_after(ca: &TestCa, prefix: &[u8], path: &str) -> Result<String, String> {
    let mut sock = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], ca.port))).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    sock.write_all(prefix).map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(tls_config(ca), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    if let Err(e) = tls.read_to_end(&mut out)
        && out.is_empty()
    {
        return Err(e.to_string());
    }
    if out.is_empty() {
        return Err("closed without an answer".into());
    }
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

/// A PROXY v2 header for a TCP over IPv4 connection from `src`.
fn v2_header(src: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

#[test]
fn a_header_from_an_address_not_listed_is_refused() {
    // 127.0.0.1 is not the listed balancer: it may not name its own address.
    let mut ca = ca_behind(r#"["10.9.9.9/32"]"#);
    ca.start();
    let pw = ca.add_user("mallory");
    let (_k, csr) = make_csr(ca.dir.path(), "m", "ec", Some("P-256"), "/CN=x", &[]);
    let r = get_after(
        &ca,
        &v2_header([203, 0, 113, 9], 5555),
        "/onlineca/trustroots/",
    );
    assert!(r.is_err(), "a spoofed address got an answer: {r:?}");
    let r = get_after(&ca, b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n", "/");
    assert!(r.is_err(), "a spoofed address got an answer: {r:?}");
    // The same client without a header is an ordinary client.
    let r = get_after(&ca, b"", "/onlineca/trustroots/");
    assert!(
        r.as_deref().is_ok_and(|s| s.starts_with("HTTP/1.1 200")),
        "{r:?}"
    );
    assert_eq!(ca.post_csr("mallory", &pw, &csr).status, 200);
    ca.stop(Duration::from_secs(30));
    let log = ca.log_text();
    assert_eq!(
        log.matches("PROXY header from an address not in server.proxy_protocol_from")
            .count(),
        2,
        "{log}"
    );
    assert!(!log.contains("203.0.113.9"), "{log}");
    let (json, _) = ca.cli_ok(&["cert", "list", "--all", "--json"]);
    assert!(
        json.contains("127.0.0.1") && !json.contains("203.0.113.9"),
        "{json}"
    );
}

#[test]
fn a_listed_balancer_must_send_a_header_and_v1_is_accepted() {
    let mut ca = ca_behind(r#"["127.0.0.1/32", "::1/128"]"#);
    ca.start();
    // Straight from the balancer's address, no header: dropped, no answer.
    let r = ca.curl(&[&ca.url("trustroots/")]);
    assert!(!r.transport_ok && r.status == 0, "{r:?}");
    // A v1 header, as nginx's `proxy_protocol on` sends it: the client is 127.0.0.9.
    let r = get_after(
        &ca,
        b"PROXY TCP4 127.0.0.9 127.0.0.1 5555 443\r\n",
        "/onlineca/trustroots/",
    );
    assert!(
        r.as_deref().is_ok_and(|s| s.starts_with("HTTP/1.1 200")),
        "{r:?}"
    );
    // v1 over IPv6, and v1 UNKNOWN (the balancer's own connection).
    let r = get_after(
        &ca,
        b"PROXY TCP6 2001:db8::9 ::1 5555 443\r\n",
        "/onlineca/trustroots/",
    );
    assert!(
        r.as_deref().is_ok_and(|s| s.starts_with("HTTP/1.1 200")),
        "{r:?}"
    );
    let r = get_after(&ca, b"PROXY UNKNOWN\r\n", "/onlineca/trustroots/");
    assert!(
        r.as_deref().is_ok_and(|s| s.starts_with("HTTP/1.1 200")),
        "{r:?}"
    );
    // A broken header is no header.
    let r = get_after(
        &ca,
        b"PROXY TCP4 127.0.0.9 nowhere 5555 443\r\n",
        "/onlineca/trustroots/",
    );
    assert!(r.is_err(), "{r:?}");
    ca.stop(Duration::from_secs(30));
    let log = ca.log_text();
    assert_eq!(
        access_clients(&log, "/onlineca/trustroots/"),
        ["127.0.0.9", "2001:db8::9", "127.0.0.1"],
        "{log}"
    );
    assert_eq!(
        log.matches("connection from a balancer without a valid PROXY header; dropped")
            .count(),
        2,
        "{log}"
    );
}

/// A TLS connection to `ca` after `prefix`, handshake done and left open; or why not.
fn open_after(
    ca: &TestCa,
    prefix: &[u8],
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let mut sock = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], ca.port))).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    sock.write_all(prefix).map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(tls_config(ca), name).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
    }
    Ok(rustls::StreamOwned::new(conn, sock))
}

#[test]
fn the_connection_cap_counts_the_client_not_the_balancer() {
    let mut ca = ca_behind(r#"["127.0.0.1/32"]"#);
    ca.edit_config(
        "max_connections_per_address = 64",
        "max_connections_per_address = 1",
    );
    ca.start();
    let from = |ip: &str| format!("PROXY TCP4 {ip} 127.0.0.1 5555 443\r\n").into_bytes();
    let held = open_after(&ca, &from("127.0.0.9")).expect("the first connection");
    // All three come from the balancer's address; the cap is per client.
    let r = open_after(&ca, &from("127.0.0.9"));
    assert!(r.is_err(), "a second connection for 127.0.0.9 was let in");
    let other = open_after(&ca, &from("127.0.0.10"));
    assert!(
        other.is_ok(),
        "another client was refused: {:?}",
        other.err()
    );
    drop(held);
    // Given back when closed (the server notices the close first).
    let start = Instant::now();
    while open_after(&ca, &from("127.0.0.9")).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never given back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
