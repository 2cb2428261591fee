//! The nameConstraints extension of an intermediate (RFC 5280 4.2.1.10): the subtrees a tier's
//! policy grants one customer, in each name form a leaf can carry (DNS, rfc822Name, URI,
//! directoryName, IP). rcgen 0.14 has no URI or directoryName subtree, so the extension is
//! DER-encoded here with the `der` crate and added as a critical custom extension; it is also
//! read back from a parsed certificate, so the linter and `ledger verify` compare form by form.

use std::fmt;
use std::net::IpAddr;

use der::asn1::{Any, Ia5StringRef, ObjectIdentifier, Utf8StringRef};
use der::{Encode, Tag, TagNumber};
use x509_parser::extensions::GeneralName;

/// The nameConstraints extension's OID (2.5.29.30).
pub const OID: &[u64] = &[2, 5, 29, 30];

/// An attribute a directoryName subtree may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirAttr {
    /// organizationName (2.5.4.10).
    Organization,
    /// organizationalUnitName (2.5.4.11).
    OrganizationalUnit,
}

impl DirAttr {
    const O: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
    const OU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.11");

    fn oid(self) -> ObjectIdentifier {
        match self {
            DirAttr::Organization => Self::O,
            DirAttr::OrganizationalUnit => Self::OU,
        }
    }

    fn label(self) -> &'static str {
        match self {
            DirAttr::Organization => "O",
            DirAttr::OrganizationalUnit => "OU",
        }
    }
}

/// The base name of one subtree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subtree {
    /// dNSName: the domain and all its subdomains.
    Dns(String),
    /// rfc822Name: mailboxes at a host or, with a leading dot, at any of its subdomains.
    Email(String),
    /// uniformResourceIdentifier: URIs whose host is this one or, with a leading dot, a
    /// subdomain of it.
    Uri(String),
    /// directoryName: names that begin with these RDNs (one attribute each), in this order.
    Directory(Vec<(DirAttr, String)>),
    /// iPAddress: an address range (address, prefix length).
    Ip(IpAddr, u8),
}

impl Subtree {
    /// The host a DNS, email or URI subtree is rooted at (without a leading dot).
    pub fn host(&self) -> Option<&str> {
        match self {
            Subtree::Dns(h) | Subtree::Email(h) | Subtree::Uri(h) => {
                Some(h.strip_prefix('.').unwrap_or(h))
            }
            Subtree::Directory(_) | Subtree::Ip(..) => None,
        }
    }

    /// Reads a subtree's base from a parsed certificate; a form or attribute the policy can
    /// never grant is an error describing it.
    pub fn from_parsed(name: &GeneralName<'_>) -> Result<Self, String> {
        Ok(match name {
            GeneralName::DNSName(d) => Subtree::Dns(d.to_string()),
            GeneralName::RFC822Name(e) => Subtree::Email(e.to_string()),
            GeneralName::URI(u) => Subtree::Uri(u.to_string()),
            GeneralName::IPAddress(b) => ip_range(b)?,
            GeneralName::DirectoryName(dn) => {
                let mut parts = Vec::new();
                for rdn in dn.iter() {
                    let mut attrs = rdn.iter();
                    let (Some(a), None) = (attrs.next(), attrs.next()) else {
                        return Err(format!("directoryName {dn} has a multi-valued RDN"));
                    };
                    let attr = match a.attr_type().to_id_string().as_str() {
                        "2.5.4.10" => DirAttr::Organization,
                        "2.5.4.11" => DirAttr::OrganizationalUnit,
                        other => return Err(format!("directoryName attribute {other}")),
                    };
                    let value = a
                        .as_str()
                        .map_err(|_| format!("directoryName {dn} has a non-text value"))?;
                    parts.push((attr, value.to_string()));
                }
                Subtree::Directory(parts)
            }
            other => return Err(format!("{other}")),
        })
    }

