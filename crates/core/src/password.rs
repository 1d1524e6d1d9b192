//! Password hashing: argon2id in PHC string form, and the verification of the
//! schemes of imported Apache htpasswd files (bcrypt, SHA-crypt, APR1-MD5), which a
//! successful login replaces by argon2id.
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

    /// Checks `password` against the stored hash `stored`, in whichever [`Scheme`]
    /// it is; a malformed hash, one whose parameters are out of bounds, or one of no
    /// local scheme (a directory account) never matches. Comparisons are
    /// constant-time.
    pub fn verify(&mut self, password: &str, stored: &str) -> bool {
        match Scheme::of(stored) {
            Scheme::Argon2 => self.check(password, stored).unwrap_or(false),
            Scheme::Bcrypt | Scheme::Sha512Crypt | Scheme::Sha256Crypt | Scheme::Apr1Md5 => {
                import_problem(stored).is_none() && verify_imported(password, stored)
            }
            Scheme::Directory | Scheme::Unknown => false,
        }
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

/// How a stored password hash is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// argon2 (PHC string), what onlineca writes.
    Argon2,
    /// bcrypt (`$2y$`, `$2b$`, `$2a$`), from an htpasswd file.
    Bcrypt,
    /// SHA-512-crypt (`$6$`), from an htpasswd file.
    Sha512Crypt,
    /// SHA-256-crypt (`$5$`), from an htpasswd file.
    Sha256Crypt,
    /// Apache's APR1-MD5 (`$apr1$`), from an htpasswd file.
    Apr1Md5,
    /// No local password: the account's password is checked by the directory
    /// ([`DIRECTORY_MARKER`]).
    Directory,
    /// Anything else; never matches.
    Unknown,
}

/// The stored "hash" of an account whose password the directory (LDAP) checks.
pub const DIRECTORY_MARKER: &str = "{ldap}";

impl Scheme {
    /// The scheme of a stored hash, by its prefix.
    pub fn of(stored: &str) -> Scheme {
        if stored.starts_with("$argon2") {
            Scheme::Argon2
        } else if ["$2y$", "$2b$", "$2a$"]
            .iter()
            .any(|p| stored.starts_with(p))
        {
            Scheme::Bcrypt
        } else if stored.starts_with("$6$") {
            Scheme::Sha512Crypt
        } else if stored.starts_with("$5$") {
            Scheme::Sha256Crypt
        } else if stored.starts_with("$apr1$") {
            Scheme::Apr1Md5
        } else if stored == DIRECTORY_MARKER {
            Scheme::Directory
        } else {
            Scheme::Unknown
        }
    }

    /// Its name, as `onlineca user list` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Argon2 => "argon2id",
            Scheme::Bcrypt => "bcrypt",
            Scheme::Sha512Crypt => "sha512-crypt",
            Scheme::Sha256Crypt => "sha256-crypt",
            Scheme::Apr1Md5 => "apr1-md5",
            Scheme::Directory => "ldap",
            Scheme::Unknown => "unknown",
        }
    }

    /// Whether a hash in this scheme is replaced by argon2id at the next successful
    /// login.
    pub fn is_imported(self) -> bool {
        matches!(
            self,
            Scheme::Bcrypt | Scheme::Sha512Crypt | Scheme::Sha256Crypt | Scheme::Apr1Md5
        )
    }
}

/// The most bcrypt cost an imported hash may have (`htpasswd -B` writes 5; `-C`
/// allows up to 17): a hash is not trusted to set the price of every login.
const MAX_BCRYPT_COST: u32 = 17;
/// The most SHA-crypt rounds an imported hash may have (the default is 5,000).
const MAX_SHA_CRYPT_ROUNDS: u32 = 1_000_000;

