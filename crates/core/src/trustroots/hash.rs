//! OpenSSL's subject-name hash (`openssl x509 -noout -subject_hash`, `X509_NAME_hash`)
//! and its legacy one-line name form (`X509_NAME_oneline`), which no crate provides.
//!
//! The hash is the first four bytes, little-endian, of the SHA-1 of the *canonical*
//! name (OpenSSL's `x509_name_canon`): every string value re-encoded as a UTF8String
//! with ASCII whitespace trimmed and collapsed and ASCII letters lowercased, each RDN's
//! SET re-sorted, and the RDN SETs concatenated without the outer SEQUENCE header.
//!
//! The value types follow what OpenSSL itself accepts in a certificate's name (its
//! `ASN1_PRINTABLE` type): a name OpenSSL refuses to load (a VisibleString or a
//! GeneralString value, invalid UTF-8, an odd-length BMPString...) has no OpenSSL hash,
//! so it is an error here too. Every rule below was checked against OpenSSL 3.0; the
//! vectors in the tests come from `crates/core/tests/data/trustroots/vectors.py`.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::TrustRootsError;

/// The subject-name hash OpenSSL uses for `CApath` file names (`<hash>.0`) of an
/// X.509 `Name`, given as DER (the SEQUENCE, header included).
pub fn subject_hash(name_der: &[u8]) -> Result<u32, TrustRootsError> {
    let rdns = parse_name(name_der).map_err(TrustRootsError::Name)?;
    let canon = canonical_rdns(&rdns).map_err(TrustRootsError::Name)?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &canon);
    let d = digest.as_ref();
    Ok(u32::from_le_bytes([d[0], d[1], d[2], d[3]]))
}

/// OpenSSL's canonical encoding of an X.509 `Name` given as DER: what OpenSSL
/// compares when it asks whether two names are equal (`X509_NAME_cmp`). Two names
/// whose canonical encodings are equal differ at most in string types, ASCII case
/// and white space runs, so matching names on this is matching the parsed name,
/// never a string rendering of it.
pub fn canonical_name(name_der: &[u8]) -> Result<Vec<u8>, TrustRootsError> {
    let rdns = parse_name(name_der).map_err(TrustRootsError::Name)?;
    canonical_rdns(&rdns).map_err(TrustRootsError::Name)
}

/// [`subject_hash`] of a DER certificate's subject.
pub fn cert_subject_hash(cert_der: &[u8]) -> Result<u32, TrustRootsError> {
    subject_hash(cert_subject_der(cert_der).map_err(TrustRootsError::Certificate)?)
}

/// A name in OpenSSL's legacy one-line form, as `X509_NAME_oneline` (and so
/// `openssl x509 -subject -nameopt compat` and the Globus tools) writes it:
/// `/O=Example/OU=Online CA/CN=Example Online CA`.
///
/// Attributes are written in their encoded order with OpenSSL's short names (dotted
/// OIDs for unknown ones), the parts of a multi-valued RDN joined with `+`. Value bytes
/// are written as encoded (a BMPString's UTF-16 bytes, a UTF8String's UTF-8 bytes),
/// bytes outside `' '..='~'` as `\xHH` and `/` and `+` backslash-escaped, as
/// OpenSSL 3 does. An empty name gives the empty string.
pub fn oneline(name: &x509_parser::x509::X509Name) -> String {
    oneline_der(name.as_raw()).unwrap_or_else(|_| {
        // Only names this module's reader refuses but x509-parser accepted (a high
        // tag number, say) get here: show them as x509-parser reads them.
        let mut out = String::new();
        for rdn in name.iter() {
            for (j, attr) in rdn.iter().enumerate() {
                push_attribute(
                    &mut out,
                    j,
                    attr.attr_type().as_bytes(),
                    attr.attr_value().data,
                );
            }
        }
        out
    })
}

/// [`oneline`] of a DER certificate's subject, read from the DER itself (x509-parser
/// misreads some odd names, e.g. with an empty RDN).
pub(crate) fn cert_subject_oneline(cert_der: &[u8]) -> Result<String, TrustRootsError> {
    let name = cert_subject_der(cert_der).map_err(TrustRootsError::Certificate)?;
    oneline_der(name).map_err(TrustRootsError::Name)
}

/// [`oneline`] of a DER Name.
fn oneline_der(name_der: &[u8]) -> Result<String, String> {
    let mut out = String::new();
    for rdn in parse_name(name_der)? {
        for (j, attr) in rdn.iter().enumerate() {
            push_attribute(&mut out, j, attr.oid, &attr.value.oneline_bytes());
        }
    }
    Ok(out)
}

/// Appends `/type=value`, or `+type=value` for the second and later attributes
/// (index `j`) of an RDN.
fn push_attribute(out: &mut String, j: usize, oid: &[u8], value: &[u8]) {
    out.push(if j == 0 { '/' } else { '+' });
    out.push_str(&attribute_name(oid));
    out.push('=');
    push_escaped(out, value);
}

