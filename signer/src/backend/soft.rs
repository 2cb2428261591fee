//! The software root key: PKCS#8 encrypted with age under a passphrase.
//!
//! For rehearsals and tests only; a real root lives in hardware. The plaintext PKCS#8 exists only
//! in zeroizing memory; the file on disk is age (scrypt) ciphertext, created 0600 and never
//! overwritten.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::secrecy::SecretString;
use ecdsa::signature::Signer;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use zeroize::Zeroizing;

use super::{BackendError, KeyBackend, Secret};
use crate::algo::{KeyAlgorithm, PublicKey};
use crate::fsutil;

/// Shortest passphrase accepted for a new software root key.
pub const MIN_PASSPHRASE: usize = 12;

enum Key {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

/// An in-memory ECDSA key (zeroized on drop by the curve crates).
pub struct SoftKey {
    key: Key,
    public: PublicKey,
    origin: String,
}

impl std::fmt::Debug for SoftKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SoftKey({}, {:?})", self.origin, self.public)
    }
}

impl SoftKey {
    /// Generates a fresh key from the OS random generator.
    pub fn generate(alg: KeyAlgorithm) -> Self {
        let key = match alg {
            KeyAlgorithm::EcdsaP256 => {
                Key::P256(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng))
            }
            KeyAlgorithm::EcdsaP384 => {
                Key::P384(p384::ecdsa::SigningKey::random(&mut rand_core::OsRng))
            }
        };
        Self::from_key(key, "ephemeral key".into())
    }

    fn from_key(key: Key, origin: String) -> Self {
        let spki = match &key {
            Key::P256(k) => k.verifying_key().to_public_key_der(),
            Key::P384(k) => k.verifying_key().to_public_key_der(),
        };
        // Encoding a valid curve point as SPKI cannot fail, and our parser accepts its output.
        let spki = spki.unwrap_or_else(|_| unreachable!("SPKI encoding of a valid key"));
        let public = PublicKey::from_spki_der(spki.as_bytes())
            .unwrap_or_else(|_| unreachable!("SPKI we just encoded parses"));
        SoftKey {
            key,
            public,
            origin,
        }
    }

    /// The key as unencrypted PKCS#8 DER, zeroized on drop. For the online tooling's
    /// intermediate keys, which are stored only SOPS-encrypted; the signer never calls this on a
    /// root key except to encrypt it.
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        let doc = match &self.key {
            Key::P256(k) => k.to_pkcs8_der(),
            Key::P384(k) => k.to_pkcs8_der(),
        };
        // PKCS#8 encoding of an in-memory EC key has no failure mode.
        let doc = doc.unwrap_or_else(|_| unreachable!("PKCS#8 encoding"));
        Zeroizing::new(doc.as_bytes().to_vec())
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
        w.write_all(&self.to_pkcs8_der()).map_err(enc_err)?;
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
        Self::from_pkcs8_der(&der, format!("software key {}", path.display()))
            .map_err(|detail| damaged(detail).into())
    }

    /// Reads an unencrypted PKCS#8 DER ECDSA P-256 or P-384 key; `origin` names it in messages.
    pub fn from_pkcs8_der(der: &[u8], origin: String) -> Result<Self, String> {
        let key = if let Ok(k) = p384::ecdsa::SigningKey::from_pkcs8_der(der) {
            Key::P384(k)
        } else if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_der(der) {
            Key::P256(k)
        } else {
            return Err("not an ECDSA P-256 or P-384 PKCS#8 key".into());
        };
        Ok(Self::from_key(key, origin))
    }
}

impl KeyBackend for SoftKey {
    fn describe(&self) -> String {
        self.origin.clone()
    }

    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, BackendError> {
        Ok(match &self.key {
            Key::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign(msg);
                s.to_der().as_bytes().to_vec()
            }
            Key::P384(k) => {
                let s: p384::ecdsa::Signature = k.sign(msg);
                s.to_der().as_bytes().to_vec()
            }
        })
    }
}

/// The key file's name inside a CA directory.
pub fn key_path(ca_dir: &Path) -> PathBuf {
    ca_dir.join("root.key.age")
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
