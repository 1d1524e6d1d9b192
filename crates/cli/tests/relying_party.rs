//! Real relying parties accept what `onlineca getcert` writes: nginx with
//! `ssl_verify_client on` and the trust roots as its client CAs, called by curl
//! (PEM pair, bundle, PKCS#12), Python `requests` and PHP's curl (seed 000's
//! scenario). Tests whose tools are missing skip loudly, and fail under CI.

mod common;
mod userkit;

use std::process::Command;

use common::{ok, openssl, run};
use userkit::{Holder, Nginx, curl, have_nginx, require, text};

#[test]
fn nginx_accepts_the_issued_certificate_in_every_form_and_refuses_others() {
    if !have_nginx() {
        return;
    }
    let h = Holder::new();
    let nginx = Nginx::start(&h);
    let (cert, key, bundle, p12) = (
        h.cert.to_str().unwrap(),
        h.key.to_str().unwrap(),
        h.bundle.to_str().unwrap(),
        h.p12.to_str().unwrap(),
    );

    // The PEM certificate and key.
    let (status, body) = curl(&h.trust, &nginx.url, &["--cert", cert, "--key", key]);
    assert_eq!(status, 200, "{body}\n{}", nginx.log());
    assert!(body.contains(&format!("CN={}", h.user)), "{body}");
    assert!(body.contains("OU=Users"), "{body}");

    // The deployed layout: certificate(s) then key in one file.
    let (status, body) = curl(&h.trust, &nginx.url, &["--cert", bundle]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("CN=alice"), "{body}");

    // PKCS#12.
    let with_password = format!("{p12}:{}", h.p12_password);
    let (status, body) = curl(
        &h.trust,
        &nginx.url,
        &["--cert-type", "P12", "--cert", &with_password],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("CN=alice"), "{body}");

    // No certificate: nginx's 400 "No required SSL certificate was sent".
    let (status, body) = curl(&h.trust, &nginx.url, &[]);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("No required SSL certificate"), "{body}");

    // A certificate for the same name from another CA: 400.
    let (fcert, fkey) = h.foreign_cert();
    let (status, body) = curl(
        &h.trust,
        &nginx.url,
        &[
            "--cert",
            fcert.to_str().unwrap(),
            "--key",
            fkey.to_str().unwrap(),
        ],
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("certificate error"), "{body}");
}

#[test]
fn python_requests_calls_the_service_with_cert_and_trust_dir() {
    if !have_nginx()
        || !require(
            "Python requests",
            "python3 -m pip install requests",
            Command::new("python3").args(["-c", "import requests"]),
        )
    {
        return;
    }
    let h = Holder::new();
    let nginx = Nginx::start(&h);
    let script = "import sys, requests\n\
                  r = requests.get(sys.argv[1], cert=(sys.argv[2], sys.argv[3]), verify=sys.argv[4], timeout=60)\n\
                  print(r.status_code)\n\
                  print(r.text)\n";
    let out = ok(Command::new("python3")
        .args(["-c", script, &nginx.url])
        .arg(&h.cert)
        .arg(&h.key)
        .arg(&h.trust));
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.starts_with("200\n"), "{out}");
    assert!(out.contains("CN=alice"), "{out}");
}

#[test]
fn php_curl_calls_the_service_with_sslcert_and_sslkey_as_in_seed_000() {
    if !have_nginx()
        || !require(
            "PHP with curl",
            "apt-get install php-cli php-curl",
            Command::new("php").args(["-r", "exit(function_exists('curl_init') ? 0 : 1);"]),
        )
    {
        return;
    }
    let h = Holder::new();
    let nginx = Nginx::start(&h);
    let script = h.ca.path("call.php");
    std::fs::write(
        &script,
        r#"<?php
// Call someone else's web service with the certificate and private key from getcert.
[$_, $url, $cert, $key, $capath] = $argv;
$ch = curl_init($url);
curl_setopt($ch, CURLOPT_SSLCERT, $cert);
curl_setopt($ch, CURLOPT_SSLKEY, $key);
curl_setopt($ch, CURLOPT_CAPATH, $capath);
curl_setopt($ch, CURLOPT_RETURNTRANSFER, true);
$body = curl_exec($ch);
if ($body === false) {
    fwrite(STDERR, curl_error($ch) . "\n");
    exit(1);
}
echo curl_getinfo($ch, CURLINFO_RESPONSE_CODE), "\n", $body;
"#,
    )
    .unwrap();
    let out = run(Command::new("php")
        .arg(&script)
        .arg(&nginx.url)
        .arg(&h.cert)
        .arg(&h.key)
        .arg(&h.trust));
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.starts_with("200\n"), "{all}");
    assert!(all.contains("CN=alice"), "{all}");
}

