//! The issuance engine of onlineca.
//!
//! Everything a certificate authority decides lives here, with no HTTP and no SQL:
//! checking a certificate signing request ([`csr`]), turning an authenticated identity
//! into a subject ([`subject`]), the certificate profile and signing ([`profile`],
//! [`issuer`]), revocation lists ([`crl`]), creating a CA ([`pki`]), password hashing
//! ([`password`]), the trust-roots bundle ([`trustroots`]) and distinguished names
//! written in configuration ([`dn`]). Time is always passed in.

pub mod crl;
pub mod csr;
pub mod der;
pub mod dn;
pub mod issuer;
pub mod keyfile;
pub mod password;
pub mod pki;
pub mod principal;
pub mod profile;
pub mod serial;
pub mod server_cert;
pub mod subject;
pub mod trustroots;

pub use csr::{CheckedCsr, CsrError, KeyKind};
pub use issuer::{CaKey, IssuerError, IssuingCa};
pub use principal::{AuthMethod, Principal};
pub use profile::{IssueError, Issued, Profile};
pub use subject::{SubjectError, SubjectTemplate};
