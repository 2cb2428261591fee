//! Root key backends behind one provider trait.
//!
//! The root key lives in a YubiKey PIV slot at real ceremonies; PKCS#11 tokens and an
//! age-encrypted software key (for rehearsals) are the other backends. Each backend is one
//! module with its own config type (its `[backend]` table in `ca.toml`) and one [`Provider`]
//! implementation: open the CA's key, generate a new one, import one into several devices; the
//! key it hands out is a [`KeyBackend`] (a public key and `sign`, rcgen's `SigningKey` in
//! spirit), and a new key is a [`NewKey`] that `init` persists or aborts. Backends know nothing
//! of the pipeline that drives them; all prompts go through [`Callbacks`].
//!
//! The `registry!` invocation below is the only list of backends: it generates the
//! serde-tagged [`BackendConfig`] (`type = "yubikey"`), [`BackendKind`] and the dispatch, so
//! adding a backend is one module plus one registration line. A backend whose cargo feature is
//! off is replaced by its `*_disabled.rs` stand-in, which implements the same [`Provider`] for
//! the same config type (refusing with [`BackendError::Unavailable`]), so it cannot fall behind.

pub mod anchor;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
#[cfg(not(feature = "pkcs11"))]
#[path = "pkcs11_disabled.rs"]
pub mod pkcs11;
pub mod pkcs11_config;
pub mod soft;
#[cfg(feature = "yubikey")]
pub mod yubikey;
#[cfg(not(feature = "yubikey"))]
#[path = "yubikey_disabled.rs"]
pub mod yubikey;
pub mod yubikey_config;

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::algo::{KeyAlgorithm, PublicKey};
use crate::callbacks::Callbacks;
use crate::error::Result;
use crate::policy::{PinPolicy, RootPolicy, TouchPolicy};

/// A secret the operator supplies: passphrase or PIN. Never printed.
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret string.
    pub fn new(s: String) -> Self {
        Secret(Zeroizing::new(s))
    }

    /// The secret's text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One backend: how its key is opened, generated and imported. Implemented by a unit type per
/// backend module (and by its stand-in when the backend's feature is off).
pub trait Provider {
    /// The backend's settings: its `[backend]` table in `ca.toml`, besides `type`. Never a
    /// secret.
    type Config: Clone + fmt::Debug + PartialEq + Eq + Serialize + DeserializeOwned;

    /// Whether this backend's keys remember the ledger's [`Anchor`] (a device does; a key file
    /// does not). Known without opening anything, for `status`; an opened key says the same
    /// through [`KeyBackend::remembers`].
    const REMEMBERS: bool;

    /// Opens the key of an existing CA in `dir`, asking for its PIN or passphrase through `cb`.
    fn open<'cb>(
        cfg: &Self::Config,
        dir: &Path,
        cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn KeyBackend + 'cb>>;

    /// Creates a new root key where `cfg` says (on the device, when there is one).
    fn generate<'cb>(
        cfg: &Self::Config,
        req: &KeyRequest,
        cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn NewKey + 'cb>>;

    /// Creates the key in memory, imports it into every device `cfg` names (the backups) and
    /// zeroizes it. Backends without backup devices refuse.
    fn import<'cb>(
        cfg: &Self::Config,
        req: &KeyRequest,
        cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn NewKey + 'cb>>;
}

/// What a new root key must be, from the root policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRequest {
    /// The key's algorithm.
    pub algorithm: KeyAlgorithm,
    /// PIN policy, where the device enforces one.
    pub pin_policy: PinPolicy,
    /// Touch policy, where the device enforces one.
    pub touch_policy: TouchPolicy,
}

impl KeyRequest {
    /// The root policy's key settings.
    pub fn from_policy(pol: &RootPolicy) -> Self {
        KeyRequest {
            algorithm: pol.key_algorithm,
            pin_policy: pol.pin_policy,
            touch_policy: pol.touch_policy,
        }
    }
}

/// A root key `init` has just created, not yet part of a CA: `init` signs the root
/// certificate with [`NewKey::key`], then either [`NewKey::persist`]s it into the staged CA
/// directory or, when anything failed, [`NewKey::abort`]s it.
pub trait NewKey {
    /// The key, for signing the root certificate.
    fn key(&self) -> &dyn KeyBackend;

    /// Writes what the CA directory keeps of the key (the soft key's encrypted file) into the
    /// staged directory `dir`; returns the names of the files written. Devices keep their key
    /// themselves and write nothing.
    fn persist(&self, _dir: &Path) -> Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }

    /// Undoes the creation when the CA is not created (a PKCS#11 key pair is deleted again).
    fn abort(self: Box<Self>) {}
}

