//! The PKCS#11 backend: the root key on a token (YubiHSM, Nitrokey, ykcs11, SoftHSM2 for
//! rehearsals), through `cryptoki`.
//!
//! `init` generates the key pair on the token, private half sensitive and non-extractable.
//! Signing hashes the TBS here (SHA-256 for P-256, SHA-384 for P-384), asks the token for a raw
//! `CKM_ECDSA` signature (r||s) and converts it to DER. The module is loaded from a local path;
//! nothing here opens a network connection.
//!
//! The token remembers the ledger's [`Anchor`] in a private data object (`CKO_DATA`,
//! `CKA_TOKEN` and `CKA_PRIVATE` true, so only a logged-in user reads or changes it), labelled
//! after the key and numbered: `<key label>.anchor.<generation>`, application `kiwi-pki`.
//! Tokens need not let a data object's value change (SoftHSM2 refuses), so an update creates
//! the next generation and then destroys the older ones: a crash in between leaves two, and
//! the higher generation is the anchor. At no moment is there none.

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11 as Cryptoki};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use sha2::Digest as _;

use super::pkcs11_config::Pkcs11Config;
use super::{Anchor, BackendError, KeyBackend, KeyRequest, NewKey, Provider, Secret};
use crate::algo::{KeyAlgorithm, PublicKey};
use crate::callbacks::Callbacks;

/// CKA_APPLICATION of the anchor object.
const ANCHOR_APPLICATION: &[u8] = b"kiwi-pki";

/// The PKCS#11 backend.
pub struct Pkcs11;

fn ask_pin(cfg: &Pkcs11Config, cb: &dyn Callbacks) -> Result<Secret, crate::Error> {
    cb.secret(&format!("PIN for PKCS#11 token `{}`", cfg.token_label))
}

impl Provider for Pkcs11 {
    type Config = Pkcs11Config;
    const REMEMBERS: bool = true;

    fn open<'cb>(
        cfg: &Pkcs11Config,
        _dir: &std::path::Path,
        cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn KeyBackend + 'cb>, crate::Error> {
        let pin = ask_pin(cfg, cb)?;
        Ok(Box::new(Pkcs11Key::open(cfg, &pin)?))
    }

    fn generate<'cb>(
        cfg: &Pkcs11Config,
        req: &KeyRequest,
        cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn NewKey + 'cb>, crate::Error> {
        let pin = ask_pin(cfg, cb)?;
        Ok(Box::new(NewPkcs11Key(Pkcs11Key::generate(
            cfg,
            req.algorithm,
            &pin,
        )?)))
    }

    fn import<'cb>(
        _cfg: &Pkcs11Config,
        _req: &KeyRequest,
        _cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn NewKey + 'cb>, crate::Error> {
        Err(BackendError::NoImport("pkcs11").into())
    }
}

/// A key pair `init` generated on the token: deleted again when the CA is not created.
struct NewPkcs11Key(Pkcs11Key);

impl NewKey for NewPkcs11Key {
    fn key(&self) -> &dyn KeyBackend {
        &self.0
    }

    fn abort(self: Box<Self>) {
        self.0.destroy();
    }
}

/// DER OIDs of the curves, as CKA_EC_PARAMS holds them.
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// A root key on a PKCS#11 token, with a logged-in session.
pub struct Pkcs11Key {
    // Field order matters: the session closes before the library is finalized.
    session: Session,
    private: ObjectHandle,
    public_obj: ObjectHandle,
    public: PublicKey,
    name: String,
    cfg: Pkcs11Config,
    _ctx: Cryptoki,
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pkcs11Key({})", self.name)
    }
}

/// How the key is named in messages.
fn key_name(cfg: &Pkcs11Config) -> String {
    format!(
        "PKCS#11 key `{}` on token `{}`",
        cfg.key_label, cfg.token_label
    )
}

fn device_err(cfg: &Pkcs11Config, detail: String) -> BackendError {
    BackendError::Device {
        device: format!("PKCS#11 token `{}`", cfg.token_label),
        detail,
    }
}

