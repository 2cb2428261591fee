//! Terminal prompts for the signer: the binary's implementation of `Callbacks`.

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use kiwi_signer::backend::Secret;
use kiwi_signer::callbacks::Callbacks;
use kiwi_signer::{Error, Result};
use zeroize::Zeroizing;

/// Prompts on the terminal, or reads the secret from `--pin-file`.
pub struct Terminal {
    pin_file: Option<PathBuf>,
    mgm_key_file: Option<PathBuf>,
    yes: bool,
}

impl Terminal {
    pub fn new(pin_file: Option<PathBuf>, yes: bool) -> Self {
        Terminal {
            pin_file,
            mgm_key_file: None,
            yes,
        }
    }

    /// Reads the management key from `path` instead of asking.
    pub fn with_mgm_key_file(mut self, path: Option<PathBuf>) -> Self {
        self.mgm_key_file = path;
        self
    }

    /// Reads the first line of a secret file, which only its owner may be able to read or
    /// change (as ssh refuses such private keys): anything else is refused before reading.
    fn read_pin_file(path: &PathBuf) -> Result<Secret> {
        let meta =
            std::fs::metadata(path).map_err(|e| Error::io(path, e, "check the --pin-file path"))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::SecretFileExposed {
                path: path.display().to_string(),
                mode,
            });
        }
        let raw = Zeroizing::new(
            std::fs::read(path).map_err(|e| Error::io(path, e, "check the --pin-file path"))?,
        );
        let text = std::str::from_utf8(&raw).map_err(|_| {
            Error::Prompt(format!(
                "{}: the PIN file is not UTF-8 text",
                path.display()
            ))
        })?;
        let first = text.lines().next().unwrap_or("");
        if first.is_empty() {
            return Err(Error::Prompt(format!(
                "{}: the PIN file is empty",
                path.display()
            )));
        }
        Ok(Secret::new(first.to_string()))
    }

    fn ask(&self, prompt: &str) -> Result<Secret> {
        // The String rpassword returns moves (no copy) straight into `Secret`'s `Zeroizing`, so
        // it is wiped when the secret is dropped.
        rpassword::prompt_password(format!("{prompt}: "))
            .map(Secret::new)
            .map_err(|e| {
                Error::Prompt(format!(
                    "cannot ask for the secret on a terminal ({e}); pass --pin-file FILE"
                ))
            })
    }
}

impl Callbacks for Terminal {
    fn confirm(&self, summary: &str) -> Result<bool> {
        let mut err = std::io::stderr();
        let _ = write!(err, "{summary}");
        if self.yes {
            let _ = writeln!(err, "Confirmed by --yes.");
            return Ok(true);
        }
        let _ = write!(err, "Type yes to continue: ");
        let _ = err.flush();
        let mut line = String::new();
        let n = std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Error::io("stdin", e, ""))?;
        if n == 0 {
            return Err(Error::Prompt(
                "no answer at the confirmation prompt (standard input is closed); type `yes` on a terminal, or pass --yes".into(),
            ));
        }
        Ok(line.trim() == "yes")
    }

    fn secret(&self, prompt: &str) -> Result<Secret> {
        match &self.pin_file {
            Some(p) => Self::read_pin_file(p),
            None => self.ask(prompt),
        }
    }

    fn confirm_last_pin_try(&self, message: &str) -> Result<bool> {
        let mut err = std::io::stderr();
        let _ = write!(err, "{message}");
        if !std::io::stdin().is_terminal() {
            return Err(Error::Prompt(
                "the device has one PIN try left and there is no terminal to confirm spending it \
                 (--yes does not answer this); run the command at a terminal, or unblock/reset the \
                 PIN counter with the PUK first"
                    .into(),
            ));
        }
        let _ = write!(err, "Type yes to spend the last PIN try: ");
        let _ = err.flush();
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Error::io("stdin", e, ""))?;
        Ok(line.trim() == "yes")
    }

    fn management_key(&self, prompt: &str) -> Result<Secret> {
        match &self.mgm_key_file {
            Some(p) => Self::read_pin_file(p),
            None if !std::io::stdin().is_terminal() => Err(Error::Prompt(
                "the YubiKey's management key is needed and there is no terminal to ask for it; \
                 pass --mgm-key-file FILE, or keep a PIN-protected management key on the device \
                 (ykman piv access change-management-key --generate --protect). Nothing was signed"
                    .into(),
            )),
            None => self.ask(prompt),
        }
    }

    fn new_secret(&self, prompt: &str) -> Result<Secret> {
        if let Some(p) = &self.pin_file {
            return Self::read_pin_file(p);
        }
        if !std::io::stdin().is_terminal() {
            return Err(Error::Prompt(
                "no terminal to ask for a new passphrase; pass --pin-file FILE".into(),
            ));
        }
        let a = self.ask(prompt)?;
        let b = self.ask("Repeat it")?;
        if a.expose() != b.expose() {
            return Err(Error::Prompt(
                "the two passphrases differ; nothing was created".into(),
            ));
        }
        Ok(a)
    }

    fn notice(&self, message: &str) {
        eprintln!("{message}");
    }
}
