//! Globus EACL signing policies (`<hash>.signing_policy`): which subjects a CA may
//! sign, as Globus GSI clients check it.
//!
//! The format has no escape mechanism: a subject is quoted with `'` (and inside
//! `cond_subjects`, each pattern with `"`), patterns use `*` as a wildcard, and Globus
//! compares them with the OpenSSL one-line form of names. So characters that would
//! break or widen a policy are written as OpenSSL-style `\xHH` escapes: a name
//! holding them then matches nothing, and the policy fails closed (it denies)
//! instead of being malformed or allowing more than meant.

use std::fmt::Write as _;

/// The signing policy of one CA: a comment line, then the `access_id_CA`,
/// `pos_rights` and `cond_subjects` lines, laid out as in the protocol's example.
///
/// `ca_subject` is the CA's one-line subject ([`super::oneline`]) and
/// `cond_subjects` the patterns it may sign (e.g. from [`namespace`]). Quotes and
/// control characters in them become `\xHH` (see the module notes); no patterns at
/// all give `'""'`, which matches nothing.
pub fn signing_policy(ca_subject: &str, cond_subjects: &[String]) -> String {
    let patterns = if cond_subjects.is_empty() {
        "\"\"".to_string()
    } else {
        cond_subjects
            .iter()
            .map(|s| format!("\"{}\"", quotable(s)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "# Signing policy (Globus EACL) of this CA, written by onlineca.\n\
         access_id_CA      X509         '{}'\n\
         pos_rights        globus        CA:sign\n\
         cond_subjects     globus       '{patterns}'\n",
        quotable(ca_subject)
    )
}

/// Escapes what cannot stand inside the policy's quotes: `'`, `"` and control
/// characters.
fn quotable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\'' | '"' | '\0'..='\x1f' | '\x7f' => {
                let _ = write!(out, "\\x{:02X}", u32::from(c));
            }
            _ => out.push(c),
        }
    }
    out
}

/// The namespace pattern of the subjects a template issues, from the part of the
/// template before the username: `[("O", "Example"), ("OU", "Users")]` gives
/// `/O=Example/OU=Users/*`; an empty prefix gives `/*`.
///
/// Values are written as OpenSSL 3's one-line form writes them (`/` and `+` as `\/`
/// and `\+`, bytes outside `' '..='~'` as `\xHH` of their UTF-8), so the pattern
/// matches the subjects exactly as relying parties print them. `*`, `?`, `\` and
/// quotes, which Globus would read as pattern syntax or which end the quoting, are
/// written as `\xHH`: a pattern holding them matches nothing (fails closed) rather
/// than matching more than the template's subjects.
pub fn namespace(fixed_prefix: &[(String, String)]) -> String {
    let mut out = String::new();
    for (attr, value) in fixed_prefix {
        out.push('/');
        push_pattern_text(&mut out, attr);
        out.push('=');
        push_pattern_text(&mut out, value);
    }
    out.push_str("/*");
    out
}

fn push_pattern_text(out: &mut String, text: &str) {
    for &b in text.as_bytes() {
        match b {
            b'*' | b'?' | b'\\' | b'\'' | b'"' => {
                let _ = write!(out, "\\x{b:02X}");
            }
            b'/' | b'+' => {
                out.push('\\');
                out.push(char::from(b));
            }
            b' '..=b'~' => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, v)| (a.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn policy_as_in_the_protocol() {
        let p = signing_policy(
            "/O=Example/OU=Online CA/CN=Example Online CA",
            &[namespace(&pairs(&[("O", "Example"), ("OU", "Users")]))],
        );
        assert_eq!(
            p,
            "# Signing policy (Globus EACL) of this CA, written by onlineca.\n\
             access_id_CA      X509         '/O=Example/OU=Online CA/CN=Example Online CA'\n\
             pos_rights        globus        CA:sign\n\
             cond_subjects     globus       '\"/O=Example/OU=Users/*\"'\n"
        );
    }

    #[test]
    fn several_patterns() {
        let p = signing_policy("/CN=Root", &["/O=A/*".into(), "/O=B/CN=Sub CA".into()]);
        assert!(p.contains("cond_subjects     globus       '\"/O=A/*\" \"/O=B/CN=Sub CA\"'\n"));
        let none = signing_policy("/CN=Root", &[]);
        assert!(none.ends_with("cond_subjects     globus       '\"\"'\n"));
    }

    #[test]
    fn quotes_cannot_break_the_policy() {
        let p = signing_policy("/O=O'Reilly/CN=\"CA\"\nx", &["/O=a'b\"c/*".into()]);
        assert!(p.contains("'/O=O\\x27Reilly/CN=\\x22CA\\x22\\x0Ax'\n"));
        assert!(p.contains("'\"/O=a\\x27b\\x22c/*\"'\n"));
        assert_eq!(p.lines().count(), 4);
    }

    #[test]
    fn namespaces() {
        assert_eq!(namespace(&[]), "/*");
        assert_eq!(
            namespace(&pairs(&[
                ("DC", "org"),
                ("DC", "example"),
                ("OU", "People")
            ])),
            "/DC=org/DC=example/OU=People/*"
        );
        // `/` and `+` as OpenSSL 3 writes them; never an extra RDN.
        assert_eq!(namespace(&pairs(&[("O", "A/CN=x+y")])), "/O=A\\/CN=x\\+y/*");
        // Wildcards, quotes and backslashes cannot widen or break the pattern.
        assert_eq!(
            namespace(&pairs(&[("O", "*"), ("OU", "a?'\"\\")])),
            "/O=\\x2A/OU=a\\x3F\\x27\\x22\\x5C/*"
        );
        // Non-ASCII as the UTF-8 bytes of a UTF8String value.
        assert_eq!(namespace(&pairs(&[("O", "Émile")])), "/O=\\xC3\\x89mile/*");
    }
}
