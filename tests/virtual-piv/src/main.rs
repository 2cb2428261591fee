//! A software PIV card for tests: it connects to `vpcd` (the vsmartcard reader driver of a real
//! `pcscd`) and answers the APDUs the `yubikey` crate and `yubico-piv-tool` send, so the signer's
//! YubiKey backend is tested over the real PC/SC stack with no mock of the crate.
//!
//! What it implements (a YubiKey 5.4 as far as PIV goes): SELECT by the PIV AID prefix, GET
//! VERSION, GET SERIAL, VERIFY with a retry counter that blocks, GENERAL AUTHENTICATE for the
//! 3DES management key and ECDSA P-256/P-384 signing, GENERATE ASYMMETRIC, IMPORT, GET METADATA
//! (algorithm, policies, origin, public key), GET/PUT DATA with command chaining (PUT DATA needs
//! the management key; GET DATA of the objects the PIV standard reads only after the PIN, such
//! as PRINTED where a PIN-protected management key lives, needs the PIN), SET MANAGEMENT KEY
//! (3DES), GET RESPONSE.
//! State (keys, objects, PIN counter) is kept in a JSON file when `--state` is given, so a test
//! can stop the card ("remove" it) and start it again. This is test equipment: its keys are
//! stored in the clear and it must never hold a real key.
//!
//! `--remove-when-signing` makes the card vanish (the process exits without answering) when it
//! is asked to sign with a slot key: a device pulled out at the moment of signing.
//!
//! Usage: `virtual-piv [--serial N] [--state FILE] [--port P] [--remove-when-signing]`

use std::collections::BTreeMap;
use std::path::PathBuf;

use des::cipher::{BlockEncrypt, KeyInit};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

const PIV_AID_PREFIX: [u8; 5] = [0xa0, 0x00, 0x00, 0x03, 0x08];
const DEFAULT_MGM: [u8; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
];
const ALG_P256: u8 = 0x11;
const ALG_P384: u8 = 0x14;
const PIN_TRIES: u8 = 3;

const SW_OK: u16 = 0x9000;
const SW_SECURITY: u16 = 0x6982;
const SW_BLOCKED: u16 = 0x6983;
const SW_WRONG_DATA: u16 = 0x6a80;
const SW_NOT_FOUND: u16 = 0x6a82;
const SW_BAD_P1P2: u16 = 0x6a86;
const SW_INS: u16 = 0x6d00;

#[derive(Serialize, Deserialize, Clone)]
struct SlotKey {
    alg: u8,
    scalar: String,
    pin_policy: u8,
    touch_policy: u8,
    origin: u8,
}

#[derive(Serialize, Deserialize)]
struct Persisted {
    serial: u32,
    pin: String,
    pin_tries: u8,
    slots: BTreeMap<u8, SlotKey>,
    objects: BTreeMap<String, String>,
    /// The 3DES management key in hex; the factory key when absent.
    #[serde(default)]
    mgm: Option<String>,
}

/// Objects whose GET DATA needs the PIN (PIV standard: fingerprints, facial image, PRINTED,
/// iris images).
const PIN_READ_OBJECTS: [[u8; 3]; 4] = [
    [0x5f, 0xc1, 0x03],
    [0x5f, 0xc1, 0x08],
    [0x5f, 0xc1, 0x09],
    [0x5f, 0xc1, 0x21],
];

struct Card {
    state: Persisted,
    path: Option<PathBuf>,
    pin_verified: bool,
    mgm_authenticated: bool,
    witness: Option<[u8; 8]>,
    chain: Vec<u8>,
    pending: Vec<u8>,
    /// Exit, unanswered, when asked to sign with a slot key.
    remove_when_signing: bool,
}