/// Declares the backends: one line each, `"name" => Variant(provider type)`.
macro_rules! registry {
    ($($name:literal => $variant:ident($provider:ty)),+ $(,)?) => {
        /// The `[backend]` table of `ca.toml`: which backend holds the root key (`type`) and
        /// that backend's settings.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum BackendConfig {
            $(
                #[doc = concat!("`type = \"", $name, "\"`.")]
                #[serde(rename = $name)]
                $variant(<$provider as Provider>::Config),
            )+
        }

        /// A backend's name, as `--backend` and `ca.toml` write it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum BackendKind {
            $(
                #[doc = concat!("`", $name, "`.")]
                $variant,
            )+
        }

        impl BackendKind {
            /// Every backend, in registration order.
            pub const ALL: &'static [BackendKind] = &[$(BackendKind::$variant),+];

            /// The name in `ca.toml` and on the command line.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(BackendKind::$variant => $name,)+
                }
            }

            /// Whether this backend's keys remember the ledger's anchor ([`Provider::REMEMBERS`]).
            pub fn remembers(self) -> bool {
                match self {
                    $(BackendKind::$variant => <$provider as Provider>::REMEMBERS,)+
                }
            }
        }

        impl BackendConfig {
            /// Which backend.
            pub fn kind(&self) -> BackendKind {
                match self {
                    $(BackendConfig::$variant(_) => BackendKind::$variant,)+
                }
            }

            /// Opens the key of the CA in `dir` ([`Provider::open`]).
            pub fn open<'cb>(
                &self,
                dir: &Path,
                cb: &'cb dyn Callbacks,
            ) -> Result<Box<dyn KeyBackend + 'cb>> {
                match self {
                    $(BackendConfig::$variant(c) => <$provider as Provider>::open(c, dir, cb),)+
                }
            }

            /// Creates a new key ([`Provider::generate`]).
            pub fn generate<'cb>(
                &self,
                req: &KeyRequest,
                cb: &'cb dyn Callbacks,
            ) -> Result<Box<dyn NewKey + 'cb>> {
                match self {
                    $(BackendConfig::$variant(c) => <$provider as Provider>::generate(c, req, cb),)+
                }
            }

            /// Creates a key and imports it into the backup devices ([`Provider::import`]).
            pub fn import<'cb>(
                &self,
                req: &KeyRequest,
                cb: &'cb dyn Callbacks,
            ) -> Result<Box<dyn NewKey + 'cb>> {
                match self {
                    $(BackendConfig::$variant(c) => <$provider as Provider>::import(c, req, cb),)+
                }
            }
        }
    };
}

registry! {
    "soft" => Soft(soft::Soft),
    "yubikey" => Yubikey(yubikey::Yubikey),
    "pkcs11" => Pkcs11(pkcs11::Pkcs11),
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        BackendKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = BackendKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown backend `{s}`; use {}", names.join(", "))
            })
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which backend a new CA uses, with its settings, and how its key comes to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// The backend and its settings, as `ca.toml` will record them.
    pub config: BackendConfig,
    /// Generate the key in memory and import it into every device the config names (backups)
    /// instead of generating it where it stays.
    pub import: bool,
}

impl BackendSpec {
    /// A key generated where `config` says.
    pub fn generate(config: BackendConfig) -> Self {
        BackendSpec {
            config,
            import: false,
        }
    }

    /// A key imported into every device `config` names.
    pub fn import(config: BackendConfig) -> Self {
        BackendSpec {
            config,
            import: true,
        }
    }

    /// The software key of rehearsals and tests, in the CA directory's `root.key.age`.
    pub fn soft() -> Self {
        Self::generate(BackendConfig::Soft(soft::SoftConfig::default()))
    }

    /// Which backend.
    pub fn kind(&self) -> BackendKind {
        self.config.kind()
    }

    /// Creates the new root key as the spec says.
    pub fn create<'cb>(
        &self,
        req: &KeyRequest,
        cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn NewKey + 'cb>> {
        if self.import {
            self.config.import(req, cb)
        } else {
            self.config.generate(req, cb)
        }
    }
}