/// Appends value bytes the way `X509_NAME_oneline` writes them.
fn push_escaped(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'/' | b'+' => {
                out.push('\\');
                out.push(b as char);
            }
            b' '..=b'~' => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
}

/// OpenSSL's short names (`OBJ_nid2sn`) of the attributes found in subjects.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.4", "SN"),
    ("2.5.4.5", "serialNumber"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "street"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.12", "title"),
    ("2.5.4.13", "description"),
    ("2.5.4.14", "searchGuide"),
    ("2.5.4.15", "businessCategory"),
    ("2.5.4.16", "postalAddress"),
    ("2.5.4.17", "postalCode"),
    ("2.5.4.18", "postOfficeBox"),
    ("2.5.4.20", "telephoneNumber"),
    ("2.5.4.41", "name"),
    ("2.5.4.42", "GN"),
    ("2.5.4.43", "initials"),
    ("2.5.4.44", "generationQualifier"),
    ("2.5.4.45", "x500UniqueIdentifier"),
    ("2.5.4.46", "dnQualifier"),
    ("2.5.4.51", "houseIdentifier"),
    ("2.5.4.54", "dmdName"),
    ("2.5.4.65", "pseudonym"),
    ("2.5.4.72", "role"),
    ("2.5.4.97", "organizationIdentifier"),
    ("2.5.4.100", "dnsName"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
    ("1.2.840.113549.1.9.2", "unstructuredName"),
    ("1.2.840.113549.1.9.8", "unstructuredAddress"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("0.9.2342.19200300.100.1.3", "mail"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("1.3.6.1.4.1.311.60.2.1.1", "jurisdictionL"),
    ("1.3.6.1.4.1.311.60.2.1.2", "jurisdictionST"),
    ("1.3.6.1.4.1.311.60.2.1.3", "jurisdictionC"),
];

/// The short name of an attribute type (OID content bytes), else its dotted form.
fn attribute_name(oid: &[u8]) -> String {
    let dotted = dotted_oid(oid);
    match SHORT_NAMES.iter().find(|(d, _)| *d == dotted) {
        Some((_, short)) => (*short).to_string(),
        // OpenSSL formats unknown OIDs into an 80-byte buffer.
        None => dotted.chars().take(79).collect(),
    }
}

/// The dotted form of OID content bytes; arcs of any size.
fn dotted_oid(content: &[u8]) -> String {
    let mut arcs: Vec<String> = Vec::new();
    // Base-128 digits of the current arc, most significant first.
    let mut digits: Vec<u8> = Vec::new();
    for &b in content {
        digits.push(b & 0x7f);
        if b & 0x80 != 0 {
            continue;
        }
        let arc = base128_to_decimal(&digits);
        digits.clear();
        if arcs.is_empty() {
            // The first subidentifier packs two arcs: 40 * X + Y, X in 0..=2.
            let (x, y) = match arc.parse::<u64>() {
                Ok(v) if v < 40 => (0, v.to_string()),
                Ok(v) if v < 80 => (1, (v - 40).to_string()),
                Ok(v) => (2, (v - 80).to_string()),
                // Too big for u64: it is 2.(v - 80); subtract in decimal.
                Err(_) => (2, decimal_sub_80(&arc)),
            };
            arcs.push(x.to_string());
            arcs.push(y);
        } else {
            arcs.push(arc);
        }
    }
    arcs.join(".")
}

fn base128_to_decimal(digits: &[u8]) -> String {
    // Little-endian limbs of 10^9.
    let mut limbs: Vec<u64> = vec![0];
    for &d in digits {
        let mut carry = u64::from(d);
        for limb in limbs.iter_mut() {
            let v = *limb * 128 + carry;
            *limb = v % 1_000_000_000;
            carry = v / 1_000_000_000;
        }
        if carry > 0 {
            limbs.push(carry);
        }
    }
    let mut s = limbs.last().copied().unwrap_or(0).to_string();
    for limb in limbs.iter().rev().skip(1) {
        let _ = write!(s, "{limb:09}");
    }
    s
}

fn decimal_sub_80(n: &str) -> String {
    let mut digits: Vec<u8> = n.bytes().map(|b| b - b'0').collect();
    let mut borrow = 80u32;
    for d in digits.iter_mut().rev() {
        let sub = borrow % 10;
        borrow /= 10;
        if u32::from(*d) >= sub {
            *d -= sub as u8;
        } else {
            *d = (u32::from(*d) + 10 - sub) as u8;
            borrow += 1;
        }
        if borrow == 0 {
            break;
        }
    }
    let s: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
    let trimmed = s.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

// ---- A small DER reader and writer ----

/// One element: identifier octet (tag numbers below 31 only), contents, and the
/// whole encoding.
#[derive(Clone, Copy)]
struct Tlv<'a> {
    ident: u8,
    content: &'a [u8],
    raw: &'a [u8],
}

const CONSTRUCTED: u8 = 0x20;
const CLASS_MASK: u8 = 0xc0;
const TAG_MASK: u8 = 0x1f;

/// Reads one element. Long-form lengths are accepted even when not minimal, as
/// OpenSSL does; indefinite lengths are not (no DER certificate has them).
fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), String> {
    let (&ident, rest) = input.split_first().ok_or("unexpected end of data")?;
    if ident & TAG_MASK == TAG_MASK {
        return Err("high tag numbers are not supported".into());
    }
    let (&first, mut rest) = rest.split_first().ok_or("truncated length")?;
    let len = match first {
        0..=0x7f => usize::from(first),
        0x80 => return Err("indefinite length (BER) is not supported".into()),
        _ => {
            let n = usize::from(first & 0x7f);
            if n > 4 || rest.len() < n {
                return Err(format!("bad length-of-length {n}"));
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
            rest = &rest[n..];
            len
        }
    };
    if rest.len() < len {
        return Err(format!(
            "length {len} exceeds the {} bytes left",
            rest.len()
        ));
    }
    let header = input.len() - rest.len();
    let tlv = Tlv {
        ident,
        content: &rest[..len],
        raw: &input[..header + len],
    };
    Ok((tlv, &rest[len..]))
}

/// Every element of a constructed content.
fn read_all(mut content: &[u8]) -> Result<Vec<Tlv<'_>>, String> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tlv, rest) = read_tlv(content)?;
        out.push(tlv);
        content = rest;
    }
    Ok(out)
}

/// Appends a DER element with a minimal length.
fn write_tlv(out: &mut Vec<u8>, ident: u8, content: &[u8]) {
    out.push(ident);
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

/// The subject Name element of a certificate: Certificate -> tbsCertificate ->
/// [version], serialNumber, signature, issuer, validity, subject.
fn cert_subject_der(cert_der: &[u8]) -> Result<&[u8], String> {
    let (cert, rest) = read_tlv(cert_der)?;
    if cert.ident != 0x30 || !rest.is_empty() {
        return Err("not a DER certificate".into());
    }
    let (tbs, _) = read_tlv(cert.content)?;
    if tbs.ident != 0x30 {
        return Err("no tbsCertificate".into());
    }
    let mut fields = read_all(tbs.content)?.into_iter().peekable();
    if fields.peek().is_some_and(|f| f.ident == 0xa0) {
        fields.next();
    }
    match fields.nth(4) {
        Some(subject) if subject.ident == 0x30 => Ok(subject.raw),
        _ => Err("tbsCertificate has no subject".into()),
    }
}

// ---- Names ----

/// One AttributeTypeAndValue.
struct Attr<'a> {
    /// The OID's content bytes.
    oid: &'a [u8],
    value: Value<'a>,
}

/// An attribute value as OpenSSL stores it.
struct Value<'a> {
    /// Identifier octet as encoded.
    ident: u8,
    /// Contents (the pieces joined when constructed); for a SEQUENCE, the whole
    /// encoding, which OpenSSL keeps and writes back untouched.
    data: Cow<'a, [u8]>,
}

