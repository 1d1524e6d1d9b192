//! `onlineca ca`: rotate the issuing CA, and show the CAs with what each still covers.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use onlineca_core::issuer::pem_certificates;
use onlineca_core::keyfile;
use onlineca_server::Config;
use onlineca_server::audit::{CliAudit, Event};
use onlineca_store::Store;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::files::create_new;
use crate::passphrase::PassphraseArgs;

/// `onlineca ca` subcommands.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Replace the issuing CA with a new one under the same root. The old one stays
    /// in the trust roots, with its own CRL, while certificates it signed are valid.
    #[command(after_long_help = crate::help::CA_ROTATE)]
    Rotate {
        /// The root CA's key (default: root.key beside the [ca] chain file).
        #[arg(long, value_name = "FILE")]
        root_key: Option<PathBuf>,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// List the root and every issuing CA: validity, which one issues, and how many
    /// unexpired certificates each signed.
    #[command(after_long_help = crate::help::CA_STATUS)]
    Status,
}

/// Runs a `ca` subcommand.
pub async fn run(
    cmd: CaCommand,
    cfg: &Config,
    store: &dyn Store,
    audit: &mut CliAudit,
    now: OffsetDateTime,
) -> Result<()> {
    match cmd {
        CaCommand::Rotate {
            root_key,
            passphrase,
        } => rotate(cfg, store, audit, now, root_key, &passphrase).await,
        CaCommand::Status => status(cfg, store, now).await,
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn first_cert(path: &Path) -> Result<Vec<u8>> {
    pem_certificates(&read(path)?)
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .next()
        .with_context(|| format!("no certificate in {}", path.display()))
}

/// The certificate of `chain` that signed `cert` (by subject), PEM.
fn issuer_in_chain(cert: &[u8], chain: &Path) -> Result<String> {
    let (_, c) = X509Certificate::from_der(cert).context("the issuing CA certificate")?;
    for der in pem_certificates(&read(chain)?).map_err(anyhow::Error::msg)? {
        let (_, up) = X509Certificate::from_der(&der).context("a certificate of the chain")?;
        if up.subject().as_raw() == c.issuer().as_raw() {
            return Ok(onlineca_core::issuer::to_pem(&der));
        }
    }
    bail!(
        "{} holds no certificate of the issuing CA's issuer",
        chain.display()
    )
}

/// `path` relative to `base` when it lies under it (the configuration's form).
fn relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

async fn rotate(
    cfg: &Config,
    store: &dyn Store,
    audit: &mut CliAudit,
    now: OffsetDateTime,
    root_key: Option<PathBuf>,
    passphrase: &PassphraseArgs,
) -> Result<()> {
    if let Some(uri) = cfg.ca.pkcs11_uri() {
        bail!(
            "the issuing key is on a PKCS#11 token ({uri}): `ca rotate` rotates issuing keys \
             kept in files only; a token-held issuing CA cannot be rotated by onlineca yet"
        );
    }
    let chain = cfg.ca.chain.as_ref().context(
        "no [ca] chain in the configuration: the root above the issuing CA is unknown \
         (an imported CA is rotated where it was made)",
    )?;
    let old_der = first_cert(&cfg.ca.cert)?;
    let root_pem = issuer_in_chain(&old_der, chain)?;
    let root_key_path = root_key.unwrap_or_else(|| chain.with_file_name("root.key"));
    let root_key = passphrase.load_key(&root_key_path).with_context(|| {
        format!(
            "the root key is needed once to sign the new issuing CA (--root-key FILE; \
             default {})",
            root_key_path.display()
        )
    })?;
    // The key and certificate must belong together, as serve checks for its own.
    let root_der = pem_certificates(&root_pem)
        .map_err(anyhow::Error::msg)?
        .remove(0);
    let (_, root_cert) = X509Certificate::from_der(&root_der).context("the root certificate")?;
    if root_cert.public_key().subject_public_key.data.as_ref()
        != rcgen::PublicKeyData::der_bytes(&root_key)
    {
        bail!(
            "{} is not the key of the root {}",
            root_key_path.display(),
            onlineca_core::trustroots::oneline(root_cert.subject())
        );
    }
    let old_key_text = read(&cfg.ca.key)?;
    let encrypted = keyfile::is_encrypted(&old_key_text);
    let pass = if encrypted {
        Some(
            passphrase
                .for_key(&cfg.ca.key)?
                .context("the issuing CA key is encrypted: give --passphrase-file")?,
        )
    } else {
        None
    };
    let old_key = keyfile::load(&old_key_text, pass.as_ref()).map_err(|e| {
        anyhow::anyhow!(
            "{}: {}",
            cfg.ca.key.display(),
            onlineca_server::state::key_problem(&e)
        )
    })?;
    let old = onlineca_core::IssuingCa::new(old_der.clone(), old_key, &[])?;
    audit.ready()?;

    let new = onlineca_core::pki::rotate_issuing(&old_der, &root_pem, &root_key, now)
        .context("creating the new issuing CA")?;
    let new_key_file = match &pass {
        Some(p) => keyfile::encrypt(&new.key, p)?,
        None => Zeroizing::new(new.key.serialize_pem()),
    };
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let with_stamp = |p: &Path| {
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("issuing");
        let ext = p.extension().and_then(|s| s.to_str()).unwrap_or("pem");
        p.with_file_name(format!("{stem}-{stamp}.{ext}"))
    };
    let (retired_cert, retired_key) = (with_stamp(&cfg.ca.cert), with_stamp(&cfg.ca.key));
    let new_cert_tmp = cfg.ca.cert.with_extension("pem.new");
    let new_key_tmp = cfg.ca.key.with_extension("key.new");
    // New files first, then copies of the old ones, then the configuration naming
    // the copies, then the switch: a failure at any step leaves a configuration that
    // serves (the old CA, listed once or twice).
    create_new(&new_cert_tmp, new.cert_pem.as_bytes(), 0o644)?;
    create_new(&new_key_tmp, new_key_file.as_bytes(), 0o600)?;
    create_new(&retired_cert, read(&cfg.ca.cert)?.as_bytes(), 0o644)?;
    create_new(&retired_key, old_key_text.as_bytes(), 0o600)?;
    let base = cfg.path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = std::path::absolute(&base).unwrap_or(base);
    let entry = format!(
        "\n# Retired by `onlineca ca rotate` at {}: still published, with its own CRL,\n\
         # while certificates it signed are unexpired (see `onlineca ca status`).\n\
         [[ca.retired]]\ncert = \"{}\"\nkey = \"{}\"\n",
        onlineca_server::audit::timestamp(now),
        relative(&retired_cert, &base),
        relative(&retired_key, &base),
    );
    let mut text = read(&cfg.path)?;
    text.push_str(&entry);
    // Checked before it is written: a configuration that does not load is not saved.
    Config::parse(&text, &cfg.path).context("the configuration with the retired CA")?;
    std::fs::write(&cfg.path, text)
        .with_context(|| format!("cannot write {}", cfg.path.display()))?;
    // Every record so far came from the CA being retired (rotation is what makes
    // more than one): say so, so that its CRL and status count them.
    let attributed = store.attribute_issuer(&hex(old.key_id())).await?;
    std::fs::rename(&new_cert_tmp, &cfg.ca.cert)
        .with_context(|| format!("cannot replace {}", cfg.ca.cert.display()))?;
    std::fs::rename(&new_key_tmp, &cfg.ca.key)
        .with_context(|| format!("cannot replace {}", cfg.ca.key.display()))?;
    let new_ca = onlineca_core::IssuingCa::new(
        pem_certificates(&new.cert_pem)
            .map_err(anyhow::Error::msg)?
            .remove(0),
        new.key,
        &[],
    )?;
    audit.record(
        now,
        &Event::CaRotated {
            old_ca: old.subject_oneline(),
            new_ca: new_ca.subject_oneline(),
            retired_cert: &relative(&retired_cert, &base),
        },
    )?;
    eprintln!(
        "new issuing CA: {}\n  valid until {}\n  the old one ({}) is kept as {} and stays \
         in the trust roots, with its CRL, while its certificates are valid\n  ({} earlier \
         certificate records attributed to it)\nRestart every instance: each keeps issuing \
         from the CA it started with until then.",
        new_ca.subject_oneline(),
        new_ca.not_after(),
        old.subject_oneline(),
        retired_cert.display(),
        attributed,
    );
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn status(cfg: &Config, store: &dyn Store, now: OffsetDateTime) -> Result<()> {
    let counts = store.unexpired_by_issuer(now).await?;
    let line = |der: &[u8], role: &str, counted: bool| -> Result<()> {
        let (_, c) = X509Certificate::from_der(der).context("a CA certificate")?;
        let subject = onlineca_core::trustroots::oneline(c.subject());
        let key_id = c
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(hex(k.0)),
                _ => None,
            })
            .unwrap_or_default();
        let certs = if counted {
            match counts
                .iter()
                .find(|n| n.key_id.as_deref() == Some(key_id.as_str()))
            {
                Some(n) => format!(
                    "{} unexpired, the last until {}",
                    n.unexpired,
                    onlineca_server::audit::timestamp(n.last_not_after)
                ),
                None if role == "retired" => {
                    "0 unexpired: remove its [[ca.retired]] entry".to_string()
                }
                None => "0 unexpired".to_string(),
            }
        } else {
            "-".to_string()
        };
        println!(
            "{role:<8} {subject}\n         valid {} .. {}; {certs}",
            onlineca_server::audit::timestamp(c.validity().not_before.to_datetime()),
            onlineca_server::audit::timestamp(c.validity().not_after.to_datetime()),
        );
        Ok(())
    };
    let active = first_cert(&cfg.ca.cert)?;
    if let Some(chain) = &cfg.ca.chain
        && let Ok(root) = issuer_in_chain(&active, chain)
    {
        line(
            &pem_certificates(&root).map_err(anyhow::Error::msg)?[0],
            "root",
            false,
        )?;
    }
    line(&active, "issuing", true)?;
    for r in &cfg.ca.retired {
        line(&first_cert(&r.cert)?, "retired", true)?;
    }
    if let Some(n) = counts.iter().find(|n| n.key_id.is_none()) {
        println!(
            "{} unexpired certificate(s) recorded before rotation existed, not attributed to a CA",
            n.unexpired
        );
    }
    Ok(())
}
