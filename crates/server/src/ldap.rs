//! The LDAP directory as a second password source: a username not in the store (or
//! whose row is a directory shadow, hash [`LDAP_MARKER`]) is checked by binding to
//! the directory as that user, never by reading a password attribute. The username
//! is escaped for where it goes: RFC 4514 in a DN, RFC 4515 in a filter.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};
use onlineca_core::Principal;
use onlineca_store::{Store, User};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::config::humantime_serde;
use crate::error::ApiError;

/// The password hash of a local row that stands for a directory user: never
/// verified locally (the local verifier knows it as `Scheme::Directory`); such a
/// user's password is checked against the directory.
pub const LDAP_MARKER: &str = onlineca_core::password::DIRECTORY_MARKER;

/// The placeholder the templates carry.
const USERNAME: &str = "{username}";

/// `[ldap]`: the directory users not in the store are checked against.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSection {
    /// `ldaps://host[:port]`, or `ldap://host[:port]` with `starttls = true`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    pub starttls: bool,
    /// PEM file of the CA certificate(s) the directory's TLS certificate must chain
    /// to (required unless `insecure`).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Direct bind: the DN (or AD `user@domain` name) with `{username}` in it.
    #[serde(default)]
    pub bind_dn: Option<String>,
    /// Search bind: where users are searched for.
    #[serde(default)]
    pub search_base: Option<String>,
    /// Search bind: the filter, with `{username}` in it.
    #[serde(default)]
    pub search_filter: Option<String>,
    /// Search bind: the account searching (anonymous if absent).
    #[serde(default)]
    pub search_bind_dn: Option<String>,
    /// Search bind: a file holding the search account's password (first line).
    #[serde(default)]
    pub search_bind_password_file: Option<PathBuf>,
    /// A group (DN) the user must be in: `member`, `uniqueMember` or `memberOf`.
    #[serde(default)]
    pub require_group: Option<String>,
    /// Allow plain `ldap://` without StartTLS: passwords cross the network in clear.
    #[serde(default)]
    pub insecure: bool,
    /// Longest time one directory check may take (connecting included).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Directory checks (and connections) at once; more wait, within `timeout`.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_max_connections() -> usize {
    8
}

impl LdapSection {
    /// Makes the file paths absolute with `abs`.
    pub(crate) fn absolute_paths(&mut self, abs: impl Fn(&mut PathBuf)) {
        if let Some(p) = self.ca.as_mut() {
            abs(p);
        }
        if let Some(p) = self.search_bind_password_file.as_mut() {
            abs(p);
        }
    }

