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
use onlineca_core::trustroots::{CaEntry, Encoding, TrustBundle};
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

/// What is published at one time: the CRLs and the trust roots that carry them.
#[derive(Debug)]
pub struct Published {
    /// The active issuing CA's CRL; `None` until the store has answered once.
    pub crl: Option<Crl>,
    /// The CRLs of retired issuing CAs that still have unexpired certificates, with
    /// their subject hashes (`GET {prefix}/crl?ca=HASH`).
    pub retired: Vec<(u32, Crl)>,
    /// The revocation mark the CRLs were built from.
    pub mark: Option<RevocationMark>,
    /// The trust-roots response, `fields` encoding.
    pub trustroots_fields: String,
    /// The trust-roots response, `files` encoding.
    pub trustroots_files: String,
}

/// The currently published CRLs and trust roots, swapped as a whole when new CRLs
/// are built (readers take an `Arc` and never wait on a build).
#[derive(Debug)]
pub struct CrlCell {
    /// Every CA certificate of the trust roots, retired issuing CAs included.
    entries: Vec<CaEntry>,
    /// The certificates of the retired issuing CAs, left out of the trust roots once
    /// nothing they signed is unexpired.
    retired: Vec<Vec<u8>>,
    current: RwLock<Arc<Published>>,
}

impl CrlCell {
    /// Starts with the trust roots of `entries` and no CRL; `retired` are the
    /// certificates of retired issuing CAs among them.
    pub fn new(entries: Vec<CaEntry>, retired: Vec<Vec<u8>>) -> Result<Self, String> {
        let base = TrustBundle::build(&entries).map_err(|e| format!("trust roots: {e}"))?;
        let first = Published {
            crl: None,
            retired: Vec::new(),
            mark: None,
            trustroots_fields: base.encode(Encoding::Fields),
            trustroots_files: base.encode(Encoding::Files),
        };
        Ok(CrlCell {
            entries,
            retired,
            current: RwLock::new(Arc::new(first)),
        })
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

    /// Publishes the active CA's CRL and those of the `live` retired CAs (by
    /// subject hash), with trust roots carrying each as `<hash>.r0` (PEM) and
    /// leaving out the retired CAs that are not live.
    fn publish(
        &self,
        active: (u32, Crl),
        live: Vec<(u32, Vec<u8>, Crl)>,
        mark: RevocationMark,
    ) -> Result<(), String> {
        let entries: Vec<CaEntry> = self
            .entries
            .iter()
            .filter(|e| {
                !self.retired.contains(&e.cert_der)
                    || live.iter().any(|(_, der, _)| *der == e.cert_der)
            })
            .cloned()
            .collect();
        let mut bundle = TrustBundle::build(&entries).map_err(|e| e.to_string())?;
        let retired: Vec<(u32, Crl)> = live.into_iter().map(|(h, _, c)| (h, c)).collect();
        for (hash, crl) in
            std::iter::once((active.0, &active.1)).chain(retired.iter().map(|(h, c)| (*h, c)))
        {
            bundle
                .add_file(format!("{hash:08x}.r0"), crl.pem.clone().into_bytes())
                .map_err(|e| e.to_string())?;
        }
        let next = Arc::new(Published {
            trustroots_fields: bundle.encode(Encoding::Fields),
            trustroots_files: bundle.encode(Encoding::Files),
            crl: Some(active.1),
            retired,
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

/// Builds, signs and publishes a CRL for `now` from the store for the active
/// issuing CA and for each retired one that still has unexpired certificates;
/// returns the active CA's CRL number.
pub async fn regenerate(state: &Arc<AppState>, now: OffsetDateTime) -> Result<u64, ApiError> {
    // The mark is read first: a revocation racing this build changes it again, so the
    // next poll builds once more rather than missing it.
    let mark = state.store.revocation_mark().await?;
    let rows = Arc::new(state.store.revoked_unexpired(now).await?);
    let counts = if state.retired.is_empty() {
        Vec::new()
    } else {
        state.store.unexpired_by_issuer(now).await?
    };
    // Records nobody attributed yet might be any CA's: keep them all live.
    let unattributed = counts.iter().any(|c| c.key_id.is_none());
    let mut built = Vec::new();
    for index in 0..=state.retired.len() {
        let ca = if index == 0 {
            &state.ca
        } else {
            &state.retired[index - 1]
        };
        let key_id = hex::encode(ca.key_id());
        let live = index == 0
            || unattributed
            || counts
                .iter()
                .any(|c| c.key_id.as_deref() == Some(key_id.as_str()));
        if !live {
            continue;
        }
        let number = state.store.next_crl_number().await?;
        let next_update = now + state.config.crl.next_update;
        let (st, rows) = (state.clone(), rows.clone());
        // Signing and encoding 100,000 entries takes tens of milliseconds: off the runtime.
        let crl = tokio::task::spawn_blocking(move || {
            let ca = if index == 0 {
                &st.ca
            } else {
                &st.retired[index - 1]
            };
            let key_id = hex::encode(ca.key_id());
            let entries: Vec<Revoked> = rows
                .iter()
                .filter(|r| r.issuer_key_id.as_deref().is_none_or(|k| k == key_id))
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
            crl::build(ca, number, now, next_update, &entries)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("CRL build task: {e}")))?
        .map_err(|e| ApiError::Internal(format!("CRL: {e}")))?;
        let hash = onlineca_core::trustroots::cert_subject_hash(ca.cert_der())
            .map_err(|e| ApiError::Internal(format!("CA subject hash: {e}")))?;
        built.push((
            hash,
            ca.cert_der().to_vec(),
            ca.subject_oneline().to_string(),
            crl,
        ));
    }
    let mut events = Vec::new();
    for (_, _, issuer, crl) in &built {
        tracing::info!(crl_number = crl.number, entries = crl.entries, %issuer, "published a new CRL");
        events.push(Event::CrlPublished {
            number: crl.number,
            entries: crl.entries,
            this_update: timestamp(crl.this_update),
            next_update: timestamp(crl.next_update),
            issuer: issuer.clone(),
        });
    }
    let mut built = built.into_iter();
    let Some((hash, _, _, active)) = built.next() else {
        return Err(ApiError::Internal("no CRL for the active CA".into()));
    };
    let number = active.number;
    let live = built.map(|(h, der, _, c)| (h, der, c)).collect();
    state
        .crl
        .publish((hash, active), live, mark)
        .map_err(|e| ApiError::Internal(format!("trust roots with the CRL: {e}")))?;
    // Published either way: relying parties need the CRLs more than the records.
    for event in &events {
        let _ = state.audit.record(now, event).await;
    }
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
    let mut ca: Option<String> = None;
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(req.uri().query().unwrap_or("")).unwrap_or_default();
    for (k, v) in query {
        if k == "ca" {
            ca = Some(v.chars().take(16).collect::<String>().to_ascii_lowercase());
        } else if k == "format" {
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
    let Some(active) = &published.crl else {
        let e = ApiError::StoreUnavailable("no CRL yet: the store has not answered".into());
        return fail(&state, &id, None, e);
    };
    let crl = match ca {
        None => active,
        Some(hash) => match published
            .retired
            .iter()
            .find(|(h, _)| format!("{h:08x}") == hash)
        {
            Some((_, c)) => c,
            None if state.crl_hash_is_active(&hash) => active,
            None => {
                let e = ApiError::NotFound(format!(
                    "no CRL of a CA with subject hash {hash:?}: see the trust roots' <hash>.r0 files"
                ));
                return fail(&state, &id, None, e);
            }
        },
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
            retired: Vec::new(),
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
