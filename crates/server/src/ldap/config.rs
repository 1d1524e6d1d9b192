//! `[ldap]`: where the directory is, how users are found in it, and the checks of
//! those settings at start-up.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::USERNAME;
use crate::config::humantime_serde;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