fn tlv(tag: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = tag.to_vec();
    let n = value.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend([0x81, n as u8]);
    } else {
        out.extend([0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(value);
    out
}

/// Parses one BER-TLV with a one-byte tag (or 0x7F49-style two-byte tag); returns
/// (tag, value, rest).
fn parse_tlv(data: &[u8]) -> Option<(u16, &[u8], &[u8])> {
    let (tag, mut i) = if data.first()? & 0x1f == 0x1f {
        (u16::from_be_bytes([data[0], *data.get(1)?]), 2)
    } else {
        (u16::from(data[0]), 1)
    };
    let first = *data.get(i)?;
    i += 1;
    let len = match first {
        n if n < 0x80 => usize::from(n),
        0x81 => {
            i += 1;
            usize::from(*data.get(i - 1)?)
        }
        0x82 => {
            i += 2;
            (usize::from(*data.get(i - 2)?) << 8) | usize::from(*data.get(i - 1)?)
        }
        _ => return None,
    };
    let value = data.get(i..i + len)?;
    Some((tag, value, &data[i + len..]))
}

fn tlvs(mut data: &[u8]) -> Option<BTreeMap<u16, Vec<u8>>> {
    let mut m = BTreeMap::new();
    while !data.is_empty() {
        let (t, v, rest) = parse_tlv(data)?;
        m.insert(t, v.to_vec());
        data = rest;
    }
    Some(m)
}

fn sw(code: u16) -> Vec<u8> {
    code.to_be_bytes().to_vec()
}

impl SlotKey {
    fn point(&self) -> Vec<u8> {
        let bytes = hex::decode(&self.scalar).unwrap_or_default();
        match self.alg {
            ALG_P256 => p256::SecretKey::from_slice(&bytes)
                .map(|k| {
                    p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                        &k.public_key(),
                        false,
                    )
                    .as_bytes()
                    .to_vec()
                })
                .unwrap_or_default(),
            _ => p384::SecretKey::from_slice(&bytes)
                .map(|k| {
                    p384::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                        &k.public_key(),
                        false,
                    )
                    .as_bytes()
                    .to_vec()
                })
                .unwrap_or_default(),
        }
    }

    fn sign(&self, digest: &[u8]) -> Option<Vec<u8>> {
        use ecdsa::signature::hazmat::PrehashSigner;
        let bytes = hex::decode(&self.scalar).ok()?;
        match self.alg {
            ALG_P256 => {
                let k = p256::ecdsa::SigningKey::from_slice(&bytes).ok()?;
                let s: p256::ecdsa::Signature = k.sign_prehash(digest).ok()?;
                Some(s.to_der().as_bytes().to_vec())
            }
            _ => {
                let k = p384::ecdsa::SigningKey::from_slice(&bytes).ok()?;
                let s: p384::ecdsa::Signature = k.sign_prehash(digest).ok()?;
                Some(s.to_der().as_bytes().to_vec())
            }
        }
    }
}

impl Card {
    fn save(&self) {
        if let Some(p) = &self.path {
            if let Ok(text) = serde_json::to_string_pretty(&self.state) {
                let tmp = p.with_extension("tmp");
                if std::fs::write(&tmp, text).is_ok() {
                    let _ = std::fs::rename(tmp, p);
                }
            }
        }
    }

    fn mgm(&self) -> des::TdesEde3 {
        let key = self
            .state
            .mgm
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .filter(|k| k.len() == 24)
            .unwrap_or_else(|| DEFAULT_MGM.to_vec());
        des::TdesEde3::new_from_slice(&key).unwrap_or_else(|_| unreachable!("24-byte key"))
    }

    /// SET MANAGEMENT KEY: `03 9B 18 <key>` after management-key authentication.
    fn set_mgm(&mut self, p1: u8, data: &[u8]) -> Vec<u8> {
        if !self.mgm_authenticated {
            return sw(SW_SECURITY);
        }
        if p1 != 0xff {
            return sw(SW_BAD_P1P2);
        }
        match data {
            [0x03, 0x9b, 0x18, key @ ..] if key.len() == 24 => {
                self.state.mgm = Some(hex::encode(key));
                self.save();
                sw(SW_OK)
            }
            _ => sw(SW_WRONG_DATA),
        }
    }

    /// Splits a long response into 256-byte pieces with 61xx, as a real card does.
    fn respond(&mut self, mut data: Vec<u8>, code: u16) -> Vec<u8> {
        if data.len() > 256 {
            self.pending = data.split_off(256);
            let left = self.pending.len().min(0xff) as u8;
            data.extend([0x61, left]);
            return data;
        }
        data.extend(sw(code));
        data
    }

