//! The `onlineca` command: create a CA, serve it, manage its users and the
//! certificates it issued, and (on the user's side) fetch trust roots and get
//! certificates.

mod ca_cmd;
mod certs;
mod crl_cmd;
mod docs;
mod files;
mod getcert;
mod help;
mod home;
mod init;
mod init_token;
mod passphrase;
mod prompt;
mod retrievers;
mod serve_cmd;
mod sign_cmd;
mod store_cmd;
mod trustroots_cmd;
mod users;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use onlineca_server::audit::CliAudit;
use onlineca_server::{AppState, Config};

/// An online certificate authority: short-lived client certificates for mutual TLS,
/// issued to authenticated users from a CSR.
#[derive(Debug, Parser)]
#[command(name = "onlineca", version, about, after_long_help = help::TOP)]
pub(crate) struct Cli {
    /// Log format on standard error: text or json.
    #[arg(
        long,
        global = true,
        env = "ONLINECA_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a CA (root, issuing CA, TLS certificate, configuration, store) in a directory.
    #[command(after_long_help = help::INIT)]
    Init(init::InitArgs),
    /// Serve the CA over HTTPS.
    #[command(after_long_help = help::SERVE)]
    Serve(serve_cmd::ServeArgs),
    /// Manage the users who may get certificates by password.
    #[command(after_long_help = help::USER)]
    User {
        /// The configuration file.
        #[arg(long, global = true, env = "ONLINECA_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: users::UserCommand,
    },
    /// The issued certificates: list, show, revoke.
    #[command(after_long_help = help::CERT)]
    Cert {
        /// The configuration file.
        #[arg(long, global = true, env = "ONLINECA_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: certs::CertCommand,
    },
    /// The CAs: rotate the issuing CA, show what each covers.
    #[command(after_long_help = help::CA)]
    Ca {
        /// The configuration file.
        #[arg(long, global = true, env = "ONLINECA_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: ca_cmd::CaCommand,
    },
    /// The database: schema version, pending migrations, upgrading it.
    #[command(after_long_help = help::STORE)]
    Store {
        /// The configuration file.
        #[arg(long, global = true, env = "ONLINECA_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: store_cmd::StoreCommand,
    },
    /// Sign CRLs the server does not publish itself.
    #[command(after_long_help = help::CRL)]
    Crl {
        #[command(subcommand)]
        command: CrlCommand,
    },
    /// Show the trusted retrievers.
    #[command(after_long_help = help::RETRIEVER)]
    Retriever {
        /// The configuration file.
        #[arg(long, global = true, env = "ONLINECA_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: retrievers::RetrieverCommand,
    },
    /// Fetch the service's trust roots into a directory (pinned, bootstrap or refresh).
    #[command(after_long_help = help::TRUSTROOTS)]
    Trustroots(trustroots_cmd::TrustrootsArgs),
    /// Get a certificate: a key made here, a CSR sent, the certificate written out.
    #[command(after_long_help = help::GETCERT)]
    Getcert(getcert::GetcertArgs),
    /// Check the configuration.
    #[command(after_long_help = help::CONFIG)]
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    #[command(after_long_help = help::COMPLETIONS)]
    Completions(docs::CompletionsArgs),
    /// Print the manual page (roff), or write one page per command into a directory.
    #[command(after_long_help = help::MAN)]
    Man(docs::ManArgs),
}

