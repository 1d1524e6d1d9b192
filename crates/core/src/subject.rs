//! The subject template: how an authenticated username becomes a certificate subject.
//!
//! The template is parsed once, into a list of RDNs, and the username is placed into
//! one attribute value structurally, never by string concatenation, so no username
//! can add or change RDNs. Usernames are also restricted to characters that read the
//! same in every DN string format (OpenSSL's `/A=b` form and RFC 4514), so that what
//! relying services log and match on is never ambiguous.

use crate::der::oid;

/// The placeholder replaced by the username.
pub const USERNAME: &str = "{username}";
/// Upper bound of a CommonName (RFC 5280 ub-common-name) and so of a username.
pub const MAX_USERNAME_CHARS: usize = 64;

/// Why a template or a username was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubjectError {
    /// The template text is malformed.
    #[error("subject template {template:?}: {reason}")]
    Template {
        /// The template as given.
        template: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The username cannot be carried safely in a subject.
    #[error("username {shown} not allowed: {reason}")]
    Username {
        /// The username, escaped for display.
        shown: String,
        /// Why.
        reason: &'static str,
    },
}

/// How an attribute value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StringKind {
    Utf8,
    Printable,
    Ia5,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Attribute {
    short: &'static str,
    arcs: &'static [u64],
    kind: StringKind,
}

const ATTRIBUTES: &[(&str, &[u64], StringKind)] = &[
    ("C", &[2, 5, 4, 6], StringKind::Printable),
    ("ST", &[2, 5, 4, 8], StringKind::Utf8),
    ("L", &[2, 5, 4, 7], StringKind::Utf8),
    ("O", &[2, 5, 4, 10], StringKind::Utf8),
    ("OU", &[2, 5, 4, 11], StringKind::Utf8),
    ("CN", &[2, 5, 4, 3], StringKind::Utf8),
    ("serialNumber", &[2, 5, 4, 5], StringKind::Printable),
    ("DC", &[0, 9, 2342, 19200300, 100, 1, 25], StringKind::Ia5),
    ("UID", &[0, 9, 2342, 19200300, 100, 1, 1], StringKind::Utf8),
    (
        "emailAddress",
        &[1, 2, 840, 113549, 1, 9, 1],
        StringKind::Ia5,
    ),
];

fn attribute(short: &str) -> Option<Attribute> {
    ATTRIBUTES
        .iter()
        .find(|(s, _, _)| s.eq_ignore_ascii_case(short))
        .map(|&(short, arcs, kind)| Attribute { short, arcs, kind })
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rdn {
    attr: Attribute,
    /// Text before and after the placeholder, or the whole value when `templated` is false.
    prefix: String,
    suffix: String,
    templated: bool,
}

/// A parsed subject template such as `/O=Example/OU=Users/CN={username}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectTemplate {
    text: String,
    rdns: Vec<Rdn>,
}

/// A subject built for one username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// DER of the Name.
    pub der: Vec<u8>,
    /// OpenSSL's one-line form, `/O=Example/OU=Users/CN=alice`.
    pub oneline: String,
}

