//! The PKCS#11 module, the token a URI names, logging in, and finding or creating
//! the key on it.

use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use onlineca_core::pki::KeyType as CaKeyType;

use crate::error::describe;
use crate::{Pin, Pkcs11Uri, TokenError};

/// DER of the named-curve OIDs, as CKA_EC_PARAMS holds them.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// A loaded and initialised PKCS#11 module (the vendor's shared library).
#[derive(Clone)]
pub struct Module {
    ctx: Pkcs11,
    path: PathBuf,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Module({})", self.path.display())
    }
}

impl Module {
    /// Loads the module at `path` and initialises it for use from several threads.
    pub fn open(path: &Path) -> Result<Module, TokenError> {
        // Said before dlopen, whose message for a missing file is less plain.
        if !path.exists() {
            return Err(TokenError::ModuleMissing {
                path: path.to_path_buf(),
            });
        }
        let load = |error: String| TokenError::ModuleLoad {
            path: path.to_path_buf(),
            error,
        };
        let ctx = Pkcs11::new(path).map_err(|e| load(e.to_string()))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            // Already initialised by another Module of this process: the same library.
            Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => {
                let (call, code) = describe(&e);
                return Err(load(format!("{call}: {code}")));
            }
        }
        Ok(Module {
            ctx,
            path: path.to_path_buf(),
        })
    }

    /// The module's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The one token matching the URI's token attributes.
    pub(crate) fn find_token(&self, uri: &Pkcs11Uri) -> Result<Token, TokenError> {
        let unnamed = uri.token.clone().unwrap_or_default();
        let slots = self
            .ctx
            .get_slots_with_token()
            .map_err(|e| self.call_error(&unnamed, &e))?;
        let mut present = Vec::new();
        let mut found = Vec::new();
        for slot in slots {
            let info = self
                .ctx
                .get_token_info(slot)
                .map_err(|e| self.call_error(&unnamed, &e))?;
            // Token strings are blank-padded fixed-size fields.
            let label = info.label().trim_end().to_string();
            let matches = [
                (&uri.token, label.as_str()),
                (&uri.manufacturer, info.manufacturer_id().trim_end()),
                (&uri.serial, info.serial_number().trim_end()),
                (&uri.model, info.model().trim_end()),
            ]
            .iter()
            .all(|(want, have)| want.as_deref().is_none_or(|w| w == *have));
            if !info.token_initialized() {
                continue;
            }
            present.push(format!("{label:?}"));
            if matches {
                found.push(Token { slot, label });
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(TokenError::TokenNotFound {
                uri: uri.to_string(),
                module: self.path.clone(),
                present: if present.is_empty() {
                    "none".into()
                } else {
                    present.join(", ")
                },
            }),
            count => Err(TokenError::TokenAmbiguous {
                uri: uri.to_string(),
                module: self.path.clone(),
                count,
            }),
        }
    }

    /// Opens a session on `token` and logs in with `pin`.
    pub(crate) fn session(
        &self,
        token: &Token,
        pin: &Pin,
        read_write: bool,
    ) -> Result<Session, TokenError> {
        let session = if read_write {
            self.ctx.open_rw_session(token.slot)
        } else {
            self.ctx.open_ro_session(token.slot)
        }
        .map_err(|e| self.call_error(&token.label, &e))?;
        let refused = |reason: &str| TokenError::PinIncorrect {
            token: token.label.clone(),
            file: pin.file.clone(),
            reason: reason.to_string(),
        };
        match session.login(UserType::User, Some(&pin.value)) {
            // Login is per application, not per session: a second session is in already.
            Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(Error::Pkcs11(RvError::PinIncorrect, _)) => Err(refused("CKR_PIN_INCORRECT")),
            Err(Error::Pkcs11(RvError::PinLenRange, _)) => Err(refused("CKR_PIN_LEN_RANGE")),
            Err(Error::Pkcs11(RvError::PinLocked, _)) => Err(TokenError::PinLocked {
                token: token.label.clone(),
            }),
            Err(e) => Err(self.call_error(&token.label, &e)),
        }
    }

    /// A failed call, with the token and module named.
    pub(crate) fn call_error(&self, token: &str, e: &Error) -> TokenError {
        let (call, code) = describe(e);
        TokenError::Call {
            token: token.to_string(),
            module: self.path.clone(),
            call,
            code,
        }
    }
}

/// A token found in a slot.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) slot: Slot,
    pub(crate) label: String,
}

