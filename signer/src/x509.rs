//! Reading back what the signer made: certificates and CRLs re-parsed with x509-parser, their
//! signatures verified against the root key, serial numbers and names converted.

use rcgen::{DistinguishedName, DnType, DnValue};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::algo::{KeyError, PublicKey};

/// A serial number: unsigned big-endian bytes without leading zeros.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Serial(Vec<u8>);

impl Serial {
    /// A fresh random positive 128-bit serial (first byte non-zero, so always 16 bytes).
    pub fn random() -> Self {
        use rand_core::RngCore;
        let mut b = [0u8; 16];
        loop {
            rand_core::OsRng.fill_bytes(&mut b);
            if b[0] != 0 {
                return Serial(b.to_vec());
            }
        }
    }

    /// From the raw DER INTEGER contents (a leading 0x00 sign byte is dropped).
    pub fn from_der_integer(raw: &[u8]) -> Self {
        let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
        Serial(raw[start..].to_vec())
    }

    /// Parses hex (case-insensitive; colons and spaces allowed; leading zeros ignored).
    pub fn parse_hex(s: &str) -> Result<Self, String> {
        // The ledger holds plain hex: copied only when there is something to remove.
        let separated = |c: char| c == ':' || c.is_whitespace();
        let clean: std::borrow::Cow<'_, str> = if s.contains(separated) {
            s.chars().filter(|c| !separated(*c)).collect()
        } else {
            s.into()
        };
        let clean = clean.strip_prefix("0x").unwrap_or(&clean);
        if clean.is_empty() {
            return Err(
                "the serial is empty; give it in hex as `kiwi-signer status` prints it".into(),
            );
        }
        let padded: std::borrow::Cow<'_, str> = if clean.len() % 2 == 1 {
            format!("0{clean}").into()
        } else {
            clean.into()
        };
        let mut bytes = vec![0; padded.len() / 2];
        hex::decode_to_slice(padded.as_bytes(), &mut bytes)
            .map_err(|_| format!("`{s}` is not a hex serial number"))?;
        Ok(Serial::from_der_integer(&bytes))
    }

    /// The bytes, for rcgen.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lowercase hex.
    pub fn hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl TryFrom<String> for Serial {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Serial::parse_hex(&s)
    }
}

impl From<Serial> for String {
    fn from(s: Serial) -> String {
        s.hex()
    }
}

impl std::fmt::Debug for Serial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Serial({})", self.hex())
    }
}

impl std::fmt::Display for Serial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

/// The DER in `bytes`: PEM with one of `tags` (the first names it in messages), or DER as is.
pub fn decode(bytes: &[u8], tags: &[&str]) -> Result<Vec<u8>, String> {
    let trimmed = bytes.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN") {
        let p = pem::parse(trimmed).map_err(|e| format!("it is not valid PEM ({e})"))?;
        if tags.contains(&p.tag()) {
            Ok(p.into_contents())
        } else {
            Err(format!(
                "it holds a PEM `{}`, not a {}",
                p.tag(),
                tags.first().copied().unwrap_or("?")
            ))
        }
    } else if bytes.is_empty() {
        Err("the file is empty".into())
    } else {
        Ok(bytes.to_vec())
    }
}

/// Parses a DER certificate with nothing after it.
pub fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok((&[], c)) => Ok(c),
        Ok(_) => Err("trailing bytes after the certificate".into()),
        Err(e) => Err(format!("not a DER certificate ({e})")),
    }
}

/// Parses a DER CRL with nothing after it.
pub fn parse_crl(der: &[u8]) -> Result<CertificateRevocationList<'_>, String> {
    match CertificateRevocationList::from_der(der) {
        Ok((&[], c)) => Ok(c),
        Ok(_) => Err("trailing bytes after the CRL".into()),
        Err(e) => Err(format!("not a DER CRL ({e})")),
    }
}

/// Verifies a certificate's signature with `issuer`.
pub fn verify_cert(cert: &X509Certificate<'_>, issuer: &PublicKey) -> Result<(), KeyError> {
    issuer.verify(
        &cert.signature_algorithm,
        cert.tbs_certificate.as_ref(),
        &cert.signature_value.data,
    )
}

/// Verifies a CRL's signature with `issuer`.
pub fn verify_crl(crl: &CertificateRevocationList<'_>, issuer: &PublicKey) -> Result<(), KeyError> {
    issuer.verify(
        &crl.signature_algorithm,
        crl.tbs_cert_list.as_ref(),
        &crl.signature_value.data,
    )
}

/// The certificate's public key.
pub fn cert_key(cert: &X509Certificate<'_>) -> Result<PublicKey, KeyError> {
    PublicKey::from_parsed(cert.public_key())
}

/// A distinguished name as the ledger records it: `C=.., O=.., OU=.., CN=..` in the
/// certificate's order. Issuance and `ledger verify` must format names identically.
pub fn dn_string(dn: &DistinguishedName) -> String {
    dn.iter()
        .map(|(t, v)| {
            let name = match t {
                DnType::CommonName => "CN",
                DnType::OrganizationName => "O",
                DnType::OrganizationalUnitName => "OU",
                DnType::CountryName => "C",
                _ => "?",
            };
            let val = match v {
                DnValue::PrintableString(s) => s.as_str().to_string(),
                DnValue::Utf8String(s) => s.clone(),
                _ => "?".into(),
            };
            format!("{name}={val}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Converts a parsed name into rcgen's form, keeping attribute order and string types, so a
/// certificate we issue names its issuer with exactly the root's subject bytes.
pub fn rcgen_name(name: &x509_parser::x509::X509Name<'_>) -> Result<DistinguishedName, String> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let mut dn = DistinguishedName::new();
    for rdn in name.iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err("multi-valued RDNs are not supported".into());
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or("attribute OID too large")?
            .collect();
        let value = attr.attr_value();
        let text = std::str::from_utf8(value.data).map_err(|_| "attribute is not text")?;
        let v = match value.tag() {
            Tag::PrintableString => {
                DnValue::PrintableString(text.try_into().map_err(|_| "bad PrintableString")?)
            }
            Tag::Utf8String => DnValue::Utf8String(text.to_string()),
            t => return Err(format!("attribute string type {t} is not supported")),
        };
        dn.push(DnType::from_oid(&oid), v);
    }
    Ok(dn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_forms() {
        let s = Serial::parse_hex("00:AB:cd").expect("parse");
        assert_eq!(s.hex(), "abcd");
        assert_eq!(Serial::parse_hex("0xabc").expect("odd").hex(), "0abc");
        assert!(Serial::parse_hex("xyz").is_err());
        assert!(Serial::parse_hex("").is_err());
        assert_eq!(Serial::from_der_integer(&[0, 0x80, 1]).hex(), "8001");
    }

    #[test]
    fn random_serials_are_16_bytes_and_differ() {
        let a = Serial::random();
        let b = Serial::random();
        assert_eq!(a.bytes().len(), 16);
        assert_ne!(a, b);
    }
}
