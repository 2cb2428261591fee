//! The YubiKey PIV backend: the root key in a PIV slot, through the `yubikey` crate over PC/SC.
//!
//! The device is selected by serial (any other device is refused). Before anything else the
//! PIN retry counter is read: a blocked PIN is an error that names the PUK; with one try left
//! the operator must confirm before the PIN is sent. The slot's public key comes from GET
//! METADATA (firmware 5.3+), so checking it against `root.pem` costs no signature. Signing
//! verifies the PIN right before the signature (PIN policy `always`) and announces the touch.
//!
//! The device remembers the ledger's [`Anchor`] in a PIV data object of its own,
//! [`ANCHOR_OBJECT`] (`0x5F4B57`, "KW": a tag in the range the YubiKey leaves to applications,
//! outside the PIV standard's `5FC1xx` and Yubico's `5FFFxx` objects; readable without the PIN
//! with `yubico-piv-tool -a read-object --id 0x5f4b57`). Writing a PIV data object needs the
//! management key. When the device keeps a PIN-protected management key (Yubico's scheme:
//! `ykman piv access change-management-key --generate --protect`, the key in the PIN-protected
//! PRINTED object), it is read after the PIN, and the operator is asked for nothing more than
//! the PIN; this is the setup the runbook prescribes. Otherwise the management key is asked
//! through [`Callbacks::management_key`] when the device is opened, before anything is signed,
//! so a missing key stops the command before a signature rather than after it.
//! Nothing here opens a network connection: PC/SC is a local socket to `pcscd`.

use std::cell::RefCell;

use std::path::Path;

use yubikey::piv::{self, AlgorithmId, ManagementAlgorithmId, SlotId};
use yubikey::{Certificate, MgmKey, MgmType, PinPolicy, Serial, TouchPolicy, YubiKey};

use super::yubikey_config::{parse_slot, YubikeyConfig};
use super::{Anchor, BackendError, KeyBackend, KeyRequest, NewKey, Provider, Secret};
use crate::algo::{KeyAlgorithm, PublicKey};
use crate::callbacks::Callbacks;
use crate::eckey::EcKey;
use crate::policy;

/// The PIV data object holding the ledger anchor (see the module documentation).
pub const ANCHOR_OBJECT: u32 = 0x005f_4b57;

/// The YubiKey backend.
pub struct Yubikey;

impl Provider for Yubikey {
    type Config = YubikeyConfig;
    const REMEMBERS: bool = true;

    fn open<'cb>(
        cfg: &YubikeyConfig,
        _dir: &Path,
        cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn KeyBackend + 'cb>, crate::Error> {
        Ok(Box::new(YubikeyKey::open(cfg, cb)?))
    }

    fn generate<'cb>(
        cfg: &YubikeyConfig,
        req: &KeyRequest,
        cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn NewKey + 'cb>, crate::Error> {
        if !cfg.backups.is_empty() {
            return Err(BackendError::Device {
                device: device(cfg),
                detail: "a key generated on a device cannot be copied to backups; use --import-to with every device's serial".into(),
            }
            .into());
        }
        let key = YubikeyKey::generate(cfg, req.algorithm, req.pin_policy, req.touch_policy, cb)?;
        Ok(Box::new(NewOnDevice(key)))
    }

    fn import<'cb>(
        cfg: &YubikeyConfig,
        req: &KeyRequest,
        cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn NewKey + 'cb>, crate::Error> {
        let serials: Vec<u32> = std::iter::once(cfg.serial)
            .chain(cfg.backups.iter().copied())
            .collect();
        let key = YubikeyKey::generate_imported(
            cfg,
            &serials,
            req.algorithm,
            req.pin_policy,
            req.touch_policy,
            cb,
        )?;
        Ok(Box::new(NewOnDevice(key)))
    }
}

/// A root key in a YubiKey slot, with the device open and the PIN verified.
pub struct YubikeyKey<'cb> {
    yk: RefCell<YubiKey>,
    /// Backup devices opened at `init --import-to`: they receive the root certificate and the
    /// anchor too.
    mirrors: Vec<Mirror>,
    /// The device's attestation of a key it generated (DER), when it gives one.
    attestation: Option<Vec<u8>>,
    slot: SlotId,
    alg: AlgorithmId,
    public: PublicKey,
    pin: Secret,
    /// The management key, for writing the anchor (zeroized on drop by the crate).
    mgm: MgmKey,
    touch: bool,
    name: String,
    cb: &'cb dyn Callbacks,
}