/// The URI's key attributes as a search template for objects of `class`.
fn template(uri: &Pkcs11Uri, class: ObjectClass) -> Vec<Attribute> {
    let mut t = vec![Attribute::Class(class)];
    if let Some(label) = &uri.object {
        t.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        t.push(Attribute::Id(id.clone()));
    }
    t
}

/// The one private key the URI names.
pub(crate) fn find_private_key(
    module: &Module,
    token: &Token,
    session: &Session,
    uri: &Pkcs11Uri,
) -> Result<ObjectHandle, TokenError> {
    let mut found = session
        .find_objects(&template(uri, ObjectClass::PRIVATE_KEY))
        .map_err(|e| module.call_error(&token.label, &e))?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(TokenError::KeyNotFound {
            uri: uri.to_string(),
            token: token.label.clone(),
            module: module.path.clone(),
        }),
        count => Err(TokenError::KeyAmbiguous {
            uri: uri.to_string(),
            token: token.label.clone(),
            count,
        }),
    }
}

/// What the CA needs to know of a key on the token: how it signs, and its public
/// key bits where the token shows them.
pub(crate) struct KeyFacts {
    pub(crate) algorithm: &'static rcgen::SignatureAlgorithm,
    pub(crate) public_bits: Option<Vec<u8>>,
}

/// Reads the private key's type, and its public half: RSA keys carry modulus and
/// exponent; for EC keys the point is on the public key object of the same id.
pub(crate) fn key_facts(
    module: &Module,
    token: &Token,
    session: &Session,
    uri: &Pkcs11Uri,
    key: ObjectHandle,
) -> Result<KeyFacts, TokenError> {
    let fail = |e: Error| module.call_error(&token.label, &e);
    let unsupported = |what: String| TokenError::UnsupportedKey {
        uri: uri.to_string(),
        token: token.label.clone(),
        what,
    };
    let attrs = session
        .get_attributes(key, &[AttributeType::KeyType, AttributeType::Id])
        .map_err(fail)?;
    let mut key_type = None;
    let mut id = None;
    for a in attrs {
        match a {
            Attribute::KeyType(k) => key_type = Some(k),
            Attribute::Id(i) => id = Some(i),
            _ => {}
        }
    }
    match key_type {
        Some(KeyType::RSA) => {
            let attrs = session
                .get_attributes(
                    key,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )
                .map_err(fail)?;
            let (mut n, mut e) = (None, None);
            for a in attrs {
                match a {
                    Attribute::Modulus(m) => n = Some(m),
                    Attribute::PublicExponent(x) => e = Some(x),
                    _ => {}
                }
            }
            let public_bits = match (n, e) {
                (Some(n), Some(e)) => {
                    let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                    if bits < 2048 {
                        return Err(unsupported(format!(
                            "an RSA key of {bits} bits (2048 at least)"
                        )));
                    }
                    Some(rsa_public_key(&n, &e))
                }
                _ => None,
            };
            Ok(KeyFacts {
                algorithm: &rcgen::PKCS_RSA_SHA256,
                public_bits,
            })
        }
        Some(KeyType::EC) => {
            let params = session
                .get_attributes(key, &[AttributeType::EcParams])
                .map_err(fail)?
                .into_iter()
                .find_map(|a| match a {
                    Attribute::EcParams(p) => Some(p),
                    _ => None,
                })
                .unwrap_or_default();
            let (algorithm, point_len) = match params.as_slice() {
                P256_PARAMS => (&rcgen::PKCS_ECDSA_P256_SHA256, 65),
                P384_PARAMS => (&rcgen::PKCS_ECDSA_P384_SHA384, 97),
                other => {
                    return Err(unsupported(format!(
                        "an EC key on a curve other than P-256 and P-384 (parameters {})",
                        hex::encode(other)
                    )));
                }
            };
            // The public object of the same id (or, without one, the URI's label).
            let mut public_template = vec![Attribute::Class(ObjectClass::PUBLIC_KEY)];
            match id.filter(|i| !i.is_empty()) {
                Some(i) => public_template.push(Attribute::Id(i)),
                None => public_template = template(uri, ObjectClass::PUBLIC_KEY),
            }
            let publics = session.find_objects(&public_template).map_err(fail)?;
            let public_bits = match publics.as_slice() {
                [one] => session
                    .get_attributes(*one, &[AttributeType::EcPoint])
                    .map_err(fail)?
                    .into_iter()
                    .find_map(|a| match a {
                        Attribute::EcPoint(p) => ec_point(&p, point_len),
                        _ => None,
                    }),
                // None or several: the signature probe alone ties key and certificate.
                _ => None,
            };
            Ok(KeyFacts {
                algorithm,
                public_bits,
            })
        }
        other => Err(unsupported(format!(
            "key type {}",
            other
                .map(|k| k.to_string())
                .unwrap_or_else(|| "unknown".into())
        ))),
    }
}

