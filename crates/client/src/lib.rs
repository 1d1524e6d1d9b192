//! Client library of onlineca: trust-root bootstrap, key generation and certificate
//! retrieval for programs that talk to an onlineca service.
//!
//! - [`fetch_trustroots`] gets the service's trust roots under an explicit
//!   [`Trust`] decision (pinned fingerprint, first use, or an existing directory),
//!   and [`TrustRoots::write_to`] writes them as an OpenSSL `CApath`.
//! - [`generate_key`] and [`get_certificate`] make a key here, send only a CSR,
//!   and check that the certificate received carries that key and chains to the
//!   trust roots; [`Outputs`] writes it as PEM, a PEM bundle or PKCS#12.
//!
//! TLS is rustls with the aws-lc-rs provider only. The trust-roots encodings are
//! shared with the server through [`onlineca_core::trustroots`].

pub mod certificate;
pub mod certs;
pub mod endpoint;
pub mod error;
pub mod files;
pub mod fingerprint;
mod http;
pub mod output;
pub mod tls;
pub mod trustdir;
pub mod trustroots;

pub use certificate::{Credentials, Issued, generate_key, get_certificate, load_key, make_csr};
pub use certs::CertSummary;
pub use endpoint::Endpoint;
pub use error::{ClientError, Result};
pub use files::check_writable;
pub use fingerprint::Fingerprint;
pub use onlineca_core::pki::KeyType;
pub use onlineca_core::trustroots::{TrustFile, decode as decode_trustroots};
pub use output::{Outputs, pkcs12};
pub use tls::ClientIdentity;
pub use trustdir::{WriteReport, load_cas};
pub use trustroots::{Trust, TrustRoots, fetch_trustroots};
