//! Trusted retrievers and renewal over mutual TLS, end to end: a real server, real
//! client certificates made with `openssl` at test time (and with rcgen where a
//! validity period in the past is needed, which `openssl x509` 3.0 cannot write),
//! and `curl --cert/--key`.

mod common;

use std::path::{Path, PathBuf};

use common::admin::{ADMIN, admin_port, get, sample};
use common::*;
use onlineca_store::IssuedCert;

/// A CA made with `openssl req -x509`: (certificate, key).
fn make_ca(dir: &Path, name: &str, subj: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    ok(openssl(&[
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
        subj,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
    ])
    .arg(&key)
    .arg("-out")
    .arg(&cert));
    (cert, key)
}

/// A client certificate signed by `ca` with `openssl x509 -req`: (certificate, key).
fn make_client(dir: &Path, ca: &(PathBuf, PathBuf), name: &str, subj: &str) -> (PathBuf, PathBuf) {
    let (key, csr) = make_csr(dir, name, "ec", Some("P-256"), subj, &[]);
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    let cert = dir.join(format!("{name}.pem"));
    ok(openssl(&["x509", "-req", "-days", "1", "-set_serial"])
        .arg(format!("0x{}", hex::encode(random_password().as_bytes())))
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(&ca.0)
        .arg("-CAkey")
        .arg(&ca.1)
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&cert));
    (cert, key)
}

/// A client certificate signed by `ca` whose validity ended in 2021.
fn make_expired_client(
    dir: &Path,
    ca: &(PathBuf, PathBuf),
    name: &str,
    cn: &str,
) -> (PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(&ca.1).unwrap()).unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(&ca.0).unwrap(), ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// `curl --cert C --key K` plus `args`, against the certificate endpoint.
fn post_with_cert(
    ca: &TestCa,
    client: &(PathBuf, PathBuf),
    args: &[&str],
    csr: &Path,
) -> CurlResult {
    let field = format!("certificate_request@{}", csr.display());
    let mut all: Vec<&str> = vec![
        "--cert",
        client.0.to_str().unwrap(),
        "--key",
        client.1.to_str().unwrap(),
        "--data-urlencode",
        &field,
    ];
    all.extend_from_slice(args);
    let url = ca.url("certificate/");
    all.push(&url);
    ca.curl(&all)
}

/// Writes the issued certificate (and chain) of a 200 answer to `name.pem`; returns
/// (certificate, key) with the CSR's key.
fn keep(ca: &TestCa, r: &CurlResult, name: &str, key: &Path) -> (PathBuf, PathBuf) {
    assert_eq!(r.status, 200, "{}", r.text());
    let p = ca.path(&format!("{name}.pem"));
    std::fs::write(&p, &r.body).unwrap();
    (p, key.to_path_buf())
}

