//! `onlineca cert sign`: server certificates for the services that accept this CA's
//! users, signed by the issuing CA from an operator's CSR (or a key made here), or
//! self-signed for testing. Only the CLI signs them: nothing over HTTP does.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use onlineca_core::csr;
use onlineca_core::pki::KeyType;
use onlineca_core::server_cert::{self, SanName};
use onlineca_server::Config;
use onlineca_server::audit::{CliAudit, Event, timestamp};
use onlineca_store::{IssuedCert, SERVER_METHOD, Store};
use time::OffsetDateTime;

use crate::files::create_new;
use crate::passphrase::PassphraseArgs;

/// `onlineca cert sign` arguments.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The server's CSR (PEM or DER), made with `openssl req` or any tool. Only its
    /// public key is used, unless --use-csr-names.
    #[arg(long, required_unless_present_any = ["generate_key", "self_signed"])]
    pub csr: Option<PathBuf>,
    /// A DNS name for the certificate (repeatable; the first is also its CN).
    #[arg(long = "dns", value_name = "NAME")]
    pub dns: Vec<String>,
    /// An IP address for the certificate (repeatable).
    #[arg(long = "ip", value_name = "ADDR")]
    pub ip: Vec<IpAddr>,
    /// Lifetime in days (default: [server_certificate] lifetime, 90 days; never
    /// beyond the CA's own).
    #[arg(long)]
    pub days: Option<u32>,
    /// Also the names the CSR asks for (subjectAltName, else CN), each checked
    /// against [server_certificate] allow_domains.
    #[arg(long, requires = "csr")]
    pub use_csr_names: bool,
    /// Make the key pair here instead of taking a CSR (written to --key-out, 0600).
    #[arg(long, conflicts_with = "csr", requires = "key_out")]
    pub generate_key: bool,
    /// Where --generate-key or --self-signed writes the private key (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub key_out: Option<PathBuf>,
    /// The key type --generate-key or --self-signed makes.
    #[arg(long, default_value = "p256")]
    pub key_type: KeyType,
    /// FOR TESTING ONLY: a self-signed server certificate (no CA, nothing recorded):
    /// clients must be given it with --cacert.
    #[arg(long, conflicts_with_all = ["csr", "use_csr_names", "generate_key"], requires = "key_out")]
    pub self_signed: bool,
    /// Write the certificate (then the issuing CA's chain) here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

/// The names from the flags, validated.
fn flag_names(args: &SignArgs) -> Result<Vec<SanName>> {
    let mut names = Vec::new();
    for d in &args.dns {
        names.push(server_cert::dns_name(d)?);
    }
    names.extend(args.ip.iter().copied().map(SanName::Ip));
    Ok(names)
}

fn push_unique(names: &mut Vec<SanName>, n: SanName) {
    if !names.contains(&n) {
        names.push(n);
    }
}

fn write_out(path: Option<&Path>, pem: &str) -> Result<()> {
    match path {
        Some(p) => create_new(p, pem.as_bytes(), 0o644),
        None => {
            print!("{pem}");
            Ok(())
        }
    }
}

