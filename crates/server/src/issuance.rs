//! The one issuance pipeline: check the CSR, build and sign the certificate for an
//! authenticated principal, record it, and only then hand it out.

use std::net::SocketAddr;
use std::time::Duration;

use onlineca_core::{IssueError, Issued, IssuerError, Principal, csr};
use onlineca_store::{IssuedCert, StoreError};
use time::OffsetDateTime;

use crate::audit::{Event, timestamp};
use crate::error::ApiError;
use crate::state::AppState;

/// One request for a certificate, after authentication.
#[derive(Debug)]
pub struct IssueRequest {
    /// Who the certificate is for, and how we know.
    pub principal: Principal,
    /// The CSR, DER.
    pub csr_der: Vec<u8>,
    /// Where the request came from, for the record.
    pub client_addr: Option<SocketAddr>,
    /// A lifetime shorter than the profile's, if the authentication route sets one.
    pub lifetime_cap: Option<Duration>,
    /// The time of the request.
    pub now: OffsetDateTime,
    /// The request id, for the audit record.
    pub request_id: String,
    /// The protocol, when not the seed API's (`est`): recorded after the method, as
    /// in `password+est`.
    pub via: Option<&'static str>,
}

impl IssueRequest {
    /// The method as recorded, in the store, the audit log and the metrics.
    fn method(&self) -> String {
        match self.via {
            Some(via) => format!("{}+{via}", self.principal.method.as_str()),
            None => self.principal.method.as_str().to_string(),
        }
    }
}

/// Attempts at a fresh serial if the store reports a clash (2^-159 odds per pair;
/// the loop only guards against a broken random source going unnoticed).
const SERIAL_ATTEMPTS: usize = 3;

/// Issues and records a certificate. Nothing is returned that was not recorded, in
/// the store and (when configured) in the audit log.
pub async fn issue(state: &AppState, req: IssueRequest) -> Result<Issued, ApiError> {
    let checked = csr::check(&req.csr_der).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    for _ in 0..SERIAL_ATTEMPTS {
        let issued = sign(state, &checked, &req).await.map_err(|e| match e {
            IssueError::Subject(s) => ApiError::BadRequest(s.to_string()),
            IssueError::Signer(IssuerError::Device(m)) => ApiError::SigningUnavailable(m),
            other => ApiError::Internal(other.to_string()),
        })?;
        let record = IssuedCert {
            serial: issued.serial_hex.clone(),
            username: req.principal.username.clone(),
            subject: issued.subject.clone(),
            auth_method: req.method(),
            retriever: req.principal.retriever.clone(),
            spki_sha256: issued.spki_sha256.clone(),
            not_before: issued.not_before,
            not_after: issued.not_after,
            issued_at: req.now,
            client_addr: req.client_addr.map(|a| a.ip().to_string()),
            der: issued.der.clone(),
            revoked_at: None,
            revocation_reason: None,
            account_id: req.principal.account_id.clone(),
            parent_serial: req.principal.renews.clone(),
            issuer_key_id: Some(hex::encode(state.ca.key_id())),
        };
        match state
            .metrics
            .store("record_issued", state.store.record_issued(&record))
            .await
        {
            Ok(()) => {
                audit(state, &req, &issued).await?;
                state.metrics.issued(&req.method());
                return Ok(issued);
            }
            Err(StoreError::DuplicateSerial(s)) => {
                tracing::warn!(serial = %s, "serial clash; issuing again with a fresh serial");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Internal(
        "could not obtain a unique serial".into(),
    ))
}

/// Builds and signs the certificate: in place with a key in memory (microseconds),
/// on a blocking thread with a key on a token, which answers at its own pace and
/// may make the thread wait for a free session.
async fn sign(
    state: &AppState,
    checked: &csr::CheckedCsr,
    req: &IssueRequest,
) -> Result<Issued, IssueError> {
    if !state.ca.signs_on_device() {
        return state.profile.issue(
            &state.ca,
            checked,
            &req.principal,
            req.now,
            req.lifetime_cap,
        );
    }
    let (ca, profile, checked, principal) = (
        state.ca.clone(),
        state.profile.clone(),
        checked.clone(),
        req.principal.clone(),
    );
    let (now, cap) = (req.now, req.lifetime_cap);
    tokio::task::spawn_blocking(move || profile.issue(&ca, &checked, &principal, now, cap))
        .await
        .map_err(|e| IssueError::Signer(IssuerError::Sign(format!("signing task: {e}"))))?
}

/// The issuance's audit record, written before the certificate is handed out. A
/// required log that cannot be written withholds the certificate (already in the
/// store, so the inventory shows it; the client never received it).
async fn audit(state: &AppState, req: &IssueRequest, issued: &Issued) -> Result<(), ApiError> {
    let p = &req.principal;
    let method = req.method();
    let event = Event::Issued {
        request_id: &req.request_id,
        serial: &issued.serial_hex,
        subject: &issued.subject,
        user: &p.username,
        method: &method,
        retriever: p.retriever.as_deref(),
        renews: p.renews.as_deref(),
        spki_sha256: &issued.spki_sha256,
        not_before: timestamp(issued.not_before),
        not_after: timestamp(issued.not_after),
        client: req.client_addr.map(|a| a.ip().to_string()),
    };
    match state.audit.record(req.now, &event).await {
        Err(e) if state.audit.required() => Err(ApiError::AuditUnavailable(e.to_string())),
        _ => Ok(()),
    }
}
