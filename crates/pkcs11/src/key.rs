//! The issuing CA key on a token: a [`CaKey`] that signs through a small pool of
//! logged-in sessions.
//!
//! A PKCS#11 session runs one operation at a time, so each signature takes a session
//! of its own from the pool (opening one, up to [`MAX_SESSIONS`], when none is idle)
//! and gives it back. A session whose signature failed is closed rather than given
//! back: the next signature opens a fresh one and logs in again, so a token that
//! comes back (a restarted HSM daemon, a re-plugged device) is used again without a
//! restart, while every signature tried in between fails.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use onlineca_core::{CaKey, IssuerError};

use crate::token::{self, Module, Token};
use crate::{Pin, Pkcs11Uri, TokenError};

/// Sessions open at most: signatures beyond this many wait for one to finish.
pub const MAX_SESSIONS: usize = 4;

/// How long a signature waits for a session before it fails: a hung token must
/// not pile up waiting threads behind the sessions it holds.
pub const SESSION_WAIT: Duration = Duration::from_secs(10);

/// A private key on a token, found by its URI.
pub struct TokenKey {
    module: Module,
    token: Token,
    uri: Pkcs11Uri,
    pin: Pin,
    algorithm: &'static rcgen::SignatureAlgorithm,
    public_bits: Option<Vec<u8>>,
    pool: Mutex<Pool>,
    freed: Condvar,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("module", &self.module)
            .field("token", &self.token.label)
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Pool {
    idle: Vec<Pooled>,
    open: usize,
}

/// A logged-in session and the key's handle in it.
struct Pooled {
    session: Session,
    key: ObjectHandle,
}

impl TokenKey {
    /// Finds the token and the private key `uri` names, logs in with `pin`, and
    /// reads how the key signs. Every failure names the module, the token or the URI.
    pub fn open(module: &Module, uri: &Pkcs11Uri, pin: Pin) -> Result<TokenKey, TokenError> {
        let token = module.find_token(uri)?;
        let session = module.session(&token, &pin, false)?;
        let key = token::find_private_key(module, &token, &session, uri)?;
        let facts = token::key_facts(module, &token, &session, uri, key)?;
        Ok(TokenKey {
            module: module.clone(),
            token,
            uri: uri.clone(),
            pin,
            algorithm: facts.algorithm,
            public_bits: facts.public_bits,
            pool: Mutex::new(Pool {
                idle: vec![Pooled { session, key }],
                open: 1,
            }),
            freed: Condvar::new(),
        })
    }

    /// The token's label.
    pub fn token_label(&self) -> &str {
        &self.token.label
    }

    /// The URI the key was found by.
    pub fn uri(&self) -> &Pkcs11Uri {
        &self.uri
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        // The pool is consistent between statements: a panic elsewhere leaves it usable.
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle session, a new one while fewer than [`MAX_SESSIONS`] are open, or
    /// the next one given back within [`SESSION_WAIT`].
    fn take(&self) -> Result<Pooled, TokenError> {
        let deadline = Instant::now() + SESSION_WAIT;
        let mut pool = self.lock();
        loop {
            if let Some(p) = pool.idle.pop() {
                return Ok(p);
            }
            if pool.open < MAX_SESSIONS {
                pool.open += 1;
                drop(pool);
                return self.open_session().inspect_err(|_| self.forget());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TokenError::SessionsBusy {
                    token: self.token.label.clone(),
                    waited: SESSION_WAIT,
                });
            }
            pool = self
                .freed
                .wait_timeout(pool, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn open_session(&self) -> Result<Pooled, TokenError> {
        let session = self.module.session(&self.token, &self.pin, false)?;
        let key = token::find_private_key(&self.module, &self.token, &session, &self.uri)?;
        Ok(Pooled { session, key })
    }

    fn give_back(&self, p: Pooled) {
        self.lock().idle.push(p);
        self.freed.notify_one();
    }

    /// Counts a session as closed (it was dropped, or never opened).
    fn forget(&self) {
        self.lock().open -= 1;
        self.freed.notify_one();
    }

    fn sign_in(&self, p: &Pooled, message: &[u8]) -> Result<Vec<u8>, TokenError> {
        let fail = |e: cryptoki::error::Error| self.module.call_error(&self.token.label, &e);
        if self.algorithm == &rcgen::PKCS_RSA_SHA256 {
            // PKCS#1 v1.5 with SHA-256, hashed by the token: sha256WithRSAEncryption.
            return p
                .session
                .sign(&Mechanism::Sha256RsaPkcs, p.key, message)
                .map_err(fail);
        }
        // CKM_ECDSA signs a digest we make, and answers r‖s; X.509 wants DER.
        let digest = if self.algorithm == &rcgen::PKCS_ECDSA_P384_SHA384 {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, message)
        } else {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message)
        };
        let raw = p
            .session
            .sign(&Mechanism::Ecdsa, p.key, digest.as_ref())
            .map_err(fail)?;
        crate::ecdsa::raw_to_der(&raw).map_err(|code| TokenError::Call {
            token: self.token.label.clone(),
            module: self.module.path().to_path_buf(),
            call: "C_Sign".into(),
            code,
        })
    }
}

impl CaKey for TokenKey {
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm
    }

    fn public_key_bits(&self) -> Option<&[u8]> {
        self.public_bits.as_deref()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, IssuerError> {
        let p = self
            .take()
            .map_err(|e| IssuerError::Device(e.to_string()))?;
        match self.sign_in(&p, message) {
            Ok(sig) => {
                self.give_back(p);
                Ok(sig)
            }
            Err(e) => {
                tracing::warn!(
                    uri = %self.uri,
                    error = %e,
                    "a signature on the token failed; closing its session (the next \
                     signature opens a new one)"
                );
                drop(p);
                self.forget();
                Err(IssuerError::Device(e.to_string()))
            }
        }
    }

    fn is_device(&self) -> bool {
        true
    }
}

/// The public half of a key made on a token, as a certificate for it needs it.
#[derive(Debug, Clone)]
pub struct PublicKey {
    algorithm: &'static rcgen::SignatureAlgorithm,
    bits: Vec<u8>,
}

impl rcgen::PublicKeyData for PublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm
    }
}

/// Creates the issuing CA's key pair on the token `uri` names (see the crate's
/// documentation for its attributes) and opens it for signing. Returns the key and
/// its public half, for the certificate.
pub fn generate(
    module: &Module,
    uri: &Pkcs11Uri,
    pin: Pin,
    key_type: onlineca_core::pki::KeyType,
) -> Result<(TokenKey, PublicKey), TokenError> {
    let token = module.find_token(uri)?;
    token::generate(module, &token, &pin, uri, key_type)?;
    let key = TokenKey::open(module, uri, pin)?;
    let bits = key.public_bits.clone().ok_or_else(|| TokenError::Call {
        token: token.label.clone(),
        module: module.path().to_path_buf(),
        call: "C_GetAttributeValue".into(),
        code: "the new key's public half cannot be read".into(),
    })?;
    let public = PublicKey {
        algorithm: key.algorithm,
        bits,
    };
    Ok((key, public))
}
