//! RFC 7512 `pkcs11:` URIs naming a key on a token, as written in `[ca] key`.
//!
//! Only what names a token and a key is accepted: `token`, `manufacturer`, `serial`
//! and `model` choose the token, `object` (the label) and `id` the key, and
//! `type=private` may say what is obvious. Everything else is refused rather than
//! ignored, so that a misspelt attribute cannot widen the match. The PIN never comes
//! from the URI (`pin-value`, `pin-source`): it is read from `[ca] pin_file`.

use std::fmt;

/// Why a `pkcs11:` URI cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// It does not start with `pkcs11:`.
    #[error("{0:?} is not a pkcs11: URI")]
    NotPkcs11(String),
    /// A part is not `name=value`, or a value is empty.
    #[error("{uri}: {what}")]
    Malformed {
        /// The URI.
        uri: String,
        /// What is wrong.
        what: String,
    },
    /// A `%` not followed by two hex digits, or text that is not UTF-8.
    #[error("{uri}: attribute {name}: {what}")]
    Encoding {
        /// The URI.
        uri: String,
        /// The attribute.
        name: String,
        /// What is wrong.
        what: &'static str,
    },
    /// The PIN was put in the URI.
    #[error(
        "{attribute} is not accepted in the URI: the PIN is read from the file named by [ca] pin_file"
    )]
    PinInUri {
        /// `pin-value` or `pin-source`.
        attribute: String,
    },
    /// A module named in the URI.
    #[error("{attribute} is not accepted in the URI: the module is named by [ca] pkcs11_module")]
    ModuleInUri {
        /// `module-name` or `module-path`.
        attribute: String,
    },
    /// An attribute this CA does not match on.
    #[error(
        "{uri}: attribute {name:?} is not supported: name the token by token=, serial=, manufacturer= or model=, and the key by object= and/or id="
    )]
    Unsupported {
        /// The URI.
        uri: String,
        /// The attribute.
        name: String,
    },
    /// An attribute given twice.
    #[error("{uri}: attribute {name:?} is given twice")]
    Duplicate {
        /// The URI.
        uri: String,
        /// The attribute.
        name: String,
    },
    /// `type=` other than `private`.
    #[error("{uri}: type={value} does not name a private key: use type=private, or leave it out")]
    NotPrivate {
        /// The URI.
        uri: String,
        /// The type given.
        value: String,
    },
    /// Neither `object` nor `id`.
    #[error("{0}: names no key: add object=LABEL (the key's label) and/or id=%HH... (its CKA_ID)")]
    NoKey(String),
}

/// A parsed `pkcs11:` URI naming one private key.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// The token's label (`token=`).
    pub token: Option<String>,
    /// The token's manufacturer (`manufacturer=`).
    pub manufacturer: Option<String>,
    /// The token's serial number (`serial=`).
    pub serial: Option<String>,
    /// The token's model (`model=`).
    pub model: Option<String>,
    /// The key's label, CKA_LABEL (`object=`).
    pub object: Option<String>,
    /// The key's CKA_ID bytes (`id=`, percent-encoded).
    pub id: Option<Vec<u8>>,
    text: String,
}

impl fmt::Display for Pkcs11Uri {
    /// The URI as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11Uri({:?})", self.text)
    }
}

/// Whether `text` is meant as a PKCS#11 URI (and not a file name).
pub fn is_pkcs11_uri(text: &str) -> bool {
    text.get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("pkcs11:"))
}

impl Pkcs11Uri {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, UriError> {
        if !is_pkcs11_uri(text) {
            return Err(UriError::NotPkcs11(text.to_string()));
        }
        let rest = &text[7..];
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let uri = || text.to_string();
        let mut out = Pkcs11Uri {
            token: None,
            manufacturer: None,
            serial: None,
            model: None,
            object: None,
            id: None,
            text: text.to_string(),
        };
        for part in path.split(';').filter(|p| !p.is_empty()) {
            let (name, value) = split_attribute(text, part)?;
            let name = name.to_ascii_lowercase();
            let bytes = percent_decode(value).map_err(|what| UriError::Encoding {
                uri: uri(),
                name: name.clone(),
                what,
            })?;
            let as_text = |bytes: Vec<u8>| {
                String::from_utf8(bytes).map_err(|_| UriError::Encoding {
                    uri: uri(),
                    name: name.clone(),
                    what: "not UTF-8 text",
                })
            };
            let slot = match name.as_str() {
                "token" => Field::Text(&mut out.token),
                "manufacturer" => Field::Text(&mut out.manufacturer),
                "serial" => Field::Text(&mut out.serial),
                "model" => Field::Text(&mut out.model),
                "object" => Field::Text(&mut out.object),
                "id" => Field::Bytes(&mut out.id),
                "type" => {
                    if !value.eq_ignore_ascii_case("private") {
                        return Err(UriError::NotPrivate {
                            uri: uri(),
                            value: value.to_string(),
                        });
                    }
                    continue;
                }
                "pin-value" | "pin-source" => return Err(UriError::PinInUri { attribute: name }),
                _ => return Err(UriError::Unsupported { uri: uri(), name }),
            };
            let taken = match slot {
                Field::Text(f) => f.replace(as_text(bytes)?).is_some(),
                Field::Bytes(f) => f.replace(bytes).is_some(),
            };
            if taken {
                return Err(UriError::Duplicate { uri: uri(), name });
            }
        }
        for part in query.into_iter().flat_map(|q| q.split('&')) {
            if part.is_empty() {
                continue;
            }
            let name = part.split('=').next().unwrap_or("").to_ascii_lowercase();
            return Err(match name.as_str() {
                "pin-value" | "pin-source" => UriError::PinInUri { attribute: name },
                "module-name" | "module-path" => UriError::ModuleInUri { attribute: name },
                _ => UriError::Unsupported { uri: uri(), name },
            });
        }
        if out.object.is_none() && out.id.is_none() {
            return Err(UriError::NoKey(uri()));
        }
        Ok(out)
    }

