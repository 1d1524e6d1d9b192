//! A trust-roots directory on disk: an OpenSSL `CApath` of `<hash>.N` files and
//! their signing policies, as `onlineca trustroots` writes it.

use std::path::Path;

use onlineca_core::trustroots::{TrustFile, valid_file_name};
use rustls_pki_types::CertificateDer;

use crate::certs::pem_certificates;
use crate::error::{ClientError, Result};
use crate::files;

/// Largest file read from a trust directory.
const MAX_FILE: u64 = 1 << 20;

/// The CA certificates in a trust directory: every PEM certificate in its regular,
/// non-hidden files (signing policies and other files hold none and are skipped).
pub fn load_cas(dir: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ClientError::TrustRoots(format!(
                "{} does not exist: fetch the trust roots first (onlineca trustroots --url URL --dir {} --fingerprint SHA256)",
                dir.display(),
                dir.display()
            ))
        } else {
            ClientError::io(dir)(e)
        }
    })?;
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    names.sort_by_key(|e| e.file_name());
    let mut cas = Vec::new();
    for e in names {
        let path = e.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() || meta.len() > MAX_FILE {
            continue;
        }
        let data = std::fs::read(&path).map_err(ClientError::io(&path))?;
        if let Ok(certs) = pem_certificates(&data) {
            cas.extend(certs);
        }
    }
    if cas.is_empty() {
        return Err(ClientError::TrustRoots(format!(
            "no CA certificate in {}: fetch the trust roots first (onlineca trustroots --url URL --dir {} --fingerprint SHA256)",
            dir.display(),
            dir.display()
        )));
    }
    Ok(cas)
}

/// What writing trust roots into a directory did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Files that did not exist.
    pub added: Vec<String>,
    /// Files whose content changed.
    pub changed: Vec<String>,
    /// Files already up to date (not rewritten).
    pub unchanged: Vec<String>,
}

/// Writes trust-roots files into `dir` (created if missing), each atomically,
/// touching no other file. Names are checked again: only `[A-Za-z0-9._-]+`, not
/// starting with a dot.
pub fn write_files(dir: &Path, files: &[TrustFile]) -> Result<WriteReport> {
    if let Some(bad) = files.iter().find(|f| !valid_file_name(&f.name)) {
        return Err(ClientError::TrustRoots(format!(
            "refused file name {:?}",
            bad.name
        )));
    }
    std::fs::create_dir_all(dir).map_err(ClientError::io(dir))?;
    let mut report = WriteReport::default();
    for f in files {
        let path = dir.join(&f.name);
        match std::fs::read(&path) {
            Ok(old) if old == f.data => {
                report.unchanged.push(f.name.clone());
                continue;
            }
            Ok(_) => report.changed.push(f.name.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => report.added.push(f.name.clone()),
            Err(e) => return Err(ClientError::io(&path)(e)),
        }
        files::write_atomic(&path, &f.data, files::PUBLIC)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tf(name: &str, data: &[u8]) -> TrustFile {
        TrustFile {
            name: name.into(),
            data: data.to_vec(),
        }
    }

    #[test]
    fn reports_added_changed_unchanged_and_leaves_others_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mine.txt"), b"keep").unwrap();
        let r = write_files(dir.path(), &[tf("a.0", b"1"), tf("b.0", b"2")]).unwrap();
        assert_eq!(r.added, vec!["a.0", "b.0"]);
        let r = write_files(dir.path(), &[tf("a.0", b"1"), tf("b.0", b"3")]).unwrap();
        assert_eq!(
            (r.unchanged, r.changed),
            (vec!["a.0".into()], vec!["b.0".into()])
        );
        assert_eq!(std::fs::read(dir.path().join("mine.txt")).unwrap(), b"keep");
        assert_eq!(std::fs::read(dir.path().join("b.0")).unwrap(), b"3");
    }

    #[test]
    fn refuses_hostile_names_before_writing_anything() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../x", ".hidden", "a/b", ""] {
            assert!(write_files(dir.path(), &[tf("ok.0", b"1"), tf(bad, b"2")]).is_err());
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_empty_directory_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_cas(dir.path()).unwrap_err().to_string();
        assert!(e.contains("onlineca trustroots"), "{e}");
    }
}
