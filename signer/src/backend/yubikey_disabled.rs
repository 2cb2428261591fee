//! Stand-in for the YubiKey backend in builds without the `yubikey` feature: every call says
//! so, so callers need no `cfg` of their own.

use super::yubikey_config::YubikeyConfig;
use super::{BackendError, KeyBackend};
use crate::algo::{KeyAlgorithm, PublicKey};
use crate::callbacks::Callbacks;
use crate::policy;

/// Never constructed in this build.
#[derive(Debug)]
pub struct YubikeyKey<'cb> {
    public: PublicKey,
    _cb: std::marker::PhantomData<&'cb ()>,
}

impl<'cb> YubikeyKey<'cb> {
    /// Always `Unavailable`.
    pub fn open(_cfg: &YubikeyConfig, _cb: &'cb dyn Callbacks) -> Result<Self, BackendError> {
        Err(BackendError::Unavailable("yubikey"))
    }

    /// Always `Unavailable`.
    pub fn generate(
        _cfg: &YubikeyConfig,
        _alg: KeyAlgorithm,
        _pin: policy::PinPolicy,
        _touch: policy::TouchPolicy,
        _cb: &'cb dyn Callbacks,
    ) -> Result<Self, BackendError> {
        Err(BackendError::Unavailable("yubikey"))
    }

    /// Always `Unavailable`.
    pub fn generate_imported(
        _cfg: &YubikeyConfig,
        _serials: &[u32],
        _alg: KeyAlgorithm,
        _pin: policy::PinPolicy,
        _touch: policy::TouchPolicy,
        _cb: &'cb dyn Callbacks,
    ) -> Result<Self, BackendError> {
        Err(BackendError::Unavailable("yubikey"))
    }
}

impl KeyBackend for YubikeyKey<'_> {
    fn describe(&self) -> String {
        "YubiKey (not built in)".into()
    }
    fn public_key(&self) -> &PublicKey {
        &self.public
    }
    fn sign(&self, _msg: &[u8]) -> Result<Vec<u8>, BackendError> {
        Err(BackendError::Unavailable("yubikey"))
    }
}
