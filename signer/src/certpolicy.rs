//! The tier marker: a certificatePolicies extension (RFC 5280 4.2.1.4) naming the tier's
//! policy OID, so the root's signature covers the tier an intermediate was issued for.
//!
//! The three tier policies differ only in `tier:`, so without a marker nothing in an issued
//! intermediate says its tier. Each tier policy names an OID under KiwiStack's arc
//! ([`KIWISTACK_ARC`]); the tier markers are `KIWISTACK_ARC.1.n` ([`PolicyOid::tier`]).
//! Intermediates carry it as a non-critical extension holding that one OID without
//! qualifiers. The assignment lives here as well as in the policy files because `ledger
//! verify` and `kiwictl intermediate install` read a certificate's tier without any policy file.
//!
//! KiwiStack has no IANA Private Enterprise Number, so its arc is minted from one UUID, as
//! anyone may without registration. Not in the ITU-T X.667 form (`2.25.<the UUID as one
//! 128-bit integer>`): an arc that large makes pkilint fail to decode the certificate and Go
//! before 1.22 refuse to parse it at all (policies/README.md, "Tier markers"). The same UUID
//! is written under Microsoft's arc for GUID-derived OIDs, 1.2.840.113556.1.8000.2554, as
//! seven arcs of at most 24 bits. OIDs are still read whatever their arcs' size (they are
//! kept as DER content octets, since `const-oid`, the `der` crate's OID type, and rcgen stop
//! at 32 or 64 bits); the extension's SEQUENCEs are written with `der` as in
//! [`crate::constraints`].

use std::fmt;

use der::asn1::Any;
use der::{Decode, Encode, Reader, SliceReader, Tag, Tagged};
use x509_parser::certificate::X509Certificate;

use crate::slug::Tier;

/// The certificatePolicies extension's OID (2.5.29.32).
pub const OID: &[u64] = &[2, 5, 29, 32];

/// KiwiStack's UUID, generated once (2026-12-04) to name its OID arc.
pub const KIWISTACK_UUID: &str = "c8d9212b-1c69-4376-b137-c068a7dc0a54";

/// KiwiStack's OID arc: [`KIWISTACK_UUID`] under 1.2.840.113556.1.8000.2554, its hex digits
/// split 4-4-4-4-4-6-6 into decimal arcs (see policies/README.md).
pub const KIWISTACK_ARC: &str =
    "1.2.840.113556.1.8000.2554.51417.8491.7273.17270.45367.12609703.14420564";

/// The arc of the tier markers, under [`KIWISTACK_ARC`]: `.1` then 1, 2, 3 for core, mesh, fleet.
pub const TIER_ARC: &str =
    "1.2.840.113556.1.8000.2554.51417.8491.7273.17270.45367.12609703.14420564.1";

/// A certificate policy OID, any size of arc: dotted text and DER content octets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOid {
    dotted: String,
    der: Vec<u8>,
}

