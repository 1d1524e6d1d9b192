//! The issuing CA key on a PKCS#11 token (an HSM, a smart card, SoftHSM).
//!
//! `[ca] key` names the key by an RFC 7512 URI ([`Pkcs11Uri`]); `[ca] pkcs11_module`
//! the vendor's library ([`Module`]); `[ca] pin_file` the file holding the user PIN
//! ([`Pin`]). [`TokenKey`] is the key as the CA signs with it ([`onlineca_core::CaKey`]):
//! ECDSA P-256/P-384 (CKM_ECDSA over a SHA-256/384 digest made here) and RSA
//! (CKM_SHA256_RSA_PKCS). [`generate`] makes the key pair on the token for
//! `onlineca init`: a private key that is a token object, private, sensitive, never
//! extractable and only able to sign, labelled with the URI's `object` and carrying a
//! CKA_ID.
//!
//! A crate of its own so that the engine (`onlineca-core`, also built by the fuzzers
//! and benchmarks) loads no C library and knows only the [`onlineca_core::CaKey`] trait.

mod ecdsa;
mod error;
mod key;
mod pin;
mod token;
mod uri;

pub use error::TokenError;
pub use key::{MAX_SESSIONS, PublicKey, SESSION_WAIT, TokenKey, generate};
pub use pin::Pin;
pub use token::Module;
pub use uri::{Pkcs11Uri, UriError, is_pkcs11_uri};
