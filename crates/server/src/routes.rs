//! The HTTP API: paths, methods, handlers and the access log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use onlineca_core::trustroots::Encoding;
use time::OffsetDateTime;

use crate::audit::Event;
use crate::error::ApiError;
use crate::issuance::{self, IssueRequest};
use crate::state::AppState;
use crate::{body, credentials};

/// Facts about the connection a request arrived on, set by the accept loop.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The client's certificate chain, as sent (leaf first); empty when none.
    pub client_certs: Vec<rustls_pki_types::CertificateDer<'static>>,
}

/// The request id, set by the access-log middleware and quoted in 5xx bodies.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// What a handler tells the access log beyond status and timing.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogFields {
    user: Option<String>,
    serial: Option<String>,
    error: Option<String>,
    /// How the request was authenticated (`password`, `retriever`, `renewal`,
    /// `ldap`), once it was.
    auth: Option<&'static str>,
    /// The retriever's subject, for a retriever's request.
    retriever: Option<String>,
}

/// The API router, mounted under the configured prefix.
pub fn router(state: Arc<AppState>) -> Router {
    let prefix = state.config.server.prefix.trim_end_matches('/').to_string();
    let mut r = Router::new();
    // Both spellings of each path answer directly: a redirect would turn a POST into a GET.
    for path in ["certificate", "certificate/"] {
        r = r.route(&format!("{prefix}/{path}"), any(certificate));
    }
    for path in ["trustroots", "trustroots/"] {
        r = r.route(&format!("{prefix}/{path}"), any(trustroots));
    }
    for path in ["crl", "crl/"] {
        r = r.route(&format!("{prefix}/{path}"), any(crate::crl::handler));
    }
    if state.config.est.enabled {
        r = crate::est::routes(r);
    }
    r.fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), access_log))
        .with_state(state)
}

pub(crate) fn fail(
    state: &AppState,
    id: &RequestId,
    user: Option<String>,
    e: ApiError,
) -> Response {
    let mut resp = e.to_response(&state.config.auth.realm, &id.0);
    resp.extensions_mut().insert(LogFields {
        user,
        error: Some(e.to_string()),
        ..LogFields::default()
    });
    resp
}

async fn certificate(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let id = request_id(&req);
    if req.method() != Method::POST {
        let e = ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            allow: "POST",
        };
        return fail(&state, &id, None, e);
    }
    match enroll(&state, req, &id, None, None).await {
        Ok(issued) => {
            let mut text = issued.issued.pem.clone();
            text.push_str(state.ca.chain_pem());
            let mut resp = plain(StatusCode::OK, text);
            resp.extensions_mut().insert(issued.log);
            resp
        }
        Err(refused) => refused.into_response(&state, &id, Api::Seed),
    }
}

/// Which API answers: the seed's, or EST (RFC 7030), whose refusals use its own
/// status for a malformed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// `POST {prefix}/certificate/`.
    Seed,
    /// `/.well-known/est/...`.
    Est,
}

/// A certificate issued by [`enroll`], and what the access log says of it.
pub(crate) struct Enrolled {
    /// The certificate.
    pub issued: onlineca_core::Issued,
    /// The access log's fields.
    pub(crate) log: LogFields,
}

/// A refusal from [`enroll`], with what was known of the requester.
pub(crate) struct Refused {
    error: ApiError,
    log: LogFields,
}

impl Refused {
    /// The refusal's response for `api`.
    pub(crate) fn into_response(self, state: &AppState, id: &RequestId, api: Api) -> Response {
        let mut resp = match api {
            Api::Seed => fail(state, id, self.log.user.clone(), self.error),
            Api::Est => crate::est::fail(state, id, self.log.user.clone(), self.error),
        };
        if let Some(f) = resp.extensions_mut().get_mut::<LogFields>() {
            f.auth = self.log.auth;
            f.retriever = self.log.retriever;
        }
        resp
    }
}

/// The one enrollment path of both APIs: the per-address limit, the body (within
/// its slot and limit), authentication, then the issuance pipeline. `require` names
/// the one method a route accepts (EST's simplereenroll: renewal).
pub(crate) async fn enroll(
    state: &Arc<AppState>,
    req: Request,
    id: &RequestId,
    require: Option<onlineca_core::AuthMethod>,
    via: Option<&'static str>,
) -> Result<Enrolled, Refused> {
    let now = OffsetDateTime::now_utc();
    let refuse = |error, user: Option<String>| Refused {
        error,
        log: LogFields {
            user,
            ..LogFields::default()
        },
    };
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let peer = conn.as_ref().map(|c| c.peer);
    let client_certs = conn.map(|c| c.client_certs).unwrap_or_default();
    // The per-address limit comes before the body is read, so that a refused client
    // costs no memory and waits for nothing: the 429 goes at once, and what the
    // client is still sending is read and dropped behind it (bounded), so that curl
    // sees the 429 rather than a reset stream or connection.
    if let (Some(limiter), Some(addr)) = (&state.rate_limiter, peer)
        && let Err(wait) = limiter.take(addr.ip(), std::time::Instant::now())
    {
        body::discard(req);
        return Err(refuse(ApiError::RateLimited(wait), None));
    }
    let headers = req.headers().clone();
    // Bodies held at once are bounded (see `AppState::bodies`); a request waits for a
    // slot within its own timeout.
    let Ok(_slot) = state.bodies.acquire().await else {
        return Err(refuse(ApiError::Internal("body slots closed".into()), None));
    };
    // Read whole before any other refusal, so that none races an upload in progress.
    let raw = body::collect(req, state.config.server.max_body).await;
    let auth = credentials::authenticate(state, &headers, &client_certs, raw, now)
        .await
        .map_err(|r| refuse(r.error, r.user))?;
    let how = LogFields {
        user: Some(auth.principal.username.clone()),
        auth: Some(auth.principal.method.as_str()),
        retriever: auth.principal.retriever.clone(),
        ..LogFields::default()
    };
    if let Some(method) = require
        && auth.principal.method != method
    {
        return Err(Refused {
            error: ApiError::RenewalRefused(
                "simplereenroll renews the certificate presented over TLS: send no password",
            ),
            log: how,
        });
    }
    let issue = IssueRequest {
        principal: auth.principal,
        csr_der: auth.body.der,
        client_addr: peer,
        lifetime_cap: auth.lifetime_cap,
        now,
        request_id: id.0.clone(),
        via,
    };
    match issuance::issue(state, issue).await {
        Ok(issued) => Ok(Enrolled {
            log: LogFields {
                serial: Some(issued.serial_hex.clone()),
                ..how
            },
            issued,
        }),
        Err(error) => Err(Refused { error, log: how }),
    }
}

