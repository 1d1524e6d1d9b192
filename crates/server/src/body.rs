//! Reading the certificate request out of a request body, in every form the
//! contract accepts, within the size limit.

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use onlineca_core::csr;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::error::ApiError;

/// The form field (or multipart part) that carries the CSR.
pub const CSR_FIELD: &str = "certificate_request";
/// The optional form field naming the user a retriever asks for.
pub const USERNAME_FIELD: &str = "username";

/// What a certificate request body carried.
#[derive(Debug, Default)]
pub struct CsrBody {
    /// The CSR, DER.
    pub der: Vec<u8>,
    /// A `username` form field, if one was sent.
    pub username: Option<String>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

fn csr_from_text(bytes: &[u8]) -> Result<Vec<u8>, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| bad("certificate request is not valid UTF-8 text"))?;
    csr::decode_text(text).map_err(|e| bad(e.to_string()))
}

/// How much of an oversized body is read and thrown away before answering, so that
/// the client sees the refusal instead of a reset connection (HTTP/1) or a stream
/// error (HTTP/2). Past this, the answer goes out at once and the rest is read after
/// it (see [`drain_after_answer`]).
const DRAIN_FACTOR: usize = 16;

/// After the answer to an oversized upload, how much more of it is read and dropped,
/// and for how long at most. Without it, HTTP/2 resets the stream once the answer is
/// out (with NO_ERROR, as RFC 9113 §8.1 allows), which curl 7.x reports as an error
/// (exit 92) instead of showing the answer, and HTTP/1.1 closes the connection under
/// a chunked upload (curl: exit 55, "Broken pipe"). Reading the rest lets the upload
/// end cleanly. Nothing of it is kept: this costs time and bandwidth, not memory.
const DRAIN_AFTER_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// See [`DRAIN_AFTER_ANSWER_BYTES`].
const DRAIN_AFTER_ANSWER_TIME: Duration = Duration::from_secs(30);
/// How many uploads may be drained after their answer at once; past this one is cut
/// short (HTTP/2: the stream reset; HTTP/1.1: the connection closed).
const DRAINS_AFTER_ANSWER: usize = 256;
static DRAINING: AtomicUsize = AtomicUsize::new(0);

/// Reads and drops the rest of an upload in the background, within the bounds
/// above, so that the answer sent meanwhile reaches the client.
fn drain_after_answer(mut body: Body) {
    use http_body_util::BodyExt;
    let full = DRAINING.fetch_add(1, Ordering::SeqCst) >= DRAINS_AFTER_ANSWER;
    // Taken either way, so that the count is given back either way.
    let slot = Draining;
    if full {
        return;
    }
    tokio::spawn(async move {
        let _slot = slot;
        let mut seen = 0usize;
        let read_rest = async {
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    seen = seen.saturating_add(data.len());
                    if seen > DRAIN_AFTER_ANSWER_BYTES {
                        break;
                    }
                }
            }
        };
        let ended = tokio::time::timeout(DRAIN_AFTER_ANSWER_TIME, read_rest).await;
        tracing::debug!(
            bytes = seen,
            timed_out = ended.is_err(),
            "drained an upload after its answer"
        );
    });
}

/// One count in [`DRAINING`], given back when dropped, however the drain ends.
struct Draining;

impl Drop for Draining {
    fn drop(&mut self) {
        DRAINING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request body read in full, not yet interpreted.
pub struct RawBody {
    parts: axum::http::request::Parts,
    bytes: Result<axum::body::Bytes, ApiError>,
}

impl RawBody {
    /// A body already read in full, with its request head: what [`collect`] returns
    /// for a body within the limit. For tests and the fuzzer (`fuzz/`), which feed
    /// [`parse`] without a connection.
    pub fn new(parts: axum::http::request::Parts, bytes: axum::body::Bytes) -> Self {
        RawBody {
            parts,
            bytes: Ok(bytes),
        }
    }
}

/// Reads the whole body of `req`, at most `limit` bytes. Reading happens before any
/// other check so that every refusal reaches the client intact; an oversized body is
/// drained (up to a bound) and kept as an error for [`parse`].
pub async fn collect(req: Request, limit: usize) -> RawBody {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let drain_cap = limit.saturating_mul(DRAIN_FACTOR);
    if declared.is_some_and(|len| len > drain_cap as u64) {
        drain_after_answer(body);
        return RawBody {
            parts,
            bytes: Err(ApiError::BodyTooLarge(limit)),
        };
    }
    let bytes = read_bounded(body, limit, drain_cap).await;
    RawBody { parts, bytes }
}

/// Drops the body of a request refused before its body was read: the answer goes
/// at once, and the upload is read and dropped behind it within the bounds of
/// [`DRAIN_AFTER_ANSWER_BYTES`], so that the client sees the answer rather than a
/// reset, and a slow or endless upload does not hold the answer back.
pub fn discard(req: Request) {
    drain_after_answer(req.into_body());
}

async fn read_bounded(
    mut body: Body,
    limit: usize,
    drain_cap: usize,
) -> Result<axum::body::Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| bad(format!("could not read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen = seen.saturating_add(data.len());
            if seen <= limit {
                buf.extend_from_slice(&data);
            } else if seen > drain_cap {
                drain_after_answer(body);
                return Err(ApiError::BodyTooLarge(limit));
            }
        }
    }
    if seen > limit {
        return Err(ApiError::BodyTooLarge(limit));
    }
    Ok(buf.into())
}

/// Finds the CSR in a collected body, by its Content-Type.
pub async fn parse(raw: RawBody) -> Result<CsrBody, ApiError> {
    let RawBody { parts, bytes } = raw;
    let bytes = bytes?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not ASCII)").to_string());
    let mime = content_type.as_deref().map(|c| {
        c.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });

