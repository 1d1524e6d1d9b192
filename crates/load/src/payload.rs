//! Pre-encoded requests and the check of every answer.

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode, Uri};

use crate::args::Target;

/// Everything needed to build each request cheaply: the pool of encoded bodies and
/// the constant headers.
#[derive(Debug)]
pub struct Payload {
    target: Target,
    uri: Uri,
    host: HeaderValue,
    content_type: HeaderValue,
    authorization: Option<HeaderValue>,
    bodies: Vec<Bytes>,
}

impl Payload {
    /// onlineca: `POST {path}` with the form field `certificate_request`.
    pub fn onlineca(
        path: &str,
        host: &str,
        authorization: Option<HeaderValue>,
        csrs: &[String],
    ) -> Result<Payload> {
        let bodies = csrs
            .iter()
            .map(|csr| Bytes::from(format!("certificate_request={}", form_encode(csr))))
            .collect();
        Payload::new(
            Target::Onlineca,
            path,
            host,
            "application/x-www-form-urlencoded",
            authorization,
            bodies,
        )
    }

    /// onlineca: `POST {path}` with bodies given as they are (oversized ones, say).
    pub fn onlineca_bodies(
        path: &str,
        host: &str,
        authorization: Option<HeaderValue>,
        bodies: Vec<Bytes>,
    ) -> Result<Payload> {
        Payload::new(
            Target::Onlineca,
            path,
            host,
            "application/x-www-form-urlencoded",
            authorization,
            bodies,
        )
    }

    /// cfssl: `POST {path}` (`/api/v1/cfssl/authsign`) with an authenticated request:
    /// `{"token": base64(HMAC-SHA256(key, request)), "request": base64(request)}`
    /// where `request` is `{"certificate_request": "<PEM CSR>"}`.
    pub fn cfssl(path: &str, host: &str, hmac_key: &[u8], csrs: &[String]) -> Result<Payload> {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, hmac_key);
        let bodies = csrs
            .iter()
            .map(|csr| {
                let request =
                    serde_json::to_vec(&serde_json::json!({ "certificate_request": csr }))?;
                let token = aws_lc_rs::hmac::sign(&key, &request);
                let body = serde_json::json!({
                    "token": STANDARD.encode(token.as_ref()),
                    "request": STANDARD.encode(&request),
                });
                Ok(Bytes::from(serde_json::to_vec(&body)?))
            })
            .collect::<Result<Vec<_>>>()?;
        Payload::new(Target::Cfssl, path, host, "application/json", None, bodies)
    }

    fn new(
        target: Target,
        path: &str,
        host: &str,
        content_type: &'static str,
        authorization: Option<HeaderValue>,
        bodies: Vec<Bytes>,
    ) -> Result<Payload> {
        Ok(Payload {
            target,
            uri: path.parse().with_context(|| format!("bad path {path}"))?,
            host: HeaderValue::from_str(host)?,
            content_type: HeaderValue::from_static(content_type),
            authorization,
            bodies,
        })
    }

    /// The `i`-th request (cycling through the pool).
    pub fn request(&self, i: usize) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.bodies[i % self.bodies.len()].clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        let h = req.headers_mut();
        h.insert(hyper::header::HOST, self.host.clone());
        h.insert(hyper::header::CONTENT_TYPE, self.content_type.clone());
        if let Some(a) = &self.authorization {
            h.insert(hyper::header::AUTHORIZATION, a.clone());
        }
        req
    }

    /// Whether a 200 answer carries a certificate (`Err` says what is wrong).
    pub fn check(&self, status: StatusCode, body: &[u8]) -> Result<(), String> {
        debug_assert_eq!(status, StatusCode::OK);
        match self.target {
            Target::Onlineca => check_certificate(body),
            Target::Cfssl => {
                let v: serde_json::Value =
                    serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
                if v["success"] != serde_json::Value::Bool(true) {
                    return Err("success is not true".into());
                }
                let cert = v["result"]["certificate"]
                    .as_str()
                    .ok_or("no result.certificate")?;
                check_certificate(cert.as_bytes())
            }
        }
    }
}

/// An HTTP Basic `Authorization` value.
pub fn basic(user: &str, password: &str) -> Result<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!(
        "Basic {}",
        STANDARD.encode(format!("{user}:{password}"))
    ))?;
    v.set_sensitive(true);
    Ok(v)
}

/// The first PEM block is a parseable X.509 certificate.
pub fn check_certificate(body: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
    let block = pem::parse(text).map_err(|e| format!("not PEM: {e}"))?;
    if block.tag() != "CERTIFICATE" {
        return Err(format!("PEM block is {}, not CERTIFICATE", block.tag()));
    }
    x509_parser::parse_x509_certificate(block.contents())
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    Ok(())
}

/// `application/x-www-form-urlencoded` value encoding.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 11 / 10);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(form_encode("a b+/=\n-"), "a+b%2B%2F%3D%0A-");
    }

    #[test]
    fn cfssl_body_carries_hmac_of_request() {
        let key = [7u8; 16];
        let p = Payload::cfssl(
            "/api/v1/cfssl/authsign",
            "127.0.0.1:1",
            &key,
            &["CSR".into()],
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&p.bodies[0]).unwrap();
        let request = STANDARD.decode(v["request"].as_str().unwrap()).unwrap();
        let token = STANDARD.decode(v["token"].as_str().unwrap()).unwrap();
        let inner: serde_json::Value = serde_json::from_slice(&request).unwrap();
        assert_eq!(inner["certificate_request"], "CSR");
        let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
        aws_lc_rs::hmac::verify(&k, &request, &token).unwrap();
    }

    #[test]
    fn answers_are_checked() {
        assert!(check_certificate(b"hello").is_err());
        assert!(
            check_certificate(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(check_certificate(cert.pem().as_bytes()).is_ok());
    }
}
