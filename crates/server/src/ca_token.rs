//! The issuing CA with its key on a PKCS#11 token (`[ca] key = "pkcs11:..."`):
//! open the module, log in with the PIN from `[ca] pin_file`, find the key, and
//! check that it belongs to the issuing certificate, before anything is served.

use std::path::{Path, PathBuf};

use onlineca_core::issuer::pem_certificates;
use onlineca_core::{IssuerError, IssuingCa};
use onlineca_pkcs11::{Module, Pin, Pkcs11Uri, TokenError, TokenKey};

use crate::config::CaSection;
use crate::state::{StartError, read};

/// Why the issuing CA's key on a token cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaTokenError {
    /// The PIN file can be read or changed by its group or others.
    #[error(
        "{path} has mode {mode:04o}: users other than its owner can read or change the \
         token's PIN; run `chmod 600 {path}` (or set [ca] allow_insecure_key_permissions \
         = true to accept this)",
        path = .path.display()
    )]
    PinPermissions {
        /// The PIN file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The module, the token, the PIN or the key.
    #[error("{0}")]
    Token(TokenError),
    /// The key found signs for another certificate.
    #[error(
        "the private key {uri} on token {token:?} does not match the issuing CA certificate \
         {}: point [ca] key at the key that certificate was issued for (or [ca] cert at \
         the key's certificate)",
        .cert.display()
    )]
    Mismatch {
        /// The URI.
        uri: String,
        /// The token's label.
        token: String,
        /// The certificate file.
        cert: PathBuf,
    },
}

/// Loads the issuing CA whose key `uri` names on a token.
pub fn load(ca: &CaSection, uri: &str, chain_pem: &str) -> Result<IssuingCa, StartError> {
    let token = |e: TokenError| StartError::Token(CaTokenError::Token(e));
    // Config::load has checked that the URI parses and both files are named.
    let uri = Pkcs11Uri::parse(uri).map_err(|e| StartError::Invalid(format!("[ca] key: {e}")))?;
    let (Some(module_path), Some(pin_path)) = (&ca.pkcs11_module, &ca.pin_file) else {
        return Err(StartError::Invalid(
            "[ca] key is a pkcs11: URI: pkcs11_module and pin_file are needed".into(),
        ));
    };
    check_pin_permissions(pin_path, ca.allow_insecure_key_permissions)?;
    let pin = Pin::from_file(pin_path).map_err(token)?;
    let module = Module::open(module_path).map_err(token)?;
    let key = TokenKey::open(&module, &uri, pin).map_err(token)?;
    let label = key.token_label().to_string();
    let cert_der = pem_certificates(&read(&ca.cert)?)
        .map_err(|e| ca_error(&ca.cert, IssuerError::Certificate(e)))?
        .into_iter()
        .next()
        .ok_or_else(|| {
            ca_error(
                &ca.cert,
                IssuerError::Certificate("no CERTIFICATE block found".into()),
            )
        })?;
    let chain =
        pem_certificates(chain_pem).map_err(|e| ca_error(&ca.cert, IssuerError::Chain(e)))?;
    let issuing = IssuingCa::with_key(cert_der, Box::new(key), &chain).map_err(|e| match e {
        IssuerError::KeyMismatch => StartError::Token(CaTokenError::Mismatch {
            uri: uri.to_string(),
            token: label.clone(),
            cert: ca.cert.clone(),
        }),
        // The start-up probe signature failed on the token itself.
        IssuerError::Device(m) => StartError::Invalid(format!("{uri}: {m}")),
        other => ca_error(&ca.cert, other),
    })?;
    tracing::info!(
        module = %module.path().display(),
        token = %label,
        uri = %uri,
        "the issuing CA key is on a PKCS#11 token"
    );
    Ok(issuing)
}

fn ca_error(path: &Path, error: IssuerError) -> StartError {
    StartError::Ca {
        path: path.to_path_buf(),
        error,
    }
}

/// The PIN unlocks the key: the same rule as for a key file.
fn check_pin_permissions(path: &Path, allow: bool) -> Result<(), StartError> {
    match crate::state::exposed_mode(path, allow, "the token's PIN file") {
        Some(mode) => Err(StartError::Token(CaTokenError::PinPermissions {
            path: path.to_path_buf(),
            mode,
        })),
        None => Ok(()),
    }
}
