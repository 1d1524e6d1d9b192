//! Everything a request handler needs, loaded once at start-up.

use std::sync::Arc;

use onlineca_core::issuer::pem_certificates;
use onlineca_core::trustroots::{self, CaEntry, Encoding, TrustBundle};
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

/// Checks that only its owner may use the CA key file at `path`: a key others can
/// read lets them issue certificates. Allowed anyway with `allow`, loudly. A file
/// that cannot be inspected is left to the read that follows, which names it.
fn check_key_permissions(path: &std::path::Path, allow: bool) -> Result<(), StartError> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_file() || mode & 0o077 == 0 {
        return Ok(());
    }
    if allow {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:04o}"),
            "the CA key can be read or changed by users other than its owner; \
             allowed by [ca] allow_insecure_key_permissions"
        );
        return Ok(());
    }
    Err(StartError::KeyPermissions {
        path: path.to_path_buf(),
        mode,
    })
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
        let chain_pem = match &config.ca.chain {
            Some(p) => read(p)?,
            None => String::new(),
        };
        let ca = if let Some(uri) = config.ca.pkcs11_uri() {
            crate::ca_token::load(&config.ca, uri, &chain_pem)?
        } else {
            check_key_permissions(&config.ca.key, config.ca.allow_insecure_key_permissions)?;
            IssuingCa::from_pem(&read(&config.ca.cert)?, &read(&config.ca.key)?, &chain_pem)
                .map_err(|error| StartError::Ca {
                    path: config.ca.cert.clone(),
                    error,
                })?
        };
        let template = config
            .subject_template()
            .map_err(|e| StartError::Invalid(e.to_string()))?;
        let mut metrics = crate::metrics::Metrics::new();
        let bundle = trust_bundle(&config, &ca, &chain_pem, &template, &metrics)?;
        let issuer_hash = trustroots::cert_subject_hash(ca.cert_der())
            .map_err(|e| StartError::Invalid(format!("issuing CA: {e}")))?;
        let profile = Profile {
            template,
            lifetime: config.certificate.lifetime,
            backdate: config.certificate.backdate,
            crl_url: config.certificate.crl_url.clone(),
        };
        let client_auth = ClientAuth {
            retrievers: Retrievers::load(&config)?,
            renewal: Renewal::new(config.auth.renewal, ca.cert_der(), ca.subject_der())?,
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
            crl: CrlCell::new(bundle, issuer_hash),
            bodies: tokio::sync::Semaphore::new(BODIES_IN_FLIGHT),
            config,
            ca: Arc::new(ca),
            profile,
            store,
        })
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
fn trust_bundle(
    config: &Config,
    ca: &IssuingCa,
    chain_pem: &str,
    template: &onlineca_core::SubjectTemplate,
    metrics: &crate::metrics::Metrics,
) -> Result<TrustBundle, StartError> {
    let pems = |text: &str, what: &str| {
        pem_certificates(text).map_err(|e| StartError::Invalid(format!("{what}: {e}")))
    };
    let tls_chain = pems(&read(&config.tls.cert)?, "TLS certificate file")?;
    let mut known: Vec<Vec<u8>> = vec![ca.cert_der().to_vec()];
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
        if der.as_slice() == ca.cert_der() {
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
    TrustBundle::build(&entries).map_err(|e| StartError::Invalid(format!("trust roots: {e}")))
}
