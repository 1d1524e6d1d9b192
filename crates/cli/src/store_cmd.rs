//! `onlineca store`: the database's schema, and upgrading it deliberately.

use anyhow::Result;
use clap::Subcommand;
use onlineca_server::Config;
use onlineca_store::{Migrate, schema_status};

/// `onlineca store` subcommands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Apply the pending schema migrations (safe to run from several hosts at once:
    /// one applies them, the others find nothing left to do).
    #[command(after_long_help = crate::help::STORE)]
    Migrate,
    /// Show the schema version, the migrations applied and those pending.
    #[command(after_long_help = crate::help::STORE)]
    Status,
}

/// Runs a `store` subcommand.
pub async fn run(cmd: StoreCommand, cfg: &Config) -> Result<()> {
    let url = onlineca_server::config::redact_url(&cfg.store.url);
    match cmd {
        StoreCommand::Status => {
            let opts = cfg.store.open_options(None)?;
            let s = schema_status(&cfg.store.url, &opts).await?;
            println!("store:   {url}");
            println!(
                "schema:  version {} (this onlineca: {}){}",
                s.current,
                s.latest,
                match s.current.cmp(&s.latest) {
                    std::cmp::Ordering::Less if s.current == 0 => ": empty, created on first use",
                    std::cmp::Ordering::Less => ": behind, run `onlineca store migrate`",
                    std::cmp::Ordering::Equal => ": up to date",
                    std::cmp::Ordering::Greater => ": newer than this onlineca, upgrade it",
                }
            );
            for (v, d, at) in &s.applied {
                println!(
                    "applied  {v:>3}  {}  {d}",
                    onlineca_server::audit::timestamp(*at)
                );
            }
            for (v, d) in &s.pending {
                println!("pending  {v:>3}  {d}");
            }
        }
        StoreCommand::Migrate => {
            let opts = cfg.store.open_options(Some(Migrate::Auto))?;
            let before = schema_status(&cfg.store.url, &opts).await?;
            let store = onlineca_store::open_with(&cfg.store.url, &opts).await?;
            store.close().await;
            let after = schema_status(&cfg.store.url, &opts).await?;
            let applied: Vec<_> = after
                .applied
                .iter()
                .filter(|(v, _, _)| *v > before.current)
                .collect();
            if before.current == after.current {
                eprintln!(
                    "{url}: schema already at version {}; nothing to do",
                    after.current
                );
            } else {
                for (v, d, _) in &applied {
                    eprintln!("applied {v}: {d}");
                }
                eprintln!(
                    "{url}: schema upgraded from version {} to {}",
                    before.current, after.current
                );
            }
        }
    }
    Ok(())
}
