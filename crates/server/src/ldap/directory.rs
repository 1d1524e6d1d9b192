//! The directory client: TLS, a small pool of connections, binds as users, the
//! search account, groups, and what `config check` reports.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};

use super::{
    LdapSection, USERNAME, as_entry_uuid, as_object_guid, escape_dn_value, escape_filter_value,
};

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
        self.on_connection(async |ldap| self.check(ldap, username, password).await)
            .await
    }

    /// Runs `work` on a pooled connection, within `[ldap] timeout` from now and
    /// with at most `max_connections` at once; the connection goes back to the pool
    /// only after work that finished (an abandoned one may be mid-operation).
    async fn on_connection<T>(
        &self,
        work: impl AsyncFnOnce(&mut Ldap) -> Result<T, Unavailable>,
    ) -> Result<T, Unavailable> {
        let deadline = tokio::time::Instant::now() + self.cfg.timeout;
        let _slot = tokio::time::timeout_at(deadline, self.slots.acquire())
            .await
            .map_err(|_| Unavailable("every directory connection is busy".into()))?
            .map_err(|_| Unavailable("directory closed".into()))?;
        let mut ldap = tokio::time::timeout_at(deadline, self.take())
            .await
            .map_err(|_| Unavailable(format!("no connection to {} in time", self.cfg.url)))??;
        match tokio::time::timeout_at(deadline, work(&mut ldap)).await {
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
        self.on_connection(async |ldap| self.look_up(ldap, entry).await)
            .await
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
