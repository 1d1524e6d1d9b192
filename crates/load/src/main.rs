//! `onlineca-load`: a closed-loop load generator for onlineca (and cfssl's
//! `authsign`, to compare), loopback only, bounded in time and count.

mod args;
mod conn;
mod credentials;
mod csr;
mod endpoint;
mod hold;
mod mix;
mod payload;
mod procfs;
mod run;
mod stats;
mod tls;

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;

use args::{Args, ConnMode, Target};
use conn::Connector;
use endpoint::Endpoint;
use payload::Payload;

fn main() {
    let args = Args::parse();
    if let Err(e) = real_main(args) {
        eprintln!("onlineca-load: {e:#}");
        std::process::exit(1);
    }
}

fn real_main(args: Args) -> Result<()> {
    args.check()?;
    let endpoint = Endpoint::parse(&args.url)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    if let Some(n) = args.hold {
        return runtime.block_on(hold_mode(&args, &endpoint, n));
    }
    let csrs = csr::pool(args.csr_key, args.csr_pool, args.csr_cache.as_deref())?;
    if args.mix.is_some() {
        return runtime.block_on(mix_mode(&args, &endpoint, &csrs));
    }
    runtime.block_on(load_mode(&args, &endpoint, &csrs))
}

async fn mix_mode(args: &Args, endpoint: &Endpoint, csrs: &[String]) -> Result<()> {
    let mix = Arc::new(mix::Mix::new(args, endpoint, csrs)?);
    let config = tls::client_config(&args.cacert, None, args.tls_resume)?;
    let connector = Arc::new(Connector::new(endpoint, config));
    let plan = mix::MixPlan {
        concurrency: args.concurrency,
        requests: args.requests.context("--mix needs --requests")?,
        duration: args.duration,
        mode: args.connection,
        timeout: args.timeout,
        sources: args.source.clone(),
    };
    let report = mix::drive(plan, connector, mix, args.server_pid).await?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

async fn hold_mode(args: &Args, endpoint: &Endpoint, n: usize) -> Result<()> {
    let config = tls::client_config(&args.cacert, None, args.tls_resume)?;
    let connector = Arc::new(Connector::new(endpoint, config));
    let probe = (args.target == Target::Onlineca)
        .then(|| (endpoint.path("/trustroots/"), endpoint.authority.clone()));
    let held = hold::hold(
        n,
        connector,
        probe,
        args.hold_for,
        args.timeout,
        args.server_pid,
    )
    .await?;
    if args.json {
        println!("{}", held.to_json());
    } else {
        print!("{}", held.to_text());
    }
    Ok(())
}

async fn load_mode(args: &Args, endpoint: &Endpoint, csrs: &[String]) -> Result<()> {
    let (payload, identity) = match args.target {
        Target::Cfssl => {
            let path = args
                .hmac_key_hex_file
                .as_ref()
                .context("--target cfssl needs --hmac-key-hex-file")?;
            let hex_text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let key = hex::decode(hex_text.trim())
                .with_context(|| format!("{}: not hex", path.display()))?;
            let p = Payload::cfssl(
                &endpoint.path("/api/v1/cfssl/authsign"),
                &endpoint.authority,
                &key,
                csrs,
            )?;
            (p, None)
        }
        Target::Onlineca => credentials::onlineca_payload(args, endpoint, csrs).await?,
    };
    let config = tls::client_config(&args.cacert, identity, args.tls_resume)?;
    let connector = Arc::new(Connector::new(endpoint, config));
    let plan = run::Plan {
        concurrency: args.concurrency,
        warmup: args.warmup,
        duration: args.duration,
        cap: args.requests,
        mode: args.connection,
        timeout: args.timeout,
    };
    let measured = run::drive(plan, connector.clone(), Arc::new(payload), args.server_pid).await?;
    let (target, auth) = match args.target {
        Target::Onlineca => ("onlineca", format!("{:?}", args.auth_mode()).to_lowercase()),
        Target::Cfssl => ("cfssl", "hmac".to_string()),
    };
    let connection = match args.connection {
        ConnMode::New => "new",
        ConnMode::Keepalive => "keepalive",
    };
    let csr_key = format!("{:?}", args.csr_key).to_lowercase();
    let report = stats::Report {
        run: json!({
            "target": target,
            "auth": auth,
            "connection": connection,
            "concurrency": args.concurrency,
            "csr_key": csr_key,
            "csr_pool": csrs.len(),
            "tls_resume": args.tls_resume,
        }),
        title: format!(
            "{target} {auth}, {connection} connection, c={}, {csr_key} CSRs ({} distinct)",
            args.concurrency,
            csrs.len()
        ),
        window: measured.window,
        tally: {
            let mut t = measured.tally;
            // A connection-level failure says more than its kind alone.
            if let (Some(e), Some(detail)) = (&t.example, connector.first_error())
                && detail.starts_with(e.as_str())
            {
                t.example = Some(detail.to_string());
            }
            t
        },
        server: measured.server,
        generator_cpu: measured.generator_cpu,
        tls: connector.negotiated().map(str::to_string),
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if report.certificates() == 0 {
        eprintln!("onlineca-load: no certificate was issued in the window");
        std::process::exit(3);
    }
    Ok(())
}
