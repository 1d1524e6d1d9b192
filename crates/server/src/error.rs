//! Every refusal the API can give, and the one place each becomes an HTTP status.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Why a request was not served. The `Display` text is the one-line body the client
/// sees, except for server-side errors, whose details go only to the log.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No `Authorization` header (or not Basic).
    #[error("authentication required: send HTTP Basic credentials or a client certificate")]
    NoCredentials,
    /// A Basic header that is not `base64(user:password)`.
    #[error("malformed HTTP Basic credentials: {0}")]
    MalformedCredentials(&'static str),
    /// Unknown user or wrong password: one message for both.
    #[error("invalid username or password")]
    BadCredentials,
    /// The account exists, the password was right, but it is disabled.
    #[error("user account is disabled: ask the CA's operator to enable it")]
    UserDisabled,
    /// Password authentication is switched off in the configuration.
    #[error("password authentication is not enabled on this service")]
    PasswordAuthDisabled,
    /// A retriever request (a `username` field) came without a client certificate.
    #[error("client certificate not present: a retriever must present its certificate")]
    ClientCertMissing,
    /// The client certificate failed verification; the reason says how.
    #[error("client certificate not verified: {0}")]
    ClientCertNotVerified(String),
    /// A verified certificate whose subject is not a configured retriever.
    #[error("client certificate subject {0} is not an accepted retriever")]
    NotARetriever(String),
    /// The retriever may not ask for this user.
    #[error("user {user:?} is not allowed for retriever {retriever}")]
    RetrieverUserNotAllowed {
        /// The user asked for.
        user: String,
        /// The retriever's subject.
        retriever: String,
    },
    /// A retriever certificate came without a user to issue for.
    #[error(
        "no user named: a retriever sends the username as the HTTP Basic username or the form field 'username'"
    )]
    RetrieverNoUser,
    /// Retriever authentication is switched off in the configuration.
    #[error("retriever authentication is not enabled on this service")]
    RetrieverAuthDisabled,
    /// Renewal by client certificate is switched off in the configuration.
    #[error("certificate renewal is not enabled on this service")]
    RenewalDisabled,
    /// A verified certificate of this CA that may not renew; the reason says why.
    #[error("certificate cannot be renewed: {0}")]
    RenewalRefused(&'static str),
    /// Too many failed passwords for this username.
    #[error("too many failed login attempts for this user; retry after {} seconds", whole_seconds(*.0))]
    LockedOut(Duration),
    /// Too many certificate requests from this client address.
    #[error("too many requests from this address; retry after {} seconds", whole_seconds(*.0))]
    RateLimited(Duration),
    /// The request body or its CSR is malformed (the seed's 405 for request-format errors).
    #[error("{0}")]
    BadRequest(String),
    /// The CSR's public key was reported compromised (a certificate for it was
    /// revoked with reason keyCompromise): no certificate will certify it again.
    #[error("the public key of this request was reported compromised; generate a new key pair")]
    KeyCompromised,
    /// The body is bigger than the configured limit.
    #[error("request body exceeds the limit of {0} bytes")]
    BodyTooLarge(usize),
    /// Wrong HTTP method.
    #[error("method {method} not allowed here; use {allow}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The method to use.
        allow: &'static str,
    },
    /// The request (its upload included) took longer than allowed.
    #[error("request not completed within {} seconds", .0.as_secs())]
    Timeout(Duration),
    /// No such resource.
    #[error("not found: {0}")]
    NotFound(String),
    /// Every password worker is busy and the queue is full: nothing was checked.
    #[error("too many password checks in progress; retry after {BUSY_RETRY_SECS} second")]
    Busy,
    /// The store cannot be reached: nothing was issued.
    #[error("storage unavailable: {0}")]
    StoreUnavailable(String),
    /// The LDAP directory did not answer (down, slow, or its TLS certificate not
    /// trusted): a directory user can be told neither yes nor no. Not a failed password.
    #[error("directory unavailable: {0}")]
    DirectoryUnavailable(String),
    /// The audit log could not record an issuance and `[audit] required` is set:
    /// the certificate (recorded in the store) is not handed out.
    #[error("audit log unavailable: {0}")]
    AuditUnavailable(String),
    /// The token holding the issuing CA's key failed (its session died, the device
    /// went away): nothing was signed, so nothing was issued or recorded.
    #[error("signing key unavailable: {0}")]
    SigningUnavailable(String),
    /// Anything else on the server side.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a client refused with [`ApiError::Busy`] is told to wait.
const BUSY_RETRY_SECS: u64 = 1;

