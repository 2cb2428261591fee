//! `reroot`: a customer-owned root re-signs the intermediate the MSP root issued it (churn
//! hand-over), so every leaf that intermediate already issued chains to the customer's root.
//!
//! The new certificate has the original's subjectPublicKeyInfo, subject DN and subject key
//! identifier byte for byte (a leaf's issuer name and AKI do not change), pathLenConstraint 0,
//! the original's nameConstraints extension byte for byte, in every name form (with
//! `--permit-dns` names of the customer's own appended to its permitted DNS subtrees), this
//! root's AKI, a fresh serial, and a validity inside this root's (notAfter is the original's,
//! clamped to the root's). The plan refuses, before anything is signed: a certificate the MSP
//! root did not sign, an MSP root that is not self-signed, a CRL the MSP root did not sign or
//! whose nextUpdate has passed, a certificate that CRL lists as revoked for keyCompromise,
//! cACompromise, aACompromise or no stated reason, and a certificate that is not CA:TRUE with
//! pathlen 0. The `rerooted` entry records the original's serial and the MSP root's SHA-256.

use std::path::{Path, PathBuf};

use rcgen::CertificateParams;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_X509_EXT_NAME_CONSTRAINTS, OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};
use x509_parser::x509::ReasonCode;

use super::carry::{self, unix, Carried};
use super::{add_file, Operation, Plan};
use crate::algo::PublicKey;
use crate::ca::{Ca, CLOCK_SKEW};
use crate::certpolicy::{self, PolicyOid};
use crate::constraints::{NameConstraints, Subtree};
use crate::error::{Error, Result};
use crate::hooks::{EventData, EventKind};
use crate::ledger::{self, Event};
use crate::policy;
use crate::words::Fingerprint;
use crate::x509::{self, Serial};

/// Parameters for `reroot`: the files as read, and where they came from.
#[derive(Debug, Clone)]
pub struct Reroot {
    /// The MSP-issued intermediate certificate (PEM or DER) and its path.
    pub cert: (PathBuf, Vec<u8>),
    /// The MSP root certificate.
    pub msp_root: (PathBuf, Vec<u8>),
    /// The MSP root's current CRL.
    pub msp_crl: (PathBuf, Vec<u8>),
    /// DNS names of the customer's own to add to the permitted subtrees.
    pub permit_dns: Vec<String>,
    /// Output certificate path.
    pub out: PathBuf,
}

impl Reroot {
    /// Reads the three input files.
    pub fn read(
        cert: &Path,
        msp_root: &Path,
        msp_crl: &Path,
        permit_dns: Vec<String>,
        out: PathBuf,
    ) -> Result<Self> {
        let read = |p: &Path| -> Result<(PathBuf, Vec<u8>)> {
            let bytes = std::fs::read(p).map_err(|e| Error::io(p, e, "check the path"))?;
            Ok((p.to_path_buf(), bytes))
        };
        Ok(Reroot {
            cert: read(cert)?,
            msp_root: read(msp_root)?,
            msp_crl: read(msp_crl)?,
            permit_dns,
            out,
        })
    }
}

/// Reads `(path, bytes)` as a certificate's DER.
pub(crate) fn cert_der(input: &(PathBuf, Vec<u8>)) -> Result<Vec<u8>> {
    let der = x509::decode(&input.1, &["CERTIFICATE"]).map_err(|detail| Error::BadInput {
        path: input.0.clone(),
        detail,
    })?;
    x509::parse_cert(&der).map_err(|detail| Error::BadInput {
        path: input.0.clone(),
        detail,
    })?;
    Ok(der)
}

/// Checks that `cert` is a self-signed CA certificate; returns its key.
pub(crate) fn check_root(path: &Path, cert: &X509Certificate<'_>) -> Result<PublicKey> {
    let bad = |detail: String| Error::NotARoot {
        path: path.to_path_buf(),
        detail,
    };
    let key = x509::cert_key(cert).map_err(|e| bad(format!("its key: {e}")))?;
    if cert.issuer().as_raw() != cert.subject().as_raw() {
        return Err(bad("its issuer is not its subject".into()));
    }
    x509::verify_cert(cert, &key).map_err(|e| bad(format!("it is not self-signed ({e})")))?;
    if !cert.is_ca() {
        return Err(bad(
            "it is not a CA (basicConstraints CA:FALSE or absent)".into()
        ));
    }
    Ok(key)
}

