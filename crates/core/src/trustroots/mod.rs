//! The trust-roots bundle served by `GET {prefix}/trustroots/`: every CA certificate
//! as `<hash>.N` (OpenSSL's subject-name hash, so the directory works as a `CApath`),
//! a Globus `<hash>.signing_policy` per hash, and the two line encodings of the
//! protocol (`fields` and `files`).

pub mod bundle;
pub mod hash;
pub mod policy;

pub use bundle::{CaEntry, Encoding, TrustBundle, TrustFile, decode, valid_file_name};
pub use hash::{canonical_name, cert_subject_hash, oneline, subject_hash};
pub use policy::{namespace, signing_policy};

/// Why a trust-roots bundle, a name or a trust-roots text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustRootsError {
    /// A subject name that is malformed, or that OpenSSL refuses (so has no hash).
    #[error("subject name: {0}")]
    Name(String),
    /// A certificate that cannot be read.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A file name that is not `[A-Za-z0-9._-]+`, or starts with a dot.
    #[error("file name {0:?} refused: only A-Z a-z 0-9 . _ - are allowed, not first '.'")]
    FileName(String),
    /// Two files of the same name.
    #[error("duplicate file name {0:?}")]
    DuplicateFile(String),
    /// A trust-roots text that cannot be decoded.
    #[error("trust roots, line {line}: {reason}")]
    Decode {
        /// 1-based line number.
        line: usize,
        /// What is wrong, naming the key.
        reason: String,
    },
    /// An encoding name other than `fields` and `files`.
    #[error("unknown trust-roots encoding {0:?}: use \"fields\" or \"files\"")]
    UnknownEncoding(String),
}
