//! The software root key: PKCS#8 encrypted with age under a passphrase.
//!
//! For rehearsals and tests only; a real root lives in hardware. The plaintext PKCS#8 exists only
//! in zeroizing memory; the file on disk is age (scrypt) ciphertext, created 0600 and never
//! overwritten. There is no device, so nothing remembers the ledger's head: the witness's
//! `--expect-head` is the rehearsal's protection against a rolled-back ledger.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::secrecy::SecretString;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{BackendError, KeyBackend, KeyRequest, NewKey, Provider, Secret};
use crate::algo::{KeyAlgorithm, PublicKey};
use crate::callbacks::Callbacks;
use crate::eckey::EcKey;
use crate::fsutil;

/// Shortest passphrase accepted for a new software root key.
pub const MIN_PASSPHRASE: usize = 12;

/// The key file's name when `ca.toml` names none.
pub const DEFAULT_KEY_FILE: &str = "root.key.age";

/// The soft backend's `[backend]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftConfig {
    /// The age-encrypted key file: a file name inside the CA directory.
    #[serde(default = "default_key_file")]
    pub key_file: String,
}

fn default_key_file() -> String {
    DEFAULT_KEY_FILE.into()
}

impl Default for SoftConfig {
    fn default() -> Self {
        SoftConfig {
            key_file: default_key_file(),
        }
    }
}

impl SoftConfig {
    /// The key file inside `dir`; refuses a name that would leave the directory.
    fn path(&self, dir: &Path) -> Result<PathBuf, crate::Error> {
        let name = Path::new(&self.key_file);
        let plain = name.components().count() == 1
            && matches!(
                name.components().next(),
                Some(std::path::Component::Normal(_))
            );
        if !plain {
            return Err(BackendError::Damaged {
                path: self.key_file.clone(),
                detail: "ca.toml's [backend] key_file must be a file name inside the CA directory"
                    .into(),
            }
            .into());
        }
        Ok(dir.join(name))
    }
}

/// The soft backend.
pub struct Soft;

impl Provider for Soft {
    type Config = SoftConfig;
    const REMEMBERS: bool = false;

    fn open<'cb>(
        cfg: &SoftConfig,
        dir: &Path,
        cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn KeyBackend + 'cb>, crate::Error> {
        let path = cfg.path(dir)?;
        let pass = cb.secret("Passphrase for the root key")?;
        Ok(Box::new(SoftKey::open(&path, &pass)?))
    }

    fn generate<'cb>(
        cfg: &SoftConfig,
        req: &KeyRequest,
        cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn NewKey + 'cb>, crate::Error> {
        cfg.path(Path::new("."))?;
        let pass = cb.new_secret("New passphrase for the root key")?;
        let n = pass.expose().chars().count();
        if n < MIN_PASSPHRASE {
            return Err(BackendError::WeakPassphrase(n).into());
        }
        Ok(Box::new(NewSoftKey {
            key: SoftKey::generate(req.algorithm),
            pass,
            cfg: cfg.clone(),
        }))
    }

    fn import<'cb>(
        _cfg: &SoftConfig,
        _req: &KeyRequest,
        _cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn NewKey + 'cb>, crate::Error> {
        Err(BackendError::NoImport("soft").into())
    }
}

/// A new soft key and the passphrase it will be saved under.
struct NewSoftKey {
    key: SoftKey,
    pass: Secret,
    cfg: SoftConfig,
}

impl NewKey for NewSoftKey {
    fn key(&self) -> &dyn KeyBackend {
        &self.key
    }

    fn persist(&self, dir: &Path) -> Result<Vec<PathBuf>, crate::Error> {
        self.key.save(&self.cfg.path(dir)?, &self.pass)?;
        Ok(vec![PathBuf::from(&self.cfg.key_file)])
    }
}

/// The soft root key in memory (zeroized on drop by the curve crates).
pub struct SoftKey {
    key: EcKey,
    origin: String,
}

impl std::fmt::Debug for SoftKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SoftKey({}, {:?})", self.origin, self.key.public_key())
    }
}

impl SoftKey {
    /// Generates a fresh key from the OS random generator.
    pub fn generate(alg: KeyAlgorithm) -> Self {
        SoftKey {
            key: EcKey::generate(alg),
            origin: "ephemeral key".into(),
        }
    }

