//! Everything a request handler needs, loaded once at start-up.

use std::sync::Arc;

use onlineca_core::issuer::pem_certificates;
use onlineca_core::trustroots::{self, CaEntry, Encoding};
use onlineca_core::{IssuingCa, Profile};
use onlineca_store::Store;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::auth::PasswordCheck;
use crate::config::Config;
use crate::credentials::ClientAuth;
use crate::crl::CrlCell;
use crate::renewal::Renewal;
use crate::retriever::Retrievers;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A file named in the configuration could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why (shown in the message, so not a `source`: `{:#}` would print it twice).
        error: std::io::Error,
    },
    /// The issuing CA is unusable.
    #[error("{path}: {error}")]
    Ca {
        /// The CA certificate file.
        path: std::path::PathBuf,
        /// Why (shown in the message, so not a `source`).
        error: onlineca_core::IssuerError,
    },
    /// The CA key file can be read or changed by its group or others, and the
    /// configuration does not allow that.
    #[error(
        "{path} has mode {mode:04o}: users other than its owner can read or change the \
         issuing CA's private key; run `chmod 600 {path}` (or set [ca] \
         allow_insecure_key_permissions = true to accept this)",
        path = .path.display()
    )]
    KeyPermissions {
        /// The key file.
        path: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The CA key file cannot be used: encrypted without a passphrase, a wrong
    /// passphrase, or not a key.
    #[error("{}: {}", path.display(), key_problem(error))]
    Key {
        /// The key file.
        path: std::path::PathBuf,
        /// Why.
        error: onlineca_core::keyfile::KeyFileError,
    },
    /// A certificate or key is unusable.
    #[error("{0}")]
    Invalid(String),
    /// The issuing CA's key on a PKCS#11 token cannot be used.
    #[error("{0}")]
    Token(crate::ca_token::CaTokenError),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(onlineca_store::StoreError),
    /// The listening address could not be bound (in use, not ours, no permission).
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why (shown in the message, so not a `source`).
        error: std::io::Error,
    },
    /// The audit log is required and cannot be written.
    #[error("{0}; fix it, or set [audit] required = false to serve without it")]
    Audit(crate::audit::AuditError),
    /// The `[ldap]` settings name a file that cannot be used.
    #[error("{0}")]
    Directory(#[from] crate::ldap::DirectoryConfigError),
    /// Another I/O failure while setting up.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What went wrong with a key file, and which flag fixes it (for every command
/// that opens a CA key).
pub fn key_problem(e: &onlineca_core::keyfile::KeyFileError) -> String {
    use onlineca_core::keyfile::KeyFileError as E;
    match e {
        E::PassphraseNeeded => "the key is encrypted: give its passphrase with \
             --passphrase-file FILE (or ONLINECA_PASSPHRASE_FILE=FILE, or run on a terminal \
             to be asked)"
            .into(),
        E::WrongPassphrase => "cannot decrypt the key: wrong passphrase (check the file given \
             with --passphrase-file or ONLINECA_PASSPHRASE_FILE)"
            .into(),
        other => other.to_string(),
    }
}

// By hand rather than `#[from]`, which would also make the store error a `source`
// and print it twice in a chain of causes.
impl From<onlineca_store::StoreError> for StartError {
    fn from(e: onlineca_store::StoreError) -> Self {
        StartError::Store(e)
    }
}

/// Shared, read-only (or internally synchronised) service state.
pub struct AppState {
    /// The configuration in force.
    pub config: Config,
    /// The CA that signs user certificates (shared with the threads that sign on a
    /// token).
    pub ca: Arc<IssuingCa>,
    /// Issuing CAs replaced by a rotation (`[[ca.retired]]`): they sign only their
    /// own CRLs.
    pub retired: Vec<IssuingCa>,
    /// The certificates EST's `cacerts` answers with (DER), gathered at start-up.
    pub est_cacerts: Vec<Vec<u8>>,
    /// The certificate profile.
    pub profile: Profile,
    /// Users and issued certificates.
    pub store: Arc<dyn Store>,
    /// The password check: lockout, credential cache, argon2 workers.
    pub passwords: PasswordCheck,
    /// Per-address limit of certificate requests, if configured.
    pub rate_limiter: Option<crate::ratelimit::RateLimiter>,
    /// Retrievers and renewal: what client certificates are checked against.
    pub client_auth: ClientAuth,
    /// The published CRL and the trust-roots responses that carry it, rebuilt
    /// together when a new CRL is signed.
    pub crl: CrlCell,
    /// Request bodies held in memory at once ([`BODIES_IN_FLIGHT`] of at most
    /// `[server] max_body` each); more requests wait for a slot.
    pub bodies: tokio::sync::Semaphore,
    /// Counters and histograms, served by the admin listener.
    pub metrics: crate::metrics::Metrics,
    /// The audit log (off unless `[audit]` is configured).
    pub audit: crate::audit::AuditLog,
}

/// How many request bodies may be buffered at once: 256 × 64 KiB = 16 MiB by default,
/// whatever the number of connections and streams.
pub const BODIES_IN_FLIGHT: usize = 256;

/// The permission bits of the file at `path` when users other than its owner may
/// read or change it and `allow` does not accept that (accepted: logged loudly,
/// naming `what`). A file that cannot be inspected is left to the read that
/// follows, which names it.
pub(crate) fn exposed_mode(path: &std::path::Path, allow: bool, what: &str) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_file() || mode & 0o077 == 0 {
        return None;
    }
    if allow {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:04o}"),
            "{what} can be read or changed by users other than its owner; \
             allowed by [ca] allow_insecure_key_permissions"
        );
        return None;
    }
    Some(mode)
}