#[derive(Debug, Subcommand)]
enum CrlCommand {
    /// Sign an empty CRL with a CA key at hand, normally the offline root (nginx's
    /// ssl_crl wants a CRL for every CA of the chain).
    #[command(after_long_help = help::CRL)]
    Root(crl_cmd::RootCrlArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration (and the files it names) and print the effective settings.
    #[command(after_long_help = help::CONFIG)]
    Check {
        /// The configuration file.
        #[arg(long, env = "ONLINECA_CONFIG")]
        config: PathBuf,
        #[command(flatten)]
        passphrase: passphrase::PassphraseArgs,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn config_arg(config: Option<PathBuf>) -> Result<PathBuf> {
    // clap has already taken ONLINECA_CONFIG when --config is absent.
    config.context("no configuration: pass --config DIR/onlineca.toml (or set ONLINECA_CONFIG)")
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    onlineca_server::tls::install_crypto_provider();
    match run(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onlineca: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Init(args) => init::run(&args).await,
        Command::Trustroots(args) => trustroots_cmd::run(&args).await,
        Command::Getcert(args) => getcert::run(&args).await,
        Command::Serve(args) => serve_cmd::run(args).await,
        Command::Completions(args) => docs::completions(&args),
        Command::Man(args) => docs::man(&args),
        Command::User { config, command } => {
            let cfg = Config::load(&config_arg(config)?)?;
            let template = cfg.subject_template()?;
            let store = cfg.store.open().await?;
            let lockout = onlineca_store::LockoutPolicy {
                max_failures: cfg.auth.max_failures,
                period: time::Duration::try_from(cfg.auth.lockout).unwrap_or(time::Duration::MAX),
            };
            let mut audit = CliAudit::new(cfg.audit.as_ref());
            let r = users::run(
                command,
                store.as_ref(),
                &template,
                &lockout,
                cfg.ldap.as_ref(),
                &mut audit,
            )
            .await;
            store.close().await;
            r
        }
        Command::Cert {
            command: certs::CertCommand::Sign(args),
            ..
        } if args.self_signed => sign_cmd::self_signed(&args, time::OffsetDateTime::now_utc()),
        Command::Cert {
            config,
            command: certs::CertCommand::Sign(args),
        } => {
            let cfg = Config::load(&config_arg(config)?)?;
            let store = cfg.store.open().await?;
            let mut audit = CliAudit::new(cfg.audit.as_ref());
            let now = time::OffsetDateTime::now_utc();
            let r = sign_cmd::sign(&args, &cfg, store.as_ref(), &mut audit, now).await;
            store.close().await;
            r
        }
        Command::Cert { config, command } => {
            let cfg = Config::load(&config_arg(config)?)?;
            let store = cfg.store.open().await?;
            let now = time::OffsetDateTime::now_utc();
            let mut audit = CliAudit::new(cfg.audit.as_ref());
            let r = certs::run(command, store.as_ref(), now, cfg.crl.poll, &mut audit).await;
            store.close().await;
            r
        }
        Command::Ca { config, command } => {
            let cfg = Config::load(&config_arg(config)?)?;
            let store = cfg.store.open().await?;
            let mut audit = CliAudit::new(cfg.audit.as_ref());
            let now = time::OffsetDateTime::now_utc();
            let r = ca_cmd::run(command, &cfg, store.as_ref(), &mut audit, now).await;
            store.close().await;
            r
        }
        Command::Store { config, command } => {
            store_cmd::run(command, &Config::load(&config_arg(config)?)?).await
        }
        Command::Crl {
            command: CrlCommand::Root(args),
        } => crl_cmd::run(&args, time::OffsetDateTime::now_utc()),
        Command::Retriever { config, command } => {
            retrievers::run(command, &Config::load(&config_arg(config)?)?)
        }
        Command::Config {
            command: ConfigCommand::Check { config, passphrase },
        } => {
            let mut cfg = Config::load(&config)?;
            cfg.ca.passphrase = passphrase.for_key(&cfg.ca.key)?;
            let summary = cfg.summary();
            let store = cfg.store.open().await?;
            onlineca_server::tls::server_config(&cfg.tls)?;
            let state = AppState::load(cfg, store.clone())?;
            let users = store.list_users().await?.len();
            store.close().await;
            print!("{summary}");
            if let Some(dir) = &state.passwords.directory {
                let probe = dir
                    .probe()
                    .await
                    .map_err(|e| anyhow::anyhow!("[ldap] directory: {e}"))?;
                directory_report(&probe, dir.settings());
            }
            println!(
                "ok: issuing CA {} (valid until {}), {users} users",
                state.ca.subject_oneline(),
                state.ca.not_after(),
            );
            Ok(())
        }
    }
}

/// What `config check` found out about the directory.
fn directory_report(
    probe: &onlineca_server::ldap::Probe,
    cfg: &onlineca_server::ldap::LdapSection,
) {
    if let Some(c) = &probe.certificate {
        println!("ldap: TLS certificate {c}");
    }
    if probe.search_bind == Some(true) {
        println!(
            "ldap: bound as {}",
            cfg.search_bind_dn.as_deref().unwrap_or("")
        );
    }
    if let Some(group) = &cfg.require_group {
        match probe.group_exists {
            Some(true) => println!("ldap: group {group} exists"),
            Some(false) => {
                println!("ldap: WARNING: group {group} does not exist: nobody can log in")
            }
            None => println!("ldap: group {group} cannot be read with these credentials"),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every command, however deep, shows examples in its long help.
    #[test]
    fn every_command_has_examples() {
        fn walk(cmd: &clap::Command, path: &str) {
            let help = cmd.get_after_long_help().map(|h| h.to_string());
            assert!(
                help.is_some_and(|h| h.contains("Examples:")),
                "{path} has no examples"
            );
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        walk(&Cli::command(), "onlineca");
    }
}