    /// The `id=` as hex, for messages and `pkcs11-tool --id`.
    pub fn id_hex(&self) -> Option<String> {
        self.id.as_ref().map(hex::encode)
    }
}

enum Field<'a> {
    Text(&'a mut Option<String>),
    Bytes(&'a mut Option<Vec<u8>>),
}

fn split_attribute<'a>(uri: &str, part: &'a str) -> Result<(&'a str, &'a str), UriError> {
    match part.split_once('=') {
        Some((name, value)) if !name.is_empty() && !value.is_empty() => Ok((name, value)),
        _ => Err(UriError::Malformed {
            uri: uri.to_string(),
            what: format!("{part:?} is not name=value"),
        }),
    }
}

/// Decodes `%HH` escapes; every other character stands for itself.
fn percent_decode(value: &str) -> Result<Vec<u8>, &'static str> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a % must be followed by two hex digits")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_object_and_percent_encoded_id() {
        let u = Pkcs11Uri::parse("pkcs11:token=onlineca;object=onlineca-issuing").unwrap();
        assert_eq!(u.token.as_deref(), Some("onlineca"));
        assert_eq!(u.object.as_deref(), Some("onlineca-issuing"));
        assert_eq!(u.id, None);
        assert_eq!(
            u.to_string(),
            "pkcs11:token=onlineca;object=onlineca-issuing"
        );

        let u = Pkcs11Uri::parse(
            "pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;serial=1a2b;token=My%20CA;id=%01%AB%ff;type=private",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("My CA"));
        assert_eq!(u.model.as_deref(), Some("SoftHSM v2"));
        assert_eq!(u.manufacturer.as_deref(), Some("SoftHSM project"));
        assert_eq!(u.serial.as_deref(), Some("1a2b"));
        assert_eq!(u.id, Some(vec![0x01, 0xab, 0xff]));
        assert_eq!(u.id_hex().as_deref(), Some("01abff"));
        assert_eq!(u.object, None);
        // Attribute names are case-insensitive, the scheme too.
        let u = Pkcs11Uri::parse("PKCS11:Object=k%3Bey").unwrap();
        assert_eq!(u.object.as_deref(), Some("k;ey"));
    }

    #[test]
    fn the_pin_and_the_module_never_come_from_the_uri() {
        for uri in [
            "pkcs11:token=t;object=k?pin-value=1234",
            "pkcs11:token=t;object=k?pin-source=file:/etc/pin",
            "pkcs11:token=t;object=k;pin-value=1234",
        ] {
            let e = Pkcs11Uri::parse(uri).unwrap_err();
            assert!(matches!(e, UriError::PinInUri { .. }), "{uri}: {e:?}");
            assert!(e.to_string().contains("pin_file"), "{e}");
        }
        let e = Pkcs11Uri::parse("pkcs11:object=k?module-path=/x.so").unwrap_err();
        assert!(e.to_string().contains("pkcs11_module"), "{e}");
    }

    #[test]
    fn bad_uris_are_named() {
        let bad = |uri: &str| Pkcs11Uri::parse(uri).unwrap_err();
        assert!(matches!(
            bad("/etc/onlineca/issuing.key"),
            UriError::NotPkcs11(_)
        ));
        assert!(matches!(bad("pkcs11:token=t"), UriError::NoKey(_)));
        assert!(matches!(bad("pkcs11:"), UriError::NoKey(_)));
        assert!(matches!(
            bad("pkcs11:token=t;objet=k"),
            UriError::Unsupported { .. }
        ));
        assert!(matches!(
            bad("pkcs11:object=a;object=b"),
            UriError::Duplicate { .. }
        ));
        assert!(matches!(
            bad("pkcs11:object=k;type=cert"),
            UriError::NotPrivate { .. }
        ));
        assert!(matches!(
            bad("pkcs11:object=k;token"),
            UriError::Malformed { .. }
        ));
        assert!(matches!(bad("pkcs11:object="), UriError::Malformed { .. }));
        assert!(matches!(
            bad("pkcs11:object=k;id=%0"),
            UriError::Encoding { .. }
        ));
        assert!(matches!(
            bad("pkcs11:object=%ff%fe"),
            UriError::Encoding { .. }
        ));
    }

    #[test]
    fn only_the_scheme_makes_a_uri() {
        assert!(is_pkcs11_uri("pkcs11:object=k"));
        assert!(is_pkcs11_uri("PKCS11:object=k"));
        assert!(!is_pkcs11_uri("ca/issuing.key"));
        assert!(!is_pkcs11_uri("pkcs11"));
    }
}