/// Checks that only its owner may use the CA key file at `path`: a key others can
/// read lets them issue certificates.
fn check_key_permissions(path: &std::path::Path, allow: bool) -> Result<(), StartError> {
    match exposed_mode(path, allow, "the CA key") {
        Some(mode) => Err(StartError::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        }),
        None => Ok(()),
    }
}

/// The PEM of the certificates above the issuing CA (`[ca] chain`), or nothing.
fn chain_pem(config: &Config) -> Result<String, StartError> {
    match &config.ca.chain {
        Some(p) => read(p),
        None => Ok(String::new()),
    }
}

/// The issuing CA that signs, with its key from the token or the (decrypted) file,
/// as `serve` loads it; for commands that sign too (`cert sign`).
pub fn issuing_ca(config: &Config) -> Result<IssuingCa, StartError> {
    active_ca(config, &chain_pem(config)?)
}

fn active_ca(config: &Config, chain_pem: &str) -> Result<IssuingCa, StartError> {
    match config.ca.pkcs11_uri() {
        Some(uri) => crate::ca_token::load(&config.ca, uri, chain_pem),
        None => {
            check_key_permissions(&config.ca.key, config.ca.allow_insecure_key_permissions)?;
            load_issuing_ca(config, &config.ca.cert, &config.ca.key, chain_pem)
        }
    }
}

/// An issuing CA (the active one or a retired one): its certificate and its key,
/// decrypted with the configured passphrase when the key file is encrypted.
fn load_issuing_ca(
    config: &Config,
    cert: &std::path::Path,
    key: &std::path::Path,
    chain_pem: &str,
) -> Result<IssuingCa, StartError> {
    let ca_err = |error| StartError::Ca {
        path: cert.to_path_buf(),
        error,
    };
    let key_pair = onlineca_core::keyfile::load(&read(key)?, config.ca.passphrase.as_ref())
        .map_err(|error| StartError::Key {
            path: key.to_path_buf(),
            error,
        })?;
    let cert_der = pem_certificates(&read(cert)?)
        .map_err(|e| ca_err(onlineca_core::IssuerError::Certificate(e)))?
        .into_iter()
        .next()
        .ok_or_else(|| {
            ca_err(onlineca_core::IssuerError::Certificate(
                "no CERTIFICATE block found".into(),
            ))
        })?;
    let chain =
        pem_certificates(chain_pem).map_err(|e| ca_err(onlineca_core::IssuerError::Chain(e)))?;
    IssuingCa::new(cert_der, key_pair, &chain).map_err(ca_err)
}

/// Reads a file named by the configuration.
pub fn read(path: &std::path::Path) -> Result<String, StartError> {
    std::fs::read_to_string(path).map_err(|error| StartError::Read {
        path: path.to_path_buf(),
        error,
    })
}