#[test]
fn pkcs12_is_read_by_openssl_3_without_legacy_and_by_python_cryptography() {
    let h = Holder::new();
    let pass = format!("pass:{}", h.p12_password);
    let out = ok(&mut openssl(&[
        "pkcs12",
        "-info",
        "-noout",
        "-in",
        h.p12.to_str().unwrap(),
        "-passin",
        &pass,
    ]));
    let info = text(&out);
    assert!(info.contains("PBES2"), "{info}");
    assert!(!info.contains("RC2") && !info.contains("3DES"), "{info}");

    if !require(
        "Python cryptography",
        "python3 -m pip install cryptography",
        Command::new("python3").args(["-c", "import cryptography"]),
    ) {
        return;
    }
    let script = "import sys\n\
                  from cryptography.hazmat.primitives.serialization import pkcs12\n\
                  key, cert, extra = pkcs12.load_key_and_certificates(open(sys.argv[1], 'rb').read(), sys.argv[2].encode())\n\
                  assert key.public_key() == cert.public_key()\n\
                  print(cert.subject.rfc4514_string())\n\
                  print(len(extra))\n";
    let out = ok(Command::new("python3")
        .args(["-c", script])
        .arg(&h.p12)
        .arg(&h.p12_password));
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.starts_with("CN=alice,OU=Users,"), "{out}");
    assert_eq!(
        out.lines().nth(1),
        Some("1"),
        "the issuing CA travels along: {out}"
    );
}

#[test]
fn renewal_presents_the_current_certificate_and_sends_no_password() {
    // The CA side of renewal is another issue's; here nginx stands in for it and
    // echoes what it got, which the client reports as an unexpected answer.
    if !have_nginx() {
        return;
    }
    let h = Holder::new();
    let nginx = Nginx::start_with(
        &h,
        "on",
        r#"location /onlineca/certificate/ {
            default_type text/plain;
            return 418 "dn=$ssl_client_s_dn authorization=[$http_authorization] method=$request_method type=$content_type\n";
        }"#,
    );
    let base = format!("{}onlineca", nginx.url);
    let out = run(common::onlineca()
        .args(["getcert", "--renew", "--url", &base, "--trustroots"])
        .arg(&h.trust)
        .arg("--cert")
        .arg(&h.cert)
        .arg("--key")
        .arg(&h.key));
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("unexpected answer 418"), "{all}");
    assert!(all.contains("dn=CN=alice,OU=Users,"), "{all}");
    assert!(all.contains("authorization=[]"), "{all}");
    assert!(
        all.contains("method=POST type=application/x-www-form-urlencoded"),
        "{all}"
    );

    // Rotating the key still authenticates with the current certificate, and
    // leaves the current files alone when the renewal fails.
    let before = std::fs::read(&h.key).unwrap();
    let out = run(common::onlineca()
        .args([
            "getcert",
            "--renew",
            "--rotate-key",
            "--url",
            &base,
            "--trustroots",
        ])
        .arg(&h.trust)
        .arg("--cert")
        .arg(&h.cert)
        .arg("--key")
        .arg(&h.key));
    let all = text(&out);
    assert!(all.contains("dn=CN=alice,OU=Users,"), "{all}");
    assert_eq!(std::fs::read(&h.key).unwrap(), before);
}

#[test]
fn a_hostile_trust_roots_answer_writes_nothing() {
    // nginx, trusted through the directory already held, serves trust roots with
    // file names that would escape or hide in the directory.
    if !have_nginx() {
        return;
    }
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let h = Holder::new();
    let cert = std::fs::read_to_string(&h.cert).unwrap();
    let answers = [
        (
            "dots",
            format!(
                "TRUSTED_CERTS={}\nFILEDATA_../evil.0={}\n",
                b64("../evil.0"),
                b64(&cert)
            ),
        ),
        ("hidden", format!(".bashrc={}\n", b64("echo pwned"))),
        ("slash", format!("sub/x.0={}\n", b64(&cert))),
    ];
    let locations: String = answers
        .iter()
        .map(|(name, body)| {
            format!(
                "location = /{name}/onlineca/trustroots/ {{ default_type text/plain; return 200 \"{}\"; }}\n",
                body.replace('\n', "\\n")
            )
        })
        .collect();
    let nginx = Nginx::start_with(&h, "optional", &locations);
    let before = std::fs::read_dir(&h.trust).unwrap().count();
    for (name, _) in &answers {
        let out = run(common::onlineca()
            .args([
                "trustroots",
                "--url",
                &format!("{}{name}/onlineca", nginx.url),
            ])
            .arg("--dir")
            .arg(&h.trust));
        let said = text(&out);
        assert!(!out.status.success(), "{name}: {said}");
        assert!(said.contains("refused file name"), "{name}: {said}");
    }
    assert_eq!(std::fs::read_dir(&h.trust).unwrap().count(), before);
    assert!(!h.ca.dir.path().join("evil.0").exists());
}
