//! Certificate signing requests: parsed, signature-checked, reduced to a public key.
//!
//! The CSR contributes only its public key. Its subject and requested extensions are shown to
//! the operator (so they can see what was asked) and otherwise ignored: policy decides.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::algo::PublicKey;
use crate::error::{Error, Result};
use crate::words::Fingerprint;

/// A CSR whose proof of possession verified.
#[derive(Debug, Clone)]
pub struct VerifiedCsr {
    /// The requested public key.
    pub public_key: PublicKey,
    /// SHA-256 of the CSR's DER.
    pub fingerprint: Fingerprint,
    /// The subject the CSR asked for (informational; not used).
    pub requested_subject: String,
    /// Extensions the CSR asked for, by OID (informational; not used).
    pub requested_extensions: Vec<String>,
}

/// Parses a PEM or DER CSR and verifies its self-signature. `origin` names it in errors.
pub fn parse_and_verify(bytes: &[u8], origin: &str) -> Result<VerifiedCsr> {
    let refuse = |reason: String| Error::Csr {
        path: origin.to_string(),
        reason,
    };
    let der = decode(bytes).map_err(refuse)?;
    let (rest, csr) = X509CertificationRequest::from_der(&der).map_err(|e| {
        refuse(format!(
            "it is not a valid PKCS#10 request ({e}); the file may be truncated or damaged"
        ))
    })?;
    if !rest.is_empty() {
        return Err(refuse(format!(
            "{} bytes follow the request; the file is damaged",
            rest.len()
        )));
    }
    let info = &csr.certification_request_info;
    let public_key =
        PublicKey::from_parsed(&info.subject_pki).map_err(|e| refuse(e.to_string()))?;
    public_key
        .verify(&csr.signature_algorithm, info.raw, &csr.signature_value.data)
        .map_err(|e| {
            refuse(format!(
                "its signature does not prove possession of the key ({e}); the request was altered or damaged in transit"
            ))
        })?;
    let requested_extensions = csr
        .requested_extensions()
        .map(|exts| {
            exts.map(|e| format!("{e:?}").chars().take(60).collect())
                .collect()
        })
        .unwrap_or_default();
    Ok(VerifiedCsr {
        public_key,
        fingerprint: Fingerprint::of(&der),
        requested_subject: info.subject.to_string(),
        requested_extensions,
    })
}

fn decode(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    crate::x509::decode(bytes, &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::KeyAlgorithm;

    fn csr_for(alg: &'static rcgen::SignatureAlgorithm) -> (String, Vec<u8>) {
        // rcgen without a crypto provider cannot make keys; build a CSR with our soft key.
        let key =
            crate::backend::soft::SoftKey::generate(if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
                KeyAlgorithm::EcdsaP256
            } else {
                KeyAlgorithm::EcdsaP384
            });
        let signer = crate::backend::RcgenSigner::new(&key);
        let params = rcgen::CertificateParams::new(vec!["x.example".to_string()]).expect("params");
        let csr = params.serialize_request(&signer).expect("csr");
        (csr.pem().expect("pem"), csr.der().to_vec())
    }

    #[test]
    fn accepts_pem_and_der() {
        let (pem, der) = csr_for(&rcgen::PKCS_ECDSA_P256_SHA256);
        let a = parse_and_verify(pem.as_bytes(), "a.csr").expect("pem");
        let b = parse_and_verify(&der, "a.der").expect("der");
        assert_eq!(a.public_key, b.public_key);
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.public_key.algorithm(), KeyAlgorithm::EcdsaP256);
    }

    #[test]
    fn refuses_tampering_and_truncation() {
        let (_, der) = csr_for(&rcgen::PKCS_ECDSA_P384_SHA384);
        let mut bad = der.clone();
        let n = bad.len();
        bad[n - 5] ^= 0x01; // inside the signature
        let e = parse_and_verify(&bad, "t.csr").expect_err("tampered");
        assert!(
            e.to_string().contains("does not prove possession")
                || e.to_string().contains("not a valid"),
            "{e}"
        );
        let e = parse_and_verify(&der[..der.len() - 10], "t.csr").expect_err("truncated");
        assert!(e.to_string().contains("truncated"), "{e}");
        let e = parse_and_verify(b"", "e.csr").expect_err("empty");
        assert!(e.to_string().contains("empty"), "{e}");
        let e = parse_and_verify(
            b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
            "c",
        )
        .expect_err("tag");
        assert!(e.to_string().contains("not a CERTIFICATE REQUEST"), "{e}");
    }
}
