//! Trusted retrievers: services (portals, gateways) that authenticated their users
//! themselves and ask for certificates on their behalf, proving who they are with
//! their own client certificate.
//!
//! A retriever certificate must chain to one of the retriever anchors (kept apart
//! from this CA's roots), be inside its validity period, and have a subject equal,
//! on the canonical parsed name, to a configured `[[retrievers]]` subject; the user
//! asked for must match that entry's allowed-users rule. With `[auth]
//! retriever_crls`, it must also not be revoked (see [`crls`]).

mod crls;

use std::time::Duration;

use onlineca_core::dn;
use onlineca_core::issuer::pem_certificates;
use onlineca_core::trustroots::{canonical_name, oneline};
use rustls_pki_types::{CertificateDer, TrustAnchor};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::client_cert::{anchor, verify_chain_with};
use crate::config::{Config, RetrieverEntry};
use crate::error::ApiError;
use crate::state::StartError;
use crls::{CrlSnapshot, RetrieverCrls};

/// One allowed-users rule: an exact name, or a glob with `*` (any run of characters)
/// and `?` (one character).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<char>);

impl Pattern {
    /// Parses a rule. Besides the wildcards, only what a username may hold is allowed
    /// (letters, digits, `.`, `_`, `-`, `@`), so a rule can never match by accident
    /// through characters that no username has.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("an empty pattern matches no one".into());
        }
        if let Some(c) = text
            .chars()
            .find(|&c| !(c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '*' | '?')))
        {
            return Err(format!(
                "pattern {text:?}: character {c:?} is not allowed (letters, digits, . _ - @, and the wildcards * and ?)"
            ));
        }
        Ok(Pattern(text.chars().collect()))
    }

    /// Whether `name` matches, ignoring ASCII case (usernames are unique that way).
    pub fn matches(&self, name: &str) -> bool {
        let pattern: Vec<char> = self.0.iter().map(char::to_ascii_lowercase).collect();
        let name: Vec<char> = name.chars().map(|c| c.to_ascii_lowercase()).collect();
        glob(&pattern, &name)
    }
}

/// Wildcard match with backtracking to the last `*` only: linear in practice, and
/// never exponential whatever the pattern.
fn glob(p: &[char], s: &[char]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// One accepted retriever.
#[derive(Debug, Clone)]
pub struct Retriever {
    /// The subject as configured.
    pub subject: String,
    canonical: Vec<u8>,
    users: Vec<Pattern>,
    /// Lifetime cap for the certificates it obtains.
    pub lifetime: Option<Duration>,
}

impl Retriever {
    /// Parses a configuration entry; the error names the field.
    pub fn from_entry(e: &RetrieverEntry) -> Result<Self, String> {
        let der = dn::parse_slash(&e.subject).map_err(|err| format!("subject: {err}"))?;
        let canonical = canonical_name(&der).map_err(|err| format!("subject: {err}"))?;
        if e.users.is_empty() {
            return Err(
                "users: the list is empty; list names or patterns, or \"*\" for all".into(),
            );
        }
        let users = e
            .users
            .iter()
            .map(|u| Pattern::parse(u).map_err(|err| format!("users: {err}")))
            .collect::<Result<_, _>>()?;
        if e.lifetime.is_some_and(|l| l < Duration::from_secs(60)) {
            return Err("lifetime: must be at least one minute".into());
        }
        Ok(Retriever {
            subject: e.subject.clone(),
            canonical,
            users,
            lifetime: e.lifetime,
        })
    }

    /// Whether it may ask for `username`.
    pub fn allows(&self, username: &str) -> bool {
        self.users.iter().any(|p| p.matches(username))
    }
}

/// The `[[retrievers]]` checks of `Config::check`, as (key, message).
pub(crate) fn check_config(cfg: &Config) -> Result<(), (&'static str, String)> {
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for (i, e) in cfg.retrievers.iter().enumerate() {
        let r = Retriever::from_entry(e).map_err(|m| {
            (
                "retrievers",
                format!("entry {} ({:?}): {m}", i + 1, e.subject),
            )
        })?;
        if seen.contains(&r.canonical) {
            return Err((
                "retrievers",
                format!(
                    "entry {} ({:?}): the same subject is listed twice",
                    i + 1,
                    e.subject
                ),
            ));
        }
        seen.push(r.canonical);
    }
    if cfg.auth.retriever && !cfg.retrievers.is_empty() && cfg.auth.retriever_anchors.is_empty() {
        return Err((
            "auth.retriever_anchors",
            "retrievers are listed but no anchor file is: no retriever certificate could verify"
                .into(),
        ));
    }
    if !cfg.auth.retriever_crls.is_empty() && cfg.auth.retriever_anchors.is_empty() {
        return Err((
            "auth.retriever_crls",
            "CRLs are listed but no anchor file is: a CRL must be signed by an anchor".into(),
        ));
    }
    Ok(())
}

/// One line about an entry, for `config check` and `retriever list`.
pub fn describe_entry(e: &RetrieverEntry) -> String {
    let mut s = format!("{}  users: {}", e.subject, e.users.join(", "));
    if let Some(l) = e.lifetime {
        s.push_str(&format!("  lifetime: {}", humantime::format_duration(l)));
    }
    s
}

/// The accepted retrievers and their anchors, loaded at start-up.
#[derive(Debug)]
pub struct Retrievers {
    enabled: bool,
    anchors: Vec<TrustAnchor<'static>>,
    /// The anchors' CRLs, if configured: then revocation is checked.
    crls: Option<RetrieverCrls>,
    list: Vec<Retriever>,
    verified: VerifiedChains,
}

/// How long a verified retriever chain is trusted without verifying it again.
const VERIFIED_FOR: std::time::Duration = std::time::Duration::from_secs(300);
/// Verified chains kept at most (a retriever presents the same chain every time).
const VERIFIED_MAX: usize = 1024;

/// Retriever chains that verified recently, by SHA-256 of the chain as sent: a
/// portal presents the same chain on every request, and a chain verification is a
/// signature check per certificate. Only successes are kept; an entry holds only
/// inside the validity periods of every certificate of the chain, and for
/// [`VERIFIED_FOR`] at most, never past the earliest nextUpdate of the CRLs, and
/// only under the CRLs it was verified with (a new CRL may revoke it).
#[derive(Debug, Default)]
struct VerifiedChains {
    entries: std::sync::Mutex<std::collections::HashMap<[u8; 32], Window>>,
}

/// When a verified chain may be taken as verified again.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: OffsetDateTime,
    until: OffsetDateTime,
    /// The CRL generation it verified under (0 without CRLs).
    crl_generation: u64,
}