impl AppState {
    /// Loads the CA, builds the profile and the trust roots, around an open store.
    pub fn load(config: Config, store: Arc<dyn Store>) -> Result<Self, StartError> {
        let chain_pem = chain_pem(&config)?;
        let allow = config.ca.allow_insecure_key_permissions;
        let ca = active_ca(&config, &chain_pem)?;
        let mut retired = Vec::new();
        for r in &config.ca.retired {
            check_key_permissions(&r.key, allow)?;
            let old = load_issuing_ca(&config, &r.cert, &r.key, &chain_pem)?;
            // Listed twice while `ca rotate` switches files: the active one wins.
            if old.key_id() != ca.key_id()
                && !retired
                    .iter()
                    .any(|o: &IssuingCa| o.key_id() == old.key_id())
            {
                retired.push(old);
            }
        }
        let template = config
            .subject_template()
            .map_err(|e| StartError::Invalid(e.to_string()))?;
        let mut metrics = crate::metrics::Metrics::new();
        let entries = trust_entries(&config, &ca, &retired, &chain_pem, &template, &metrics)?;
        let profile = Profile {
            template,
            lifetime: config.certificate.lifetime,
            backdate: config.certificate.backdate,
            crl_url: config.certificate.crl_url.clone(),
        };
        let client_auth = ClientAuth {
            retrievers: Retrievers::load(&config)?,
            renewal: Renewal::new(
                config.auth.renewal,
                std::iter::once(ca.cert_der()).chain(retired.iter().map(|r| r.cert_der())),
            )?,
        };
        let mut passwords = PasswordCheck::new(&config.auth)?.with_directory(
            config
                .ldap
                .as_ref()
                .map(crate::ldap::Directory::new)
                .transpose()?,
        );
        metrics.register_passwords(&mut passwords);
        let audit = crate::audit::AuditLog::start(config.audit.as_ref(), &metrics.audit_errors)
            .map_err(StartError::Audit)?;
        Ok(AppState {
            audit,
            client_auth,
            passwords,
            metrics,
            rate_limiter: (config.server.rate_limit > 0).then(|| {
                crate::ratelimit::RateLimiter::new(
                    config.server.rate_limit,
                    config.server.rate_burst,
                )
            }),
            crl: CrlCell::new(
                entries,
                retired.iter().map(|r| r.cert_der().to_vec()).collect(),
            )
            .map_err(StartError::Invalid)?,
            est_cacerts: crate::est::ca_certificates(&ca, &chain_pem, &retired),
            retired,
            bodies: tokio::sync::Semaphore::new(BODIES_IN_FLIGHT),
            config,
            ca: Arc::new(ca),
            profile,
            store,
        })
    }

    /// Whether `hash` (8 hex digits) is the active issuing CA's subject hash.
    pub fn crl_hash_is_active(&self, hash: &str) -> bool {
        trustroots::cert_subject_hash(self.ca.cert_der()).is_ok_and(|h| format!("{h:08x}") == hash)
    }

    /// The trust-roots response in `enc`, with the current CRL.
    pub fn trustroots(&self, enc: Encoding) -> String {
        let published = self.crl.current();
        match enc {
            Encoding::Fields => published.trustroots_fields.clone(),
            Encoding::Files => published.trustroots_files.clone(),
        }
    }
}

/// The published CAs: the issuing CA, the certificates above it, the CAs in the TLS
/// certificate file, and the operator's extras. Each CA's signing policy names what
/// it is known to sign: the users' namespace for the issuing CA, and the subjects of
/// the other known certificates for the rest.
fn trust_entries(
    config: &Config,
    ca: &IssuingCa,
    retired: &[IssuingCa],
    chain_pem: &str,
    template: &onlineca_core::SubjectTemplate,
    metrics: &crate::metrics::Metrics,
) -> Result<Vec<CaEntry>, StartError> {
    let pems = |text: &str, what: &str| {
        pem_certificates(text).map_err(|e| StartError::Invalid(format!("{what}: {e}")))
    };
    let tls_chain = pems(&read(&config.tls.cert)?, "TLS certificate file")?;
    let mut known: Vec<Vec<u8>> = vec![ca.cert_der().to_vec()];
    known.extend(retired.iter().map(|r| r.cert_der().to_vec()));
    known.extend(pems(chain_pem, "CA chain")?);
    known.extend(tls_chain.iter().cloned());
    for extra in &config.trustroots.extra {
        known.extend(pems(&read(extra)?, &extra.display().to_string())?);
    }

    let parsed: Vec<(Vec<u8>, X509Certificate<'_>)> = known
        .iter()
        .map(|der| {
            X509Certificate::from_der(der)
                .map(|(_, c)| (der.clone(), c))
                .map_err(|e| {
                    StartError::Invalid(format!("unreadable certificate in the trust bundle: {e}"))
                })
        })
        .collect::<Result<_, _>>()?;
    let user_namespace = trustroots::namespace(&template.fixed_prefix());

    let mut entries = Vec::new();
    for (der, cert) in &parsed {
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        if !is_ca {
            continue;
        }
        let mut cond: Vec<String> = Vec::new();
        let issues_users = der.as_slice() == ca.cert_der()
            || retired.iter().any(|r| r.cert_der() == der.as_slice());
        if issues_users {
            cond.push(user_namespace.clone());
        }
        for (other_der, other) in &parsed {
            if other_der != der && other.issuer().as_raw() == cert.subject().as_raw() {
                let s = trustroots::oneline(other.subject());
                if !cond.contains(&s) {
                    cond.push(s);
                }
            }
        }
        if cond.is_empty() {
            cond.push("*".into());
        }
        metrics.ca_not_after(
            &trustroots::oneline(cert.subject()),
            cert.validity().not_after.timestamp(),
        );
        entries.push(CaEntry {
            cert_der: der.clone(),
            cond_subjects: cond,
        });
    }
    Ok(entries)
}
