//! An in-memory ECDSA P-256/P-384 key: the general key type for keys that live in software.
//!
//! The online tooling generates customers' intermediate keys with it (stored only
//! SOPS-encrypted), the pipeline lints with throwaway ones, and the soft root backend wraps one.
//! It lives outside [`crate::backend`] so that code which only needs a key pair (kiwictl) does
//! not reach into the root's key backends. The secret scalar is zeroized on drop by the curve
//! crates; its PKCS#8 encoding is handed out only in zeroizing memory.

use ecdsa::signature::Signer;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use zeroize::Zeroizing;

use crate::algo::{KeyAlgorithm, PublicKey};

enum Inner {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

/// An ECDSA key pair in memory. `Debug` shows the public half only.
pub struct EcKey {
    inner: Inner,
    public: PublicKey,
}

impl std::fmt::Debug for EcKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EcKey({:?})", self.public)
    }
}

impl EcKey {
    /// Generates a fresh key from the OS random generator.
    pub fn generate(alg: KeyAlgorithm) -> Self {
        Self::new(match alg {
            KeyAlgorithm::EcdsaP256 => {
                Inner::P256(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng))
            }
            KeyAlgorithm::EcdsaP384 => {
                Inner::P384(p384::ecdsa::SigningKey::random(&mut rand_core::OsRng))
            }
        })
    }

    fn new(inner: Inner) -> Self {
        let spki = match &inner {
            Inner::P256(k) => k.verifying_key().to_public_key_der(),
            Inner::P384(k) => k.verifying_key().to_public_key_der(),
        };
        // Encoding a valid curve point as SPKI cannot fail, and our parser accepts its output.
        let spki = spki.unwrap_or_else(|_| unreachable!("SPKI encoding of a valid key"));
        let public = PublicKey::from_spki_der(spki.as_bytes())
            .unwrap_or_else(|_| unreachable!("SPKI we just encoded parses"));
        EcKey { inner, public }
    }

    /// Reads an unencrypted PKCS#8 DER ECDSA P-256 or P-384 key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, String> {
        if let Ok(k) = p384::ecdsa::SigningKey::from_pkcs8_der(der) {
            Ok(Self::new(Inner::P384(k)))
        } else if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_der(der) {
            Ok(Self::new(Inner::P256(k)))
        } else {
            Err("not an ECDSA P-256 or P-384 PKCS#8 key".into())
        }
    }

    /// The key as unencrypted PKCS#8 DER, zeroized on drop. Callers encrypt it before it
    /// leaves memory.
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        let doc = match &self.inner {
            Inner::P256(k) => k.to_pkcs8_der(),
            Inner::P384(k) => k.to_pkcs8_der(),
        };
        // PKCS#8 encoding of an in-memory EC key has no failure mode.
        let doc = doc.unwrap_or_else(|_| unreachable!("PKCS#8 encoding"));
        Zeroizing::new(doc.as_bytes().to_vec())
    }

    /// The secret scalar, big-endian, zeroized on drop (what a PIV IMPORT takes).
    pub fn scalar(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(match &self.inner {
            Inner::P256(k) => k.to_bytes().to_vec(),
            Inner::P384(k) => k.to_bytes().to_vec(),
        })
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.public.algorithm()
    }

    /// Signs `msg` with the key's standard hash and returns the DER ECDSA signature.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match &self.inner {
            Inner::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign(msg);
                s.to_der().as_bytes().to_vec()
            }
            Inner::P384(k) => {
                let s: p384::ecdsa::Signature = k.sign(msg);
                s.to_der().as_bytes().to_vec()
            }
        }
    }
}

impl rcgen::PublicKeyData for EcKey {
    fn der_bytes(&self) -> &[u8] {
        self.public.point()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.public.algorithm().rcgen_alg()
    }
}

impl rcgen::SigningKey for EcKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        Ok(EcKey::sign(self, msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifies(key: &EcKey, msg: &[u8], sig: &[u8]) -> bool {
        use ecdsa::signature::Verifier;
        let point = key.public_key().point();
        match key.algorithm() {
            KeyAlgorithm::EcdsaP256 => {
                let (Ok(vk), Ok(s)) = (
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(point),
                    p256::ecdsa::Signature::from_der(sig),
                ) else {
                    return false;
                };
                vk.verify(msg, &s).is_ok()
            }
            KeyAlgorithm::EcdsaP384 => {
                let (Ok(vk), Ok(s)) = (
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(point),
                    p384::ecdsa::Signature::from_der(sig),
                ) else {
                    return false;
                };
                vk.verify(msg, &s).is_ok()
            }
        }
    }

    #[test]
    fn pkcs8_round_trip_keeps_the_key_and_signatures_verify() {
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384] {
            let key = EcKey::generate(alg);
            let back = EcKey::from_pkcs8_der(&key.to_pkcs8_der()).expect("parses");
            assert_eq!(back.public_key(), key.public_key());
            assert_eq!(back.algorithm(), alg);
            let sig = back.sign(b"tbs");
            assert!(verifies(&key, b"tbs", &sig), "the original's key verifies");
            assert!(!verifies(&key, b"other", &sig));
        }
        assert!(EcKey::from_pkcs8_der(b"not a key").is_err());
    }

    #[test]
    fn debug_shows_no_secret() {
        let key = EcKey::generate(KeyAlgorithm::EcdsaP256);
        let dbg = format!("{key:?}");
        let scalar = hex::encode(key.scalar().as_slice());
        assert!(!dbg.to_lowercase().contains(&scalar), "{dbg}");
    }
}