fn ck<'a>(cfg: &'a Pkcs11Config, what: &str) -> impl Fn(CkError) -> BackendError + 'a {
    let what = what.to_string();
    move |e| match e {
        CkError::Pkcs11(RvError::PinIncorrect, _) => BackendError::WrongPin {
            device: format!("PKCS#11 token `{}`", cfg.token_label),
            retries: None,
        },
        CkError::Pkcs11(RvError::PinLocked, _) => BackendError::PinBlocked {
            device: format!("PKCS#11 token `{}`", cfg.token_label),
            unblock: "unblock it with the token's SO PIN (e.g. softhsm2-util / the vendor's tool)",
        },
        CkError::Pkcs11(
            RvError::DeviceRemoved
            | RvError::TokenNotPresent
            | RvError::DeviceError
            | RvError::SessionHandleInvalid,
            _,
        ) => device_err(
            cfg,
            format!("{what}: the token is gone ({e}); reconnect it and run the command again"),
        ),
        other => device_err(cfg, format!("{what}: {other}")),
    }
}

fn login(cfg: &Pkcs11Config, pin: &Secret) -> Result<(Cryptoki, Session), BackendError> {
    let ctx = Cryptoki::new(&cfg.module).map_err(|e| {
        device_err(
            cfg,
            format!(
                "cannot load the PKCS#11 module {} ({e}); check --module",
                cfg.module.display()
            ),
        )
    })?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(ck(cfg, "initializing the module"))?;
    let slots = ctx
        .get_slots_with_token()
        .map_err(ck(cfg, "listing tokens"))?;
    let mut labels = Vec::new();
    let mut found = None;
    for s in slots {
        let info = ctx
            .get_token_info(s)
            .map_err(ck(cfg, "reading token info"))?;
        let label = info.label().trim().to_string();
        if label == cfg.token_label && found.is_none() {
            found = Some(s);
        }
        labels.push(label);
    }
    let slot = found.ok_or_else(|| {
        device_err(
            cfg,
            format!(
                "no token labelled `{}` (tokens present: {}); insert the right token or fix --token-label",
                cfg.token_label,
                if labels.is_empty() { "none".into() } else { labels.join(", ") }
            ),
        )
    })?;
    let session = ctx
        .open_rw_session(slot)
        .map_err(ck(cfg, "opening a session"))?;
    let pin = AuthPin::from(pin.expose().to_string());
    session
        .login(UserType::User, Some(&pin))
        .map_err(ck(cfg, "logging in"))?;
    Ok((ctx, session))
}

fn find(
    session: &Session,
    cfg: &Pkcs11Config,
    class: ObjectClass,
) -> Result<Vec<ObjectHandle>, BackendError> {
    session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(cfg.key_label.as_bytes().to_vec()),
        ])
        .map_err(ck(cfg, "searching for the key"))
}

/// The uncompressed point from CKA_EC_POINT (DER OCTET STRING per the standard; some tokens
/// return the raw point).
fn ec_point(raw: &[u8], alg: KeyAlgorithm) -> Option<Vec<u8>> {
    let len = match alg {
        KeyAlgorithm::EcdsaP256 => 65,
        KeyAlgorithm::EcdsaP384 => 97,
    };
    if raw.len() == len && raw[0] == 0x04 {
        return Some(raw.to_vec());
    }
    if raw.len() == len + 2 && raw[0] == 0x04 && usize::from(raw[1]) == len {
        return Some(raw[2..].to_vec());
    }
    None
}