fn subject(pem: &Path) -> String {
    let out = ok(&mut openssl(&[
        "x509",
        "-noout",
        "-subject",
        "-nameopt",
        "compat",
        "-in",
        pem.to_str().unwrap(),
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().trim_start_matches("subject=").to_string()
}

fn assert_401(r: &CurlResult, needle: &str) {
    assert!(
        r.transport_ok,
        "transport failed (handshake?): {}",
        r.stderr
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        r.text().contains(needle),
        "wanted {needle:?} in {:?}",
        r.text()
    );
    assert_eq!(r.text().lines().count(), 1, "{:?}", r.text());
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn store_url(ca: &TestCa) -> String {
    format!("sqlite://{}", ca.home.join("onlineca.db").display())
}

fn record(ca: &TestCa, serial: &str) -> IssuedCert {
    runtime().block_on(async {
        let store = onlineca_store::open(&store_url(ca)).await.unwrap();
        let r = store.get_issued(serial).await.unwrap().unwrap();
        store.close().await;
        r
    })
}

fn count_issued(ca: &TestCa) -> u64 {
    runtime().block_on(async {
        let store = onlineca_store::open(&store_url(ca)).await.unwrap();
        let n = store.count_issued().await.unwrap();
        store.close().await;
        n
    })
}

/// The issuance counter of each method on /metrics equals the number of
/// certificates the store recorded with that method: one count per issuance.
fn metrics_match_records(ca: &TestCa) {
    let all = runtime().block_on(async {
        let store = onlineca_store::open(&store_url(ca)).await.unwrap();
        let all = store
            .list_issued(&onlineca_store::IssuedFilter::default())
            .await
            .unwrap();
        store.close().await;
        all
    });
    let (status, text) = get(admin_port(ca), "/metrics");
    assert_eq!(status, 200, "{text}");
    for method in ["password", "retriever", "renewal"] {
        let recorded = all.iter().filter(|c| c.auth_method == method).count();
        let series = format!("onlineca_certificates_issued_total{{method=\"{method}\"}}");
        assert_eq!(
            sample(&text, &series).unwrap_or(0.0),
            recorded as f64,
            "{method}\n{text}"
        );
    }
    assert!(!all.is_empty());
}

/// Disables a user with the operator's command.
fn set_disabled(ca: &TestCa, user: &str) {
    let (_, err) = ca.cli_ok(&["user", "disable", user]);
    assert!(err.contains("disabled user"), "{err}");
}

/// Revokes a certificate with the operator's command (not for keyCompromise, which
/// would refuse its key, shared by the tests' requests, from then on).
fn set_revoked(ca: &TestCa, serial: &str) {
    let (_, err) = ca.cli_ok(&["cert", "revoke", serial, "--reason", "superseded"]);
    assert!(err.contains("revoked certificate"), "{err}");
}

/// A CA with one retriever (subject written in other case than in its certificate,
/// to show the match is on the parsed name) allowed for alice and lab-*, its
/// certificates capped at one hour.
struct Setup {
    ca: TestCa,
    portal: (PathBuf, PathBuf),
    portal_ca: (PathBuf, PathBuf),
    csr: PathBuf,
    csr_key: PathBuf,
}

fn setup(auth_extra: &str) -> Setup {
    let ca = TestCa::init(&[]);
    let dir = ca.dir.path();
    let portal_ca = make_ca(dir, "portal-ca", "/O=Example/CN=Portal CA");
    let portal = make_client(
        dir,
        &portal_ca,
        "portal",
        "/O=Example/OU=Portals/CN=portal.example.org",
    );
    ca.edit_config(
        "retriever_anchors = []",
        &format!(
            "retriever_anchors = [\"{}\"]\n{auth_extra}",
            portal_ca.0.display()
        ),
    );
    ca.append_config(
        "\n[[retrievers]]\nsubject = \"/o=example/ou=portals/cn=Portal.Example.ORG\"\nusers = [\"alice\", \"lab-*\"]\nlifetime = \"1h\"\n",
    );
    ca.append_config(ADMIN);
    let (csr_key, csr) = make_csr(dir, "req", "ec", Some("P-256"), "/CN=ignored", &[]);
    Setup {
        ca,
        portal,
        portal_ca,
        csr,
        csr_key,
    }
}

#[test]
fn retrievers_are_judged_by_certificate_subject_and_user_rule() {
    let mut s = setup("");
    s.ca.start();
    let dir = s.ca.dir.path().to_path_buf();

    // Allowed retriever for an allowed user (Basic username, password ignored),
    // first before the user has an account here.
    let r = post_with_cert(&s.ca, &s.portal, &["-u", "alice:not-checked"], &s.csr);
    let (accountless, _) = keep(&s.ca, &r, "alice-by-portal-0", &s.csr_key);
    s.ca.add_user("alice");
    let r = post_with_cert(&s.ca, &s.portal, &["-u", "alice:not-checked"], &s.csr);
    let (cert, _) = keep(&s.ca, &r, "alice-by-portal", &s.csr_key);
    assert!(subject(&cert).ends_with("/CN=alice"), "{}", subject(&cert));
    let rec = record(&s.ca, &cert_serial(&cert));
    assert_eq!(rec.username, "alice");
    assert_eq!(rec.auth_method, "retriever");
    assert_eq!(
        rec.retriever.as_deref(),
        Some("/O=Example/OU=Portals/CN=portal.example.org")
    );
    assert!(
        rec.not_after - rec.issued_at <= time::Duration::hours(1),
        "the retriever's lifetime cap applies"
    );
    // Renewal needs the account the certificate was issued to: the account added
    // later under the name the portal vouched for may be someone else.
    let r = post_with_cert(&s.ca, &(accountless, s.csr_key.clone()), &[], &s.csr);
    assert_401(&r, "no longer has an account");
    // Renewing the one issued to the account (mutual TLS, no portal) keeps the
    // portal's cap.
    let r = post_with_cert(&s.ca, &(cert.clone(), s.csr_key.clone()), &[], &s.csr);
    let (renewed, _) = keep(&s.ca, &r, "alice-by-portal-renewed", &s.csr_key);
    let rec = record(&s.ca, &cert_serial(&renewed));
    assert_eq!(rec.auth_method, "renewal");
    assert!(
        rec.not_after - rec.issued_at <= time::Duration::hours(1),
        "a renewal keeps the original lifetime cap: {} to {}",
        rec.issued_at,
        rec.not_after
    );

    // The user as the form field `username`, matching a pattern.
    let r = post_with_cert(
        &s.ca,
        &s.portal,
        &["--data-urlencode", "username=lab-7"],
        &s.csr,
    );
    let (cert, _) = keep(&s.ca, &r, "lab7", &s.csr_key);
    assert!(subject(&cert).ends_with("/CN=lab-7"));

    // A user outside the retriever's rule.
    let r = post_with_cert(&s.ca, &s.portal, &["-u", "bob:x"], &s.csr);
    assert_401(&r, "user \"bob\" is not allowed for retriever");

    // Basic username and form field disagreeing.
    let r = post_with_cert(
        &s.ca,
        &s.portal,
        &["-u", "alice:x", "--data-urlencode", "username=lab-1"],
        &s.csr,
    );
    assert_eq!(r.status, 405, "{}", r.text());

    // The retriever names no user.
    let r = post_with_cert(&s.ca, &s.portal, &[], &s.csr);
    assert_401(&r, "no user named");

    // The same subject from an untrusted CA: a 401, not a handshake failure.
    let other_ca = make_ca(&dir, "other-ca", "/O=Elsewhere/CN=Other CA");
    let forged = make_client(
        &dir,
        &other_ca,
        "forged",
        "/O=Example/OU=Portals/CN=portal.example.org",
    );
    let r = post_with_cert(&s.ca, &forged, &["-u", "alice:x"], &s.csr);
    assert_401(
        &r,
        "client certificate not verified: it does not chain to a trusted CA",
    );
    // Authentication comes before the body, as for passwords.
    let r = s.ca.curl(&[
        "--cert",
        forged.0.to_str().unwrap(),
        "--key",
        forged.1.to_str().unwrap(),
        "-u",
        "alice:x",
        "--data",
        "certificate_request=garbage",
        &s.ca.url("certificate/"),
    ]);
    assert_401(&r, "it does not chain to a trusted CA");
    // ... and from an impostor CA that took the trusted CA's name.
    let impostor_ca = make_ca(&dir, "impostor-ca", "/O=Example/CN=Portal CA");
    let forged = make_client(
        &dir,
        &impostor_ca,
        "forged2",
        "/O=Example/OU=Portals/CN=portal.example.org",
    );
    let r = post_with_cert(&s.ca, &forged, &["-u", "alice:x"], &s.csr);
    assert_401(
        &r,
        "client certificate not verified: a signature in its chain does not verify",
    );

    // An expired retriever certificate.
    let expired = make_expired_client(&dir, &s.portal_ca, "expired-portal", "portal.example.org");
    let r = post_with_cert(&s.ca, &expired, &["-u", "alice:x"], &s.csr);
    assert_401(
        &r,
        "client certificate not verified: it expired at 2021-01-01",
    );

    // Trusted, but its subject is not on the list.
    let stranger = make_client(&dir, &s.portal_ca, "stranger", "/O=Example/CN=stranger");
    let r = post_with_cert(&s.ca, &stranger, &["-u", "alice:x"], &s.csr);
    assert_401(
        &r,
        "subject /O=Example/CN=stranger is not an accepted retriever",
    );

    // A retriever request without the certificate.
    let field = format!("certificate_request@{}", s.csr.display());
    let r = s.ca.curl(&[
        "--data-urlencode",
        &field,
        "--data-urlencode",
        "username=alice",
        &s.ca.url("certificate/"),
    ]);
    assert_401(&r, "client certificate not present");

    // A disabled user gets nothing through a retriever either.
    s.ca.add_user("lab-off");
    set_disabled(&s.ca, "lab-off");
    let r = post_with_cert(&s.ca, &s.portal, &["-u", "lab-off:x"], &s.csr);
    assert_401(&r, "user account is disabled");
    // Nor by another spelling of the name: usernames ignore ASCII case.
    let r = post_with_cert(&s.ca, &s.portal, &["-u", "LAB-Off:x"], &s.csr);
    assert_401(&r, "user account is disabled");
    // A user the store does not know is issued under the name in lower case.
    let r = post_with_cert(&s.ca, &s.portal, &["-u", "Lab-New:x"], &s.csr);
    let (cert, _) = keep(&s.ca, &r, "lab-new", &s.csr_key);
    assert!(
        subject(&cert).ends_with("/CN=lab-new"),
        "{}",
        subject(&cert)
    );

    // Never a password in the log.
    assert!(!s.ca.log_text().contains("not-checked"));
    metrics_match_records(&s.ca);
}

#[test]
fn renewal_by_a_valid_certificate_of_this_ca() {
    let mut s = setup("");
    s.ca.start();
    let dir = s.ca.dir.path().to_path_buf();
    let alice_pw = s.ca.add_user("alice");

    // A plain password client (no client certificate) is unaffected; the name is
    // matched regardless of case and issued as stored.
    let r = s.ca.post_csr("ALICE", &alice_pw, &s.csr);
    let alice = keep(&s.ca, &r, "alice", &s.csr_key);
    assert!(
        subject(&alice.0).ends_with("/CN=alice"),
        "{}",
        subject(&alice.0)
    );
    let first_serial = cert_serial(&alice.0);

    // Renewal: no Authorization, the current certificate as client certificate.
    let (new_key, new_csr) = make_csr(&dir, "rotated", "ec", Some("P-384"), "/CN=x", &[]);
    let r = post_with_cert(&s.ca, &alice, &[], &new_csr);
    let renewed = keep(&s.ca, &r, "alice-renewed", &new_key);
    assert_eq!(subject(&renewed.0), subject(&alice.0));
    let renewed_serial = cert_serial(&renewed.0);
    assert_ne!(renewed_serial, first_serial);
    let rec = record(&s.ca, &renewed_serial);
    assert_eq!(rec.auth_method, "renewal");
    assert_eq!(rec.username, "alice");
    assert_eq!(rec.retriever, None);
    // Both over TLS 1.2 too: a password client without a certificate, and renewal.
    let field = format!("certificate_request@{}", s.csr.display());
    let r = s.ca.curl(&[
        "--tls-max",
        "1.2",
        "-u",
        &format!("alice:{alice_pw}"),
        "--data-urlencode",
        &field,
        &s.ca.url("certificate/"),
    ]);
    assert_eq!(r.status, 200, "{} {}", r.text(), r.stderr);
    let r = post_with_cert(&s.ca, &alice, &["--tls-max", "1.2"], &s.csr);
    assert_eq!(r.status, 200, "{} {}", r.text(), r.stderr);
    // The renewed certificate renews in turn.
    let r = post_with_cert(&s.ca, &renewed, &[], &s.csr);
    assert_eq!(r.status, 200, "{}", r.text());

    // Own certificate plus a password: the password decides.
    let r = post_with_cert(&s.ca, &alice, &["-u", &format!("alice:{alice_pw}")], &s.csr);
    let by_pw = keep(&s.ca, &r, "alice-pw2", &s.csr_key);
    assert_eq!(
        record(&s.ca, &cert_serial(&by_pw.0)).auth_method,
        "password"
    );
    let r = post_with_cert(&s.ca, &alice, &["-u", "alice:wrong-password"], &s.csr);
    assert_401(&r, "invalid username or password");

    // Renewal naming another user in the form.
    let r = post_with_cert(&s.ca, &alice, &["--data-urlencode", "username=bob"], &s.csr);
    assert_401(&r, "names another user");

    // An expired certificate of this CA.
    let issuing = (
        s.ca.home.join("ca/issuing.pem"),
        s.ca.home.join("ca/issuing.key"),
    );
    let expired = make_expired_client(&dir, &issuing, "alice-expired", "alice");
    let r = post_with_cert(&s.ca, &expired, &[], &s.csr);
    assert_401(
        &r,
        "client certificate not verified: it expired at 2021-01-01",
    );

    // A certificate from another CA with the same subject.
    let other_ca = make_ca(&dir, "other-ca", "/O=onlineca/CN=onlineca Issuing CA 2");
    let subj = subject(&alice.0);
    let foreign = make_client(&dir, &other_ca, "alice-foreign", &subj);
    let r = post_with_cert(&s.ca, &foreign, &[], &s.csr);
    assert_401(
        &r,
        "client certificate not verified: it was not issued by this CA",
    );

    // A revoked certificate.
    let r = s.ca.post_csr("alice", &alice_pw, &s.csr);
    let doomed = keep(&s.ca, &r, "alice-doomed", &s.csr_key);
    set_revoked(&s.ca, &cert_serial(&doomed.0));
    let r = post_with_cert(&s.ca, &doomed, &[], &s.csr);
    assert_401(
        &r,
        "certificate cannot be renewed: the certificate is revoked",
    );

    // A removed user.
    let carol_pw = s.ca.add_user("carol");
    let r = s.ca.post_csr("carol", &carol_pw, &s.csr);
    let carol = keep(&s.ca, &r, "carol", &s.csr_key);
    ok(onlineca()
        .args(["user", "remove", "carol", "--config"])
        .arg(&s.ca.config));
    let r = post_with_cert(&s.ca, &carol, &[], &s.csr);
    assert_401(&r, "no longer has an account");

    // A disabled user: nothing by renewal, nothing by password.
    let dave_pw = s.ca.add_user("dave");
    let r = s.ca.post_csr("dave", &dave_pw, &s.csr);
    let dave = keep(&s.ca, &r, "dave", &s.csr_key);
    set_disabled(&s.ca, "dave");
    let r = post_with_cert(&s.ca, &dave, &[], &s.csr);
    assert_401(&r, "user account is disabled");
    let r = s.ca.post_csr("dave", &dave_pw, &s.csr);
    assert_401(&r, "user account is disabled");
    metrics_match_records(&s.ca);
}

#[test]
fn retriever_and_renewal_can_be_switched_off() {
    let mut s = setup("retriever = false\nrenewal = false");
    // init writes both keys set to true: drop those lines so the ones added win.
    s.ca.edit_config("renewal = true ", "# renewal ");
    s.ca.edit_config("retriever = true ", "# retriever ");
    s.ca.start();
    let pw = s.ca.add_user("alice");

    let r = post_with_cert(&s.ca, &s.portal, &["-u", "alice:x"], &s.csr);
    assert_401(&r, "retriever authentication is not enabled");

    let r = s.ca.post_csr("alice", &pw, &s.csr);
    let alice = keep(&s.ca, &r, "alice", &s.csr_key);
    let r = post_with_cert(&s.ca, &alice, &[], &s.csr);
    assert_401(&r, "certificate renewal is not enabled");
}

#[test]
fn retriever_list_and_config_check() {
    let s = setup("");
    let out = ok(onlineca()
        .args(["retriever", "list", "--config"])
        .arg(&s.ca.config));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("retriever authentication: enabled"), "{text}");
    assert!(text.contains("portal-ca.pem"), "{text}");
    assert!(
        text.contains(
            "/o=example/ou=portals/cn=Portal.Example.ORG  users: alice, lab-*  lifetime: 1h"
        ),
        "{text}"
    );
    let out = ok(onlineca()
        .args(["config", "check", "--config"])
        .arg(&s.ca.config));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("retrievers[0]"), "{text}");

    let original = std::fs::read_to_string(&s.ca.config).unwrap();
    for (from, to, needle) in [
        (
            "/o=example/ou=portals/cn=Portal.Example.ORG",
            "CN=portal",
            "retrievers: entry 1 (\"CN=portal\"): subject: distinguished name \"CN=portal\": must be in OpenSSL's slash form",
        ),
        (
            "/o=example/ou=portals/cn=Portal.Example.ORG",
            "/XY=portal",
            "unknown attribute \"XY\"",
        ),
        (
            "\"lab-*\"]\nlifetime",
            "\"lab [0-9]\"]\nlifetime",
            "users: pattern \"lab [0-9]\": character ' ' is not allowed",
        ),
        (
            "portal-ca.pem",
            "missing.pem",
            "auth.retriever_anchors: cannot read",
        ),
    ] {
        std::fs::write(&s.ca.config, original.replacen(from, to, 1)).unwrap();
        let out = run(onlineca()
            .args(["config", "check", "--config"])
            .arg(&s.ca.config));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{to}: accepted");
        assert!(err.contains(needle), "{to}: {err}");
    }
}

/// Presents a fixed certificate and key, matching or not (curl and OpenSSL refuse to
/// load a mismatched pair, so this client is rustls).
#[derive(Debug)]
struct Present(std::sync::Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Present {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A renewal request over HTTP/1.1 presenting `cert` with `key`: the response head,
/// or the TLS error.
fn renew_raw(ca: &TestCa, cert: &Path, key: &Path, csr: &Path) -> Result<String, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::{Read, Write};
    use std::sync::Arc;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca.root_pem()).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let signing = provider
        .key_provider
        .load_private_key(PrivateKeyDer::from_pem_file(key).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(Present(Arc::new(
            rustls::sign::CertifiedKey::new(chain, signing),
        ))));
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = std::net::TcpStream::connect(("127.0.0.1", ca.port)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let body = std::fs::read(csr).unwrap();
    let head = format!(
        "POST /onlineca/certificate/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-pem-file\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes())
        .and_then(|_| tls.write_all(&body))
        .map_err(|e| e.to_string())?;
    // Read to the end; an unclean close after a complete answer still counts.
    let mut out = Vec::new();
    if let Err(e) = tls.read_to_end(&mut out)
        && out.is_empty()
    {
        return Err(e.to_string());
    }
    let text = String::from_utf8_lossy(&out);
    Ok(text.lines().next().unwrap_or("").to_string())
}

#[test]
fn a_certificate_without_its_key_fails_the_handshake() {
    let mut s = setup("");
    s.ca.start();
    let pw = s.ca.add_user("alice");
    let r = s.ca.post_csr("alice", &pw, &s.csr);
    let alice = keep(&s.ca, &r, "alice", &s.csr_key);
    let (other_key, _) = make_csr(s.ca.dir.path(), "other", "ec", Some("P-256"), "/CN=x", &[]);

    // The harness works: the right key renews.
    let head = renew_raw(&s.ca, &alice.0, &alice.1, &s.csr).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Someone holding only alice's certificate (it is public) gets nothing: the
    // handshake signature is checked against the certificate's key.
    // (How the refusal shows depends on timing: an alert, a reset or a broken pipe.)
    let issued = count_issued(&s.ca);
    let r = renew_raw(&s.ca, &alice.0, &other_key, &s.csr);
    assert!(r.is_err(), "a mismatched key got an answer: {r:?}");
    assert_eq!(count_issued(&s.ca), issued);
}

/// A client that presents a certificate nobody here trusts (a browser's, another
/// organisation's) with a right password is served by the password; with a wrong
/// one it hears why the certificate is refused.
#[test]
fn an_unrelated_client_certificate_does_not_stand_in_the_way_of_a_password() {
    let mut s = setup("");
    s.ca.start();
    let dir = s.ca.dir.path().to_path_buf();
    let pw = s.ca.add_user("erin");
    let other_ca = make_ca(&dir, "browser-ca", "/O=Elsewhere/CN=Browser CA");
    let browser = make_client(&dir, &other_ca, "browser", "/O=Elsewhere/CN=erin");
    let r = post_with_cert(&s.ca, &browser, &["-u", &format!("erin:{pw}")], &s.csr);
    let (cert, _) = keep(&s.ca, &r, "erin", &s.csr_key);
    assert!(subject(&cert).ends_with("/CN=erin"), "{}", subject(&cert));
    assert_eq!(record(&s.ca, &cert_serial(&cert)).auth_method, "password");
    let r = post_with_cert(&s.ca, &browser, &["-u", "erin:wrong-password"], &s.csr);
    assert_401(&r, "it does not chain to a trusted CA");
}

/// A portal CA's CRL made by `openssl ca`, with its own database in `dir/crl-db`.
struct PortalCrl {
    cnf: PathBuf,
    ca: (PathBuf, PathBuf),
}

impl PortalCrl {
    fn new(dir: &Path, ca: &(PathBuf, PathBuf)) -> Self {
        let db = dir.join("crl-db");
        std::fs::create_dir_all(&db).unwrap();
        std::fs::write(db.join("index.txt"), "").unwrap();
        std::fs::write(db.join("crlnumber"), "01\n").unwrap();
        let cnf = db.join("ca.cnf");
        std::fs::write(
            &cnf,
            format!(
                "[ca]\ndefault_ca = portal\n[portal]\ndatabase = {db}/index.txt\ncrlnumber = {db}/crlnumber\ndefault_md = sha256\ndefault_crl_days = 1\n",
                db = db.display()
            ),
        )
        .unwrap();
        PortalCrl {
            cnf,
            ca: ca.clone(),
        }
    }

    fn ca_cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = openssl(&["ca", "-batch", "-config"]);
        c.arg(&self.cnf)
            .arg("-cert")
            .arg(&self.ca.0)
            .arg("-keyfile")
            .arg(&self.ca.1)
            .args(args);
        c
    }

    /// Adds `cert` to the revoked list (for the next CRL).
    fn revoke(&self, cert: &Path) {
        ok(self.ca_cmd(&["-revoke"]).arg(cert));
    }

    /// Writes a CRL (PEM) to `out`, with `extra` arguments to `openssl ca -gencrl`.
    fn write(&self, out: &Path, extra: &[&str]) {
        ok(self.ca_cmd(&["-gencrl"]).args(extra).arg("-out").arg(out));
    }
}

/// Replaces `path` as an operator's tool would: write beside it, then rename over it.
fn replace_file(from: &Path, path: &Path) {
    let tmp = path.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Posts as the retriever until the answer's status is `status`, for the server to
/// notice a changed CRL file; gives up after a minute.
fn post_until(s: &Setup, client: &(PathBuf, PathBuf), status: u16) -> CurlResult {
    let start = std::time::Instant::now();
    loop {
        let r = post_with_cert(
            &s.ca,
            client,
            &["--data-urlencode", "username=alice"],
            &s.csr,
        );
        if r.status == status || start.elapsed() > std::time::Duration::from_secs(60) {
            return r;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn revoked_retriever_certificates_are_refused_and_crls_reload() {
    let dir = tempfile::tempdir().unwrap();
    // The CRL path is known before the setup writes the configuration.
    let crl_path = dir.path().join("portal-ca.crl.pem");
    let mut s = setup("");
    s.ca.edit_config(
        "retriever_crls = []",
        &format!("retriever_crls = [\"{}\"]", crl_path.display()),
    );
    let tmp = s.ca.dir.path().to_path_buf();
    let crl = PortalCrl::new(&tmp, &s.portal_ca);
    let revoked = make_client(
        &tmp,
        &s.portal_ca,
        "revoked-portal",
        "/O=Example/OU=Portals/CN=portal.example.org",
    );
    crl.revoke(&revoked.0);
    crl.write(&crl_path, &[]);
    s.ca.start();

    // The retriever on no CRL is served; the one on it is refused, by form field and
    // by Basic username (then the password path answers with the certificate's reason).
    let r = post_with_cert(
        &s.ca,
        &s.portal,
        &["--data-urlencode", "username=alice"],
        &s.csr,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_with_cert(
        &s.ca,
        &revoked,
        &["--data-urlencode", "username=alice"],
        &s.csr,
    );
    assert_401(&r, "client certificate not verified: it is revoked");
    let r = post_with_cert(&s.ca, &revoked, &["-u", "alice:not-checked"], &s.csr);
    assert_401(&r, "it is revoked");

    // Revoked after start: the replaced file takes effect without a restart, even for
    // a chain the server verified (and remembered) a moment ago.
    crl.revoke(&s.portal.0);
    let next = tmp.join("next.crl.pem");
    crl.write(&next, &[]);
    replace_file(&next, &crl_path);
    let r = post_until(&s, &s.portal, 401);
    assert_401(&r, "client certificate not verified: it is revoked");
    assert!(
        s.ca.log_text().contains("retriever CRL reloaded"),
        "{}",
        s.ca.log_text()
    );
    // It stays refused, and nothing is issued to it (the requests made before the
    // server noticed the file were served, rightly: the portal was not revoked then).
    let issued = count_issued(&s.ca);
    let r = post_with_cert(&s.ca, &s.portal, &["-u", "alice:x"], &s.csr);
    assert_401(&r, "it is revoked");
    assert_eq!(
        count_issued(&s.ca),
        issued,
        "nothing issued to a revoked portal"
    );

    // A CRL past its nextUpdate: refused as out of date (fail closed), and a broken
    // file on reload keeps the CRL before it, with a warning.
    let fresh = make_client(
        &tmp,
        &s.portal_ca,
        "fresh-portal",
        "/O=Example/OU=Portals/CN=portal.example.org",
    );
    let r = post_with_cert(
        &s.ca,
        &fresh,
        &["--data-urlencode", "username=alice"],
        &s.csr,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let stale = tmp.join("stale.crl.pem");
    crl.write(
        &stale,
        &[
            "-crl_lastupdate",
            "20200101000000Z",
            "-crl_nextupdate",
            "20200102000000Z",
        ],
    );
    replace_file(&stale, &crl_path);
    let r = post_until(&s, &fresh, 401);
    assert_401(
        &r,
        "its issuer's CRL is out of date (its nextUpdate was 2020-01-02",
    );
    std::fs::write(
        tmp.join("junk.pem"),
        "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    )
    .unwrap();
    replace_file(&tmp.join("junk.pem"), &crl_path);
    let start = std::time::Instant::now();
    while !s.ca.log_text().contains("keeping the CRL loaded before") {
        // Requests drive the check.
        post_with_cert(
            &s.ca,
            &fresh,
            &["--data-urlencode", "username=alice"],
            &s.csr,
        );
        assert!(start.elapsed().as_secs() < 60, "{}", s.ca.log_text());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let r = post_with_cert(
        &s.ca,
        &fresh,
        &["--data-urlencode", "username=alice"],
        &s.csr,
    );
    assert_401(&r, "CRL is out of date");
    // A current CRL again: served again.
    crl.write(&next, &[]);
    replace_file(&next, &crl_path);
    let r = post_until(&s, &fresh, 200);
    assert_eq!(r.status, 200, "{}", r.text());

    // The configuration shows the CRL.
    let (out, _) = s.ca.cli_ok(&["config", "check"]);
    assert!(out.contains("auth.retriever_crls"), "{out}");
    assert!(out.contains("portal-ca.crl.pem"), "{out}");
    let (out, _) = s.ca.cli_ok(&["retriever", "list"]);
    assert!(
        out.contains("crls: ") && out.contains("issuer: /O=Example/CN=Portal CA"),
        "{out}"
    );
}

#[test]
fn a_bad_retriever_crl_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let crl_path = dir.path().join("portal-ca.crl.pem");
    let s = setup("");
    s.ca.edit_config(
        "retriever_crls = []",
        &format!("retriever_crls = [\"{}\"]", crl_path.display()),
    );
    let tmp = s.ca.dir.path().to_path_buf();
    let check = |needle: &str| {
        let out = s.ca.cli(&["config", "check"]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "accepted; wanted {needle:?}");
        assert!(err.contains("auth.retriever_crls"), "{err}");
        assert!(err.contains("portal-ca.crl.pem"), "{err}");
        assert!(err.contains(needle), "wanted {needle:?} in {err}");
        // `serve` refuses the same way (under `timeout`, should it ever start).
        let out = run(std::process::Command::new("timeout")
            .arg("60")
            .arg(env!("CARGO_BIN_EXE_onlineca"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&s.ca.config));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("portal-ca.crl.pem"),
            "{err}"
        );
    };
    check("cannot read");
    std::fs::write(&crl_path, "not a CRL at all").unwrap();
    check("not a CRL");
    // A CRL of another CA: signed by nothing in the anchor files.
    let other = make_ca(&tmp, "other-ca", "/O=Elsewhere/CN=Other CA");
    PortalCrl::new(&tmp.join("other"), &other).write(&crl_path, &[]);
    check("its issuer /O=Elsewhere/CN=Other CA is not a certificate in auth.retriever_anchors");
    // An impostor with the anchor's name: the signature does not verify.
    let impostor = make_ca(&tmp, "impostor-ca", "/O=Example/CN=Portal CA");
    PortalCrl::new(&tmp.join("impostor"), &impostor).write(&crl_path, &[]);
    check("its signature does not verify");
    // The real one, as DER: accepted.
    let pem = tmp.join("good.crl.pem");
    PortalCrl::new(&tmp.join("good"), &s.portal_ca).write(&pem, &[]);
    ok(openssl(&["crl", "-outform", "DER", "-in"])
        .arg(&pem)
        .arg("-out")
        .arg(&crl_path));
    s.ca.cli_ok(&["config", "check"]);
}
