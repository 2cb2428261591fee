//! How the library talks to the person at the table, without touching the terminal itself.
//!
//! The binary implements [`Callbacks`] with rpassword and stdin; tests implement it with fixed
//! answers. The library never reads a terminal, an environment variable or a file for a secret.

use crate::backend::Secret;
use crate::error::Result;

/// Prompts and notices during an operation.
pub trait Callbacks {
    /// Shows `summary` and returns true only if the operator confirms.
    fn confirm(&self, summary: &str) -> Result<bool>;
    /// Asks for an existing secret (passphrase or PIN) described by `prompt`.
    fn secret(&self, prompt: &str) -> Result<Secret>;
    /// Asks for a new secret (asked twice on a terminal).
    fn new_secret(&self, prompt: &str) -> Result<Secret> {
        self.secret(prompt)
    }
    /// Asks for a device management key (hex). Kept apart from [`Callbacks::secret`] so a PIN
    /// file is never mistaken for a management key.
    fn management_key(&self, prompt: &str) -> Result<Secret> {
        self.secret(prompt)
    }
    /// Asks whether to spend the device's last PIN try. Unlike [`Callbacks::confirm`], a
    /// `--yes` on the command line must not answer this: only a person at the table can.
    fn confirm_last_pin_try(&self, message: &str) -> Result<bool> {
        self.confirm(message)
    }
    /// A notice for the operator ("touch the YubiKey now").
    fn notice(&self, message: &str);
}

/// Answers every prompt from fixed values: for tests and `--yes --pin-file` runs.
pub struct Scripted {
    /// Whether to confirm.
    pub confirm: bool,
    /// The secret to give.
    pub secret: String,
}

impl Callbacks for Scripted {
    fn confirm(&self, _summary: &str) -> Result<bool> {
        Ok(self.confirm)
    }
    fn secret(&self, _prompt: &str) -> Result<Secret> {
        Ok(Secret::new(self.secret.clone()))
    }
    fn notice(&self, _message: &str) {}
}
