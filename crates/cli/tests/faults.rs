//! Faults the CA must survive, made for real against the real server: a SQLite store
//! that is locked by another process, on a full disk or on a file system gone
//! read-only; `kill -9` in the middle of a burst of requests; a CA key that others can
//! read or that cannot be read at all. The store faults need root (mounts); without it
//! they skip.
//!
//! The invariant checked throughout: a certificate a client received is recorded in
//! the store (the same certificate, found by its serial), and a refusal while the store
//! cannot write is a 503 with `Retry-After` saying that nothing was issued.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use onlineca_testkit::skip;

/// A file system mounted for one test, unmounted when dropped (lazily if something
/// still holds it open). Its mount point is a temporary directory of its own, removed
/// after the unmount.
struct Mount {
    dir: tempfile::TempDir,
    /// A loop device's backing image, for [`Mount::ext4`].
    image: Option<PathBuf>,
}

impl Mount {
    /// A tmpfs of `size` (as `mount -o size=` takes it), or `None` after a skip.
    fn tmpfs(size: &str) -> Option<Mount> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Mount { dir, image: None }),
            Ok(o) => {
                let why = String::from_utf8_lossy(&o.stderr).trim().to_string();
                skip("permission to mount a tmpfs", &why, "run the tests as root");
                None
            }
            Err(e) => {
                skip("mount", &e.to_string(), "apt-get install mount");
                None
            }
        }
    }

    /// A small journal-less ext4 on a loop device, mounted with `errors=remount-ro`:
    /// what a server's data disk looks like when the kernel makes it read-only on an
    /// error. `None` after a skip.
    fn ext4(image_dir: &Path) -> Option<Mount> {
        let dir = tempfile::tempdir().unwrap();
        let image = image_dir.join("store.img");
        let made = Command::new("truncate")
            .args(["-s", "16M"])
            .arg(&image)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("mkfs.ext4")
                .args(["-q", "-O", "^has_journal"])
                .arg(&image)
                .status()
                .is_ok_and(|s| s.success());
        if !made {
            skip(
                "mkfs.ext4",
                "cannot make an ext4 image",
                "apt-get install e2fsprogs",
            );
            return None;
        }
        let mount = Mount {
            dir,
            image: Some(image),
        };
        match mount.mount_image() {
            Ok(()) => Some(mount),
            Err(why) => {
                skip(
                    "a loop device",
                    &why,
                    "run the tests as root where loop devices exist",
                );
                None
            }
        }
    }

    fn mount_image(&self) -> Result<(), String> {
        let out = Command::new("mount")
            .args(["-o", "loop,errors=remount-ro"])
            .arg(self.image.as_ref().unwrap())
            .arg(self.dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The loop device's name (`loop0`), as `/sys/fs/ext4/` knows it.
    fn device(&self) -> String {
        let out = ok(Command::new("findmnt")
            .args(["-n", "-o", "SOURCE"])
            .arg(self.path()));
        let source = String::from_utf8_lossy(&out.stdout).trim().to_string();
        source.trim_start_matches("/dev/").to_string()
    }

    fn unmount(&self) -> bool {
        Command::new("umount")
            .arg(self.path())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if !self.unmount() {
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}

/// A CA (not started) whose store lives in `dir`, with the per-address limit off
/// (every request here comes from one address).
fn ca_with_store_in(dir: &Path) -> TestCa {
    let ca = TestCa::init(&[]);
    ca.edit_config("rate_limit = 120", "rate_limit = 0");
    ca.edit_config(
        "url = \"sqlite://onlineca.db\"",
        &format!("url = \"sqlite://{}/onlineca.db\"", dir.display()),
    );
    ca
}

/// What a client got: the certificates it was handed (saved to files) and the other
/// statuses.
#[derive(Default)]
struct Received {
    certs: Vec<PathBuf>,
    refusals: Vec<u16>,
}

impl Received {
    /// POSTs the CSR once; keeps a certificate, checks a 503 is the designed refusal.
    fn request(&mut self, ca: &TestCa, user: &str, pw: &str, csr: &Path) -> u16 {
        let r = ca.post_csr(user, pw, csr);
        match r.status {
            200 => {
                let p = ca.path(&format!("received-{}.pem", self.certs.len()));
                std::fs::write(&p, &r.body).unwrap();
                self.certs.push(p);
            }
            503 => {
                assert!(
                    r.header("retry-after").is_some(),
                    "503 without Retry-After: {:?}",
                    r.headers
                );
                assert!(
                    r.text().contains("nothing was issued"),
                    "503 body: {}",
                    r.text()
                );
                assert!(
                    !r.text().contains("BEGIN CERTIFICATE"),
                    "a 503 carried a certificate"
                );
                self.refusals.push(503);
            }
            other => panic!(
                "unexpected status {other}: {}\nlog:\n{}",
                r.text(),
                ca.log_text()
            ),
        }
        r.status
    }
}

/// Every received certificate is in the store, byte for byte, and no serial is
/// recorded twice. Returns how many certificates the store holds.
fn assert_all_recorded(ca: &TestCa, received: &[PathBuf]) -> usize {
    for pem in received {
        let serial = cert_serial(pem);
        let out = ca.cli(&["cert", "show", &serial]);
        assert!(
            out.status.success(),
            "certificate {serial} was handed out but is not recorded: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown = String::from_utf8_lossy(&out.stdout).to_string();
        let handed = std::fs::read_to_string(pem).unwrap();
        assert!(
            shown.contains(first_pem_block(&handed)),
            "the record of {serial} is not the certificate handed out"
        );
    }
    let (json, _) = ca.cli_ok(&["cert", "list", "--all", "--json"]);
    let serials = serials_in(&json);
    let mut unique = serials.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), serials.len(), "a serial is recorded twice");
    serials.len()
}

/// The `"serial"` values of `cert list --json` (no JSON crate among the test's
/// dependencies; the serials are hex, so plain string scanning is exact).
fn serials_in(json: &str) -> Vec<String> {
    json.split("\"serial\":\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

/// The reasons the server logged for its 503s (shown with `--nocapture`, for the
/// record of what each fault looks like).
fn logged_503s(ca: &TestCa) -> Vec<String> {
    ca.log_text()
        .lines()
        .filter(|l| l.contains("status=503"))
        .filter_map(|l| l.split(" error=").nth(1).map(str::to_string))
        .collect()
}

/// The first PEM block of a file (the certificate; the chain follows).
fn first_pem_block(text: &str) -> &str {
    let end = "-----END CERTIFICATE-----";
    let stop = text.find(end).expect("no certificate in the response") + end.len();
    &text[..stop]
}

#[test]
fn a_locked_store_refuses_with_503_and_serves_again_when_the_lock_goes() {
    if !have("python3") {
        skip("python3", "not on PATH", "apt-get install python3");
        return;
    }
    let mut ca = TestCa::init(&[]);
    ca.edit_config("rate_limit = 120", "rate_limit = 0");
    ca.start();
    let pw = ca.add_user("lena");
    let (_k, csr) = make_csr(ca.dir.path(), "l", "ec", Some("P-256"), "/CN=x", &[]);
    let mut got = Received::default();
    assert_eq!(got.request(&ca, "lena", &pw, &csr), 200);

    // Another process takes the write lock and keeps it until told to let go: longer
    // than the store's 5 s busy timeout, however slow the machine.
    let script = "import sqlite3, sys\n\
                  c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n\
                  c.execute('BEGIN EXCLUSIVE')\n\
                  print('locked', flush=True)\n\
                  sys.stdin.readline()\n\
                  c.execute('COMMIT')\n\
                  print('released', flush=True)\n";
    let mut holder = Command::new("python3")
        .args(["-c", script])
        .arg(ca.home.join("onlineca.db"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "locked");

    assert_eq!(got.request(&ca, "lena", &pw, &csr), 503);
    // Reads go on: the trust roots answer while writes cannot.
    assert_eq!(ca.curl(&[&ca.url("trustroots/")]).status, 200);

    writeln!(holder.stdin.take().unwrap()).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "released");
    assert!(holder.wait().unwrap().success());

    assert_eq!(got.request(&ca, "lena", &pw, &csr), 200, "after the lock");
    let recorded = assert_all_recorded(&ca, &got.certs);
    eprintln!(
        "locked store: {} certificates received, {:?} refused, {recorded} recorded",
        got.certs.len(),
        got.refusals
    );
    eprintln!("locked store: logged {:?}", logged_503s(&ca));
}

#[test]
fn a_full_disk_refuses_with_503_and_serves_again_when_space_is_freed() {
    let Some(mnt) = Mount::tmpfs("4m") else {
        return;
    };
    let mut ca = ca_with_store_in(mnt.path());
    ca.start();
    let pw = ca.add_user("fred");
    let (_k, csr) = make_csr(ca.dir.path(), "f", "ec", Some("P-256"), "/CN=x", &[]);
    let mut got = Received::default();
    assert_eq!(got.request(&ca, "fred", &pw, &csr), 200);

    // Fill the file system to the last byte.
    let filler = mnt.path().join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        let mut small = vec![0u8; 512];
        loop {
            if f.write_all(&chunk).is_err() {
                // The last partial chunk: fill what remains in small pieces.
                while f.write_all(&small).is_ok() {}
                small.truncate(1);
                while f.write_all(&small).is_ok() {}
                break;
            }
        }
    }
    // Each record appends to the WAL; a WAL with room left from earlier writes may
    // take a few more before SQLite needs a new page. Certificates handed out meanwhile
    // were recorded (checked below); the first refusal must come, and be a 503.
    let mut refused = false;
    for _ in 0..100 {
        if got.request(&ca, "fred", &pw, &csr) == 503 {
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "100 requests on a full disk all succeeded; log:\n{}",
        ca.log_text()
    );
    // And again: the store stays refusing, it does not wedge or answer 500.
    assert_eq!(got.request(&ca, "fred", &pw, &csr), 503);

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(
        got.request(&ca, "fred", &pw, &csr),
        200,
        "after space was freed; log:\n{}",
        ca.log_text()
    );
    let recorded = assert_all_recorded(&ca, &got.certs);
    eprintln!(
        "full disk: {} certificates received, {} refused with 503, {recorded} recorded",
        got.certs.len(),
        got.refusals.len()
    );
    eprintln!("full disk: logged {:?}", logged_503s(&ca));
    drop(ca);
    drop(mnt);
}

#[test]
fn a_store_gone_read_only_refuses_with_503_and_serves_again_after_repair() {
    // Linux refuses to remount a file system read-only while a process has files open
    // on it for writing (the server always has), so the fault is made the way it
    // happens to a running server: the kernel turns an ext4 read-only on an error
    // (`errors=remount-ro`). Only unmounting clears that, which needs the server's
    // files closed: recovery here is repair and restart.
    let scratch = tempfile::tempdir().unwrap();
    let Some(mnt) = Mount::ext4(scratch.path()) else {
        return;
    };
    let mut ca = ca_with_store_in(mnt.path());
    ca.start();
    let pw = ca.add_user("rita");
    let (_k, csr) = make_csr(ca.dir.path(), "r", "ec", Some("P-256"), "/CN=x", &[]);
    let mut got = Received::default();
    assert_eq!(got.request(&ca, "rita", &pw, &csr), 200);

    let trigger = format!("/sys/fs/ext4/{}/trigger_fs_error", mnt.device());
    std::fs::write(&trigger, "onlineca fault test").unwrap();
    assert_eq!(got.request(&ca, "rita", &pw, &csr), 503);
    assert_eq!(got.request(&ca, "rita", &pw, &csr), 503, "stays refusing");
    assert_eq!(ca.curl(&[&ca.url("trustroots/")]).status, 200);
    eprintln!("read-only store: logged {:?}", logged_503s(&ca));

    // Repair: stop the server, unmount, check the file system, mount, start again.
    assert!(ca.stop(Duration::from_secs(60)).is_some(), "did not stop");
    assert!(mnt.unmount(), "cannot unmount the read-only file system");
    // Exit 1: errors corrected (the one the test made); 2 and above: not repaired.
    let fsck = run(Command::new("e2fsck")
        .args(["-f", "-y"])
        .arg(mnt.image.as_ref().unwrap()));
    assert!(
        fsck.status.code().is_some_and(|c| c <= 1),
        "e2fsck: {fsck:?}"
    );
    mnt.mount_image().unwrap();
    ca.start();
    assert_eq!(got.request(&ca, "rita", &pw, &csr), 200, "after repair");
    let recorded = assert_all_recorded(&ca, &got.certs);
    eprintln!(
        "read-only store: {} certificates received, {} refused with 503, {recorded} recorded",
        got.certs.len(),
        got.refusals.len()
    );
    drop(ca);
    drop(mnt);
}

#[test]
fn kill_9_during_a_burst_loses_no_certificate_a_client_received() {
    let mut ca = TestCa::init(&[]);
    ca.edit_config("rate_limit = 120", "rate_limit = 0");
    ca.start();
    let pw = ca.add_user("kim");
    let (_k, csr) = make_csr(ca.dir.path(), "k", "ec", Some("P-256"), "/CN=x", &[]);

    // 8 clients, 40 requests each at most; the server is killed once 40 certificates
    // have been handed out, with requests in flight.
    const CLIENTS: usize = 8;
    const EACH: usize = 40;
    const KILL_AFTER: usize = 40;
    let handed = AtomicUsize::new(0);
    let killed = AtomicBool::new(false);
    let (received, failed): (Vec<PathBuf>, usize) = std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (ca, csr, pw, handed, killed) = (&ca, &csr, &pw, &handed, &killed);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    let mut failed = 0;
                    for i in 0..EACH {
                        let r = ca.post_csr("kim", pw, csr);
                        if r.transport_ok && r.status == 200 {
                            let p = ca.path(&format!("kill9-{c}-{i}.pem"));
                            std::fs::write(&p, &r.body).unwrap();
                            mine.push(p);
                            handed.fetch_add(1, Ordering::SeqCst);
                        } else {
                            // Before the kill every request must succeed.
                            assert!(
                                killed.load(Ordering::SeqCst),
                                "status {} before the kill: {} {}",
                                r.status,
                                r.text(),
                                r.stderr
                            );
                            failed += 1;
                            break;
                        }
                    }
                    (mine, failed)
                })
            })
            .collect();
        let start = Instant::now();
        while handed.load(Ordering::SeqCst) < KILL_AFTER {
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "no progress; log:\n{}",
                ca.log_text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        killed.store(true, Ordering::SeqCst);
        // SIGKILL: no shutdown, no flush. The child is reaped (by `stop`) after the
        // clients are done, so its pid cannot be reused meanwhile.
        ok(Command::new("kill").args(["-KILL", &ca.pid().to_string()]));
        let mut all = Vec::new();
        let mut failed = 0;
        for c in clients {
            let (mine, f) = c.join().unwrap();
            all.extend(mine);
            failed += f;
        }
        (all, failed)
    });

    ca.stop(Duration::from_secs(60));
    ca.start();
    let mut after = Received::default();
    assert_eq!(after.request(&ca, "kim", &pw, &csr), 200, "after restart");
    let mut all = received.clone();
    all.extend(after.certs);
    let mut serials: Vec<String> = all.iter().map(|p| cert_serial(p)).collect();
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), all.len(), "a serial was handed out twice");
    let recorded = assert_all_recorded(&ca, &all);
    assert!(recorded >= all.len());
    eprintln!(
        "kill -9: {} certificates received before the kill, {failed} requests cut off, \
         {recorded} recorded after restart (including 1 after), no serial repeated",
        received.len()
    );
}

