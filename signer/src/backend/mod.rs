//! Root key backends behind one small trait.
//!
//! The root key lives in a YubiKey PIV slot at real ceremonies; PKCS#11 tokens and an
//! age-encrypted software key (for rehearsals) are the other backends. The issuance pipeline
//! sees only [`KeyBackend`]: a public key and a `sign` that returns a DER ECDSA signature.

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

use zeroize::Zeroizing;

use crate::algo::{KeyAlgorithm, PublicKey};

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

/// Which backend holds the root key, as named on the command line and in `ca.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Age-encrypted PKCS#8 file (rehearsals, tests).
    Soft,
    /// YubiKey PIV slot.
    Yubikey,
    /// PKCS#11 token.
    Pkcs11,
}

impl BackendKind {
    /// Name as written in `ca.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Soft => "soft",
            BackendKind::Yubikey => "yubikey",
            BackendKind::Pkcs11 => "pkcs11",
        }
    }
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "soft" => Ok(BackendKind::Soft),
            "yubikey" => Ok(BackendKind::Yubikey),
            "pkcs11" => Ok(BackendKind::Pkcs11),
            _ => Err(format!(
                "unknown backend `{s}`; use soft, yubikey or pkcs11"
            )),
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
    /// The backend is not built into this binary yet.
    #[error("the {0} backend is not available in this build of kiwi-signer; use --backend soft for rehearsals")]
    Unavailable(&'static str),
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
