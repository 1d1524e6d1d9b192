//! `onlineca serve`: a configured CA, or a directory where one is created on first
//! run. The address is bound before anything is created, so a busy port costs
//! nothing and says which address and flag to change.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use onlineca_server::audit::Event;
use onlineca_server::{AppState, Config};
use time::OffsetDateTime;
use tokio::net::TcpListener;

use crate::init;

/// Arguments of `onlineca serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The configuration file (else ONLINECA_CONFIG, when --dir is not given either).
    #[arg(long, conflicts_with = "dir")]
    pub config: Option<PathBuf>,
    /// A CA directory; a new CA is created there with default settings if it holds none.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Listen on this address instead of the configured one (port 0: any free port).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub passphrase: crate::passphrase::PassphraseArgs,
}

/// Runs `onlineca serve`.
pub async fn run(args: ServeArgs) -> Result<()> {
    // Explicit flags first; the environment only when neither is given (clap would
    // otherwise count ONLINECA_CONFIG as a --config that conflicts with --dir).
    let (config_path, new_dir) = match (args.config, args.dir) {
        (Some(c), _) => (c, None),
        (None, Some(dir)) => {
            let c = dir.join(init::CONFIG_FILE);
            let new = (!c.exists()).then_some(dir);
            (c, new)
        }
        (None, None) => match std::env::var_os("ONLINECA_CONFIG") {
            Some(c) => (PathBuf::from(c), None),
            None => bail!(
                "nothing to serve: pass --dir DIR (a CA directory, created on first run), \
                 or --config FILE (or set ONLINECA_CONFIG) for a CA made by 'onlineca init'"
            ),
        },
    };

    let listener = match &new_dir {
        Some(dir) => {
            let init_args = init::InitArgs::with_defaults(dir)?;
            let addr = args.listen.unwrap_or(init_args.listen);
            let listener = bind(addr, args.listen.is_some()).await?;
            init::run(&init_args).await?;
            listener
        }
        None => {
            let cfg = Config::load(&config_path)?;
            bind(
                args.listen.unwrap_or(cfg.server.listen),
                args.listen.is_some(),
            )
            .await?
        }
    };
    serve(&config_path, listener, &args.passphrase).await
}

/// Binds `addr`, saying on failure which address and what to change.
async fn bind(addr: SocketAddr, from_flag: bool) -> Result<TcpListener> {
    onlineca_server::bind(addr).await.map_err(|e| {
        let how = if from_flag {
            "choose another --listen address"
        } else {
            "is onlineca already running there? Choose another address with --listen ADDR, \
             or [server] listen in the configuration"
        };
        anyhow::anyhow!("{e}; {how}")
    })
}

async fn serve(
    config_path: &Path,
    listener: TcpListener,
    passphrase: &crate::passphrase::PassphraseArgs,
) -> Result<()> {
    let mut cfg = Config::load(config_path)?;
    cfg.ca.passphrase = passphrase.for_key(&cfg.ca.key)?;
    let addr = listener.local_addr()?;
    cfg.server.listen = addr;
    let store = cfg.store.open().await.with_context(|| {
        format!(
            "opening the store {}",
            onlineca_server::config::redact_url(&cfg.store.url)
        )
    })?;
    let admin = match cfg.admin.listen {
        Some(a) => Some(onlineca_server::bind(a).await.map_err(|e| {
            anyhow::anyhow!("[admin] listen: {e}; choose another address in the configuration")
        })?),
        None => None,
    };
    let state = Arc::new(AppState::load(cfg, store.clone())?);
    let admin_task = match admin {
        Some(l) => {
            let a = l.local_addr()?;
            tracing::info!(addr = %a, "admin listener (/metrics, /healthz, /readyz)");
            // On stderr, like the log: stdout's first line stays the service URL.
            eprintln!("onlineca admin listening on http://{a}");
            Some(tokio::spawn(onlineca_server::admin::serve(
                state.clone(),
                l,
                std::future::pending(),
            )))
        }
        None => None,
    };
    let base = format!(
        "https://{addr}{}",
        state.config.server.prefix.trim_end_matches('/')
    );
    tracing::info!(%addr, issuing_ca = state.ca.subject_oneline(), "listening");
    // The first line on stdout is the service URL: scripts and tests read it (an
    // audit log on standard output follows it).
    println!("onlineca listening on {base}");
    let started = Event::ServerStarted {
        version: env!("CARGO_PKG_VERSION"),
        listen: addr.to_string(),
        issuing_ca: state.ca.subject_oneline().to_string(),
        store: onlineca_server::config::redact_url(&state.config.store.url),
    };
    state
        .audit
        .record(OffsetDateTime::now_utc(), &started)
        .await
        .context("the audit log ([audit] required)")
        .or_else(|e| {
            if state.audit.required() {
                Err(e)
            } else {
                Ok(())
            }
        })?;
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
    onlineca_server::serve(state.clone(), listener, shutdown_signal()).await?;
    if let Some(t) = admin_task {
        t.abort();
    }
    let stopped = Event::ServerStopped {
        reason: "signal: every request answered",
    };
    // Stopping anyway: a missing last record is logged by the audit log itself.
    let _ = state
        .audit
        .record(OffsetDateTime::now_utc(), &stopped)
        .await;
    store.close().await;
    // The last line, so that a log reader knows the stop was clean and complete.
    tracing::info!("stopped: every request answered and the store closed");
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
