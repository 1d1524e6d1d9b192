//! `onlineca getcert`: make a key here, get a certificate for it by password (or
//! by the current certificate, `--renew`), and write it in the forms tools take.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use onlineca_client::{
    Credentials, Endpoint, KeyType, Outputs, check_writable, generate_key, get_certificate,
    load_key,
};
use time::OffsetDateTime;

use crate::{home, prompt};

/// Arguments of `onlineca getcert`.
#[derive(Debug, clap::Args)]
pub struct GetcertArgs {
    /// The service base URL, for example https://ca.example.org/onlineca.
    #[arg(long, env = "ONLINECA_URL")]
    pub url: String,
    /// The username (the certificate's CN).
    #[arg(
        long,
        env = "ONLINECA_USER",
        required_unless_present = "renew",
        conflicts_with = "renew"
    )]
    pub user: Option<String>,
    /// Read the password from the first line of standard input instead of a prompt.
    #[arg(long, conflicts_with = "renew")]
    pub password_stdin: bool,
    /// The trust-roots directory (from `onlineca trustroots`): the service and the
    /// certificate received must both verify against it [default: ~/.onlineca/trustroots].
    #[arg(long)]
    pub trustroots: Option<PathBuf>,
    /// Key type of the new key: p256, p384, ed25519, rsa2048, rsa3072, rsa4096.
    #[arg(long, default_value = "p256")]
    pub key_type: KeyType,
    /// Write the certificate (then the issuing chain) here, PEM. Without any of
    /// --cert, --key, --bundle and --p12: ~/.onlineca/USER.pem and ~/.onlineca/USER.key.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Write the private key here, PEM, mode 0600.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Write certificate(s) then private key into one PEM file, mode 0600.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// Write a PKCS#12 file (key and chain), mode 0600.
    #[arg(long)]
    pub p12: Option<PathBuf>,
    /// The PKCS#12 password: the first line of this file (else it is asked for).
    #[arg(long, requires = "p12")]
    pub p12_password_file: Option<PathBuf>,
    /// Do nothing if the certificate already written is valid for longer than this
    /// (for example 2h, 1day): for cron.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub renew_within: Option<Duration>,
    /// Renew over mutual TLS: present the current certificate and key (--cert and
    /// --key, which are then replaced) instead of a password.
    #[arg(long, requires_all = ["cert", "key"])]
    pub renew: bool,
    /// With --renew: make a new key instead of keeping the current one.
    #[arg(long, requires = "renew")]
    pub rotate_key: bool,
    /// Give up after this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

fn first_line(mut r: impl BufRead, what: &str) -> Result<String> {
    let mut line = String::new();
    r.read_line(&mut line)
        .with_context(|| format!("cannot read {what}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn p12_password(args: &GetcertArgs) -> Result<Option<String>> {
    if args.p12.is_none() {
        return Ok(None);
    }
    if let Some(f) = &args.p12_password_file {
        let file =
            std::fs::File::open(f).with_context(|| format!("cannot open {}", f.display()))?;
        return Ok(Some(first_line(
            std::io::BufReader::new(file),
            &f.display().to_string(),
        )?));
    }
    let what = "the PKCS#12 password";
    let a = prompt::secret("PKCS#12 password: ", what, "--p12-password-file")?;
    let b = prompt::secret("PKCS#12 password (again): ", what, "--p12-password-file")?;
    if a != b {
        bail!("the PKCS#12 passwords do not match");
    }
    Ok(Some(a))
}

/// A time as RFC 3339 (UTC), for people and scripts alike.
fn when(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// `~/.onlineca/USER.pem` and `.key`, when no output is named. The username is
/// checked to be a plain file name first.
fn default_outputs(user: &str) -> Result<(PathBuf, PathBuf)> {
    let plain = !user.is_empty()
        && !user.starts_with('.')
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if !plain {
        bail!("no output: give --cert and --key, --bundle, or --p12");
    }
    let dir = home::ensure()?;
    Ok((
        dir.join(format!("{user}.pem")),
        dir.join(format!("{user}.key")),
    ))
}

/// Runs `onlineca getcert`.
pub async fn run(args: &GetcertArgs) -> Result<()> {
    let endpoint = Endpoint::parse(&args.url)?;
    let trustroots = match &args.trustroots {
        Some(t) => t.clone(),
        None => home::trustroots()?,
    };
    let (mut cert, mut key) = (args.cert.clone(), args.key.clone());
    if cert.is_none() && key.is_none() && args.bundle.is_none() && args.p12.is_none() {
        let (c, k) = default_outputs(args.user.as_deref().unwrap_or_default())?;
        (cert, key) = (Some(c), Some(k));
    }
    if key.is_none() && args.bundle.is_none() && args.p12.is_none() {
        bail!("--cert alone would lose the private key: add --key (or --bundle, or --p12)");
    }
    // Before any password or request: a certificate issued and then not written is
    // lost, and recorded as issued all the same.
    for p in [&cert, &key, &args.bundle, &args.p12].into_iter().flatten() {
        check_writable(p)?;
    }
    let outputs = Outputs {
        cert,
        key,
        bundle: args.bundle.clone(),
        p12: p12_password(args)?.map(|pw| (args.p12.clone().unwrap_or_default(), pw)),
    };
    if let Some(within) = args.renew_within
        && let Some(not_after) = outputs.existing_not_after()?
    {
        let left = not_after - OffsetDateTime::now_utc();
        if left > within {
            println!(
                "{} is valid until {} (more than {} from now): nothing to do",
                outputs.paths()[0].display(),
                when(not_after),
                humantime::format_duration(within)
            );
            return Ok(());
        }
    }

    let (credentials, key) = if args.renew {
        let (cert, key) = (
            args.cert.as_deref().unwrap_or(Path::new("")),
            args.key.as_deref().unwrap_or(Path::new("")),
        );
        let credentials = Credentials::from_files(cert, key)?;
        let new_key = if args.rotate_key {
            generate_key(args.key_type)?
        } else {
            load_key(key)?
        };
        (credentials, new_key)
    } else {
        let user = args.user.clone().unwrap_or_default();
        let password = if args.password_stdin {
            first_line(std::io::stdin().lock(), "the password from standard input")?
        } else {
            let ask = format!("Password for {user} at {}: ", endpoint.url);
            prompt::secret(&ask, "the password", "--password-stdin")?
        };
        if password.is_empty() {
            bail!("empty password");
        }
        (
            Credentials::Password { user, password },
            generate_key(args.key_type)?,
        )
    };

    let issued = get_certificate(&endpoint, &trustroots, &credentials, &key, args.timeout).await?;
    outputs.write(&issued)?;
    println!(
        "certificate for {} issued by {}, valid until {}",
        issued.summary.subject,
        issued.summary.issuer,
        when(issued.summary.not_after)
    );
    for p in outputs.paths() {
        println!("wrote {}", p.display());
    }
    Ok(())
}
