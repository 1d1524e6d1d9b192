//! The retriever anchors' CRLs (`[auth] retriever_crls`): read and checked at
//! start-up, and read again when a file changes while the server runs.
//!
//! Policy, when any CRL is configured (fail closed):
//! - every certificate of a retriever chain below its anchor must be covered by a
//!   configured CRL (same issuer): one that is not is refused, its status unknown;
//! - a CRL past its nextUpdate refuses every certificate it covers until a current
//!   one is installed;
//! - each CRL must be signed by a certificate of the anchor files (its issuer name and
//!   signature), else the server does not start, naming the file.
//!
//! Reloading: at most every [`CHECK_EVERY`], the request that comes first looks at
//! each file's size, modification time and inode (one `stat` each); a changed file is
//! read and checked as at start-up. One that no longer reads or checks keeps the CRL
//! loaded before it, with a warning in the log (a half-written or mistaken file must
//! not switch revocation checking off, nor take retrievers down). Every change gives
//! a new generation number, which the verified-chains cache keys on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rustls_pki_types::CertificateRevocationListDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;
use webpki::{CertRevocationList, OwnedCertRevocationList};
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

/// How often the CRL files are looked at for changes, at most.
pub(crate) const CHECK_EVERY: time::Duration = time::Duration::seconds(2);

/// The CRLs in force: what verification uses, swapped whole on a change.
#[derive(Debug)]
pub(crate) struct CrlSnapshot {
    /// Changes whenever the CRLs do: a chain verified under another generation is
    /// verified again.
    pub generation: u64,
    /// Every CRL of every file.
    pub crls: Vec<CertRevocationList<'static>>,
    /// The earliest nextUpdate among them: a verified chain is not remembered past it.
    pub next_update: Option<OffsetDateTime>,
}

/// What was last loaded from one file, and what the file looked like then.
#[derive(Debug)]
struct FileState {
    path: PathBuf,
    stamp: Option<Stamp>,
    loaded: Vec<Loaded>,
}

/// One CRL as loaded.
#[derive(Debug, Clone)]
struct Loaded {
    crl: OwnedCertRevocationList,
    next_update: OffsetDateTime,
    /// The issuer, one-line form, for `retriever list`.
    issuer: String,
    /// The issuer name as encoded.
    issuer_der: Vec<u8>,
}

/// Enough of a file's metadata to notice a replacement or a rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
        inode: m.ino(),
    })
}

/// The configured CRL files and the CRLs in force.
#[derive(Debug)]
pub(crate) struct RetrieverCrls {
    /// The anchor certificates (DER), which CRLs must be signed by.
    anchors: Vec<Vec<u8>>,
    files: Mutex<Vec<FileState>>,
    current: RwLock<Arc<CrlSnapshot>>,
    /// When the files were last looked at (Unix milliseconds), read without a lock so
    /// that a request between checks costs one atomic load.
    last_check: AtomicI64,
}

impl RetrieverCrls {
    /// Reads and checks every file; `None` when none is configured (no revocation
    /// checking). The error names the file.
    pub(crate) fn load(paths: &[PathBuf], anchors: Vec<Vec<u8>>) -> Result<Option<Self>, String> {
        if paths.is_empty() {
            return Ok(None);
        }
        let mut files = Vec::new();
        for path in paths {
            let stamp = stamp(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let loaded = load_file(path, &anchors)?;
            files.push(FileState {
                path: path.clone(),
                stamp: Some(stamp),
                loaded,
            });
        }
        let current = RwLock::new(Arc::new(snapshot(&files, 0)));
        Ok(Some(RetrieverCrls {
            anchors,
            files: Mutex::new(files),
            current,
            last_check: AtomicI64::new(i64::MIN),
        }))
    }

    /// The CRLs in force at `now`, after looking at the files if that is due.
    pub(crate) fn current(&self, now: OffsetDateTime) -> Arc<CrlSnapshot> {
        let now_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        let every = CHECK_EVERY.whole_milliseconds() as i64;
        let last = self.last_check.load(Ordering::Relaxed);
        // A clock set back also makes a check due.
        if (now_ms < last || now_ms.saturating_sub(last) >= every)
            // One request checks; the others go on with the CRLs in force. A
            // poisoned lock still guards consistent data (a file's state is
            // replaced whole), and must not stop reloads for good.
            && let Some(mut files) = match self.files.try_lock() {
                Ok(g) => Some(g),
                Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            }
        {
            self.last_check.store(now_ms, Ordering::Relaxed);
            self.refresh(&mut files);
        }
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reloads the files that changed; swaps in a new snapshot if any did.
    fn refresh(&self, files: &mut [FileState]) {
        let mut changed = false;
        for f in files.iter_mut() {
            let now = match stamp(&f.path) {
                Ok(s) => Some(s),
                Err(e) => {
                    if f.stamp.is_some() {
                        tracing::warn!(
                            file = %f.path.display(),
                            "auth.retriever_crls: cannot read {}: {e}; keeping the CRL loaded before",
                            f.path.display()
                        );
                    }
                    None
                }
            };
            if now.is_none() || now == f.stamp {
                f.stamp = now;
                continue;
            }
            f.stamp = now;
            match load_file(&f.path, &self.anchors) {
                Ok(loaded) => {
                    tracing::info!(file = %f.path.display(), crls = loaded.len(), "retriever CRL reloaded");
                    f.loaded = loaded;
                    changed = true;
                }
                Err(e) => tracing::warn!(
                    file = %f.path.display(),
                    "auth.retriever_crls: {e}; keeping the CRL loaded before"
                ),
            }
        }
        if changed {
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            *current = Arc::new(snapshot(files, current.generation + 1));
        }
    }

    /// The anchor certificates (one-line subjects) that signed none of the CRLs:
    /// with revocation checked, the certificates they issue directly are refused.
    pub(crate) fn anchors_without_crl(&self) -> Vec<String> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        self.anchors
            .iter()
            .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
            .filter(|c| {
                !files
                    .iter()
                    .flat_map(|f| &f.loaded)
                    .any(|l| l.issuer_der == c.subject().as_raw())
            })
            .map(|c| onlineca_core::trustroots::oneline(c.subject()))
            .collect()
    }

    /// Each CRL's file, issuer and nextUpdate, for `retriever list`.
    pub(crate) fn describe(&self) -> Vec<String> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for f in files.iter() {
            for l in &f.loaded {
                out.push(format!(
                    "{}  issuer: {}  next update: {}",
                    f.path.display(),
                    l.issuer,
                    l.next_update
                ));
            }
        }
        out
    }
}