fn public_key(
    session: &Session,
    cfg: &Pkcs11Config,
    obj: ObjectHandle,
) -> Result<PublicKey, BackendError> {
    let attrs = session
        .get_attributes(obj, &[AttributeType::EcParams, AttributeType::EcPoint])
        .map_err(ck(cfg, "reading the public key"))?;
    let (mut params, mut point) = (None, None);
    for a in attrs {
        match a {
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    let bad = |d: &str| {
        device_err(
            cfg,
            format!(
                "the key `{}` {d}; it is not a root key of ours",
                cfg.key_label
            ),
        )
    };
    let alg = match params.as_deref() {
        Some(P256_OID) => KeyAlgorithm::EcdsaP256,
        Some(P384_OID) => KeyAlgorithm::EcdsaP384,
        _ => return Err(bad("is not on P-256 or P-384")),
    };
    let point = point
        .as_deref()
        .and_then(|p| ec_point(p, alg))
        .ok_or_else(|| bad("has an unreadable EC point"))?;
    let spki = match alg {
        KeyAlgorithm::EcdsaP256 => p256::PublicKey::from_sec1_bytes(&point)
            .ok()
            .and_then(|k| p256::pkcs8::EncodePublicKey::to_public_key_der(&k).ok()),
        KeyAlgorithm::EcdsaP384 => p384::PublicKey::from_sec1_bytes(&point)
            .ok()
            .and_then(|k| p384::pkcs8::EncodePublicKey::to_public_key_der(&k).ok()),
    }
    .ok_or_else(|| bad("has an invalid EC point"))?;
    PublicKey::from_spki_der(spki.as_bytes()).map_err(|e| bad(&e.to_string()))
}

impl Pkcs11Key {
    /// Logs in and finds the existing key pair labelled `cfg.key_label`.
    pub fn open(cfg: &Pkcs11Config, pin: &Secret) -> Result<Self, BackendError> {
        let (ctx, session) = login(cfg, pin)?;
        let privs = find(&session, cfg, ObjectClass::PRIVATE_KEY)?;
        let pubs = find(&session, cfg, ObjectClass::PUBLIC_KEY)?;
        let (private, public_obj) = match (privs.as_slice(), pubs.as_slice()) {
            ([p], [q]) => (*p, *q),
            ([], _) | (_, []) => {
                return Err(device_err(
                    cfg,
                    format!(
                        "no key pair labelled `{}` on the token; is this the CA's token?",
                        cfg.key_label
                    ),
                ));
            }
            _ => {
                return Err(device_err(
                    cfg,
                    format!(
                        "more than one key labelled `{}`; the label must name one key pair",
                        cfg.key_label
                    ),
                ));
            }
        };
        let public = public_key(&session, cfg, public_obj)?;
        Ok(Pkcs11Key {
            session,
            private,
            public_obj,
            public,
            name: key_name(cfg),
            cfg: cfg.clone(),
            _ctx: ctx,
        })
    }

    /// Generates a new key pair on the token (private key sensitive, never extractable).
    /// Refuses a label that is already in use.
    pub fn generate(
        cfg: &Pkcs11Config,
        alg: KeyAlgorithm,
        pin: &Secret,
    ) -> Result<Self, BackendError> {
        let (ctx, session) = login(cfg, pin)?;
        if !find(&session, cfg, ObjectClass::PRIVATE_KEY)?.is_empty()
            || !find(&session, cfg, ObjectClass::PUBLIC_KEY)?.is_empty()
        {
            return Err(device_err(
                cfg,
                format!(
                    "the token already holds a key labelled `{}`; init never reuses or replaces a key, choose another --key-label",
                    cfg.key_label
                ),
            ));
        }
        let oid = match alg {
            KeyAlgorithm::EcdsaP256 => P256_OID,
            KeyAlgorithm::EcdsaP384 => P384_OID,
        };
        let label = cfg.key_label.as_bytes().to_vec();
        let id = sha2::Sha256::digest(label.as_slice())[..8].to_vec();
        let public_t = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::KeyType(KeyType::EC),
            Attribute::EcParams(oid.to_vec()),
            Attribute::Label(label.clone()),
            Attribute::Id(id.clone()),
        ];
        let private_t = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::KeyType(KeyType::EC),
            Attribute::Label(label),
            Attribute::Id(id),
        ];
        let (public_obj, private) = session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public_t, &private_t)
            .map_err(ck(cfg, "generating the key"))?;
        let public = public_key(&session, cfg, public_obj)?;
        Ok(Pkcs11Key {
            session,
            private,
            public_obj,
            public,
            name: key_name(cfg),
            cfg: cfg.clone(),
            _ctx: ctx,
        })
    }

    /// Deletes the key pair from the token: undoes a `generate` whose `init` failed later.
    pub fn destroy(self) {
        let _ = self.session.destroy_object(self.private);
        let _ = self.session.destroy_object(self.public_obj);
    }

    /// The anchor objects' label prefix: the key's label, then `.anchor.`.
    fn anchor_prefix(&self) -> String {
        format!("{}.anchor.", self.cfg.key_label)
    }

    /// This key's anchor objects with their generations, oldest first.
    fn anchor_objects(&self) -> Result<Vec<(u64, ObjectHandle)>, BackendError> {
        let found = self
            .session
            .find_objects(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Application(ANCHOR_APPLICATION.to_vec()),
            ])
            .map_err(ck(&self.cfg, "searching for the ledger anchor"))?;
        let prefix = self.anchor_prefix();
        let mut out = Vec::new();
        for obj in found {
            let attrs = self
                .session
                .get_attributes(obj, &[AttributeType::Label])
                .map_err(ck(&self.cfg, "reading the ledger anchor's label"))?;
            let generation = attrs.into_iter().find_map(|a| match a {
                Attribute::Label(l) => String::from_utf8(l)
                    .ok()?
                    .strip_prefix(&prefix)?
                    .parse::<u64>()
                    .ok(),
                _ => None,
            });
            if let Some(g) = generation {
                out.push((g, obj));
            }
        }
        out.sort_by_key(|(g, _)| *g);
        Ok(out)
    }
}