/// The uncompressed point of CKA_EC_POINT, which the standard wraps in a DER OCTET
/// STRING and some tokens give bare.
fn ec_point(value: &[u8], point_len: usize) -> Option<Vec<u8>> {
    match value {
        [0x04, ..] if value.len() == point_len => Some(value.to_vec()),
        [0x04, len, rest @ ..] if *len as usize == rest.len() && rest.len() == point_len => {
            Some(rest.to_vec())
        }
        _ => None,
    }
}

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`, the
/// subjectPublicKey of an RSA key.
fn rsa_public_key(n: &[u8], e: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_bigint_bytes(n, true);
            w.next().write_bigint_bytes(e, true);
        })
    })
}

/// Creates a key pair of `key_type` on the token `uri` names, labelled with the URI's
/// `object` and identified by its `id` (random when the URI has none). The private
/// key is a private, sensitive, unextractable token object that can only sign.
/// Refuses when the token already holds an object of that label or id.
pub(crate) fn generate(
    module: &Module,
    token: &Token,
    pin: &Pin,
    uri: &Pkcs11Uri,
    key_type: CaKeyType,
) -> Result<(), TokenError> {
    let label = uri
        .object
        .clone()
        .ok_or_else(|| TokenError::NoLabel(uri.to_string()))?;
    let (mechanism, public_specific) = match key_type {
        CaKeyType::P256 => (
            Mechanism::EccKeyPairGen,
            vec![Attribute::EcParams(P256_PARAMS.to_vec())],
        ),
        CaKeyType::P384 => (
            Mechanism::EccKeyPairGen,
            vec![Attribute::EcParams(P384_PARAMS.to_vec())],
        ),
        CaKeyType::Rsa2048 | CaKeyType::Rsa3072 | CaKeyType::Rsa4096 => {
            let bits: u64 = match key_type {
                CaKeyType::Rsa2048 => 2048,
                CaKeyType::Rsa3072 => 3072,
                _ => 4096,
            };
            (
                Mechanism::RsaPkcsKeyPairGen,
                vec![
                    Attribute::ModulusBits(bits.into()),
                    Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                ],
            )
        }
        CaKeyType::Ed25519 => return Err(TokenError::UnsupportedKeyType("ed25519".into())),
    };
    let session = module.session(token, pin, true)?;
    let fail = |e: Error| module.call_error(&token.label, &e);
    // Any object, of any class, under this label or id: a second key under the same
    // name would make the URI ambiguous, and reusing an old one is not what init means.
    let mut clashes = session
        .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
        .map_err(fail)?;
    if let Some(id) = &uri.id {
        clashes.extend(
            session
                .find_objects(&[Attribute::Id(id.clone())])
                .map_err(fail)?,
        );
    }
    if !clashes.is_empty() {
        return Err(TokenError::KeyExists {
            uri: uri.to_string(),
            token: token.label.clone(),
        });
    }
    let id = match &uri.id {
        Some(id) => id.clone(),
        None => {
            let mut id = vec![0u8; 16];
            aws_lc_rs::rand::fill(&mut id).map_err(|_| TokenError::Call {
                token: token.label.clone(),
                module: module.path.clone(),
                call: "the random source".into(),
                code: "no randomness for CKA_ID".into(),
            })?;
            id
        }
    };
    let common = [
        Attribute::Token(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id),
    ];
    let mut public = common.to_vec();
    // Signing and verifying only: a CA key that decrypts or unwraps could be made to.
    public.extend([
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
    ]);
    public.extend(public_specific);
    let mut private = common.to_vec();
    private.extend([
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ]);
    session
        .generate_key_pair(&mechanism, &public, &private)
        .map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_points_bare_or_wrapped() {
        let mut bare = vec![0x04];
        bare.extend([7u8; 64]);
        assert_eq!(ec_point(&bare, 65), Some(bare.clone()));
        let mut wrapped = vec![0x04, 65];
        wrapped.extend(&bare);
        assert_eq!(ec_point(&wrapped, 65), Some(bare.clone()));
        assert_eq!(ec_point(&wrapped[..10], 65), None);
    }

    #[test]
    fn rsa_public_key_is_two_positive_integers() {
        let der = rsa_public_key(&[0x80, 0x01], &[0x01, 0x00, 0x01]);
        assert_eq!(
            der,
            [
                0x30, 0x0a, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x03, 0x01, 0x00, 0x01
            ]
        );
    }
}