/// A key `init` put into the slot of one or more devices. The yubikey crate cannot delete a
/// single PIV key, so when the CA is not created the slot's certificate is removed again and
/// the operator is told how to clear the key (the next init refuses a slot that holds one).
/// After a crash nothing runs here: the same advice comes with that refusal.
struct NewOnDevice<'cb>(YubikeyKey<'cb>);

impl NewKey for NewOnDevice<'_> {
    fn key(&self) -> &dyn KeyBackend {
        &self.0
    }

    fn abort(self: Box<Self>) {
        let k = &self.0;
        for yk in std::iter::once(&k.yk).chain(k.mirrors.iter().map(|m| &m.yk)) {
            // Best effort: an init that failed may have failed because the device went away.
            let _ = Certificate::delete(&mut yk.borrow_mut(), k.slot);
        }
        k.cb.notice(&format!(
            "init did not create the CA, but the key it generated stays in {}: {}",
            k.name,
            clear_slot_advice(k.slot)
        ));
    }
}

/// How to clear a slot that holds a key an init left behind.
fn clear_slot_advice(slot: SlotId) -> String {
    let slot = u8::from(slot);
    format!(
        "kiwi-signer cannot delete a single PIV key. Delete it with `ykman piv keys delete \
         {slot:02x}` (YubiKey firmware 5.7 or later) or, on a device used for nothing else, reset \
         its PIV application with `ykman piv reset` (this erases every PIV key and certificate \
         on it and restores the default PIN, PUK and management key: set them up again as the \
         runbook says); then run init again. Or use another --slot"
    )
}

/// A backup device holding the same key, open during `init --import-to`.
struct Mirror {
    yk: RefCell<YubiKey>,
    mgm: MgmKey,
    name: String,
}

impl std::fmt::Debug for YubikeyKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "YubikeyKey({})", self.name)
    }
}

fn device(cfg: &YubikeyConfig) -> String {
    format!("YubiKey {} slot {}", cfg.serial, cfg.slot)
}

fn pcsc_gone(cfg: &YubikeyConfig, what: &str, e: &yubikey::Error) -> BackendError {
    BackendError::Device {
        device: device(cfg),
        detail: format!("{what}: the device stopped answering ({e}); was it removed? Reconnect it and run the command again"),
    }
}

/// Serials of every YubiKey that answers, for the "wrong device" message.
fn present_serials() -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(mut ctx) = yubikey::reader::Context::open() {
        if let Ok(readers) = ctx.iter() {
            for r in readers {
                if let Ok(yk) = r.open() {
                    out.push(yk.serial().0);
                }
            }
        }
    }
    out
}

