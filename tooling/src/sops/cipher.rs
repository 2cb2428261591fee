//! Value encryption: `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` strings, AES-256-GCM with the
//! 32-byte nonce sops uses, and the key path as additional authenticated data.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use super::value::Plain;

/// AES-256-GCM with a 256-bit nonce, as Go's `cipher.NewGCMWithNonceSize(aes, 32)`.
type SopsGcm = AesGcm<Aes256, aes_gcm::aead::consts::U32>;

/// A 32-byte SOPS data key, zeroized on drop.
#[derive(Clone)]
pub struct DataKey(pub(crate) Zeroizing<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    /// A fresh random data key.
    pub fn generate() -> DataKey {
        let mut k = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut k[..]);
        DataKey(k)
    }

    /// Wraps 32 bytes; `None` for any other length.
    pub fn from_slice(b: &[u8]) -> Option<DataKey> {
        let arr: [u8; 32] = b.try_into().ok()?;
        Some(DataKey(Zeroizing::new(arr)))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0[..]
    }

    fn cipher(&self) -> SopsGcm {
        // A 32-byte key is always a valid AES-256 key.
        #[allow(clippy::unwrap_used)]
        SopsGcm::new_from_slice(&self.0[..]).unwrap()
    }
}

/// The AAD sops uses for a value: the key path joined by `:` with a trailing `:`.
pub fn aad_for(path: &[String]) -> String {
    let mut s = path.join(":");
    s.push(':');
    s
}

/// Whether a string looks like a sops-encrypted value.
pub fn is_enc(s: &str) -> bool {
    s.starts_with("ENC[AES256_GCM,")
}

/// How many IVs one read of the OS random source provides.
const IVS_PER_REFILL: usize = 64;

/// IVs drawn from the operating system's random source in batches, one pool per thread.
///
/// A file with thirty values would otherwise cost thirty `getrandom` calls, which was the
/// largest single cost of a tree rotation. IVs are public (they are written next to the
/// ciphertext), so holding the next few in memory reveals nothing; data keys are never drawn
/// from this pool.
struct IvPool {
    buf: [u8; 32 * IVS_PER_REFILL],
    next: usize,
}

thread_local! {
    static IV_POOL: std::cell::RefCell<IvPool> = const {
        std::cell::RefCell::new(IvPool { buf: [0; 32 * IVS_PER_REFILL], next: IVS_PER_REFILL })
    };
}

/// A fresh random 32-byte IV, never handed out twice.
fn fresh_iv() -> [u8; 32] {
    IV_POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.next == IVS_PER_REFILL {
            OsRng.fill_bytes(&mut pool.buf);
            pool.next = 0;
        }
        let at = pool.next * 32;
        let mut iv = [0u8; 32];
        iv.copy_from_slice(&pool.buf[at..at + 32]);
        // Wipe what was handed out so no later state of the pool holds it.
        pool.buf[at..at + 32].fill(0);
        pool.next += 1;
        iv
    })
}

/// Encrypts raw bytes with a type tag; returns the full `ENC[...]` string.
pub fn encrypt_bytes(key: &DataKey, plain: &[u8], ty: &str, aad: &str) -> String {
    let iv = fresh_iv();
    let nonce: Nonce<aes_gcm::aead::consts::U32> = iv.into();
    // Encryption with a valid key and nonce length cannot fail for in-memory buffers.
    #[allow(clippy::unwrap_used)]
    let out = key
        .cipher()
        .encrypt(
            &nonce,
            Payload {
                msg: plain,
                aad: aad.as_bytes(),
            },
        )
        .unwrap();
    let (data, tag) = out.split_at(out.len() - 16);
    format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{}]",
        B64.encode(data),
        B64.encode(iv),
        B64.encode(tag),
        ty
    )
}

/// Encrypts a value as sops does (the caller skips empty values).
pub fn encrypt_value(key: &DataKey, value: &Plain, aad: &str) -> String {
    let (bytes, ty) = value.to_cipher_input();
    encrypt_bytes(key, &bytes, ty, aad)
}

