//! The configuration file (`onlineca.toml`): what it may hold, its defaults, and
//! loading it with every path made absolute against the file's own directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use onlineca_core::SubjectTemplate;
use onlineca_core::trustroots::Encoding;
use serde::Deserialize;

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (shown in the message, so not a `source`: it would print twice).
        error: std::io::Error,
    },
    /// TOML syntax, an unknown key or a wrong type (the message names the key).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml said, with the key and position.
        message: String,
    },
    /// A value is well-formed TOML but not acceptable.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The offending key, dotted.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}
fn default_prefix() -> String {
    "/onlineca".into()
}
fn default_max_body() -> usize {
    64 * 1024
}
fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `[server]`: the listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address and port to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Mount prefix of the API.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body: usize,
    /// Longest time one request may take, body upload included.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest time a TLS handshake may take.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// How long a connection may sit with no request in flight before it is closed
    /// (from the handshake on).
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How long in-flight requests may run after a shutdown signal.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Connections served at once; more wait in the kernel's backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections one client address (an IPv6 /64) may hold at once; more are
    /// closed at once, so that one address cannot take every slot.
    #[serde(default = "default_max_connections_per_address")]
    pub max_connections_per_address: usize,
    /// Certificate requests a minute from one client address (0: no limit).
    #[serde(default = "default_rate_limit")]
    pub rate_limit: u32,
    /// Requests one address may make at once before `rate_limit` applies.
    #[serde(default = "default_rate_burst")]
    pub rate_burst: u32,
    /// Networks (CIDR, or single addresses) of TCP load balancers whose connections
    /// start with a PROXY protocol header naming the client; empty: off.
    #[serde(default)]
    pub proxy_protocol_from: Vec<String>,
    /// `proxy_protocol_from`, parsed (by [`Config::parse`]).
    #[serde(skip)]
    pub trusted_proxies: crate::proxy_protocol::TrustedProxies,
}
fn default_request_timeout() -> Duration {
    secs(30)
}
fn default_handshake_timeout() -> Duration {
    secs(10)
}
fn default_idle_timeout() -> Duration {
    secs(60)
}
fn default_shutdown_grace() -> Duration {
    secs(30)
}
fn default_rate_limit() -> u32 {
    120
}
fn default_rate_burst() -> u32 {
    30
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_connections_per_address() -> usize {
    64
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            prefix: default_prefix(),
            max_body: default_max_body(),
            request_timeout: default_request_timeout(),
            handshake_timeout: default_handshake_timeout(),
            idle_timeout: default_idle_timeout(),
            shutdown_grace: default_shutdown_grace(),
            max_connections: default_max_connections(),
            max_connections_per_address: default_max_connections_per_address(),
            rate_limit: default_rate_limit(),
            rate_burst: default_rate_burst(),
            proxy_protocol_from: Vec::new(),
            trusted_proxies: Default::default(),
        }
    }
}

/// `[tls]`: the server's own certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM: the server certificate, then any intermediates.
    pub cert: PathBuf,
    /// PEM private key of the server certificate.
    pub key: PathBuf,
}

/// `[ca]`: the issuing CA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaSection {
    /// PEM certificate of the issuing CA.
    pub cert: PathBuf,
    /// PEM private key of the issuing CA, or the RFC 7512 `pkcs11:` URI of its key
    /// on a token (then `pkcs11_module` and `pin_file` are needed too).
    pub key: PathBuf,
    /// PEM certificates above the issuing CA (intermediates and root), if any.
    #[serde(default)]
    pub chain: Option<PathBuf>,
    /// Serve even when the key file can be read or changed by its group or others
    /// (otherwise start-up refuses, naming the file and the `chmod` that fixes it).
    #[serde(default)]
    pub allow_insecure_key_permissions: bool,
    /// Issuing CAs replaced by `onlineca ca rotate`: still published in the trust
    /// roots, with a CRL of their own, and accepted for renewal, while certificates
    /// they signed are unexpired.
    #[serde(default)]
    pub retired: Vec<RetiredCa>,
    /// The passphrase of an encrypted key: never in the file, set by the command that
    /// loads the configuration (`--passphrase-file`, or a prompt).
    #[serde(skip)]
    pub passphrase: Option<onlineca_core::keyfile::Passphrase>,
    /// The PKCS#11 module (the token vendor's shared library), when `key` is a
    /// `pkcs11:` URI.
    #[serde(default)]
    pub pkcs11_module: Option<PathBuf>,
    /// The file whose first line is the token's user PIN, when `key` is a `pkcs11:`
    /// URI (held to the key file's permission rule).
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
}

impl CaSection {
    /// The `pkcs11:` URI in `key`, when the key is on a token rather than in a file.
    pub fn pkcs11_uri(&self) -> Option<&str> {
        self.key
            .to_str()
            .filter(|k| onlineca_pkcs11::is_pkcs11_uri(k))
    }
}

