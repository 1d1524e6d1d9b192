//! LDAP as a password source, against a real OpenLDAP `slapd` started here on free
//! 127.0.0.1 ports (ldap:// for StartTLS, ldaps://), with TLS from a test CA made by
//! openssl and entries added with ldapadd; the real server and curl on the other side.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SUFFIX: &str = "dc=example,dc=org";
const GROUP: &str = "cn=ca-users,ou=groups,dc=example,dc=org";

/// A running slapd in a temporary directory.
struct Slapd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// ldap:// port (StartTLS).
    port: u16,
    /// ldaps:// port.
    tls_port: u16,
    root_pw: String,
    /// The search account's password.
    search_pw: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA key and certificate made with openssl in `dir`, named `name`.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(format!("{name}.key"));
    let pem = dir.join(format!("{name}.pem"));
    ok(openssl(&["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&pem)
        .args(["-subj", &format!("/O=Test/CN={name}")]));
    pem
}

impl Slapd {
    /// Starts slapd, or `None` (reported as a skip) if it is not installed.
    fn start() -> Option<Slapd> {
        let slapd = ["/usr/sbin/slapd", "/usr/lib/slapd"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let Some(slapd) = slapd.filter(|_| have("ldapadd") && have("slappasswd")) else {
            onlineca_testkit::skip(
                "OpenLDAP slapd and ldap-utils",
                "no /usr/sbin/slapd, ldapadd or slappasswd",
                "apt-get install slapd ldap-utils",
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // The directory's TLS: a test CA and a certificate for 127.0.0.1.
        let ca = make_ca(d, "ldap-ca");
        let skey = d.join("server.key");
        let scsr = d.join("server.csr");
        let spem = d.join("server.pem");
        ok(openssl(&["req", "-new", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-keyout"])
            .arg(&skey)
            .arg("-out")
            .arg(&scsr)
            .args(["-subj", "/O=Test/CN=127.0.0.1"]));
        let ext = d.join("ext.cnf");
        std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        ok(openssl(&["x509", "-req", "-days", "2", "-in"])
            .arg(&scsr)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(d.join("ldap-ca.key"))
            .args(["-CAcreateserial", "-out"])
            .arg(&spem)
            .arg("-extfile")
            .arg(&ext));
        let root_pw = random_password();
        std::fs::create_dir(d.join("db")).unwrap();
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/nis.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             pidfile {d}/slapd.pid\n\
             TLSCertificateFile {d}/server.pem\n\
             TLSCertificateKeyFile {d}/server.key\n\
             database mdb\n\
             maxsize 10485760\n\
             suffix \"{SUFFIX}\"\n\
             rootdn \"cn=admin,{SUFFIX}\"\n\
             rootpw {root_pw}\n\
             directory {d}/db\n\
             access to attrs=userPassword by self write by anonymous auth by * none\n\
             access to * by * read\n",
            d = d.display()
        );
        std::fs::write(d.join("slapd.conf"), conf).unwrap();
        let mut s = Slapd {
            dir,
            child: None,
            port: free_port(),
            tls_port: free_port(),
            root_pw,
            search_pw: random_password(),
        };
        s.run(slapd);
        let search_hash = s.ssha(&s.search_pw.clone());
        s.add(&format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n\
             dn: cn=onlineca,ou=services,{SUFFIX}\nobjectClass: person\ncn: onlineca\nsn: service\n\
             userPassword: {search_hash}\n"
        ));
        Some(s)
    }

    fn run(&mut self, slapd: &str) {
        let d = self.dir.path();
        let urls = format!(
            "ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{}/",
            self.port, self.tls_port
        );
        let child = Command::new(slapd)
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .args(["-h", &urls, "-d", "0"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("slapd.log")).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.tls_port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "slapd did not start: {}",
                std::fs::read_to_string(d.join("slapd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops slapd (the directory "goes down").
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ldap-ca.pem")
    }

    /// A `{SSHA}` hash made by slappasswd now.
    fn ssha(&self, pw: &str) -> String {
        let out = ok(Command::new("slappasswd").args(["-h", "{SSHA}", "-s", pw]));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn admin(&self, tool: &str, ldif: &str) -> std::process::Output {
        run_with_stdin(
            Command::new(tool)
                .args(["-x", "-H", &format!("ldap://127.0.0.1:{}", self.port)])
                .args(["-D", &format!("cn=admin,{SUFFIX}"), "-w", &self.root_pw]),
            ldif.as_bytes(),
        )
    }

    fn add(&self, ldif: &str) {
        let out = self.admin("ldapadd", ldif);
        assert!(
            out.status.success(),
            "ldapadd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Adds a person `uid` with a fresh password, returned; in the group if `member`.
    fn add_user(&self, uid: &str, member: bool) -> String {
        let pw = random_password();
        let hash = self.ssha(&pw);
        self.add(&format!(
            "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n\
             userPassword: {hash}\n"
        ));
        if member {
            self.add_to_group(uid);
        }
        pw
    }

    fn add_to_group(&self, uid: &str) {
        let dn = format!("uid={uid},ou=people,{SUFFIX}");
        let exists = self.admin(
            "ldapmodify",
            &format!("dn: {GROUP}\nchangetype: modify\nadd: member\nmember: {dn}\n"),
        );
        if !exists.status.success() {
            self.add(&format!(
                "dn: {GROUP}\nobjectClass: groupOfNames\ncn: ca-users\nmember: {dn}\n"
            ));
        }
    }

    fn delete_user(&self, uid: &str) {
        let out = Command::new("ldapdelete")
            .args(["-x", "-H", &format!("ldap://127.0.0.1:{}", self.port)])
            .args(["-D", &format!("cn=admin,{SUFFIX}"), "-w", &self.root_pw])
            .arg(format!("uid={uid},ou=people,{SUFFIX}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The `[ldap]` section for a direct bind over ldaps://.
    fn direct(&self, group: bool) -> String {
        format!(
            "\n[ldap]\nurl = \"ldaps://127.0.0.1:{}\"\nca = \"{}\"\n\
             bind_dn = \"uid={{username}},ou=people,{SUFFIX}\"\n{}timeout = \"2s\"\n",
            self.tls_port,
            self.ca().display(),
            if group {
                format!("require_group = \"{GROUP}\"\n")
            } else {
                String::new()
            }
        )
    }

    /// The `[ldap]` section for search-then-bind over StartTLS, with a search account.
    fn search(&self, ca_dir: &Path) -> String {
        let pwfile = ca_dir.join("ldap-bind.pw");
        std::fs::write(&pwfile, format!("{}\n", self.search_pw)).unwrap();
        format!(
            "\n[ldap]\nurl = \"ldap://127.0.0.1:{}\"\nstarttls = true\nca = \"{}\"\n\
             search_base = \"ou=people,{SUFFIX}\"\nsearch_filter = \"(&(objectClass=inetOrgPerson)(uid={{username}}))\"\n\
             search_bind_dn = \"cn=onlineca,ou=services,{SUFFIX}\"\n\
             search_bind_password_file = \"{}\"\nrequire_group = \"{GROUP}\"\ntimeout = \"2s\"\n",
            self.port,
            self.ca().display(),
            pwfile.display()
        )
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A CA configured with `ldap`, started, with max_failures 3.
fn ca_with(ldap: &str) -> TestCa {
    let mut ca = TestCa::init(&[]);
    ca.edit_config("max_failures = 5", "max_failures = 3");
    ca.append_config(ldap);
    ca.start();
    ca
}

fn keep(ca: &TestCa, r: &CurlResult, name: &str, key: &Path) -> (PathBuf, PathBuf) {
    assert_eq!(r.status, 200, "{}", r.text());
    let p = ca.path(&format!("{name}.pem"));
    std::fs::write(&p, &r.body).unwrap();
    (p, key.to_path_buf())
}

fn renew(ca: &TestCa, client: &(PathBuf, PathBuf), csr: &Path) -> CurlResult {
    let field = format!("certificate_request@{}", csr.display());
    ca.curl(&[
        "--cert",
        client.0.to_str().unwrap(),
        "--key",
        client.1.to_str().unwrap(),
        "--data-urlencode",
        &field,
        &ca.url("certificate/"),
    ])
}

/// A request with a hand-made Basic header: a NUL byte cannot be a curl argument.
fn post_basic(ca: &TestCa, user: &str, pw: &str, csr: &Path) -> CurlResult {
    use base64::Engine;
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
    let field = format!("certificate_request@{}", csr.display());
    ca.curl(&[
        "-H",
        &format!("Authorization: Basic {creds}"),
        "--data-urlencode",
        &field,
        &ca.url("certificate/"),
    ])
}

fn users(ca: &TestCa) -> String {
    ca.cli_ok(&["user", "list"]).0
}

#[test]
fn direct_bind_over_ldaps() {
    let Some(ldap) = Slapd::start() else { return };
    let alice_pw = ldap.add_user("alice", true);
    let dave_pw = ldap.add_user("dave", true);
    let bob_pw = ldap.add_user("bob", false);
    let fay_pw = ldap.add_user("fay", true);
    let ca = ca_with(&ldap.direct(true));
    let local_pw = ca.add_user("local-lena");
    let dir = ca.dir.path();
    let (key, csr) = make_csr(dir, "a", "ec", Some("P-256"), "/CN=x", &[]);

    // A directory user: a certificate with their name, recorded as "ldap".
    let alice = keep(&ca, &ca.post_csr("alice", &alice_pw, &csr), "alice", &key);
    assert!(x509_text(&alice.0).contains("CN = alice"));
    let (list, _) = ca.cli_ok(&["cert", "list", "--user", "alice"]);
    assert!(list.contains("ldap"), "{list}");
    assert!(users(&ca).lines().any(|l| l.starts_with("alice ")));
    // Again (the credential cache) and the local user beside it.
    assert_eq!(ca.post_csr("alice", &alice_pw, &csr).status, 200);
    assert_eq!(ca.post_csr("local-lena", &local_pw, &csr).status, 200);

    // Outside the group: refused like a wrong password; the log says why.
    let r = ca.post_csr("bob", &bob_pw, &csr);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("invalid username or password"));
    assert!(ca.log_text().contains("not in the required group"));

    // Wrong passwords count towards the lockout shared in the store.
    for _ in 0..3 {
        assert_eq!(ca.post_csr("dave", "wrong-password", &csr).status, 401);
    }
    let r = ca.post_csr("dave", &dave_pw, &csr);
    assert_eq!(r.status, 429, "{}", r.text());
    ca.cli_ok(&["user", "unlock", "dave"]);
    assert_eq!(ca.post_csr("dave", &dave_pw, &csr).status, 200);
    // An empty password is not an anonymous bind.
    assert_eq!(ca.post_csr("dave", "", &csr).status, 401);

    // Hostile names: no certificate, no shadow account for anyone.
    for name in ["*", "alice)(uid=*", "alice,ou=people", "alice\u{0}", "al*"] {
        let r = post_basic(&ca, name, &alice_pw, &csr);
        assert_eq!(r.status, 401, "{name:?}: {}", r.text());
    }
    let list = users(&ca);
    assert_eq!(list.lines().count(), 4, "{list}"); // header, alice, dave, local-lena

    // Renewal of a directory user's certificate.
    let r = renew(&ca, &alice, &csr);
    assert_eq!(r.status, 200, "{}", r.text());

    // `user disable` works for directory users (a local marker).
    ca.cli_ok(&["user", "disable", "alice"]);
    let r = ca.post_csr("alice", &alice_pw, &csr);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("disabled"), "{}", r.text());
    assert_eq!(renew(&ca, &alice, &csr).status, 401);
    ca.cli_ok(&["user", "enable", "alice"]);
    // Also for one who never logged in: the marker is recorded ahead.
    let (_, err) = ca.cli_ok(&["user", "disable", "fay"]);
    assert!(err.contains("recorded a disabled marker"), "{err}");
    let r = ca.post_csr("fay", &fay_pw, &csr);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("disabled"), "{}", r.text());
    ca.cli_ok(&["user", "enable", "fay"]);
    assert_eq!(ca.post_csr("fay", &fay_pw, &csr).status, 200);

    // The entry is deleted and created again: another person (a new entryUUID). Their
    // first login makes the shadow a new account; the old certificates stop renewing.
    ldap.delete_user("alice");
    // (The group's member value still names the DN: no referential integrity here.)
    let new_pw = ldap.add_user("alice", false);
    let (key2, csr2) = make_csr(dir, "a2", "ec", Some("P-256"), "/CN=x", &[]);
    let alice2 = keep(&ca, &ca.post_csr("alice", &new_pw, &csr2), "alice2", &key2);
    let r = renew(&ca, &alice, &csr);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        r.text().contains("no longer has an account"),
        "{}",
        r.text()
    );
    assert_eq!(renew(&ca, &alice2, &csr2).status, 200);

    // The operator's tools.
    let (out, _) = ca.cli_ok(&["config", "check"]);
    assert!(
        out.contains("ldap: TLS certificate subject O=Test, CN=127.0.0.1"),
        "{out}"
    );
    assert!(
        out.contains(&format!("ldap: group {GROUP} exists")),
        "{out}"
    );
    let test = |name: &str, pw: &str| {
        run_with_stdin(
            onlineca()
                .args(["user", "test", name, "--password-stdin", "--config"])
                .arg(&ca.config),
            format!("{pw}\n").as_bytes(),
        )
    };
    let out = test("dave", &dave_pw);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("directory: password accepted"), "{text}");
    let out = test("local-lena", &local_pw);
    assert!(String::from_utf8_lossy(&out.stdout).contains("local store: password accepted"));
    let out = test("bob", &bob_pw);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the required group"));
    let out = test("dave", "wrong-password");
    assert!(!out.status.success());
}

#[test]
fn search_bind_over_starttls_and_a_directory_gone() {
    let Some(mut ldap) = Slapd::start() else {
        return;
    };
    let carol_pw = ldap.add_user("carol", true);
    let erin_pw = ldap.add_user("erin", true);
    let gus_pw = ldap.add_user("gus", true);
    let hal_pw = ldap.add_user("hal", true);
    let mut ca = TestCa::init(&[]);
    ca.append_config(&ldap.search(&ca.home));
    ca.start();
    let local_pw = ca.add_user("local-lena");
    let (key, csr) = make_csr(ca.dir.path(), "c", "ec", Some("P-256"), "/CN=x", &[]);

    let r = ca.post_csr("carol", &carol_pw, &csr);
    assert_eq!(r.status, 200, "{}", r.text());
    let pem = ca.path("carol.pem");
    std::fs::write(&pem, &r.body).unwrap();
    assert!(x509_text(&pem).contains("CN = carol"));
    let carol = (pem, key.clone());

    // Renewal asks the directory (with the search account): gus, deleted from the
    // directory, and hal, taken out of the group, stop renewing at once.
    let gus = keep(&ca, &ca.post_csr("gus", &gus_pw, &csr), "gus", &key);
    let hal = keep(&ca, &ca.post_csr("hal", &hal_pw, &csr), "hal", &key);
    for c in [&gus, &hal, &carol] {
        assert_eq!(renew(&ca, c, &csr).status, 200);
    }
    ldap.delete_user("gus");
    let out = ldap.admin(
        "ldapmodify",
        &format!(
            "dn: {GROUP}\nchangetype: modify\ndelete: member\nmember: uid=hal,ou=people,{SUFFIX}\n"
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for c in [&gus, &hal] {
        let r = renew(&ca, c, &csr);
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(
            r.text()
                .contains("directory entry is gone or no longer in the required group"),
            "{}",
            r.text()
        );
    }
    assert_eq!(renew(&ca, &carol, &csr).status, 200, "carol is still there");
    // Hostile names cannot widen the search to match carol.
    for name in ["*", "carol)(uid=*", "c*", "carol\u{0}"] {
        assert_eq!(
            post_basic(&ca, name, &carol_pw, &csr).status,
            401,
            "{name:?}"
        );
    }
    let (out, _) = ca.cli_ok(&["config", "check"]);
    assert!(out.contains("ldap: bound as cn=onlineca"), "{out}");

    // The directory goes down: 503 with Retry-After for directory users, not a
    // failed password; local users unaffected.
    ldap.kill();
    for _ in 0..4 {
        let r = ca.post_csr("erin", &erin_pw, &csr);
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.header("retry-after").is_some());
    }
    assert_eq!(ca.post_csr("local-lena", &local_pw, &csr).status, 200);
    // Nor can a directory user renew while the directory cannot say yes.
    let r = renew(&ca, &carol, &csr);
    assert_eq!(r.status, 503, "{}", r.text());
    let (list, _) = ca.cli_ok(&["user", "list"]);
    assert!(!list.contains("locked"), "{list}");
    let out = ca.cli(&["config", "check"]);
    assert!(!out.status.success());
}

#[test]
fn the_directory_certificate_and_plain_ldap_are_checked() {
    let Some(ldap) = Slapd::start() else { return };
    let pw = ldap.add_user("frank", false);
    // A CA trusting another root refuses the directory's certificate: the request
    // gets 503 and the log says why.
    let mut ca = TestCa::init(&[]);
    let other = make_ca(ca.dir.path(), "other-root");
    let section = ldap.direct(false).replace(
        &format!("ca = \"{}\"", ldap.ca().display()),
        &format!("ca = \"{}\"", other.display()),
    );
    ca.append_config(&section);
    ca.start();
    let (_key, csr) = make_csr(ca.dir.path(), "f", "ec", Some("P-256"), "/CN=x", &[]);
    let r = ca.post_csr("frank", &pw, &csr);
    assert_eq!(r.status, 503, "{}", r.text());
    let log = ca.log_text();
    assert!(log.contains("invalid peer certificate"), "{log}");
    let out = ca.cli(&["config", "check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("invalid peer certificate"),
        "{err}"
    );

    // Plain ldap:// is refused at start unless insecure = true is written out.
    let plain = TestCa::init(&[]);
    plain.append_config(&format!(
        "\n[ldap]\nurl = \"ldap://127.0.0.1:{}\"\nbind_dn = \"uid={{username}},ou=people,{SUFFIX}\"\n",
        ldap.port
    ));
    let out = plain.cli(&["config", "check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("insecure = true"),
        "{err}"
    );
    let mut plain_ok = plain;
    plain_ok.edit_config("\n[ldap]\nurl", "\n[ldap]\ninsecure = true\nurl");
    plain_ok.start();
    let r = plain_ok.post_csr("frank", &pw, &csr);
    assert_eq!(r.status, 200, "{}", r.text());
}