    fn execute_apdu(&mut self, apdu: &[u8]) -> Vec<u8> {
        if apdu.len() < 4 {
            return sw(0x6700);
        }
        let (cla, ins, p1, p2) = (apdu[0], apdu[1], apdu[2], apdu[3]);
        let body: &[u8] = if apdu.len() > 5 {
            let lc = usize::from(apdu[4]);
            apdu.get(5..5 + lc).unwrap_or(&[])
        } else {
            &[]
        };
        // Command chaining: collect until the last block.
        if cla & 0x10 != 0 {
            self.chain.extend_from_slice(body);
            return sw(SW_OK);
        }
        let mut data = std::mem::take(&mut self.chain);
        data.extend_from_slice(body);
        if ins != 0xc0 {
            self.pending.clear();
        }
        match ins {
            0xa4 => {
                if p1 == 0x04 && data.starts_with(&PIV_AID_PREFIX) {
                    self.pin_verified = false;
                    self.mgm_authenticated = false;
                    let aid = tlv(&[0x4f], &[0x00, 0x00, 0x10, 0x00, 0x01, 0x00]);
                    self.respond(tlv(&[0x61], &aid), SW_OK)
                } else {
                    sw(SW_NOT_FOUND)
                }
            }
            0xc0 => {
                let rest = std::mem::take(&mut self.pending);
                self.respond(rest, SW_OK)
            }
            0xfd => self.respond(vec![5, 4, 3], SW_OK),
            0xf8 => self.respond(self.state.serial.to_be_bytes().to_vec(), SW_OK),
            0x20 => self.verify(p2, &data),
            0x87 => self.general_authenticate(p1, p2, &data),
            0x47 => self.generate(p2, &data),
            0xfe => self.import(p1, p2, &data),
            0xf7 => self.metadata(p2),
            0xcb => self.get_data(&data),
            0xdb => self.put_data(&data),
            0xff => self.set_mgm(p1, &data),
            _ => sw(SW_INS),
        }
    }

    fn verify(&mut self, p2: u8, data: &[u8]) -> Vec<u8> {
        if p2 != 0x80 {
            return sw(SW_NOT_FOUND);
        }
        if self.state.pin_tries == 0 {
            return sw(SW_BLOCKED);
        }
        if data.is_empty() {
            return if self.pin_verified {
                sw(SW_OK)
            } else {
                sw(0x63c0 | u16::from(self.state.pin_tries))
            };
        }
        let given: Vec<u8> = data.iter().copied().take_while(|b| *b != 0xff).collect();
        if given == self.state.pin.as_bytes() {
            self.state.pin_tries = PIN_TRIES;
            self.pin_verified = true;
            self.save();
            sw(SW_OK)
        } else {
            self.state.pin_tries -= 1;
            self.pin_verified = false;
            self.save();
            if self.state.pin_tries == 0 {
                sw(SW_BLOCKED)
            } else {
                sw(0x63c0 | u16::from(self.state.pin_tries))
            }
        }
    }