impl SubjectTemplate {
    /// Parses a template in OpenSSL's slash form. Exactly one attribute value must
    /// contain `{username}`; values may not contain `/`, `+` or `{`/`}` otherwise.
    pub fn parse(text: &str) -> Result<Self, SubjectError> {
        let err = |reason: String| SubjectError::Template {
            template: text.to_string(),
            reason,
        };
        let body = text
            .strip_prefix('/')
            .ok_or_else(|| err("must start with '/', like /O=Example/CN={username}".into()))?;
        let mut rdns = Vec::new();
        for part in body.split('/') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| err(format!("component {part:?} is not ATTRIBUTE=value")))?;
            let attr = attribute(key.trim()).ok_or_else(|| {
                err(format!(
                    "unknown attribute {key:?} (known: {})",
                    ATTRIBUTES
                        .iter()
                        .map(|a| a.0)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            if value.contains('+') {
                return Err(err("multi-valued RDNs ('+') are not supported".into()));
            }
            let (prefix, suffix, templated) = match value.split_once(USERNAME) {
                Some((p, s)) => (p.to_string(), s.to_string(), true),
                None => (value.to_string(), String::new(), false),
            };
            if prefix.contains(['{', '}']) || suffix.contains(['{', '}']) {
                return Err(err(format!(
                    "value {value:?} has braces other than one {USERNAME}"
                )));
            }
            if !templated && value.is_empty() {
                return Err(err(format!("attribute {key} has an empty value")));
            }
            if !printable_or_ia5(attr.kind, &prefix) || !printable_or_ia5(attr.kind, &suffix) {
                return Err(err(format!(
                    "{} value {value:?} has characters its string type cannot hold",
                    attr.short
                )));
            }
            rdns.push(Rdn {
                attr,
                prefix,
                suffix,
                templated,
            });
        }
        match rdns.iter().filter(|r| r.templated).count() {
            1 => {}
            0 => return Err(err(format!("no attribute contains {USERNAME}"))),
            _ => return Err(err(format!("{USERNAME} may appear only once"))),
        }
        Ok(SubjectTemplate {
            text: text.to_string(),
            rdns,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The RDNs before the one that carries the username, as (short name, value)
    /// pairs: the namespace every issued subject falls in.
    pub fn fixed_prefix(&self) -> Vec<(String, String)> {
        self.rdns
            .iter()
            .take_while(|r| !r.templated)
            .map(|r| (r.attr.short.to_string(), r.prefix.clone()))
            .collect()
    }

    /// Builds the subject for `username`, refusing usernames it cannot carry safely.
    pub fn render(&self, username: &str) -> Result<Subject, SubjectError> {
        validate_username(username)?;
        let mut oneline = String::new();
        let values: Vec<(&Attribute, String)> = self
            .rdns
            .iter()
            .map(|r| {
                let v = if r.templated {
                    format!("{}{}{}", r.prefix, username, r.suffix)
                } else {
                    r.prefix.clone()
                };
                (&r.attr, v)
            })
            .collect();
        for (attr, v) in &values {
            if attr.kind != StringKind::Utf8 && !printable_or_ia5(attr.kind, v) {
                return Err(SubjectError::Username {
                    shown: format!("{username:?}"),
                    reason: "the subject template puts it in an ASCII-only attribute",
                });
            }
            if attr.short == "CN" && v.chars().count() > MAX_USERNAME_CHARS {
                return Err(SubjectError::Username {
                    shown: format!("{username:?}"),
                    reason: "the common name would exceed 64 characters",
                });
            }
            oneline.push('/');
            oneline.push_str(attr.short);
            oneline.push('=');
            oneline.push_str(v);
        }
        let der = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                for (attr, v) in &values {
                    w.next().write_set(|w| {
                        w.next().write_sequence(|w| {
                            w.next().write_oid(&oid(attr.arcs));
                            match attr.kind {
                                StringKind::Utf8 => w.next().write_utf8_string(v),
                                StringKind::Printable => w.next().write_printable_string(v),
                                StringKind::Ia5 => w.next().write_ia5_string(v),
                            }
                        })
                    });
                }
            })
        });
        Ok(Subject { der, oneline })
    }
}

fn printable_or_ia5(kind: StringKind, v: &str) -> bool {
    match kind {
        // PrintableString less '?', which the DER writer (yasna) refuses.
        StringKind::Printable => v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " '()+,-./:=".contains(c)),
        StringKind::Ia5 => v.is_ascii(),
        StringKind::Utf8 => true,
    }
}