/// OpenSSL accepts constructed strings nested this deep below the outer one.
const MAX_STRING_NEST: usize = 5;

/// Joins the primitive pieces of a constructed (BER) string, whatever their tags,
/// as OpenSSL's `asn1_collect` does.
fn collect(content: &[u8], depth: usize, out: &mut Vec<u8>) -> Result<(), String> {
    for piece in read_all(content)? {
        if piece.ident & CONSTRUCTED != 0 {
            if depth >= MAX_STRING_NEST {
                return Err("constructed string nested too deep".into());
            }
            collect(piece.content, depth + 1, out)?;
        } else {
            out.extend_from_slice(piece.content);
        }
    }
    Ok(())
}

/// Splits a Name into RDNs (in encoded order, empty SETs kept as empty) of
/// attributes (in encoded order). Value types are not judged here.
fn parse_name(der: &[u8]) -> Result<Vec<Vec<Attr<'_>>>, String> {
    let (name, rest) = read_tlv(der)?;
    if name.ident != 0x30 {
        return Err("a Name is a SEQUENCE".into());
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes after the Name", rest.len()));
    }
    let mut rdns = Vec::new();
    for (i, set) in read_all(name.content)?.into_iter().enumerate() {
        let at = |j: usize, e: &str| format!("RDN {}, attribute {j}: {e}", i + 1);
        if set.ident != 0x31 {
            return Err(format!("RDN {} is not a SET", i + 1));
        }
        let mut attrs = Vec::new();
        for (j, seq) in read_all(set.content)?.into_iter().enumerate() {
            let j = j + 1;
            if seq.ident != 0x30 {
                return Err(at(j, "not a SEQUENCE"));
            }
            let parts = read_all(seq.content).map_err(|e| at(j, &e))?;
            let [oid, value] = parts[..] else {
                return Err(at(j, "not a type and one value"));
            };
            if oid.ident != 0x06 || !valid_oid(oid.content) {
                return Err(at(j, "bad attribute type OID"));
            }
            let universal = value.ident & CLASS_MASK == 0;
            let constructed = value.ident & CONSTRUCTED != 0;
            let data = if universal && value.ident & TAG_MASK == 16 {
                Cow::Borrowed(value.raw)
            } else if universal && constructed {
                let mut joined = Vec::new();
                collect(value.content, 0, &mut joined).map_err(|e| at(j, &e))?;
                Cow::Owned(joined)
            } else {
                Cow::Borrowed(value.content)
            };
            attrs.push(Attr {
                oid: oid.content,
                value: Value {
                    ident: value.ident,
                    data,
                },
            });
        }
        rdns.push(attrs);
    }
    Ok(rdns)
}