    fn general_authenticate(&mut self, p1: u8, p2: u8, data: &[u8]) -> Vec<u8> {
        let Some((0x7c, inner, _)) = parse_tlv(data) else {
            return sw(SW_WRONG_DATA);
        };
        let Some(fields) = tlvs(inner) else {
            return sw(SW_WRONG_DATA);
        };
        if p1 == 0x03 && p2 == 0x9b {
            let cipher = self.mgm();
            if fields.get(&0x80).is_some_and(Vec::is_empty) {
                // Step 1: a witness, encrypted under the management key.
                let mut w = [0u8; 8];
                OsRng.fill_bytes(&mut w);
                self.witness = Some(w);
                let mut block: des::cipher::Block<des::TdesEde3> = w.into();
                cipher.encrypt_block(&mut block);
                return self.respond(tlv(&[0x7c], &tlv(&[0x80], &block)), SW_OK);
            }
            // Step 2: the decrypted witness back, and the host's challenge.
            let (Some(w), Some(answer), Some(challenge)) =
                (self.witness.take(), fields.get(&0x80), fields.get(&0x81))
            else {
                return sw(SW_WRONG_DATA);
            };
            if answer.as_slice() != w {
                self.mgm_authenticated = false;
                return sw(SW_SECURITY);
            }
            let Ok(challenge) = <[u8; 8]>::try_from(challenge.as_slice()) else {
                return sw(SW_WRONG_DATA);
            };
            let mut block: des::cipher::Block<des::TdesEde3> = challenge.into();
            cipher.encrypt_block(&mut block);
            self.mgm_authenticated = true;
            return self.respond(tlv(&[0x7c], &tlv(&[0x82], &block)), SW_OK);
        }
        // Signing with a slot key.
        if self.remove_when_signing {
            eprintln!("virtual-piv: removed at the moment of signing (--remove-when-signing)");
            std::process::exit(0);
        }
        let Some(key) = self.state.slots.get(&p2).cloned() else {
            return sw(SW_NOT_FOUND);
        };
        if key.alg != p1 {
            return sw(SW_WRONG_DATA);
        }
        if key.pin_policy != 1 && !self.pin_verified {
            return sw(SW_SECURITY);
        }
        let Some(digest) = fields.get(&0x81) else {
            return sw(SW_WRONG_DATA);
        };
        let Some(sig) = key.sign(digest) else {
            return sw(SW_WRONG_DATA);
        };
        if key.pin_policy == 3 {
            // PIN policy "always": the next signature needs the PIN again.
            self.pin_verified = false;
        }
        self.respond(tlv(&[0x7c], &tlv(&[0x82], &sig)), SW_OK)
    }

    fn store_key(
        &mut self,
        slot: u8,
        alg: u8,
        scalar: Vec<u8>,
        policies: &BTreeMap<u16, Vec<u8>>,
        origin: u8,
    ) {
        let pin_policy = policies
            .get(&0xaa)
            .and_then(|v| v.first().copied())
            .unwrap_or(2);
        let touch_policy = policies
            .get(&0xab)
            .and_then(|v| v.first().copied())
            .unwrap_or(1);
        self.state.slots.insert(
            slot,
            SlotKey {
                alg,
                scalar: hex::encode(scalar),
                pin_policy: if pin_policy == 0 { 2 } else { pin_policy },
                touch_policy: if touch_policy == 0 { 1 } else { touch_policy },
                origin,
            },
        );
        self.save();
    }

    fn generate(&mut self, slot: u8, data: &[u8]) -> Vec<u8> {
        if !self.mgm_authenticated {
            return sw(SW_SECURITY);
        }
        if !(slot == 0x9a
            || slot == 0x9c
            || slot == 0x9d
            || slot == 0x9e
            || (0x82..=0x95).contains(&slot))
        {
            return sw(SW_BAD_P1P2);
        }
        let Some((0xac, inner, _)) = parse_tlv(data) else {
            return sw(SW_WRONG_DATA);
        };
        let Some(fields) = tlvs(inner) else {
            return sw(SW_WRONG_DATA);
        };
        let alg = fields
            .get(&0x80)
            .and_then(|v| v.first().copied())
            .unwrap_or(0);
        let scalar = match alg {
            ALG_P256 => p256::SecretKey::random(&mut OsRng).to_bytes().to_vec(),
            ALG_P384 => p384::SecretKey::random(&mut OsRng).to_bytes().to_vec(),
            _ => return sw(SW_WRONG_DATA),
        };
        self.store_key(slot, alg, scalar, &fields, 1);
        let point = self.state.slots[&slot].point();
        self.respond(tlv(&[0x7f, 0x49], &tlv(&[0x86], &point)), SW_OK)
    }

    fn import(&mut self, alg: u8, slot: u8, data: &[u8]) -> Vec<u8> {
        if !self.mgm_authenticated {
            return sw(SW_SECURITY);
        }
        let Some(fields) = tlvs(data) else {
            return sw(SW_WRONG_DATA);
        };
        let (Some(scalar), true) = (fields.get(&0x06), alg == ALG_P256 || alg == ALG_P384) else {
            return sw(SW_WRONG_DATA);
        };
        let ok = match alg {
            ALG_P256 => p256::SecretKey::from_slice(scalar).is_ok(),
            _ => p384::SecretKey::from_slice(scalar).is_ok(),
        };
        if !ok {
            return sw(SW_WRONG_DATA);
        }
        self.store_key(slot, alg, scalar.clone(), &fields, 2);
        sw(SW_OK)
    }

