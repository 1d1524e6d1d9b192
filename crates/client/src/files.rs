//! Writing files atomically: a temporary file in the same directory, created with
//! its final mode (0600 for anything holding a private key, so it is never
//! readable by others, not even for an instant), then renamed over the target.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{ClientError, Result};

/// Mode of files holding a private key.
pub const PRIVATE: u32 = 0o600;
/// Mode of public files (certificates, trust roots); the umask still applies.
pub const PUBLIC: u32 = 0o644;

/// A file written under a temporary name, not yet in place. Dropping it without
/// [`Staged::commit`] removes the temporary file.
#[derive(Debug)]
pub struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    done: bool,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The directory `dest` goes into (`.` for a bare file name).
fn dir_of(dest: &Path) -> PathBuf {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks that `dest` could be written now: its directory exists and a file can be
/// created there (a temporary one, removed at once). Run before asking a CA for a
/// certificate, so that a certificate is never issued only to be lost.
pub fn check_writable(dest: &Path) -> Result<()> {
    let dir = dir_of(dest);
    if !dir.is_dir() {
        return Err(ClientError::NoDirectory {
            path: dest.to_path_buf(),
            dir,
        });
    }
    if dest.is_dir() {
        return Err(ClientError::Io {
            path: dest.to_path_buf(),
            error: std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory"),
        });
    }
    // Dropping the staged file removes it.
    stage(dest, b"", PRIVATE).map(drop)
}

/// Writes `data` to a new hidden temporary file beside `dest`, with `mode` from
/// its creation.
pub fn stage(dest: &Path, data: &[u8], mode: u32) -> Result<Staged> {
    let dir = dir_of(dest);
    let name = dest
        .file_name()
        .ok_or_else(|| ClientError::Io {
            path: dest.to_path_buf(),
            error: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        })?
        .to_string_lossy()
        .into_owned();
    let mut attempt = 0;
    let (tmp, mut file) = loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = dir.join(format!(".{name}.tmp-{}-{n}-{nanos}", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 16 => {
                attempt += 1;
            }
            Err(e) => return Err(ClientError::io(dest)(e)),
        }
    };
    let staged = Staged {
        tmp,
        dest: dest.to_path_buf(),
        done: false,
    };
    file.write_all(data)
        .and_then(|_| file.sync_all())
        .map_err(ClientError::io(dest))?;
    if mode == PRIVATE {
        // Re-assert in case the file system ignored the creation mode.
        std::fs::set_permissions(&staged.tmp, std::fs::Permissions::from_mode(mode))
            .map_err(ClientError::io(dest))?;
    }
    Ok(staged)
}

impl Staged {
    /// The final path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Renames the temporary file over the target.
    pub fn commit(mut self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.dest).map_err(ClientError::io(&self.dest))?;
        self.done = true;
        if let Some(dir) = self.dest.parent().filter(|p| !p.as_os_str().is_empty())
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes one file atomically.
pub fn write_atomic(dest: &Path, data: &[u8], mode: u32) -> Result<()> {
    stage(dest, data, mode)?.commit()
}

/// Writes several files so that none is in place unless all could be written
/// (they are all staged first, then renamed one after the other).
pub fn write_all_atomic(files: &[(&Path, &[u8], u32)]) -> Result<()> {
    let staged = files
        .iter()
        .map(|(p, d, m)| stage(p, d, *m))
        .collect::<Result<Vec<_>>>()?;
    for s in staged {
        s.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_and_replace_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&p, b"new", PRIVATE).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("k.pem")]);
    }

    #[test]
    fn writability_is_checked_without_leaving_anything() {
        let dir = tempfile::tempdir().unwrap();
        check_writable(&dir.path().join("a.pem")).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let e = check_writable(&dir.path().join("nodir/a.pem")).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, ClientError::NoDirectory { .. }) && msg.contains("nodir does not exist"),
            "{msg}"
        );
        assert!(check_writable(dir.path()).is_err());
    }

    #[test]
    fn an_unfinished_set_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let missing = dir.path().join("no/such/dir/b");
        assert!(write_all_atomic(&[(&a, b"1", PUBLIC), (&missing, b"2", PUBLIC)]).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
