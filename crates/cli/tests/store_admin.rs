//! The store's schema is upgraded deliberately: `store status` and `store migrate`
//! against PostgreSQL (two at once), `serve` refusing a schema one migration behind
//! unless `auto_migrate`; and PostgreSQL over TLS against a private cluster started
//! here (`ssl=on`, `hostssl` with client certificates only): `verify-full` works end
//! to end, a wrong root or `sslmode=disable` stops `serve` with a clear message.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pg::{drop_schema, pg_schema};
use common::*;
use sqlx::Connection;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// `serve`, expected to stop at start: its stderr.
fn serve_fails(ca: &TestCa) -> String {
    let out = run(onlineca()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&ca.config)
        .stdin(Stdio::null()));
    assert!(!out.status.success(), "serve started");
    stderr_of(&out)
}

fn exec(rt: &tokio::runtime::Runtime, url: &str, sql: &[&str]) {
    rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        for s in sql {
            sqlx::query(sqlx::AssertSqlSafe(s.to_string()))
                .execute(&mut c)
                .await
                .unwrap();
        }
    });
}

#[test]
fn postgresql_schemas_are_upgraded_only_by_store_migrate() {
    let rt = rt();
    let Some((url, schema)) = pg_schema(&rt) else {
        return;
    };
    let mut ca = TestCa::init(&[]);
    ca.edit_config(
        "url = \"sqlite://onlineca.db\"",
        &format!("url = \"{url}\""),
    );
    let (status, _) = ca.cli_ok(&["store", "status"]);
    assert!(status.contains("version 0"), "{status}");
    assert!(status.contains("pending    7"), "{status}");

    // Two at once: one applies, the other finds it done; neither fails.
    let spawn = || {
        onlineca()
            .args(["store", "migrate", "--config"])
            .arg(&ca.config)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
    }
    let (status, _) = ca.cli_ok(&["store", "status"]);
    assert!(
        status.contains(&format!(
            "version {SCHEMA} (this onlineca: {SCHEMA}): up to date"
        )),
        "{status}"
    );
    assert_eq!(
        status.matches("applied").count(),
        SCHEMA as usize,
        "{status}"
    );

    // One migration behind, as after installing a newer onlineca.
    exec(
        &rt,
        &url,
        &[
            "DROP INDEX certificates_issuer_key_id",
            "ALTER TABLE certificates DROP COLUMN issuer_key_id",
            "DELETE FROM schema_version WHERE version = 7",
        ],
    );
    let (status, _) = ca.cli_ok(&["store", "status"]);
    assert!(
        status.contains("behind, run `onlineca store migrate`"),
        "{status}"
    );
    assert!(status.contains("pending    7"), "{status}");
    let err = serve_fails(&ca);
    assert!(err.contains("run `onlineca store migrate"), "{err}");
    // The CLI does not upgrade it behind the operator's back either.
    let out = ca.cli(&["user", "list"]);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("store migrate"),
        "{}",
        stderr_of(&out)
    );

    let (_, err) = ca.cli_ok(&["store", "migrate"]);
    assert!(err.contains("from version 6 to 7"), "{err}");
    let (_, err) = ca.cli_ok(&["store", "migrate"]);
    assert!(err.contains("nothing to do"), "{err}");
    ca.start();
    let pw = ca.add_user("alice");
    let (_k, csr) = make_csr(ca.dir.path(), "a", "ec", Some("P-256"), "/CN=x", &[]);
    assert_eq!(ca.post_csr("alice", &pw, &csr).status, 200);
    ca.stop(Duration::from_secs(30));

    // With auto_migrate, serve upgrades by itself.
    exec(
        &rt,
        &url,
        &[
            "DROP INDEX certificates_issuer_key_id",
            "ALTER TABLE certificates DROP COLUMN issuer_key_id",
            "DELETE FROM schema_version WHERE version = 7",
        ],
    );
    ca.edit_config(
        &format!("url = \"{url}\""),
        &format!("url = \"{url}\"\nauto_migrate = true"),
    );
    ca.start();
    let (status, _) = ca.cli_ok(&["store", "status"]);
    assert!(status.contains("up to date"), "{status}");
    drop(ca);
    drop_schema(&rt, &schema);
}

const SCHEMA: i64 = onlineca_store::SCHEMA_VERSION;

#[test]
fn sqlite_keeps_migrating_by_itself_and_says_so() {
    let ca = TestCa::init(&[]);
    let (status, _) = ca.cli_ok(&["store", "status"]);
    assert!(status.contains("up to date"), "{status}");
    let (summary, _) = ca.cli_ok(&["config", "check"]);
    assert!(summary.contains("store.auto_migrate"), "{summary}");
    assert!(summary.contains("yes"), "{summary}");
}

/// A private PostgreSQL cluster on a free port, TLS only, stopped on drop.
struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The child is runuser, which does not pass signals on: stop postgres itself
        // (the first line of its pid file), fast shutdown.
        let pid = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string));
        if let Some(pid) = pid {
            let _ = Command::new("kill").args(["-INT", &pid]).status();
        }
        let _ = self.child.wait();
    }
}

const PG_BIN_INSTALL: &str = "apt-get install postgresql (initdb and postgres)";

/// Debian's PostgreSQL binaries directory, newest version first.
fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists() && p.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA, and certificates it signs: (cert, key) paths.
fn make_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    ok(&mut openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={name}"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]));
    (cert, key)
}