/// Why a backend could not produce a key or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The passphrase does not decrypt the software key.
    #[error(
        "the passphrase does not open the root key {0}; check the passphrase file and try again"
    )]
    WrongPassphrase(String),
    /// The passphrase is too weak to protect a root key.
    #[error("the passphrase has {0} characters; a root key passphrase needs at least {min}", min = soft::MIN_PASSPHRASE)]
    WeakPassphrase(usize),
    /// The backend's key differs from the root certificate's.
    #[error(
        "the key in {backend} is not the key of root.pem (backend key id {backend_key}, root.pem key id \
         {root_key}); use the device or key file that belongs to this CA"
    )]
    KeyMismatch {
        /// Which backend.
        backend: String,
        /// Key id of the backend's key.
        backend_key: String,
        /// Key id of root.pem's key.
        root_key: String,
    },
    /// The backend is not built into this binary.
    #[error("the {0} backend is not available in this build of kiwi-signer (built without its cargo feature); use a kiwi-signer built with default features, or --backend soft for rehearsals")]
    Unavailable(&'static str),
    /// The backend cannot import a key into backup devices.
    #[error("the {0} backend cannot import a key into backup devices; --import-to is for --backend yubikey")]
    NoImport(&'static str),
    /// The anchor stored on the device is unreadable.
    #[error("{device}: the ledger anchor stored on the device is unreadable ({detail}); restore the newest backup of the CA directory and ask for help before signing")]
    BadAnchor {
        /// The device.
        device: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The key file is damaged.
    #[error("the root key file {path} is damaged ({detail}); restore it from the backup")]
    Damaged {
        /// Key file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The PIN was wrong.
    #[error("wrong PIN for the {device}{}; check the PIN file or retype it", match .retries { Some(n) => format!(" ({n} tries left before it blocks)"), None => String::new() })]
    WrongPin {
        /// The device.
        device: String,
        /// Tries left, when the device says.
        retries: Option<u8>,
    },
    /// The PIN is blocked.
    #[error("the PIN of the {device} is blocked; {unblock}. Nothing was signed")]
    PinBlocked {
        /// The device.
        device: String,
        /// How to unblock it.
        unblock: &'static str,
    },
    /// The device is missing, unreachable or misbehaving.
    #[error("{device}: {detail}")]
    Device {
        /// The device.
        device: String,
        /// What happened and what to do.
        detail: String,
    },
    /// Signing failed inside the backend.
    #[error("the {backend} failed to sign: {detail}")]
    SignFailed {
        /// Which backend.
        backend: String,
        /// Its error.
        detail: String,
    },
}

/// What a hardware device remembers of the ledger it last signed for, so that a ledger rolled back
/// (entries cut off the end, an older backup restored) is refused on the next open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The ledger head after the last operation the device took part in.
    pub head: crate::words::Fingerprint,
    /// The highest CRL number issued so far (0 when none).
    pub crl_number: u64,
}

/// A root key: its public half, and signatures on demand.
pub trait KeyBackend {
    /// Names the backend and key for messages ("software key /ca/root.key.age").
    fn describe(&self) -> String;
    /// The public key.
    fn public_key(&self) -> &PublicKey;
    /// Signs `msg` (a DER TBSCertificate or TBSCertList) with the key's standard hash (SHA-256
    /// for P-256, SHA-384 for P-384) and returns the DER ECDSA signature.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, BackendError>;

    /// Stores the root certificate with the key where the device has room for it (a YubiKey
    /// slot's certificate object); a no-op elsewhere.
    fn store_certificate(&self, _der: &[u8]) -> Result<(), BackendError> {
        Ok(())
    }

    /// The device's attestation certificate (DER) for a key it generated, if it gives one.
    fn attestation(&self) -> Option<Vec<u8>> {
        None
    }

    /// The key's algorithm.
    fn algorithm(&self) -> KeyAlgorithm {
        self.public_key().algorithm()
    }

    /// Whether this backend can remember an [`Anchor`] (hardware: yes; soft key: no).
    fn remembers(&self) -> bool {
        false
    }
    /// The anchor stored on the device, or None when it stores none yet (or cannot).
    fn read_anchor(&self) -> Result<Option<Anchor>, BackendError> {
        Ok(None)
    }
    /// Stores `anchor` on the device, replacing the previous one. Durable on the device when it returns.
    fn write_anchor(&self, _anchor: &Anchor) -> Result<(), BackendError> {
        Ok(())
    }
}

/// Refuses a backend whose public key is not `root`'s (checked before every signature).
pub fn check_matches(backend: &dyn KeyBackend, root: &PublicKey) -> Result<(), BackendError> {
    if backend.public_key() == root {
        return Ok(());
    }
    Err(BackendError::KeyMismatch {
        backend: backend.describe(),
        backend_key: hex::encode(backend.public_key().key_id()),
        root_key: hex::encode(root.key_id()),
    })
}

/// Adapts a [`KeyBackend`] to rcgen's `SigningKey`, keeping the backend's real error aside
/// (rcgen collapses it to `RemoteKeyError`) and counting signatures.
pub struct RcgenSigner<'a> {
    backend: &'a dyn KeyBackend,
    last_error: RefCell<Option<BackendError>>,
    signatures: RefCell<u32>,
}

impl<'a> RcgenSigner<'a> {
    /// Wraps a backend for rcgen.
    pub fn new(backend: &'a dyn KeyBackend) -> Self {
        RcgenSigner {
            backend,
            last_error: RefCell::new(None),
            signatures: RefCell::new(0),
        }
    }

    /// The backend error behind an rcgen failure, if the backend failed.
    pub(crate) fn take_error(&self) -> Option<BackendError> {
        self.last_error.borrow_mut().take()
    }

    /// How many signatures the backend was asked for.
    pub(crate) fn signatures(&self) -> u32 {
        *self.signatures.borrow()
    }
}

impl rcgen::PublicKeyData for RcgenSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.backend.public_key().point()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.backend.algorithm().rcgen_alg()
    }
}

