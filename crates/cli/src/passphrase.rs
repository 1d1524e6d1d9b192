//! Passphrases of encrypted CA keys: from a file (`--passphrase-file`, or
//! `ONLINECA_PASSPHRASE_FILE`), else asked on the terminal. Never from the command
//! line, never logged.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use onlineca_core::keyfile::{self, Passphrase};

/// The fewest characters a new passphrase may have.
const MIN_CHARS: usize = 12;

/// `--passphrase-file`, shared by the commands that read or write CA keys.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PassphraseArgs {
    /// File whose first line is the passphrase of the encrypted CA keys (else asked on
    /// the terminal, if there is one).
    #[arg(long, env = "ONLINECA_PASSPHRASE_FILE", value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

impl PassphraseArgs {
    /// The passphrase in the file, if one was given.
    fn read_file(&self) -> Result<Option<Passphrase>> {
        let Some(path) = &self.passphrase_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the passphrase file {}", path.display()))?;
        match Passphrase::from_file_text(&text) {
            Some(p) => Ok(Some(p)),
            None => bail!(
                "the passphrase file {} is empty: its first line is the passphrase",
                path.display()
            ),
        }
    }

    /// The passphrase for the key file at `key`: `None` when the key is not encrypted
    /// (or cannot be read: loading it says why), or when nothing gives one and there
    /// is no terminal to ask on (loading it then says which flag to use).
    pub fn for_key(&self, key: &Path) -> Result<Option<Passphrase>> {
        let encrypted = std::fs::read_to_string(key).is_ok_and(|t| keyfile::is_encrypted(&t));
        if !encrypted {
            return Ok(None);
        }
        if let Some(p) = self.read_file()? {
            return Ok(Some(p));
        }
        if !crate::prompt::has_terminal() {
            return Ok(None);
        }
        let text = crate::prompt::secret(
            &format!("Passphrase for {}: ", key.display()),
            "the key's passphrase",
            "--passphrase-file FILE",
        )?;
        Ok(Passphrase::from_file_text(&text))
    }

    /// The key in the file at `path`, decrypted if it is encrypted; the error says
    /// which flag gives a missing or wrong passphrase.
    pub fn load_key(&self, path: &Path) -> Result<rcgen::KeyPair> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let passphrase = self.for_key(path)?;
        keyfile::load(&text, passphrase.as_ref()).map_err(|e| {
            anyhow::anyhow!(
                "{}: {}",
                path.display(),
                onlineca_server::state::key_problem(&e)
            )
        })
    }

    /// A passphrase to encrypt new keys with: the file's, or asked twice.
    pub fn new_passphrase(&self) -> Result<Passphrase> {
        let p = match self.read_file()? {
            Some(p) => p,
            None => {
                let what = "a passphrase for the CA keys";
                let instead = "--passphrase-file FILE";
                let a = crate::prompt::secret("New passphrase for the CA keys: ", what, instead)?;
                let b = crate::prompt::secret("New passphrase (again): ", what, instead)?;
                if a != b {
                    bail!("the passphrases do not match");
                }
                Passphrase::from_file_text(&a).context("an empty passphrase encrypts nothing")?
            }
        };
        if p.char_count() < MIN_CHARS {
            bail!("passphrase too short: at least {MIN_CHARS} characters");
        }
        Ok(p)
    }
}