/// What the re-rooted certificate must keep of the original, byte for byte.
struct Kept {
    spki: Vec<u8>,
    subject: Vec<u8>,
    ski: Vec<u8>,
    /// The nameConstraints value expected in the new certificate.
    nc: Option<Vec<u8>>,
}

impl Operation for Reroot {
    fn events(&self) -> &'static [EventKind] {
        &[EventKind::Rerooted]
    }

    fn hook_data(&self) -> EventData {
        let mut data = EventData::default();
        data.sha256
            .insert("original".into(), Fingerprint::of(&self.cert.1).hex());
        data.sha256
            .insert("msp_root".into(), Fingerprint::of(&self.msp_root.1).hex());
        data.sha256
            .insert("msp_crl".into(), Fingerprint::of(&self.msp_crl.1).hex());
        add_file(&mut data, "original", &self.cert.0);
        add_file(&mut data, "msp_root", &self.msp_root.0);
        add_file(&mut data, "msp_crl", &self.msp_crl.0);
        add_file(&mut data, "out", &self.out);
        // The facts below are known once the inputs parse; a plan that fails never runs hooks.
        if let Ok(root) = cert_der(&self.msp_root) {
            data.details
                .insert("msp_root_sha256".into(), Fingerprint::of(&root).hex());
        }
        if let Some(s) = cert_der(&self.cert)
            .ok()
            .and_then(|d| x509::parse_cert(&d).ok().map(|c| c.raw_serial().to_vec()))
        {
            data.details
                .insert("original_serial".into(), Serial::from_der_integer(&s).hex());
        }
        data
    }

    fn plan<'a>(&'a self, ca: &'a Ca, now: OffsetDateTime) -> Result<Plan<'a>> {
        let root_der = cert_der(&self.msp_root)?;
        let root = x509::parse_cert(&root_der).map_err(Error::SelfCheck)?;
        let root_key = check_root(&self.msp_root.0, &root)?;
        if root_der == ca.state().root_der {
            return Err(Error::NotARoot {
                path: self.msp_root.0.clone(),
                detail: "it is this CA's own root, not the MSP's".into(),
            });
        }
        let msp_root_sha256 = Fingerprint::of(&root_der);
        let der = cert_der(&self.cert)?;
        let orig = x509::parse_cert(&der).map_err(Error::SelfCheck)?;
        let not_issued = |detail: String| Error::NotIssuedByMspRoot {
            cert: self.cert.0.clone(),
            msp_root: self.msp_root.0.clone(),
            detail,
        };
        if orig.issuer().as_raw() != root.subject().as_raw() {
            return Err(not_issued(format!(
                "its issuer is `{}`, the MSP root is `{}`",
                orig.issuer(),
                root.subject()
            )));
        }
        x509::verify_cert(&orig, &root_key)
            .map_err(|e| not_issued(format!("its signature does not verify ({e})")))?;
        let original_serial = Serial::from_der_integer(orig.raw_serial());
        check_crl(self, &root, &root_key, &original_serial, now)?;
        let subject_key = check_ca(&self.cert.0, &orig, ca)?;
        let nc = constraints(self, &orig)?;
        let ski = subject_key_id(&orig).ok_or_else(|| Error::NotReRootable {
            cert: self.cert.0.clone(),
            detail: "it has no subjectKeyIdentifier, so its leaves' AKI names no key".into(),
        })?;
        let subject_dn = x509::rcgen_name(orig.subject()).map_err(|m| Error::NotReRootable {
            cert: self.cert.0.clone(),
            detail: format!("its subject: {m}"),
        })?;

        let (root_start, root_end) = ca.root_window();
        let not_before = (now - CLOCK_SKEW).max(unix(root_start));
        let not_after = unix(orig.validity().not_after.timestamp()).min(unix(root_end));
        if not_after <= now {
            return Err(Error::NotReRootable {
                cert: self.cert.0.clone(),
                detail: format!(
                    "it would end at {}, which has passed (the original's or this root's notAfter)",
                    ledger::fmt_time(not_after)
                ),
            });
        }
        let serial = fresh_serial(ca);
        // The tier marker is the original's (none on one issued before tier markers).
        let marker = certpolicy::marked_tier(&orig)
            .map_err(|m| Error::NotReRootable {
                cert: self.cert.0.clone(),
                detail: format!("its certificatePolicies: {m}"),
            })?
            .map(PolicyOid::tier);
        let p = Carried {
            serial: serial.clone(),
            subject: subject_dn.clone(),
            validity: (not_before, not_after),
            nc_der: nc.der.clone(),
            marker: marker.clone(),
            ski: ski.clone(),
        }
        .params()?;

        let summary = summary(
            self,
            &original_serial,
            &subject_dn,
            &msp_root_sha256,
            &p,
            &nc.shown,
        );
        let kept = Kept {
            spki: orig.public_key().raw.to_vec(),
            subject: orig.subject().as_raw().to_vec(),
            ski: ski.clone(),
            nc: nc.der,
        };
        // The SKI is the original's, whichever method the MSP used, and the nameConstraints
        // are encoded as the original's (plus --permit-dns): both are compared byte for byte
        // by `differences`.
        let (build, lint) = carry::build_and_lint(
            ca,
            p,
            subject_key,
            (nc.expected, marker),
            &[
                "subjectKeyIdentifier is not RFC 7093",
                "nameConstraints is not encoded as the policy's",
            ],
            move |c| differences(c, &kept),
        );
        let event_serial = serial.clone();
        let subject = x509::dn_string(&subject_dn);
        let key_id = hex::encode(&ski);
        let record = move |der: &[u8]| {
            let (artifact_sha256, artifact) = ledger::encode_artifact(der);
            Event::Rerooted {
                serial: event_serial,
                original_serial,
                msp_root_sha256: msp_root_sha256.hex(),
                subject,
                not_after: ledger::fmt_time(not_after),
                key_id,
                artifact_sha256,
                artifact,
            }
        };
        Ok(Plan::certificate(
            summary, serial, &self.out, build, lint, record,
        ))
    }
}

