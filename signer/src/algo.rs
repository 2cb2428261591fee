//! Key algorithms, public keys and signature checks.
//!
//! Everything the signer knows about a public key goes through [`PublicKey`]: parsed once from a
//! DER SubjectPublicKeyInfo, restricted to the algorithms the signer supports, and able to verify
//! the signatures the pipeline checks (proof of possession, our own certificates and CRLs).

use std::fmt;

use ecdsa::signature::hazmat::PrehashVerifier;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_parser::oid_registry::{
    Oid, OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384,
    OID_SIG_ECDSA_WITH_SHA512,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as ParsedKey;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

/// A key algorithm a policy can allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256, signing with SHA-256.
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// ECDSA on NIST P-384, signing with SHA-384.
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
}

impl KeyAlgorithm {
    /// The digest a key of this algorithm signs: SHA-256 for P-256, SHA-384 for P-384 (what
    /// a token or card is handed when it signs a prehashed message).
    pub fn digest(self, msg: &[u8]) -> Vec<u8> {
        match self {
            KeyAlgorithm::EcdsaP256 => Sha256::digest(msg).to_vec(),
            KeyAlgorithm::EcdsaP384 => Sha384::digest(msg).to_vec(),
        }
    }

    /// Name as written in policies.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
        }
    }

    /// The signature algorithm this key signs with, for rcgen.
    pub fn rcgen_alg(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }

    /// Parses a policy name; explains why RSA and other curves are refused.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "ecdsa-p256" => Ok(KeyAlgorithm::EcdsaP256),
            "ecdsa-p384" => Ok(KeyAlgorithm::EcdsaP384),
            s if s.starts_with("rsa") => Err(format!(
                "`{s}` is not supported: RSA below 3072 bits is never allowed, and this signer \
                 issues ECDSA only; use ecdsa-p256 or ecdsa-p384"
            )),
            s => Err(format!(
                "unknown key algorithm `{s}`; use ecdsa-p256 or ecdsa-p384"
            )),
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a public key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The SubjectPublicKeyInfo does not parse.
    #[error("the public key is malformed ({0})")]
    Malformed(String),
    /// A key type the signer does not issue for.
    #[error(
        "the key is {0}; only ECDSA P-256 and P-384 keys are accepted (RSA below 3072 bits never)"
    )]
    Unsupported(String),
    /// A signature algorithm the signer does not verify.
    #[error(
        "signature algorithm {0} is not supported; use ECDSA with SHA-256, SHA-384 or SHA-512"
    )]
    UnsupportedSignature(String),
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
}

/// A parsed, supported public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    alg: KeyAlgorithm,
    /// SEC1 uncompressed point (the BIT STRING contents of the SPKI).
    point: Vec<u8>,
    /// The DER SubjectPublicKeyInfo exactly as parsed.
    spki_der: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, {})", self.alg, hex::encode(self.key_id()))
    }
}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo; refuses everything but EC P-256/P-384 points that are
    /// on their curve.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let (rest, spki) =
            SubjectPublicKeyInfo::from_der(der).map_err(|e| KeyError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(KeyError::Malformed("trailing bytes after the key".into()));
        }
        Self::from_parsed(&spki)
    }

    /// Converts an x509-parser SPKI (as found in a CSR or certificate).
    pub fn from_parsed(spki: &SubjectPublicKeyInfo<'_>) -> Result<Self, KeyError> {
        let alg_oid = &spki.algorithm.algorithm;
        if *alg_oid == OID_PKCS1_RSAENCRYPTION {
            let bits = match spki.parsed() {
                Ok(ParsedKey::RSA(rsa)) => rsa.key_size(),
                _ => 0,
            };
            return Err(KeyError::Unsupported(format!("RSA-{bits}")));
        }
        if *alg_oid != OID_KEY_TYPE_EC_PUBLIC_KEY {
            return Err(KeyError::Unsupported(format!("of type {alg_oid}")));
        }
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(|| KeyError::Malformed("EC key without a named curve".into()))?;
        let point = spki.subject_public_key.data.to_vec();
        let alg = if curve == OID_EC_P256 {
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .map_err(|_| KeyError::Malformed("not a point on P-256".into()))?;
            KeyAlgorithm::EcdsaP256
        } else if curve == OID_NIST_EC_P384 {
            p384::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .map_err(|_| KeyError::Malformed("not a point on P-384".into()))?;
            KeyAlgorithm::EcdsaP384
        } else if curve == OID_NIST_EC_P521 {
            return Err(KeyError::Unsupported("ECDSA P-521".into()));
        } else {
            return Err(KeyError::Unsupported(format!("EC on curve {curve}")));
        };
        if point.first() != Some(&0x04) {
            return Err(KeyError::Unsupported("a compressed EC point".into()));
        }
        Ok(PublicKey {
            alg,
            point,
            spki_der: spki.raw.to_vec(),
        })
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The uncompressed SEC1 point.
    pub fn point(&self) -> &[u8] {
        &self.point
    }

    /// Key identifier by RFC 7093 section 2 method 1: the leftmost 160 bits of the SHA-256 of
    /// the subjectPublicKey BIT STRING value.
    pub fn key_id(&self) -> Vec<u8> {
        Sha256::digest(&self.point)[..20].to_vec()
    }

    /// Verifies a DER ECDSA signature over `msg`, made with the named signature algorithm.
    pub fn verify(
        &self,
        sig_alg: &AlgorithmIdentifier<'_>,
        msg: &[u8],
        sig: &[u8],
    ) -> Result<(), KeyError> {
        let oid = &sig_alg.algorithm;
        let digest: Vec<u8> = if *oid == OID_SIG_ECDSA_WITH_SHA256 {
            Sha256::digest(msg).to_vec()
        } else if *oid == OID_SIG_ECDSA_WITH_SHA384 {
            Sha384::digest(msg).to_vec()
        } else if *oid == OID_SIG_ECDSA_WITH_SHA512 {
            Sha512::digest(msg).to_vec()
        } else {
            return Err(KeyError::UnsupportedSignature(oid_name(oid)));
        };
        let ok = match self.alg {
            KeyAlgorithm::EcdsaP256 => {
                let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&self.point)
                    .map_err(|_| KeyError::BadSignature)?;
                let s =
                    p256::ecdsa::Signature::from_der(sig).map_err(|_| KeyError::BadSignature)?;
                vk.verify_prehash(&digest, &s).is_ok()
            }
            KeyAlgorithm::EcdsaP384 => {
                let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&self.point)
                    .map_err(|_| KeyError::BadSignature)?;
                let s =
                    p384::ecdsa::Signature::from_der(sig).map_err(|_| KeyError::BadSignature)?;
                vk.verify_prehash(&digest, &s).is_ok()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(KeyError::BadSignature)
        }
    }
}

