//! `onlineca init`: create a CA, its TLS certificate, its configuration and store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use onlineca_core::IssuingCa;
use onlineca_core::keyfile;
use onlineca_core::pki::{self, KeyType, PkiOptions};
use rcgen::KeyPair;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::files::{create_dir, create_new};

/// Options of `onlineca init`.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// Directory to create the CA in (created if missing; must not hold a CA already).
    #[arg(long)]
    pub dir: PathBuf,
    /// Host names and IP addresses of the server's TLS certificate (repeatable).
    #[arg(long = "hostname", default_values = ["localhost", "127.0.0.1"])]
    pub hostnames: Vec<String>,
    /// Key algorithm: p256, p384, ed25519, rsa2048, rsa3072 or rsa4096.
    #[arg(long, default_value = "p256")]
    pub key_type: KeyType,
    /// Organisation name, in the CA's and the users' subjects.
    #[arg(long, default_value = "onlineca")]
    pub org: String,
    /// Name of the CA: the root's CN is "<name> Root CA", the issuing CA's "<name> Issuing
    /// CA". Default: the organisation and a random suffix ("onlineca 5f3a9c1e"), so
    /// that two CAs never share a subject (and a relying party's `<hash>.0` file).
    #[arg(long)]
    pub ca_name: Option<String>,
    /// Root CA lifetime.
    #[arg(long, default_value = "20y", value_parser = humantime::parse_duration)]
    pub root_lifetime: Duration,
    /// Issuing CA lifetime.
    #[arg(long, default_value = "5y", value_parser = humantime::parse_duration)]
    pub ca_lifetime: Duration,
    /// TLS server certificate lifetime.
    #[arg(long, default_value = "397days", value_parser = humantime::parse_duration)]
    pub tls_lifetime: Duration,
    /// Lifetime of the user certificates the CA will issue.
    #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
    pub cert_lifetime: Duration,
    /// Address the service will listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: std::net::SocketAddr,
    /// Use this existing CA certificate (PEM) as the issuing CA instead of creating one.
    #[arg(long, requires = "import_ca_key")]
    pub import_ca_cert: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of the imported CA.
    #[arg(long, requires = "import_ca_cert")]
    pub import_ca_key: Option<PathBuf>,
    /// PEM certificates above the imported CA (intermediates, root).
    #[arg(long, requires = "import_ca_cert")]
    pub import_ca_chain: Option<PathBuf>,
    /// Write the root and issuing CA keys encrypted (PKCS#8, PBES2: PBKDF2-SHA256 and
    /// AES-256-CBC) with the passphrase from --passphrase-file, or asked twice.
    #[arg(long, conflicts_with = "issuing_key_pkcs11")]
    pub encrypt_key: bool,
    #[command(flatten)]
    pub passphrase: crate::passphrase::PassphraseArgs,
    /// Make the issuing CA's key on a PKCS#11 token, named by this RFC 7512 URI
    /// (pkcs11:token=LABEL;object=KEY-LABEL), instead of in ca/issuing.key.
    #[arg(long, requires_all = ["pkcs11_module", "pin_file"], conflicts_with = "import_ca_cert")]
    pub issuing_key_pkcs11: Option<String>,
    /// The token's PKCS#11 module (its vendor's shared library).
    #[arg(long, requires = "issuing_key_pkcs11")]
    pub pkcs11_module: Option<PathBuf>,
    /// The file whose first line is the token's user PIN (mode 0600).
    #[arg(long, requires = "issuing_key_pkcs11")]
    pub pin_file: Option<PathBuf>,
}

impl InitArgs {
    /// The options `init --dir DIR` would get with every default, as `serve --dir`
    /// uses on first run.
    pub fn with_defaults(dir: &Path) -> Result<Self> {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            args: InitArgs,
        }
        let dir = dir.to_str().context("the directory name is not UTF-8")?;
        Ok(<Only as clap::Parser>::try_parse_from(["init", "--dir", dir])?.args)
    }
}

/// Where `init` put things, relative to the CA directory.
pub const CONFIG_FILE: &str = "onlineca.toml";

