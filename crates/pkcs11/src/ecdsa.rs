//! ECDSA signatures as tokens make them (CKM_ECDSA: raw `r‖s`) and as X.509 carries
//! them (DER `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`, RFC 5480).

/// Converts a raw `r‖s` signature (two equal halves, big-endian) to DER.
pub fn raw_to_der(raw: &[u8]) -> Result<Vec<u8>, String> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return Err(format!(
            "an ECDSA signature of {} bytes is not r and s of equal length",
            raw.len()
        ));
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            // Unsigned big-endian: leading zeros dropped, a 0x00 added before a set top bit.
            w.next().write_bigint_bytes(r, true);
            w.next().write_bigint_bytes(s, true);
        })
    }))
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};

    use super::*;

    #[test]
    fn converted_signatures_verify_as_asn1() {
        let rng = SystemRandom::new();
        for (fixed, asn1) in [
            (
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &signature::ECDSA_P256_SHA256_ASN1,
            ),
            (
                &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                &signature::ECDSA_P384_SHA384_ASN1,
            ),
        ] {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(fixed, &rng).unwrap();
            let key = EcdsaKeyPair::from_pkcs8(fixed, pkcs8.as_ref()).unwrap();
            // Enough signatures that some r or s have their top bit set or a leading zero.
            for i in 0..64u8 {
                let msg = [i; 10];
                let raw = key.sign(&rng, &msg).unwrap();
                let der = raw_to_der(raw.as_ref()).unwrap();
                signature::UnparsedPublicKey::new(asn1, key.public_key().as_ref())
                    .verify(&msg, &der)
                    .unwrap();
            }
        }
    }

    #[test]
    fn integers_are_minimal_and_positive() {
        let mut raw = vec![0u8; 64];
        raw[31] = 1; // r = 1
        raw[32] = 0x80; // s has its top bit set
        let der = raw_to_der(&raw).unwrap();
        assert_eq!(&der[..5], &[0x30, 0x26, 0x02, 0x01, 0x01]);
        assert_eq!(&der[5..8], &[0x02, 0x21, 0x00]);
        assert!(raw_to_der(&[1, 2, 3]).is_err());
        assert!(raw_to_der(&[]).is_err());
    }
}
