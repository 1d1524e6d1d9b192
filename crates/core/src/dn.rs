//! Distinguished names written by people: OpenSSL's slash form
//! (`/O=Example/OU=Portals/CN=portal.example.org`), as `openssl x509 -noout -subject
//! -nameopt compat` prints a subject and `openssl req -subj` takes one, parsed into a
//! DER `Name` so that configured names are compared with certificates on the parsed,
//! canonical name ([`crate::trustroots::canonical_name`]) and never as strings.

use crate::der::oid;

/// Why a DN text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("distinguished name {text:?}: {reason}")]
pub struct DnError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Attribute short names understood here (case-insensitive), beside dotted OIDs.
const ATTRIBUTES: &[(&str, &[u64])] = &[
    ("C", &[2, 5, 4, 6]),
    ("ST", &[2, 5, 4, 8]),
    ("L", &[2, 5, 4, 7]),
    ("O", &[2, 5, 4, 10]),
    ("OU", &[2, 5, 4, 11]),
    ("CN", &[2, 5, 4, 3]),
    ("SN", &[2, 5, 4, 4]),
    ("GN", &[2, 5, 4, 42]),
    ("title", &[2, 5, 4, 12]),
    ("street", &[2, 5, 4, 9]),
    ("postalCode", &[2, 5, 4, 17]),
    ("serialNumber", &[2, 5, 4, 5]),
    ("DC", &[0, 9, 2342, 19200300, 100, 1, 25]),
    ("UID", &[0, 9, 2342, 19200300, 100, 1, 1]),
    ("emailAddress", &[1, 2, 840, 113549, 1, 9, 1]),
];

fn attribute_oid(name: &str) -> Option<Vec<u64>> {
    if let Some(&(_, arcs)) = ATTRIBUTES
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(name))
    {
        return Some(arcs.to_vec());
    }
    // A dotted OID: at least two arcs, the first 0, 1 or 2.
    let arcs: Vec<u64> = name
        .split('.')
        .map(|a| {
            (!a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()))
                .then(|| a.parse().ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    (arcs.len() >= 2 && arcs[0] <= 2 && (arcs[0] == 2 || arcs[1] < 40)).then_some(arcs)
}

/// Splits `text` at unescaped `sep`, keeping escapes in the pieces.
fn split_unescaped(text: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&text[start..]);
    out
}

/// Removes backslash escapes: `\x` stands for `x`.
fn unescape(value: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next().ok_or("a value ends in a lone '\\'")?);
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Parses a DN in OpenSSL's slash form into a DER `Name` (values as UTF8String,
/// which canonical comparison treats like any other string type). `+` joins the
/// attributes of a multi-valued RDN; `\` escapes `/`, `+`, `=` and `\` in values.
/// Attribute types are short names (CN, O, OU, C, ST, L, DC, UID, emailAddress,
/// serialNumber, SN, GN, title, street, postalCode) or dotted OIDs.
pub fn parse_slash(text: &str) -> Result<Vec<u8>, DnError> {
    let err = |reason: String| DnError {
        text: text.to_string(),
        reason,
    };
    let body = text.strip_prefix('/').ok_or_else(|| {
        err("must be in OpenSSL's slash form, like /O=Example/CN=portal (see `openssl x509 -noout -subject -nameopt compat`)".into())
    })?;
    if body.is_empty() {
        return Err(err("is empty".into()));
    }
    let mut rdns: Vec<Vec<(Vec<u64>, String)>> = Vec::new();
    for (i, rdn) in split_unescaped(body, '/').into_iter().enumerate() {
        let mut attrs = Vec::new();
        for part in split_unescaped(rdn, '+') {
            let (key, value) = part.split_once('=').ok_or_else(|| {
                err(format!(
                    "component {} ({part:?}) is not ATTRIBUTE=value",
                    i + 1
                ))
            })?;
            let key = key.trim();
            let arcs = attribute_oid(key).ok_or_else(|| {
                err(format!(
                    "unknown attribute {key:?} (known: {}, or a dotted OID)",
                    ATTRIBUTES
                        .iter()
                        .map(|a| a.0)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            let value = unescape(value).map_err(|e| err(e.into()))?;
            if value.trim().is_empty() {
                return Err(err(format!("attribute {key} has an empty value")));
            }
            if value.chars().any(char::is_control) {
                return Err(err(format!("attribute {key} has control characters")));
            }
            attrs.push((arcs, value));
        }
        rdns.push(attrs);
    }
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            for rdn in &rdns {
                w.next().write_set(|w| {
                    for (arcs, value) in rdn {
                        w.next().write_sequence(|w| {
                            w.next().write_oid(&oid(arcs));
                            w.next().write_utf8_string(value);
                        });
                    }
                });
            }
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trustroots::canonical_name;

    fn canon(text: &str) -> Vec<u8> {
        canonical_name(&parse_slash(text).unwrap()).unwrap()
    }

    #[test]
    fn equal_names_compare_equal_whatever_the_spelling() {
        assert_eq!(
            canon("/O=Example/OU=Portals/CN=Portal One"),
            canon("/o=example/ou=PORTALS/cn=  portal   one ")
        );
        assert_eq!(canon("/CN=a/O=b"), canon("/2.5.4.3=a/2.5.4.10=b"));
        assert_ne!(canon("/O=a/CN=b"), canon("/CN=b/O=a"));
        assert_ne!(canon("/CN=a+O=b"), canon("/CN=a/O=b"));
        assert_eq!(canon("/CN=a+O=b"), canon("/O=b+CN=a"));
    }

    #[test]
    fn matches_a_certificate_subject_encoded_otherwise() {
        // PrintableString values, as `openssl req -subj` writes C.
        let printable = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                for (arcs, v) in [(&[2u64, 5, 4, 6][..], "GB"), (&[2, 5, 4, 3][..], "Portal")] {
                    w.next().write_set(|w| {
                        w.next().write_sequence(|w| {
                            w.next().write_oid(&oid(arcs));
                            w.next().write_printable_string(v);
                        })
                    })
                }
            })
        });
        assert_eq!(
            canonical_name(&printable).unwrap(),
            canon("/C=GB/CN=portal")
        );
    }

    #[test]
    fn escapes_and_errors() {
        assert_ne!(canon("/CN=a\\/b"), canon("/CN=a/CN=b"));
        for (text, needle) in [
            ("CN=x", "slash form"),
            ("/", "empty"),
            ("/CN", "not ATTRIBUTE=value"),
            ("/XX=1", "unknown attribute \"XX\""),
            ("/CN=", "empty value"),
            ("/CN=a\\", "lone"),
            ("/1.2=x/9.1=y", "unknown attribute \"9.1\""),
        ] {
            let e = parse_slash(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
