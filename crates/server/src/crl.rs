//! The published CRL: `GET {prefix}/crl`, and the `<hash>.r0` file of the
//! trust-roots response.
//!
//! Both are served from memory. A background task polls a cheap store query (the
//! [`RevocationMark`]) every `[crl] poll`, because revocations are made by the CLI in
//! another process (or by another instance), and builds a new CRL when the mark
//! changed or the current CRL is `[crl] refresh` old, which is well before its
//! nextUpdate. Each new CRL takes a fresh number from the store.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use onlineca_core::crl::{self, Crl, Revoked};
use onlineca_core::trustroots::{Encoding, TrustBundle};
use onlineca_store::RevocationMark;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::audit::{Event, timestamp};
use crate::error::ApiError;
use crate::routes::{fail, request_id};
use crate::state::AppState;

/// `[crl]`: how the published CRL is kept fresh.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlSection {
    /// How far after its thisUpdate a CRL's nextUpdate lies.
    #[serde(
        default = "default_next_update",
        with = "crate::config::humantime_serde"
    )]
    pub next_update: Duration,
    /// A CRL older than this is replaced even without new revocations; shorter than
    /// `next_update`, so relying parties never hold an outdated CRL.
    #[serde(default = "default_refresh", with = "crate::config::humantime_serde")]
    pub refresh: Duration,
    /// How often the store is asked whether anything was revoked.
    #[serde(default = "default_poll", with = "crate::config::humantime_serde")]
    pub poll: Duration,
}
fn default_next_update() -> Duration {
    Duration::from_secs(3600)
}
fn default_refresh() -> Duration {
    Duration::from_secs(1800)
}
fn default_poll() -> Duration {
    Duration::from_secs(5)
}

impl Default for CrlSection {
    fn default() -> Self {
        CrlSection {
            next_update: default_next_update(),
            refresh: default_refresh(),
            poll: default_poll(),
        }
    }
}

impl CrlSection {
    /// What is wrong with these settings, as (key, message).
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        if self.next_update < Duration::from_secs(60) {
            return Some(("crl.next_update", "must be at least one minute"));
        }
        if self.refresh >= self.next_update {
            return Some((
                "crl.refresh",
                "must be shorter than crl.next_update, so a new CRL is out before the old one expires",
            ));
        }
        if self.poll < Duration::from_millis(100) || self.poll > self.refresh {
            return Some((
                "crl.poll",
                "must be at least 100ms and no longer than crl.refresh",
            ));
        }
        None
    }
}

/// What is published at one time: the CRL and the trust roots that carry it.
#[derive(Debug)]
pub struct Published {
    /// The CRL; `None` until the store has answered once.
    pub crl: Option<Crl>,
    /// The revocation mark the CRL was built from.
    pub mark: Option<RevocationMark>,
    /// The trust-roots response, `fields` encoding.
    pub trustroots_fields: String,
    /// The trust-roots response, `files` encoding.
    pub trustroots_files: String,
}

/// The currently published CRL and trust roots, swapped as a whole when a new CRL
/// is built (readers take an `Arc` and never wait on a build).
#[derive(Debug)]
pub struct CrlCell {
    base: TrustBundle,
    r0_name: String,
    current: RwLock<Arc<Published>>,
}

impl CrlCell {
    /// Starts with the trust roots of `base` and no CRL; `issuer_hash` is the issuing
    /// CA's subject hash, which names the CRL file `<hash>.r0`.
    pub fn new(base: TrustBundle, issuer_hash: u32) -> Self {
        let first = Published {
            crl: None,
            mark: None,
            trustroots_fields: base.encode(Encoding::Fields),
            trustroots_files: base.encode(Encoding::Files),
        };
        CrlCell {
            base,
            r0_name: format!("{issuer_hash:08x}.r0"),
            current: RwLock::new(Arc::new(first)),
        }
    }