fn sign(
    dir: &Path,
    ca: &(PathBuf, PathBuf),
    name: &str,
    subj: &str,
    ext: &str,
) -> (PathBuf, PathBuf) {
    let (cert, key, csr) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.csr")),
    );
    ok(&mut openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        subj,
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        csr.to_str().unwrap(),
    ]));
    let extfile = dir.join(format!("{name}.ext"));
    std::fs::write(&extfile, ext).unwrap();
    ok(&mut openssl(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        csr.to_str().unwrap(),
        "-CA",
        ca.0.to_str().unwrap(),
        "-CAkey",
        ca.1.to_str().unwrap(),
        "-CAcreateserial",
        "-extfile",
        extfile.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]));
    (cert, key)
}

/// Starts the cluster: initdb as `postgres`, `ssl=on`, and only `hostssl` with a
/// verified client certificate in pg_hba.conf (plus the local socket, for setup).
fn start_cluster(bin: &Path, ca: &(PathBuf, PathBuf)) -> Option<Cluster> {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let as_postgres = |cmd: &Path| {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(cmd);
        c
    };
    ok(Command::new("chown")
        .args(["-R", "postgres"])
        .arg(dir.path()));
    let out = run(as_postgres(&bin.join("initdb"))
        .args(["-A", "trust", "-U", "postgres", "-D"])
        .arg(&data));
    if !out.status.success() {
        onlineca_testkit::skip("PostgreSQL initdb", &stderr_of(&out), PG_BIN_INSTALL);
        return None;
    }
    let server = sign(
        dir.path(),
        ca,
        "pgserver",
        "/CN=127.0.0.1",
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    );
    for f in [&server.0, &server.1, &ca.0] {
        ok(Command::new("chown").arg("postgres").arg(f));
    }
    ok(Command::new("chmod").arg("600").arg(&server.1));
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .unwrap();
    use std::io::Write;
    writeln!(
        conf,
        "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
         ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\nfsync = off",
        dir.path().display(),
        server.0.display(),
        server.1.display(),
        ca.0.display()
    )
    .unwrap();
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust clientcert=verify-full\n",
    )
    .unwrap();
    let child = as_postgres(&bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("pg.log")).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "postgres did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(Cluster { dir, port, child })
}

#[test]
fn postgresql_over_tls_verifies_the_server_and_presents_a_client_certificate() {
    let Some(bin) = pg_bin() else {
        onlineca_testkit::skip(
            "PostgreSQL binaries",
            "no /usr/lib/postgresql/*/bin/initdb",
            PG_BIN_INSTALL,
        );
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let pg_ca = make_ca(work.path(), "pg-ca");
    let Some(cluster) = start_cluster(&bin, &pg_ca) else {
        return;
    };
    let client = sign(
        work.path(),
        &pg_ca,
        "pgclient",
        "/CN=postgres",
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    );
    let other_ca = make_ca(work.path(), "other-ca");
    let pwfile = work.path().join("db.pass");
    let fake_password = format!("pw-{}", random_password());
    std::fs::write(&pwfile, format!("{fake_password}\n")).unwrap();

    let mut ca = TestCa::init(&[]);
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
    ca.edit_config(
        "url = \"sqlite://onlineca.db\"",
        &format!(
            "url = \"{url}\"\nsslmode = \"verify-full\"\nsslrootcert = \"{}\"\nsslcert = \"{}\"\nsslkey = \"{}\"\npassword_file = \"{}\"",
            pg_ca.0.display(),
            client.0.display(),
            client.1.display(),
            pwfile.display()
        ),
    );
    let (summary, _) = ca.cli_ok(&["config", "check"]);
    assert!(summary.contains("verify-full"), "{summary}");
    assert!(!summary.contains(&fake_password), "the password is printed");

    ca.start();
    let pw = ca.add_user("alice");
    let (_k, csr) = make_csr(ca.dir.path(), "a", "ec", Some("P-256"), "/CN=x", &[]);
    let r = ca.post_csr("alice", &pw, &csr);
    assert_eq!(r.status, 200, "{}", r.text());
    let cert = ca.path("alice.pem");
    std::fs::write(&cert, &r.body).unwrap();
    let serial = cert_serial(&cert);
    ca.cli_ok(&["cert", "revoke", &serial]);
    let (list, _) = ca.cli_ok(&["cert", "list", "--revoked"]);
    assert!(list.contains(serial.trim_start_matches('0')), "{list}");
    ca.stop(Duration::from_secs(30));
    assert!(!ca.log_text().contains(&fake_password));

    // A root that did not sign the server's certificate: no start, and it says why.
    ca.edit_config(
        &format!("sslrootcert = \"{}\"", pg_ca.0.display()),
        &format!("sslrootcert = \"{}\"", other_ca.0.display()),
    );
    let err = serve_fails(&ca);
    assert!(err.to_ascii_lowercase().contains("certificate"), "{err}");
    assert!(!err.contains(&fake_password));
    ca.edit_config(
        &format!("sslrootcert = \"{}\"", other_ca.0.display()),
        &format!("sslrootcert = \"{}\"", pg_ca.0.display()),
    );
    // Without TLS the hostssl-only server turns us away.
    ca.edit_config("sslmode = \"verify-full\"", "sslmode = \"disable\"");
    let err = serve_fails(&ca);
    assert!(err.contains("pg_hba.conf"), "{err}");
    // A bad sslmode is a configuration error naming the key.
    ca.edit_config("sslmode = \"disable\"", "sslmode = \"sometimes\"");
    let out = ca.cli(&["config", "check"]);
    assert!(
        stderr_of(&out).contains("store.sslmode"),
        "{}",
        stderr_of(&out)
    );
}
