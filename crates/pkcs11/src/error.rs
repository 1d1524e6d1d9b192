//! Why a token key could not be opened, created or used: each message names the
//! module, the token or the URI, and says what to do.

use std::path::PathBuf;

/// A failure of the token, its module or the PIN.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The module file is not there.
    #[error(
        "PKCS#11 module {} does not exist: install the token's PKCS#11 library \
         (SoftHSM: apt-get install softhsm2) or correct [ca] pkcs11_module",
        .path.display()
    )]
    ModuleMissing {
        /// The module named.
        path: PathBuf,
    },
    /// The module could not be loaded or initialised.
    #[error(
        "cannot load PKCS#11 module {}: {error}; is it a PKCS#11 library built for this machine?",
        .path.display()
    )]
    ModuleLoad {
        /// The module.
        path: PathBuf,
        /// What the loader or C_Initialize said.
        error: String,
    },
    /// No token matches the URI.
    #[error(
        "no token matching {uri} in PKCS#11 module {} (tokens there: {present}); \
         initialise one with that label, or correct token= in [ca] key",
        .module.display()
    )]
    TokenNotFound {
        /// The URI.
        uri: String,
        /// The module.
        module: PathBuf,
        /// The labels of the tokens present, quoted, or "none".
        present: String,
    },
    /// More than one token matches the URI.
    #[error(
        "{count} tokens match {uri} in PKCS#11 module {}: add serial= to the URI to name one",
        .module.display()
    )]
    TokenAmbiguous {
        /// The URI.
        uri: String,
        /// The module.
        module: PathBuf,
        /// How many matched.
        count: usize,
    },
    /// The token refused the PIN.
    #[error(
        "token {token:?}: the PIN in {} was refused ({reason}); put the token's user PIN \
         on the file's first line",
        .file.display()
    )]
    PinIncorrect {
        /// The token's label.
        token: String,
        /// The PIN file.
        file: PathBuf,
        /// The CKR_ code.
        reason: String,
    },
    /// The PIN is locked after too many wrong tries.
    #[error(
        "token {token:?}: the user PIN is locked (CKR_PIN_LOCKED) after too many wrong \
         tries; the token's security officer must unlock or reset it"
    )]
    PinLocked {
        /// The token's label.
        token: String,
    },
    /// The PIN file cannot be read.
    #[error("cannot read the PIN file {}: {error}", .path.display())]
    PinFile {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The PIN file's first line is empty.
    #[error("the PIN file {} is empty: put the token's user PIN on its first line", .path.display())]
    PinEmpty {
        /// The file.
        path: PathBuf,
    },
    /// No private key matches the URI on the token.
    #[error(
        "no private key matching {uri} on token {token:?}: list the token's objects with \
         `pkcs11-tool --module {} --login --list-objects`, or correct object= and id= in [ca] key",
        .module.display()
    )]
    KeyNotFound {
        /// The URI.
        uri: String,
        /// The token's label.
        token: String,
        /// The module.
        module: PathBuf,
    },
    /// More than one private key matches.
    #[error("{count} private keys match {uri} on token {token:?}: add id= to the URI to name one")]
    KeyAmbiguous {
        /// The URI.
        uri: String,
        /// The token's label.
        token: String,
        /// How many matched.
        count: usize,
    },
    /// Creating a key under a name the token already holds.
    #[error(
        "token {token:?} already holds an object matching {uri}: refusing to create a second \
         key under that name; choose another object= (or delete the old objects with \
         `pkcs11-tool --delete-object`)"
    )]
    KeyExists {
        /// The URI.
        uri: String,
        /// The token's label.
        token: String,
    },
    /// Creating a key without `object=`.
    #[error("{0}: a new key needs a label: add object=LABEL to the URI")]
    NoLabel(String),
    /// A key type that is not generated on tokens here.
    #[error("{0} keys are not generated on a token: use p256, p384, rsa2048, rsa3072 or rsa4096")]
    UnsupportedKeyType(String),
    /// The key found is of a kind the CA cannot sign with.
    #[error("the key {uri} on token {token:?} cannot sign certificates here: {what}")]
    UnsupportedKey {
        /// The URI.
        uri: String,
        /// The token's label.
        token: String,
        /// What kind it is.
        what: String,
    },
    /// Every session stayed busy: the token is slow or hung.
    #[error(
        "token {token:?}: no session came free within {}s ({} signatures in progress): \
         the token is slow or does not answer",
        .waited.as_secs(),
        crate::MAX_SESSIONS
    )]
    SessionsBusy {
        /// The token's label.
        token: String,
        /// How long the signature waited.
        waited: std::time::Duration,
    },
    /// Any other failure of a PKCS#11 call.
    #[error("token {token:?} (PKCS#11 module {}): {call} failed: {code}", .module.display())]
    Call {
        /// The token's label (or the URI's token while none is found yet).
        token: String,
        /// The module.
        module: PathBuf,
        /// The function, `C_...`.
        call: String,
        /// The CKR_ code, or the binding's message.
        code: String,
    },
}

/// A cryptoki error as an operator reads it: `(C_Sign, CKR_DEVICE_REMOVED)`.
pub(crate) fn describe(e: &cryptoki::error::Error) -> (String, String) {
    match e {
        cryptoki::error::Error::Pkcs11(rv, function) => {
            (format!("C_{function:?}"), ckr_name(&format!("{rv:?}")))
        }
        other => ("the PKCS#11 binding".into(), other.to_string()),
    }
}

/// `DeviceRemoved` -> `CKR_DEVICE_REMOVED`: the names the standard and the token's
/// documentation use.
fn ckr_name(camel: &str) -> String {
    let mut out = String::from("CKR_");
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use cryptoki::context::Function;
    use cryptoki::error::{Error, RvError};

    use super::*;

    #[test]
    fn codes_read_as_in_the_standard() {
        let (call, code) = describe(&Error::Pkcs11(RvError::PinIncorrect, Function::Login));
        assert_eq!(
            (call.as_str(), code.as_str()),
            ("C_Login", "CKR_PIN_INCORRECT")
        );
        assert_eq!(ckr_name("DeviceRemoved"), "CKR_DEVICE_REMOVED");
    }
}