    /// What is published now.
    pub fn current(&self) -> Arc<Published> {
        // A poisoned lock only means a panic elsewhere mid-swap of an Arc: the value
        // inside is still whole.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Publishes `crl`, with trust roots carrying it as `<hash>.r0` (PEM).
    fn publish(&self, crl: Crl, mark: RevocationMark) -> Result<(), String> {
        let mut bundle = self.base.clone();
        bundle
            .add_file(self.r0_name.clone(), crl.pem.clone().into_bytes())
            .map_err(|e| e.to_string())?;
        let next = Arc::new(Published {
            trustroots_fields: bundle.encode(Encoding::Fields),
            trustroots_files: bundle.encode(Encoding::Files),
            crl: Some(crl),
            mark: Some(mark),
        });
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }
}

/// Whether a new CRL is needed at `now`: none yet, revocations since, or the current
/// one has reached its refresh age.
pub fn due(
    published: &Published,
    mark: RevocationMark,
    now: OffsetDateTime,
    cfg: &CrlSection,
) -> bool {
    match (&published.crl, published.mark) {
        (Some(crl), Some(m)) => m != mark || now >= crl.this_update + cfg.refresh,
        _ => true,
    }
}

/// Builds, signs and publishes a CRL for `now` from the store; returns its number.
pub async fn regenerate(state: &Arc<AppState>, now: OffsetDateTime) -> Result<u64, ApiError> {
    // The mark is read first: a revocation racing this build changes it again, so the
    // next poll builds once more rather than missing it.
    let mark = state.store.revocation_mark().await?;
    let rows = state.store.revoked_unexpired(now).await?;
    let number = state.store.next_crl_number().await?;
    let next_update = now + state.config.crl.next_update;
    let st = state.clone();
    // Signing and encoding 100,000 entries takes tens of milliseconds: off the runtime.
    let crl = tokio::task::spawn_blocking(move || {
        let entries: Vec<Revoked> = rows
            .into_iter()
            .filter_map(|r| match hex::decode(&r.serial) {
                Ok(serial) => Some(Revoked {
                    serial,
                    revoked_at: r.revoked_at,
                    reason: r.reason,
                }),
                Err(_) => {
                    tracing::error!(serial = %r.serial, "stored serial is not hex; left out of the CRL");
                    None
                }
            })
            .collect();
        crl::build(&st.ca, number, now, next_update, &entries)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("CRL build task: {e}")))?
    .map_err(|e| ApiError::Internal(format!("CRL: {e}")))?;
    let entries = crl.entries;
    let event = Event::CrlPublished {
        number,
        entries,
        this_update: timestamp(crl.this_update),
        next_update: timestamp(crl.next_update),
    };
    state
        .crl
        .publish(crl, mark)
        .map_err(|e| ApiError::Internal(format!("trust roots with the CRL: {e}")))?;
    tracing::info!(crl_number = number, entries, "published a new CRL");
    // Published either way: relying parties need the CRL more than the record.
    let _ = state.audit.record(now, &event).await;
    Ok(number)
}

/// Builds the first CRL (a store that does not answer yet is logged, and retried by
/// the task) and starts the task that keeps it fresh; abort the handle at shutdown.
pub async fn start(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    if let Err(e) = regenerate(&state, OffsetDateTime::now_utc()).await {
        tracing::warn!(error = %e, "no CRL at start-up; retrying every poll interval");
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.config.crl.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = OffsetDateTime::now_utc();
            let mark = match state.store.revocation_mark().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check for revocations");
                    continue;
                }
            };
            if due(&state.crl.current(), mark, now, &state.config.crl)
                && let Err(e) = regenerate(&state, now).await
            {
                tracing::warn!(error = %e, "cannot build a new CRL; keeping the current one");
            }
        }
    })
}

/// `GET {prefix}/crl`: the current CRL, DER (`application/pkix-crl`), or PEM with
/// `?format=pem`.
pub async fn handler(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let id = request_id(&req);
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let e = ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            allow: "GET",
        };
        return fail(&state, &id, None, e);
    }
    let mut pem = false;
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(req.uri().query().unwrap_or("")).unwrap_or_default();
    for (k, v) in query {
        if k == "format" {
            match v.as_str() {
                "pem" => pem = true,
                "der" => pem = false,
                _ => {
                    let e = ApiError::BadRequest(format!(
                        "unknown CRL format {v:?}: use format=der or format=pem"
                    ));
                    return fail(&state, &id, None, e);
                }
            }
        }
    }
    let published = state.crl.current();
    let Some(crl) = &published.crl else {
        let e = ApiError::StoreUnavailable("no CRL yet: the store has not answered".into());
        return fail(&state, &id, None, e);
    };
    let (body, content_type) = if pem {
        (crl.pem.clone().into_bytes(), "application/x-pem-file")
    } else {
        (crl.der.clone(), "application/pkix-crl")
    };
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_consistent_and_bad_values_are_named() {
        assert_eq!(CrlSection::default().problem(), None);
        let bad = CrlSection {
            refresh: Duration::from_secs(3600),
            ..Default::default()
        };
        assert_eq!(bad.problem().map(|p| p.0), Some("crl.refresh"));
        let bad = CrlSection {
            poll: Duration::from_secs(3600),
            ..Default::default()
        };
        assert_eq!(bad.problem().map(|p| p.0), Some("crl.poll"));
    }

    #[test]
    fn due_when_missing_changed_or_old() {
        let cfg = CrlSection::default();
        let t = time::macros::datetime!(2026-11-23 10:00 UTC);
        let none = Published {
            crl: None,
            mark: None,
            trustroots_fields: String::new(),
            trustroots_files: String::new(),
        };
        let mark = RevocationMark {
            count: 1,
            latest: Some(5),
        };
        assert!(due(&none, mark, t, &cfg));
        let crl = Crl {
            der: vec![],
            pem: String::new(),
            number: 1,
            this_update: t,
            next_update: t + cfg.next_update,
            entries: 1,
        };
        let fresh = Published {
            crl: Some(crl),
            mark: Some(mark),
            ..none
        };
        assert!(!due(&fresh, mark, t + Duration::from_secs(60), &cfg));
        let more = RevocationMark {
            count: 2,
            latest: Some(6),
        };
        assert!(due(&fresh, more, t + Duration::from_secs(60), &cfg));
        assert!(due(&fresh, mark, t + cfg.refresh, &cfg));
    }
}