    fn general_name(&self) -> der::Result<Any> {
        let ctx = |number: u8, constructed| Tag::ContextSpecific {
            constructed,
            number: TagNumber::new(number),
        };
        let ia5 = |s: &str| Ia5StringRef::new(s).map(|_| s.as_bytes().to_vec());
        match self {
            Subtree::Email(s) => Any::new(ctx(1, false), ia5(s)?),
            Subtree::Dns(s) => Any::new(ctx(2, false), ia5(s)?),
            Subtree::Uri(s) => Any::new(ctx(6, false), ia5(s)?),
            Subtree::Ip(addr, len) => {
                let mut bytes = match addr {
                    IpAddr::V4(a) => a.octets().to_vec(),
                    IpAddr::V6(a) => a.octets().to_vec(),
                };
                bytes.extend_from_slice(&mask(*len)[..bytes.len()]);
                Any::new(ctx(7, false), bytes)
            }
            Subtree::Directory(parts) => {
                // Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF one
                // AttributeTypeAndValue); directoryName is [4] EXPLICIT (Name is a CHOICE).
                let mut rdns = Vec::new();
                for (attr, value) in parts {
                    let mut atv = attr.oid().to_der()?;
                    atv.extend(Utf8StringRef::new(value)?.to_der()?);
                    let atv = Any::new(Tag::Sequence, atv)?.to_der()?;
                    rdns.extend(Any::new(Tag::Set, atv)?.to_der()?);
                }
                Any::new(ctx(4, true), Any::new(Tag::Sequence, rdns)?.to_der()?)
            }
        }
    }
}

/// The first `len` bits set, as 16 big-endian bytes (an IPv4 mask is the first 4).
fn mask(len: u8) -> [u8; 16] {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
        .to_be_bytes()
}

/// An iPAddress constraint's bytes (address then mask) as a range.
fn ip_range(b: &[u8]) -> Result<Subtree, String> {
    let half = b.len() / 2;
    let addr = match b.len() {
        8 => IpAddr::from(<[u8; 4]>::try_from(&b[..4]).map_err(|e| e.to_string())?),
        32 => IpAddr::from(<[u8; 16]>::try_from(&b[..16]).map_err(|e| e.to_string())?),
        n => return Err(format!("iPAddress constraint of {n} bytes")),
    };
    let bits = &b[half..];
    let len = bits
        .iter()
        .map(|m| m.leading_ones())
        .take_while(|n| *n > 0)
        .sum::<u32>();
    let len = u8::try_from(len).map_err(|e| e.to_string())?;
    if mask(len)[..half] != *bits {
        return Err(format!(
            "iPAddress constraint {addr} with a non-contiguous mask"
        ));
    }
    Ok(Subtree::Ip(addr, len))
}

impl fmt::Display for Subtree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subtree::Dns(s) => write!(f, "DNS:{s}"),
            Subtree::Email(s) => write!(f, "email:{s}"),
            Subtree::Uri(s) => write!(f, "URI:{s}"),
            Subtree::Ip(a, l) => write!(f, "IP:{a}/{l}"),
            Subtree::Directory(parts) => {
                let rdns: Vec<String> = parts
                    .iter()
                    .map(|(a, v)| format!("{}={v}", a.label()))
                    .collect();
                write!(f, "DirName:{}", rdns.join(", "))
            }
        }
    }
}

/// Permitted and excluded subtrees, in the order they are encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameConstraints {
    /// permittedSubtrees.
    pub permitted: Vec<Subtree>,
    /// excludedSubtrees.
    pub excluded: Vec<Subtree>,
}

impl NameConstraints {
    /// The extension value: `NameConstraints ::= SEQUENCE { permittedSubtrees [0]
    /// GeneralSubtrees OPTIONAL, excludedSubtrees [1] GeneralSubtrees OPTIONAL }`, each
    /// `GeneralSubtree` its base alone (minimum 0 is the DEFAULT, no maximum).
    pub fn to_der(&self) -> der::Result<Vec<u8>> {
        let mut body = Vec::new();
        for (number, list) in [(0, &self.permitted), (1, &self.excluded)] {
            if list.is_empty() {
                continue;
            }
            let mut trees = Vec::new();
            for s in list {
                trees.extend(Any::new(Tag::Sequence, s.general_name()?.to_der()?)?.to_der()?);
            }
            let tag = Tag::ContextSpecific {
                constructed: true,
                number: TagNumber::new(number),
            };
            body.extend(Any::new(tag, trees)?.to_der()?);
        }
        Any::new(Tag::Sequence, body)?.to_der()
    }

    /// The critical extension for rcgen.
    pub fn extension(&self) -> der::Result<rcgen::CustomExtension> {
        let mut ext = rcgen::CustomExtension::from_oid_content(OID, self.to_der()?);
        ext.set_criticality(true);
        Ok(ext)
    }

