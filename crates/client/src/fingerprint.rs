//! SHA-256 certificate fingerprints, as `openssl x509 -fingerprint -sha256` prints them.

use std::fmt;
use std::str::FromStr;

/// The SHA-256 digest of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of(der: &[u8]) -> Fingerprint {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let mut b = [0u8; 32];
        b.copy_from_slice(d.as_ref());
        Fingerprint(b)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Upper-case hex pairs separated by colons, like OpenSSL.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Accepts 64 hex digits, either case, with or without colons (or spaces) between
/// pairs, optionally after OpenSSL's `SHA256 Fingerprint=` / `sha256 Fingerprint=`.
impl FromStr for Fingerprint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let t = match t.split_once('=') {
            Some((label, rest)) if label.to_ascii_lowercase().contains("fingerprint") => rest,
            _ => t,
        };
        let hex: String = t.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "{s:?} is not a SHA-256 fingerprint: expected 64 hex digits, colons optional (as `openssl x509 -noout -fingerprint -sha256` prints)"
            ));
        }
        let mut b = [0u8; 32];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(Fingerprint(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_people_paste() {
        let fp = Fingerprint::of(b"x");
        let shown = fp.to_string();
        assert_eq!(shown.len(), 95);
        assert_eq!(shown.parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(shown.to_lowercase().parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(shown.replace(':', "").parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(
            format!("sha256 Fingerprint={shown}")
                .parse::<Fingerprint>()
                .unwrap(),
            fp
        );
        assert!("abc".parse::<Fingerprint>().is_err());
        assert!(shown[..90].parse::<Fingerprint>().is_err());
        assert!(shown.replace('A', "G").parse::<Fingerprint>().is_err() || !shown.contains('A'));
    }
}