    fn metadata(&mut self, slot: u8) -> Vec<u8> {
        let Some(key) = self.state.slots.get(&slot).cloned() else {
            return sw(SW_NOT_FOUND);
        };
        let mut out = tlv(&[0x01], &[key.alg]);
        out.extend(tlv(&[0x02], &[key.pin_policy, key.touch_policy]));
        out.extend(tlv(&[0x03], &[key.origin]));
        out.extend(tlv(&[0x04], &tlv(&[0x86], &key.point())));
        self.respond(out, SW_OK)
    }

    fn get_data(&mut self, data: &[u8]) -> Vec<u8> {
        let Some((0x5c, id, _)) = parse_tlv(data) else {
            return sw(SW_WRONG_DATA);
        };
        if PIN_READ_OBJECTS.iter().any(|o| o == id) && !self.pin_verified {
            return sw(SW_SECURITY);
        }
        match self
            .state
            .objects
            .get(&hex::encode(id))
            .and_then(|h| hex::decode(h).ok())
        {
            Some(obj) => self.respond(obj, SW_OK),
            None => sw(SW_NOT_FOUND),
        }
    }

    fn put_data(&mut self, data: &[u8]) -> Vec<u8> {
        if !self.mgm_authenticated {
            return sw(SW_SECURITY);
        }
        let Some((0x5c, id, rest)) = parse_tlv(data) else {
            return sw(SW_WRONG_DATA);
        };
        self.state
            .objects
            .insert(hex::encode(id), hex::encode(rest));
        self.save();
        sw(SW_OK)
    }
}

impl vpicc::VSmartCard for Card {
    fn atr(&self) -> &[u8] {
        // A YubiKey 5's ATR, so tools that look at it are at home.
        &[
            0x3b, 0xfd, 0x13, 0x00, 0x00, 0x81, 0x31, 0xfe, 0x15, 0x80, 0x73, 0xc0, 0x21, 0xc0,
            0x57, 0x59, 0x75, 0x62, 0x69, 0x4b, 0x65, 0x79, 0x40,
        ]
    }

    fn reset(&mut self) {
        self.pin_verified = false;
        self.mgm_authenticated = false;
        self.chain.clear();
        self.pending.clear();
    }

    fn power_off(&mut self) {
        self.reset();
    }

    fn execute(&mut self, msg: &[u8]) -> Vec<u8> {
        self.execute_apdu(msg)
    }
}

fn main() -> std::io::Result<()> {
    let mut serial = 12_345_678u32;
    let mut path = None;
    let mut port = vpicc::DEFAULT_PORT;
    let mut remove_when_signing = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--remove-when-signing" {
            remove_when_signing = true;
            continue;
        }
        let v = args.next().unwrap_or_default();
        match a.as_str() {
            "--serial" => serial = v.parse().unwrap_or(serial),
            "--state" => path = Some(PathBuf::from(v)),
            "--port" => port = v.parse().unwrap_or(port),
            other => {
                eprintln!("virtual-piv: unknown argument {other}; usage: virtual-piv [--serial N] [--state FILE] [--port P] [--remove-when-signing]");
                std::process::exit(2);
            }
        }
    }
    let state = path
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Persisted {
            serial,
            pin: "123456".into(),
            pin_tries: PIN_TRIES,
            slots: BTreeMap::new(),
            objects: BTreeMap::new(),
            mgm: None,
        });
    let mut card = Card {
        state,
        path,
        pin_verified: false,
        mgm_authenticated: false,
        witness: None,
        chain: Vec::new(),
        pending: Vec::new(),
        remove_when_signing,
    };
    card.save();
    // vpcd accepts a new card only once pcscd has noticed the last one left: keep trying.
    let addr = std::net::SocketAddr::new(vpicc::DEFAULT_HOST.into(), port);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let conn = loop {
        match vpicc::connect_socket(addr) {
            Ok(c) => break c,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    };
    conn.run(&mut card)
}
