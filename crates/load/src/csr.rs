//! The pool of certificate signing requests sent, made once at start.

use std::path::Path;

use anyhow::{Context, Result};
use x509_parser::oid_registry::{OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION};
use x509_parser::prelude::FromDer;

use crate::args::CsrKey;

/// `n` PEM CSRs with keys of `kind`: read from `cache` if it holds enough of that
/// kind, else generated (on every core) and, with a `cache`, written there.
pub fn pool(kind: CsrKey, n: usize, cache: Option<&Path>) -> Result<Vec<String>> {
    if let Some(path) = cache
        && let Ok(text) = std::fs::read_to_string(path)
    {
        let found = cached(&text, kind)?;
        if found.len() >= n {
            return Ok(found.into_iter().take(n).collect());
        }
    }
    let csrs = generate(kind, n)?;
    if let Some(path) = cache {
        std::fs::write(path, csrs.concat())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(csrs)
}

/// The CSRs of a cache file, if all have keys of `kind` (else none).
fn cached(text: &str, kind: CsrKey) -> Result<Vec<String>> {
    let wanted = match kind {
        CsrKey::Rsa2048 => OID_PKCS1_RSAENCRYPTION,
        CsrKey::P256 => OID_KEY_TYPE_EC_PUBLIC_KEY,
    };
    let mut out = Vec::new();
    for block in pem::parse_many(text)? {
        let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(
            block.contents(),
        )
        .map_err(|e| anyhow::anyhow!("cached CSR: {e}"))?;
        if req
            .certification_request_info
            .subject_pki
            .algorithm
            .algorithm
            != wanted
        {
            return Ok(Vec::new());
        }
        let lf = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
        out.push(pem::encode_config(&block, lf));
    }
    Ok(out)
}

/// Generates `n` CSRs using every available core.
fn generate(kind: CsrKey, n: usize) -> Result<Vec<String>> {
    let threads = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(1)
        .min(n);
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let count = per.min(n.saturating_sub(t * per));
                s.spawn(move || (0..count).map(|_| one(kind)).collect::<Result<Vec<_>>>())
            })
            .collect();
        let mut all = Vec::with_capacity(n);
        for h in handles {
            all.extend(h.join().expect("CSR thread panicked")?);
        }
        Ok(all)
    })
}

/// One CSR with a fresh key (its subject is ignored by both servers' policies here).
pub fn one(kind: CsrKey) -> Result<String> {
    let alg = match kind {
        CsrKey::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        CsrKey::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
    };
    let key = rcgen::KeyPair::generate_for(alg)?;
    Ok(request(&key)?)
}

/// A CSR for `key`, subject `CN=onlineca-load`.
pub fn request(key: &rcgen::KeyPair) -> Result<String, rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "onlineca-load");
    params.serialize_request(key)?.pem()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_round_trip_and_kind_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("csrs.pem");
        let made = pool(CsrKey::P256, 3, Some(&path)).unwrap();
        assert_eq!(made.len(), 3);
        let again = pool(CsrKey::P256, 2, Some(&path)).unwrap();
        assert_eq!(again, made[..2]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(cached(&text, CsrKey::Rsa2048).unwrap().is_empty());
    }
}