/// `cert sign --self-signed`: no CA, no store.
pub fn self_signed(args: &SignArgs, now: OffsetDateTime) -> Result<()> {
    let names = flag_names(args)?;
    let Some(first) = names.first() else {
        bail!("no name given: pass --dns NAME (or --ip ADDR) at least once");
    };
    let key = args.key_type.generate().context("making the key")?;
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, first.to_string());
    p.subject_alt_names = names
        .iter()
        .map(|n| match n {
            SanName::Dns(d) => d
                .clone()
                .try_into()
                .map(rcgen::SanType::DnsName)
                .map_err(|_| anyhow::anyhow!("{d:?} is not a valid DNS name")),
            SanName::Ip(ip) => Ok(rcgen::SanType::IpAddress(*ip)),
        })
        .collect::<Result<_>>()?;
    p.not_before = now - Duration::from_secs(300);
    p.not_after = now + Duration::from_secs(86_400 * u64::from(args.days.unwrap_or(90)));
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let serial =
        onlineca_core::serial::random_serial().map_err(|_| anyhow::anyhow!("no randomness"))?;
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let cert = p.self_signed(&key).context("signing")?;
    let key_out = args.key_out.as_deref().context("--key-out is required")?;
    create_new(key_out, key.serialize_pem().as_bytes(), 0o600)?;
    write_out(args.out.as_deref(), &cert.pem())?;
    eprintln!(
        "self-signed certificate for {} (FOR TESTING ONLY: clients must trust it with --cacert; \
         not recorded, not revocable)",
        names
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// `cert sign` with the issuing CA: signed, recorded, audited.
pub async fn sign(
    args: &SignArgs,
    cfg: &Config,
    store: &dyn Store,
    audit: &mut CliAudit,
    now: OffsetDateTime,
) -> Result<()> {
    let mut names = flag_names(args)?;
    // Checked first: a certificate recorded but not written out helps nobody.
    for p in [&args.key_out, &args.out].into_iter().flatten() {
        if p.exists() {
            bail!("{} already exists: refusing to overwrite it", p.display());
        }
    }
    let (csr_der, key_pem) = if args.generate_key {
        let key = args.key_type.generate().context("making the key")?;
        let req = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .context("a CSR for the new key")?;
        (req.der().to_vec(), Some(key.serialize_pem()))
    } else {
        let path = args
            .csr
            .as_deref()
            .context("--csr FILE or --generate-key")?;
        let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let der = match std::str::from_utf8(&raw) {
            Ok(text) if text.contains("-----BEGIN") => csr::decode_text(text)
                .with_context(|| format!("{} holds no readable CSR", path.display()))?,
            _ => raw,
        };
        (der, None)
    };
    let checked = csr::check(&csr_der).context("the CSR")?;
    if args.use_csr_names {
        let allow = &cfg.server_certificate.allow_domains;
        let asked = server_cert::csr_names(&csr_der)?;
        let refused: Vec<String> = asked
            .iter()
            .filter(|n| !server_cert::allowed(n, allow))
            .map(ToString::to_string)
            .collect();
        if !refused.is_empty() {
            return Err(server_cert::ServerCertError::NotAllowed(refused.join(", ")).into());
        }
        for n in asked {
            push_unique(&mut names, n);
        }
    }
    if names.is_empty() {
        bail!("no name given: pass --dns NAME (or --ip ADDR) at least once");
    }
    let mut cfg = cfg.clone();
    if cfg.ca.pkcs11_uri().is_none() {
        cfg.ca.passphrase = args.passphrase.for_key(&cfg.ca.key)?;
    }
    let ca = onlineca_server::state::issuing_ca(&cfg)?;
    let lifetime = match args.days {
        Some(d) => Duration::from_secs(86_400 * u64::from(d.max(1))),
        None => cfg.server_certificate.lifetime,
    };
    audit.ready()?;
    let issued = server_cert::issue(
        &ca,
        &checked,
        &names,
        lifetime,
        cfg.certificate.backdate,
        now,
    )?;
    let first = names[0].to_string();
    let record = IssuedCert {
        serial: issued.serial_hex.clone(),
        username: first.clone(),
        subject: issued.subject.clone(),
        auth_method: SERVER_METHOD.into(),
        retriever: None,
        spki_sha256: issued.spki_sha256.clone(),
        not_before: issued.not_before,
        not_after: issued.not_after,
        issued_at: now,
        client_addr: None,
        der: issued.der.clone(),
        revoked_at: None,
        revocation_reason: None,
        account_id: None,
        parent_serial: None,
        issuer_key_id: Some(ca.key_id().iter().map(|b| format!("{b:02x}")).collect()),
    };
    // Recorded before it is written anywhere, like every certificate this CA signs.
    store.record_issued(&record).await?;
    audit.record(
        now,
        &Event::Issued {
            request_id: "cli",
            serial: &issued.serial_hex,
            subject: &issued.subject,
            user: &first,
            method: SERVER_METHOD,
            retriever: None,
            renews: None,
            spki_sha256: &issued.spki_sha256,
            not_before: timestamp(issued.not_before),
            not_after: timestamp(issued.not_after),
            client: None,
        },
    )?;
    if let (Some(pem), Some(out)) = (&key_pem, &args.key_out) {
        create_new(out, pem.as_bytes(), 0o600)?;
    }
    let mut text = issued.pem.clone();
    text.push_str(ca.chain_pem());
    write_out(args.out.as_deref(), &text)?;
    eprintln!(
        "signed server certificate {} for {} (until {}); list with `onlineca cert list --kind server`",
        issued.serial_hex,
        names
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        timestamp(issued.not_after)
    );
    Ok(())
}
