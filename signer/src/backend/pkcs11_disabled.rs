//! Stand-in for the PKCS#11 backend in builds without the `pkcs11` feature: every call says so,
//! so callers need no `cfg` of their own.

use super::pkcs11_config::Pkcs11Config;
use super::{BackendError, KeyBackend, Secret};
use crate::algo::{KeyAlgorithm, PublicKey};

/// Never constructed in this build.
#[derive(Debug)]
pub struct Pkcs11Key {
    public: PublicKey,
}

impl Pkcs11Key {
    /// Always `Unavailable`.
    pub fn open(_cfg: &Pkcs11Config, _pin: &Secret) -> Result<Self, BackendError> {
        Err(BackendError::Unavailable("pkcs11"))
    }

    /// Always `Unavailable`.
    pub fn generate(
        _cfg: &Pkcs11Config,
        _alg: KeyAlgorithm,
        _pin: &Secret,
    ) -> Result<Self, BackendError> {
        Err(BackendError::Unavailable("pkcs11"))
    }

    /// Nothing to undo.
    pub fn destroy(self) {}
}

impl KeyBackend for Pkcs11Key {
    fn describe(&self) -> String {
        "PKCS#11 (not built in)".into()
    }
    fn public_key(&self) -> &PublicKey {
        &self.public
    }
    fn sign(&self, _msg: &[u8]) -> Result<Vec<u8>, BackendError> {
        Err(BackendError::Unavailable("pkcs11"))
    }
}
