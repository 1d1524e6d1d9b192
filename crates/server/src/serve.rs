//! The accept loop: TLS handshakes with a deadline, HTTP/1.1 and HTTP/2 on each
//! connection, a cap on concurrent connections, and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::proxy_protocol::{self, HeaderError, Source};
use crate::ratelimit::ConnectionCounts;
use crate::routes::{ConnInfo, router};
use crate::state::{AppState, StartError};
use crate::tls::server_config;

/// Largest HTTP/1 header block accepted.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Serves `state` on `listener` until `shutdown` completes, then stops accepting and
/// lets in-flight requests finish (up to the configured grace period).
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let tls = TlsAcceptor::from(server_config(&state.config.tls)?);
    let crl_task = crate::crl::start(state.clone()).await;
    let server = &state.config.server;
    let handshake_timeout = server.handshake_timeout;
    let grace = server.shutdown_grace;
    let idle_timeout = server.idle_timeout;
    let limit = Arc::new(Semaphore::new(server.max_connections));
    let per_client = ConnectionCounts::new(server.max_connections_per_address);
    let proxies = server.trusted_proxies.clone();
    let app = router(state.clone());

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(100)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Every client of a balancer comes from the balancer's address: its
        // connections are counted per client once its PROXY header has said whose
        // they are.
        let slot = if proxies.contains(peer.ip()) {
            None
        } else {
            let Some(slot) = per_client.open(peer.ip()) else {
                // Closed at once: the slot goes back to clients that are not hogging them.
                tracing::debug!(%peer, "too many connections from this client; closed");
                continue;
            };
            Some(slot)
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let app = app.clone();
        let builder = builder.clone();
        let stop = stop_rx.clone();
        let open = crate::metrics::GaugeGuard::new(&state.metrics.open_connections);
        let per_client = per_client.clone();
        let check_foreign = !proxies.is_empty();
        tokio::spawn(async move {
            let _permit = permit;
            let _open = open;
            // The PROXY header and the TLS handshake share one deadline.
            let deadline = tokio::time::Instant::now() + handshake_timeout;
            let mut tcp = tcp;
            let (peer, _slot) = match slot {
                // From a balancer.
                None => {
                    let Some(client) = client_of_balancer(&mut tcp, peer, deadline).await else {
                        return;
                    };
                    let Some(slot) = per_client.open(client.ip()) else {
                        tracing::debug!(peer = %client, balancer = %peer, "too many connections from this client; closed");
                        return;
                    };
                    (client, slot)
                }
                Some(slot) => {
                    if check_foreign && !no_foreign_header(&tcp, peer, deadline).await {
                        return;
                    }
                    (peer, slot)
                }
            };
            let stream = match tokio::time::timeout_at(deadline, tls.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let client_certs = stream
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
                .unwrap_or_default();
            let info = ConnInfo { peer, client_certs };
            let activity = Arc::new(Activity::new());
            let svc = {
                let activity = activity.clone();
                tower::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(info.clone());
                    let app = app.clone();
                    let guard = activity.begin();
                    async move {
                        let resp = app.oneshot(req).await;
                        drop(guard);
                        resp
                    }
                })
            };
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(svc),
            );
            // Closed gracefully once it has had no request in flight for `idle_timeout`
            // (counted from the handshake, so a client that connects and says nothing
            // cannot hold a connection slot), or when the server shuts down.
            let mut stop = stop;
            let conn = conn.into_owned();
            tokio::pin!(conn);
            let mut tick = tokio::time::interval(Duration::from_secs(1).min(idle_timeout));
            let mut closing = false;
            let result = loop {
                tokio::select! {
                    r = conn.as_mut() => break r,
                    _ = tick.tick(), if !closing => {
                        if activity.idle_for(Instant::now()) >= idle_timeout {
                            tracing::debug!(%peer, "closing an idle connection");
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                        }
                    }
                    _ = stop.changed(), if !closing => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    crl_task.abort();
    tracing::info!("shutting down: no new connections; waiting for requests in flight");
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it ends: having them all back means done.
    let all = u32::try_from(server.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, limit.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
    Ok(())
}

/// The client a listed balancer's connection is for, from its PROXY header (the
/// balancer itself for a `LOCAL` header); `None`, logged, when there is no valid
/// header by `deadline`: the connection is then dropped without a word.
async fn client_of_balancer(
    tcp: &mut tokio::net::TcpStream,
    balancer: SocketAddr,
    deadline: tokio::time::Instant,
) -> Option<SocketAddr> {
    match tokio::time::timeout_at(deadline, proxy_protocol::read_header(tcp)).await {
        Ok(Ok(Source::Client(client))) => Some(client),
        Ok(Ok(Source::Balancer)) => Some(balancer),
        Ok(Err(HeaderError::Closed)) => {
            // A plain TCP health check: connected, and closed.
            tracing::debug!(%balancer, "connection from a balancer closed before a PROXY header");
            None
        }
        Ok(Err(e)) => {
            tracing::warn!(%balancer, error = %e, "connection from a balancer without a valid PROXY header; dropped");
            None
        }
        Err(_) => {
            tracing::warn!(%balancer, "no PROXY header from a balancer in time; dropped");
            None
        }
    }
}

/// Whether a connection from an address not in `proxy_protocol_from` may go on to
/// the TLS handshake: not when it starts with a PROXY header, which would name an
/// address of its choosing (logged at debug, as failed handshakes are: anyone can
/// cause it).
async fn no_foreign_header(
    tcp: &tokio::net::TcpStream,
    peer: SocketAddr,
    deadline: tokio::time::Instant,
) -> bool {
    match tokio::time::timeout_at(deadline, proxy_protocol::peek_for_header(tcp)).await {
        Ok(Ok(false)) => true,
        Ok(Ok(true)) => {
            tracing::debug!(%peer, "PROXY header from an address not in server.proxy_protocol_from; dropped");
            false
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "connection failed before the TLS handshake");
            false
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            false
        }
    }
}

/// Requests in flight on one connection, and when it was last busy.
struct Activity {
    in_flight: AtomicUsize,
    last: std::sync::Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            last: std::sync::Mutex::new(Instant::now()),
        }
    }

    fn begin(self: &Arc<Self>) -> BusyOwned {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        BusyOwned(self.clone())
    }

    /// How long the connection has had no request in flight (zero while one is).
    fn idle_for(&self, now: Instant) -> Duration {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        now.saturating_duration_since(last)
    }
}

/// Marks a request in flight until dropped.
struct BusyOwned(Arc<Activity>);

impl Drop for BusyOwned {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Binds the listener (port 0 picks a free port); the error names the address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| StartError::Bind { addr, error })
}
