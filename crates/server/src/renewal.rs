//! Renewal by mutual TLS: a client presenting a currently valid certificate of this
//! CA, recorded by it and not revoked, issued to an account that still exists and is
//! not disabled, gets a new certificate for the same account without a password.
//! The account is the one the certificate was issued to, not whoever holds its name
//! now; the new certificate records the one it renews, so that revoking the old one
//! revokes the new one too.

use onlineca_core::Principal;
use onlineca_core::trustroots::canonical_name;
use onlineca_store::Store;
use rustls_pki_types::{CertificateDer, TrustAnchor};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::client_cert::{anchor, validity, verify_chain};
use crate::error::ApiError;
use crate::state::StartError;

/// What renewal checks against: the issuing CA as the only anchor.
#[derive(Debug)]
pub struct Renewal {
    enabled: bool,
    anchors: Vec<TrustAnchor<'static>>,
    /// The canonical subjects of the active and the retired issuing CAs.
    ca_subjects: Vec<Vec<u8>>,
}

impl Renewal {
    /// From the certificates (DER) of the issuing CAs whose certificates may renew:
    /// the active one and the retired ones.
    pub fn new<'a>(
        enabled: bool,
        ca_certs: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Self, StartError> {
        let mut anchors = Vec::new();
        let mut ca_subjects = Vec::new();
        for der in ca_certs {
            anchors.push(
                anchor(der).map_err(|e| {
                    StartError::Invalid(format!("issuing CA as renewal anchor: {e}"))
                })?,
            );
            let (_, cert) = X509Certificate::from_der(der)
                .map_err(|e| StartError::Invalid(format!("issuing CA certificate: {e}")))?;
            ca_subjects.push(
                canonical_name(cert.subject().as_raw())
                    .map_err(|e| StartError::Invalid(format!("issuing CA subject: {e}")))?,
            );
        }
        Ok(Renewal {
            enabled,
            anchors,
            ca_subjects,
        })
    }

    /// Whether `leaf` names this CA as its issuer (it claims to be ours; only
    /// [`Renewal::authenticate`] decides whether it is).
    pub fn claims_ours(&self, leaf: &CertificateDer<'_>) -> bool {
        X509Certificate::from_der(leaf)
            .ok()
            .and_then(|(_, c)| canonical_name(c.issuer().as_raw()).ok())
            .is_some_and(|issuer| self.ca_subjects.contains(&issuer))
    }

    /// The principal for a renewal with `chain`, after every check, and the lifetime
    /// the presented certificate was issued with: a renewal never outlives what the
    /// original route allowed (a retriever's cap survives renewal).
    pub async fn authenticate(
        &self,
        store: &dyn Store,
        chain: &[CertificateDer<'static>],
        now: OffsetDateTime,
    ) -> Result<(Principal, std::time::Duration), ApiError> {
        if !self.enabled {
            return Err(ApiError::RenewalDisabled);
        }
        let leaf = chain.first().ok_or(ApiError::ClientCertMissing)?;
        let (_, cert) = X509Certificate::from_der(leaf)
            .map_err(|e| ApiError::ClientCertNotVerified(format!("it is unreadable: {e}")))?;
        let issuer = canonical_name(cert.issuer().as_raw()).ok();
        if !issuer.is_some_and(|i| self.ca_subjects.contains(&i)) {
            return Err(ApiError::ClientCertNotVerified(
                "it was not issued by this CA (and no username was sent for a retriever)".into(),
            ));
        }
        let serial = hex::encode(cert.raw_serial());
        let found = store
            .get_issued_with_account(&serial)
            .await?
            .filter(|(record, _)| record.der == leaf.as_ref());
        let Some((record, account)) = found else {
            // Not a certificate this CA recorded: say what is wrong with it, if
            // anything, before saying that. Only the leaf: the chain up to this CA
            // is this CA itself.
            verify_chain(&chain[..1], &self.anchors, now)
                .map_err(ApiError::ClientCertNotVerified)?;
            return Err(ApiError::RenewalRefused(
                "this CA has no record of the certificate",
            ));
        };
        // Byte for byte the certificate this CA signed and recorded (the handshake
        // proved the key): its signature and extensions are ours, so of the chain
        // checks only the validity period is left, saving a signature verification
        // per renewal.
        validity(record.not_before, record.not_after, now)
            .map_err(ApiError::ClientCertNotVerified)?;
        if record.revoked_at.is_some() {
            return Err(ApiError::RenewalRefused("the certificate is revoked"));
        }
        match (account, record.account_id) {
            (Some(a), Some(account_id)) => {
                if a.disabled {
                    return Err(ApiError::UserDisabled);
                }
                let lifetime = (record.not_after - record.issued_at)
                    .try_into()
                    .unwrap_or(std::time::Duration::ZERO);
                Ok((
                    Principal::renewal(a.username, account_id, record.serial),
                    lifetime,
                ))
            }
            // Removed (perhaps added again: a new account of the same name is
            // another person), or issued to no account at all.
            _ => Err(ApiError::RenewalRefused(
                "the user it was issued to no longer has an account \
                 (a new account of the same name is another person)",
            )),
        }
    }
}