/// `[server_certificate]`: what `onlineca cert sign` gives the services that accept
/// this CA's users (never reachable over HTTP).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerCertificateSection {
    /// Lifetime of server certificates (within the CA's own).
    #[serde(default = "default_server_cert_lifetime", with = "humantime_serde")]
    pub lifetime: Duration,
    /// Names a CSR may bring with `--use-csr-names`: exact names, or `*.suffix` for
    /// any name below `suffix`. Empty: `--use-csr-names` accepts none.
    #[serde(default)]
    pub allow_domains: Vec<String>,
}
fn default_server_cert_lifetime() -> Duration {
    Duration::from_secs(90 * 86_400)
}

impl Default for ServerCertificateSection {
    fn default() -> Self {
        ServerCertificateSection {
            lifetime: default_server_cert_lifetime(),
            allow_domains: Vec::new(),
        }
    }
}

/// One `[[ca.retired]]` entry: an issuing CA that no longer issues.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetiredCa {
    /// Its certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, encrypted with the same passphrase as `[ca] key` if that
    /// is): it keeps signing the CA's CRL.
    pub key: PathBuf,
}

/// `[certificate]`: the profile of issued certificates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSection {
    /// Subject template, with `{username}` in exactly one attribute.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Lifetime of issued certificates.
    #[serde(default = "default_lifetime", with = "humantime_serde")]
    pub lifetime: Duration,
    /// How far notBefore lies in the past.
    #[serde(default = "default_backdate", with = "humantime_serde")]
    pub backdate: Duration,
    /// CRL distribution point URL written into certificates.
    #[serde(default)]
    pub crl_url: Option<String>,
}
fn default_subject() -> String {
    "/O=onlineca/OU=Users/CN={username}".into()
}
fn default_lifetime() -> Duration {
    secs(12 * 3600)
}
fn default_backdate() -> Duration {
    secs(300)
}

impl Default for CertificateSection {
    fn default() -> Self {
        CertificateSection {
            subject: default_subject(),
            lifetime: default_lifetime(),
            backdate: default_backdate(),
            crl_url: None,
        }
    }
}

/// `[auth]`: how requesters prove who they are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Whether HTTP Basic passwords are accepted.
    #[serde(default = "yes")]
    pub password: bool,
    /// Whether trusted retrievers (`[[retrievers]]`) may ask on users' behalf.
    #[serde(default = "yes")]
    pub retriever: bool,
    /// Whether a valid certificate of this CA may renew itself without a password.
    #[serde(default = "yes")]
    pub renewal: bool,
    /// PEM files of the CAs that retriever certificates must chain to (kept apart
    /// from this CA's own roots: a portal's certificate may come from anywhere).
    #[serde(default)]
    pub retriever_anchors: Vec<PathBuf>,
    /// CRL files (PEM or DER) of the retriever anchors, each signed by a certificate
    /// in the anchor files. When any is listed, every certificate of a retriever
    /// chain must be covered by one, unrevoked, and the CRL current (before its
    /// nextUpdate); a changed file is picked up while the server runs.
    #[serde(default)]
    pub retriever_crls: Vec<PathBuf>,
    /// The realm named in `WWW-Authenticate`.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Failed passwords for one username before it is locked out for a while.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// How long a lockout lasts.
    #[serde(default = "default_lockout", with = "humantime_serde")]
    pub lockout: Duration,
    /// How long a verified username and password are accepted again without argon2
    /// (while the store holds the same hash for an enabled user); zero turns it off.
    #[serde(default = "default_credential_cache", with = "humantime_serde")]
    pub credential_cache: Duration,
    /// How many usernames the credential cache keeps at most.
    #[serde(default = "default_credential_cache_size")]
    pub credential_cache_size: usize,
    /// Threads verifying passwords (argon2id, 19 MiB each); 0: one per core.
    #[serde(default)]
    pub password_threads: usize,
    /// Password checks that may wait for a thread; beyond it, 503 with Retry-After.
    #[serde(default = "default_password_queue")]
    pub password_queue: usize,
}
fn yes() -> bool {
    true
}
fn default_realm() -> String {
    "onlineca".into()
}
fn default_max_failures() -> u32 {
    5
}
fn default_lockout() -> Duration {
    secs(300)
}
fn default_credential_cache() -> Duration {
    secs(300)
}
fn default_credential_cache_size() -> usize {
    10_000
}
fn default_password_queue() -> usize {
    256
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            password: true,
            retriever: true,
            renewal: true,
            retriever_anchors: Vec::new(),
            retriever_crls: Vec::new(),
            realm: default_realm(),
            max_failures: default_max_failures(),
            lockout: default_lockout(),
            credential_cache: default_credential_cache(),
            credential_cache_size: default_credential_cache_size(),
            password_threads: 0,
            password_queue: default_password_queue(),
        }
    }
}

