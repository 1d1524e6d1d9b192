//! `onlineca completions` and `onlineca man`: generated from the command definition
//! itself, so they can never disagree with `--help`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::Cli;

/// Arguments of `onlineca completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// Arguments of `onlineca man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write onlineca.1 and one page per command (onlineca-getcert.1, ...) into this
    /// directory (created if missing) instead of printing onlineca.1.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Prints the completion script for a shell.
pub fn completions(args: &CompletionsArgs) -> Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "onlineca", &mut std::io::stdout());
    Ok(())
}

/// Prints the manual page, or writes every page into a directory.
pub fn man(args: &ManArgs) -> Result<()> {
    let cmd = Cli::command();
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
            eprintln!("wrote the manual pages into {}", dir.display());
        }
        None => match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
            // `onlineca man | head` is not a failure.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            r => r.context("cannot write the manual page")?,
        },
    }
    Ok(())
}