/// Creates the CA. Refuses to touch a directory that already holds one.
pub async fn run(args: &InitArgs) -> Result<()> {
    let dir = &args.dir;
    for existing in [
        CONFIG_FILE,
        "ca/issuing.key",
        "ca/issuing.pem",
        "onlineca.db",
    ] {
        if dir.join(existing).exists() {
            bail!(
                "{} already exists: refusing to overwrite an existing CA",
                dir.join(existing).display()
            );
        }
    }
    // Asked before anything is created, so that a mistyped passphrase leaves nothing.
    let encrypt = match args.encrypt_key {
        true => Some(args.passphrase.new_passphrase()?),
        false => None,
    };
    let key_file = |key: &KeyPair| -> Result<Zeroizing<String>> {
        Ok(match &encrypt {
            Some(p) => keyfile::encrypt(key, p)?,
            None => Zeroizing::new(key.serialize_pem()),
        })
    };
    let token = crate::init_token::TokenArgs::from_args(args)?;
    create_dir(dir, 0o755)?;
    create_dir(&dir.join("ca"), 0o700)?;
    create_dir(&dir.join("tls"), 0o700)?;

    let opts = PkiOptions {
        key_type: args.key_type,
        org: args.org.clone(),
        ca_name: match &args.ca_name {
            Some(n) => n.clone(),
            None => default_ca_name(&args.org)?,
        },
        hostnames: args.hostnames.clone(),
        root_lifetime: args.root_lifetime,
        ca_lifetime: args.ca_lifetime,
        tls_lifetime: args.tls_lifetime,
        now: OffsetDateTime::now_utc(),
    };
    let chain_written = match (&args.import_ca_cert, &args.import_ca_key) {
        (Some(cert), Some(key)) => {
            let key_pair = args.passphrase.load_key(key)?;
            let written = key_file(&key_pair)?;
            let imported = Import {
                cert,
                key: &key_pair,
                key_file: &written,
                chain: args.import_ca_chain.as_deref(),
            };
            import(dir, &opts, &imported)?
        }
        // The issuing key on a token: everything else as below, but no key file.
        _ if token.is_some() => {
            if let Some(t) = &token {
                t.create(dir, &opts)?;
            }
            true
        }
        _ => {
            let created = pki::create(&opts).context("creating the CA")?;
            create_new(
                &dir.join("ca/root.pem"),
                created.root.cert_pem.as_bytes(),
                0o644,
            )?;
            let root_key = KeyPair::from_pem(&created.root.key_pem)?;
            create_new(
                &dir.join("ca/root.key"),
                key_file(&root_key)?.as_bytes(),
                0o600,
            )?;
            create_new(
                &dir.join("ca/issuing.pem"),
                created.issuing.cert_pem.as_bytes(),
                0o644,
            )?;
            let issuing_key = KeyPair::from_pem(&created.issuing.key_pem)?;
            create_new(
                &dir.join("ca/issuing.key"),
                key_file(&issuing_key)?.as_bytes(),
                0o600,
            )?;
            create_new(
                &dir.join("tls/server.pem"),
                created.tls.cert_pem.as_bytes(),
                0o644,
            )?;
            create_new(
                &dir.join("tls/server.key"),
                created.tls.key_pem.as_bytes(),
                0o600,
            )?;
            true
        }
    };
    let mut config = config_text(args, chain_written);
    if let Some(t) = &token {
        config = t.configure(&config);
    }
    create_new(&dir.join(CONFIG_FILE), config.as_bytes(), 0o644)?;

    // Open the store once so that it exists, with its schema, before the first serve.
    let cfg = onlineca_server::Config::load(&dir.join(CONFIG_FILE))?;
    let store = onlineca_store::open(&cfg.store.url).await?;
    store.close().await;
    let subject = if token.is_some() {
        crate::init_token::issuing_subject(dir)?
    } else {
        // Read back as serve will read it: the key written opens with the passphrase.
        let key = keyfile::load(
            &std::fs::read_to_string(dir.join("ca/issuing.key"))?,
            encrypt.as_ref(),
        )?;
        let cert = onlineca_core::issuer::pem_certificates(&std::fs::read_to_string(
            dir.join("ca/issuing.pem"),
        )?)
        .map_err(anyhow::Error::msg)?;
        let ca = IssuingCa::new(
            cert.into_iter()
                .next()
                .context("no issuing CA certificate")?,
            key,
            &[],
        )?;
        ca.subject_oneline().to_string()
    };
    eprintln!(
        "created {} in {}\n  issuing CA: {}\n  configuration: {}",
        if args.import_ca_cert.is_some() {
            "a CA (imported)"
        } else {
            "a CA"
        },
        dir.display(),
        subject,
        dir.join(CONFIG_FILE).display()
    );
    if args.import_ca_cert.is_none() {
        eprintln!(
            "  the root key is {}: keep it offline once the CA runs",
            dir.join("ca/root.key").display()
        );
    }
    if encrypt.is_some() {
        eprintln!(
            "  the CA keys are encrypted: serve with --passphrase-file FILE (or \
             ONLINECA_PASSPHRASE_FILE), or on a terminal to be asked"
        );
    }
    Ok(())
}