/// `[store]`: where users and issued certificates are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `sqlite://file.db` (relative to the config file) or `postgres://...`.
    #[serde(default = "default_store_url")]
    pub url: String,
    /// Whether `serve` (and the CLI) upgrade an older schema by themselves. Default:
    /// yes for SQLite, no for PostgreSQL, where instances of the previous release may
    /// share the database (`onlineca store migrate` upgrades it, deliberately). An
    /// empty database always gets its schema.
    #[serde(default)]
    pub auto_migrate: Option<bool>,
    /// PostgreSQL TLS: `disable`, `prefer`, `require`, `verify-ca` or `verify-full`
    /// (overrides the URL's `sslmode`).
    #[serde(default)]
    pub sslmode: Option<String>,
    /// PostgreSQL TLS: the CA certificate(s) of the server's certificate (PEM).
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
    /// PostgreSQL TLS: a client certificate to authenticate with (PEM).
    #[serde(default)]
    pub sslcert: Option<PathBuf>,
    /// Its key (PEM, mode 0600).
    #[serde(default)]
    pub sslkey: Option<PathBuf>,
    /// A file whose first line is the database password (else the URL's, or
    /// `ONLINECA_STORE_PASSWORD`, or libpq's `PGPASSWORD`).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

impl StoreSection {
    /// Whether opening may upgrade an older schema.
    pub fn migrates_by_itself(&self) -> bool {
        self.auto_migrate
            .unwrap_or(!self.url.starts_with("postgres"))
    }

    /// The options to open the store with; reads the password file. `migrate`
    /// overrides the configured policy (for `store migrate`).
    pub fn open_options(
        &self,
        migrate: Option<onlineca_store::Migrate>,
    ) -> Result<onlineca_store::OpenOptions, onlineca_store::StoreError> {
        let password = match &self.password_file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    onlineca_store::StoreError::Config(format!(
                        "cannot read [store] password_file {}: {e}",
                        p.display()
                    ))
                })?;
                Some(text.lines().next().unwrap_or("").to_string())
            }
            None => std::env::var("ONLINECA_STORE_PASSWORD").ok(),
        };
        Ok(onlineca_store::OpenOptions {
            migrate: migrate.unwrap_or(if self.migrates_by_itself() {
                onlineca_store::Migrate::Auto
            } else {
                onlineca_store::Migrate::Explicit
            }),
            postgres: onlineca_store::PgOptions {
                sslmode: self.sslmode.clone(),
                sslrootcert: self.sslrootcert.clone(),
                sslcert: self.sslcert.clone(),
                sslkey: self.sslkey.clone(),
                password,
            },
        })
    }

    /// Opens the store as configured.
    pub async fn open(
        &self,
    ) -> Result<std::sync::Arc<dyn onlineca_store::Store>, onlineca_store::StoreError> {
        onlineca_store::open_with(&self.url, &self.open_options(None)?).await
    }
}
fn default_store_url() -> String {
    "sqlite://onlineca.db".into()
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            url: default_store_url(),
            auto_migrate: None,
            sslmode: None,
            sslrootcert: None,
            sslcert: None,
            sslkey: None,
            password_file: None,
        }
    }
}

/// `[trustroots]`: what `GET {prefix}/trustroots/` serves.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TrustRootsSection {
    /// Encoding served by default: `fields` (the seed's) or `files` (deployed clients').
    #[serde(default)]
    pub format: Encoding,
    /// Extra PEM files of CA certificates to publish.
    #[serde(default)]
    pub extra: Vec<PathBuf>,
}

/// `[admin]`: a plain-HTTP listener for `/metrics`, `/healthz` and `/readyz`,
/// separate from the public one so that it can stay on loopback.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Where to listen (port 0: any free port); off when absent.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
}

