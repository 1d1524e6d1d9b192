//! `onlineca crl root`: an empty CRL signed by a CA whose key is at hand, normally the
//! offline root. Relying parties that check the CRLs of the whole chain (nginx's
//! `ssl_crl`) need one for the root as well as the issuing CA's, which the server
//! publishes itself.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use onlineca_core::IssuingCa;
use time::OffsetDateTime;

/// `onlineca crl root` arguments.
#[derive(Debug, Args)]
pub struct RootCrlArgs {
    /// The CA certificate (PEM), e.g. DIR/ca/root.pem.
    #[arg(long)]
    pub cert: PathBuf,
    /// Its private key (PEM), e.g. DIR/ca/root.key.
    #[arg(long)]
    pub key: PathBuf,
    /// How long the CRL is valid (its nextUpdate after now).
    #[arg(long, default_value = "90days", value_parser = humantime::parse_duration)]
    pub next_update: Duration,
    /// Write the PEM here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub passphrase: crate::passphrase::PassphraseArgs,
}

/// Signs the empty CRL. Its number is the current Unix time, so a CRL signed later
/// always has a larger number without any state to keep next to an offline key.
pub fn run(args: &RootCrlArgs, now: OffsetDateTime) -> Result<()> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let key = args.passphrase.load_key(&args.key)?;
    let cert = onlineca_core::issuer::pem_certificates(&read(&args.cert)?)
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .next()
        .with_context(|| format!("no certificate in {}", args.cert.display()))?;
    let ca = IssuingCa::new(cert, key, &[])
        .with_context(|| format!("cannot sign with {}", args.cert.display()))?;
    let number = u64::try_from(now.unix_timestamp()).context("the clock is before 1970")?;
    let next_update = now
        .checked_add(time::Duration::try_from(args.next_update)?)
        .context("--next-update is too far away")?;
    let crl = onlineca_core::crl::build(&ca, number, now, next_update, &[])?;
    match &args.out {
        Some(p) => {
            std::fs::write(p, &crl.pem).with_context(|| format!("cannot write {}", p.display()))?;
            eprintln!(
                "wrote the CRL of {} to {} (number {number}, valid until {})",
                ca.subject_oneline(),
                p.display(),
                crl.next_update
            );
        }
        None => print!("{}", crl.pem),
    }
    Ok(())
}
