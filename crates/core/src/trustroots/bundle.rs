//! The trust-roots files and the two line encodings of `GET {prefix}/trustroots/`.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::hash::cert_subject_oneline;
use super::{TrustRootsError, cert_subject_hash, signing_policy};

/// One file of the trust-roots directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustFile {
    /// File name, always [`valid_file_name`].
    pub name: String,
    /// Contents.
    pub data: Vec<u8>,
}

/// A CA to publish and what its signing policy allows it to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaEntry {
    /// The CA certificate, DER.
    pub cert_der: Vec<u8>,
    /// `cond_subjects` patterns of its signing policy (see [`super::namespace`]).
    pub cond_subjects: Vec<String>,
}

/// A trust-roots directory: files sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustBundle {
    files: Vec<TrustFile>,
}

/// The line encodings of a trust-roots response (protocol.md, "Encoding").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// `TRUSTED_CERTS=<base64 of the comma-separated names>` then
    /// `FILEDATA_<name>=<base64>` lines: the seed's format, the default.
    #[default]
    Fields,
    /// Only `<name>=<base64>` lines: the deployed clients' format.
    Files,
}

impl Encoding {
    /// The name used in configuration and in `?format=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Fields => "fields",
            Encoding::Files => "files",
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Encoding {
    type Err = TrustRootsError;

    /// `fields` or `files`, exactly.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fields" => Ok(Encoding::Fields),
            "files" => Ok(Encoding::Files),
            _ => Err(TrustRootsError::UnknownEncoding(s.to_string())),
        }
    }
}

/// Whether a trust-roots file name is safe to create in a directory:
/// `[A-Za-z0-9._-]+`, at most 255 bytes, not starting with `.` (so neither `.`,
/// `..` nor a hidden file).
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A DER certificate as PEM, LF line ends, ending in a newline.
fn certificate_pem(der: &[u8]) -> Vec<u8> {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
    .into_bytes()
}

impl TrustBundle {
    /// The files for `cas`: `<hash>.N` (PEM) per distinct certificate and one
    /// `<hash>.signing_policy` per hash.
    ///
    /// Identical certificates (same DER) are published once, their `cond_subjects`
    /// merged. Distinct CAs sharing a hash get `.0`, `.1`, ... in the order of their
    /// DER, so the numbering is stable whatever the input order; their signing policy
    /// holds one block per distinct subject. Every certificate must parse.
    pub fn build(cas: &[CaEntry]) -> Result<Self, TrustRootsError> {
        // DER -> (hash, subject, cond_subjects); the BTreeMap orders by DER.
        let mut unique: BTreeMap<&[u8], (u32, String, Vec<String>)> = BTreeMap::new();
        for (i, ca) in cas.iter().enumerate() {
            let which = |e: String| {
                TrustRootsError::Certificate(format!("CA {} of {}: {e}", i + 1, cas.len()))
            };
            let (rest, _) = x509_parser::parse_x509_certificate(&ca.cert_der)
                .map_err(|e| which(e.to_string()))?;
            if !rest.is_empty() {
                return Err(which(format!("{} bytes after the certificate", rest.len())));
            }
            let hash = cert_subject_hash(&ca.cert_der).map_err(|e| which(e.to_string()))?;
            let subject = cert_subject_oneline(&ca.cert_der).map_err(|e| which(e.to_string()))?;
            let entry = unique
                .entry(&ca.cert_der)
                .or_insert_with(|| (hash, subject, Vec::new()));
            merge(&mut entry.2, &ca.cond_subjects);
        }

        let mut by_hash: BTreeMap<u32, Vec<Published<'_>>> = BTreeMap::new();
        for (der, (hash, subject, conds)) in &unique {
            by_hash
                .entry(*hash)
                .or_default()
                .push((der, subject, conds));
        }

        let mut bundle = TrustBundle::default();
        for (hash, certs) in &by_hash {
            // One policy block per subject: colliding certificates are mostly the
            // same CA re-keyed, which need a single access_id_CA.
            let mut blocks: Vec<(&str, Vec<String>)> = Vec::new();
            for (n, (der, subject, conds)) in certs.iter().enumerate() {
                bundle.insert(format!("{hash:08x}.{n}"), certificate_pem(der))?;
                match blocks.iter_mut().find(|(s, _)| s == subject) {
                    Some((_, all)) => merge(all, conds),
                    None => blocks.push((subject, conds.to_vec())),
                }
            }
            let policy: String = blocks
                .iter()
                .map(|(s, conds)| signing_policy(s, conds))
                .collect();
            bundle.insert(format!("{hash:08x}.signing_policy"), policy.into_bytes())?;
        }
        Ok(bundle)
    }

