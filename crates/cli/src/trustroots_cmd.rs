//! `onlineca trustroots`: fetch the service's trust roots into a directory, with
//! trust pinned by a CA fingerprint, taken explicitly on first use, or checked
//! against the directory already there.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use onlineca_client::{Endpoint, Fingerprint, Trust, fetch_trustroots};

/// Arguments of `onlineca trustroots`.
#[derive(Debug, clap::Args)]
pub struct TrustrootsArgs {
    /// The service base URL, for example https://ca.example.org/onlineca.
    #[arg(long, env = "ONLINECA_URL")]
    pub url: String,
    /// The trust-roots directory (an OpenSSL CApath); created if missing. Files a
    /// fetch wrote that the server no longer publishes are removed (unless changed
    /// since); other files are never touched [default: ~/.onlineca/trustroots].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Pin trust: the trust roots must hold a CA with this SHA-256 fingerprint (as
    /// `openssl x509 -noout -fingerprint -sha256` prints it; colons optional), and
    /// the server's TLS certificate must verify against it.
    #[arg(long, conflicts_with = "bootstrap")]
    pub fingerprint: Option<Fingerprint>,
    /// Trust whatever the server presents this once (trust on first use), and print
    /// the fingerprints to check with the CA's operator.
    #[arg(long)]
    pub bootstrap: bool,
    /// Give up after this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Runs `onlineca trustroots`.
pub async fn run(args: &TrustrootsArgs) -> Result<()> {
    let endpoint = Endpoint::parse(&args.url)?;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            // ~/.onlineca will hold keys too: made private here if this is its first use.
            crate::home::ensure()?;
            crate::home::trustroots()?
        }
    };
    let trust = match (&args.fingerprint, args.bootstrap) {
        (Some(fp), _) => Trust::Pinned(*fp),
        (None, true) => Trust::Bootstrap,
        (None, false) => {
            if !dir.is_dir() {
                bail!(
                    "{} does not exist yet: the first fetch needs --fingerprint SHA256 (ask the CA's operator for it) or, at your own risk, --bootstrap",
                    dir.display()
                );
            }
            Trust::Dir(dir.clone())
        }
    };
    if args.bootstrap {
        eprintln!(
            "WARNING: --bootstrap: trusting {} on first use, without any check. Compare the fingerprints below with the ones the CA's operator publishes before relying on them.",
            endpoint.url
        );
    }
    let roots = fetch_trustroots(&endpoint, &trust, args.timeout).await?;
    if let Some(p) = &roots.pinned {
        println!("pinned CA found: {}", p.subject);
        println!("  SHA-256 {}", p.fingerprint);
    }
    if args.bootstrap {
        for ca in &roots.cas {
            println!("CA {}", ca.subject);
            println!("  SHA-256 {}", ca.fingerprint);
        }
    }
    println!(
        "server certificate {} verifies against them",
        roots.server.subject
    );
    let report = roots.write_to(&dir)?;
    for name in &report.added {
        println!("added {}", dir.join(name).display());
    }
    for name in &report.changed {
        println!("changed {}", dir.join(name).display());
    }
    for name in &report.removed {
        println!("removed {} (no longer published)", dir.join(name).display());
    }
    for name in &report.kept {
        eprintln!(
            "note: kept {}: no longer published, but changed since it was fetched; remove it if it should not be trusted",
            dir.join(name).display()
        );
    }
    if report.no_manifest {
        eprintln!(
            "note: {} has no record of what earlier fetches wrote (made by an older onlineca): nothing was removed this time; later refreshes remove what the server stops publishing",
            dir.display()
        );
    }
    println!(
        "{}: {} added, {} changed, {} unchanged, {} removed",
        dir.display(),
        report.added.len(),
        report.changed.len(),
        report.unchanged.len(),
        report.removed.len()
    );
    Ok(())
}