    /// What is wrong with the section, as (key, message); touches no file.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        let scheme = self.url.split_once("://").map(|(s, _)| s);
        match scheme {
            Some("ldaps") if self.starttls => {
                return Some((
                    "ldap.starttls",
                    "StartTLS is for ldap:// URLs; ldaps:// is TLS already".into(),
                ));
            }
            Some("ldaps") => {}
            Some("ldap") if self.starttls || self.insecure => {}
            Some("ldap") => {
                return Some((
                    "ldap.url",
                    format!(
                        "{:?} is plain LDAP: passwords would cross the network in clear; use \
                         ldaps://, or starttls = true, or write insecure = true to accept that",
                        self.url
                    ),
                ));
            }
            _ => {
                return Some((
                    "ldap.url",
                    format!("{:?} is not an ldaps:// or ldap:// URL", self.url),
                ));
            }
        }
        // host[:port] and nothing else: the library panics on some odd URLs.
        let rest = self.url.split_once("://").map_or("", |(_, r)| r);
        let hostport = rest.strip_suffix('/').unwrap_or(rest);
        if hostport.is_empty()
            || hostport.starts_with(':')
            || !hostport
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        {
            return Some((
                "ldap.url",
                format!("{:?} must be scheme://host or scheme://host:port", self.url),
            ));
        }
        let tls = scheme == Some("ldaps") || self.starttls;
        if tls && self.ca.is_none() {
            return Some((
                "ldap.ca",
                "name the PEM file of the CA that signed the directory's TLS certificate".into(),
            ));
        }
        let search = self.search_base.is_some() || self.search_filter.is_some();
        match (&self.bind_dn, search) {
            (Some(_), true) => {
                return Some((
                    "ldap.bind_dn",
                    "give either bind_dn (direct bind) or search_base and search_filter \
                     (search, then bind), not both"
                        .into(),
                ));
            }
            (None, false) => {
                return Some((
                    "ldap.bind_dn",
                    "give bind_dn (direct bind) or search_base and search_filter (search, then bind)"
                        .into(),
                ));
            }
            (Some(t), false) if !t.contains(USERNAME) => {
                return Some(("ldap.bind_dn", format!("{t:?} has no {USERNAME}")));
            }
            _ => {}
        }
        if search {
            if self.search_base.is_none() {
                return Some(("ldap.search_base", "needed with search_filter".into()));
            }
            match &self.search_filter {
                None => return Some(("ldap.search_filter", "needed with search_base".into())),
                Some(f) if !f.contains(USERNAME) => {
                    return Some(("ldap.search_filter", format!("{f:?} has no {USERNAME}")));
                }
                Some(f) if !(f.starts_with('(') && f.ends_with(')')) => {
                    return Some((
                        "ldap.search_filter",
                        format!("{f:?} must be in parentheses, like \"(uid={USERNAME})\""),
                    ));
                }
                _ => {}
            }
        }
        if self.search_bind_dn.is_some() != self.search_bind_password_file.is_some() {
            return Some((
                "ldap.search_bind_dn",
                "search_bind_dn and search_bind_password_file go together".into(),
            ));
        }
        if self.search_bind_dn.is_some() && !search {
            return Some((
                "ldap.search_bind_dn",
                "only used with search_base and search_filter".into(),
            ));
        }
        if self.timeout < Duration::from_millis(100) || self.timeout > Duration::from_secs(300) {
            return Some(("ldap.timeout", "must be between 100ms and 5m".into()));
        }
        if self.max_connections == 0 || self.max_connections > 1024 {
            return Some(("ldap.max_connections", "must be between 1 and 1024".into()));
        }
        None
    }

    /// One line for `config check`.
    pub fn describe(&self) -> String {
        let how = match (&self.bind_dn, &self.search_filter) {
            (Some(t), _) => format!("direct bind as {t}"),
            (None, Some(f)) => format!(
                "search {f} under {} as {}, then bind",
                self.search_base.as_deref().unwrap_or("?"),
                self.search_bind_dn.as_deref().unwrap_or("(anonymous)")
            ),
            _ => "?".into(),
        };
        let tls = if self.url.starts_with("ldaps://") {
            "TLS"
        } else if self.starttls {
            "StartTLS"
        } else {
            "NO TLS (insecure)"
        };
        format!(
            "{} ({tls}); {how}; group {}; timeout {}, {} at once",
            self.url,
            self.require_group.as_deref().unwrap_or("(none)"),
            humantime::format_duration(self.timeout),
            self.max_connections
        )
    }
}

/// `name` escaped for an attribute value in a DN (RFC 4514).
pub fn escape_dn_value(name: &str) -> String {
    ldap3::dn_escape(name).into_owned()
}

/// `name` escaped for an assertion value in a filter (RFC 4515).
pub fn escape_filter_value(name: &str) -> String {
    ldap3::ldap_escape(name).into_owned()
}

/// Why the directory gave no answer: the user cannot be told yes or no.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// The directory's answer for a username and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The password is right and the user in the group (if one is required).
    Accepted(DirectoryEntry),
    /// Refused; the reason is for the log only (the client hears the usual message).
    Refused(String),
}