/// The organisation and eight random hex digits: distinct for every `init`, so the
/// subject hashes that name trust-root files (`<hash>.0`) of two CAs never collide.
fn default_ca_name(org: &str) -> Result<String> {
    // A fresh serial's bytes after the first (whose top bits are fixed) are random.
    let random = onlineca_core::serial::random_serial()
        .map_err(|_| anyhow::anyhow!("no randomness for the CA's name"))?;
    let suffix: String = random[1..5].iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{org} {suffix}"))
}

/// An issuing CA made elsewhere, to import.
struct Import<'a> {
    /// Its certificate file.
    cert: &'a Path,
    /// Its key, decrypted.
    key: &'a KeyPair,
    /// What to write as `ca/issuing.key` (encrypted or not).
    key_file: &'a str,
    /// The certificates above it.
    chain: Option<&'a Path>,
}

fn import(dir: &Path, opts: &PkiOptions, imported: &Import<'_>) -> Result<bool> {
    let (cert, chain) = (imported.cert, imported.chain);
    let cert_pem =
        std::fs::read_to_string(cert).with_context(|| format!("cannot read {}", cert.display()))?;
    let key_pem = Zeroizing::new(imported.key.serialize_pem());
    let chain_pem = match chain {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?
        }
        None => String::new(),
    };
    let ca = IssuingCa::from_pem(&cert_pem, &key_pem, &chain_pem)
        .with_context(|| format!("cannot use {} as the issuing CA", cert.display()))?;
    if OffsetDateTime::now_utc() >= ca.not_after() {
        bail!("the imported CA certificate expired at {}", ca.not_after());
    }
    let tls =
        pki::create_tls_with(opts, &cert_pem, &key_pem).context("creating the TLS certificate")?;
    // rcgen rebuilds the issuer name; make sure it came out byte-identical, or the TLS
    // certificate would not chain to the CA clients are told to trust.
    let tls_der =
        onlineca_core::issuer::pem_certificates(&tls.cert_pem).map_err(anyhow::Error::msg)?;
    let issuer_ok = tls_der.first().is_some_and(|d| {
        use x509_parser::prelude::FromDer;
        x509_parser::certificate::X509Certificate::from_der(d)
            .map(|(_, c)| c.issuer().as_raw() == ca.subject_der())
            .unwrap_or(false)
    });
    if !issuer_ok {
        bail!(
            "the imported CA's subject name cannot be reproduced exactly for the TLS certificate (repeated or multi-valued attributes); create the TLS certificate elsewhere and set [tls] in the configuration"
        );
    }
    create_new(&dir.join("ca/issuing.pem"), cert_pem.as_bytes(), 0o644)?;
    create_new(
        &dir.join("ca/issuing.key"),
        imported.key_file.as_bytes(),
        0o600,
    )?;
    if chain.is_some() {
        create_new(&dir.join("ca/root.pem"), chain_pem.as_bytes(), 0o644)?;
    }
    create_new(&dir.join("tls/server.pem"), tls.cert_pem.as_bytes(), 0o644)?;
    create_new(&dir.join("tls/server.key"), tls.key_pem.as_bytes(), 0o600)?;
    Ok(chain.is_some())
}