/// Runs `onlineca serve` and waits for it to exit (it must refuse to start); if it
/// starts listening instead, it is stopped and the test fails.
fn serve_must_refuse(ca: &TestCa) -> String {
    let mut child = onlineca()
        .arg("serve")
        .arg("--config")
        .arg(&ca.config)
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let line = BufReader::new(stdout).lines().next();
        let _ = tx.send(line.and_then(Result::ok).unwrap_or_default());
    });
    let first = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    if first.starts_with("onlineca listening") {
        let _ = child.kill();
        let _ = child.wait();
        panic!("onlineca serve started: {first}");
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "serve exited 0");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn a_ca_key_others_can_read_stops_the_server_unless_allowed() {
    let mut ca = TestCa::init(&[]);
    let key = ca.home.join("ca/issuing.key");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600, "init writes the CA key 0600");
    assert_eq!(mode(&ca.home.join("ca/root.key")), 0o600);
    assert_eq!(mode(&ca.home.join("tls/server.key")), 0o600);

    for insecure in [0o640, 0o604, 0o644] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(insecure)).unwrap();
        let err = serve_must_refuse(&ca);
        assert!(err.contains(key.to_str().unwrap()), "{insecure:o}: {err}");
        assert!(
            err.contains(&format!("chmod 600 {}", key.display())),
            "{insecure:o}: {err}"
        );
        assert!(
            err.contains("allow_insecure_key_permissions"),
            "{insecure:o}: {err}"
        );
        // `config check` says the same.
        let out = ca.cli(&["config", "check"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    }

    // Explicitly allowed: it starts, says so in its log, and `config check` shows it.
    ca.edit_config(
        "allow_insecure_key_permissions = false",
        "allow_insecure_key_permissions = true",
    );
    let (summary, _) = ca.cli_ok(&["config", "check"]);
    assert!(
        summary
            .lines()
            .any(|l| l.starts_with("ca.allow_insecure_key_permissions") && l.ends_with("true")),
        "{summary}"
    );
    ca.start();
    assert_eq!(ca.curl(&[&ca.url("trustroots/")]).status, 200);
    assert!(
        ca.log_text()
            .contains("allowed by [ca] allow_insecure_key_permissions"),
        "{}",
        ca.log_text()
    );
}

#[test]
fn an_unreadable_ca_key_stops_the_server_naming_the_file() {
    // As root a file's mode does not stop reading, so "unreadable" is made in ways
    // that hold for root too: a directory where the key should be, and no file.
    let ca = TestCa::init(&[]);
    let key = ca.home.join("ca/issuing.key");
    std::fs::rename(&key, ca.path("moved.key")).unwrap();
    let err = serve_must_refuse(&ca);
    assert!(err.contains(key.to_str().unwrap()), "{err}");
    assert!(err.contains("No such file"), "{err}");

    std::fs::create_dir(&key).unwrap();
    let err = serve_must_refuse(&ca);
    assert!(err.contains(key.to_str().unwrap()), "{err}");
    assert!(err.contains("directory"), "{err}");
}