    /// Adds a file (e.g. a CRL as `<hash>.r0`), keeping the files sorted; refuses
    /// an unsafe or already present name.
    pub fn add_file(
        &mut self,
        name: impl Into<String>,
        data: impl Into<Vec<u8>>,
    ) -> Result<(), TrustRootsError> {
        self.insert(name.into(), data.into())
    }

    fn insert(&mut self, name: String, data: Vec<u8>) -> Result<(), TrustRootsError> {
        if !valid_file_name(&name) {
            return Err(TrustRootsError::FileName(name));
        }
        match self.files.binary_search_by(|f| f.name.as_str().cmp(&name)) {
            Ok(_) => Err(TrustRootsError::DuplicateFile(name)),
            Err(at) => {
                self.files.insert(at, TrustFile { name, data });
                Ok(())
            }
        }
    }

    /// The files, sorted by name (byte order).
    pub fn files(&self) -> &[TrustFile] {
        &self.files
    }

    /// The response body in `enc`: one `KEY=<base64>` line per item, each ending
    /// in `\n`.
    pub fn encode(&self, enc: Encoding) -> String {
        let mut out = String::new();
        let prefix = match enc {
            Encoding::Fields => {
                let names: Vec<&str> = self.files.iter().map(|f| f.name.as_str()).collect();
                out.push_str("TRUSTED_CERTS=");
                out.push_str(&B64.encode(names.join(",")));
                out.push('\n');
                "FILEDATA_"
            }
            Encoding::Files => "",
        };
        for f in &self.files {
            out.push_str(prefix);
            out.push_str(&f.name);
            out.push('=');
            out.push_str(&B64.encode(&f.data));
            out.push('\n');
        }
        out
    }
}

/// A certificate to publish: DER, one-line subject, `cond_subjects`.
type Published<'a> = (&'a [u8], &'a str, &'a [String]);

/// Appends the items of `more` not yet in `all`, keeping the order.
fn merge(all: &mut Vec<String>, more: &[String]) {
    for s in more {
        if !all.contains(s) {
            all.push(s.clone());
        }
    }
}

/// The file names of a `TRUSTED_CERTS` value: base64 of `a,b,c` as we send it, or
/// `a,b,c` itself as MyProxy sends it. A value is taken as the plain list when it
/// cannot be standard base64 of a valid list (names hold `.`, which base64 never does).
fn trusted_certs_names(value: &str) -> Result<Vec<String>, String> {
    let from_base64 = B64
        .decode(value)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|list| split_names(list).iter().all(|n| valid_file_name(n)));
    let list = from_base64.unwrap_or_else(|| value.to_string());
    let names = split_names(&list);
    if let Some(bad) = names.iter().find(|n| !valid_file_name(n)) {
        return Err(format!("TRUSTED_CERTS lists the refused file name {bad:?}"));
    }
    Ok(names)
}

fn split_names(list: &str) -> Vec<String> {
    if list.trim().is_empty() {
        return Vec::new();
    }
    list.split(',').map(|n| n.trim().to_string()).collect()
}

