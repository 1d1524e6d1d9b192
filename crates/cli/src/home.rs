//! `~/.onlineca`: where the user's side keeps its trust roots, certificates and keys
//! unless told otherwise, so that `getcert --url U --user alice` is enough.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// `$HOME/.onlineca`.
pub fn dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("HOME is not set: give the paths explicitly")?;
    Ok(PathBuf::from(home).join(".onlineca"))
}

/// The default trust-roots directory, `~/.onlineca/trustroots`.
pub fn trustroots() -> Result<PathBuf> {
    Ok(dir()?.join("trustroots"))
}

/// Creates `~/.onlineca` (mode 0700: it will hold private keys) if it is missing.
pub fn ensure() -> Result<PathBuf> {
    let d = dir()?;
    if !d.is_dir() {
        crate::files::create_dir(&d, 0o700)?;
    }
    Ok(d)
}
