//! Floods stay bounded: password checks beyond the workers and their queue are
//! refused with 503 instead of growing memory, and the per-address limit answers
//! before a body is read. A real server, real TLS, curl and Python as the clients.

mod common;

use common::*;

/// The server's peak resident memory so far, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"))
}

#[test]
fn unknown_user_logins_beyond_the_password_workers_get_503_and_memory_stays_flat() {
    let mut ca = TestCa::init(&[]);
    ca.edit_config("rate_limit = 120", "rate_limit = 0");
    ca.edit_config("password_threads = 0", "password_threads = 1");
    ca.edit_config("password_queue = 256", "password_queue = 2");
    ca.start();
    let (_k, csr) = make_csr(ca.dir.path(), "f", "ec", Some("P-256"), "/CN=x", &[]);
    // 48 logins at once, each for another unknown name (no lockout, no shared
    // turn): each would be an argon2 verification of 19 MiB.
    let results: Vec<CurlResult> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..48)
            .map(|i| {
                let (ca, csr) = (&ca, &csr);
                s.spawn(move || ca.post_csr(&format!("ghost-{i}"), "guess", csr))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let statuses: Vec<u16> = results.iter().map(|r| r.status).collect();
    assert!(
        statuses.iter().all(|s| [401, 503].contains(s)),
        "{statuses:?}"
    );
    let busy = results
        .iter()
        .find(|r| r.status == 503)
        .unwrap_or_else(|| panic!("no check was refused: {statuses:?}"));
    assert_eq!(busy.header("retry-after"), Some("1"));
    assert!(
        busy.text().contains("too many password checks in progress"),
        "{}",
        busy.text()
    );
    // One worker and a queue of two hold at most three checks: far below what 48
    // verifications at once would take (48 × 19 MiB).
    let peak = peak_rss_kib(ca.pid());
    eprintln!("peak RSS {} MiB; statuses {statuses:?}", peak / 1024);
    assert!(peak < 200 * 1024, "peak RSS {peak} KiB");
    // Served again once the flood is over.
    let pw = ca.add_user("after");
    assert_eq!(ca.post_csr("after", &pw, &csr).status, 200);
}

#[test]
fn the_per_address_limit_answers_before_the_body_arrives() {
    if !have("python3") {
        onlineca_testkit::skip("python3", "not on PATH", "apt-get install python3");
        return;
    }
    let mut ca = TestCa::init(&[]);
    ca.edit_config("rate_limit = 120", "rate_limit = 1");
    ca.edit_config("rate_burst = 30", "rate_burst = 1");
    ca.edit_config("request_timeout = \"30s\"", "request_timeout = \"3s\"");
    ca.start();
    let pw = ca.add_user("hasty");
    let (_k, csr) = make_csr(ca.dir.path(), "h", "ec", Some("P-256"), "/CN=x", &[]);
    assert_eq!(ca.post_csr("hasty", &pw, &csr).status, 200, "the burst");
    // A request announcing 60 KB of body and sending a few bytes: the limit is
    // known from the address alone, so the 429 must not wait for the body (which
    // would end in a 408 after request_timeout).
    let script = r#"
import base64, socket, ssl, sys
root, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=root)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1")
auth = base64.b64encode(f"{user}:{pw}".encode()).decode()
s.sendall((
    "POST /onlineca/certificate/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    f"Authorization: Basic {auth}\r\n"
    "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\n"
    "certificate_request="
).encode())
s.settimeout(60)
print(s.recv(65536).split(b"\r\n")[0].decode())
"#;
    let out = ok(std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(ca.root_pem())
        .arg(ca.port.to_string())
        .args(["hasty", &pw]));
    let status_line = String::from_utf8_lossy(&out.stdout);
    assert!(status_line.contains(" 429 "), "{status_line}");
}