impl PolicyOid {
    /// Parses dotted decimal (`1.3.6.1.4.1.99999.1`): at least two arcs, the first 0, 1 or 2 (the
    /// second at most 39 under 0 and 1), each a decimal number below 2^128 without leading zeros.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("`{s}` is not an OID: {why}");
        let mut arcs = Vec::new();
        for a in s.split('.') {
            if a.is_empty() || !a.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("each arc is a decimal number, dot-separated"));
            }
            if a.len() > 1 && a.starts_with('0') {
                return Err(bad("an arc has a leading zero"));
            }
            arcs.push(
                a.parse::<u128>()
                    .map_err(|_| bad("an arc is 2^128 or more"))?,
            );
        }
        let (first, second) = match arcs[..] {
            [f, s, ..] => (f, s),
            _ => return Err(bad("it needs at least two arcs")),
        };
        if first > 2 || (first < 2 && second > 39) {
            return Err(bad("it must begin 0.0-39, 1.0-39 or 2.x"));
        }
        let lead = (first * 40)
            .checked_add(second)
            .ok_or_else(|| bad("the second arc is too large"))?;
        let mut der = Vec::new();
        for n in std::iter::once(lead).chain(arcs[2..].iter().copied()) {
            let mut groups = vec![(n & 0x7f) as u8];
            let mut rest = n >> 7;
            while rest > 0 {
                groups.push((rest & 0x7f) as u8 | 0x80);
                rest >>= 7;
            }
            der.extend(groups.iter().rev());
        }
        Ok(PolicyOid {
            dotted: s.to_string(),
            der,
        })
    }

    /// Reads an OID's DER content octets (minimal base-128 subidentifiers below 2^128).
    pub fn from_der_content(bytes: &[u8]) -> Result<Self, String> {
        let mut subs = Vec::new();
        let mut n: u128 = 0;
        let mut fresh = true;
        for b in bytes {
            if fresh && *b == 0x80 {
                return Err("an OID subidentifier is not minimally encoded".into());
            }
            n = n
                .checked_mul(128)
                .map(|v| v | u128::from(b & 0x7f))
                .ok_or("an OID arc is 2^128 or more")?;
            fresh = b & 0x80 == 0;
            if fresh {
                subs.push(n);
                n = 0;
            }
        }
        let Some((&lead, rest)) = subs.split_first().filter(|_| fresh) else {
            return Err("the OID is empty or truncated".into());
        };
        let (first, second) = match lead {
            0..=39 => (0, lead),
            40..=79 => (1, lead - 40),
            _ => (2, lead - 80),
        };
        let dotted = [first, second]
            .iter()
            .chain(rest)
            .map(u128::to_string)
            .collect::<Vec<_>>()
            .join(".");
        Ok(PolicyOid {
            dotted,
            der: bytes.to_vec(),
        })
    }

    /// The marker of `tier`: [`TIER_ARC`]`.1` (core), `.2` (mesh), `.3` (fleet).
    pub fn tier(tier: Tier) -> Self {
        let n = match tier {
            Tier::Core => 1,
            Tier::Mesh => 2,
            Tier::Fleet => 3,
        };
        // TIER_ARC is a valid OID and a small last arc keeps it one.
        PolicyOid::parse(&format!("{TIER_ARC}.{n}"))
            .unwrap_or_else(|e| unreachable!("tier marker: {e}"))
    }

    /// The tier this OID marks, if it is a tier marker.
    pub fn marked_tier(&self) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| *self == PolicyOid::tier(*t))
    }

    /// Whether the OID lies under the dotted arc `arc` (and is not the arc itself).
    pub fn is_under(&self, arc: &str) -> bool {
        self.dotted
            .strip_prefix(arc)
            .is_some_and(|rest| rest.starts_with('.'))
    }

    /// The extension value: `certificatePolicies ::= SEQUENCE { PolicyInformation ::=
    /// SEQUENCE { policyIdentifier } }`, this OID alone, without qualifiers.
    pub fn extension_der(&self) -> der::Result<Vec<u8>> {
        let id = Any::new(Tag::ObjectIdentifier, self.der.clone())?.to_der()?;
        let info = Any::new(Tag::Sequence, id)?.to_der()?;
        Any::new(Tag::Sequence, info)?.to_der()
    }

    /// The non-critical extension for rcgen.
    pub fn extension(&self) -> der::Result<rcgen::CustomExtension> {
        let mut ext = rcgen::CustomExtension::from_oid_content(OID, self.extension_der()?);
        ext.set_criticality(false);
        Ok(ext)
    }
}

impl fmt::Display for PolicyOid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dotted)
    }
}

/// The policy OIDs a certificatePolicies extension value lists, and whether any carries
/// qualifiers.
pub fn read_extension(value: &[u8]) -> Result<(Vec<PolicyOid>, bool), String> {
    let bad = |e: der::Error| format!("certificatePolicies does not parse: {e}");
    let outer = Any::from_der(value).map_err(bad)?;
    if outer.tag() != Tag::Sequence {
        return Err("certificatePolicies is not a SEQUENCE".into());
    }
    let mut oids = Vec::new();
    let mut qualified = false;
    let mut infos = SliceReader::new(outer.value()).map_err(bad)?;
    while !infos.is_finished() {
        let info: Any = infos.decode().map_err(bad)?;
        let mut fields = SliceReader::new(info.value()).map_err(bad)?;
        let id: Any = fields.decode().map_err(bad)?;
        if info.tag() != Tag::Sequence || id.tag() != Tag::ObjectIdentifier {
            return Err("certificatePolicies holds something other than a policy OID".into());
        }
        oids.push(PolicyOid::from_der_content(id.value())?);
        qualified |= !fields.is_finished();
    }
    Ok((oids, qualified))
}

