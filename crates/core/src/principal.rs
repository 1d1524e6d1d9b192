//! Who a certificate is being issued to, and how we know.

/// How the requester proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// HTTP Basic username and password checked against the store.
    Password,
    /// A trusted retriever's client certificate, asking on a user's behalf.
    Retriever,
    /// A valid certificate of this CA, renewing itself.
    Renewal,
    /// HTTP Basic username and password checked by binding to the LDAP directory.
    Ldap,
}

impl AuthMethod {
    /// The name recorded in the store and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Password => "password",
            AuthMethod::Retriever => "retriever",
            AuthMethod::Renewal => "renewal",
            AuthMethod::Ldap => "ldap",
        }
    }
}

/// An authenticated identity: the only input the subject is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The username that goes into the subject.
    pub username: String,
    /// How it was authenticated.
    pub method: AuthMethod,
    /// Subject of the retriever that asked, for [`AuthMethod::Retriever`].
    pub retriever: Option<String>,
    /// The id of the store account the identity belongs to; `None` for a user a
    /// retriever vouches for who has no account here. Recorded with the
    /// certificate, so that renewal follows the account, not the name.
    pub account_id: Option<String>,
    /// For [`AuthMethod::Renewal`], the serial (lowercase hex) of the certificate
    /// presented: revoking it revokes the renewal too.
    pub renews: Option<String>,
}

impl Principal {
    /// A user who gave their own password.
    pub fn password(username: impl Into<String>) -> Self {
        Principal {
            username: username.into(),
            method: AuthMethod::Password,
            retriever: None,
            account_id: None,
            renews: None,
        }
    }

    /// A user whose password the directory accepted, with the account of the
    /// local shadow row.
    pub fn ldap(username: impl Into<String>, account_id: impl Into<String>) -> Self {
        Principal {
            username: username.into(),
            method: AuthMethod::Ldap,
            retriever: None,
            account_id: Some(account_id.into()),
            renews: None,
        }
    }

    /// A user on whose behalf the retriever with subject `retriever` asked.
    pub fn retriever(username: impl Into<String>, retriever: impl Into<String>) -> Self {
        Principal {
            username: username.into(),
            method: AuthMethod::Retriever,
            retriever: Some(retriever.into()),
            account_id: None,
            renews: None,
        }
    }

    /// A user of the account `account_id` renewing with the valid certificate of
    /// this CA whose serial is `serial`.
    pub fn renewal(
        username: impl Into<String>,
        account_id: impl Into<String>,
        serial: impl Into<String>,
    ) -> Self {
        Principal {
            username: username.into(),
            method: AuthMethod::Renewal,
            retriever: None,
            account_id: Some(account_id.into()),
            renews: Some(serial.into()),
        }
    }

    /// The same identity, belonging to the store account `account_id`.
    pub fn with_account(mut self, account_id: impl Into<String>) -> Self {
        self.account_id = Some(account_id.into());
        self
    }
}