impl VerifiedChains {
    fn key(chain: &[CertificateDer<'static>]) -> [u8; 32] {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for cert in chain {
            ctx.update(&(cert.len() as u64).to_be_bytes());
            ctx.update(cert);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    /// [`verify_chain_with`] (checking revocation by `crls` if given), answered from
    /// the cache when this chain verified lately under the same CRLs.
    fn verify(
        &self,
        chain: &[CertificateDer<'static>],
        anchors: &[TrustAnchor<'static>],
        crls: Option<&CrlSnapshot>,
        now: OffsetDateTime,
    ) -> Result<(), String> {
        let key = Self::key(chain);
        let generation = crls.map_or(0, |c| c.generation);
        let hit = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .is_some_and(|w| w.from <= now && now <= w.until && w.crl_generation == generation);
        if hit {
            return Ok(());
        }
        let refs: Vec<&webpki::CertRevocationList<'_>> =
            crls.map(|c| c.crls.iter().collect()).unwrap_or_default();
        // Every certificate below the anchor, an unknown status refused, an
        // out-of-date CRL refused: fail closed.
        let revocation = webpki::RevocationOptionsBuilder::new(&refs).ok().map(|b| {
            b.with_depth(webpki::RevocationCheckDepth::Chain)
                .with_status_policy(webpki::UnknownStatusPolicy::Deny)
                .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
                .build()
        });
        if crls.is_some() && revocation.is_none() {
            // Configured but empty cannot happen (a file holds at least one CRL);
            // refuse rather than skip the check if it ever did.
            return Err("its revocation status is unknown: no CRL is loaded".into());
        }
        verify_chain_with(chain, anchors, revocation, now)?;
        if let Some(mut window) = validity_window(chain, now) {
            window.crl_generation = generation;
            // webpki refuses a CRL at its nextUpdate: stop a second before.
            if let Some(next) = crls.and_then(|c| c.next_update) {
                window.until = window.until.min(next - time::Duration::SECOND);
            }
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if entries.len() >= VERIFIED_MAX {
                entries.retain(|_, w| w.until >= now);
                if entries.len() >= VERIFIED_MAX {
                    entries.clear();
                }
            }
            entries.insert(key, window);
        }
        Ok(())
    }
}

/// The time every certificate of `chain` is valid in, cut to [`VERIFIED_FOR`] from
/// `now`; `None` if a certificate is unreadable.
fn validity_window(chain: &[CertificateDer<'static>], now: OffsetDateTime) -> Option<Window> {
    let mut w = Window {
        from: now,
        until: now + VERIFIED_FOR,
        crl_generation: 0,
    };
    for der in chain {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let v = cert.validity();
        w.from = w.from.max(v.not_before.to_datetime());
        w.until = w.until.min(v.not_after.to_datetime());
    }
    Some(w)
}

impl Retrievers {
    /// Reads the anchor files and parses the entries (already checked with the
    /// configuration); errors name the file.
    pub fn load(cfg: &Config) -> Result<Self, StartError> {
        let mut anchors = Vec::new();
        let mut anchor_ders = Vec::new();
        for path in &cfg.auth.retriever_anchors {
            let text = std::fs::read_to_string(path).map_err(|e| {
                StartError::Invalid(format!(
                    "auth.retriever_anchors: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            let certs = pem_certificates(&text).map_err(|e| {
                StartError::Invalid(format!("auth.retriever_anchors: {}: {e}", path.display()))
            })?;
            if certs.is_empty() {
                return Err(StartError::Invalid(format!(
                    "auth.retriever_anchors: {}: no CERTIFICATE block found",
                    path.display()
                )));
            }
            for der in certs {
                anchors.push(anchor(&der).map_err(|e| {
                    StartError::Invalid(format!(
                        "auth.retriever_anchors: {}: unusable certificate: {e}",
                        path.display()
                    ))
                })?);
                anchor_ders.push(der);
            }
        }
        let crls = RetrieverCrls::load(&cfg.auth.retriever_crls, anchor_ders)
            .map_err(|e| StartError::Invalid(format!("auth.retriever_crls: {e}")))?;
        if let Some(c) = &crls {
            for subject in c.anchors_without_crl() {
                tracing::warn!(
                    "retriever anchor {subject} has no CRL in auth.retriever_crls: retriever certificates it issued are refused"
                );
            }
        }
        let list = cfg
            .retrievers
            .iter()
            .map(|e| Retriever::from_entry(e).map_err(StartError::Invalid))
            .collect::<Result<_, _>>()?;
        Ok(Retrievers {
            enabled: cfg.auth.retriever,
            anchors,
            crls,
            list,
            verified: VerifiedChains::default(),
        })
    }

    /// The configured retrievers.
    pub fn list(&self) -> &[Retriever] {
        &self.list
    }

    /// One line per loaded retriever CRL (file, issuer, nextUpdate), and one per
    /// anchor without a CRL when CRLs are configured; empty without CRLs.
    pub fn describe_crls(&self) -> Vec<String> {
        let Some(c) = &self.crls else {
            return Vec::new();
        };
        let mut out = c.describe();
        for subject in c.anchors_without_crl() {
            out.push(format!(
                "(none for anchor {subject}: certificates it issued are refused)"
            ));
        }
        out
    }

    /// [`VerifiedChains::verify`] with the anchors and the CRLs in force at `now`.
    fn verify(&self, chain: &[CertificateDer<'static>], now: OffsetDateTime) -> Result<(), String> {
        let crls = self.crls.as_ref().map(|c| c.current(now));
        self.verified
            .verify(chain, &self.anchors, crls.as_deref(), now)
    }

    /// Whether `chain` could be a retriever's at all: retriever authentication is on
    /// and the chain verifies against the retriever anchors (its subject and the user
    /// rule aside).
    pub fn could_be_retriever(
        &self,
        chain: &[CertificateDer<'static>],
        now: OffsetDateTime,
    ) -> bool {
        self.enabled && !chain.is_empty() && self.verify(chain, now).is_ok()
    }

    /// Authenticates a client chain as a retriever asking for `username`: the
    /// retriever's entry and the retriever certificate's actual subject (one-line
    /// form, for the record).
    pub fn authenticate(
        &self,
        chain: &[CertificateDer<'static>],
        username: &str,
        now: OffsetDateTime,
    ) -> Result<(&Retriever, String), ApiError> {
        if !self.enabled {
            return Err(ApiError::RetrieverAuthDisabled);
        }
        let leaf = chain.first().ok_or(ApiError::ClientCertMissing)?;
        self.verify(chain, now)
            .map_err(ApiError::ClientCertNotVerified)?;
        let (_, cert) = X509Certificate::from_der(leaf)
            .map_err(|e| ApiError::ClientCertNotVerified(format!("it is unreadable: {e}")))?;
        let subject = oneline(cert.subject());
        let canonical = canonical_name(cert.subject().as_raw())
            .map_err(|_| ApiError::NotARetriever(subject.clone()))?;
        let r = self
            .list
            .iter()
            .find(|r| r.canonical == canonical)
            .ok_or_else(|| ApiError::NotARetriever(subject.clone()))?;
        if !r.allows(username) {
            return Err(ApiError::RetrieverUserNotAllowed {
                user: username.to_string(),
                retriever: subject,
            });
        }
        Ok((r, subject))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client certificate for `portal`, valid for an hour from `now`, and its CA.
    fn portal_chain(now: OffsetDateTime) -> (Vec<CertificateDer<'static>>, TrustAnchor<'static>) {
        use onlineca_core::pki::{self, KeyType, PkiOptions};
        let created = pki::create(&PkiOptions {
            key_type: KeyType::P256,
            org: "Test".into(),
            ca_name: "Portal CA".into(),
            hostnames: vec!["localhost".into()],
            root_lifetime: Duration::from_secs(86400 * 30),
            ca_lifetime: Duration::from_secs(86400 * 10),
            tls_lifetime: Duration::from_secs(86400),
            now,
        })
        .unwrap();
        let ca = onlineca_core::IssuingCa::from_pem(
            &created.issuing.cert_pem,
            &created.issuing.key_pem,
            "",
        )
        .unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap();
        let checked = onlineca_core::csr::check(csr.der()).unwrap();
        let profile = onlineca_core::Profile {
            template: onlineca_core::SubjectTemplate::parse("/O=Test/CN={username}").unwrap(),
            lifetime: Duration::from_secs(3600),
            backdate: Duration::ZERO,
            crl_url: None,
        };
        let issued = profile
            .issue(
                &ca,
                &checked,
                &onlineca_core::Principal::password("portal"),
                now,
                None,
            )
            .unwrap();
        let anchor = anchor(ca.cert_der()).unwrap();
        (vec![CertificateDer::from(issued.der)], anchor)
    }

    #[test]
    fn verified_chains_are_remembered_only_while_valid() {
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let (chain, anchor) = portal_chain(now);
        let cache = VerifiedChains::default();
        assert!(
            cache.verify(&chain, &[], None, now).is_err(),
            "nothing verified yet"
        );
        cache
            .verify(&chain, std::slice::from_ref(&anchor), None, now)
            .unwrap();
        // Remembered: no anchors needed while the window holds.
        let later = now + time::Duration::minutes(4);
        cache.verify(&chain, &[], None, later).unwrap();
        // Past the cache's own limit, or past the certificate's end: verified again.
        assert!(
            cache
                .verify(&chain, &[], None, now + time::Duration::minutes(6))
                .is_err()
        );
        let expired = now + time::Duration::hours(2);
        let e = cache
            .verify(&chain, std::slice::from_ref(&anchor), None, expired)
            .unwrap_err();
        assert!(e.contains("expired"), "{e}");
    }

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn globs() {
        assert!(p("*").matches("anyone"));
        assert!(p("alice").matches("alice"));
        assert!(!p("alice").matches("alice2"));
        assert!(p("lab-*").matches("lab-"));
        assert!(p("lab-*").matches("lab-x.y"));
        assert!(!p("lab-*").matches("xlab-1"));
        assert!(p("a?c").matches("abc"));
        assert!(!p("a?c").matches("ac"));
        assert!(p("*@example.org").matches("bob@example.org"));
        assert!(!p("*@example.org").matches("bob@example.org.evil"));
        assert!(p("a*b*c").matches("aXbYbZc"));
        assert!(p("é*").matches("éa"));
        // No exponential blow-up.
        assert!(!p("*a*a*a*a*a*a*a*a*a*a*b").matches(&"a".repeat(64)));
    }

    #[test]
    fn bad_patterns_are_named() {
        for (text, needle) in [
            ("", "empty"),
            ("a b", "' '"),
            ("[ab]", "'['"),
            ("a/b", "'/'"),
        ] {
            let e = Pattern::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn entries() {
        let entry = |subject: &str, users: &[&str]| RetrieverEntry {
            subject: subject.into(),
            users: users.iter().map(|s| s.to_string()).collect(),
            lifetime: None,
        };
        assert!(Retriever::from_entry(&entry("/CN=portal", &["*"])).is_ok());
        let e = Retriever::from_entry(&entry("CN=portal", &["*"])).unwrap_err();
        assert!(e.starts_with("subject:"), "{e}");
        let e = Retriever::from_entry(&entry("/CN=portal", &[])).unwrap_err();
        assert!(e.starts_with("users:"), "{e}");
        let e = Retriever::from_entry(&entry("/CN=portal", &["ok", "no way"])).unwrap_err();
        assert!(e.contains("\"no way\""), "{e}");
    }
}