fn snapshot(files: &[FileState], generation: u64) -> CrlSnapshot {
    let all: Vec<&Loaded> = files.iter().flat_map(|f| &f.loaded).collect();
    CrlSnapshot {
        generation,
        next_update: all.iter().map(|l| l.next_update).min(),
        crls: all
            .iter()
            .map(|l| CertRevocationList::Owned(l.crl.clone()))
            .collect(),
    }
}

/// Reads one file: one or more PEM `X509 CRL` blocks, or one DER CRL; each must be
/// signed by an anchor certificate allowed to sign CRLs.
fn load_file(path: &Path, anchors: &[Vec<u8>]) -> Result<Vec<Loaded>, String> {
    let name = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    let is_pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
    let ders: Vec<Vec<u8>> = if is_pem {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .map(|r| r.map(|d| d.to_vec()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{name}: unreadable PEM: {e}"))?
    } else {
        vec![bytes]
    };
    if ders.is_empty() {
        return Err(format!("{name}: no X509 CRL block found"));
    }
    ders.iter()
        .enumerate()
        .map(|(i, der)| {
            let which = if ders.len() > 1 {
                format!("{name} (CRL {})", i + 1)
            } else {
                name.to_string()
            };
            check(der, anchors).map_err(|e| format!("{which}: {e}"))
        })
        .collect()
}

/// Parses one DER CRL as webpki will use it and checks its signature against the
/// anchor certificate that issued it.
fn check(der: &[u8], anchors: &[Vec<u8>]) -> Result<Loaded, String> {
    let crl = OwnedCertRevocationList::from_der(der)
        .map_err(|e| format!("not a CRL this server can use ({e:?})"))?;
    let (_, parsed) = CertificateRevocationList::from_der(der)
        .map_err(|e| format!("not a CRL this server can use ({e})"))?;
    let issuer = parsed.issuer();
    let issuer_line = onlineca_core::trustroots::oneline(issuer);
    let next_update = parsed
        .next_update()
        .map(|t| t.to_datetime())
        .ok_or("it has no nextUpdate")?;
    let mut same_name = false;
    for der in anchors {
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            continue;
        };
        if cert.subject().as_raw() != issuer.as_raw() {
            continue;
        }
        same_name = true;
        if parsed.verify_signature(cert.public_key()).is_err() {
            continue;
        }
        if let Ok(Some(ku)) = cert.key_usage()
            && !ku.value.crl_sign()
        {
            return Err(format!(
                "its issuer {issuer_line} may not sign CRLs (its keyUsage lacks cRLSign)"
            ));
        }
        return Ok(Loaded {
            crl,
            next_update,
            issuer: issuer_line,
            issuer_der: issuer.as_raw().to_vec(),
        });
    }
    Err(if same_name {
        format!("its signature does not verify with the key of the anchor {issuer_line}")
    } else {
        format!("its issuer {issuer_line} is not a certificate in auth.retriever_anchors")
    })
}