/// `entry` if it is an `entryUUID` (RFC 4122 text form).
fn as_entry_uuid(entry: &str) -> Option<&str> {
    let shape = entry.len() == 36
        && entry.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    shape.then_some(entry)
}

/// An AD `objectGUID` (32 hex digits, as the account id holds it) as a filter
/// value: every byte escaped (RFC 4515), as binary attributes are compared.
fn as_object_guid(entry: &str) -> Option<String> {
    let shape = entry.len() == 32 && entry.chars().all(|c| c.is_ascii_hexdigit());
    shape.then(|| {
        entry
            .as_bytes()
            .chunks(2)
            .map(|pair| format!("\\{}", String::from_utf8_lossy(pair)))
            .collect()
    })
}

/// The entry a user bound as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// Its DN (for a direct AD bind by `user@domain`, that name).
    pub dn: String,
    /// `entryUUID` (OpenLDAP, 389-DS) or `objectGUID` (AD, hex), if readable.
    pub uuid: Option<String>,
}

impl DirectoryEntry {
    /// The account id of the local shadow row: the entry's uuid, else its DN.
    pub fn account_id(&self) -> String {
        format!("ldap:{}", self.uuid.as_deref().unwrap_or(&self.dn))
    }
}

/// Facts `config check` reports about the directory.
#[derive(Debug, Default)]
pub struct Probe {
    /// The directory's TLS certificate (subject, issuer, expiry), if TLS.
    pub certificate: Option<String>,
    /// Whether the search account bound (None: there is none).
    pub search_bind: Option<bool>,
    /// Whether `require_group` exists (None: none required, or not readable).
    pub group_exists: Option<bool>,
}

/// The configured directory: TLS settings, the search password, a small pool of
/// idle connections and a bound on the checks in flight.
pub struct Directory {
    cfg: LdapSection,
    tls: Option<Arc<rustls::ClientConfig>>,
    search_password: Option<String>,
    slots: tokio::sync::Semaphore,
    idle: Mutex<Vec<Ldap>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("url", &self.cfg.url)
            .finish_non_exhaustive()
    }
}