/// Reads a trust-roots response in either encoding (and a `TRUSTED_CERTS` value
/// given as a plain comma-separated list), returning the files in the order sent.
///
/// Refused, naming the line and key: a line without `=`, an unsafe or repeated
/// file name, invalid base64; in the `fields` form, a first line other than
/// `TRUSTED_CERTS`, a key without `FILEDATA_`, a `FILEDATA_` file not listed in
/// `TRUSTED_CERTS`, and (on the `TRUSTED_CERTS` line) listed files never sent. A
/// trailing `\r` on a line and empty lines are tolerated.
pub fn decode(text: &str) -> Result<Vec<TrustFile>, TrustRootsError> {
    let err = |line: usize, reason: String| TrustRootsError::Decode { line, reason };
    let mut files: Vec<TrustFile> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    // In the fields form: the listed names not yet sent.
    let mut listed: Option<BTreeSet<String>> = None;
    let mut listed_on = 0;
    let mut first = true;

    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(err(n, format!("no '=' in {:?}", shorten(line))));
        };
        if key == "TRUSTED_CERTS" {
            if !first {
                return Err(err(n, "TRUSTED_CERTS must be the first line".into()));
            }
            first = false;
            let names = trusted_certs_names(value).map_err(|e| err(n, e))?;
            let mut set = BTreeSet::new();
            for name in names {
                if !set.insert(name.clone()) {
                    return Err(err(n, format!("TRUSTED_CERTS lists {name:?} twice")));
                }
            }
            listed = Some(set);
            listed_on = n;
            continue;
        }
        first = false;
        let name = match &listed {
            Some(_) => key
                .strip_prefix("FILEDATA_")
                .ok_or_else(|| err(n, format!("key {key:?} is not FILEDATA_<name>")))?,
            None => key,
        };
        if !valid_file_name(name) {
            return Err(err(n, format!("key {key:?}: refused file name {name:?}")));
        }
        if let Some(set) = &mut listed
            && !set.remove(name)
            && !seen.contains(name)
        {
            return Err(err(
                n,
                format!("key {key:?}: {name:?} is not listed in TRUSTED_CERTS"),
            ));
        }
        if !seen.insert(name.to_string()) {
            return Err(err(n, format!("key {key:?}: file {name:?} sent twice")));
        }
        let data = B64
            .decode(value)
            .map_err(|e| err(n, format!("key {key:?}: invalid base64: {e}")))?;
        files.push(TrustFile {
            name: name.to_string(),
            data,
        });
    }
    if let Some(missing) = listed.filter(|s| !s.is_empty()) {
        let names: Vec<&str> = missing.iter().map(String::as_str).collect();
        return Err(err(
            listed_on,
            format!(
                "TRUSTED_CERTS lists files that were not sent: {}",
                names.join(", ")
            ),
        ));
    }
    Ok(files)
}