impl rcgen::SigningKey for RcgenSigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        *self.signatures.borrow_mut() += 1;
        self.backend.sign(msg).map_err(|e| {
            *self.last_error.borrow_mut() = Some(e);
            rcgen::Error::RemoteKeyError
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callbacks::Scripted;

    fn cb() -> Scripted {
        Scripted {
            confirm: true,
            secret: "unit test passphrase".into(),
        }
    }

    fn req() -> KeyRequest {
        KeyRequest {
            algorithm: KeyAlgorithm::EcdsaP256,
            pin_policy: PinPolicy::Always,
            touch_policy: TouchPolicy::Always,
        }
    }

    #[test]
    fn only_the_soft_backend_forgets() {
        for kind in BackendKind::ALL {
            assert_eq!(kind.remembers(), *kind != BackendKind::Soft, "{kind}");
        }
    }

    #[test]
    fn every_backend_name_parses_back() {
        for kind in BackendKind::ALL {
            assert_eq!(kind.as_str().parse::<BackendKind>(), Ok(*kind));
        }
        let e = "floppy".parse::<BackendKind>().expect_err("unknown");
        assert!(e.contains("soft, yubikey, pkcs11"), "{e}");
    }

    #[test]
    fn the_config_table_is_tagged_with_the_backend_name() {
        for config in [
            BackendConfig::Soft(soft::SoftConfig::default()),
            BackendConfig::Yubikey(yubikey_config::YubikeyConfig {
                serial: 1,
                slot: "9c".into(),
                backups: vec![2],
            }),
            BackendConfig::Pkcs11(pkcs11_config::Pkcs11Config {
                module: "/m.so".into(),
                token_label: "t".into(),
                key_label: "k".into(),
            }),
        ] {
            let text = toml::to_string(&config).expect("serializes");
            assert!(
                text.starts_with(&format!("type = \"{}\"\n", config.kind().as_str())),
                "{text}"
            );
            assert_eq!(toml::from_str::<BackendConfig>(&text), Ok(config));
        }
    }

    #[test]
    fn only_devices_with_backups_import() {
        let e = BackendSpec::import(BackendConfig::Soft(soft::SoftConfig::default()))
            .create(&req(), &cb())
            .err()
            .expect("the soft key cannot be imported");
        assert!(
            matches!(e, crate::Error::Backend(BackendError::NoImport("soft"))),
            "{e}"
        );
        let e = BackendConfig::Pkcs11(pkcs11_config::Pkcs11Config {
            module: "/m.so".into(),
            token_label: "t".into(),
            key_label: "k".into(),
        })
        .import(&req(), &cb())
        .err()
        .expect("PKCS#11 keys are not imported");
        assert!(
            matches!(
                e,
                crate::Error::Backend(
                    BackendError::NoImport("pkcs11") | BackendError::Unavailable(_)
                )
            ),
            "{e}"
        );
    }

    #[cfg(feature = "yubikey")]
    #[test]
    fn backups_need_an_import_before_any_device_is_asked() {
        let with_backups = BackendConfig::Yubikey(yubikey_config::YubikeyConfig {
            serial: 1,
            slot: "9c".into(),
            backups: vec![2],
        });
        let e = with_backups
            .generate(&req(), &cb())
            .err()
            .expect("a device-generated key has no backups");
        assert!(e.to_string().contains("--import-to"), "{e}");
    }

    /// Built with `--no-default-features`: the stand-ins refuse through the same trait.
    #[cfg(not(any(feature = "yubikey", feature = "pkcs11")))]
    #[test]
    fn compiled_out_backends_refuse_every_call() {
        let yk = BackendConfig::Yubikey(yubikey_config::YubikeyConfig {
            serial: 1,
            slot: "9c".into(),
            backups: vec![],
        });
        let p11 = BackendConfig::Pkcs11(pkcs11_config::Pkcs11Config {
            module: "/m.so".into(),
            token_label: "t".into(),
            key_label: "k".into(),
        });
        for (config, name) in [(yk, "yubikey"), (p11, "pkcs11")] {
            let results = [
                config.open(Path::new("/ca"), &cb()).err(),
                config.generate(&req(), &cb()).err(),
                config.import(&req(), &cb()).err(),
            ];
            for e in results {
                let e = e.expect("refused");
                assert!(
                    matches!(e, crate::Error::Backend(BackendError::Unavailable(n)) if n == name),
                    "{e}"
                );
                assert!(e.to_string().contains("not available in this build"), "{e}");
            }
        }
    }
}