/// Why the directory settings could not be used at start-up.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryConfigError {
    /// A file named by `[ldap]` could not be read.
    #[error("[ldap] {key}: cannot read {path}: {error}")]
    Read {
        /// The key naming it.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A file's content is unusable.
    #[error("[ldap] {key}: {message}")]
    Invalid {
        /// The key naming it.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Shortens the bind of an LDAP result code to what it means for us.
enum Outcome<T> {
    Ok(T),
    /// The server answered no (wrong password, no such entry, refused).
    No(String),
}

/// Result codes that mean the directory cannot answer now, rather than "no".
fn unavailable_code(rc: u32) -> bool {
    // busy, unavailable, unwillingToPerform is a "no"; 80 other, 51, 52, 3 timeLimit.
    matches!(rc, 3 | 51 | 52 | 80)
}

fn classify<T>(r: Result<T, LdapError>, what: &str) -> Result<Outcome<T>, Unavailable> {
    match r {
        Ok(v) => Ok(Outcome::Ok(v)),
        Err(LdapError::LdapResult { result }) if !unavailable_code(result.rc) => Ok(Outcome::No(
            format!("{what}: result code {} {}", result.rc, result.text),
        )),
        Err(e) => Err(Unavailable(format!("{what}: {e}"))),
    }
}

impl Directory {
    /// From `[ldap]`: reads the CA file and the search password.
    pub fn new(cfg: &LdapSection) -> Result<Self, DirectoryConfigError> {
        let tls_used = cfg.url.starts_with("ldaps://") || cfg.starttls;
        let tls = if tls_used {
            let mut roots = rustls::RootCertStore::empty();
            // problem() requires a CA whenever TLS is used.
            if let Some(path) = &cfg.ca {
                let pem =
                    std::fs::read_to_string(path).map_err(|error| DirectoryConfigError::Read {
                        key: "ca",
                        path: path.clone(),
                        error,
                    })?;
                let certs = onlineca_core::issuer::pem_certificates(&pem).map_err(|e| {
                    DirectoryConfigError::Invalid {
                        key: "ca",
                        message: format!("{}: {e}", path.display()),
                    }
                })?;
                if certs.is_empty() {
                    return Err(DirectoryConfigError::Invalid {
                        key: "ca",
                        message: format!("{}: no certificate in it", path.display()),
                    });
                }
                for der in certs {
                    roots
                        .add(der.into())
                        .map_err(|e| DirectoryConfigError::Invalid {
                            key: "ca",
                            message: format!("{}: {e}", path.display()),
                        })?;
                }
            }
            Some(Arc::new(
                rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            ))
        } else {
            None
        };
        let search_password = match &cfg.search_bind_password_file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|error| DirectoryConfigError::Read {
                        key: "search_bind_password_file",
                        path: path.clone(),
                        error,
                    })?;
                let pw = text.lines().next().unwrap_or("").to_string();
                if pw.is_empty() {
                    return Err(DirectoryConfigError::Invalid {
                        key: "search_bind_password_file",
                        message: format!(
                            "{} is empty: an empty password would be an anonymous bind",
                            path.display()
                        ),
                    });
                }
                Some(pw)
            }
            None => None,
        };
        Ok(Directory {
            cfg: cfg.clone(),
            tls,
            search_password,
            slots: tokio::sync::Semaphore::new(cfg.max_connections),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &LdapSection {
        &self.cfg
    }

    async fn connect(&self) -> Result<Ldap, LdapError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.cfg.timeout)
            .set_starttls(self.cfg.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.cfg.url).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "directory connection closed");
            }
        });
        Ok(ldap)
    }

    /// An idle connection, or a new one.
    async fn take(&self) -> Result<Ldap, Unavailable> {
        loop {
            let pooled = self.idle.lock().ok().and_then(|mut v| v.pop());
            match pooled {
                Some(mut l) => {
                    if !l.is_closed() {
                        return Ok(l);
                    }
                }
                None => break,
            }
        }
        self.connect()
            .await
            .map_err(|e| Unavailable(format!("cannot connect to {}: {e}", self.cfg.url)))
    }

    fn give_back(&self, mut ldap: Ldap) {
        if !ldap.is_closed()
            && let Ok(mut v) = self.idle.lock()
            && v.len() < self.cfg.max_connections
        {
            v.push(ldap);
        }
    }

    /// Checks `username` (already validated) and `password` by binding as the user;
    /// within `[ldap] timeout`, at most `max_connections` at once.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Verdict, Unavailable> {
        // An empty password is an unauthenticated bind, which directories accept.
        if password.is_empty() {
            return Ok(Verdict::Refused("empty password".into()));
        }
        let deadline = tokio::time::Instant::now() + self.cfg.timeout;
        let _slot = tokio::time::timeout_at(deadline, self.slots.acquire())
            .await
            .map_err(|_| Unavailable("every directory connection is busy".into()))?
            .map_err(|_| Unavailable("directory closed".into()))?;
        let mut ldap = tokio::time::timeout_at(deadline, self.take())
            .await
            .map_err(|_| Unavailable(format!("no connection to {} in time", self.cfg.url)))??;
        match tokio::time::timeout_at(deadline, self.check(&mut ldap, username, password)).await {
            Ok(Ok(v)) => {
                self.give_back(ldap);
                Ok(v)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Unavailable(format!(
                "no answer from {} within {}",
                self.cfg.url,
                humantime::format_duration(self.cfg.timeout)
            ))),
        }
    }

    /// Whether the directory still holds the entry a shadow account stands for
    /// (`entry`: its account id without `ldap:`) and, if a group is required, has
    /// it in the group: asked at every renewal of a directory user's certificate, so
    /// that someone removed from the directory or the group stops renewing.
    /// `Ok(None)` when the entry is there (or cannot be looked up without a search
    /// account: then only `user disable` stops renewals); `Ok(Some(reason))`, for
    /// the log, when it is not.
    pub async fn still_entitled(&self, entry: &str) -> Result<Option<String>, Unavailable> {
        if self.cfg.search_bind_dn.is_none() {
            return Ok(None);
        }
        let deadline = tokio::time::Instant::now() + self.cfg.timeout;
        let _slot = tokio::time::timeout_at(deadline, self.slots.acquire())
            .await
            .map_err(|_| Unavailable("every directory connection is busy".into()))?
            .map_err(|_| Unavailable("directory closed".into()))?;
        let mut ldap = tokio::time::timeout_at(deadline, self.take())
            .await
            .map_err(|_| Unavailable(format!("no connection to {} in time", self.cfg.url)))??;
        match tokio::time::timeout_at(deadline, self.look_up(&mut ldap, entry)).await {
            Ok(Ok(v)) => {
                self.give_back(ldap);
                Ok(v)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Unavailable(format!(
                "no answer from {} within {}",
                self.cfg.url,
                humantime::format_duration(self.cfg.timeout)
            ))),
        }
    }

    async fn look_up(&self, ldap: &mut Ldap, entry: &str) -> Result<Option<String>, Unavailable> {
        self.search_bind(ldap).await?;
        let attrs = vec!["memberOf"];
        let found = if let Some(uuid) = as_entry_uuid(entry) {
            let base = self.cfg.search_base.as_deref().unwrap_or("");
            let filter = format!("(entryUUID={})", escape_filter_value(uuid));
            ldap.search(base, Scope::Subtree, &filter, attrs).await
        } else if let Some(guid) = as_object_guid(entry) {
            let base = self.cfg.search_base.as_deref().unwrap_or("");
            ldap.search(base, Scope::Subtree, &format!("(objectGUID={guid})"), attrs)
                .await
        } else {
            // The account id is the entry's DN (a directory without entry uuids).
            ldap.search(entry, Scope::Base, "(objectClass=*)", attrs)
                .await
        };
        let entries = match classify(found.and_then(|r| r.success()), "looking the entry up")? {
            Outcome::Ok((entries, _)) => entries,
            // noSuchObject for a DN that is gone, among others.
            Outcome::No(m) => return Ok(Some(format!("{entry}: {m}"))),
        };
        let Some(raw) = entries.into_iter().next() else {
            return Ok(Some(format!("no directory entry {entry} any more")));
        };
        let found = SearchEntry::construct(raw);
        if let Some(group) = &self.cfg.require_group {
            let member_of = found.attrs.get("memberOf").cloned().unwrap_or_default();
            if !self.in_group(ldap, group, &found.dn, &member_of).await? {
                return Ok(Some(format!(
                    "{} is no longer in the required group {group}",
                    found.dn
                )));
            }
        }
        Ok(None)
    }

    async fn search_bind(&self, ldap: &mut Ldap) -> Result<Outcome<()>, Unavailable> {
        let (dn, pw) = match (&self.cfg.search_bind_dn, &self.search_password) {
            (Some(dn), Some(pw)) => (dn.as_str(), pw.as_str()),
            _ => ("", ""),
        };
        match classify(
            ldap.simple_bind(dn, pw).await.and_then(|r| r.success()),
            "search account bind",
        )? {
            Outcome::Ok(_) => Ok(Outcome::Ok(())),
            // The operator's account is refused: nobody can be checked.
            Outcome::No(m) => Err(Unavailable(m)),
        }
    }

    async fn check(
        &self,
        ldap: &mut Ldap,
        username: &str,
        password: &str,
    ) -> Result<Verdict, Unavailable> {
        let dn = match &self.cfg.bind_dn {
            Some(template) => template.replace(USERNAME, &escape_dn_value(username)),
            None => {
                self.search_bind(ldap).await?;
                let base = self.cfg.search_base.as_deref().unwrap_or("");
                let filter = self
                    .cfg
                    .search_filter
                    .as_deref()
                    .unwrap_or("")
                    .replace(USERNAME, &escape_filter_value(username));
                let found = ldap
                    .search(base, Scope::Subtree, &filter, vec!["1.1"])
                    .await
                    .and_then(|r| r.success());
                let entries = match classify(found, "user search")? {
                    Outcome::Ok((entries, _)) => entries,
                    Outcome::No(m) => return Ok(Verdict::Refused(m)),
                };
                match entries.len() {
                    1 => SearchEntry::construct(entries.into_iter().next().expect("one")).dn,
                    0 => return Ok(Verdict::Refused(format!("no entry matches {filter}"))),
                    n => {
                        return Ok(Verdict::Refused(format!(
                            "{n} entries match {filter}: the filter must find one"
                        )));
                    }
                }
            }
        };
        match classify(
            ldap.simple_bind(&dn, password)
                .await
                .and_then(|r| r.success()),
            "user bind",
        )? {
            Outcome::Ok(_) => {}
            Outcome::No(m) => return Ok(Verdict::Refused(format!("{dn}: {m}"))),
        }
        // Read the entry's identity (and groups) as the user, who may read their own.
        let attrs = vec!["entryUUID", "objectGUID", "memberOf"];
        let own = ldap
            .search(&dn, Scope::Base, "(objectClass=*)", attrs)
            .await
            .and_then(|r| r.success());
        let (uuid, member_of) = match classify(own, "reading the user's entry")? {
            Outcome::Ok((mut entries, _)) if !entries.is_empty() => {
                let e = SearchEntry::construct(entries.swap_remove(0));
                let uuid = e
                    .attrs
                    .get("entryUUID")
                    .and_then(|v| v.first().cloned())
                    .or_else(|| {
                        e.bin_attrs
                            .get("objectGUID")
                            .and_then(|v| v.first())
                            .map(hex::encode)
                    });
                let groups = e.attrs.get("memberOf").cloned().unwrap_or_default();
                (uuid, groups)
            }
            _ => (None, Vec::new()),
        };
        let entry = DirectoryEntry { dn, uuid };
        if let Some(group) = &self.cfg.require_group {
            if self.cfg.search_bind_dn.is_some() {
                // Groups are often readable by the service account only.
                self.search_bind(ldap).await?;
            }
            if !self.in_group(ldap, group, &entry.dn, &member_of).await? {
                return Ok(Verdict::Refused(format!(
                    "{} is not in the required group {group}",
                    entry.dn
                )));
            }
        }
        Ok(Verdict::Accepted(entry))
    }

    async fn in_group(
        &self,
        ldap: &mut Ldap,
        group: &str,
        dn: &str,
        member_of: &[String],
    ) -> Result<bool, Unavailable> {
        let norm = |s: &str| s.replace(' ', "").to_ascii_lowercase();
        if member_of.iter().any(|g| norm(g) == norm(group)) {
            return Ok(true);
        }
        let v = escape_filter_value(dn);
        let filter = format!("(|(member={v})(uniqueMember={v}))");
        let r = ldap
            .search(group, Scope::Base, &filter, vec!["1.1"])
            .await
            .and_then(|r| r.success());
        match classify(r, "group search")? {
            Outcome::Ok((entries, _)) => Ok(!entries.is_empty()),
            Outcome::No(m) => {
                tracing::warn!(group, reason = %m, "[ldap] require_group cannot be read");
                Ok(false)
            }
        }
    }

    /// For `config check`: connects, reports the TLS certificate, binds with the
    /// search account (if any) and looks for the required group.
    pub async fn probe(&self) -> Result<Probe, Unavailable> {
        tokio::time::timeout(self.cfg.timeout, self.probe_inner())
            .await
            .map_err(|_| Unavailable(format!("no answer from {} in time", self.cfg.url)))?
    }

    async fn probe_inner(&self) -> Result<Probe, Unavailable> {
        let mut ldap = self.take().await?;
        let mut probe = Probe::default();
        if let Ok(Some(der)) = ldap.get_peer_certificate().await {
            probe.certificate = Some(describe_certificate(&der));
        }
        if self.cfg.search_bind_dn.is_some() {
            self.search_bind(&mut ldap).await?;
            probe.search_bind = Some(true);
        }
        if let Some(group) = &self.cfg.require_group {
            let r = ldap
                .search(group, Scope::Base, "(objectClass=*)", vec!["1.1"])
                .await
                .and_then(|r| r.success());
            probe.group_exists = match classify(r, "group")? {
                Outcome::Ok((entries, _)) => Some(!entries.is_empty()),
                Outcome::No(m) if m.contains("code 32 ") => Some(false),
                Outcome::No(_) => None,
            };
        }
        let _ = ldap.unbind().await;
        Ok(probe)
    }
}

