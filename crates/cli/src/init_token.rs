//! `onlineca init --issuing-key-pkcs11 URI`: the issuing CA's key pair is made on a
//! PKCS#11 token and never leaves it; the root (a local file, as always) certifies
//! its public half, and the configuration names the key by its URI.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use onlineca_core::IssuingCa;
use onlineca_core::pki::{self, PkiOptions};
use onlineca_pkcs11::{Module, Pin, Pkcs11Uri};

use crate::files::create_new;
use crate::init::InitArgs;

/// The token settings of `init`, checked before anything is made.
pub struct TokenArgs {
    uri: Pkcs11Uri,
    module: PathBuf,
    pin_file: PathBuf,
}

impl TokenArgs {
    /// The token settings of `args`, if `--issuing-key-pkcs11` is given.
    pub fn from_args(args: &InitArgs) -> Result<Option<TokenArgs>> {
        let Some(uri) = &args.issuing_key_pkcs11 else {
            return Ok(None);
        };
        let uri = Pkcs11Uri::parse(uri).context("--issuing-key-pkcs11")?;
        if uri.object.is_none() {
            bail!("--issuing-key-pkcs11 {uri}: add object=LABEL, the label the new key gets");
        }
        let (Some(module), Some(pin_file)) = (&args.pkcs11_module, &args.pin_file) else {
            bail!("--issuing-key-pkcs11 needs --pkcs11-module and --pin-file");
        };
        // The configuration's paths are relative to the configuration, not to here.
        let absolute = |p: &Path| {
            std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display()))
        };
        let pin_file = absolute(pin_file)?;
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(&pin_file)
                .with_context(|| format!("cannot read the PIN file {}", pin_file.display()))?;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                bail!(
                    "{} has mode {mode:04o}: others could read the token's PIN, and serve would \
                     refuse it; run `chmod 600 {}` first",
                    pin_file.display(),
                    pin_file.display()
                );
            }
        }
        Ok(Some(TokenArgs {
            uri,
            module: absolute(module)?,
            pin_file,
        }))
    }

    /// Makes the key pair on the token (refusing a URI whose object exists there),
    /// the root and the issuing CA certificate for the token's public key, and the
    /// TLS certificate; writes every file but an issuing key.
    pub fn create(&self, dir: &Path, opts: &PkiOptions) -> Result<()> {
        let pin = Pin::from_file(&self.pin_file)?;
        let module = Module::open(&self.module)?;
        let (key, public) = onlineca_pkcs11::generate(&module, &self.uri, pin, opts.key_type)?;
        let token = key.token_label().to_string();
        let created = pki::create_for(opts, &public).context("creating the CA")?;
        // The token signs a probe the new certificate verifies: the certificate is
        // for the key that was made, and the token can sign with it.
        let cert = onlineca_core::issuer::pem_certificates(&created.issuing_cert_pem)
            .map_err(anyhow::Error::msg)?;
        IssuingCa::with_key(cert[0].clone(), Box::new(key), &[])
            .with_context(|| format!("the new key {} on token {token:?}", self.uri))?;
        for (file, text, mode) in [
            ("ca/root.pem", &created.root.cert_pem, 0o644),
            ("ca/root.key", &created.root.key_pem, 0o600),
            ("ca/issuing.pem", &created.issuing_cert_pem, 0o644),
            ("tls/server.pem", &created.tls.cert_pem, 0o644),
            ("tls/server.key", &created.tls.key_pem, 0o600),
        ] {
            create_new(&dir.join(file), text.as_bytes(), mode)?;
        }
        eprintln!(
            "  the issuing CA key is on token {token:?} ({}): {}",
            self.module.display(),
            self.uri
        );
        Ok(())
    }

    /// `config` with `[ca] key` naming the token's key, and its module and PIN file.
    pub fn configure(&self, config: &str) -> String {
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        let lines = format!(
            "key = {}   # the key on a PKCS#11 token (RFC 7512 URI)\n\
             pkcs11_module = {}   # the token's PKCS#11 library\n\
             pin_file = {}   # first line: the token's user PIN; mode 0600 (serve refuses otherwise)...",
            quote(&self.uri.to_string()),
            quote(&self.module.display().to_string()),
            quote(&self.pin_file.display().to_string()),
        );
        config
            .lines()
            .map(|l| {
                if l.starts_with("key = \"ca/issuing.key\"") {
                    lines.clone()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }
}

/// The issuing CA's subject, from its certificate (its key is on the token).
pub fn issuing_subject(dir: &Path) -> Result<String> {
    use x509_parser::prelude::FromDer;
    let pem = std::fs::read_to_string(dir.join("ca/issuing.pem"))?;
    let der = onlineca_core::issuer::pem_certificates(&pem).map_err(anyhow::Error::msg)?;
    let first = der.first().context("ca/issuing.pem holds no certificate")?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(first)?;
    Ok(onlineca_core::trustroots::oneline(cert.subject()))
}
