//! The admin listener: `/metrics`, `/healthz` and `/readyz` on plain HTTP, on an
//! address of its own (`[admin] listen`, loopback by default) so that none of it is
//! reachable through the public HTTPS listener.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::error::AdminError;
use crate::state::AppState;

/// Connections served at once: scrapers and probes are few.
const MAX_CONNECTIONS: usize = 16;
/// Longest a request may take, and a silent client may hold a connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the store may take to answer `/readyz` (within the request's time).
const STORE_TIMEOUT: Duration = Duration::from_secs(4);

/// The admin router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { AdminError::NotFound })
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match state.metrics.render() {
        Ok(text) => {
            let mut resp = (StatusCode::OK, text).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        Err(_) => AdminError::Encode.into_response(),
    }
}

/// The process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to issue: the store answers a query, and a required audit log can be
/// written. (The CA key is loaded before the listeners start, and kept in memory: a
/// running server always has it.)
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.audit.required()
        && let Some(Err(e)) = state.audit.probe()
    {
        return AdminError::AuditDown(e.to_string()).into_response();
    }
    match tokio::time::timeout(STORE_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => AdminError::StoreDown(e.to_string()).into_response(),
        Err(_) => AdminError::StoreSlow(STORE_TIMEOUT).into_response(),
    }
}

/// Serves the admin router on `listener` until `shutdown` completes: HTTP/1.1,
/// a few connections at once, each request bounded in time.
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    let app = router(state);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let tcp = tokio::select! {
            a = listener.accept() => match a {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "admin listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = tower::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    match tokio::time::timeout(REQUEST_TIMEOUT, app.oneshot(req)).await {
                        Ok(r) => r,
                        Err(_) => {
                            Ok((StatusCode::SERVICE_UNAVAILABLE, "timed out\n").into_response())
                        }
                    }
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(REQUEST_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(svc));
            // The whole connection is bounded too: a client that trickles cannot hold a slot.
            let _ = tokio::time::timeout(REQUEST_TIMEOUT * 2, conn).await;
        });
    }
}