fn config_text(args: &InitArgs, chain: bool) -> String {
    let lifetime = humantime::format_duration(args.cert_lifetime);
    let org = args.org.replace(['/', '"', '\\', '+', '='], "-");
    let chain_line = if chain {
        "chain = \"ca/root.pem\"  # certificates above the issuing CA, published as trust roots"
    } else {
        "# chain = \"ca/root.pem\"  # certificates above the issuing CA, if any"
    };
    format!(
        r#"# onlineca configuration, written by `onlineca init`.
# Paths are relative to this file. Check it with: onlineca config check --config <this file>
# Durations are written like "12h", "30m", "90s", "7days".

[server]
listen = "{listen}"          # address:port of the HTTPS listener
prefix = "/onlineca"               # mount prefix: POST {{prefix}}/certificate/, GET {{prefix}}/trustroots/ and /crl
max_body = 65536                   # largest request body accepted, bytes
request_timeout = "30s"            # longest a request may take, upload included
handshake_timeout = "10s"          # longest a TLS handshake (and request headers) may take
idle_timeout = "60s"               # a connection with no request in flight this long is closed
shutdown_grace = "30s"             # time given to requests in flight on SIGINT/SIGTERM
max_connections = 1024             # connections served at once
max_connections_per_address = 64  # of those, from one client address (an IPv6 /64)
rate_limit = 120                   # certificate requests a minute from one address (0: no limit)...
rate_burst = 30                    # ...after a burst of this many; beyond: 429 with Retry-After
# proxy_protocol_from = []         # TCP load balancers (CIDR) sending a PROXY header with the client's address

[tls]
cert = "tls/server.pem"            # the server's certificate (then any intermediates)
key = "tls/server.key"

[ca]
cert = "ca/issuing.pem"            # the CA that signs user certificates
key = "ca/issuing.key"             # must be mode 0600 (or stricter): serve refuses otherwise...
allow_insecure_key_permissions = false   # ...unless this is true
{chain_line}

[certificate]
subject = "/O={org}/OU=Users/CN={{username}}"   # {{username}} is the authenticated user
lifetime = "{lifetime}"                   # lifetime of issued certificates
backdate = "5m"                    # notBefore this far in the past, for skewed clocks
# crl_url = "https://ca.example.org/onlineca/crl"   # CRL distribution point written into certificates

[est]
# EST (RFC 7030) on the same listener, at /.well-known/est/: cacerts, simpleenroll
# (password or a retriever, as above), simplereenroll (the current certificate),
# csrattrs. Any EST client (strongSwan's pki, devices) enrolls with no onlineca software.
enabled = true

# [server_certificate]              # `onlineca cert sign`: certificates for the services
# lifetime = "90days"              # that accept this CA's users (never issued over HTTP)
# allow_domains = ["*.example.org"]   # names a CSR may bring with --use-csr-names

[auth]
password = true                    # HTTP Basic username + password
renewal = true                     # a valid certificate of this CA renews itself (mutual TLS, no password)
retriever = true                   # services listed in [[retrievers]] may ask on their users' behalf
retriever_anchors = []             # PEM files of the CAs retriever certificates must chain to
retriever_crls = []                # CRL files (PEM or DER) of those CAs, each signed by an anchor;
                                   # when set, every retriever certificate must be covered by a
                                   # current CRL and not on it; changed files are re-read within
                                   # seconds, a file that fails to re-read keeps the CRL before it
realm = "onlineca"                 # realm in WWW-Authenticate
max_failures = 5                   # failed passwords before a username is locked out...
lockout = "5m"                     # ...for this long after the last failure
credential_cache = "5m"            # a verified password is accepted again without argon2 for this
                                   # long, while the store holds the same hash ("0s": off)
credential_cache_size = 10000      # usernames kept in that cache at most
password_threads = 0               # argon2 threads (19 MiB each); 0: one per core
password_queue = 256               # checks waiting for a thread; beyond, 503 + Retry-After

[store]
url = "sqlite://onlineca.db"       # or postgres://user@host/db when instances share the work
# auto_migrate = true              # upgrade an older schema on opening (default: yes for SQLite,
                                   # no for PostgreSQL: run `onlineca store migrate` once)
# PostgreSQL over TLS (docs/deploy.md); each overrides the URL's own parameter:
# sslmode = "verify-full"          # disable, prefer, require, verify-ca, verify-full
# sslrootcert = "pg-ca.pem"        # the CA of the database server's certificate
# sslcert = "pg-client.pem"        # a client certificate, if the server asks for one...
# sslkey = "pg-client.key"         # ...and its key
# password_file = "db.pass"        # first line; else the URL's, ONLINECA_STORE_PASSWORD or PGPASSWORD

[trustroots]
format = "fields"                  # "fields" (TRUSTED_CERTS + FILEDATA_, the seed's) or "files" (deployed clients')
extra = []                         # more PEM files of CA certificates to publish
                                   # (the current CRL is published here too, as <hash>.r0)

[crl]
# GET {{prefix}}/crl serves the issuing CA's CRL (DER; ?format=pem for PEM), from memory.
# Revoke with `onlineca cert revoke`; servers notice within `poll` and sign a new CRL
# with a higher number (shared by every instance on the same store).
next_update = "1h"                 # nextUpdate written into each CRL: this long after thisUpdate
refresh = "30m"                    # a new CRL at least this often (shorter than next_update)
poll = "5s"                        # how often the store is asked whether anything was revoked

# Trusted retrievers: a portal that authenticated its users itself presents its own
# client certificate (chaining to [auth] retriever_anchors) and names the user as the
# HTTP Basic username (the password is not checked) or the form field "username".
# One block per retriever:
# [[retrievers]]
# subject = "/O=Example/OU=Portals/CN=portal.example.org"   # compared on the parsed name
# users = ["alice", "lab-*"]         # exact names and globs (* and ?), or ["*"] for all
# lifetime = "1h"                    # optional: shorter certificates for this retriever

[audit]
# One JSON line per issuance, refused certificate request, revocation, user change,
# CRL publication, and server start and stop (docs/operations.md). The CLI's
# commands append to the same file. Never a password, a key or a token.
path = "audit.jsonl"               # relative to this file; "-" for standard output
required = true                    # an issuance that cannot be recorded answers 503 (and a
                                   # CLI command that cannot record changes nothing)
fsync = false                      # true: each record reaches the disk before the answer

# The admin listener (docs/operations.md): plain HTTP, unauthenticated, serving only
# GET /metrics (Prometheus), /healthz (the process answers) and /readyz (the store
# answers). Off unless set; keep it on loopback or a private network (`onlineca
# config check` warns otherwise). Nothing of it is reachable on the public listener.
# [admin]
# listen = "127.0.0.1:9100"

# An LDAP directory as a second password source (docs/directory.md): a username with
# no local password is checked by binding to the directory as that user. Off unless
# this section is present. `onlineca config check` binds and reports the directory;
# `onlineca user test NAME` checks one user's password without issuing anything.
# [ldap]
# url = "ldaps://ldap.example.org"   # or ldap://... with starttls = true
# starttls = false
# ca = "ldap-ca.pem"                 # PEM: the CA of the directory's TLS certificate
# bind_dn = "uid={{username}},ou=people,dc=example,dc=org"   # direct bind; AD: "{{username}}@example.org"
# # ... or search, then bind as the entry found (not both):
# # search_base = "ou=people,dc=example,dc=org"
# # search_filter = "(uid={{username}})"                     # AD: "(sAMAccountName={{username}})"
# # search_bind_dn = "cn=onlineca,ou=services,dc=example,dc=org"
# # search_bind_password_file = "ldap-bind.pw"              # first line; keep it mode 600
# # require_group = "cn=ca-users,ou=groups,dc=example,dc=org"  # member, uniqueMember or memberOf
# # insecure = false                 # true allows plain ldap:// without StartTLS
# # timeout = "5s"                   # one directory check at most; then 503 with Retry-After
# # max_connections = 8              # directory checks and pooled connections at once
"#,
        listen = args.listen,
    )
}
