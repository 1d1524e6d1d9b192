//! The few DER pieces the engine writes itself (on top of `yasna`), so that the
//! certificate it signs is exactly the one it means: names copied byte for byte,
//! extensions chosen here and nowhere else.

use time::OffsetDateTime;
use yasna::DERWriter;
use yasna::models::{GeneralizedTime, ObjectIdentifier, UTCTime};

/// An OID from its arcs.
pub fn oid(arcs: &[u64]) -> ObjectIdentifier {
    ObjectIdentifier::from_slice(arcs)
}

/// Writes a certificate time: UTCTime through 2049, GeneralizedTime from 2050
/// (RFC 5280 4.1.2.5), always to the second.
pub fn write_time(writer: DERWriter<'_>, t: OffsetDateTime) {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    if t.year() < 2050 {
        writer.write_utctime(&UTCTime::from_datetime(t));
    } else {
        writer.write_generalized_time(&GeneralizedTime::from_datetime(t));
    }
}

/// The AlgorithmIdentifier DER of the signature the given key makes.
pub fn signature_algorithm_der(alg: &'static rcgen::SignatureAlgorithm) -> Option<Vec<u8>> {
    let (arcs, null_params): (&[u64], bool) = if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        (&[1, 2, 840, 10045, 4, 3, 2], false)
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        (&[1, 2, 840, 10045, 4, 3, 3], false)
    } else if alg == &rcgen::PKCS_ED25519 {
        (&[1, 3, 101, 112], false)
    } else if alg == &rcgen::PKCS_RSA_SHA256 {
        (&[1, 2, 840, 113549, 1, 1, 11], true)
    } else if alg == &rcgen::PKCS_RSA_SHA384 {
        (&[1, 2, 840, 113549, 1, 1, 12], true)
    } else if alg == &rcgen::PKCS_RSA_SHA512 {
        (&[1, 2, 840, 113549, 1, 1, 13], true)
    } else {
        return None;
    };
    Some(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_oid(&oid(arcs));
            // RFC 4055: RSA PKCS#1 v1.5 identifiers carry NULL parameters; ECDSA and
            // EdDSA identifiers carry none (RFC 5758, RFC 8410).
            if null_params {
                w.next().write_null();
            }
        })
    }))
}

/// Writes one extension: `SEQUENCE { extnID, critical DEFAULT FALSE, extnValue }`.
pub fn write_extension(writer: DERWriter<'_>, arcs: &[u64], critical: bool, value: &[u8]) {
    writer.write_sequence(|w| {
        w.next().write_oid(&oid(arcs));
        if critical {
            w.next().write_bool(true);
        }
        w.next().write_bytes(value);
    });
}