    /// Writes the key to `path` (created new, mode 0600), PKCS#8 encrypted with age under
    /// `passphrase`.
    pub fn save(&self, path: &Path, passphrase: &Secret) -> Result<(), crate::Error> {
        if passphrase.expose().chars().count() < MIN_PASSPHRASE {
            return Err(BackendError::WeakPassphrase(passphrase.expose().chars().count()).into());
        }
        let pass = SecretString::from(passphrase.expose().to_string());
        let encryptor = age::Encryptor::with_user_passphrase(pass);
        let mut out = Vec::new();
        let enc_err = |e: std::io::Error| crate::Error::io(path, e, "could not encrypt the key");
        let armored = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).map_err(enc_err)?;
        let mut w = encryptor.wrap_output(armored).map_err(enc_err)?;
        w.write_all(&self.key.to_pkcs8_der()).map_err(enc_err)?;
        w.finish().and_then(|a| a.finish()).map_err(enc_err)?;
        fsutil::write_new(path, &out, fsutil::Mode::Secret)
    }

    /// Reads and decrypts a key file written by [`SoftKey::save`].
    pub fn open(path: &Path, passphrase: &Secret) -> Result<Self, crate::Error> {
        let bytes = std::fs::read(path).map_err(|e| {
            crate::Error::io(
                path,
                e,
                "the CA's software key file is missing; is this the right --ca?",
            )
        })?;
        let damaged = |detail: String| BackendError::Damaged {
            path: path.display().to_string(),
            detail,
        };
        let decryptor = age::Decryptor::new(ArmoredReader::new(&bytes[..]))
            .map_err(|e| damaged(e.to_string()))?;
        if !decryptor.is_scrypt() {
            return Err(damaged("not passphrase-encrypted".into()).into());
        }
        let identity =
            age::scrypt::Identity::new(SecretString::from(passphrase.expose().to_string()));
        let mut reader = decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => {
                    BackendError::WrongPassphrase(path.display().to_string())
                }
                other => damaged(other.to_string()),
            })?;
        let mut der = Zeroizing::new(Vec::new());
        reader
            .read_to_end(&mut der)
            .map_err(|e| damaged(e.to_string()))?;
        let key = EcKey::from_pkcs8_der(&der).map_err(damaged)?;
        Ok(SoftKey {
            key,
            origin: format!("software key {}", path.display()),
        })
    }
}

impl KeyBackend for SoftKey {
    fn describe(&self) -> String {
        self.origin.clone()
    }

    fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, BackendError> {
        Ok(self.key.sign(msg))
    }
}

/// The default key file's path inside a CA directory.
pub fn key_path(ca_dir: &Path) -> PathBuf {
    ca_dir.join(DEFAULT_KEY_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn save_open_round_trip_and_wrong_passphrase() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.age");
        let key = SoftKey::generate(KeyAlgorithm::EcdsaP384);
        let pass = Secret::new("correct horse battery".into());
        key.save(&path, &pass).expect("save");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        let opened = SoftKey::open(&path, &pass).expect("open");
        assert_eq!(opened.public_key(), key.public_key());
        let e = SoftKey::open(&path, &Secret::new("wrong passphrase!".into())).expect_err("wrong");
        assert!(
            matches!(e, crate::Error::Backend(BackendError::WrongPassphrase(_))),
            "{e}"
        );
        // Never overwritten.
        assert!(key.save(&path, &pass).is_err());
    }

    #[test]
    fn the_soft_key_remembers_nothing() {
        let key = SoftKey::generate(KeyAlgorithm::EcdsaP256);
        assert!(!key.remembers());
        let anchor = super::super::Anchor {
            head: crate::words::Fingerprint::of(b"head"),
            crl_number: 3,
        };
        key.write_anchor(&anchor).expect("a no-op");
        assert_eq!(key.read_anchor(), Ok(None), "a soft key stores no anchor");
    }

    #[test]
    fn key_file_must_stay_inside_the_ca_directory() {
        let dir = Path::new("/ca");
        let ok = SoftConfig::default().path(dir).expect("default");
        assert_eq!(ok, dir.join("root.key.age"));
        for bad in ["../root.key.age", "/etc/passwd", "a/b", "", ".."] {
            let cfg = SoftConfig {
                key_file: bad.into(),
            };
            assert!(cfg.path(dir).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn weak_passphrase_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.age");
        let e = SoftKey::generate(KeyAlgorithm::EcdsaP256)
            .save(&path, &Secret::new("short".into()))
            .expect_err("weak");
        assert!(e.to_string().contains("at least 12"), "{e}");
        assert!(!path.exists());
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2hunter2".into())),
            "Secret(<redacted>)"
        );
    }
}
