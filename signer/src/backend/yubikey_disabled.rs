//! Stand-in for the YubiKey backend in builds without the `yubikey` feature: the same
//! [`Provider`] for the same config type, refusing every call, so callers need no `cfg` of their
//! own and a change to the trait cannot leave this file behind.

use std::path::Path;

use super::yubikey_config::YubikeyConfig;
use super::{BackendError, KeyBackend, KeyRequest, NewKey, Provider};
use crate::callbacks::Callbacks;

/// The YubiKey backend, compiled out.
pub struct Yubikey;

impl Provider for Yubikey {
    type Config = YubikeyConfig;
    const REMEMBERS: bool = true;

    fn open<'cb>(
        _cfg: &YubikeyConfig,
        _dir: &Path,
        _cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn KeyBackend + 'cb>, crate::Error> {
        Err(BackendError::Unavailable("yubikey").into())
    }

    fn generate<'cb>(
        _cfg: &YubikeyConfig,
        _req: &KeyRequest,
        _cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn NewKey + 'cb>, crate::Error> {
        Err(BackendError::Unavailable("yubikey").into())
    }

    fn import<'cb>(
        _cfg: &YubikeyConfig,
        _req: &KeyRequest,
        _cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn NewKey + 'cb>, crate::Error> {
        Err(BackendError::Unavailable("yubikey").into())
    }
}