async fn trustroots(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let id = request_id(&req);
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let e = ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            allow: "GET",
        };
        return fail(&state, &id, None, e);
    }
    let mut enc = state.config.trustroots.format;
    for (k, v) in form_urlencoded_pairs(req.uri().query().unwrap_or("")) {
        if k == "format" {
            match v.parse::<Encoding>() {
                Ok(e) => enc = e,
                Err(_) => {
                    let e = ApiError::BadRequest(format!(
                        "unknown trust-roots format {v:?}: use format=fields or format=files"
                    ));
                    return fail(&state, &id, None, e);
                }
            }
        }
    }
    plain(StatusCode::OK, state.trustroots(enc))
}

fn form_urlencoded_pairs(q: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str(q).unwrap_or_default()
}

async fn not_found(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let id = request_id(&req);
    let path = req.uri().path().chars().take(200).collect::<String>();
    fail(&state, &id, None, ApiError::NotFound(path))
}

fn plain(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

pub(crate) fn request_id(req: &Request) -> RequestId {
    req.extensions()
        .get::<RequestId>()
        .cloned()
        .unwrap_or_else(|| RequestId("-".into()))
}

/// The route a path belongs to, for the metrics: one of a few fixed names, so that
/// scanners probing random paths cannot grow the label set.
pub(crate) fn route_label(prefix: &str, path: &str) -> &'static str {
    if path.starts_with(crate::est::PREFIX) {
        return "est";
    }
    let rest = path
        .strip_prefix(prefix.trim_end_matches('/'))
        .unwrap_or("")
        .trim_matches('/');
    match rest {
        "certificate" => "certificate",
        "trustroots" => "trustroots",
        "crl" => "crl",
        _ => "other",
    }
}

/// The audit record of a refused certificate request. The refusal stands whether or
/// not it could be recorded (the failure is logged and counted).
async fn audit_refusal(
    state: &AppState,
    now: OffsetDateTime,
    id: &str,
    status: u16,
    fields: &LogFields,
    client: &str,
) {
    let event = Event::Refused {
        request_id: id,
        status,
        reason: fields.error.as_deref().unwrap_or("-"),
        user: fields.user.as_deref(),
        method: fields.auth,
        retriever: fields.retriever.as_deref(),
        client: (!client.is_empty()).then(|| client.to_string()),
    };
    let _ = state.audit.record(now, &event).await;
}

fn new_request_id() -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; 8];
    // A non-random id would still be an id: ignore a (never seen) RNG failure.
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut b);
    hex::encode(b)
}

/// One structured line per request: method, path, status, user, how they were
/// authenticated and through which retriever, serial, duration (milliseconds, three
/// decimals), request id, client. Never a credential, never a key.
async fn access_log(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let now = OffsetDateTime::now_utc();
    let id = new_request_id();
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().chars().take(200).collect::<String>();
    let client = req
        .extensions()
        .get::<ConnInfo>()
        .map(|c| c.peer.ip().to_string())
        .unwrap_or_default();
    let version = format!("{:?}", req.version());
    let limit = state.config.server.request_timeout;
    let mut resp = match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => fail(
            &state,
            &RequestId(id.clone()),
            None,
            ApiError::Timeout(limit),
        ),
    };
    let fields = resp
        .extensions_mut()
        .remove::<LogFields>()
        .unwrap_or_default();
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let status = resp.status().as_u16();
    let route = route_label(&state.config.server.prefix, &path);
    let enrollment = route == "certificate"
        || (route == "est" && (path.ends_with("enroll") || path.ends_with("enroll/")));
    if enrollment && status >= 400 {
        audit_refusal(&state, now, &id, status, &fields, &client).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    state.metrics.request(route, status, elapsed);
    // Milliseconds to the microsecond: a fixed, readable precision.
    let duration_ms = format!("{:.3}", elapsed * 1000.0);
    let user = fields.user.as_deref().unwrap_or("-");
    let serial = fields.serial.as_deref().unwrap_or("-");
    let error = fields.error.as_deref().unwrap_or("");
    let auth = fields.auth.unwrap_or("-");
    let retriever = fields.retriever.as_deref().unwrap_or("-");
    if status >= 500 {
        tracing::error!(target: "onlineca::access", request_id = %id, %method, %path, status, user, auth, retriever, serial, %duration_ms, %client, %version, error, "request");
    } else {
        tracing::info!(target: "onlineca::access", request_id = %id, %method, %path, status, user, auth, retriever, serial, %duration_ms, %client, %version, error, "request");
    }
    resp
}