/// The directory's part of [`crate::auth::PasswordCheck::check`], inside its lockout
/// attempt and per-name gate: binds as the user, then keeps the local shadow row
/// (created on the first login; its account id follows the entry, so that a
/// recreated entry, another person, does not inherit the old one's renewals).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn check(
    pc: &crate::auth::PasswordCheck,
    dir: &Directory,
    store: &dyn Store,
    name: &str,
    creds: &crate::auth::BasicCredentials,
    user: Option<&User>,
    attempt: crate::lockout::Attempt<'_>,
    now: OffsetDateTime,
) -> Result<Principal, ApiError> {
    let entry = match dir.authenticate(&creds.username, &creds.password).await {
        Ok(Verdict::Accepted(entry)) => entry,
        Ok(Verdict::Refused(reason)) => {
            tracing::info!(user = name, reason = %reason, "directory refused the user");
            attempt.failed();
            return Err(ApiError::BadCredentials);
        }
        Err(Unavailable(reason)) => {
            attempt.abandoned().await;
            return Err(ApiError::DirectoryUnavailable(reason));
        }
    };
    let account_id = entry.account_id();
    let row = match user {
        Some(u) if u.account_id == account_id => u.clone(),
        Some(u) => {
            tracing::warn!(
                user = %u.username,
                old = %u.account_id,
                new = %account_id,
                "the directory entry changed identity (deleted and created again): \
                 a new account; certificates of the old one no longer renew"
            );
            store.set_account_id(&u.username, &account_id, now).await?;
            User {
                account_id: account_id.clone(),
                ..u.clone()
            }
        }
        None => {
            let mut row = User::new(creds.username.clone(), LDAP_MARKER, now)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            row.account_id = account_id.clone();
            match store.add_user(&row).await {
                Ok(()) => {
                    tracing::info!(user = %row.username, dn = %entry.dn, account = %account_id, "directory user's first login: shadow account created");
                    row
                }
                // Another instance created it meanwhile (or an operator added a
                // local user of that name: then that row, not the directory, rules).
                Err(onlineca_store::StoreError::UserExists(_)) => {
                    match store.get_user(&creds.username).await? {
                        Some(u) if u.password_hash == LDAP_MARKER => u,
                        _ => {
                            attempt.failed();
                            return Err(ApiError::BadCredentials);
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    attempt.succeeded().await?;
    pc.cache.insert(
        name,
        &creds.password,
        LDAP_MARKER,
        std::time::Instant::now(),
    );
    if row.disabled {
        return Err(ApiError::UserDisabled);
    }
    Ok(Principal::ldap(row.username, row.account_id))
}

fn describe_certificate(der: &[u8]) -> String {
    use x509_parser::prelude::{FromDer, X509Certificate};
    match X509Certificate::from_der(der) {
        Ok((_, c)) => format!(
            "subject {}, issuer {}, valid until {}",
            c.subject(),
            c.issuer(),
            c.validity().not_after
        ),
        Err(e) => format!("unreadable: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_cannot_widen_a_filter_or_change_a_dn() {
        assert_eq!(escape_filter_value("*"), "\\2a");
        assert_eq!(escape_filter_value("alice)(uid=*"), "alice\\29\\28uid=\\2a");
        assert_eq!(escape_filter_value("a\0b"), "a\\00b");
        assert_eq!(escape_filter_value("a\\b"), "a\\5cb");
        assert_eq!(escape_dn_value("alice,ou=admins"), "alice\\2cou\\3dadmins");
        assert_eq!(escape_dn_value("a+b"), "a\\2bb");
        assert_eq!(escape_dn_value("#a "), "\\23a\\20");
        assert_eq!(escape_dn_value("a\0"), "a\\00");
        assert_eq!(escape_dn_value("alice"), "alice");
    }

    fn section(extra: &str) -> Result<LdapSection, String> {
        toml::from_str::<LdapSection>(extra).map_err(|e| e.to_string())
    }

    #[test]
    fn settings_are_checked() {
        let ok = "url = \"ldaps://h\"\nca = \"c.pem\"\nbind_dn = \"uid={username},dc=x\"\n";
        assert_eq!(section(ok).unwrap().problem(), None);
        for (text, key, says) in [
            (
                "url = \"ldap://h\"\nbind_dn = \"uid={username}\"\n",
                "ldap.url",
                "insecure = true",
            ),
            (
                "url = \"http://h\"\nbind_dn = \"uid={username}\"\n",
                "ldap.url",
                "not an ldaps",
            ),
            (
                "url = \"ldaps://h\"\nbind_dn = \"uid={username}\"\n",
                "ldap.ca",
                "PEM",
            ),
            (
                "url = \"ldaps://h\"\nca = \"c\"\nbind_dn = \"uid=x\"\n",
                "ldap.bind_dn",
                "{username}",
            ),
            (
                "url = \"ldaps://h\"\nca = \"c\"\nbind_dn = \"uid={username}\"\nsearch_base = \"dc=x\"\nsearch_filter = \"(uid={username})\"\n",
                "ldap.bind_dn",
                "not both",
            ),
            (
                "url = \"ldaps://h\"\nca = \"c\"\n",
                "ldap.bind_dn",
                "give bind_dn",
            ),
            (
                "url = \"ldaps://h\"\nca = \"c\"\nsearch_base = \"dc=x\"\nsearch_filter = \"uid={username}\"\n",
                "ldap.search_filter",
                "parentheses",
            ),
            (
                "url = \"ldaps://h\"\nca = \"c\"\nsearch_base = \"dc=x\"\nsearch_filter = \"(uid={username})\"\nsearch_bind_dn = \"cn=s\"\n",
                "ldap.search_bind_dn",
                "go together",
            ),
            (
                "url = \"ldaps://h\"\nca = \"c\"\nstarttls = true\nbind_dn = \"uid={username}\"\n",
                "ldap.starttls",
                "ldap://",
            ),
        ] {
            let (k, m) = section(text).unwrap().problem().expect(text);
            assert_eq!(k, key, "{text}");
            assert!(m.contains(says), "{text}: {m}");
        }
        let plain = "url = \"ldap://h\"\ninsecure = true\nbind_dn = \"uid={username}\"\n";
        assert_eq!(section(plain).unwrap().problem(), None);
        let st = "url = \"ldap://h\"\nstarttls = true\nca = \"c\"\nbind_dn = \"uid={username}\"\n";
        assert_eq!(section(st).unwrap().problem(), None);
    }

    #[test]
    fn account_id_prefers_the_uuid() {
        let mut e = DirectoryEntry {
            dn: "uid=a,dc=x".into(),
            uuid: Some("1234".into()),
        };
        assert_eq!(e.account_id(), "ldap:1234");
        e.uuid = None;
        assert_eq!(e.account_id(), "ldap:uid=a,dc=x");
    }
}
