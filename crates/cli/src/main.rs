//! The `onlineca` command: create a CA, serve it, manage its users and the
//! certificates it issued, and (on the user's side) fetch trust roots and get
//! certificates.

mod certs;
mod crl_cmd;
mod files;
mod getcert;
mod init;
mod retrievers;
mod trustroots_cmd;
mod users;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use onlineca_server::{AppState, Config};

/// An online certificate authority: short-lived client certificates for mutual TLS,
/// issued to authenticated users from a CSR.
#[derive(Debug, Parser)]
#[command(name = "onlineca", version, about)]
struct Cli {
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
    Init(init::InitArgs),
    /// Serve the CA over HTTPS.
    Serve {
        /// The configuration file.
        #[arg(long, conflicts_with = "dir", required_unless_present = "dir")]
        config: Option<PathBuf>,
        /// A CA directory; a new CA is created there with default settings if it holds none.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Listen on this address instead of the configured one (port 0: any free port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Manage the users who may get certificates by password.
    User {
        /// The configuration file.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: users::UserCommand,
    },
    /// The issued certificates: list, show, revoke.
    Cert {
        /// The configuration file.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: certs::CertCommand,
    },
    /// Sign CRLs the server does not publish itself.
    Crl {
        #[command(subcommand)]
        command: CrlCommand,
    },
    /// Show the trusted retrievers.
    Retriever {
        /// The configuration file.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: retrievers::RetrieverCommand,
    },
    /// Fetch the service's trust roots into a directory (pinned, bootstrap or refresh).
    Trustroots(trustroots_cmd::TrustrootsArgs),
    /// Get a certificate: a key made here, a CSR sent, the certificate written out.
    Getcert(getcert::GetcertArgs),
    /// Check the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CrlCommand {
    /// Sign an empty CRL with a CA key at hand, normally the offline root (nginx's
    /// ssl_crl wants a CRL for every CA of the chain).
    Root(crl_cmd::RootCrlArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration (and the files it names) and print the effective settings.
    Check {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
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
    config
        .or_else(|| std::env::var_os("ONLINECA_CONFIG").map(PathBuf::from))
        .context("no configuration: pass --config DIR/onlineca.toml (or set ONLINECA_CONFIG)")
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
        Command::Serve {
            config,
            dir,
            listen,
        } => {
            let config_path = match (config, dir) {
                (Some(c), _) => c,
                (None, Some(dir)) => quickstart(&dir).await?,
                (None, None) => anyhow::bail!("pass --config FILE or --dir DIR"),
            };
            serve(&config_path, listen).await
        }
        Command::User { config, command } => {
            let cfg = Config::load(&config_arg(config)?)?;
            let template = cfg.subject_template()?;
            let store = onlineca_store::open(&cfg.store.url).await?;
            let r = users::run(command, store.as_ref(), &template).await;
            store.close().await;
            r
        }
        Command::Cert { config, command } => {
            let cfg = Config::load(&config_arg(config)?)?;
            let store = onlineca_store::open(&cfg.store.url).await?;
            let now = time::OffsetDateTime::now_utc();
            let r = certs::run(command, store.as_ref(), now, cfg.crl.poll).await;
            store.close().await;
            r
        }
        Command::Crl {
            command: CrlCommand::Root(args),
        } => crl_cmd::run(&args, time::OffsetDateTime::now_utc()),
        Command::Retriever { config, command } => {
            retrievers::run(command, &Config::load(&config_arg(config)?)?)
        }
        Command::Config {
            command: ConfigCommand::Check { config },
        } => {
            let cfg = Config::load(&config)?;
            let summary = cfg.summary();
            let store = onlineca_store::open(&cfg.store.url).await?;
            onlineca_server::tls::server_config(&cfg.tls)?;
            let state = AppState::load(cfg, store.clone())?;
            let users = store.list_users().await?.len();
            store.close().await;
            print!("{summary}");
            println!(
                "ok: issuing CA {} (valid until {}), {users} users",
                state.ca.subject_oneline(),
                state.ca.not_after(),
            );
            Ok(())
        }
    }
}

/// For `serve --dir`: create a CA there on first use, and say how to use it.
async fn quickstart(dir: &Path) -> Result<PathBuf> {
    let config = dir.join(init::CONFIG_FILE);
    if !config.exists() {
        let args = init::InitArgs::with_defaults(dir)?;
        init::run(&args).await?;
    }
    Ok(config)
}

async fn serve(config_path: &Path, listen: Option<std::net::SocketAddr>) -> Result<()> {
    let mut cfg = Config::load(config_path)?;
    if let Some(l) = listen {
        cfg.server.listen = l;
    }
    let store = onlineca_store::open(&cfg.store.url)
        .await
        .with_context(|| {
            format!(
                "opening the store {}",
                onlineca_server::config::redact_url(&cfg.store.url)
            )
        })?;
    let state = Arc::new(AppState::load(cfg, store.clone())?);
    let listener = onlineca_server::bind(state.config.server.listen).await?;
    let addr = listener.local_addr()?;
    let base = format!(
        "https://{addr}{}",
        state.config.server.prefix.trim_end_matches('/')
    );
    tracing::info!(%addr, issuing_ca = state.ca.subject_oneline(), "listening");
    // The first line on stdout is the service URL: scripts and tests read it.
    println!("onlineca listening on {base}");
    let users = state.store.list_users().await.map(|u| u.len()).unwrap_or(0);
    if users == 0 {
        let cfg = config_path.display();
        let exe = std::env::current_exe().unwrap_or_else(|_| "onlineca".into());
        let exe = exe.display();
        eprintln!(
            "\nNo users yet. To get a first certificate:\n  {exe} user add alice --config {cfg}\n  curl -s --cacert {ca} {base}/trustroots/ >/dev/null   # the CA is reachable\n  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout alice.key -subj /CN=alice -out alice.csr\n  curl --cacert {ca} -u alice --data-urlencode certificate_request@alice.csr {base}/certificate/ > alice.pem\n",
            ca = state
                .config
                .ca
                .chain
                .as_ref()
                .unwrap_or(&state.config.ca.cert)
                .display(),
        );
    }
    onlineca_server::serve(state, listener, shutdown_signal()).await?;
    store.close().await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutdown signal received");
}
