//! Which credentials a certificate request is judged on, when it carries several.
//!
//! The rules, in order (the first that applies decides; nothing falls through to
//! another method after a refusal, so a refusal always names the method's reason):
//!
//! 1. No client certificate: HTTP Basic username and password. (A `username` form
//!    field without a certificate is a retriever that forgot its certificate: 401
//!    "client certificate not present".)
//! 2. A certificate that names this CA as its issuer, with Basic credentials: the
//!    password decides and the certificate is ignored (a user's client that always
//!    presents its current certificate can still log in). A certificate of this CA
//!    never acts as a retriever's.
//! 3. A certificate that names this CA as its issuer, without Basic credentials:
//!    renewal for the user the certificate was issued to (a `username` form field,
//!    if sent, must name that user).
//! 4. Any other certificate with Basic credentials, when it could not be a
//!    retriever's (it does not verify against the retriever anchors, or retriever
//!    authentication is off) and passwords are on: a right password decides and the
//!    certificate is ignored (browsers and some clients present one anyway); a wrong
//!    one is refused with the certificate's reason.
//! 5. Any other certificate: a retriever's. The user comes from the Basic username
//!    (its password is not checked) or the form field `username` (both: they must
//!    agree); without one, 401. With a Basic header the certificate is judged before
//!    the body is read, as a password is.
//!
//! Disabled users are refused by every route.

use std::time::Duration;

use axum::http::HeaderMap;
use onlineca_core::Principal;
use onlineca_core::subject::validate_username;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::auth;
use crate::body::{self, CsrBody, RawBody};
use crate::error::ApiError;
use crate::renewal::Renewal;
use crate::retriever::Retrievers;
use crate::state::AppState;

/// The client-certificate side of authentication, loaded at start-up.
#[derive(Debug)]
pub struct ClientAuth {
    /// Accepted retrievers and their anchors.
    pub retrievers: Retrievers,
    /// Renewal against the issuing CA.
    pub renewal: Renewal,
}

/// A request that passed authentication.
#[derive(Debug)]
pub struct Authenticated {
    /// Who the certificate is for, and how we know.
    pub principal: Principal,
    /// A lifetime cap set by the route (a retriever's).
    pub lifetime_cap: Option<Duration>,
    /// The request body, with the CSR.
    pub body: CsrBody,
}

/// A refusal, with the username that was tried (for the access log).
#[derive(Debug)]
pub struct Refusal {
    /// The username attempted, if one was named.
    pub user: Option<String>,
    /// Why.
    pub error: ApiError,
}

fn refuse(user: Option<&str>, error: ApiError) -> Refusal {
    Refusal {
        user: user.map(str::to_string),
        error,
    }
}

