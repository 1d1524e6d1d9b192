//! `onlineca retriever ...`: the services trusted to ask for certificates on their
//! users' behalf (configured in `[[retrievers]]`).

use anyhow::Result;
use clap::Subcommand;
use onlineca_server::Config;
use onlineca_server::retriever::{Retrievers, describe_entry};

/// `onlineca retriever` subcommands.
#[derive(Debug, Subcommand)]
pub enum RetrieverCommand {
    /// List the accepted retrievers, the users each may ask for, and the anchors.
    #[command(after_long_help = crate::help::RETRIEVER)]
    List,
}

/// Runs a subcommand against a loaded configuration.
pub fn run(command: RetrieverCommand, cfg: &Config) -> Result<()> {
    match command {
        RetrieverCommand::List => {
            // Loading reads and checks the anchor and CRL files too.
            let loaded = Retrievers::load(cfg)?;
            let state = if cfg.auth.retriever {
                "enabled"
            } else {
                "disabled ([auth] retriever = false)"
            };
            println!("retriever authentication: {state}");
            if cfg.auth.retriever_anchors.is_empty() {
                println!("anchors: (none)");
            }
            for a in &cfg.auth.retriever_anchors {
                println!("anchors: {}", a.display());
            }
            if cfg.auth.retriever_crls.is_empty() {
                println!("crls: (none: retriever certificates are not checked for revocation)");
            }
            for line in loaded.describe_crls() {
                println!("crls: {line}");
            }
            if cfg.retrievers.is_empty() {
                println!("no retrievers configured");
            }
            for r in &cfg.retrievers {
                println!("{}", describe_entry(r));
            }
            Ok(())
        }
    }
}