/// A wait in whole seconds, rounded up and at least one, so that a client retrying
/// after `Retry-After` seconds is not refused again for arriving early.
fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl ApiError {
    /// The status for this error: the seed's table, extended by the contract.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NoCredentials
            | ApiError::MalformedCredentials(_)
            | ApiError::BadCredentials
            | ApiError::UserDisabled
            | ApiError::PasswordAuthDisabled
            | ApiError::ClientCertMissing
            | ApiError::ClientCertNotVerified(_)
            | ApiError::NotARetriever(_)
            | ApiError::RetrieverUserNotAllowed { .. }
            | ApiError::RetrieverNoUser
            | ApiError::RetrieverAuthDisabled
            | ApiError::RenewalDisabled
            | ApiError::RenewalRefused(_) => StatusCode::UNAUTHORIZED,
            ApiError::LockedOut(_) | ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadRequest(_)
            | ApiError::KeyCompromised
            | ApiError::BodyTooLarge(_)
            | ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::StoreUnavailable(_)
            | ApiError::DirectoryUnavailable(_)
            | ApiError::AuditUnavailable(_)
            | ApiError::SigningUnavailable(_)
            | ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The status EST (RFC 7030) answers with: the seed's, except that a malformed
    /// request is 400 and an oversized one 413 (the seed answers 405 for both).
    pub fn est_status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::KeyCompromised => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            other => other.status(),
        }
    }

    /// The response: status, one-line `text/plain` body, and the headers the status
    /// calls for. `realm` goes into `WWW-Authenticate`; `request_id` into 5xx bodies.
    pub fn to_response(&self, realm: &str, request_id: &str) -> Response {
        let status = self.status();
        let body = if status.is_server_error() {
            // Details stay in the log; the client gets something to quote to the operator.
            match self {
                ApiError::StoreUnavailable(_) => {
                    format!(
                        "service temporarily unavailable (storage); nothing was issued; request id {request_id}\n"
                    )
                }
                ApiError::DirectoryUnavailable(_) => {
                    format!(
                        "service temporarily unavailable (directory); nothing was issued; request id {request_id}\n"
                    )
                }
                ApiError::AuditUnavailable(_) => {
                    format!(
                        "service temporarily unavailable (audit log); no certificate was handed out; request id {request_id}\n"
                    )
                }
                ApiError::SigningUnavailable(_) => {
                    format!(
                        "service temporarily unavailable (signing key); nothing was issued; request id {request_id}\n"
                    )
                }
                ApiError::Busy => format!("{self}; nothing was issued\n"),
                _ => format!("internal server error; request id {request_id}\n"),
            }
        } else {
            format!("{self}\n")
        };
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match self {
            ApiError::MethodNotAllowed { allow, .. } => {
                h.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::LockedOut(wait) | ApiError::RateLimited(wait) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(whole_seconds(*wait)));
            }
            ApiError::StoreUnavailable(_)
            | ApiError::DirectoryUnavailable(_)
            | ApiError::AuditUnavailable(_)
            | ApiError::SigningUnavailable(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::Busy => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(BUSY_RETRY_SECS));
            }
            _ if status == StatusCode::UNAUTHORIZED => {
                if let Ok(v) =
                    HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
                {
                    h.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            _ => {}
        }
        resp
    }
}

impl From<onlineca_store::StoreError> for ApiError {
    fn from(e: onlineca_store::StoreError) -> Self {
        match e {
            // At request time a store that refuses our credentials or lost its
            // database is as unavailable as one that does not answer.
            onlineca_store::StoreError::Unavailable(m) | onlineca_store::StoreError::Config(m) => {
                ApiError::StoreUnavailable(m)
            }
            onlineca_store::StoreError::KeyCompromised => ApiError::KeyCompromised,
            // Revoked between the renewal's checks and its record.
            onlineca_store::StoreError::ParentRevoked(_) => {
                ApiError::RenewalRefused("the certificate is revoked")
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Why the admin listener did not answer `200`: its own refusals, kept apart from
/// the API's because the admin listener has no realm, request ids or retries.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// `/readyz`: the store did not answer its query.
    #[error("not ready: store: {0}")]
    StoreDown(String),
    /// `/readyz`: the audit log is required and cannot be written.
    #[error("not ready: {0}")]
    AuditDown(String),
    /// `/readyz`: the store did not answer in time.
    #[error("not ready: store: no answer within {}", humantime::format_duration(*.0))]
    StoreSlow(Duration),
    /// The metrics could not be encoded (a formatting error; not expected).
    #[error("cannot encode the metrics")]
    Encode,
    /// The request took longer than the admin listener allows.
    #[error("timed out")]
    Timeout,
    /// No such path on the admin listener.
    #[error("not found")]
    NotFound,
}

impl AdminError {
    /// The status for this refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::StoreDown(_)
            | AdminError::StoreSlow(_)
            | AdminError::AuditDown(_)
            | AdminError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Encode => StatusCode::INTERNAL_SERVER_ERROR,
            AdminError::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

impl IntoResponse for AdminError {
    /// One line of plain text: what a probe's log shows.
    fn into_response(self) -> Response {
        let line = self.to_string().replace(['\n', '\r'], " ");
        let mut resp = (self.status(), format!("{line}\n")).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_admin_refusal_is_one_line() {
        use http_body_util::BodyExt;
        let r = AdminError::StoreDown("connection refused\nretry".into()).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"not ready: store: connection refused retry\n");
        assert_eq!(AdminError::NotFound.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_refusal_says_its_reason_once() {
        // The wait is in the line for curl users and in Retry-After for programs;
        // the line says it once.
        let line = ApiError::LockedOut(Duration::from_secs(300)).to_string();
        assert_eq!(line.matches("300").count(), 1, "{line}");
        // A disabled account is not a wrong password: no advice to retype it.
        let line = ApiError::UserDisabled.to_string();
        assert!(!line.contains("password"), "{line}");
    }

    #[tokio::test]
    async fn a_failed_token_is_a_503_to_retry_without_its_details() {
        use http_body_util::BodyExt;
        let r = ApiError::SigningUnavailable("C_Sign failed: CKR_DEVICE_REMOVED".into())
            .to_response("r", "id-1");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains("signing key") && body.contains("nothing was issued"),
            "{body}"
        );
        assert!(!body.contains("CKR_"), "{body}");
    }

    #[test]
    fn retry_after_rounds_up() {
        let r = ApiError::RateLimited(Duration::from_millis(1500)).to_response("r", "id");
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        let r = ApiError::LockedOut(Duration::from_millis(10)).to_response("r", "id");
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = ApiError::LockedOut(Duration::from_secs(300)).to_response("r", "id");
        assert_eq!(r.headers()[header::RETRY_AFTER], "300");
    }
}
