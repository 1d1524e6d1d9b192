//! Password hashing: argon2id in PHC string form.
//!
//! Verification costs tens of milliseconds by design; callers run it on a blocking
//! thread. Unknown users are checked against a fixed dummy hash so that a wrong
//! username takes as long as a wrong password.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;

/// Hashing failed (bad parameters or no randomness); never the caller's input.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes a password with argon2id and a random salt.
pub fn hash(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Checks a password against a stored PHC hash. A malformed stored hash never matches.
/// Allocates the hash's memory for this one check; a thread that verifies many
/// passwords keeps a [`Verifier`] instead.
pub fn verify(password: &str, stored: &str) -> bool {
    Verifier::new().verify(password, stored)
}

/// The largest argon2 memory a stored hash may ask for (1 GiB): a hash written by
/// anything but `hash` is not trusted to size an allocation.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;

/// Verifies passwords with one reusable argon2 memory area (19 MiB with the default
/// parameters), so that a worker thread holds it once rather than allocating and
/// freeing it per check: the allocator then has nothing to fragment or hold on to.
#[derive(Default)]
pub struct Verifier {
    memory: Vec<Block>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("blocks", &self.memory.len())
            .finish()
    }
}

impl Verifier {
    /// A verifier that allocates its memory at the first check.
    pub fn new() -> Self {
        Verifier::default()
    }

    /// Checks `password` against the stored PHC hash `stored`; a malformed hash, or
    /// one whose parameters are out of bounds, never matches. The comparison of the
    /// outputs is constant-time.
    pub fn verify(&mut self, password: &str, stored: &str) -> bool {
        self.check(password, stored).unwrap_or(false)
    }

    /// Burns the time of one verification, for a username that does not exist.
    pub fn verify_dummy(&mut self, password: &str) {
        let _ = self.verify(password, dummy_hash());
    }

    fn check(&mut self, password: &str, stored: &str) -> Option<bool> {
        let parsed = PasswordHash::new(stored).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let params = Params::try_from(&parsed).ok()?;
        if params.m_cost() > MAX_MEMORY_KIB {
            return None;
        }
        let expected = parsed.hash?;
        let mut salt = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
        let blocks = params.block_count();
        if self.memory.len() < blocks {
            self.memory.resize(blocks, Block::default());
        }
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(
                password.as_bytes(),
                salt,
                &mut out,
                &mut self.memory[..blocks],
            )
            .ok()?;
        Some(bool::from(out.ct_eq(expected.as_bytes())))
    }
}

/// The hash unknown usernames are checked against, made once per process.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash("no user has this password").unwrap_or_default())
}

/// Burns the time of one verification, for a username that does not exist.
pub fn verify_dummy(password: &str) {
    Verifier::new().verify_dummy(password);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_and_rejects() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse", &h));
        assert!(!verify("correct horsf", &h));
        assert!(!verify("correct horse", "not a hash"));
        assert_ne!(h, hash("correct horse").unwrap(), "salts must differ");
    }

    #[test]
    fn reused_verifier_matches_the_library() {
        let mut v = Verifier::new();
        let a = hash("first").unwrap();
        let b = hash("second").unwrap();
        for _ in 0..2 {
            assert!(v.verify("first", &a));
            assert!(!v.verify("first", &b));
            assert!(v.verify("second", &b));
        }
        // Other parameters (less memory, argon2i) still verify with the same memory.
        let params = Params::new(8 * 1024, 3, 1, None).unwrap();
        let salt = SaltString::generate(&mut OsRng);
        let other = Argon2::new(Algorithm::Argon2i, Version::V0x13, params)
            .hash_password(b"third", &salt)
            .unwrap()
            .to_string();
        assert!(v.verify("third", &other));
        assert!(!v.verify("thirds", &other));
        // A hash asking for more memory than allowed never matches.
        let huge = other.replace("m=8192", "m=4194304");
        assert!(!v.verify("third", &huge));
    }
}