    /// What a parsed certificate's extension says, plus a description of every subtree that
    /// is not one of the forms above.
    pub fn from_parsed(nc: &x509_parser::extensions::NameConstraints<'_>) -> (Self, Vec<String>) {
        let mut odd = Vec::new();
        let mut read = |list: &Option<Vec<x509_parser::extensions::GeneralSubtree<'_>>>| {
            list.iter()
                .flatten()
                .filter_map(|s| Subtree::from_parsed(&s.base).map_err(|e| odd.push(e)).ok())
                .collect()
        };
        let permitted = read(&nc.permitted_subtrees);
        let excluded = read(&nc.excluded_subtrees);
        (
            NameConstraints {
                permitted,
                excluded,
            },
            odd,
        )
    }

    /// [`NameConstraints::from_parsed`] of a certificate's extension; None when it has none
    /// or it does not parse.
    pub fn of_cert(
        cert: &x509_parser::certificate::X509Certificate<'_>,
    ) -> Option<(Self, Vec<String>)> {
        let ext = cert
            .tbs_certificate
            .get_extension_unique(&x509_parser::oid_registry::OID_X509_EXT_NAME_CONSTRAINTS)
            .ok()??;
        match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::NameConstraints(nc) => {
                Some(Self::from_parsed(nc))
            }
            _ => None,
        }
    }
}

impl fmt::Display for NameConstraints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |l: &[Subtree]| {
            l.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(f, "permitted {}", join(&self.permitted))?;
        if !self.excluded.is_empty() {
            write!(f, "; excluded {}", join(&self.excluded))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::FromDer;

    use super::*;

    fn sample() -> NameConstraints {
        NameConstraints {
            permitted: vec![
                Subtree::Dns("acme.od.kiwistack.io".into()),
                Subtree::Email(".acme.od.kiwistack.io".into()),
                Subtree::Uri("acme.od.kiwistack.io".into()),
                Subtree::Directory(vec![
                    (DirAttr::Organization, "KiwiStack".into()),
                    (DirAttr::OrganizationalUnit, "acme".into()),
                ]),
            ],
            excluded: vec![
                Subtree::Ip("0.0.0.0".parse().expect("ip"), 0),
                Subtree::Ip("10.1.0.0".parse().expect("ip"), 17),
                Subtree::Ip("::".parse().expect("ip"), 0),
                Subtree::Ip("fd00::".parse().expect("ip"), 8),
            ],
        }
    }

    #[test]
    fn encodes_and_reads_back_every_form() {
        let nc = sample();
        let der = nc.to_der().expect("encode");
        let (rest, parsed) =
            x509_parser::extensions::NameConstraints::from_der(&der).expect("x509-parser reads it");
        assert!(rest.is_empty());
        let (back, odd) = NameConstraints::from_parsed(&parsed);
        assert!(odd.is_empty(), "{odd:?}");
        assert_eq!(back, nc);
        assert_eq!(
            nc.to_string(),
            "permitted DNS:acme.od.kiwistack.io, email:.acme.od.kiwistack.io, \
             URI:acme.od.kiwistack.io, DirName:O=KiwiStack, OU=acme; excluded IP:0.0.0.0/0, \
             IP:10.1.0.0/17, IP:::/0, IP:fd00::/8"
        );
    }

    #[test]
    fn ip_masks_are_exact() {
        let der = |s: Subtree| s.general_name().expect("encode").value().to_vec();
        assert_eq!(
            der(Subtree::Ip("10.1.0.0".parse().expect("ip"), 17)),
            [10, 1, 0, 0, 255, 255, 128, 0]
        );
        assert_eq!(der(Subtree::Ip("0.0.0.0".parse().expect("ip"), 0)), [0; 8]);
        assert!(ip_range(&[10, 0, 0, 0, 255, 0, 255, 0]).is_err());
        assert!(ip_range(&[10, 0, 0, 0, 255, 0]).is_err());
    }

    #[test]
    fn non_ascii_names_are_refused() {
        let nc = NameConstraints {
            permitted: vec![Subtree::Dns("ä.example".into())],
            excluded: vec![],
        };
        assert!(nc.to_der().is_err());
    }
}
