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
}

impl AuthMethod {
    /// The name recorded in the store and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Password => "password",
            AuthMethod::Retriever => "retriever",
            AuthMethod::Renewal => "renewal",
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
}

impl Principal {
    /// A user who gave their own password.
    pub fn password(username: impl Into<String>) -> Self {
        Principal {
            username: username.into(),
            method: AuthMethod::Password,
            retriever: None,
        }
    }

    /// A user on whose behalf the retriever with subject `retriever` asked.
    pub fn retriever(username: impl Into<String>, retriever: impl Into<String>) -> Self {
        Principal {
            username: username.into(),
            method: AuthMethod::Retriever,
            retriever: Some(retriever.into()),
        }
    }

    /// A user renewing with a valid certificate of this CA.
    pub fn renewal(username: impl Into<String>) -> Self {
        Principal {
            username: username.into(),
            method: AuthMethod::Renewal,
            retriever: None,
        }
    }
}
