//! CA key files: plain PEM (PKCS#8, PKCS#1, SEC1) or encrypted PKCS#8
//! (`-----BEGIN ENCRYPTED PRIVATE KEY-----`, PBES2), the form OpenSSL reads with
//! `openssl pkey -in KEY -passin file:F`.

use pkcs8::der::Decode;
use pkcs8::der::pem::LineEnding;
use pkcs8::{EncryptedPrivateKeyInfoRef, PrivateKeyInfoRef};
use rcgen::KeyPair;
use zeroize::Zeroizing;

/// PBKDF2-HMAC-SHA256 rounds for keys we encrypt: OWASP's 2023 figure for SHA-256
/// (60 ms here, paid once at start-up; OpenSSL's own default is 2,048).
pub const PBKDF2_ITERATIONS: u32 = 600_000;

/// The PEM label of an encrypted PKCS#8 key.
const ENCRYPTED_LABEL: &str = "ENCRYPTED PRIVATE KEY";

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The key is encrypted and no passphrase was given.
    #[error("the key is encrypted and no passphrase was given")]
    PassphraseNeeded,
    /// Decryption failed: almost always a wrong passphrase.
    #[error("cannot decrypt the key: wrong passphrase")]
    WrongPassphrase,
    /// The file is not a key we can read.
    #[error("unreadable key: {0}")]
    Unreadable(String),
    /// Encrypting failed (no randomness, or an encoding error).
    #[error("cannot encrypt the key: {0}")]
    Encrypt(String),
}

/// A passphrase, wiped from memory when dropped and never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

impl Passphrase {
    /// The passphrase in `text`: its first line, without the line ending (as
    /// `openssl -passin file:` reads it). `None` when that line is empty.
    pub fn from_file_text(text: &str) -> Option<Passphrase> {
        let line = text.lines().next().unwrap_or("");
        (!line.is_empty()).then(|| Passphrase(Zeroizing::new(line.as_bytes().to_vec())))
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Its length in characters (bytes, if it is not UTF-8).
    pub fn char_count(&self) -> usize {
        std::str::from_utf8(&self.0).map_or(self.0.len(), |s| s.chars().count())
    }
}

/// Whether `pem` holds an encrypted PKCS#8 key.
pub fn is_encrypted(pem: &str) -> bool {
    pem.contains(&format!("-----BEGIN {ENCRYPTED_LABEL}-----"))
}

/// The key in `pem`, decrypted with `passphrase` when it is encrypted.
pub fn load(pem: &str, passphrase: Option<&Passphrase>) -> Result<KeyPair, KeyFileError> {
    if !is_encrypted(pem) {
        return KeyPair::from_pem(pem).map_err(|e| KeyFileError::Unreadable(e.to_string()));
    }
    let passphrase = passphrase.ok_or(KeyFileError::PassphraseNeeded)?;
    let block = ::pem::parse_many(pem)
        .map_err(|e| KeyFileError::Unreadable(e.to_string()))?
        .into_iter()
        .find(|b| b.tag() == ENCRYPTED_LABEL)
        .ok_or_else(|| KeyFileError::Unreadable("no ENCRYPTED PRIVATE KEY block".into()))?;
    let info = EncryptedPrivateKeyInfoRef::from_der(block.contents())
        .map_err(|e| KeyFileError::Unreadable(e.to_string()))?;
    // A wrong passphrase shows as bad padding or, rarely, as padding that happens to
    // be valid around garbage that is not a PKCS#8 structure: both mean "wrong".
    let plain = info
        .decrypt(passphrase.bytes())
        .map_err(|_| KeyFileError::WrongPassphrase)?;
    let der = Zeroizing::new(plain.as_bytes().to_vec());
    PrivateKeyInfoRef::from_der(&der).map_err(|_| KeyFileError::WrongPassphrase)?;
    KeyPair::try_from(der.as_slice()).map_err(|e| KeyFileError::Unreadable(e.to_string()))
}

/// `key` as encrypted PKCS#8 PEM: PBES2 with PBKDF2-HMAC-SHA256
/// ([`PBKDF2_ITERATIONS`]) and AES-256-CBC, a random salt and IV.
pub fn encrypt(key: &KeyPair, passphrase: &Passphrase) -> Result<Zeroizing<String>, KeyFileError> {
    use aws_lc_rs::rand::SecureRandom;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    rng.fill(&mut salt)
        .and_then(|()| rng.fill(&mut iv))
        .map_err(|_| KeyFileError::Encrypt("no randomness".into()))?;
    let params =
        pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(PBKDF2_ITERATIONS, &salt, iv)
            .map_err(|e| KeyFileError::Encrypt(e.to_string()))?;
    let der = Zeroizing::new(key.serialize_der());
    let info =
        PrivateKeyInfoRef::from_der(&der).map_err(|e| KeyFileError::Encrypt(e.to_string()))?;
    let doc = info
        .encrypt_with_params(params, passphrase.bytes())
        .map_err(|e| KeyFileError::Encrypt(e.to_string()))?;
    let pem = doc
        .to_pem(ENCRYPTED_LABEL, LineEnding::LF)
        .map_err(|e| KeyFileError::Encrypt(e.to_string()))?;
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(s: &str) -> Passphrase {
        Passphrase::from_file_text(s).unwrap()
    }

    #[test]
    fn a_key_survives_encryption_and_only_its_passphrase_opens_it() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem = encrypt(&key, &pass("correct horse\n")).unwrap();
        assert!(pem.starts_with(&format!("-----BEGIN {ENCRYPTED_LABEL}-----\n")));
        assert!(is_encrypted(&pem));
        let back = load(&pem, Some(&pass("correct horse"))).unwrap();
        use rcgen::PublicKeyData;
        assert_eq!(back.der_bytes(), key.der_bytes());
        assert!(matches!(
            load(&pem, Some(&pass("wrong"))),
            Err(KeyFileError::WrongPassphrase)
        ));
        assert!(matches!(
            load(&pem, None),
            Err(KeyFileError::PassphraseNeeded)
        ));
        // A plain key needs none.
        assert!(load(&key.serialize_pem(), None).is_ok());
    }

    #[test]
    fn a_passphrase_is_the_first_line_and_never_printed() {
        assert!(Passphrase::from_file_text("\nsecond").is_none());
        assert!(Passphrase::from_file_text("").is_none());
        let p = pass("s3cret\r\nignored");
        assert_eq!(p.bytes(), b"s3cret");
        assert_eq!(format!("{p:?}"), "Passphrase(..)");
    }
}
