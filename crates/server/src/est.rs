//! EST, Enrollment over Secure Transport (RFC 7030), beside the seed API on the same
//! listener: `/.well-known/est/cacerts`, `simpleenroll`, `simplereenroll` and
//! `csrattrs`. Enrollment is the seed API's: the same authentication (password with
//! its lockout and cache, a retriever's certificate, renewal by the current
//! certificate), the one issuance pipeline, the same record and audit line. Only the
//! envelope differs: base64 DER in, certs-only CMS (base64) out.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine;
use cms::content_info::ContentInfo;
use der::{Decode, Encode};
use serde::Deserialize;

use crate::error::ApiError;
use crate::routes::{Api, LogFields, RequestId, enroll, request_id};
use crate::state::AppState;

/// Where EST lives (RFC 7030 section 3.2.2); not under the seed API's prefix.
pub const PREFIX: &str = "/.well-known/est/";

/// `[est]`: whether EST answers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstSection {
    /// On by default.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl Default for EstSection {
    fn default() -> Self {
        EstSection { enabled: true }
    }
}

/// Adds the EST routes to `r`.
pub fn routes(r: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
    r.route(&format!("{PREFIX}cacerts"), any(cacerts))
        .route(&format!("{PREFIX}simpleenroll"), any(simpleenroll))
        .route(&format!("{PREFIX}simplereenroll"), any(simplereenroll))
        .route(&format!("{PREFIX}csrattrs"), any(csrattrs))
}

/// A refusal with EST's status and a plain-text reason.
pub(crate) fn fail(
    state: &AppState,
    id: &RequestId,
    user: Option<String>,
    e: ApiError,
) -> Response {
    let status = e.est_status();
    let mut resp = crate::routes::fail(state, id, user, e);
    *resp.status_mut() = status;
    resp
}

fn method_not_allowed(
    state: &AppState,
    id: &RequestId,
    req: &Request,
    allow: &'static str,
) -> Option<Response> {
    let ok = match allow {
        "GET" => req.method() == Method::GET || req.method() == Method::HEAD,
        _ => req.method() == Method::POST,
    };
    (!ok).then(|| {
        fail(
            state,
            id,
            None,
            ApiError::MethodNotAllowed {
                method: req.method().to_string(),
                allow,
            },
        )
    })
}

/// A certs-only CMS SignedData of `ders`, base64 on one line (strongSwan's `pki`
/// wants it unwrapped), as `application/pkcs7-mime`.
fn pkcs7(ders: &[&[u8]], smime_type: &'static str) -> Result<Response, ApiError> {
    let certs = ders
        .iter()
        .map(|d| x509_cert::Certificate::from_der(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::Internal(format!("a certificate for CMS: {e}")))?;
    let der = ContentInfo::try_from(certs)
        .and_then(|ci| ci.to_der())
        .map_err(|e| ApiError::Internal(format!("CMS: {e}")))?;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(smime_type));
    h.insert(
        "content-transfer-encoding",
        HeaderValue::from_static("base64"),
    );
    Ok(resp)
}

/// The certificates `cacerts` answers with: the issuing CA, the certificates above
/// it (the `[ca] chain` file, read at start-up) and the retired issuing CAs.
pub fn ca_certificates(
    ca: &onlineca_core::IssuingCa,
    chain_pem: &str,
    retired: &[onlineca_core::IssuingCa],
) -> Vec<Vec<u8>> {
    let above = onlineca_core::issuer::pem_certificates(chain_pem).unwrap_or_default();
    let mut all: Vec<Vec<u8>> = vec![ca.cert_der().to_vec()];
    for d in above
        .into_iter()
        .chain(retired.iter().map(|r| r.cert_der().to_vec()))
    {
        if !all.contains(&d) {
            all.push(d);
        }
    }
    all
}

/// `GET cacerts`: what a client needs to verify what it gets.
async fn cacerts(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let id = request_id(&req);
    if let Some(r) = method_not_allowed(&state, &id, &req, "GET") {
        return r;
    }
    let all: Vec<&[u8]> = state.est_cacerts.iter().map(Vec::as_slice).collect();
    match pkcs7(&all, "application/pkcs7-mime") {
        Ok(r) => r,
        Err(e) => fail(&state, &id, None, e),
    }
}

async fn simpleenroll(State(state): State<Arc<AppState>>, req: Request) -> Response {
    enrollment(state, req, None).await
}

async fn simplereenroll(State(state): State<Arc<AppState>>, req: Request) -> Response {
    enrollment(state, req, Some(onlineca_core::AuthMethod::Renewal)).await
}

async fn enrollment(
    state: Arc<AppState>,
    req: Request,
    require: Option<onlineca_core::AuthMethod>,
) -> Response {
    let id = request_id(&req);
    if let Some(r) = method_not_allowed(&state, &id, &req, "POST") {
        return r;
    }
    match enroll(&state, req, &id, require, Some("est")).await {
        Ok(enrolled) => match pkcs7(
            &[&enrolled.issued.der],
            "application/pkcs7-mime; smime-type=certs-only",
        ) {
            Ok(mut r) => {
                r.extensions_mut().insert(enrolled.log);
                r
            }
            Err(e) => fail(&state, &id, None, e),
        },
        Err(refused) => refused.into_response(&state, &id, Api::Est),
    }
}

/// `GET csrattrs`: no attributes are needed (the subject comes from the identity),
/// so 204 (RFC 7030 section 4.5.2).
async fn csrattrs(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let id = request_id(&req);
    if let Some(r) = method_not_allowed(&state, &id, &req, "GET") {
        return r;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.extensions_mut().insert(LogFields::default());
    resp
}