fn oid_name(oid: &Oid<'_>) -> String {
    oid.to_id_string()
}

impl rcgen::PublicKeyData for PublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.alg.rcgen_alg()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;

    fn p256_key() -> (p256::ecdsa::SigningKey, PublicKey) {
        let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let spki = sk.verifying_key().to_public_key_der().expect("encode spki");
        let pk = PublicKey::from_spki_der(spki.as_bytes()).expect("parse spki");
        (sk, pk)
    }

    #[test]
    fn each_curve_signs_its_own_digest() {
        // The published SHA-256 and SHA-384 of "abc" (FIPS 180-2 examples).
        assert_eq!(
            hex::encode(KeyAlgorithm::EcdsaP256.digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(KeyAlgorithm::EcdsaP384.digest(b"abc")),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
             8086072ba1e7cc2358baeca134c825a7"
        );
    }

    #[test]
    fn parses_and_verifies_p256() {
        let (sk, pk) = p256_key();
        assert_eq!(pk.algorithm(), KeyAlgorithm::EcdsaP256);
        let sig: p256::ecdsa::Signature = sk.sign(b"tbs");
        let der = sig.to_der();
        let alg = AlgorithmIdentifier::new(OID_SIG_ECDSA_WITH_SHA256, None);
        assert_eq!(pk.verify(&alg, b"tbs", der.as_bytes()), Ok(()));
        assert_eq!(
            pk.verify(&alg, b"tbS", der.as_bytes()),
            Err(KeyError::BadSignature)
        );
        let alg384 = AlgorithmIdentifier::new(OID_SIG_ECDSA_WITH_SHA384, None);
        assert_eq!(
            pk.verify(&alg384, b"tbs", der.as_bytes()),
            Err(KeyError::BadSignature)
        );
    }

    #[test]
    fn key_id_is_rfc7093_method_1() {
        let (_, pk) = p256_key();
        let expect = &Sha256::digest(pk.point())[..20];
        assert_eq!(pk.key_id(), expect);
        assert_eq!(pk.key_id().len(), 20);
    }

    #[test]
    fn refuses_garbage_and_rsa_names() {
        assert!(matches!(
            PublicKey::from_spki_der(b"\x30\x03\x02\x01\x00"),
            Err(KeyError::Malformed(_))
        ));
        assert!(KeyAlgorithm::parse("rsa-2048")
            .expect_err("rsa refused")
            .contains("never"));
        assert_eq!(
            KeyAlgorithm::parse("ecdsa-p384"),
            Ok(KeyAlgorithm::EcdsaP384)
        );
    }
}
