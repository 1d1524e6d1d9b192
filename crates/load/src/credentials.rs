//! onlineca's credentials: what each authentication mode sends and presents.

use anyhow::{Context, Result, bail};

use crate::args::{Args, AuthMode};
use crate::conn::Connector;
use crate::endpoint::Endpoint;
use crate::payload::{self, Payload};
use crate::tls::Identity;
use crate::{csr, tls};

/// The onlineca requests and the client identity they need.
pub async fn onlineca_payload(
    args: &Args,
    endpoint: &Endpoint,
    csrs: &[String],
) -> Result<(Payload, Option<Identity>)> {
    let path = endpoint.path("/certificate/");
    let given = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => Some(Identity::from_files(c, k)?),
        _ => None,
    };
    let (authorization, identity) = match args.auth_mode() {
        AuthMode::Password => {
            let user = args
                .user
                .as_deref()
                .context("--auth password needs --user")?;
            let password = args
                .password()?
                .context("--auth password needs --password-file or ONLINECA_LOAD_PASSWORD")?;
            (Some(payload::basic(user, &password)?), given)
        }
        AuthMode::Retriever => {
            let user = args
                .user
                .as_deref()
                .context("--auth retriever needs --user (the user the portal asks for)")?;
            let Some(identity) = given else {
                bail!("--auth retriever needs the portal's --cert and --key");
            };
            let password = args.password()?.unwrap_or_else(|| "unused".into());
            (Some(payload::basic(user, &password)?), Some(identity))
        }
        AuthMode::Renewal => {
            let identity = match given {
                Some(id) => id,
                None => bootstrap(args, endpoint, &path).await.context(
                    "--auth renewal needs --cert and --key, or --user and a password to get a first certificate",
                )?,
            };
            (None, Some(identity))
        }
    };
    let payload = Payload::onlineca(&path, &endpoint.authority, authorization, csrs)?;
    Ok((payload, identity))
}

/// One certificate obtained with the password (not counted), for renewal runs.
async fn bootstrap(args: &Args, endpoint: &Endpoint, path: &str) -> Result<Identity> {
    let user = args.user.as_deref().context("no --user")?;
    let password = args.password()?.context("no password")?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let csr = csr::request(&key)?;
    let payload = Payload::onlineca(
        path,
        &endpoint.authority,
        Some(payload::basic(user, &password)?),
        &[csr],
    )?;
    let config = tls::client_config(&args.cacert, None, false)?;
    let mut conn = Connector::new(endpoint, config)
        .connect()
        .await
        .map_err(|f| anyhow::anyhow!("cannot reach {}: {f}", args.url))?;
    let (status, body) = tokio::time::timeout(args.timeout, conn.send(payload.request(0)))
        .await
        .context("timed out")?
        .map_err(|f| anyhow::anyhow!("request failed: {f}"))?;
    if status != hyper::StatusCode::OK {
        bail!(
            "the password request answered {status}: {}",
            String::from_utf8_lossy(&body).lines().next().unwrap_or("")
        );
    }
    payload::check_certificate(&body).map_err(anyhow::Error::msg)?;
    let chain = tls::certificates(std::str::from_utf8(&body)?)?;
    let key = rustls_pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into();
    Ok(Identity { chain, key })
}
