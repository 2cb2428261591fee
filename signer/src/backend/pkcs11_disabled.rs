//! Stand-in for the PKCS#11 backend in builds without the `pkcs11` feature: the same
//! [`Provider`] for the same config type, refusing every call, so callers need no `cfg` of their
//! own and a change to the trait cannot leave this file behind.

use std::path::Path;

use super::pkcs11_config::Pkcs11Config;
use super::{BackendError, KeyBackend, KeyRequest, NewKey, Provider};
use crate::callbacks::Callbacks;

/// The PKCS#11 backend, compiled out.
pub struct Pkcs11;

impl Provider for Pkcs11 {
    type Config = Pkcs11Config;
    const REMEMBERS: bool = true;

    fn open<'cb>(
        _cfg: &Pkcs11Config,
        _dir: &Path,
        _cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn KeyBackend + 'cb>, crate::Error> {
        Err(BackendError::Unavailable("pkcs11").into())
    }

    fn generate<'cb>(
        _cfg: &Pkcs11Config,
        _req: &KeyRequest,
        _cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn NewKey + 'cb>, crate::Error> {
        Err(BackendError::Unavailable("pkcs11").into())
    }

    fn import<'cb>(
        _cfg: &Pkcs11Config,
        _req: &KeyRequest,
        _cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn NewKey + 'cb>, crate::Error> {
        Err(BackendError::Unavailable("pkcs11").into())
    }
}