/// The tier a certificate is marked with: `None` when it carries no tier marker (issued
/// before tier markers); an error when its certificatePolicies does not parse, lists several
/// tier markers, or lists an OID under [`TIER_ARC`] that marks no tier.
pub fn marked_tier(cert: &X509Certificate<'_>) -> Result<Option<Tier>, String> {
    let oid = x509_parser::oid_registry::OID_X509_EXT_CERTIFICATE_POLICIES;
    let Some(ext) = cert.extensions().iter().find(|e| e.oid == oid) else {
        return Ok(None);
    };
    let (oids, _) = read_extension(ext.value)?;
    let mut tiers = Vec::new();
    for o in oids.iter().filter(|o| o.is_under(TIER_ARC)) {
        tiers.push(o.marked_tier().ok_or_else(|| {
            format!("policy OID {o} is under KiwiStack's tier arc but marks no tier")
        })?);
    }
    match tiers[..] {
        [] => Ok(None),
        [t] => Ok(Some(t)),
        _ => Err(format!(
            "it carries the markers of several tiers ({})",
            tiers
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_arcs_encode_and_read_back() {
        // X.667's own example, octets as `openssl asn1parse -genstr OID:...` encodes it.
        let x667 = PolicyOid::parse("2.25.329800735698586629295641978511506172918").expect("oid");
        assert_eq!(
            hex::encode(&x667.der),
            "6983f09da7ebcfdee0c7a1a7b2c0948cc8f9d776"
        );
        for t in Tier::ALL {
            let o = PolicyOid::tier(t);
            assert_eq!(PolicyOid::from_der_content(&o.der), Ok(o.clone()));
            assert_eq!(o.marked_tier(), Some(t));
            assert!(o.is_under(KIWISTACK_ARC) && o.is_under(TIER_ARC));
        }
        assert_eq!(
            PolicyOid::tier(Tier::Mesh).to_string(),
            format!("{KIWISTACK_ARC}.1.2")
        );
        let rsa = PolicyOid::parse("1.2.840.113549").expect("oid");
        assert_eq!(rsa.der, [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]);
        assert!(!rsa.is_under(KIWISTACK_ARC));
        // An arc is whole: a string prefix of the last arc is another arc.
        let shorter = &KIWISTACK_ARC[..KIWISTACK_ARC.len() - 1];
        assert!(!PolicyOid::tier(Tier::Core).is_under(shorter));
    }

    #[test]
    fn the_arc_is_kiwistacks_uuid_in_small_arcs() {
        let hex = KIWISTACK_UUID.replace('-', "");
        let mut arcs = Vec::new();
        let mut at = 0;
        for width in [4, 4, 4, 4, 4, 6, 6] {
            let n = u32::from_str_radix(&hex[at..at + width], 16).expect("hex");
            arcs.push(n.to_string());
            at += width;
        }
        assert_eq!(
            KIWISTACK_ARC,
            format!("1.2.840.113556.1.8000.2554.{}", arcs.join("."))
        );
        assert_eq!(TIER_ARC, format!("{KIWISTACK_ARC}.1"));
        // Every subidentifier fits 28 bits (four base-128 octets), which every verifier handles.
        for t in Tier::ALL {
            let der = PolicyOid::tier(t).der;
            let mut run = 0;
            for b in der {
                run = if b & 0x80 != 0 { run + 1 } else { 0 };
                assert!(run < 4, "{t}: a subidentifier over 28 bits");
            }
        }
    }

    #[test]
    fn malformed_oids_are_refused() {
        for s in ["", "2", "2..1", "3.1", "1.40", "2.01", "2.x", "2.25.-1"] {
            assert!(PolicyOid::parse(s).is_err(), "{s}");
        }
        let huge = format!("2.25.{}", u128::MAX);
        assert!(PolicyOid::parse(&huge).is_ok());
        assert!(PolicyOid::parse(&format!("{huge}0")).is_err());
        assert!(PolicyOid::from_der_content(&[0x80, 0x01]).is_err());
        assert!(PolicyOid::from_der_content(&[0x2a, 0x86]).is_err());
        assert!(PolicyOid::from_der_content(&[]).is_err());
    }

    #[test]
    fn the_extension_lists_one_oid_without_qualifiers() {
        let o = PolicyOid::tier(Tier::Fleet);
        let der = o.extension_der().expect("encode");
        assert_eq!(read_extension(&der), Ok((vec![o.clone()], false)));
        // A qualifier after the OID (an empty SEQUENCE) is seen.
        let id = Any::new(Tag::ObjectIdentifier, o.der.clone())
            .and_then(|a| a.to_der())
            .expect("oid");
        let mut body = id.clone();
        body.extend([0x30, 0x00]);
        let info = Any::new(Tag::Sequence, body)
            .and_then(|a| a.to_der())
            .expect("info");
        let ext = Any::new(Tag::Sequence, info)
            .and_then(|a| a.to_der())
            .expect("ext");
        assert_eq!(read_extension(&ext), Ok((vec![o], true)));
        assert!(read_extension(&id).is_err());
    }
}
