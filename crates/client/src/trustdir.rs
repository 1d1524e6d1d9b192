//! A trust-roots directory on disk: an OpenSSL `CApath` of `<hash>.N` files and
//! their signing policies, as `onlineca trustroots` writes it.
//!
//! The directory may hold files of the user's own beside ours. So that a refresh can
//! remove what the server stopped publishing (a rotated-out CA must stop being
//! trusted) without ever touching those, every write records in [`MANIFEST`] the
//! name and SHA-256 of each file it wrote. A refresh removes a file only if the
//! manifest lists it, the server no longer sends it, and it still holds exactly
//! what was written; a file changed since is kept and reported.

use std::path::Path;

use onlineca_core::trustroots::{TrustFile, valid_file_name};
use rustls_pki_types::CertificateDer;

use crate::certs::pem_certificates;
use crate::error::{ClientError, Result};
use crate::files;

/// Largest file read from a trust directory.
const MAX_FILE: u64 = 1 << 20;

/// The record of the files `onlineca trustroots` wrote into a directory. Hidden, so
/// OpenSSL (which reads only `<hash>.N` names) and [`load_cas`] pass it by.
pub const MANIFEST: &str = ".onlineca-trustroots";

const MANIFEST_HEADER: &str = "# Written by onlineca trustroots: the files it wrote here (SHA-256, name), so\n\
# that a refresh removes those the server no longer publishes, and only those.\n";

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
    /// Files written by an earlier fetch that the server no longer publishes: removed.
    pub removed: Vec<String>,
    /// Files the server no longer publishes but that changed since they were
    /// written (someone else's now): kept.
    pub kept: Vec<String>,
    /// Whether the directory had files but no [`MANIFEST`] (written before there was
    /// one): nothing could be told apart, so nothing was removed.
    pub no_manifest: bool,
}

fn sha256_hex(data: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The manifest's (name, SHA-256 hex) entries; malformed lines and names that
/// could not be ours are ignored, so a damaged manifest can only remove less.
fn read_manifest(dir: &Path) -> Result<Option<Vec<(String, String)>>> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read(&path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ClientError::io(&path)(e)),
    };
    Ok(Some(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' '))
            .filter(|(hash, name)| {
                hash.len() == 64
                    && hash.bytes().all(|b| b.is_ascii_hexdigit())
                    && valid_file_name(name)
                    && *name != MANIFEST
            })
            .map(|(hash, name)| (name.to_string(), hash.to_ascii_lowercase()))
            .collect(),
    ))
}

/// Writes trust-roots files into `dir` (created if missing), each atomically;
/// removes the files an earlier write recorded in [`MANIFEST`] that `files` no
/// longer holds and nobody changed since; records what was written. Touches no
/// other file. Names are checked again: only `[A-Za-z0-9._-]+`, not starting with a
/// dot.
pub fn write_files(dir: &Path, files: &[TrustFile]) -> Result<WriteReport> {
    if let Some(bad) = files.iter().find(|f| !valid_file_name(&f.name)) {
        return Err(ClientError::TrustRoots(format!(
            "refused file name {:?}",
            bad.name
        )));
    }
    std::fs::create_dir_all(dir).map_err(ClientError::io(dir))?;
    let previous = read_manifest(dir)?;
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
    match &previous {
        Some(entries) => {
            for (name, hash) in entries {
                if files.iter().any(|f| &f.name == name) {
                    continue;
                }
                let path = dir.join(name);
                match std::fs::read(&path) {
                    Ok(data) if sha256_hex(&data) == *hash => {
                        std::fs::remove_file(&path).map_err(ClientError::io(&path))?;
                        report.removed.push(name.clone());
                    }
                    Ok(_) => report.kept.push(name.clone()),
                    // Removed already (by the user, or before an interrupted run
                    // could record it).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(ClientError::io(&path)(e)),
                }
            }
        }
        None => {
            report.no_manifest = !report.unchanged.is_empty() || !report.changed.is_empty();
        }
    }
    // Recorded last: an interrupted run leaves the old manifest, whose stale entries
    // the next run removes or finds gone.
    let mut manifest = String::from(MANIFEST_HEADER);
    for f in files {
        manifest.push_str(&format!("{} {}\n", sha256_hex(&f.data), f.name));
    }
    files::write_atomic(&dir.join(MANIFEST), manifest.as_bytes(), files::PUBLIC)?;
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
    fn a_refresh_removes_what_the_server_stopped_publishing_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let r = write_files(d, &[tf("a.0", b"1"), tf("b.0", b"2"), tf("c.0", b"3")]).unwrap();
        assert!(!r.no_manifest);
        // The user's own files, one named as a CApath entry would be.
        std::fs::write(d.join("mine.txt"), b"keep").unwrap();
        std::fs::write(d.join("0123abcd.0"), b"my CA").unwrap();
        // A file of ours the user changed since.
        std::fs::write(d.join("c.0"), b"edited").unwrap();

        let r = write_files(d, &[tf("a.0", b"1")]).unwrap();
        assert_eq!(r.removed, vec!["b.0"]);
        assert_eq!(r.kept, vec!["c.0"]);
        assert_eq!(r.unchanged, vec!["a.0"]);
        let mut left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [MANIFEST, "0123abcd.0", "a.0", "c.0", "mine.txt"]);
        // The kept file is the user's now: not listed, never removed later.
        let r = write_files(d, &[tf("a.0", b"1")]).unwrap();
        assert!(r.removed.is_empty() && r.kept.is_empty(), "{r:?}");
        assert_eq!(std::fs::read(d.join("c.0")).unwrap(), b"edited");
    }

    #[test]
    fn without_a_manifest_nothing_is_removed_and_that_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // As written by a version without the manifest.
        std::fs::write(d.join("a.0"), b"1").unwrap();
        std::fs::write(d.join("old.0"), b"2").unwrap();
        let r = write_files(d, &[tf("a.0", b"1")]).unwrap();
        assert!(r.no_manifest && r.removed.is_empty());
        assert!(d.join("old.0").exists());
        // A damaged manifest can only remove less.
        std::fs::write(d.join(MANIFEST), "garbage\nzz ../etc/passwd\n0000 a.0\n").unwrap();
        let r = write_files(d, &[]).unwrap();
        assert!(r.removed.is_empty(), "{r:?}");
        assert!(d.join("a.0").exists());
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
