//! One HTTPS request on its own connection: TCP, rustls, HTTP/1.1 (hyper).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::CertificateDer;

use crate::certs::CertSummary;
use crate::endpoint::Endpoint;
use crate::error::{ClientError, Result, UntrustedServer};
use crate::tls::{ClientIdentity, RecordingVerifier, client_config};

/// Largest response body read (trust roots and certificate chains are a few KiB).
const MAX_BODY: usize = 1 << 20;

/// What to send.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub method: Method,
    pub route: &'static str,
    pub content_type: Option<&'static str>,
    /// A complete `Authorization` header value, if any.
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

/// What came back.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub status: StatusCode,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
    /// The server's certificate chain as presented.
    pub server_chain: Vec<CertificateDer<'static>>,
}

impl Incoming {
    /// The body as a one-line, printable message (for errors).
    pub fn message(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let clean: String = line.chars().filter(|c| !c.is_control()).take(300).collect();
        clean.trim().to_string()
    }

    /// Turns a non-200 answer into the error a person can act on.
    pub fn error(&self, endpoint: &Endpoint, route: &str) -> ClientError {
        ClientError::Status {
            status: self.status.as_u16(),
            message: self.message(),
            retry_after: self.retry_after.clone(),
            url: endpoint.url_of(route),
        }
    }
}

/// Sends one request; `trust` names what the server's certificate is checked
/// against (for messages).
pub(crate) async fn send(
    endpoint: &Endpoint,
    verifier: Arc<RecordingVerifier>,
    trust: &str,
    identity: Option<&ClientIdentity>,
    out: Outgoing,
    timeout: Duration,
) -> Result<Incoming> {
    let addr = endpoint.addr();
    match tokio::time::timeout(timeout, exchange(endpoint, verifier, trust, identity, out)).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout {
            addr,
            secs: timeout.as_secs(),
        }),
    }
}

async fn exchange(
    endpoint: &Endpoint,
    verifier: Arc<RecordingVerifier>,
    trust: &str,
    identity: Option<&ClientIdentity>,
    out: Outgoing,
) -> Result<Incoming> {
    let addr = endpoint.addr();
    let config = client_config(verifier.clone(), identity)?;
    let tcp = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|error| ClientError::Unreachable {
            addr: addr.clone(),
            error,
        })?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(endpoint.server_name(), tcp)
        .await
        .map_err(|e| match verifier.refusal() {
            Some(reason) => {
                let chain = verifier.seen_chain();
                let (subject, issuer, fingerprint) = chain
                    .first()
                    .map(|c| CertSummary::describe(c))
                    .unwrap_or_default();
                ClientError::UntrustedServer(Box::new(UntrustedServer {
                    addr: addr.clone(),
                    trust: trust.to_string(),
                    reason,
                    subject,
                    issuer,
                    fingerprint,
                }))
            }
            None => ClientError::Tls {
                addr: addr.clone(),
                reason: e.to_string(),
            },
        })?;
    let server_chain = verifier.seen_chain();

    let http_err = |e: &dyn std::fmt::Display| ClientError::Http {
        addr: addr.clone(),
        reason: e.to_string(),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| http_err(&e))?;
    let driver = tokio::spawn(conn);

    let mut req = Request::builder()
        .method(out.method)
        .uri(endpoint.path(out.route))
        .header(hyper::header::HOST, host_header(endpoint))
        .header(
            hyper::header::USER_AGENT,
            concat!("onlineca-client/", env!("CARGO_PKG_VERSION")),
        )
        .header(hyper::header::ACCEPT, "text/plain");
    if let Some(ct) = out.content_type {
        req = req.header(hyper::header::CONTENT_TYPE, ct);
    }
    if let Some(auth) = out.authorization {
        req = req.header(hyper::header::AUTHORIZATION, auth);
    }
    let req = req
        .body(Full::new(Bytes::from(out.body)))
        .map_err(|e| http_err(&e))?;
    let result = async {
        let resp = sender.send_request(req).await.map_err(|e| http_err(&e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().filter(|c| !c.is_control()).take(64).collect());
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| http_err(&format!("reading the answer: {e}")))?
            .to_bytes()
            .to_vec();
        Ok(Incoming {
            status,
            retry_after,
            body,
            server_chain,
        })
    }
    .await;
    drop(sender);
    driver.abort();
    result
}

fn host_header(e: &Endpoint) -> String {
    let host = if e.host.contains(':') {
        format!("[{}]", e.host)
    } else {
        e.host.clone()
    };
    if e.port == 443 {
        host
    } else {
        format!("{host}:{}", e.port)
    }
}