    if mime.as_deref() == Some("multipart/form-data") {
        return read_multipart(Request::from_parts(parts, Body::from(bytes))).await;
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("empty request body: expected a certificate request"));
    }
    match mime.as_deref() {
        Some("application/x-www-form-urlencoded") => read_form(&bytes),
        Some("application/pkcs10") => Ok(CsrBody {
            // DER; EST (RFC 7030) sends it base64-encoded, and some clients PEM:
            // take all three.
            der: if bytes.first() == Some(&0x30) {
                bytes.to_vec()
            } else {
                csr_from_text(&bytes)?
            },
            username: None,
        }),
        Some(
            "application/x-pem-file"
            | "text/plain"
            | "application/x-pem"
            | "application/pem-certificate-chain",
        ) => Ok(CsrBody {
            der: csr_from_text(&bytes)?,
            username: None,
        }),
        None | Some("") | Some("application/octet-stream") => {
            // No usable type: tell the forms apart by their first bytes.
            if bytes.first() == Some(&0x30) {
                Ok(CsrBody {
                    der: bytes.to_vec(),
                    username: None,
                })
            } else if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
                Ok(CsrBody {
                    der: csr_from_text(&bytes)?,
                    username: None,
                })
            } else {
                read_form(&bytes)
            }
        }
        Some(_) => Err(bad(format!(
            "unsupported Content-Type {:?}: use application/x-www-form-urlencoded, multipart/form-data, application/pkcs10 or application/x-pem-file",
            content_type.unwrap_or_default()
        ))),
    }
}

/// Refuses a field name seen before in the same body: which of two values would be
/// meant is a guess, and a guess about a username or a CSR is not ours to make.
fn once(seen: &mut HashSet<String>, name: &str, kind: &str) -> Result<(), ApiError> {
    if seen.insert(name.to_string()) {
        Ok(())
    } else {
        Err(bad(format!("{kind} '{name}' given more than once")))
    }
}

/// A `username` field, refused when longer than any certificate could carry, before
/// anything keys on it or logs it.
fn bounded_username(v: String, kind: &str) -> Result<String, ApiError> {
    let max = onlineca_core::subject::MAX_USERNAME_CHARS;
    if v.chars().count() > max {
        return Err(bad(format!(
            "{kind} '{USERNAME_FIELD}' is longer than {max} characters"
        )));
    }
    Ok(v)
}

fn read_form(bytes: &[u8]) -> Result<CsrBody, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes)
        .map_err(|e| bad(format!("request body is not a valid URL-encoded form: {e}")))?;
    let mut out = CsrBody::default();
    let mut csr_text = None;
    let mut seen = HashSet::new();
    for (k, v) in pairs {
        once(&mut seen, &k, "form field")?;
        match k.as_str() {
            CSR_FIELD => csr_text = Some(v),
            USERNAME_FIELD => out.username = Some(bounded_username(v, "form field")?),
            // Other fields are tolerated: older clients send extras.
            _ => {}
        }
    }
    let text = csr_text.ok_or_else(|| bad(format!("missing form field '{CSR_FIELD}'")))?;
    out.der = csr::decode_text(&text).map_err(|e| bad(e.to_string()))?;
    Ok(out)
}

async fn read_multipart(req: Request) -> Result<CsrBody, ApiError> {
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(|e| bad(format!("malformed multipart body: {}", e.body_text())))?;
    let mut out = CsrBody::default();
    let mut found = false;
    let mut seen = HashSet::new();
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(e)),
        };
        let name = field.name().unwrap_or("").to_string();
        once(&mut seen, &name, "multipart part")?;
        match name.as_str() {
            CSR_FIELD => {
                let data = field.bytes().await.map_err(multipart_error)?;
                out.der = if data.first() == Some(&0x30) {
                    data.to_vec()
                } else {
                    csr_from_text(&data)?
                };
                found = true;
            }
            USERNAME_FIELD => {
                let v = field.text().await.map_err(multipart_error)?;
                out.username = Some(bounded_username(v, "multipart part")?);
            }
            _ => {}
        }
    }
    if !found {
        return Err(bad(format!("missing multipart part '{CSR_FIELD}'")));
    }
    Ok(out)
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    bad(format!("malformed multipart body: {}", e.body_text()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSR: &str = "certificate_request=MIIBCgYJKoZIhvcNAQcCoIH8MIH5AgEB";

    fn form(body: &str) -> Result<CsrBody, String> {
        read_form(body.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn repeated_fields_and_overlong_usernames_are_refused() {
        let e = form(&format!("{CSR}&username=a&username=b")).unwrap_err();
        assert_eq!(e, "form field 'username' given more than once");
        let e = form(&format!("{CSR}&{CSR}")).unwrap_err();
        assert_eq!(e, "form field 'certificate_request' given more than once");
        let e = form(&format!("{CSR}&x=1&x=2")).unwrap_err();
        assert_eq!(e, "form field 'x' given more than once");
        let e = form(&format!("username={}&{CSR}", "u".repeat(65))).unwrap_err();
        assert_eq!(e, "form field 'username' is longer than 64 characters");
    }
}