/// Why the htpasswd hash `stored` cannot be imported, or `None` if it can: one of
/// the accepted schemes, well formed, with a cost that does not make every login
/// a burden. The reason names the scheme for what is refused.
pub fn import_problem(stored: &str) -> Option<String> {
    let scheme = Scheme::of(stored);
    if !scheme.is_imported() {
        return Some(if stored.starts_with("{SHA}") {
            "{SHA} (unsalted SHA-1) hashes are not accepted".into()
        } else if stored.starts_with("$1$") {
            "MD5-crypt ($1$) hashes are not accepted; htpasswd's MD5 is $apr1$".into()
        } else if stored.len() == 13
            && stored
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
        {
            "DES-crypt hashes are not accepted (8-character passwords, broken)".into()
        } else if scheme == Scheme::Argon2 {
            "argon2 hashes are not an htpasswd scheme; use `onlineca user add`".into()
        } else {
            "not a bcrypt, SHA-512-crypt, SHA-256-crypt or APR1-MD5 hash \
             (a plain-text password?)"
                .into()
        });
    }
    let fields: Vec<&str> = stored.split('$').collect();
    let malformed = || Some(format!("malformed {} hash", scheme.name()));
    match scheme {
        Scheme::Bcrypt => {
            // "", "2y", cost, salt+hash (22 + 31 characters)
            let cost: u32 = fields.get(2).and_then(|c| c.parse().ok()).unwrap_or(0);
            if fields.len() != 4 || fields[3].len() != 53 || !(4..=31).contains(&cost) {
                return malformed();
            }
            if cost > MAX_BCRYPT_COST {
                return Some(format!(
                    "bcrypt cost {cost} is above {MAX_BCRYPT_COST}: every login would take seconds"
                ));
            }
        }
        Scheme::Sha512Crypt | Scheme::Sha256Crypt => {
            let rounds = fields
                .get(2)
                .and_then(|f| f.strip_prefix("rounds="))
                .map(|r| r.parse::<u32>());
            match rounds {
                Some(Ok(r)) if r > MAX_SHA_CRYPT_ROUNDS => {
                    return Some(format!(
                        "{} with {r} rounds is above {MAX_SHA_CRYPT_ROUNDS}",
                        scheme.name()
                    ));
                }
                Some(Err(_)) => return malformed(),
                _ => {}
            }
            let expected = if rounds.is_some() { 5 } else { 4 };
            if fields.len() != expected {
                return malformed();
            }
        }
        // "", "apr1", salt (up to 8), 22 characters
        Scheme::Apr1Md5 if fields.len() != 4 || fields[2].len() > 8 || fields[3].len() != 22 => {
            return malformed();
        }
        _ => {}
    }
    None
}

/// Checks `password` against an imported htpasswd hash (already vetted by
/// [`import_problem`]).
fn verify_imported(password: &str, stored: &str) -> bool {
    use sha_crypt::PasswordVerifier;
    match Scheme::of(stored) {
        Scheme::Bcrypt => bcrypt::verify(password, stored).unwrap_or(false),
        Scheme::Sha512Crypt | Scheme::Sha256Crypt => sha_crypt::ShaCrypt::default()
            .verify_password(password.as_bytes(), stored)
            .is_ok(),
        Scheme::Apr1Md5 => crypt3_rs::crypt::apr1::verify(password, stored),
        _ => false,
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

    #[test]
    fn imported_schemes_verify_and_bad_lines_are_refused() {
        let mut v = Verifier::new();
        let bcrypt = bcrypt::hash_with_result("pw-b", 5)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        // Made with `openssl passwd -6/-5/-apr1 -salt saltsalt` (the CLI tests use
        // htpasswd and openssl at test time as well).
        let sha512 = "$6$saltsalt$ZYqX6OGzTVQmS7O5qMTA2G3/bZKpjKIUqNdp/Wa/dnLQ.eHAN6AUFoRp1R7uKOi.eMS5L2HIFm0Zcz8ndDuB5/";
        let sha256 = "$5$saltsalt$/JQUvd96uWTl9fxWEC7hdVoXm5AlUiRNp5o86MPez93";
        let apr1 = "$apr1$saltsalt$5RsbPGLoMZxdcz01HfK2l.";
        for (hash, pw, scheme) in [
            (bcrypt.as_str(), "pw-b", Scheme::Bcrypt),
            (sha512, "pw-6", Scheme::Sha512Crypt),
            (sha256, "pw-5", Scheme::Sha256Crypt),
            (apr1, "pw-a", Scheme::Apr1Md5),
        ] {
            assert_eq!(Scheme::of(hash), scheme);
            assert_eq!(import_problem(hash), None, "{hash}");
            assert!(v.verify(pw, hash), "{hash}");
            assert!(!v.verify("wrong", hash), "{hash}");
        }
        for (line, why) in [
            ("secret", "plain-text"),
            ("abJnggxhB/yWI", "DES-crypt"),
            ("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "{SHA}"),
            ("$1$salt$qJH7.N4xYta3aEG/dfqo/0", "MD5-crypt"),
            (
                "$2y$31$abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQ",
                "above 17",
            ),
            ("$2y$", "malformed"),
            ("$6$rounds=999999999$salt$x", "rounds"),
            ("$apr1$toolongsalt$x", "malformed"),
        ] {
            let problem = import_problem(line).unwrap_or_else(|| panic!("{line} accepted"));
            assert!(problem.contains(why), "{line}: {problem}");
            assert!(!v.verify("secret", line));
        }
        // A directory account has no local password at all.
        assert_eq!(Scheme::of(DIRECTORY_MARKER), Scheme::Directory);
        assert!(!v.verify("", DIRECTORY_MARKER));
    }
}