/// The MSP CRL must be the MSP root's, current, and must not list `serial` as compromised.
fn check_crl(
    op: &Reroot,
    root: &X509Certificate<'_>,
    root_key: &PublicKey,
    serial: &Serial,
    now: OffsetDateTime,
) -> Result<()> {
    let bad = |detail: String| Error::BadMspCrl {
        crl: op.msp_crl.0.clone(),
        detail,
    };
    let der = x509::decode(&op.msp_crl.1, &["X509 CRL"]).map_err(&bad)?;
    let crl = x509::parse_crl(&der).map_err(&bad)?;
    if crl.issuer().as_raw() != root.subject().as_raw() {
        return Err(bad(format!(
            "its issuer is `{}`, the MSP root is `{}`",
            crl.issuer(),
            root.subject()
        )));
    }
    x509::verify_crl(&crl, root_key)
        .map_err(|e| bad(format!("it is not signed by the MSP root ({e})")))?;
    match crl.next_update() {
        Some(n) if n.timestamp() > now.unix_timestamp() => {}
        Some(n) => {
            return Err(bad(format!(
                "its nextUpdate {} has passed, so it may miss a revocation",
                ledger::fmt_time(unix(n.timestamp()))
            )))
        }
        None => return Err(bad("it has no nextUpdate".into())),
    }
    for r in crl.iter_revoked_certificates() {
        if Serial::from_der_integer(r.raw_serial()) != *serial {
            continue;
        }
        let refused = match r.reason_code().map(|(_, c)| c) {
            None => Some("no reason stated"),
            Some(ReasonCode::Unspecified) => Some("unspecified"),
            Some(ReasonCode::KeyCompromise) => Some("keyCompromise"),
            Some(ReasonCode::CACompromise) => Some("cACompromise"),
            Some(ReasonCode::AACompromise) => Some("aACompromise"),
            Some(_) => None,
        };
        if let Some(reason) = refused {
            return Err(Error::RerootCompromised {
                serial: serial.clone(),
                reason: reason.into(),
            });
        }
    }
    Ok(())
}