/// OpenSSL refuses empty OIDs and non-minimal subidentifiers.
fn valid_oid(content: &[u8]) -> bool {
    let Some(&last) = content.last() else {
        return false;
    };
    let leading_0x80 = content
        .iter()
        .enumerate()
        .any(|(i, &b)| b == 0x80 && (i == 0 || content[i - 1] & 0x80 == 0));
    last & 0x80 == 0 && !leading_0x80
}

/// The whitespace OpenSSL trims and collapses (`ossl_isspace`: ASCII only).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// OpenSSL's `asn1_string_canon` on text already converted to UTF-8.
fn canonical_text(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let start = bytes
        .iter()
        .position(|&b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_space(b))
        .map_or(start, |p| p + 1);
    let mut out = Vec::with_capacity(end - start);
    let mut in_space = false;
    for &b in &bytes[start..end] {
        if is_space(b) {
            if !in_space {
                out.push(b' ');
            }
            in_space = true;
        } else {
            out.push(b.to_ascii_lowercase());
            in_space = false;
        }
    }
    out
}

fn type_name(tag: u8) -> &'static str {
    match tag {
        1 => "BOOLEAN",
        2 => "INTEGER",
        4 => "OCTET STRING",
        5 => "NULL",
        6 => "OBJECT IDENTIFIER",
        10 => "ENUMERATED",
        17 => "SET",
        21 => "VideotexString",
        23 => "UTCTime",
        24 => "GeneralizedTime",
        25 => "GraphicString",
        26 => "VisibleString",
        27 => "GeneralString",
        _ => "this type of",
    }
}

