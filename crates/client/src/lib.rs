//! Client library of onlineca: trust-root bootstrap, key generation and certificate
//! retrieval for programs that talk to an onlineca service.
//!
//! The trust-roots encodings it reads are shared with the server through
//! [`onlineca_core::trustroots`].

pub use onlineca_core::trustroots::{TrustFile, decode as decode_trustroots};