/// A line cut for an error message.
fn shorten(line: &str) -> String {
    match line.char_indices().nth(40) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};

    struct Ca {
        params: CertificateParams,
        key: KeyPair,
        der: Vec<u8>,
    }

    fn ca(org: &str, cn: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        Ca { params, key, der }
    }

    fn leaf(ca: &Ca, cn: &str) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        // Lets OpenSSL pick the right one of two CAs with the same subject.
        params.use_authority_key_identifier_extension = true;
        let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
        params
            .signed_by(&KeyPair::generate().unwrap(), &issuer)
            .unwrap()
            .der()
            .to_vec()
    }

    fn entry(ca: &Ca, conds: &[&str]) -> CaEntry {
        CaEntry {
            cert_der: ca.der.clone(),
            cond_subjects: conds.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn names(b: &TrustBundle) -> Vec<&str> {
        b.files().iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn files_of_a_bundle() {
        let root = ca("Example", "Example Root");
        let issuing = ca("Example", "Example Online CA");
        let b = TrustBundle::build(&[
            entry(&issuing, &["/O=Example/OU=Users/*"]),
            entry(&root, &["*"]),
        ])
        .unwrap();
        let h_root = format!("{:08x}", cert_subject_hash(&root.der).unwrap());
        let h_ca = format!("{:08x}", cert_subject_hash(&issuing.der).unwrap());
        let mut expected = vec![
            format!("{h_root}.0"),
            format!("{h_root}.signing_policy"),
            format!("{h_ca}.0"),
            format!("{h_ca}.signing_policy"),
        ];
        expected.sort();
        assert_eq!(names(&b), expected);

        let file = |name: &str| b.files().iter().find(|f| f.name == name).unwrap();
        let pem = String::from_utf8(file(&format!("{h_ca}.0")).data.clone()).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pem.ends_with("-----END CERTIFICATE-----\n") && !pem.contains('\r'));
        assert_eq!(pem::parse(&pem).unwrap().contents(), issuing.der);
        let policy =
            String::from_utf8(file(&format!("{h_ca}.signing_policy")).data.clone()).unwrap();
        assert_eq!(
            policy,
            signing_policy(
                "/O=Example/CN=Example Online CA",
                &["/O=Example/OU=Users/*".into()]
            )
        );
    }

    #[test]
    fn identical_certificates_once() {
        let c = ca("Example", "Example Online CA");
        let b = TrustBundle::build(&[entry(&c, &["/O=A/*"]), entry(&c, &["/O=B/*", "/O=A/*"])])
            .unwrap();
        assert_eq!(b.files().len(), 2);
        let policy = String::from_utf8(b.files()[1].data.clone()).unwrap();
        assert!(policy.contains("'\"/O=A/*\" \"/O=B/*\"'"), "{policy}");
    }

    #[test]
    fn same_subject_different_keys() {
        let a = ca("Example", "Example Online CA");
        let b = ca("Example", "Example Online CA");
        let hash = cert_subject_hash(&a.der).unwrap();
        assert_eq!(hash, cert_subject_hash(&b.der).unwrap());
        assert_ne!(a.der, b.der);

        let bundle = TrustBundle::build(&[entry(&a, &["/O=A/*"]), entry(&b, &["/O=B/*"])]).unwrap();
        let h = format!("{hash:08x}");
        assert_eq!(
            names(&bundle),
            [
                format!("{h}.0"),
                format!("{h}.1"),
                format!("{h}.signing_policy")
            ]
        );
        // .0 is the smaller DER, whatever the input order.
        let (first, second) = if a.der < b.der { (&a, &b) } else { (&b, &a) };
        assert_eq!(
            pem::parse(&bundle.files()[0].data).unwrap().contents(),
            first.der
        );
        assert_eq!(
            pem::parse(&bundle.files()[1].data).unwrap().contents(),
            second.der
        );
        let swapped =
            TrustBundle::build(&[entry(&b, &["/O=B/*"]), entry(&a, &["/O=A/*"])]).unwrap();
        assert_eq!(bundle.files()[..2], swapped.files()[..2]);
        // Same subject: one access_id_CA with both namespaces.
        let policy = String::from_utf8(bundle.files()[2].data.clone()).unwrap();
        assert_eq!(policy.matches("access_id_CA").count(), 1, "{policy}");
        assert!(policy.contains("/O=A/*") && policy.contains("/O=B/*"));
    }

    #[test]
    fn unreadable_certificate_refused() {
        let e = TrustBundle::build(&[CaEntry {
            cert_der: b"not a certificate".to_vec(),
            cond_subjects: Vec::new(),
        }])
        .unwrap_err();
        assert!(
            matches!(e, TrustRootsError::Certificate(ref m) if m.starts_with("CA 1 of 1: ")),
            "{e}"
        );
    }

    #[test]
    fn add_file_validates() {
        let c = ca("Example", "Example Online CA");
        let mut b = TrustBundle::build(&[entry(&c, &["*"])]).unwrap();
        let h = format!("{:08x}", cert_subject_hash(&c.der).unwrap());
        b.add_file(format!("{h}.r0"), b"crl".to_vec()).unwrap();
        assert_eq!(
            names(&b),
            [
                format!("{h}.0"),
                format!("{h}.r0"),
                format!("{h}.signing_policy")
            ]
        );
        assert_eq!(
            b.add_file(format!("{h}.0"), Vec::new()),
            Err(TrustRootsError::DuplicateFile(format!("{h}.0")))
        );
        for bad in [
            "../x", ".hidden", "a/b", "", ".", "..", "a b", "a\\b", "é", "x\n",
        ] {
            assert_eq!(
                b.add_file(bad, Vec::new()),
                Err(TrustRootsError::FileName(bad.into()))
            );
        }
    }

    #[test]
    fn file_names() {
        for good in [
            "0a1b2c3d.0",
            "0a1b2c3d.signing_policy",
            "ca-bundle_2.pem",
            "a",
            "-x",
            "a..b",
        ] {
            assert!(valid_file_name(good), "{good}");
        }
        for bad in [
            "../x",
            ".hidden",
            "a/b",
            "",
            ".",
            "..",
            "a b",
            "/etc/passwd",
            "a\0",
            "C:x",
        ] {
            assert!(!valid_file_name(bad), "{bad:?}");
        }
        assert!(valid_file_name(&"a".repeat(255)) && !valid_file_name(&"a".repeat(256)));
    }

    fn sample() -> TrustBundle {
        let mut b = TrustBundle::build(&[entry(
            &ca("Example", "Example Online CA"),
            &["/O=Example/*"],
        )])
        .unwrap();
        b.add_file("extra.txt", b"\x00\xffbinary\n".to_vec())
            .unwrap();
        b
    }

    #[test]
    fn fields_round_trip() {
        let b = sample();
        let text = b.encode(Encoding::Fields);
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert!(text.ends_with('\n') && !text.contains("\n\n") && !text.contains('\r'));
        assert_eq!(lines.len(), 1 + b.files().len());
        let list = lines[0].strip_prefix("TRUSTED_CERTS=").unwrap();
        assert_eq!(
            String::from_utf8(B64.decode(list).unwrap()).unwrap(),
            names(&b).join(",")
        );
        for (line, f) in lines[1..].iter().zip(b.files()) {
            assert_eq!(
                *line,
                format!("FILEDATA_{}={}", f.name, B64.encode(&f.data))
            );
        }
        assert_eq!(decode(&text).unwrap(), b.files());
        // CRLF line ends are tolerated.
        assert_eq!(decode(&text.replace('\n', "\r\n")).unwrap(), b.files());
    }

    #[test]
    fn files_round_trip() {
        let b = sample();
        let text = b.encode(Encoding::Files);
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert!(text.ends_with('\n') && !text.contains("\n\n"));
        assert_eq!(lines.len(), b.files().len());
        for (line, f) in lines.iter().zip(b.files()) {
            assert_eq!(*line, format!("{}={}", f.name, B64.encode(&f.data)));
        }
        assert_eq!(decode(&text).unwrap(), b.files());
    }

    #[test]
    fn empty_bundle() {
        let b = TrustBundle::default();
        assert_eq!(b.encode(Encoding::Fields), "TRUSTED_CERTS=\n");
        assert_eq!(b.encode(Encoding::Files), "");
        assert_eq!(decode("TRUSTED_CERTS=\n").unwrap(), []);
        assert_eq!(decode("").unwrap(), []);
    }

    #[test]
    fn plain_trusted_certs_list() {
        let text = format!(
            "TRUSTED_CERTS=abcd1234.0,abcd1234.signing_policy\nFILEDATA_abcd1234.0={}\nFILEDATA_abcd1234.signing_policy={}\n",
            B64.encode("pem"),
            B64.encode("policy")
        );
        let files = decode(&text).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(
            (files[0].name.as_str(), files[0].data.as_slice()),
            ("abcd1234.0", &b"pem"[..])
        );
        assert_eq!(files[1].name, "abcd1234.signing_policy");
        // A single name without a dot that is not base64 either.
        let one = format!(
            "TRUSTED_CERTS=ca_pem\nFILEDATA_ca_pem={}\n",
            B64.encode("x")
        );
        assert_eq!(decode(&one).unwrap()[0].name, "ca_pem");
    }

    fn decode_err(text: &str) -> String {
        decode(text).unwrap_err().to_string()
    }

    #[test]
    fn decode_refusals() {
        let x = B64.encode("x");
        let list = |s: &str| B64.encode(s);
        // Hostile names, in either form and in the list.
        for bad in ["../x", ".hidden", "a/b", ""] {
            let e = decode_err(&format!("{bad}={x}\n"));
            assert!(e.contains("refused file name"), "{e}");
            let e = decode_err(&format!(
                "TRUSTED_CERTS={}\nFILEDATA_{bad}={x}\n",
                list(bad)
            ));
            assert!(e.contains("refused file name"), "{e}");
        }
        assert_eq!(
            decode_err("TRUSTED_CERTS=a.0,../etc\n"),
            "trust roots, line 1: TRUSTED_CERTS lists the refused file name \"../etc\""
        );
        assert_eq!(
            decode_err(&format!(
                "TRUSTED_CERTS={}\nFILEDATA_a.0={x}\n",
                list("a.0,b.0,c.0")
            )),
            "trust roots, line 1: TRUSTED_CERTS lists files that were not sent: b.0, c.0"
        );
        assert_eq!(
            decode_err(&format!(
                "TRUSTED_CERTS={}\nFILEDATA_a.0={x}\nFILEDATA_b.0={x}\n",
                list("a.0")
            )),
            "trust roots, line 3: key \"FILEDATA_b.0\": \"b.0\" is not listed in TRUSTED_CERTS"
        );
        assert_eq!(
            decode_err(&format!(
                "TRUSTED_CERTS={}\nFILEDATA_a.0={x}\nFILEDATA_a.0={x}\n",
                list("a.0")
            )),
            "trust roots, line 3: key \"FILEDATA_a.0\": file \"a.0\" sent twice"
        );
        assert_eq!(
            decode_err(&format!("a.0={x}\na.0={x}\n")),
            "trust roots, line 2: key \"a.0\": file \"a.0\" sent twice"
        );
        assert_eq!(
            decode_err(&format!("TRUSTED_CERTS={}\n", list("a.0,a.0"))),
            "trust roots, line 1: TRUSTED_CERTS lists \"a.0\" twice"
        );
        let e = decode_err(&format!("a.0={x}\nb.0=not base64!\n"));
        assert!(
            e.starts_with("trust roots, line 2: key \"b.0\": invalid base64"),
            "{e}"
        );
        let e = decode_err(&format!("a.0={x}\nb.0=eA\n"));
        assert!(
            e.starts_with("trust roots, line 2: key \"b.0\": invalid base64"),
            "{e}"
        );
        assert_eq!(
            decode_err("a.0\n"),
            "trust roots, line 1: no '=' in \"a.0\""
        );
        assert_eq!(
            decode_err(&format!("a.0={x}\nTRUSTED_CERTS={}\n", list("a.0"))),
            "trust roots, line 2: TRUSTED_CERTS must be the first line"
        );
        assert_eq!(
            decode_err(&format!("TRUSTED_CERTS={}\na.0={x}\n", list("a.0"))),
            "trust roots, line 2: key \"a.0\" is not FILEDATA_<name>"
        );
    }

    #[test]
    fn encoding_names() {
        assert_eq!("fields".parse::<Encoding>(), Ok(Encoding::Fields));
        assert_eq!("files".parse::<Encoding>(), Ok(Encoding::Files));
        assert_eq!(
            "xml".parse::<Encoding>(),
            Err(TrustRootsError::UnknownEncoding("xml".into()))
        );
        assert_eq!(Encoding::default(), Encoding::Fields);
        assert_eq!(Encoding::Files.to_string(), "files");
        #[derive(serde::Deserialize)]
        struct Config {
            format: Encoding,
        }
        let c: Config = serde::de::Deserialize::deserialize(serde::de::value::MapDeserializer::<
            _,
            serde::de::value::Error,
        >::new(
            [("format", "files")].into_iter()
        ))
        .unwrap();
        assert_eq!(c.format, Encoding::Files);
    }

    /// `openssl verify -CApath` on the written bundle: proves the file names are
    /// OpenSSL's hashes, including the `.1` of a second CA with the same subject.
    #[test]
    fn openssl_uses_the_bundle_as_capath() {
        use std::process::Command;
        if Command::new("openssl").arg("version").output().is_err() {
            onlineca_testkit::skip("openssl", "not on PATH", "apt-get install openssl");
            return;
        }
        let root = ca("Example", "Example Root");
        let a = ca("Example", "Example Online CA");
        let b = ca("Example", "Example Online CA");
        let bundle = TrustBundle::build(&[
            entry(&root, &["*"]),
            entry(&a, &["/O=Example/*"]),
            entry(&b, &["/O=Example/*"]),
        ])
        .unwrap();
        assert_eq!(bundle.files().len(), 5);
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("certificates");
        std::fs::create_dir(&ca_dir).unwrap();
        for f in decode(&bundle.encode(Encoding::Files)).unwrap() {
            std::fs::write(ca_dir.join(&f.name), &f.data).unwrap();
        }
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), text)
        };
        let capath = ca_dir.to_str().unwrap();
        for f in bundle
            .files()
            .iter()
            .filter(|f| !f.name.ends_with(".signing_policy"))
        {
            let path = ca_dir.join(&f.name);
            let (ok, hash) = openssl(&[
                "x509",
                "-noout",
                "-subject_hash",
                "-in",
                path.to_str().unwrap(),
            ]);
            assert!(ok, "{hash}");
            assert_eq!(f.name.split('.').next(), Some(hash.trim()), "{}", f.name);
        }
        for (issuer, name) in [(&a, "alice"), (&b, "bob"), (&root, "carol")] {
            let path = dir.path().join(format!("{name}.pem"));
            std::fs::write(&path, certificate_pem(&leaf(issuer, name))).unwrap();
            let (ok, text) = openssl(&["verify", "-CApath", capath, path.to_str().unwrap()]);
            assert!(ok && text.contains(": OK"), "{name}: {text}");
        }
        // And a CA that is not in the bundle is not trusted.
        let stranger = ca("Example", "Stranger CA");
        let path = dir.path().join("eve.pem");
        std::fs::write(&path, certificate_pem(&leaf(&stranger, "eve"))).unwrap();
        let (ok, text) = openssl(&["verify", "-CApath", capath, path.to_str().unwrap()]);
        assert!(!ok, "{text}");
    }
}
