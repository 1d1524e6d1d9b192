//! Certificate serial numbers.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// Length of a serial in bytes (RFC 5280 allows at most 20 octets).
pub const SERIAL_LEN: usize = 20;

/// A fresh serial: 159 random bits from the system CSPRNG. The top bit is cleared so
/// the DER INTEGER never needs a 21st (sign) byte, which webpki and others reject;
/// the lowest bit of the first byte is set so the value never shrinks below 20 bytes
/// and is never zero.
pub fn random_serial() -> Result<[u8; SERIAL_LEN], aws_lc_rs::error::Unspecified> {
    let mut s = [0u8; SERIAL_LEN];
    SystemRandom::new().fill(&mut s)?;
    s[0] = (s[0] & 0x7f) | 0x01;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_positive_twenty_bytes_and_differ() {
        let a = random_serial().unwrap();
        let b = random_serial().unwrap();
        assert_ne!(a, b);
        for s in [a, b] {
            assert_eq!(s[0] & 0x80, 0);
            assert_ne!(s[0], 0);
        }
    }
}
