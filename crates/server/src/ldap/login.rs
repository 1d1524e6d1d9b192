//! The directory's step of the password check: bind as the user, then keep the
//! local shadow account that renewal, `user disable` and the records rely on.

use onlineca_core::Principal;
use onlineca_store::{Store, User};
use time::OffsetDateTime;

use super::{Directory, LDAP_MARKER, Unavailable, Verdict};
use crate::error::ApiError;

/// The directory's part of [`crate::auth::PasswordCheck::check`], inside its lockout
/// attempt and per-name gate: binds as the user, then keeps the local shadow row
/// (created on the first login; its account id follows the entry, so that a
/// recreated entry, another person, does not inherit the old one's renewals).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn check(
    pc: &crate::auth::PasswordCheck,
    dir: &Directory,
    store: &dyn Store,
    name: &str,
    creds: &crate::auth::BasicCredentials,
    user: Option<&User>,
    attempt: crate::lockout::Attempt<'_>,
    now: OffsetDateTime,
) -> Result<Principal, ApiError> {
    let entry = match dir.authenticate(&creds.username, &creds.password).await {
        Ok(Verdict::Accepted(entry)) => entry,
        Ok(Verdict::Refused(reason)) => {
            tracing::info!(user = name, reason = %reason, "directory refused the user");
            attempt.failed();
            return Err(ApiError::BadCredentials);
        }
        Err(Unavailable(reason)) => {
            attempt.abandoned().await;
            return Err(ApiError::DirectoryUnavailable(reason));
        }
    };
    let account_id = entry.account_id();
    let row = match user {
        Some(u) if u.account_id == account_id => u.clone(),
        Some(u) => {
            tracing::warn!(
                user = %u.username,
                old = %u.account_id,
                new = %account_id,
                "the directory entry changed identity (deleted and created again): \
                 a new account; certificates of the old one no longer renew"
            );
            store.set_account_id(&u.username, &account_id, now).await?;
            User {
                account_id: account_id.clone(),
                ..u.clone()
            }
        }
        None => {
            let mut row = User::new(creds.username.clone(), LDAP_MARKER, now)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            row.account_id = account_id.clone();
            match store.add_user(&row).await {
                Ok(()) => {
                    tracing::info!(user = %row.username, dn = %entry.dn, account = %account_id, "directory user's first login: shadow account created");
                    row
                }
                // Another instance created it meanwhile (or an operator added a
                // local user of that name: then that row, not the directory, rules).
                Err(onlineca_store::StoreError::UserExists(_)) => {
                    match store.get_user(&creds.username).await? {
                        Some(u) if u.password_hash == LDAP_MARKER => u,
                        _ => {
                            attempt.failed();
                            return Err(ApiError::BadCredentials);
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    attempt.succeeded().await?;
    pc.cache.insert(
        name,
        &creds.password,
        LDAP_MARKER,
        std::time::Instant::now(),
    );
    if row.disabled {
        return Err(ApiError::UserDisabled);
    }
    Ok(Principal::ldap(row.username, row.account_id))
}