fn open_device(cfg: &YubikeyConfig) -> Result<(YubiKey, SlotId), BackendError> {
    let slot = SlotId::try_from(parse_slot(&cfg.slot).map_err(|d| BackendError::Device {
        device: device(cfg),
        detail: d,
    })?)
    .map_err(|e| BackendError::Device {
        device: device(cfg),
        detail: e.to_string(),
    })?;
    let yk = YubiKey::open_by_serial(Serial(cfg.serial)).map_err(|e| {
        let present = present_serials();
        BackendError::Device {
            device: device(cfg),
            detail: format!(
                "no YubiKey with serial {} is connected ({}; {e}); insert the CA's YubiKey",
                cfg.serial,
                if present.is_empty() {
                    "no YubiKey found".to_string()
                } else {
                    format!(
                        "found: {}",
                        present
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
        }
    })?;
    Ok((yk, slot))
}

/// Checks the retry counter, asks for the PIN (confirming first with one try left) and
/// verifies it.
fn verify_pin(
    yk: &mut YubiKey,
    cfg: &YubikeyConfig,
    cb: &dyn Callbacks,
) -> Result<Secret, BackendError> {
    let tries = yk
        .get_pin_retries()
        .map_err(|e| pcsc_gone(cfg, "reading the PIN counter", &e))?;
    let blocked = || {
        BackendError::PinBlocked {
        device: device(cfg),
        unblock: "unblock it with the PUK (yubico-piv-tool -a unblock-pin, or ykman piv access unblock-pin) at the table with the witness",
    }
    };
    if tries == 0 {
        return Err(blocked());
    }
    if tries == 1 {
        let ok = cb
            .confirm_last_pin_try(&format!(
                "{}: ONE PIN try left. A wrong PIN now blocks the device (the PUK unblocks it).\n",
                device(cfg)
            ))
            .map_err(|e| BackendError::Device {
                device: device(cfg),
                detail: e.to_string(),
            })?;
        if !ok {
            return Err(BackendError::Device {
                device: device(cfg),
                detail: "stopped before the last PIN try; nothing was sent to the device".into(),
            });
        }
    }
    let pin = cb
        .secret(&format!("PIN for YubiKey {}", cfg.serial))
        .map_err(|e| BackendError::Device {
            device: device(cfg),
            detail: e.to_string(),
        })?;
    match yk.verify_pin(pin.expose().as_bytes()) {
        Ok(()) => Ok(pin),
        Err(yubikey::Error::WrongPin { tries: 0 }) | Err(yubikey::Error::PinLocked) => {
            Err(blocked())
        }
        Err(yubikey::Error::WrongPin { tries }) => Err(BackendError::WrongPin {
            device: device(cfg),
            retries: Some(tries),
        }),
        Err(e) => Err(pcsc_gone(cfg, "verifying the PIN", &e)),
    }
}

fn slot_public(
    yk: &mut YubiKey,
    cfg: &YubikeyConfig,
    slot: SlotId,
) -> Result<Option<(PublicKey, AlgorithmId, bool)>, BackendError> {
    let meta = match piv::metadata(yk, slot) {
        Ok(m) => m,
        // An empty slot answers 6A82, which the crate reports as a generic error.
        Err(yubikey::Error::NotFound | yubikey::Error::GenericError) => return Ok(None),
        Err(yubikey::Error::NotSupported) => {
            return Err(BackendError::Device {
                device: device(cfg),
                detail: "the device cannot report the slot's public key (GET METADATA needs firmware 5.3 or later)".into(),
            });
        }
        Err(e) => return Err(pcsc_gone(cfg, "reading the slot", &e)),
    };
    let alg = match meta.algorithm {
        ManagementAlgorithmId::Asymmetric(a @ (AlgorithmId::EccP256 | AlgorithmId::EccP384)) => a,
        other => {
            return Err(BackendError::Device {
                device: device(cfg),
                detail: format!("the slot holds a {other:?} key, not ECDSA P-256 or P-384"),
            });
        }
    };
    let touch = !matches!(meta.policy, Some((_, TouchPolicy::Never)));
    let Some(spki) = meta.public else {
        return Ok(None);
    };
    let point = spki.subject_public_key.raw_bytes();
    let der = match alg {
        AlgorithmId::EccP256 => p256::PublicKey::from_sec1_bytes(point)
            .ok()
            .and_then(|k| p256::pkcs8::EncodePublicKey::to_public_key_der(&k).ok()),
        _ => p384::PublicKey::from_sec1_bytes(point)
            .ok()
            .and_then(|k| p384::pkcs8::EncodePublicKey::to_public_key_der(&k).ok()),
    }
    .ok_or_else(|| BackendError::Device {
        device: device(cfg),
        detail: "the slot's public key is not a valid point".into(),
    })?;
    let public = PublicKey::from_spki_der(der.as_bytes()).map_err(|e| BackendError::Device {
        device: device(cfg),
        detail: e.to_string(),
    })?;
    Ok(Some((public, alg, touch)))
}

impl<'cb> YubikeyKey<'cb> {
    /// Opens the device with `cfg.serial` (or, when it is absent, one of the recorded backup
    /// devices), verifies the PIN and reads the slot's public key.
    pub fn open(cfg: &YubikeyConfig, cb: &'cb dyn Callbacks) -> Result<Self, BackendError> {
        let mut opened = open_device(cfg);
        if opened.is_err() {
            for b in &cfg.backups {
                if let Ok(found) = open_device(&cfg.on(*b)) {
                    cb.notice(&format!(
                        "using backup YubiKey {b} (the primary {} is not connected)",
                        cfg.serial
                    ));
                    opened = Ok(found);
                    break;
                }
            }
        }
        let (mut yk, slot) = opened?;
        let cfg = &cfg.on(yk.serial().0);
        let pin = verify_pin(&mut yk, cfg, cb)?;
        let (public, alg, touch) =
            slot_public(&mut yk, cfg, slot)?.ok_or_else(|| BackendError::Device {
                device: device(cfg),
                detail: "the slot holds no key; is this the CA's YubiKey and slot?".into(),
            })?;
        // Asked (or read from the device) now, before anything is signed; checked right away
        // so a wrong key stops the command here.
        let mgm = management_key(&mut yk, cfg, cb)?;
        authenticate_with(&mut yk, cfg, mgm.clone())?;
        Ok(YubikeyKey {
            yk: RefCell::new(yk),
            mirrors: Vec::new(),
            attestation: None,
            slot,
            alg,
            public,
            pin,
            mgm,
            touch,
            name: device(cfg),
            cb,
        })
    }

    /// Generates the key in memory, imports it into the slot of every device in `serials`
    /// (two or more: the backups), checks that each then reports the same public key, and lets
    /// the in-memory key be zeroized. The first device signs; all receive the certificate.
    pub fn generate_imported(
        cfg: &YubikeyConfig,
        serials: &[u32],
        alg: KeyAlgorithm,
        pin_policy: policy::PinPolicy,
        touch_policy: policy::TouchPolicy,
        cb: &'cb dyn Callbacks,
    ) -> Result<Self, BackendError> {
        if serials.len() < 2 {
            return Err(BackendError::Device {
                device: device(cfg),
                detail: "--import-to needs two or more device serials (the key is imported into each as a backup)".into(),
            });
        }
        // The devices first: all present, PINs right, slots empty, before any key exists.
        let mut devices = Vec::new();
        for serial in serials {
            let c = cfg.on(*serial);
            let (mut yk, slot) = open_device(&c)?;
            let pin = verify_pin(&mut yk, &c, cb)?;
            if slot_public(&mut yk, &c, slot)?.is_some() {
                return Err(BackendError::Device {
                    device: device(&c),
                    detail: format!(
                        "the slot already holds a key; init never replaces a key. If an init \
                         that failed or was interrupted left it there: {}",
                        clear_slot_advice(slot)
                    ),
                });
            }
            devices.push((c, yk, slot, pin));
        }
        let key = EcKey::generate(alg);
        let expected = key.public_key().clone();
        let scalar = key.scalar();
        drop(key);
        let (algorithm, pin_p, touch_p) = yk_policies(alg, pin_policy, touch_policy);
        let mut opened = Vec::new();
        for (c, mut yk, slot, pin) in devices {
            // Authenticated here, not above: opening the next device selects the PIV applet
            // on every reader, which resets a management-key login.
            let mgm = management_key(&mut yk, &c, cb)?;
            authenticate_with(&mut yk, &c, mgm.clone())?;
            piv::import_ecc_key(&mut yk, slot, algorithm, &scalar, touch_p, pin_p)
                .map_err(|e| pcsc_gone(&c, "importing the key", &e))?;
            let (public, _, touch) =
                slot_public(&mut yk, &c, slot)?.ok_or_else(|| BackendError::Device {
                    device: device(&c),
                    detail: "the key was imported but the slot reports none".into(),
                })?;
            if public != expected {
                return Err(BackendError::Device {
                    device: device(&c),
                    detail: "after the import the slot holds a different public key; do not use this device".into(),
                });
            }
            opened.push((c, yk, slot, pin, touch, mgm));
        }
        drop(scalar);
        let mut it = opened.into_iter();
        let Some((c, yk, slot, pin, touch, mgm)) = it.next() else {
            unreachable!("two or more devices were checked above")
        };
        Ok(YubikeyKey {
            yk: RefCell::new(yk),
            mirrors: it
                .map(|(c, yk, _, _, _, mgm)| Mirror {
                    yk: RefCell::new(yk),
                    mgm,
                    name: device(&c),
                })
                .collect(),
            // An imported key has no attestation: the device did not generate it.
            attestation: None,
            slot,
            alg: algorithm,
            public: expected,
            pin,
            mgm,
            touch,
            name: device(&c),
            cb,
        })
    }

    /// Generates a new key in an empty slot (it never leaves the device), with the root
    /// policy's PIN and touch policies. The management key is asked through `cb`.
    pub fn generate(
        cfg: &YubikeyConfig,
        alg: KeyAlgorithm,
        pin_policy: policy::PinPolicy,
        touch_policy: policy::TouchPolicy,
        cb: &'cb dyn Callbacks,
    ) -> Result<Self, BackendError> {
        let (mut yk, slot) = open_device(cfg)?;
        let pin = verify_pin(&mut yk, cfg, cb)?;
        if slot_public(&mut yk, cfg, slot)?.is_some() {
            return Err(BackendError::Device {
                device: device(cfg),
                detail: format!(
                    "the slot already holds a key; init never replaces a key. If an init that \
                     failed or was interrupted left it there: {}",
                    clear_slot_advice(slot)
                ),
            });
        }
        let mgm = management_key(&mut yk, cfg, cb)?;
        authenticate_with(&mut yk, cfg, mgm.clone())?;
        let algorithm = match alg {
            KeyAlgorithm::EcdsaP256 => AlgorithmId::EccP256,
            KeyAlgorithm::EcdsaP384 => AlgorithmId::EccP384,
        };
        let (_, pin_policy, touch_policy) = yk_policies(alg, pin_policy, touch_policy);
        piv::generate(&mut yk, slot, algorithm, pin_policy, touch_policy)
            .map_err(|e| pcsc_gone(cfg, "generating the key", &e))?;
        // Devices that support it prove the key was generated on them; others say NotSupported.
        let attestation = piv::attest(&mut yk, slot).ok().map(|b| b.to_vec());
        let (public, alg, touch) =
            slot_public(&mut yk, cfg, slot)?.ok_or_else(|| BackendError::Device {
                device: device(cfg),
                detail: "the key was generated but the slot reports none".into(),
            })?;
        Ok(YubikeyKey {
            yk: RefCell::new(yk),
            mirrors: Vec::new(),
            attestation,
            slot,
            alg,
            public,
            pin,
            mgm,
            touch,
            name: device(cfg),
            cb,
        })
    }
}

/// The crate's algorithm and policy values for ours.
fn yk_policies(
    alg: KeyAlgorithm,
    pin: policy::PinPolicy,
    touch: policy::TouchPolicy,
) -> (AlgorithmId, PinPolicy, TouchPolicy) {
    (
        match alg {
            KeyAlgorithm::EcdsaP256 => AlgorithmId::EccP256,
            KeyAlgorithm::EcdsaP384 => AlgorithmId::EccP384,
        },
        match pin {
            policy::PinPolicy::Always => PinPolicy::Always,
            policy::PinPolicy::Once => PinPolicy::Once,
        },
        match touch {
            policy::TouchPolicy::Always => TouchPolicy::Always,
            policy::TouchPolicy::Cached => TouchPolicy::Cached,
            policy::TouchPolicy::Never => TouchPolicy::Never,
        },
    )
}

/// The device's management key: its PIN-protected one when it keeps one (the PIN must have
/// been verified), otherwise asked through `cb` (48 hex digits; never stored).
fn management_key(
    yk: &mut YubiKey,
    cfg: &YubikeyConfig,
    cb: &dyn Callbacks,
) -> Result<MgmKey, BackendError> {
    let protected = yk.config().is_ok_and(|c| c.mgm_type == MgmType::Protected);
    if protected {
        return MgmKey::get_protected(yk).map_err(|e| BackendError::Device {
            device: device(cfg),
            detail: format!(
                "the device says it keeps a PIN-protected management key but it cannot be read ({e}); \
                 set it again with `ykman piv access change-management-key --generate --protect`"
            ),
        });
    }
    let hexkey = cb
        .management_key(&format!(
            "Management key for YubiKey {} (48 hex digits)",
            cfg.serial
        ))
        .map_err(|e| BackendError::Device {
            device: device(cfg),
            detail: e.to_string(),
        })?;
    let bytes = zeroize::Zeroizing::new(hex::decode(hexkey.expose().trim()).map_err(|_| {
        BackendError::Device {
            device: device(cfg),
            detail: "the management key is not hex; give the 48 hex digits".into(),
        }
    })?);
    let key = MgmKey::from_bytes(bytes.as_slice()).map_err(|e| BackendError::Device {
        device: device(cfg),
        detail: format!("the management key is not a 3DES key ({e}); give the 48 hex digits"),
    })?;
    if bytes.as_slice()
        == [
            1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
        ]
    {
        cb.notice("warning: this YubiKey still has the factory management key; change it after the ceremony (ykman piv access change-management-key --generate --protect)");
    }
    Ok(key)
}

/// Authenticates with the management key.
fn authenticate_with(
    yk: &mut YubiKey,
    cfg: &YubikeyConfig,
    key: MgmKey,
) -> Result<(), BackendError> {
    yk.authenticate(key).map_err(|e| match e {
        yubikey::Error::AuthenticationError => BackendError::Device {
            device: device(cfg),
            detail: "the management key was refused; check it (nothing was changed on the device)"
                .into(),
        },
        other => pcsc_gone(cfg, "authenticating", &other),
    })
}

/// Reads the anchor object of `yk`.
fn read_anchor_of(yk: &mut YubiKey, name: &str) -> Result<Option<Anchor>, BackendError> {
    match yk.fetch_object(ANCHOR_OBJECT) {
        Ok(bytes) => Anchor::decode(&bytes)
            .map(Some)
            .map_err(|detail| BackendError::BadAnchor {
                device: name.to_string(),
                detail,
            }),
        Err(yubikey::Error::NotFound) => Ok(None),
        Err(e) => Err(BackendError::Device {
            device: name.to_string(),
            detail: format!("reading the ledger anchor failed ({e}); was the device removed? Reconnect it and run the command again"),
        }),
    }
}

/// Authenticates with `mgm` and writes `anchor` into the anchor object of `yk`.
fn write_anchor_to(
    yk: &mut YubiKey,
    mgm: &MgmKey,
    name: &str,
    anchor: &Anchor,
) -> Result<(), BackendError> {
    let failed = |e: yubikey::Error| {
        BackendError::Device {
        device: name.to_string(),
        detail: format!(
            "storing the ledger head on the device failed ({e}); the ledger is complete, and the \
             next command brings the device up to date. Reconnect the device and run `kiwi-signer crl` \
             or the next ceremony step"
        ),
    }
    };
    yk.authenticate(mgm.clone()).map_err(failed)?;
    let mut bytes = anchor.encode();
    yk.save_object(ANCHOR_OBJECT, &mut bytes).map_err(failed)
}

impl KeyBackend for YubikeyKey<'_> {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, BackendError> {
        let fail = |detail: String| BackendError::SignFailed {
            backend: self.name.clone(),
            detail,
        };
        let digest = self.public.algorithm().digest(msg);
        let mut yk = self.yk.borrow_mut();
        // PIN policy `always` wants the PIN right before each signature.
        yk.verify_pin(self.pin.expose().as_bytes())
            .map_err(|e| fail(format!("{e}; was the device removed?")))?;
        if self.touch {
            self.cb
                .notice(&format!("Touch the {} now (it blinks)", self.name));
        }
        let sig = piv::sign_data(&mut yk, &digest, self.alg, self.slot)
            .map_err(|e| fail(format!("{e}; was the device removed, or the touch missed? Nothing was signed or recorded: reconnect the device and run the command again")))?;
        Ok(sig.to_vec())
    }

    fn attestation(&self) -> Option<Vec<u8>> {
        self.attestation.clone()
    }

    fn remembers(&self) -> bool {
        <Yubikey as Provider>::REMEMBERS
    }

    fn read_anchor(&self) -> Result<Option<Anchor>, BackendError> {
        read_anchor_of(&mut self.yk.borrow_mut(), &self.name)
    }

    fn write_anchor(&self, anchor: &Anchor) -> Result<(), BackendError> {
        write_anchor_to(&mut self.yk.borrow_mut(), &self.mgm, &self.name, anchor)?;
        for m in &self.mirrors {
            write_anchor_to(&mut m.yk.borrow_mut(), &m.mgm, &m.name, anchor)?;
        }
        Ok(())
    }

    fn store_certificate(&self, der: &[u8]) -> Result<(), BackendError> {
        let cert = Certificate::from_bytes(der.to_vec()).map_err(|e| BackendError::Device {
            device: self.name.clone(),
            detail: format!("cannot wrap the root certificate ({e})"),
        })?;
        for yk in std::iter::once(&self.yk).chain(self.mirrors.iter().map(|m| &m.yk)) {
            let mut yk = yk.borrow_mut();
            let serial = yk.serial().0;
            cert.write(
                &mut yk,
                self.slot,
                yubikey::certificate::CertInfo::Uncompressed,
            )
            .map_err(|e| BackendError::Device {
                device: format!("YubiKey {serial}"),
                detail: format!("writing the root certificate into the slot failed ({e})"),
            })?;
        }
        Ok(())
    }
}
