//! Secrets asked on the terminal, without echo.

use anyhow::{Context, Result, bail};

/// Asks for a secret on the controlling terminal. Without one (cron, a pipe, CI) it
/// says which option gives the secret instead, rather than the bare "No such device
/// or address" the terminal library would report. `what` names the secret ("the
/// password"), `instead` the option (`--password-stdin`).
pub fn secret(prompt: &str, what: &str, instead: &str) -> Result<String> {
    if !has_terminal() {
        bail!("no terminal to ask for {what}: use {instead}");
    }
    rpassword::prompt_password(prompt)
        .with_context(|| format!("cannot read {what} (or use {instead})"))
}

/// Whether a controlling terminal can be asked. rpassword reads /dev/tty: opening it
/// is the test.
pub fn has_terminal() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .is_ok()
}
