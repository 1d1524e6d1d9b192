//! The LDAP directory as a second password source: a username not in the store (or
//! whose row is a directory shadow, hash [`LDAP_MARKER`]) is checked by binding to
//! the directory as that user, never by reading a password attribute. The username
//! is escaped for where it goes: RFC 4514 in a DN, RFC 4515 in a filter.
//!
//! [`LdapSection`] is the configuration, [`Directory`] the client (connections,
//! binds, searches), and the login step that keeps the local shadow accounts is
//! `check`, called from the one password check.

mod config;
mod directory;
mod login;

pub use config::LdapSection;
pub use directory::{Directory, DirectoryConfigError, DirectoryEntry, Probe, Unavailable, Verdict};
pub(crate) use login::check;

/// The password hash of a local row that stands for a directory user: never
/// verified locally (the local verifier knows it as `Scheme::Directory`); such a
/// user's password is checked against the directory.
pub const LDAP_MARKER: &str = onlineca_core::password::DIRECTORY_MARKER;

/// The placeholder the templates carry.
pub(crate) const USERNAME: &str = "{username}";

/// `name` escaped for an attribute value in a DN (RFC 4514).
pub fn escape_dn_value(name: &str) -> String {
    ldap3::dn_escape(name).into_owned()
}

/// `name` escaped for an assertion value in a filter (RFC 4515).
pub fn escape_filter_value(name: &str) -> String {
    ldap3::ldap_escape(name).into_owned()
}

/// `entry` if it is an `entryUUID` (RFC 4122 text form).
pub(crate) fn as_entry_uuid(entry: &str) -> Option<&str> {
    let shape = entry.len() == 36
        && entry.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    shape.then_some(entry)
}

/// An AD `objectGUID` (32 hex digits, as the account id holds it) as a filter
/// value: every byte escaped (RFC 4515), as binary attributes are compared.
pub(crate) fn as_object_guid(entry: &str) -> Option<String> {
    let shape = entry.len() == 32 && entry.chars().all(|c| c.is_ascii_hexdigit());
    shape.then(|| {
        entry
            .as_bytes()
            .chunks(2)
            .map(|pair| format!("\\{}", String::from_utf8_lossy(pair)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_recognised_by_shape() {
        let uuid = "3f2c1b7a-0d4e-4c5f-9a8b-112233445566";
        assert_eq!(as_entry_uuid(uuid), Some(uuid));
        assert_eq!(as_entry_uuid("uid=a,ou=people,dc=x"), None);
        assert_eq!(as_entry_uuid("3f2c1b7a)0d4e-4c5f-9a8b-112233445566"), None);
        assert_eq!(as_object_guid("00ff"), None);
        assert_eq!(
            as_object_guid("00112233445566778899aabbccddeeff").as_deref(),
            Some("\\00\\11\\22\\33\\44\\55\\66\\77\\88\\99\\aa\\bb\\cc\\dd\\ee\\ff")
        );
    }

    #[test]
    fn hostile_names_cannot_widen_a_filter_or_change_a_dn() {
        assert_eq!(escape_filter_value("*"), "\\2a");
        assert_eq!(escape_filter_value("alice)(uid=*"), "alice\\29\\28uid=\\2a");
        assert_eq!(escape_filter_value("a\0b"), "a\\00b");
        assert_eq!(escape_filter_value("a\\b"), "a\\5cb");
        assert_eq!(escape_dn_value("alice,ou=admins"), "alice\\2cou\\3dadmins");
        assert_eq!(escape_dn_value("a+b"), "a\\2bb");
        assert_eq!(escape_dn_value("#a "), "\\23a\\20");
        assert_eq!(escape_dn_value("a\0"), "a\\00");
        assert_eq!(escape_dn_value("alice"), "alice");
    }
}