/// Why an `ENC[...]` string did not decrypt.
#[derive(Debug)]
pub enum DecryptFailure {
    /// Not of the form `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`.
    Malformed(String),
    /// AES-GCM authentication failed: wrong key, wrong AAD or tampered data.
    Auth,
}

/// The parts of an `ENC[...]` string.
struct EncParts {
    data: Vec<u8>,
    iv: Vec<u8>,
    tag: Vec<u8>,
    ty: String,
}

fn parse_enc(s: &str) -> Result<EncParts, DecryptFailure> {
    let bad = |m: &str| DecryptFailure::Malformed(m.to_string());
    let inner = s
        .strip_prefix("ENC[AES256_GCM,")
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| bad("not an ENC[AES256_GCM,...] string"))?;
    let mut data = None;
    let mut iv = None;
    let mut tag = None;
    let mut ty = None;
    for part in inner.split(',') {
        let (k, v) = part
            .split_once(':')
            .ok_or_else(|| bad("field without `:`"))?;
        let dec = || {
            B64.decode(v)
                .map_err(|_| bad(&format!("`{k}` is not base64")))
        };
        match k {
            "data" => data = Some(dec()?),
            "iv" => iv = Some(dec()?),
            "tag" => tag = Some(dec()?),
            "type" => ty = Some(v.to_string()),
            _ => return Err(bad(&format!("unknown field `{k}`"))),
        }
    }
    let parts = EncParts {
        data: data.ok_or_else(|| bad("no data"))?,
        iv: iv.ok_or_else(|| bad("no iv"))?,
        tag: tag.ok_or_else(|| bad("no tag"))?,
        ty: ty.ok_or_else(|| bad("no type"))?,
    };
    if parts.iv.len() != 32 || parts.tag.len() != 16 {
        return Err(bad("iv must be 32 bytes and tag 16 bytes"));
    }
    Ok(parts)
}

/// Decrypts an `ENC[...]` string to its raw bytes and type tag.
pub fn decrypt_bytes(
    key: &DataKey,
    s: &str,
    aad: &str,
) -> Result<(Zeroizing<Vec<u8>>, String), DecryptFailure> {
    let p = parse_enc(s)?;
    let mut ct = p.data;
    ct.extend_from_slice(&p.tag);
    let iv: [u8; 32] =
        p.iv.as_slice()
            .try_into()
            .map_err(|_| DecryptFailure::Malformed("iv must be 32 bytes".into()))?;
    let nonce: Nonce<aes_gcm::aead::consts::U32> = iv.into();
    let plain = key
        .cipher()
        .decrypt(
            &nonce,
            Payload {
                msg: &ct,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| DecryptFailure::Auth)?;
    Ok((Zeroizing::new(plain), p.ty))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_aad_binding() {
        let k = DataKey::generate();
        let e = encrypt_value(&k, &Plain::Int(31), "a:b:");
        assert!(e.ends_with(",type:int]"));
        let (b, ty) = decrypt_bytes(&k, &e, "a:b:").unwrap();
        assert_eq!((&b[..], ty.as_str()), (&b"31"[..], "int"));
        assert!(matches!(
            decrypt_bytes(&k, &e, "a:c:"),
            Err(DecryptFailure::Auth)
        ));
    }

    #[test]
    fn aad_has_trailing_colon() {
        assert_eq!(aad_for(&[]), ":");
        assert_eq!(aad_for(&["a".into(), "b".into()]), "a:b:");
    }

    #[test]
    fn ivs_are_distinct_across_pool_refills() {
        let ivs: std::collections::HashSet<[u8; 32]> =
            (0..IVS_PER_REFILL * 3 + 5).map(|_| fresh_iv()).collect();
        assert_eq!(ivs.len(), IVS_PER_REFILL * 3 + 5);
        assert!(!ivs.contains(&[0u8; 32]));
    }
}