/// Checks that a username can be carried in a subject: 1 to 64 characters, ASCII
/// letters and digits and `.`, `_`, `-`, `@`; it may not start with `-` or `.`.
/// Everything that has a meaning in some DN string format (`/ , + = " \ < > ; #`),
/// white space and control characters are refused.
pub fn validate_username(username: &str) -> Result<(), SubjectError> {
    let refuse = |reason| {
        Err(SubjectError::Username {
            shown: format!("{:?}", truncate_for_display(username)),
            reason,
        })
    };
    if username.is_empty() {
        return refuse("it is empty");
    }
    if username.chars().count() > MAX_USERNAME_CHARS {
        return refuse("it is longer than 64 characters");
    }
    if username.chars().any(char::is_control) {
        return refuse("it contains control characters");
    }
    if username.chars().any(char::is_whitespace) {
        return refuse("it contains white space");
    }
    if username.starts_with(['-', '.']) {
        return refuse("it starts with '-' or '.'");
    }
    // ASCII only: letters from other scripts can look identical to ASCII ones
    // ("аlice" with a Cyrillic a), and relying parties compare names ignoring ASCII
    // case only, so usernames are also unique regardless of case (the store's job).
    if !username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        return refuse("only ASCII letters, digits and . _ - @ are allowed");
    }
    Ok(())
}

fn truncate_for_display(s: &str) -> String {
    if s.chars().count() > 80 {
        let mut t: String = s.chars().take(80).collect();
        t.push('…');
        t
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::FromDer;
    use x509_parser::x509::X509Name;

    fn template() -> SubjectTemplate {
        SubjectTemplate::parse("/O=Example/OU=Users/CN={username}").unwrap()
    }

    #[test]
    fn renders_structurally() {
        let s = template().render("alice").unwrap();
        assert_eq!(s.oneline, "/O=Example/OU=Users/CN=alice");
        let (_, name) = X509Name::from_der(&s.der).unwrap();
        assert_eq!(name.to_string(), "O=Example, OU=Users, CN=alice");
        assert_eq!(name.iter_rdn().count(), 3);
    }

    #[test]
    fn repeated_attribute_types_are_kept() {
        let t = SubjectTemplate::parse("/DC=org/DC=example/OU=People/CN=user-{username}").unwrap();
        let s = t.render("bob").unwrap();
        let (_, name) = X509Name::from_der(&s.der).unwrap();
        assert_eq!(name.iter_rdn().count(), 4);
        assert_eq!(s.oneline, "/DC=org/DC=example/OU=People/CN=user-bob");
        assert_eq!(
            t.fixed_prefix(),
            vec![
                ("DC".to_string(), "org".to_string()),
                ("DC".to_string(), "example".to_string()),
                ("OU".to_string(), "People".to_string())
            ]
        );
    }

    #[test]
    fn hostile_usernames_are_refused() {
        let t = template();
        let long = "a".repeat(65);
        for bad in [
            "a/CN=b",
            "a,CN=b",
            "a+CN=b",
            "a=b",
            "a\nb",
            "a\u{0}b",
            "a\tb",
            "a b",
            "",
            "-rf",
            ".hidden",
            "a\"b",
            "a\\b",
            "a<b",
            "a;b",
            "#a",
            "Zoë",
            "\u{430}lice",
            &long,
        ] {
            let e = t.render(bad).unwrap_err();
            assert!(
                matches!(e, SubjectError::Username { .. }),
                "{bad:?} gave {e:?}"
            );
        }
    }

    #[test]
    fn ordinary_usernames_pass() {
        let t = template();
        for good in [
            "alice",
            "j.smith",
            "user_1",
            "bob-2",
            "x@example.org",
            "JSmith",
            &"a".repeat(64),
        ] {
            t.render(good).unwrap();
        }
    }

    #[test]
    fn cn_affix_counts_against_the_limit() {
        let t = SubjectTemplate::parse("/O=X/CN=user-{username}").unwrap();
        assert!(t.render(&"a".repeat(60)).is_err());
        assert!(t.render(&"a".repeat(59)).is_ok());
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in [
            "O=X/CN={username}",
            "/O=X",
            "/O=X/CN={username}/UID={username}",
            "/Foo=X/CN={username}",
            "/O=X/CN={username}+UID=y",
            "/O=/CN={username}",
            "/O=X/CN={user}",
            "/C=U?/O=X/CN={username}",
            "/DC=exämple/CN={username}",
        ] {
            assert!(SubjectTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ascii_only_attribute_refuses_non_ascii_username() {
        let t = SubjectTemplate::parse("/DC=org/DC={username}").unwrap();
        assert!(t.render("zoë").is_err());
        assert!(t.render("zoe").is_ok());
    }
}