impl KeyBackend for Pkcs11Key {
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
        let rs = self
            .session
            .sign(&Mechanism::Ecdsa, self.private, &digest)
            .map_err(|e| fail(format!("{e}; is the token still connected?")))?;
        let der = match self.public.algorithm() {
            KeyAlgorithm::EcdsaP256 => {
                p256::ecdsa::Signature::from_slice(&rs).map(|s| s.to_der().as_bytes().to_vec())
            }
            KeyAlgorithm::EcdsaP384 => {
                p384::ecdsa::Signature::from_slice(&rs).map(|s| s.to_der().as_bytes().to_vec())
            }
        };
        der.map_err(|_| {
            fail(format!(
                "the token returned a {}-byte signature, not r||s",
                rs.len()
            ))
        })
    }

    fn remembers(&self) -> bool {
        <Pkcs11 as Provider>::REMEMBERS
    }

    fn read_anchor(&self) -> Result<Option<Anchor>, BackendError> {
        let Some(&(_, obj)) = self.anchor_objects()?.last() else {
            return Ok(None);
        };
        let attrs = self
            .session
            .get_attributes(obj, &[AttributeType::Value])
            .map_err(ck(&self.cfg, "reading the ledger anchor"))?;
        let value = attrs.into_iter().find_map(|a| match a {
            Attribute::Value(v) => Some(v),
            _ => None,
        });
        let bad = |detail: String| BackendError::BadAnchor {
            device: self.name.clone(),
            detail,
        };
        let value = value.ok_or_else(|| bad("the object has no value".into()))?;
        Anchor::decode(&value).map(Some).map_err(bad)
    }

    fn write_anchor(&self, anchor: &Anchor) -> Result<(), BackendError> {
        let older = self.anchor_objects()?;
        let generation = older.last().map_or(1, |(g, _)| g + 1);
        self.session
            .create_object(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Label(format!("{}{generation}", self.anchor_prefix()).into_bytes()),
                Attribute::Application(ANCHOR_APPLICATION.to_vec()),
                Attribute::Value(anchor.encode()),
            ])
            .map_err(ck(&self.cfg, "storing the ledger anchor"))?;
        // The new generation is on the token; a failure to remove an older one changes
        // nothing that is read (the highest generation wins) and is tidied up next time.
        for (_, obj) in older {
            let _ = self.session.destroy_object(obj);
        }
        Ok(())
    }
}