impl Value<'_> {
    /// Appends the canonical encoding of the value.
    fn canonical(&self, out: &mut Vec<u8>) -> Result<(), String> {
        if self.ident & CLASS_MASK != 0 {
            return Err(format!(
                "value tag {:#04x} is not universal; OpenSSL refuses it",
                self.ident
            ));
        }
        let tag = self.ident & TAG_MASK;
        let data = &self.data[..];
        let text: String = match tag {
            12 => std::str::from_utf8(data)
                .map_err(|e| format!("invalid UTF8String: {e}"))?
                .to_string(),
            // PrintableString, T61String and IA5String bytes are all read as Latin-1.
            19 | 20 | 22 => data.iter().map(|&b| char::from(b)).collect(),
            28 => {
                if !data.len().is_multiple_of(4) {
                    return Err(format!("UniversalString of {} bytes", data.len()));
                }
                data.chunks(4)
                    .map(|c| {
                        let v = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                        char::from_u32(v).ok_or_else(|| {
                            format!("UniversalString holds invalid code point {v:#x}")
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
            // UCS-2: OpenSSL does not pair surrogates, so any surrogate is an error.
            30 => {
                if !data.len().is_multiple_of(2) {
                    return Err(format!("BMPString of {} bytes", data.len()));
                }
                data.chunks(2)
                    .map(|c| {
                        let v = u32::from(u16::from_be_bytes([c[0], c[1]]));
                        char::from_u32(v)
                            .ok_or_else(|| format!("BMPString holds surrogate {v:#06x}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            16 if self.ident & CONSTRUCTED != 0 => {
                out.extend_from_slice(data);
                return Ok(());
            }
            3 => {
                write_tlv(out, 3, &canonical_bit_string(data)?);
                return Ok(());
            }
            // ObjectDescriptor, EXTERNAL, REAL, EMBEDDED PDV, RELATIVE-OID, 14, 15,
            // NumericString, CHARACTER STRING: in OpenSSL's set, copied as they are.
            7 | 8 | 9 | 11 | 13 | 14 | 15 | 18 | 29 => {
                write_tlv(out, tag, data);
                return Ok(());
            }
            _ => {
                return Err(format!(
                    "{} value refused by OpenSSL (tag {tag})",
                    type_name(tag)
                ));
            }
        };
        write_tlv(out, 12, &canonical_text(&text));
        Ok(())
    }

    /// The bytes `X509_NAME_oneline` shows.
    fn oneline_bytes(&self) -> Cow<'_, [u8]> {
        if self.ident & (CLASS_MASK | TAG_MASK) == 3
            && let Ok(canon) = canonical_bit_string(&self.data)
        {
            return Cow::Owned(canon.get(1..).unwrap_or_default().to_vec());
        }
        Cow::Borrowed(&self.data)
    }
}

/// A BIT STRING's contents as OpenSSL writes them back: the unused bits cleared,
/// and no unused-bit count when there are no bits.
fn canonical_bit_string(data: &[u8]) -> Result<Vec<u8>, String> {
    let (&unused, bits) = data.split_first().ok_or("empty BIT STRING")?;
    if unused > 7 {
        return Err(format!("BIT STRING with {unused} unused bits"));
    }
    let mut out = Vec::with_capacity(data.len());
    out.push(if bits.is_empty() { 0 } else { unused });
    out.extend_from_slice(bits);
    if let Some(last) = out.last_mut().filter(|_| !bits.is_empty()) {
        *last &= 0xff << unused;
    }
    Ok(out)
}

/// OpenSSL's canonical encoding: each non-empty RDN as a SET of its canonical
/// attributes in DER order, the SETs concatenated with no outer header.
fn canonical_rdns(rdns: &[Vec<Attr<'_>>]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (i, rdn) in rdns.iter().enumerate() {
        let mut encoded: Vec<Vec<u8>> = Vec::with_capacity(rdn.len());
        for (j, attr) in rdn.iter().enumerate() {
            let mut seq = Vec::new();
            write_tlv(&mut seq, 0x06, attr.oid);
            attr.value
                .canonical(&mut seq)
                .map_err(|e| format!("RDN {}, attribute {}: {e}", i + 1, j + 1))?;
            let mut tlv = Vec::with_capacity(seq.len() + 4);
            write_tlv(&mut tlv, 0x30, &seq);
            encoded.push(tlv);
        }
        // OpenSSL drops empty RDNs: they add nothing to the canonical form.
        if encoded.is_empty() {
            continue;
        }
        // SET OF in DER order (shorter first on a common prefix), as OpenSSL sorts.
        encoded.sort();
        write_tlv(&mut out, 0x31, &encoded.concat());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (Name DER in hex, what `openssl x509 -noout -subject_hash` printed for a
    /// certificate with that subject, or None when OpenSSL refused to load it).
    /// Made with OpenSSL 3.0.19 by `crates/core/tests/data/trustroots/vectors.py`:
    /// "req" vectors are the subjects of certificates that `openssl req -new -x509`
    /// made with the options shown; "hand-made" ones were written byte by byte and
    /// wrapped in a minimal certificate (`openssl x509` does not check signatures).
    const HASHES: &[(&str, Option<u32>)] = &[
        // req -subj / (empty)
        ("3000", Some(0xeea339da)),
        // req -subj '/O=Example/OU=Online CA/CN=Example Online CA'
        (
            "30423110300e060355040a0c074578616d706c6531123010060355040b0c094f6e6c696e65204341311a301806035504030c114578616d706c65204f6e6c696e65204341",
            Some(0x218c25ec),
        ),
        // req -subj '/O=example/OU=online  ca/CN=EXAMPLE ONLINE CA ' (same hash as above)
        (
            "30443110300e060355040a0c076578616d706c6531133011060355040b0c0a6f6e6c696e6520206361311b301906035504030c124558414d504c45204f4e4c494e4520434120",
            Some(0x218c25ec),
        ),
        // req -subj '/O=  Example   Org /CN=MiXeD  Case ' (spaces)
        (
            "303231193017060355040a0c1020204578616d706c652020204f7267203115301306035504030c0c4d6958654420204361736520",
            Some(0x2ad2cf72),
        ),
        // req -multivalue-rdn -subj '/CN=a+OU=b'
        (
            "30163114300806035504030c01613008060355040b0c0162",
            Some(0x6fe19aac),
        ),
        // req -multivalue-rdn -subj '/O=Org/CN=Zed+CN=alpha+OU=Unit'
        (
            "3037310c300a060355040a0c034f72673127300a06035504030c035a6564300b060355040b0c04556e6974300c06035504030c05616c706861",
            Some(0x918cc7ee),
        ),
        // req -subj '/DC=ORG/DC=Example/emailAddress=Alice@Example.ORG/CN=Alice' (IA5)
        (
            "306031133011060a0992268993f22c64011916034f524731173015060a0992268993f22c64011916074578616d706c653120301e06092a864886f70d0109011611416c696365404578616d706c652e4f5247310e300c06035504030c05416c696365",
            Some(0x0edb9295),
        ),
        // req -utf8 -subj '/CN=Émile Zoë/O=日本' (UTF8String, non-ASCII kept as is)
        (
            "30273114301206035504030c0bc3896d696c65205a6fc3ab310f300d060355040a0c06e697a5e69cac",
            Some(0x79758a05),
        ),
        // req -utf8 -subj '/CN=émile zoë/O=日本' (non-ASCII case matters)
        (
            "30273114301206035504030c0bc3a96d696c65207a6fc3ab310f300d060355040a0c06e697a5e69cac",
            Some(0x335ab2c4),
        ),
        // req -utf8 string_mask=default -subj '/CN=Émile/O=日本/OU=Plain' (T61String, BMPString, PrintableString)
        (
            "302f310e300c06035504031405c96d696c65310d300b060355040a1e0465e5672c310e300c060355040b1305506c61696e",
            Some(0xdd336246),
        ),
        // req -utf8 string_mask=default -subj '/C=FR/CN=  ÀB  c   日本 ' (BMPString with spaces)
        (
            "3032310b30090603550406130246523123302106035504031e1a0020002000c0004200200020006300200020002065e5672c0020",
            Some(0xb507e193),
        ),
        // req -subj '/O=Long/description=Ab Ab ... Cd' (200 characters: long-form lengths)
        (
            "3081e5310d300b060355040a0c044c6f6e673181d33081d0060355040d0c81c84162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204162204364",
            Some(0x43e6cb80),
        ),
        // hand-made: CN UTF8 '\t A\x0bB\r\n\x0cC \t' (all six ASCII spaces)
        (
            "30163114301206035504030c0b0920410b420d0a0c432009",
            Some(0x59d33821),
        ),
        // hand-made: CN UTF8 U+00A0 'A' U+00A0 (NBSP is not trimmed)
        ("3010310e300c06035504030c05c2a041c2a0", Some(0xb6eb94ab)),
        // hand-made: CN PrintableString '   ' (all spaces -> empty)
        ("300e310c300a06035504031303202020", Some(0x5da78770)),
        // hand-made: CN UTF8 '' (empty)
        ("300b3109300706035504030c00", Some(0x5da78770)),
        // hand-made: CN IA5String bytes 'Caf\xe9' (read as Latin-1)
        ("300f310d300b06035504031604436166e9", Some(0x3008ee67)),
        // hand-made: CN PrintableString bytes 'A\xc9' (read as Latin-1)
        ("300d310b30090603550403130241c9", Some(0x8ee435bc)),
        // hand-made: CN T61String 'Gr\xfc\xdfe X' (Latin-1)
        ("30123110300e060355040314074772fcdf652058", Some(0x566a38cc)),
        // hand-made: CN UniversalString ' Hi 😀 ' (UTF-32BE)
        (
            "30233121301f06035504031c18000000200000004800000069000000200001f60000000020",
            Some(0x1dc69fe4),
        ),
        // hand-made: CN BMPString ' AB Ω ' (UTF-16BE)
        (
            "30173115301306035504031e0c002000410042002003a90020",
            Some(0x2e521dc9),
        ),
        // hand-made: CN NumericString ' 12  34 ' (copied as is)
        (
            "30133111300f060355040312082031322020333420",
            Some(0x9c9cb9ab),
        ),
        // hand-made: unknown OID 1.3.6.1.4.1 UTF8 'X'
        ("300e310c300a06052b060104010c0158", Some(0x6850e7fb)),
        // hand-made: RDN {CN UTF8 'b', CN PrintableString 'A'} re-sorted after canonicalising
        (
            "30163114300806035504030c016230080603550403130141",
            Some(0x3881cc6b),
        ),
        // hand-made: RDN {CN UTF8 'b', CN PrintableString 'A'} in the other order
        (
            "3016311430080603550403130141300806035504030c0162",
            Some(0x3881cc6b),
        ),
        // hand-made: two equal values in one RDN {CN 'x', CN 'X'}
        (
            "30163114300806035504030c017830080603550403130158",
            Some(0x89a38cc4),
        ),
        // hand-made: BIT STRING value with junk in the unused bits (masked)
        ("300d310b30090603550403030207ff", Some(0xe75dc248)),
        // hand-made: BIT STRING value 07 80 (same as above once masked)
        ("300d310b3009060355040303020780", Some(0xe75dc248)),
        // hand-made: empty BIT STRING with unused bits 5
        ("300c310a30080603550403030105", Some(0xaaa02744)),
        // hand-made: SEQUENCE value (copied as is)
        ("300e310c300a060355040330030c0151", Some(0x9866c612)),
        // hand-made: ObjectDescriptor (tag 7) value (copied as is)
        ("300d310b3009060355040307024142", Some(0x30324da3)),
        // hand-made: empty RDN SET then CN=x
        ("300e3100310a300806035504030c0178", Some(0x82965258)),
        // hand-made: only an empty RDN SET
        ("30023100", Some(0xeea339da)),
        // hand-made: CN=x alone (compare with the empty-SET vector)
        ("300c310a300806035504030c0178", Some(0x82965258)),
        // hand-made: CN UTF8 'X  y' * 100 (400 bytes: two-byte lengths)
        (
            "308201a13182019d3082019906035504030c82019058202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079582020795820207958202079",
            Some(0x954256c1),
        ),
        // hand-made: CN UTF8 'x' with a non-minimal length 81 01
        ("300d310b300906035504030c810178", Some(0x82965258)),
        // hand-made: CN=x with the SET length written 81 0a
        ("300d31810a300806035504030c0178", Some(0x82965258)),
        // hand-made: CN VisibleString (OpenSSL refuses the certificate)
        ("300d310b300906035504031a024142", None),
        // hand-made: CN GeneralString (refused)
        ("300d310b300906035504031b024142", None),
        // hand-made: CN OCTET STRING (refused)
        ("300d310b3009060355040304024142", None),
        // hand-made: CN UTF8 invalid bytes c3 28 (refused)
        ("300d310b300906035504030c02c328", None),
        // hand-made: CN UTF8 encoded surrogate ed a0 80 (refused)
        ("300e310c300a06035504030c03eda080", None),
        // hand-made: CN BMPString odd length (refused)
        ("300e310c300a06035504031e03004100", None),
        // hand-made: CN BMPString surrogate pair for U+1F600 (refused)
        ("300f310d300b06035504031e04d83dde00", None),
        // hand-made: CN UniversalString 0x110000 (refused)
        ("300f310d300b06035504031c0400110000", None),
        // hand-made: CN context tag [1] (refused)
        ("300d310b3009060355040381024142", None),
        // hand-made: CN constructed UTF8String (BER): pieces joined
        ("300f310d300b06035504032c040c024142", Some(0x9ab520a7)),
        // hand-made: CN constructed UTF8String, two pieces ' A' and 'B ', one nested
        (
            "30153113301106035504032c0a0c0220412c040c024220",
            Some(0x9ab520a7),
        ),
        // hand-made: CN constructed UTF8String whose piece is an OCTET STRING
        ("300f310d300b06035504032c0404024142", Some(0x9ab520a7)),
        // hand-made: CN constructed BIT STRING pieces 07 and ff
        ("3011310f300d060355040323060301070301ff", Some(0xe75dc248)),
        // hand-made: CN 'A' in 6 layers of constructed UTF8String (the most OpenSSL takes)
        (
            "30183116301406035504032c0d2c0b2c092c072c052c030c0141",
            Some(0x20b69a40),
        ),
        // hand-made: CN 'A' in 7 layers of constructed UTF8String (refused)
        (
            "301a3118301606035504032c0f2c0d2c0b2c092c072c052c030c0141",
            None,
        ),
        // hand-made: CN primitive tag 0x10 (SEQUENCE not constructed)
        ("300d310b3009060355040310024142", None),
        // hand-made: CN SEQUENCE value with a non-minimal inner length (copied as is)
        ("300f310d300b060355040330040c810151", Some(0x0f402d28)),
        // hand-made: AttributeTypeAndValue with a third element (refused)
        ("300f310d300b06035504030c01780c0179", None),
    ];

    /// (Name DER in hex, what `openssl x509 -noout -subject -nameopt compat`, which
    /// is `X509_NAME_oneline`, printed after `subject=`), by the same script.
    const ONELINES: &[(&str, &str)] = &[
        // empty
        ("3000", r#""#),
        // the example CA
        (
            "30423110300e060355040a0c074578616d706c6531123010060355040b0c094f6e6c696e65204341311a301806035504030c114578616d706c65204f6e6c696e65204341",
            r#"/O=Example/OU=Online CA/CN=Example Online CA"#,
        ),
        // multi-valued RDN in non-DER order
        (
            "302e310c300a060355040a0c034f7267311e300806035504030c01613008060355040b0c016230080603550403130163",
            r#"/O=Org/CN=a+OU=b+CN=c"#,
        ),
        // escapes
        (
            "301a3118301606035504030c0f612f622b633d642c20655c66092227",
            r#"/CN=a\/b\+c=d, e\f\x09"'"#,
        ),
        // UTF8String
        (
            "30183116301406035504030c0dc3896d696c6520e697a5e69cac",
            r#"/CN=\xC3\x89mile \xE6\x97\xA5\xE6\x9C\xAC"#,
        ),
        // BMPString
        (
            "3011310f300d06035504031e06004100c965e5",
            r#"/CN=\x00A\x00\xC9e\xE5"#,
        ),
        // T61String
        ("300e310c300a06035504031403c97f7e", r#"/CN=\xC9\x7F~"#),
        // UniversalString
        ("300f310d300b06035504031c0400000041", r#"/CN=\x00\x00\x00A"#),
        // BIT STRING
        ("300d310b30090603550403030207ff", r#"/CN=\x80"#),
        // SEQUENCE
        ("300e310c300a060355040330030c0151", r#"/CN=0\x03\x0C\x01Q"#),
        // constructed UTF8String
        ("3011310f300d06035504032c060c01410c0142", r#"/CN=AB"#),
        // unknown OIDs
        (
            "3038310b300906042a0304050c017831143012060d883782808080808080808000010c017931133011060a0992268993f22c64011916036f7267",
            r#"/1.2.3.4.5=x/2.999.18446744073709551616.1=y/DC=org"#,
        ),
        // an empty RDN
        (
            "301a3100310a300806035504030c0178310a300806035504030c0179",
            r#"/CN=x/CN=y"#,
        ),
        // all short names
        (
            "30820207310a300806035504030c0176310a300806035504040c0176310a300806035504050c0176310a300806035504060c0176310a300806035504070c0176310a300806035504080c0176310a300806035504090c0176310a3008060355040a0c0176310a3008060355040b0c0176310a3008060355040c0c0176310a3008060355040d0c0176310a3008060355040e0c0176310a3008060355040f0c0176310a300806035504100c0176310a300806035504110c0176310a300806035504120c0176310a300806035504140c0176310a300806035504290c0176310a3008060355042a0c0176310a3008060355042b0c0176310a3008060355042c0c0176310a3008060355042d0c0176310a3008060355042e0c0176310a300806035504330c0176310a300806035504360c0176310a300806035504410c0176310a300806035504480c0176310a300806035504610c0176310a300806035504640c01763110300e06092a864886f70d0109010c01763110300e06092a864886f70d0109020c01763110300e06092a864886f70d0109080c01763111300f060a0992268993f22c6401010c01763111300f060a0992268993f22c6401030c01763111300f060a0992268993f22c6401190c017631123010060b2b0601040182373c0201010c017631123010060b2b0601040182373c0201020c017631123010060b2b0601040182373c0201030c0176",
            r#"/CN=v/SN=v/serialNumber=v/C=v/L=v/ST=v/street=v/O=v/OU=v/title=v/description=v/searchGuide=v/businessCategory=v/postalAddress=v/postalCode=v/postOfficeBox=v/telephoneNumber=v/name=v/GN=v/initials=v/generationQualifier=v/x500UniqueIdentifier=v/dnQualifier=v/houseIdentifier=v/dmdName=v/pseudonym=v/role=v/organizationIdentifier=v/dnsName=v/emailAddress=v/unstructuredName=v/unstructuredAddress=v/UID=v/mail=v/DC=v/jurisdictionL=v/jurisdictionST=v/jurisdictionC=v"#,
        ),
    ];

    #[test]
    fn subject_hash_matches_openssl() {
        let mut failures = Vec::new();
        for (hex_name, expected) in HASHES {
            let der = hex::decode(hex_name).unwrap();
            let got = subject_hash(&der);
            if got.as_ref().ok() != expected.as_ref() {
                failures.push(format!(
                    "{hex_name}: OpenSSL {expected:08x?}, here {got:08x?}"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn oneline_matches_openssl() {
        for (hex_name, expected) in ONELINES {
            let der = hex::decode(hex_name).unwrap();
            assert_eq!(oneline_der(&der).as_deref(), Ok(*expected), "{hex_name}");
        }
    }

    #[test]
    fn oneline_of_parsed_names() {
        use x509_parser::prelude::FromDer;
        for (hex_name, expected) in ONELINES {
            let der = hex::decode(hex_name).unwrap();
            // x509-parser refuses some of the odd encodings, and misreads a Name with
            // an empty RDN (its raw DER stops at the header); the rest must agree.
            match x509_parser::x509::X509Name::from_der(&der) {
                Ok((_, name)) if name.as_raw() == der => {
                    assert_eq!(oneline(&name), *expected, "{hex_name}")
                }
                _ => {}
            }
        }
    }

    #[test]
    fn refuses_malformed_names() {
        for bad in [
            "",
            "3100",                             // a SET, not a SEQUENCE
            "300c310a300806035504030c017800",   // CN=x then a stray byte
            "3080310a300806035504030c01780000", // indefinite length
            "300c310a300806035504030c0278",     // value longer than its SET
            "300a3008300606035504030c",         // attribute without a SET
            "3007310530030603550403",           // type without value
            "300b3109300706000c03616263",       // empty OID
        ] {
            let der = hex::decode(bad).unwrap();
            assert!(subject_hash(&der).is_err(), "{bad}");
        }
        let err =
            subject_hash(&hex::decode("300e310c300a06035504031e03004100").unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "subject name: RDN 1, attribute 1: BMPString of 3 bytes"
        );
    }

    #[test]
    fn certificate_subject_hash() {
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationalUnitName, "Online CA");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Example Online CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        // The second vector: `openssl req -subj '/O=Example/OU=Online CA/CN=Example Online CA'`.
        assert_eq!(cert_subject_hash(cert.der()).unwrap(), 0x218c25ec);
        assert!(cert_subject_hash(&cert.der()[..50]).is_err());
        assert!(cert_subject_hash(b"\x30\x00").is_err());
    }

    #[test]
    fn dotted_oids() {
        assert_eq!(dotted_oid(&[0x2a, 0x03, 0x04, 0x05]), "1.2.3.4.5");
        assert_eq!(dotted_oid(&[0x55, 0x04, 0x03]), "2.5.4.3");
        assert_eq!(dotted_oid(&[0x00]), "0.0");
        // 2.999: first subidentifier 1079.
        assert_eq!(dotted_oid(&[0x88, 0x37]), "2.999");
        // 2.(2^70): the first arc alone is beyond u64.
        let mut big = vec![0x81];
        big.extend([0x80; 9]);
        big.push(0x50);
        assert_eq!(dotted_oid(&big), "2.1180591620717411303424");
    }
}
