//! TCP + TLS + HTTP/1.1 connections, and how a request can fail.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::endpoint::Endpoint;

/// Largest answer read (a certificate chain is a few KiB).
const MAX_BODY: usize = 1 << 20;

/// Why a request did not yield a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// The TCP connection could not be made.
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// The per-request timeout passed.
    Timeout,
    /// The HTTP exchange broke (connection closed, protocol error).
    Http,
    /// An answer other than 200.
    Status(u16),
    /// A 200 whose body is not a certificate.
    BadBody,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect => f.write_str("connect"),
            Failure::Tls => f.write_str("tls"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Http => f.write_str("http"),
            Failure::Status(s) => write!(f, "{s}"),
            Failure::BadBody => f.write_str("bad-body"),
        }
    }
}

/// Opens connections to one endpoint with one shared TLS configuration.
pub struct Connector {
    tls: TlsConnector,
    addr: SocketAddr,
    server_name: ServerName<'static>,
    negotiated: OnceLock<String>,
    first_error: OnceLock<String>,
}

impl Connector {
    /// A connector for `endpoint` using `config`.
    pub fn new(endpoint: &Endpoint, config: Arc<rustls::ClientConfig>) -> Connector {
        Connector {
            tls: TlsConnector::from(config),
            addr: endpoint.addr,
            server_name: endpoint.server_name.clone(),
            negotiated: OnceLock::new(),
            first_error: OnceLock::new(),
        }
    }

    /// The TLS version, key exchange group and cipher suite of the first connection.
    pub fn negotiated(&self) -> Option<&str> {
        self.negotiated.get().map(String::as_str)
    }

    /// Why the first connection that failed did (for the report).
    pub fn first_error(&self) -> Option<&str> {
        self.first_error.get().map(String::as_str)
    }

    fn failed(&self, kind: Failure, e: impl fmt::Display) -> Failure {
        if self.first_error.get().is_none() {
            let _ = self.first_error.set(format!("{kind}: {e}"));
        }
        kind
    }

    /// TCP connection, TLS handshake, HTTP/1.1 handshake.
    pub async fn connect(&self) -> Result<Conn, Failure> {
        self.connect_from(None).await
    }

    /// [`Connector::connect`] from a given local address (a loopback address other
    /// than 127.0.0.1 looks like another client to the server).
    pub async fn connect_from(&self, source: Option<IpAddr>) -> Result<Conn, Failure> {
        let tcp = match source {
            None => tokio::net::TcpStream::connect(self.addr).await,
            Some(ip) => {
                let socket = if ip.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()
                } else {
                    tokio::net::TcpSocket::new_v6()
                };
                match socket.and_then(|s| s.bind(SocketAddr::new(ip, 0)).map(|()| s)) {
                    Ok(s) => s.connect(self.addr).await,
                    Err(e) => Err(e),
                }
            }
        }
        .map_err(|e| self.failed(Failure::Connect, e))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| self.failed(Failure::Tls, e))?;
        if self.negotiated.get().is_none() {
            let session = tls.get_ref().1;
            let show = |v: Option<String>| v.unwrap_or_else(|| "?".into());
            let _ = self.negotiated.set(format!(
                "{} {} {}",
                show(session.protocol_version().map(|v| format!("{v:?}"))),
                show(
                    session
                        .negotiated_key_exchange_group()
                        .map(|g| format!("{:?}", g.name()))
                ),
                show(
                    session
                        .negotiated_cipher_suite()
                        .map(|c| format!("{:?}", c.suite()))
                ),
            ));
        }
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|_| Failure::Http)?;
        // Runs the connection; once the `Conn` (its sender) is dropped, it closes it
        // cleanly (TLS close_notify, then FIN), as an ordinary client would.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender })
    }
}

/// One open HTTP/1.1 connection; closed when dropped.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Whether another request may be sent on it.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), Failure> {
        self.sender.ready().await.map_err(http_failure)?;
        let resp = self.sender.send_request(req).await.map_err(http_failure)?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(http_failure)?
            .to_bytes();
        Ok((status, body))
    }
}

/// The first HTTP exchange that broke, and how (for the report).
static FIRST_HTTP_ERROR: OnceLock<String> = OnceLock::new();

fn http_failure(e: impl fmt::Debug) -> Failure {
    let _ = FIRST_HTTP_ERROR.set(format!("{e:?}"));
    Failure::Http
}

/// How the first HTTP exchange that broke did, if one did.
pub fn first_http_error() -> Option<&'static str> {
    FIRST_HTTP_ERROR.get().map(String::as_str)
}