/// Authenticates a certificate request by the rules above and reads its body.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    client_certs: &[CertificateDer<'static>],
    raw: RawBody,
    now: OffsetDateTime,
) -> Result<Authenticated, Refusal> {
    let basic = auth::basic_credentials(headers).map_err(|e| refuse(None, e))?;
    let Some(leaf) = client_certs.first() else {
        return match basic {
            Some(creds) => password(state, creds, raw, now).await,
            None => {
                // Only to tell a retriever without its certificate from an anonymous
                // request; an unreadable body is then just an anonymous request.
                let named = body::parse(raw).await.ok().and_then(|b| b.username);
                Err(refuse(
                    named.as_deref(),
                    if named.is_some() {
                        ApiError::ClientCertMissing
                    } else {
                        ApiError::NoCredentials
                    },
                ))
            }
        };
    };
    let client = &state.client_auth;
    let ours = client.renewal.claims_ours(leaf);
    if ours {
        if let Some(creds) = basic {
            return password(state, creds, raw, now).await;
        }
        let body = body::parse(raw).await.map_err(|e| refuse(None, e))?;
        let (principal, original_lifetime) = client
            .renewal
            .authenticate(state.store.as_ref(), client_certs, now)
            .await
            .map_err(|e| refuse(body.username.as_deref(), e))?;
        if let Some(named) = body.username.as_deref()
            && !named.eq_ignore_ascii_case(&principal.username)
        {
            return Err(refuse(
                Some(named),
                ApiError::RenewalRefused("the form field 'username' names another user"),
            ));
        }
        directory_still_entitles(state, &principal)
            .await
            .map_err(|e| refuse(Some(&principal.username), e))?;
        return Ok(Authenticated {
            principal,
            lifetime_cap: Some(original_lifetime),
            body,
        });
    }

    // A certificate that no retriever could hold (another CA's, or retriever
    // authentication off) beside a username and password: a client that presents
    // some certificate anyway, as browsers and institutional setups do. A right
    // password decides and the certificate is ignored; a wrong one (counted, as any
    // failed password) is refused with the certificate's reason, which is what a
    // portal whose certificate was refused needs to hear.
    if let Some(creds) = basic.as_ref()
        && state.config.auth.password
        && !client.retrievers.could_be_retriever(client_certs, now)
    {
        let why = client
            .retrievers
            .authenticate(client_certs, &creds.username, now)
            .err();
        let creds = auth::BasicCredentials {
            username: creds.username.clone(),
            password: creds.password.clone(),
        };
        return match password(state, creds, raw, now).await {
            Err(r) if matches!(r.error, ApiError::BadCredentials) => Err(Refusal {
                error: why.unwrap_or(r.error),
                user: r.user,
            }),
            other => other,
        };
    }

    // A retriever: the user from the Basic header if there is one (then the body is
    // read after authentication, as for passwords), else from the form.
    let (user, pending) = match basic {
        Some(creds) => (creds.username, Pending::Raw(Box::new(raw))),
        None => {
            let body = body::parse(raw).await.map_err(|e| refuse(None, e))?;
            let Some(user) = body.username.clone() else {
                return Err(refuse(None, no_user(client, client_certs, now)));
            };
            (user, Pending::Parsed(body))
        }
    };
    // One spelling per person: usernames are unique regardless of ASCII case (as
    // relying parties compare subjects), so a user the store knows is issued under
    // the stored name, and any other under the name in lower case.
    let known = if validate_username(&user).is_ok() {
        state
            .metrics
            .store("get_user", state.store.get_user(&user))
            .await
            .map_err(|e| refuse(Some(&user), e.into()))?
    } else {
        None
    };
    let asked = user;
    let user = match &known {
        Some(u) => u.username.clone(),
        None => asked.to_ascii_lowercase(),
    };
    let (retriever, subject) = client
        .retrievers
        .authenticate(client_certs, &user, now)
        .map_err(|e| refuse(Some(&asked), e))?;
    let lifetime_cap = retriever.lifetime;
    // A retriever may ask for users the store does not know (its rule is the
    // authority), but never for one who is disabled here.
    if known.as_ref().is_some_and(|u| u.disabled) {
        return Err(refuse(Some(&asked), ApiError::UserDisabled));
    }
    let body = match pending {
        Pending::Parsed(body) => body,
        Pending::Raw(raw) => body::parse(*raw)
            .await
            .map_err(|e| refuse(Some(&user), e))?,
    };
    if let Some(named) = body.username.as_deref()
        && !named.eq_ignore_ascii_case(&asked)
    {
        return Err(refuse(
            Some(&asked),
            ApiError::BadRequest(format!(
                "the HTTP Basic username {user:?} and the form field 'username' {named:?} differ"
            )),
        ));
    }
    let mut principal = Principal::retriever(user, subject);
    if let Some(u) = known {
        principal = principal.with_account(u.account_id);
    }
    Ok(Authenticated {
        principal,
        lifetime_cap,
        body,
    })
}

/// For the renewal of a directory user's certificate: the directory must still
/// hold the entry (and have it in the required group), as a password login would
/// find; the store's account alone does not know that someone left.
async fn directory_still_entitles(state: &AppState, principal: &Principal) -> Result<(), ApiError> {
    let (Some(dir), Some(entry)) = (
        state.passwords.directory.as_ref(),
        principal
            .account_id
            .as_deref()
            .and_then(|a| a.strip_prefix("ldap:")),
    ) else {
        return Ok(());
    };
    match dir.still_entitled(entry).await {
        Ok(None) => Ok(()),
        Ok(Some(why)) => {
            tracing::info!(user = %principal.username, reason = %why, "renewal refused by the directory");
            Err(ApiError::RenewalRefused(
                "the user's directory entry is gone or no longer in the required group",
            ))
        }
        Err(e) => Err(ApiError::DirectoryUnavailable(e.0)),
    }
}

/// A body read already, or still to read.
enum Pending {
    Raw(Box<RawBody>),
    Parsed(CsrBody),
}

/// The refusal for a client certificate that came without a user: "name a user" to
/// an accepted retriever, and why the certificate is refused to anyone else.
fn no_user(
    client: &ClientAuth,
    client_certs: &[CertificateDer<'static>],
    now: OffsetDateTime,
) -> ApiError {
    match client.retrievers.authenticate(client_certs, "", now) {
        Ok(_) | Err(ApiError::RetrieverUserNotAllowed { .. }) => ApiError::RetrieverNoUser,
        Err(_) => ApiError::ClientCertNotVerified(
            "it was not issued by this CA (for renewal) and is not a retriever's".into(),
        ),
    }
}

/// HTTP Basic username and password; the body is read only after the password.
async fn password(
    state: &AppState,
    creds: auth::BasicCredentials,
    raw: RawBody,
    now: OffsetDateTime,
) -> Result<Authenticated, Refusal> {
    let user = creds.username.clone();
    if !state.config.auth.password {
        return Err(refuse(Some(&user), ApiError::PasswordAuthDisabled));
    }
    let principal = state
        .passwords
        .check(state.store.as_ref(), creds, now)
        .await
        .map_err(|e| refuse(Some(&user), e))?;
    let body = body::parse(raw).await.map_err(|e| refuse(Some(&user), e))?;
    Ok(Authenticated {
        principal,
        lifetime_cap: None,
        body,
    })
}