/// One `[[retrievers]]` entry: a service trusted to ask for certificates on behalf
/// of users it has authenticated itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrieverEntry {
    /// The retriever certificate's subject, in OpenSSL's slash form; compared with
    /// certificates on the parsed, canonical name.
    pub subject: String,
    /// Users it may ask for: exact names, glob patterns (`*`, `?`), or `"*"` for all.
    pub users: Vec<String>,
    /// A lifetime cap for the certificates it obtains, below the profile's.
    #[serde(default, with = "humantime_serde::option")]
    pub lifetime: Option<Duration>,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`.
    #[serde(default)]
    pub server: ServerSection,
    /// `[tls]`.
    pub tls: TlsSection,
    /// `[ca]`.
    pub ca: CaSection,
    /// `[certificate]`.
    #[serde(default)]
    pub certificate: CertificateSection,
    /// `[auth]`.
    #[serde(default)]
    pub auth: AuthSection,
    /// `[store]`.
    #[serde(default)]
    pub store: StoreSection,
    /// `[trustroots]`.
    #[serde(default)]
    pub trustroots: TrustRootsSection,
    /// `[[retrievers]]`.
    #[serde(default)]
    pub retrievers: Vec<RetrieverEntry>,
    /// `[crl]`.
    #[serde(default)]
    pub crl: crate::crl::CrlSection,
    /// `[ldap]`: the directory as a second password source (off when absent).
    #[serde(default)]
    pub ldap: Option<crate::ldap::LdapSection>,
    /// `[admin]`: the metrics and health listener (off when absent).
    #[serde(default)]
    pub admin: AdminSection,
    /// `[est]`: enrollment over secure transport (RFC 7030) beside the seed API.
    #[serde(default)]
    pub est: crate::est::EstSection,
    /// `[server_certificate]`: the policy of `onlineca cert sign`.
    #[serde(default)]
    pub server_certificate: ServerCertificateSection,
    /// `[audit]`: the audit log (off when absent).
    #[serde(default)]
    pub audit: Option<crate::audit::AuditSection>,
    /// The file this came from (not a key in it).
    #[serde(skip)]
    pub path: PathBuf,
}

pub(crate) mod humantime_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "{s:?} is not a duration like \"12h\" or \"30s\": {e}"
            ))
        })
    }

    pub mod option {
        use std::time::Duration;

        use serde::Deserializer;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

impl Config {
    /// Reads, parses and checks a configuration file; relative paths become absolute
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and checks configuration `text` as if read from `path` (relative paths
    /// become absolute against its directory). Touches no file: [`Config::load`]
    /// reads the file and calls this; the fuzzer (`fuzz/`) calls it directly.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        cfg.path = path.to_path_buf();
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = std::path::absolute(&base).unwrap_or(base);
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut cfg.tls.cert);
        abs(&mut cfg.tls.key);
        abs(&mut cfg.ca.cert);
        // A pkcs11: URI is no path.
        if cfg.ca.pkcs11_uri().is_none() {
            abs(&mut cfg.ca.key);
        }
        if let Some(m) = cfg.ca.pkcs11_module.as_mut() {
            abs(m);
        }
        if let Some(p) = cfg.ca.pin_file.as_mut() {
            abs(p);
        }
        if let Some(c) = cfg.ca.chain.as_mut() {
            abs(c);
        }
        for r in &mut cfg.ca.retired {
            abs(&mut r.cert);
            abs(&mut r.key);
        }
        for p in &mut cfg.trustroots.extra {
            abs(p);
        }
        for p in &mut cfg.auth.retriever_anchors {
            abs(p);
        }
        for p in &mut cfg.auth.retriever_crls {
            abs(p);
        }
        if let Some(l) = cfg.ldap.as_mut() {
            l.absolute_paths(abs);
        }
        if cfg
            .audit
            .as_ref()
            .is_some_and(|a| a.path.as_os_str().is_empty())
        {
            return Err(cfg.invalid(
                "audit.path",
                "must name a file (relative to this configuration) or \"-\" for standard output",
            ));
        }
        if let Some(a) = cfg.audit.as_mut().filter(|a| !a.is_stdout()) {
            abs(&mut a.path);
        }
        cfg.store.url = absolute_store_url(&cfg.store.url, &base);
        for p in [
            &mut cfg.store.sslrootcert,
            &mut cfg.store.sslcert,
            &mut cfg.store.sslkey,
            &mut cfg.store.password_file,
        ]
        .into_iter()
        .flatten()
        {
            abs(p);
        }
        cfg.server.trusted_proxies =
            crate::proxy_protocol::TrustedProxies::parse(&cfg.server.proxy_protocol_from)
                .map_err(|e| cfg.invalid("server.proxy_protocol_from", e.to_string()))?;
        cfg.check()?;
        Ok(cfg)
    }

    fn invalid(&self, key: &'static str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            key,
            message: message.into(),
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let p = &self.server.prefix;
        if !p.starts_with('/') || (p.len() > 1 && p.ends_with('/')) || p.contains("//") {
            return Err(self.invalid(
                "server.prefix",
                format!("{p:?} must start with '/' and not end with '/' (like \"/onlineca\")"),
            ));
        }
        if !p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-._~".contains(c))
        {
            return Err(self.invalid(
                "server.prefix",
                format!("{p:?} has characters not allowed in a path"),
            ));
        }
        if self.server.max_body < 1024 {
            return Err(self.invalid("server.max_body", "must be at least 1024 bytes"));
        }
        if self.server.idle_timeout < Duration::from_secs(1) {
            return Err(self.invalid("server.idle_timeout", "must be at least one second"));
        }
        if self.server.max_connections == 0 {
            return Err(self.invalid("server.max_connections", "must be at least 1"));
        }
        if self.server.max_connections_per_address == 0 {
            return Err(self.invalid("server.max_connections_per_address", "must be at least 1"));
        }
        self.subject_template()
            .map_err(|e| self.invalid("certificate.subject", e.to_string()))?;
        // Beyond any sensible setting, and far from where time arithmetic overflows.
        const MAX_DURATION: Duration = Duration::from_secs(100 * 366 * 86_400);
        for (key, value) in [
            ("server.request_timeout", self.server.request_timeout),
            ("server.handshake_timeout", self.server.handshake_timeout),
            ("server.idle_timeout", self.server.idle_timeout),
            ("server.shutdown_grace", self.server.shutdown_grace),
            ("certificate.lifetime", self.certificate.lifetime),
            (
                "server_certificate.lifetime",
                self.server_certificate.lifetime,
            ),
            ("certificate.backdate", self.certificate.backdate),
            ("auth.lockout", self.auth.lockout),
            ("auth.credential_cache", self.auth.credential_cache),
            ("crl.next_update", self.crl.next_update),
            ("crl.refresh", self.crl.refresh),
            ("crl.poll", self.crl.poll),
        ] {
            if value > MAX_DURATION {
                return Err(self.invalid(key, "must be at most 100 years"));
            }
        }
        if self.server_certificate.lifetime < Duration::from_secs(3600) {
            return Err(self.invalid("server_certificate.lifetime", "must be at least one hour"));
        }
        for p in &self.server_certificate.allow_domains {
            let name = p.strip_prefix("*.").unwrap_or(p);
            if onlineca_core::server_cert::dns_name(name).is_err() || name.contains('*') {
                return Err(self.invalid(
                    "server_certificate.allow_domains",
                    format!("{p:?} is neither a DNS name nor *.a-dns-name"),
                ));
            }
        }
        if self.certificate.lifetime < Duration::from_secs(60) {
            return Err(self.invalid("certificate.lifetime", "must be at least one minute"));
        }
        if let Some(url) = &self.certificate.crl_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(self.invalid("certificate.crl_url", "must be an http:// or https:// URL"));
        }
        if self.auth.realm.contains(['"', '\\']) || self.auth.realm.chars().any(char::is_control) {
            return Err(self.invalid(
                "auth.realm",
                "may not contain quotes, backslashes or control characters",
            ));
        }
        if self.auth.max_failures == 0 {
            return Err(self.invalid("auth.max_failures", "must be at least 1"));
        }
        if self.auth.password_threads > 1024 {
            return Err(self.invalid("auth.password_threads", "must be at most 1024"));
        }
        self.check_token()?;
        crate::retriever::check_config(self)
            .map_err(|(key, message)| self.invalid(key, message))?;
        if let Some((key, message)) = self.crl.problem() {
            return Err(self.invalid(key, message));
        }
        if let Some(mode) = &self.store.sslmode
            && !["disable", "prefer", "require", "verify-ca", "verify-full"]
                .contains(&mode.as_str())
        {
            return Err(self.invalid(
                "store.sslmode",
                format!("{mode:?}: one of disable, prefer, require, verify-ca, verify-full"),
            ));
        }
        if let Some((key, message)) = self.ldap.as_ref().and_then(|l| l.problem()) {
            return Err(self.invalid(key, message));
        }
        Ok(())
    }

    /// A `pkcs11:` key needs a valid URI, a module and a PIN file; a key file, neither.
    fn check_token(&self) -> Result<(), ConfigError> {
        let ca = &self.ca;
        let Some(uri) = ca.pkcs11_uri() else {
            if ca.pkcs11_module.is_some() || ca.pin_file.is_some() {
                return Err(self.invalid(
                    if ca.pkcs11_module.is_some() {
                        "ca.pkcs11_module"
                    } else {
                        "ca.pin_file"
                    },
                    "is only used when [ca] key is a pkcs11: URI naming a key on a token",
                ));
            }
            return Ok(());
        };
        onlineca_pkcs11::Pkcs11Uri::parse(uri)
            .map_err(|e| self.invalid("ca.key", e.to_string()))?;
        if ca.pkcs11_module.is_none() {
            return Err(self.invalid(
                "ca.pkcs11_module",
                "must name the token's PKCS#11 module (like \"/usr/lib/softhsm/libsofthsm2.so\") \
                 when [ca] key is a pkcs11: URI",
            ));
        }
        if ca.pin_file.is_none() {
            return Err(self.invalid(
                "ca.pin_file",
                "must name the file holding the token's user PIN (its first line) when \
                 [ca] key is a pkcs11: URI",
            ));
        }
        Ok(())
    }

    /// The parsed subject template.
    pub fn subject_template(&self) -> Result<SubjectTemplate, onlineca_core::SubjectError> {
        SubjectTemplate::parse(&self.certificate.subject)
    }

    /// The effective settings, as `config check` prints them.
    pub fn summary(&self) -> String {
        let s = &self.server;
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("{k:<28} {v}\n"));
        line("config", self.path.display().to_string());
        line("server.listen", s.listen.to_string());
        line("server.prefix", s.prefix.clone());
        line("server.max_body", format!("{} bytes", s.max_body));
        line(
            "server.request_timeout",
            humantime::format_duration(s.request_timeout).to_string(),
        );
        line(
            "server.handshake_timeout",
            humantime::format_duration(s.handshake_timeout).to_string(),
        );
        line(
            "server.shutdown_grace",
            humantime::format_duration(s.shutdown_grace).to_string(),
        );
        line(
            "server.idle_timeout",
            humantime::format_duration(s.idle_timeout).to_string(),
        );
        line("server.max_connections", s.max_connections.to_string());
        line(
            "server.max_connections_per_address",
            s.max_connections_per_address.to_string(),
        );
        line(
            "server.rate_limit",
            if s.rate_limit == 0 {
                "off".to_string()
            } else {
                format!(
                    "{} certificate requests a minute per address, bursts of {}",
                    s.rate_limit, s.rate_burst
                )
            },
        );
        line(
            "server.proxy_protocol_from",
            if s.trusted_proxies.is_empty() {
                "(none: client addresses are the TCP peers')".to_string()
            } else {
                let nets = s.trusted_proxies.networks().iter().map(|n| n.to_string());
                format!(
                    "{} (a PROXY protocol header is required from these, refused from others)",
                    nets.collect::<Vec<_>>().join(", ")
                )
            },
        );
        line(
            "admin.listen",
            match self.admin.listen {
                None => "off".to_string(),
                Some(a) if a.ip().is_loopback() => {
                    format!("http://{a} (/metrics, /healthz, /readyz)")
                }
                Some(a) => format!(
                    "http://{a} (WARNING: not loopback: metrics and health are readable, \
                     unauthenticated, by whoever reaches this address)"
                ),
            },
        );
        line(
            "audit.path",
            self.audit
                .as_ref()
                .map(|a| a.describe())
                .unwrap_or_else(|| "(none: issuances and admin actions are not audited)".into()),
        );
        line(
            "est.enabled",
            if self.est.enabled {
                "yes: /.well-known/est/ (cacerts, simpleenroll, simplereenroll, csrattrs)".into()
            } else {
                "no".to_string()
            },
        );
        line("tls.cert", self.tls.cert.display().to_string());
        line("tls.key", self.tls.key.display().to_string());
        line("ca.cert", self.ca.cert.display().to_string());
        line("ca.key", self.ca.key.display().to_string());
        if self.ca.pkcs11_uri().is_some() {
            // The file's name only: the PIN itself is never shown.
            let path = |p: &Option<PathBuf>| {
                p.as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            };
            line("ca.pkcs11_module", path(&self.ca.pkcs11_module));
            line("ca.pin_file", path(&self.ca.pin_file));
        }
        line(
            "ca.chain",
            self.ca
                .chain
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(none)".into()),
        );
        for (i, r) in self.ca.retired.iter().enumerate() {
            line(
                &format!("ca.retired[{i}]"),
                format!("{} (key {})", r.cert.display(), r.key.display()),
            );
        }
        line(
            "ca.allow_insecure_key_permissions",
            self.ca.allow_insecure_key_permissions.to_string(),
        );
        line("certificate.subject", self.certificate.subject.clone());
        line(
            "certificate.lifetime",
            humantime::format_duration(self.certificate.lifetime).to_string(),
        );
        line(
            "certificate.backdate",
            humantime::format_duration(self.certificate.backdate).to_string(),
        );
        line(
            "certificate.crl_url",
            self.certificate
                .crl_url
                .clone()
                .unwrap_or_else(|| "(none)".into()),
        );
        let server_days = self.server_certificate.lifetime.as_secs();
        line(
            "server_certificate.lifetime",
            if server_days.is_multiple_of(86_400) {
                format!("{} days", server_days / 86_400)
            } else {
                humantime::format_duration(self.server_certificate.lifetime).to_string()
            },
        );
        line(
            "server_certificate.allow_domains",
            if self.server_certificate.allow_domains.is_empty() {
                "(none: --use-csr-names accepts no name)".to_string()
            } else {
                self.server_certificate.allow_domains.join(", ")
            },
        );
        line("auth.password", self.auth.password.to_string());
        line("auth.retriever", self.auth.retriever.to_string());
        line("auth.renewal", self.auth.renewal.to_string());
        line(
            "auth.retriever_anchors",
            paths(&self.auth.retriever_anchors),
        );
        line(
            "auth.retriever_crls",
            if self.auth.retriever_crls.is_empty() {
                "(none: retriever certificates are not checked for revocation)".into()
            } else {
                paths(&self.auth.retriever_crls)
            },
        );
        line("auth.realm", self.auth.realm.clone());
        line("auth.max_failures", self.auth.max_failures.to_string());
        line(
            "auth.lockout",
            humantime::format_duration(self.auth.lockout).to_string(),
        );
        line(
            "auth.credential_cache",
            humantime::format_duration(self.auth.credential_cache).to_string(),
        );
        line(
            "auth.credential_cache_size",
            self.auth.credential_cache_size.to_string(),
        );
        line(
            "auth.password_threads",
            match self.auth.password_threads {
                0 => "0 (one per core)".to_string(),
                n => n.to_string(),
            },
        );
        line("auth.password_queue", self.auth.password_queue.to_string());
        line("store.url", redact_url(&self.store.url));
        line(
            "store.auto_migrate",
            if self.store.migrates_by_itself() {
                "yes (an older schema is upgraded on opening)".to_string()
            } else {
                "no (run `onlineca store migrate` after upgrading onlineca)".to_string()
            },
        );
        if self.store.url.starts_with("postgres") {
            let opt = |p: &Option<PathBuf>| {
                p.as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "(none)".into())
            };
            line(
                "store.sslmode",
                self.store
                    .sslmode
                    .clone()
                    .unwrap_or_else(|| "(from the URL; else prefer)".into()),
            );
            line("store.sslrootcert", opt(&self.store.sslrootcert));
            line("store.sslcert", opt(&self.store.sslcert));
            line("store.sslkey", opt(&self.store.sslkey));
            line("store.password_file", opt(&self.store.password_file));
        }
        line("trustroots.format", self.trustroots.format.to_string());
        line("trustroots.extra", paths(&self.trustroots.extra));
        for (i, r) in self.retrievers.iter().enumerate() {
            line(
                &format!("retrievers[{i}]"),
                crate::retriever::describe_entry(r),
            );
        }
        let d = |d: Duration| humantime::format_duration(d).to_string();
        line("crl.next_update", d(self.crl.next_update));
        line("crl.refresh", d(self.crl.refresh));
        line("crl.poll", d(self.crl.poll));
        line(
            "ldap",
            self.ldap
                .as_ref()
                .map(|l| l.describe())
                .unwrap_or_else(|| "(none: passwords are checked against the store only)".into()),
        );
        out
    }
}

fn paths(list: &[PathBuf]) -> String {
    if list.is_empty() {
        return "(none)".into();
    }
    list.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Makes a relative SQLite path absolute against `base`; other URLs pass through.
fn absolute_store_url(url: &str, base: &Path) -> String {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"));
    match rest {
        Some(path) if !path.starts_with('/') => {
            format!("sqlite://{}", base.join(path).display())
        }
        Some(path) => format!("sqlite://{path}"),
        None if !url.contains("://") => format!("sqlite://{}", base.join(url).display()),
        None => url.to_string(),
    }
}

/// Hides a password in a database URL.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((creds, host)) = rest.split_once('@')
        && let Some((user, _)) = creds.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("onlineca.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    const MINIMAL: &str = "[tls]\ncert = \"tls/server.pem\"\nkey = \"tls/server.key\"\n[ca]\ncert = \"ca/issuing.pem\"\nkey = \"ca/issuing.key\"\n";

    #[test]
    fn audit_paths_are_relative_to_the_file_and_dash_is_standard_output() {
        let d = tempfile::tempdir().unwrap();
        let load = |audit: &str| Config::load(&write(d.path(), &format!("{MINIMAL}{audit}")));
        assert!(load("").unwrap().audit.is_none());
        let cfg = load("[audit]\npath = \"log/audit.jsonl\"\n").unwrap();
        let a = cfg.audit.unwrap();
        assert_eq!(
            a.path,
            std::path::absolute(d.path())
                .unwrap()
                .join("log/audit.jsonl")
        );
        assert!(a.required && !a.fsync);
        let a = load("[audit]\npath = \"-\"\nrequired = false\n")
            .unwrap()
            .audit
            .unwrap();
        assert!(a.is_stdout() && !a.required);
        let e = load("[audit]\npath = \"\"\n").unwrap_err().to_string();
        assert!(e.contains("audit.path"), "{e}");
    }

    #[test]
    fn minimal_file_gets_defaults_and_absolute_paths() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config::load(&write(d.path(), MINIMAL)).unwrap();
        assert_eq!(cfg.server.prefix, "/onlineca");
        assert_eq!(cfg.server.max_body, 65536);
        assert!(cfg.tls.cert.is_absolute());
        assert_eq!(
            cfg.store.url,
            format!(
                "sqlite://{}/onlineca.db",
                std::path::absolute(d.path()).unwrap().display()
            )
        );
        assert_eq!(cfg.trustroots.format, Encoding::Fields);
        assert!(cfg.auth.retriever && cfg.auth.renewal && cfg.auth.password);
        assert!(cfg.retrievers.is_empty());
    }

    #[test]
    fn retrievers_are_checked_and_named() {
        let d = tempfile::tempdir().unwrap();
        let entry = |users: &str| {
            format!(
                "{MINIMAL}[auth]\nretriever_anchors = [\"a.pem\"]\n[[retrievers]]\nsubject = \"/O=X/CN=p\"\nusers = {users}\nlifetime = \"1h\"\n"
            )
        };
        let cfg = Config::load(&write(d.path(), &entry("[\"*\"]"))).unwrap();
        assert_eq!(cfg.retrievers[0].lifetime, Some(Duration::from_secs(3600)));
        assert!(cfg.auth.retriever_anchors[0].is_absolute());
        let e = Config::load(&write(d.path(), &entry("[\"a\", \"b/c\"]")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("retrievers: entry 1 (\"/O=X/CN=p\"): users: pattern \"b/c\""),
            "{e}"
        );
        let text = format!("{MINIMAL}[[retrievers]]\nsubject = \"/O=X/CN=p\"\nusers = [\"*\"]\n");
        let e = Config::load(&write(d.path(), &text))
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth.retriever_anchors"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let d = tempfile::tempdir().unwrap();
        let text = format!("{MINIMAL}[server]\nlisten = \"127.0.0.1:1\"\nlsiten = 3\n");
        let e = Config::load(&write(d.path(), &text))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lsiten"), "{e}");
        assert!(e.contains("onlineca.toml"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let d = tempfile::tempdir().unwrap();
        for (extra, key) in [
            ("[server]\nprefix = \"onlineca\"\n", "server.prefix"),
            ("[certificate]\nsubject = \"/O=X\"\n", "certificate.subject"),
            ("[certificate]\nlifetime = \"twelve\"\n", "lifetime"),
            (
                "[certificate]\nlifetime = \"5000years\"\n",
                "certificate.lifetime",
            ),
            ("[trustroots]\nformat = \"xml\"\n", "format"),
            ("[crl]\nrefresh = \"2h\"\n", "crl.refresh"),
            ("[crl]\npoll = \"1ms\"\n", "crl.poll"),
        ] {
            let e = Config::load(&write(d.path(), &format!("{MINIMAL}{extra}")))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{extra}: {e}");
        }
    }

    #[test]
    fn a_key_on_a_token_needs_a_module_and_a_pin_file() {
        let d = tempfile::tempdir().unwrap();
        let with = |ca: &str| {
            let text = MINIMAL.replace(
                "key = \"ca/issuing.key\"\n",
                &format!("key = \"pkcs11:token=ca;object=issuing\"\n{ca}"),
            );
            Config::load(&write(d.path(), &text))
        };
        let cfg = with("pkcs11_module = \"/usr/lib/softhsm/libsofthsm2.so\"\npin_file = \"pin\"\n")
            .unwrap();
        // The URI is kept as written; the PIN file is relative to the configuration.
        assert_eq!(cfg.ca.pkcs11_uri(), Some("pkcs11:token=ca;object=issuing"));
        let base = std::path::absolute(d.path()).unwrap();
        assert_eq!(cfg.ca.pin_file, Some(base.join("pin")));
        let summary = cfg.summary();
        assert!(
            summary.contains("pkcs11:token=ca;object=issuing"),
            "{summary}"
        );
        assert!(
            summary.contains("/usr/lib/softhsm/libsofthsm2.so"),
            "{summary}"
        );

        let e = with("pin_file = \"pin\"\n").unwrap_err().to_string();
        assert!(e.contains("ca.pkcs11_module"), "{e}");
        let e = with("pkcs11_module = \"/m.so\"\n").unwrap_err().to_string();
        assert!(e.contains("ca.pin_file"), "{e}");
        let text = MINIMAL.replace(
            "key = \"ca/issuing.key\"\n",
            "key = \"pkcs11:token=ca;object=k?pin-value=1234\"\npkcs11_module = \"/m.so\"\npin_file = \"pin\"\n",
        );
        let e = Config::load(&write(d.path(), &text))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ca.key") && e.contains("pin_file"), "{e}");
        // A key file with token settings is a mistake worth naming.
        let text = format!("{MINIMAL}pin_file = \"pin\"\n");
        let e = Config::load(&write(d.path(), &text))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ca.pin_file"), "{e}");
    }

    #[test]
    fn proxy_protocol_networks_are_checked_and_shown() {
        let d = tempfile::tempdir().unwrap();
        let load = |list: &str| {
            let text = format!("[server]\nproxy_protocol_from = {list}\n{MINIMAL}");
            Config::load(&write(d.path(), &text))
        };
        let cfg = Config::load(&write(d.path(), MINIMAL)).unwrap();
        assert!(cfg.server.trusted_proxies.is_empty());
        assert!(cfg.summary().contains("server.proxy_protocol_from   (none"));
        let cfg = load(r#"["10.0.0.5/32", "::1/128"]"#).unwrap();
        assert!(
            cfg.server
                .trusted_proxies
                .contains("10.0.0.5".parse().unwrap())
        );
        assert!(
            !cfg.server
                .trusted_proxies
                .contains("10.0.0.6".parse().unwrap())
        );
        let summary = cfg.summary();
        assert!(
            summary.contains("server.proxy_protocol_from   10.0.0.5/32, ::1/128 (a PROXY"),
            "{summary}"
        );
        let e = load(r#"["10.0.0.5/32", "10.0.0/8"]"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("server.proxy_protocol_from") && e.contains("\"10.0.0/8\""),
            "{e}"
        );
    }

    #[test]
    fn store_urls() {
        let b = Path::new("/etc/onlineca");
        assert_eq!(
            absolute_store_url("sqlite://x.db", b),
            "sqlite:///etc/onlineca/x.db"
        );
        assert_eq!(
            absolute_store_url("sqlite:///var/x.db", b),
            "sqlite:///var/x.db"
        );
        assert_eq!(absolute_store_url("x.db", b), "sqlite:///etc/onlineca/x.db");
        assert_eq!(
            absolute_store_url("postgres://u@h/db", b),
            "postgres://u@h/db"
        );
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
    }
}