/// The original must be a CA with pathLenConstraint 0 and a key this root can certify.
fn check_ca(path: &Path, orig: &X509Certificate<'_>, ca: &Ca) -> Result<PublicKey> {
    let refuse = |detail: String| Error::NotReRootable {
        cert: path.to_path_buf(),
        detail,
    };
    let bc = orig
        .basic_constraints()
        .map_err(|e| refuse(format!("its basicConstraints: {e}")))?;
    match bc.map(|b| (b.value.ca, b.value.path_len_constraint)) {
        None | Some((false, _)) => {
            return Err(refuse(
                "it is not a CA certificate (basicConstraints CA:FALSE or absent)".into(),
            ))
        }
        Some((true, Some(0))) => {}
        Some((true, n)) => {
            return Err(refuse(format!(
                "its pathLenConstraint is {}, not 0",
                n.map_or("absent (unlimited)".to_string(), |n| n.to_string())
            )))
        }
    }
    let key = x509::cert_key(orig).map_err(|e| refuse(format!("its key: {e}")))?;
    if key == *ca.root_key() {
        return Err(refuse("it carries this root's own key".into()));
    }
    Ok(key)
}

fn subject_key_id(c: &X509Certificate<'_>) -> Option<Vec<u8>> {
    match c
        .tbs_certificate
        .get_extension_unique(&OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
        .ok()
        .flatten()
        .map(|e| e.parsed_extension())
    {
        Some(ParsedExtension::SubjectKeyIdentifier(k)) => Some(k.0.to_vec()),
        _ => None,
    }
}

/// The nameConstraints a re-rooted certificate carries: the original's extension, byte for
/// byte, with the `--permit-dns` names appended to its permitted subtrees (so every name form
/// the MSP constrained, DNS, URI, email, directoryName, IP, is carried over as it was).
struct Constraints {
    /// The extension's value (the NameConstraints DER), None when the original has none.
    der: Option<Vec<u8>>,
    /// The subtrees the new certificate must carry, for the linter.
    expected: Option<NameConstraints>,
    /// The subtrees, for the summary.
    shown: String,
}

fn constraints(op: &Reroot, orig: &X509Certificate<'_>) -> Result<Constraints> {
    let refuse = |detail: String| Error::NotReRootable {
        cert: op.cert.0.clone(),
        detail,
    };
    let ext = orig
        .tbs_certificate
        .get_extension_unique(&OID_X509_EXT_NAME_CONSTRAINTS)
        .map_err(|e| refuse(format!("its nameConstraints: {e}")))?;
    let Some(ext) = ext else {
        if let Some(name) = op.permit_dns.first() {
            return Err(refuse(format!(
                "--permit-dns {name}: the original permits every name, and adding a permitted \
                 subtree would stop its leaves for other names from verifying"
            )));
        }
        return Ok(Constraints {
            der: None,
            expected: None,
            shown: "none (as the original)".into(),
        });
    };
    let ParsedExtension::NameConstraints(nc) = ext.parsed_extension() else {
        return Err(refuse("its nameConstraints do not parse".into()));
    };
    let list = |v: &Option<Vec<x509_parser::extensions::GeneralSubtree<'_>>>| {
        v.iter()
            .flatten()
            .map(|s| describe(&s.base))
            .collect::<Vec<_>>()
    };
    let mut permitted_dns: Vec<String> = nc
        .permitted_subtrees
        .iter()
        .flatten()
        .filter_map(|s| match s.base {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect();
    let mut added = Vec::new();
    for name in &op.permit_dns {
        policy::check_dns_name(name).map_err(|m| refuse(format!("--permit-dns {name}: {m}")))?;
        if permitted_dns.is_empty() {
            return Err(refuse(format!(
                "--permit-dns {name}: the original permits every DNS name, and adding a \
                 permitted subtree would stop its leaves for other names from verifying"
            )));
        }
        if !permitted_dns.contains(name) {
            permitted_dns.push(name.clone());
            added.push(name.as_str());
        }
    }
    let (mut expected, _) = NameConstraints::from_parsed(nc);
    expected
        .permitted
        .extend(added.iter().map(|d| Subtree::Dns(d.to_string())));
    let der = append_dns(ext.value, &added)
        .ok_or_else(|| refuse("its nameConstraints are not well-formed DER".into()))?;
    let mut permitted = list(&nc.permitted_subtrees);
    permitted.extend(added.iter().map(|d| format!("DNS:{d}")));
    let shown = format!(
        "permitted {}; excluded {}",
        permitted.join(", "),
        list(&nc.excluded_subtrees).join(", ")
    );
    Ok(Constraints {
        der: Some(der),
        expected: Some(expected),
        shown,
    })
}

fn describe(n: &GeneralName<'_>) -> String {
    match n {
        GeneralName::DNSName(d) => format!("DNS:{d}"),
        GeneralName::RFC822Name(e) => format!("email:{e}"),
        GeneralName::URI(u) => format!("URI:{u}"),
        GeneralName::DirectoryName(d) => format!("dirName:{d}"),
        GeneralName::IPAddress(b) => format!("IP:{}", hex::encode(b)),
        other => format!("{other:?}"),
    }
}

/// A DER TLV: tag, content, and what follows it.
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |l, b| (l << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Encodes a DER TLV.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// NameConstraints DER with a dNSName GeneralSubtree appended to permittedSubtrees for each
/// of `names`; the other fields are kept byte for byte (the input unchanged without names).
fn append_dns(nc: &[u8], names: &[&str]) -> Option<Vec<u8>> {
    let (0x30, mut fields, &[]) = read_tlv(nc)? else {
        return None;
    };
    if names.is_empty() {
        return Some(nc.to_vec());
    }
    let mut body = Vec::new();
    while !fields.is_empty() {
        let (tag, content, rest) = read_tlv(fields)?;
        if tag == 0xa0 {
            let mut permitted = content.to_vec();
            for name in names {
                // GeneralSubtree ::= SEQUENCE { base GeneralName } with base [2] dNSName.
                permitted.extend(tlv(0x30, &tlv(0x82, name.as_bytes())));
            }
            body.extend(tlv(0xa0, &permitted));
        } else {
            body.extend_from_slice(&fields[..fields.len() - rest.len()]);
        }
        fields = rest;
    }
    Some(tlv(0x30, &body))
}

/// What the re-rooted certificate fails to keep of the original.
fn differences(c: &X509Certificate<'_>, kept: &Kept) -> Vec<String> {
    let mut f = Vec::new();
    if c.public_key().raw != kept.spki.as_slice() {
        f.push("subjectPublicKeyInfo differs from the original's".into());
    }
    if c.subject().as_raw() != kept.subject.as_slice() {
        f.push("subject DN bytes differ from the original's".into());
    }
    if subject_key_id(c).as_deref() != Some(kept.ski.as_slice()) {
        f.push("subjectKeyIdentifier differs from the original's".into());
    }
    if !carry::keeps_name_constraints(c, kept.nc.as_deref()) {
        f.push("nameConstraints are not the original's (plus --permit-dns), critical".into());
    }
    f
}

/// A random serial no certificate of this CA has.
pub(super) fn fresh_serial(ca: &Ca) -> Serial {
    loop {
        let s = Serial::random();
        let st = ca.state();
        if !st.issued.contains_key(&s) && st.customer_owned(&s).is_none() {
            return s;
        }
    }
}

fn summary(
    op: &Reroot,
    original: &Serial,
    subject: &rcgen::DistinguishedName,
    msp_root: &Fingerprint,
    p: &CertificateParams,
    constraints: &str,
) -> String {
    let mut s = String::from("Re-root an MSP-issued intermediate under this root\n");
    s.push_str(&format!(
        "  original:         {} (serial {original})\n",
        op.cert.0.display()
    ));
    s.push_str(&format!(
        "  subject (kept):   {}\n",
        x509::dn_string(subject)
    ));
    s.push_str(&format!("  MSP root SHA-256: {}\n", msp_root.for_reading()));
    s.push_str(&format!(
        "  validity:         {} to {}\n",
        ledger::fmt_time(p.not_before),
        ledger::fmt_time(p.not_after)
    ));
    s.push_str(&format!("  name constraints: {constraints}\n"));
    if !op.permit_dns.is_empty() {
        s.push_str(&format!(
            "  added (customer): {}\n",
            op.permit_dns.join(", ")
        ));
    }
    s.push_str("  basicConstraints: CA:TRUE, pathlen:0 (critical); same key, subject and SKI\n");
    s
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use time::{Duration, OffsetDateTime};

    use super::super::handover::Handover;
    use super::super::init::{init_org, BackendSpec};
    use super::super::revoke::Revoke;
    use super::super::tests::{crl_reason, csr_for, fresh, go, ledger_text, request, yes};
    use super::super::Ceremony;
    use super::*;
    use crate::algo::KeyAlgorithm;
    use crate::backend::soft::SoftKey;
    use crate::ledger::{Reason, Recorded};

    fn customer_ca(tmp: &Path, now: OffsetDateTime) -> PathBuf {
        let dir = tmp.join("customer");
        let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/customer-root.yaml");
        let cb = yes();
        let c = Ceremony::new(&cb, now);
        init_org(&dir, &policy, Some("Acme GmbH"), &BackendSpec::soft(), &c).expect("init");
        dir
    }

    fn reroot(tmp: &Path, msp: &Path, cert: &Path, crl: &Path, dns: &[&str], out: &str) -> Reroot {
        Reroot::read(
            cert,
            &msp.join("root.pem"),
            crl,
            dns.iter().map(|d| d.to_string()).collect(),
            tmp.join(out),
        )
        .expect("read")
    }

    fn der(path: &Path) -> Vec<u8> {
        pem::parse(std::fs::read(path).expect("read"))
            .expect("pem")
            .into_contents()
    }

    #[test]
    fn appended_dns_subtrees_keep_every_other_byte() {
        let names: Vec<String> = (0..12).map(|i| format!("host{i}.example.com")).collect();
        let mut permitted: Vec<u8> = names
            .iter()
            .flat_map(|n| tlv(0x30, &tlv(0x82, n.as_bytes())))
            .collect();
        // A URI subtree, which rcgen could not write: carried over as it is.
        permitted.extend(tlv(0x30, &tlv(0x86, b"spiffe://acme")));
        let excluded = tlv(0xa1, &tlv(0x30, &tlv(0x87, &[0, 0, 0, 0, 0, 0, 0, 0])));
        let nc = tlv(0x30, &[tlv(0xa0, &permitted), excluded.clone()].concat());
        assert!(nc.len() > 255, "long-form lengths are exercised");
        assert_eq!(append_dns(&nc, &[]).as_deref(), Some(nc.as_slice()));
        let out = append_dns(&nc, &["acme.example", "b.example"]).expect("appended");
        let (tag, body, rest) = read_tlv(&out).expect("sequence");
        assert_eq!((tag, rest), (0x30, &[][..]));
        let (tag, got, after) = read_tlv(body).expect("permitted");
        assert_eq!(tag, 0xa0);
        assert_eq!(&got[..permitted.len()], permitted.as_slice());
        assert_eq!(
            &got[permitted.len()..],
            [
                tlv(0x30, &tlv(0x82, b"acme.example")),
                tlv(0x30, &tlv(0x82, b"b.example"))
            ]
            .concat()
        );
        assert_eq!(after, excluded.as_slice());
        assert!(append_dns(&nc[..nc.len() - 1], &["x.example"]).is_none());
        assert!(append_dns(&[0x31, 0], &["x.example"]).is_none());
    }

    #[test]
    fn customer_root_names_only_the_customer_and_refuses_a_missing_or_misplaced_org() {
        let now = OffsetDateTime::now_utc();
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = customer_ca(tmp.path(), now);
        let root = der(&dir.join("root.pem"));
        let cert = x509::parse_cert(&root).expect("root");
        assert_eq!(
            cert.subject().to_string(),
            "O=Acme GmbH, CN=Acme GmbH Root CA"
        );
        let text = String::from_utf8_lossy(&root).to_lowercase();
        assert!(!text.contains("kiwistack"), "no KiwiStack name in the root");
        assert!(std::fs::read_dir(dir.join("policies"))
            .expect("policies")
            .all(|f| f.expect("entry").file_name() == "root.yaml"));
        let cb = yes();
        let c = Ceremony::new(&cb, now);
        let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        for (policy, org) in [("customer-root.yaml", None), ("root.yaml", Some("Acme"))] {
            let d = tmp.path().join(policy);
            let err = init_org(&d, &policies.join(policy), org, &BackendSpec::soft(), &c)
                .expect_err("refused");
            assert!(matches!(err, Error::BadOrg { .. }), "{err}");
            assert!(!d.exists());
        }
        let long = "x".repeat(57);
        let err = init_org(
            &tmp.path().join("long"),
            &policies.join("customer-root.yaml"),
            Some(&long),
            &BackendSpec::soft(),
            &c,
        )
        .expect_err("too long");
        assert!(err.to_string().contains("at most 56"), "{err}");
    }

    #[test]
    fn reroot_keeps_key_subject_and_ski_and_handover_revokes_as_affiliation_changed() {
        let now = OffsetDateTime::now_utc();
        let (tmp, msp) = fresh(now);
        let t = tmp.path();
        let customer = customer_ca(t, now);
        let key = SoftKey::generate(KeyAlgorithm::EcdsaP256);
        let csr = csr_for(&key);
        let issued = go(&msp, &request(&tmp, &csr, "acme", "acme.pem"), &yes(), now)
            .expect("sign")
            .serial
            .expect("serial");
        let crl = t.join("msp-1.pem");
        go(
            &msp,
            &super::super::crl::Crl { out: crl.clone() },
            &yes(),
            now,
        )
        .expect("crl");

        // Refusals first: nothing written, nothing recorded.
        let (other_tmp, other) = fresh(now);
        let foreign = go(
            &other,
            &request(
                &other_tmp,
                &csr_for(&SoftKey::generate(KeyAlgorithm::EcdsaP256)),
                "acme",
                "f.pem",
            ),
            &yes(),
            now,
        );
        foreign.expect("foreign sign");
        let other_crl = t.join("other-crl.pem");
        go(
            &other,
            &super::super::crl::Crl {
                out: other_crl.clone(),
            },
            &yes(),
            now,
        )
        .expect("crl");
        let before = ledger_text(&customer);
        let cases: Vec<(Reroot, &str)> = vec![
            (
                reroot(
                    t,
                    &msp,
                    &other_tmp.path().join("f.pem"),
                    &crl,
                    &[],
                    "x1.pem",
                ),
                "foreign",
            ),
            (
                reroot(t, &msp, &t.join("acme.pem"), &other_crl, &[], "x2.pem"),
                "foreign CRL",
            ),
            (
                reroot(t, &msp, &msp.join("root.pem"), &crl, &[], "x3.pem"),
                "pathlen 1",
            ),
            (
                reroot(t, &msp, &t.join("acme.pem"), &crl, &["Bad_Name"], "x4.pem"),
                "bad name",
            ),
        ];
        for (op, why) in &cases {
            let err = go(&customer, op, &yes(), now).expect_err(why);
            let ok = match *why {
                "foreign" => matches!(err, Error::NotIssuedByMspRoot { .. }),
                "foreign CRL" => matches!(err, Error::BadMspCrl { .. }),
                _ => matches!(err, Error::NotReRootable { .. }),
            };
            assert!(ok, "{why}: {err}");
            assert!(!op.out.exists(), "{why}");
        }
        let late = now + Duration::days(181);
        let stale = reroot(t, &msp, &t.join("acme.pem"), &crl, &[], "x5.pem");
        let err = go(&customer, &stale, &yes(), late).expect_err("stale CRL");
        assert!(matches!(err, Error::BadMspCrl { .. }), "{err}");
        assert_eq!(before, ledger_text(&customer));

        // The re-root.
        let op = reroot(
            t,
            &msp,
            &t.join("acme.pem"),
            &crl,
            &["acme.example"],
            "rerooted.pem",
        );
        let o = go(&customer, &op, &yes(), now).expect("reroot");
        let (orig_der, new_der) = (der(&t.join("acme.pem")), der(&op.out));
        let (orig, new) = (
            x509::parse_cert(&orig_der).expect("orig"),
            x509::parse_cert(&new_der).expect("new"),
        );
        assert_eq!(orig.public_key().raw, new.public_key().raw);
        assert_eq!(orig.subject().as_raw(), new.subject().as_raw());
        assert_eq!(subject_key_id(&orig), subject_key_id(&new));
        let customer_ca = Ca::open(&customer).expect("open");
        assert_eq!(new.issuer().as_raw(), customer_ca.root_subject_raw());
        let bc = new.basic_constraints().expect("bc").expect("bc");
        assert_eq!((bc.value.ca, bc.value.path_len_constraint), (true, Some(0)));
        let nc = new.name_constraints().expect("nc").expect("nc");
        let permitted: Vec<String> = nc
            .value
            .permitted_subtrees
            .iter()
            .flatten()
            .map(|s| format!("{:?}", s.base))
            .collect();
        assert_eq!(
            permitted,
            [
                "DNSName(\"acme.od.kiwistack.io\")",
                "RFC822Name(\"acme.od.kiwistack.io\")",
                "RFC822Name(\".acme.od.kiwistack.io\")",
                "URI(\"acme.od.kiwistack.io\")",
                "URI(\".acme.od.kiwistack.io\")",
                "DNSName(\"acme.example\")"
            ]
        );
        assert_eq!(nc.value.excluded_subtrees.as_ref().map(Vec::len), Some(2));
        assert!(new.validity().not_after.timestamp() <= customer_ca.root_window().1);
        let last: serde_json::Value =
            serde_json::from_str(ledger_text(&customer).lines().last().expect("entry"))
                .expect("json");
        let e = &last["event"]["rerooted"];
        assert_eq!(e["original_serial"], issued.hex());
        assert_eq!(
            e["msp_root_sha256"],
            Fingerprint::of(&der(&msp.join("root.pem"))).hex()
        );
        let serial = o.serial.expect("serial");
        let again = t.join("again.pem");
        customer_ca
            .export(&Recorded::Certificate(serial.clone()), &again)
            .expect("export");
        assert_eq!(
            std::fs::read(&again).expect("a"),
            std::fs::read(&op.out).expect("b")
        );
        crate::ca::verify_ledger(&customer, None).expect("the customer ledger verifies");
        let soon = customer_ca.expiring(now, 400);
        assert_eq!(soon.len(), 1, "issued for 365 days");
        assert_eq!(
            (soon[0].serial.as_str(), soon[0].origin),
            (serial.hex().as_str(), "rerooted")
        );
        assert!(customer_ca.expiring(now, 300).is_empty());

        // The MSP hands over: handed_over, revoked (affiliationChanged), crl_issued.
        let bad_roots = [msp.join("root.pem"), t.join("acme.pem")];
        for (i, bad) in bad_roots.iter().enumerate() {
            let h = Handover::read(issued.clone(), bad, t.join(format!("h{i}.pem"))).expect("read");
            let err = go(&msp, &h, &yes(), now).expect_err("not a new root");
            assert!(matches!(err, Error::NotARoot { .. }), "{err}");
        }
        let h = Handover::read(
            issued.clone(),
            &customer.join("root.pem"),
            t.join("msp-2.pem"),
        )
        .expect("read");
        go(&msp, &h, &yes(), now).expect("handover");
        assert_eq!(
            crl_reason(&t.join("msp-2.pem"), &issued),
            Some(Reason::AffiliationChanged.rcgen() as u8)
        );
        let text = ledger_text(&msp);
        let names: Vec<String> = text
            .lines()
            .rev()
            .take(3)
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json");
                v["event"]
                    .as_object()
                    .expect("event")
                    .keys()
                    .next()
                    .expect("name")
                    .clone()
            })
            .collect();
        assert_eq!(names, ["crl_issued", "revoked", "handed_over"]);
        assert!(text.contains(&Fingerprint::of(&der(&customer.join("root.pem"))).hex()));
        crate::ca::verify_ledger(&msp, None).expect("the MSP ledger verifies");
        // Not a compromise: the key may come back for the same customer, and the CRL's
        // affiliationChanged does not stop a re-root.
        go(&msp, &request(&tmp, &csr, "acme", "back.pem"), &yes(), now).expect("re-sign");
        let again = reroot(
            t,
            &msp,
            &t.join("acme.pem"),
            &t.join("msp-2.pem"),
            &[],
            "r2.pem",
        );
        go(&customer, &again, &yes(), now).expect("affiliationChanged is no compromise");
        let nc_value = |path: &Path| {
            let der = der(path);
            let c = x509::parse_cert(&der).expect("cert");
            let ext = c
                .tbs_certificate
                .get_extension_unique(&OID_X509_EXT_NAME_CONSTRAINTS);
            ext.expect("unique")
                .expect("nameConstraints")
                .value
                .to_vec()
        };
        assert_eq!(
            nc_value(&again.out),
            nc_value(&t.join("acme.pem")),
            "without --permit-dns the original's nameConstraints, byte for byte"
        );
        // A compromise is: keyCompromise on the MSP CRL refuses the re-root.
        let kc = Revoke {
            serial: issued.clone(),
            reason: Reason::KeyCompromise,
            out: t.join("msp-3.pem"),
        };
        go(&msp, &kc, &yes(), now).expect("affiliationChanged becomes keyCompromise");
        let before = ledger_text(&customer);
        let op = reroot(
            t,
            &msp,
            &t.join("acme.pem"),
            &t.join("msp-3.pem"),
            &[],
            "r3.pem",
        );
        let err = go(&customer, &op, &yes(), now).expect_err("compromised");
        assert!(matches!(err, Error::RerootCompromised { .. }), "{err}");
        assert!(!op.out.exists());
        assert_eq!(before, ledger_text(&customer));
    }
}
