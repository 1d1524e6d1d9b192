//! The token's user PIN, read from the file `[ca] pin_file` names.

use std::path::{Path, PathBuf};

use cryptoki::types::AuthPin;

use crate::TokenError;

/// A PIN and the file it came from (named in messages; the PIN never is).
pub struct Pin {
    pub(crate) value: AuthPin,
    pub(crate) file: PathBuf,
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pin(from {})", self.file.display())
    }
}

impl Pin {
    /// Reads the first line of `path` (without its line ending) as the PIN.
    pub fn from_file(path: &Path) -> Result<Pin, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|error| TokenError::PinFile {
            path: path.to_path_buf(),
            error,
        })?;
        let first = text.lines().next().unwrap_or("").trim_end_matches('\r');
        if first.is_empty() {
            return Err(TokenError::PinEmpty {
                path: path.to_path_buf(),
            });
        }
        Ok(Pin {
            value: AuthPin::from(first.to_string()),
            file: path.to_path_buf(),
        })
    }

    /// The file the PIN came from.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn the_first_line_is_the_pin() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pin");
        std::fs::write(&p, "12 34\r\nignored\n").unwrap();
        let pin = Pin::from_file(&p).unwrap();
        assert_eq!(pin.value.expose_secret(), "12 34");
        // Debug names the file, never the PIN.
        assert!(!format!("{pin:?}").contains("12 34"));
        std::fs::write(&p, "\nsecond\n").unwrap();
        assert!(matches!(
            Pin::from_file(&p),
            Err(TokenError::PinEmpty { .. })
        ));
        assert!(matches!(
            Pin::from_file(&d.path().join("missing")),
            Err(TokenError::PinFile { .. })
        ));
    }
}
