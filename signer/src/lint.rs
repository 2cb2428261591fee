//! RFC 5280 checks on every certificate and CRL before it is signed for real.
//!
//! The pipeline builds each artifact once with a throwaway key of the root's algorithm, lints
//! that (so linting never asks the hardware for a signature), then signs the same TBS with the
//! root key and lints again. A finding is a refusal: nothing is written.

use std::collections::HashSet;

use x509_parser::certificate::{TbsCertificate, X509Certificate};
use x509_parser::extensions::ParsedExtension;
use x509_parser::extensions::X509Extension;
use x509_parser::oid_registry::Oid;
use x509_parser::oid_registry::{
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_BASIC_CONSTRAINTS,
    OID_X509_EXT_CERTIFICATE_POLICIES, OID_X509_EXT_KEY_USAGE, OID_X509_EXT_NAME_CONSTRAINTS,
    OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::X509Version;

use crate::algo::PublicKey;
use crate::certpolicy::{self, PolicyOid};
use crate::constraints::NameConstraints;
use crate::policy::KeyUsage;

/// What a CA certificate must say, from policy and the issuer.
#[derive(Debug, Clone)]
pub struct CaExpectations<'a> {
    /// Raw DER of the issuer's subject name.
    pub issuer_name: &'a [u8],
    /// The issuer's key identifier (AKI must equal it).
    pub issuer_key_id: &'a [u8],
    /// The issuer's validity window (UNIX seconds); the certificate must fit inside.
    pub issuer_window: (i64, i64),
    /// The subject's key.
    pub subject_key: &'a PublicKey,
    /// Required pathLenConstraint.
    pub path_len: Option<u8>,
    /// Key usages that must be set, and no others.
    pub key_usages: &'a [KeyUsage],
    /// The nameConstraints the certificate must carry, exactly (None: the root, which
    /// carries none).
    pub name_constraints: Option<&'a NameConstraints>,
    /// The tier's policy OID, the certificatePolicies extension's only entry (None: the root,
    /// or an intermediate issued before tier markers, which carry no certificatePolicies).
    pub certificate_policy: Option<&'a PolicyOid>,
}

/// Lints a CA certificate; returns every finding.
pub fn lint_ca_cert(cert: &X509Certificate<'_>, want: &CaExpectations<'_>) -> Vec<String> {
    let mut f = Vec::new();
    let tbs = &cert.tbs_certificate;
    if tbs.version != X509Version::V3 {
        f.push("version is not v3".into());
    }
    let serial = tbs.raw_serial();
    if serial.is_empty()
        || serial.len() > 20
        || serial[0] & 0x80 != 0
        || serial.iter().all(|b| *b == 0)
    {
        f.push("serial must be a positive integer of at most 20 octets (RFC 5280 4.1.2.2)".into());
    }
    if tbs.signature != cert.signature_algorithm {
        f.push("TBS signature algorithm differs from the outer one (4.1.1.2)".into());
    }
    if tbs.issuer.as_raw() != want.issuer_name {
        f.push("issuer name is not byte-identical to the root's subject".into());
    }
    if tbs.subject.iter().next().is_none() {
        f.push("subject is empty".into());
    }
    let (nb, na) = (
        tbs.validity.not_before.timestamp(),
        tbs.validity.not_after.timestamp(),
    );
    if nb >= na {
        f.push("notBefore is not before notAfter".into());
    }
    if nb < want.issuer_window.0 || na > want.issuer_window.1 {
        f.push("validity is not inside the root's validity".into());
    }
    if tbs.subject_pki.raw != want.subject_key.spki_der() {
        f.push("subjectPublicKeyInfo is not the requested key's".into());
    }
    let mut seen = HashSet::new();
    for ext in tbs.extensions() {
        if !seen.insert(ext.oid.to_id_string()) {
            f.push(format!("extension {} appears twice (4.2)", ext.oid));
        }
        if let ParsedExtension::UnsupportedExtension { .. } = ext.parsed_extension() {
            if ext.critical {
                f.push(format!("unknown critical extension {}", ext.oid));
            }
        }
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(_) => {
                f.push("a CA certificate here carries no SAN".into())
            }
            ParsedExtension::ExtendedKeyUsage(_) => {
                f.push("a CA certificate here carries no EKU".into())
            }
            _ => {}
        }
    }
    let get = |oid: &Oid<'static>| ext_of(tbs, oid);
    match get(&OID_X509_EXT_BASIC_CONSTRAINTS).map(|e| (e.critical, e.parsed_extension())) {
        Some((true, ParsedExtension::BasicConstraints(bc))) => {
            if !bc.ca {
                f.push("basicConstraints cA is not TRUE".into());
            }
            if bc.path_len_constraint != want.path_len.map(u32::from) {
                f.push(format!(
                    "pathLenConstraint is {:?}, policy says {:?}",
                    bc.path_len_constraint, want.path_len
                ));
            }
        }
        Some((false, _)) => f.push("basicConstraints must be critical (4.2.1.9)".into()),
        _ => f.push("basicConstraints is missing".into()),
    }
    match get(&OID_X509_EXT_KEY_USAGE).map(|e| (e.critical, e.parsed_extension())) {
        Some((true, ParsedExtension::KeyUsage(ku))) => {
            let has = |u: KeyUsage| match u {
                KeyUsage::KeyCertSign => ku.key_cert_sign(),
                KeyUsage::CrlSign => ku.crl_sign(),
                KeyUsage::DigitalSignature => ku.digital_signature(),
            };
            let mut expected: u16 = 0;
            for u in want.key_usages {
                if !has(*u) {
                    f.push(format!("keyUsage lacks {u}"));
                }
                expected |= match u {
                    KeyUsage::DigitalSignature => 1,
                    KeyUsage::KeyCertSign => 1 << 5,
                    KeyUsage::CrlSign => 1 << 6,
                };
            }
            if ku.flags != expected {
                f.push(format!(
                    "keyUsage has bits the policy does not list ({:#06x})",
                    ku.flags
                ));
            }
        }
        Some((false, _)) => f.push("keyUsage must be critical for a CA".into()),
        _ => f.push("keyUsage is missing (4.2.1.3)".into()),
    }
    match get(&OID_X509_EXT_SUBJECT_KEY_IDENTIFIER).map(|e| (e.critical, e.parsed_extension())) {
        Some((false, ParsedExtension::SubjectKeyIdentifier(ki))) => {
            if ki.0 != want.subject_key.key_id().as_slice() {
                f.push("subjectKeyIdentifier is not RFC 7093 method 1 of the key".into());
            }
        }
        Some((true, _)) => f.push("subjectKeyIdentifier must not be critical".into()),
        _ => f.push("subjectKeyIdentifier is missing (4.2.1.2)".into()),
    }
    match get(&OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER).map(|e| (e.critical, e.parsed_extension())) {
        Some((false, ParsedExtension::AuthorityKeyIdentifier(aki))) => {
            if aki.key_identifier.as_ref().map(|k| k.0) != Some(want.issuer_key_id) {
                f.push("authorityKeyIdentifier is not the root's key identifier".into());
            }
        }
        Some((true, _)) => f.push("authorityKeyIdentifier must not be critical".into()),
        _ => f.push("authorityKeyIdentifier is missing (4.2.1.1)".into()),
    }
    let nc = get(&OID_X509_EXT_NAME_CONSTRAINTS);
    match (nc, want.name_constraints) {
        (None, None) => {}
        (Some(_), None) => f.push("the root carries no nameConstraints".into()),
        (None, Some(_)) => f.push("nameConstraints is missing".into()),
        (Some(ext), Some(want)) => lint_name_constraints(ext, want, &mut f),
    }
    match (
        get(&OID_X509_EXT_CERTIFICATE_POLICIES),
        want.certificate_policy,
    ) {
        (None, None) => {}
        (Some(_), None) => f.push("certificatePolicies is present, but none is expected".into()),
        (None, Some(p)) => f.push(format!(
            "certificatePolicies is missing: the tier's policy OID {p} must be there"
        )),
        (Some(ext), Some(want)) => lint_certificate_policies(ext, want, &mut f),
    }
    f
}

/// Checks an intermediate's tier marker: a non-critical certificatePolicies listing the tier
/// policy's OID and nothing else, without qualifiers, encoded as the policy's.
fn lint_certificate_policies(ext: &X509Extension<'_>, want: &PolicyOid, f: &mut Vec<String>) {
    if ext.critical {
        f.push("certificatePolicies must not be critical here (4.2.1.4)".into());
    }
    match certpolicy::read_extension(ext.value) {
        Err(e) => f.push(e),
        Ok((oids, qualified)) => {
            if oids != [want.clone()] {
                let listed: Vec<String> = oids.iter().map(PolicyOid::to_string).collect();
                f.push(format!(
                    "certificatePolicies lists [{}], the tier's policy says exactly {want}",
                    listed.join(", ")
                ));
            } else if qualified {
                f.push("certificatePolicies carries policy qualifiers; none are issued".into());
            } else if want.extension_der().ok().as_deref() != Some(ext.value) {
                f.push("certificatePolicies is not encoded as the policy's".into());
            }
        }
    }
}

/// Checks an intermediate's nameConstraints against what its policy grants: critical, every
/// subtree present in its form, none the policy does not list, and byte-identical to the
/// policy's encoding (so order, string types and subtree bounds are the policy's too).
fn lint_name_constraints(ext: &X509Extension<'_>, want: &NameConstraints, f: &mut Vec<String>) {
    if !ext.critical {
        f.push("nameConstraints must be critical (4.2.1.10)".into());
    }
    let ParsedExtension::NameConstraints(nc) = ext.parsed_extension() else {
        f.push("nameConstraints does not parse".into());
        return;
    };
    let (have, odd) = NameConstraints::from_parsed(nc);
    for o in odd {
        f.push(format!(
            "nameConstraints has a subtree the policy never grants: {o}"
        ));
    }
    let before = f.len();
    for (kind, want, have) in [
        ("permit", &want.permitted, &have.permitted),
        ("exclude", &want.excluded, &have.excluded),
    ] {
        for s in want.iter().filter(|s| !have.contains(s)) {
            f.push(format!("nameConstraints does not {kind} {s}"));
        }
        for s in have.iter().filter(|s| !want.contains(s)) {
            f.push(format!(
                "nameConstraints {kind}s {s}, which the policy does not list"
            ));
        }
    }
    if f.len() == before && want.to_der().ok().as_deref() != Some(ext.value) {
        f.push(
            "nameConstraints is not encoded as the policy's (subtree order, string types or bounds)"
                .into(),
        );
    }
}

fn ext_of<'a>(tbs: &'a TbsCertificate<'a>, oid: &Oid<'static>) -> Option<&'a X509Extension<'a>> {
    tbs.get_extension_unique(oid).ok().flatten()
}

/// Lints a root CRL.
pub fn lint_crl(
    crl: &CertificateRevocationList<'_>,
    issuer_name: &[u8],
    issuer_key_id: &[u8],
    issuer_not_after: i64,
) -> Vec<String> {
    let mut f = Vec::new();
    let tbs = &crl.tbs_cert_list;
    if tbs.version != Some(X509Version::V2) {
        f.push("CRL version is not v2 (5.1.2.1)".into());
    }
    if tbs.signature != crl.signature_algorithm {
        f.push("TBS signature algorithm differs from the outer one (5.1.1.2)".into());
    }
    if tbs.issuer.as_raw() != issuer_name {
        f.push("CRL issuer is not byte-identical to the root's subject".into());
    }
    match tbs.next_update {
        Some(n) if n.timestamp() > tbs.this_update.timestamp() => {}
        _ => f.push("nextUpdate missing or not after thisUpdate (5.1.2.5)".into()),
    }
    if tbs
        .next_update
        .is_some_and(|n| n.timestamp() > issuer_not_after)
    {
        f.push("nextUpdate lies beyond the root's notAfter: the CRL would promise a successor the root cannot sign".into());
    }
    let mut has_aki = false;
    let mut has_number = false;
    for ext in crl.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                has_aki = true;
                if aki.key_identifier.as_ref().map(|k| k.0) != Some(issuer_key_id) {
                    f.push("CRL authorityKeyIdentifier is not the root's key identifier".into());
                }
            }
            ParsedExtension::CRLNumber(n) => {
                has_number = true;
                if ext.critical || n.to_bytes_be().len() > 20 {
                    f.push("CRL number must be non-critical and at most 20 octets (5.2.3)".into());
                }
            }
            _ => {}
        }
    }
    if !has_aki {
        f.push("CRL authorityKeyIdentifier is missing (5.2.1)".into());
    }
    if !has_number {
        f.push("CRL number is missing (5.2.3)".into());
    }
    let mut seen = HashSet::new();
    for r in crl.iter_revoked_certificates() {
        if !seen.insert(r.raw_serial().to_vec()) {
            f.push(format!(
                "serial {} is listed twice",
                r.raw_serial_as_string()
            ));
        }
        if r.revocation_date.timestamp() > tbs.this_update.timestamp() {
            f.push("a revocation date is after thisUpdate".into());
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use der::{Decode as _, Encode as _};
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
        DistinguishedName, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer,
        KeyIdMethod, KeyUsagePurpose, NameConstraints, RevokedCertParams, SanType, SerialNumber,
    };
    use time::{Duration, OffsetDateTime};

    use super::*;
    use crate::algo::KeyAlgorithm;
    use crate::backend::soft::SoftKey;
    use crate::backend::{KeyBackend as _, RcgenSigner};
    use crate::constraints::{DirAttr, NameConstraints as Nc, Subtree};
    use crate::slug::Tier;
    use crate::x509;

    /// Changes what the policy and issuer expect.
    type Tweak = dyn Fn(&mut CaExpectations<'_>);
    /// Changes the certificate built.
    type Edit = dyn Fn(&mut CertificateParams);

    struct World {
        root: SoftKey,
        root_params: CertificateParams,
        root_der: Vec<u8>,
        subject: SoftKey,
        now: OffsetDateTime,
    }

    fn world() -> World {
        let root = SoftKey::generate(KeyAlgorithm::EcdsaP256);
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .expect("whole seconds");
        let mut p = CertificateParams::default();
        p.serial_number = Some(SerialNumber::from_slice(&[0x22; 16]));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Lint Root");
        p.distinguished_name = dn;
        p.not_before = now - Duration::days(1);
        p.not_after = now + Duration::days(3650);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.key_identifier_method = KeyIdMethod::PreSpecified(root.public_key().key_id());
        let signer = RcgenSigner::new(&root);
        let issuer = Issuer::from_params(&p, &signer);
        let root_der = p
            .signed_by(root.public_key(), &issuer)
            .expect("root")
            .der()
            .to_vec();
        World {
            root,
            root_params: p,
            root_der,
            subject: SoftKey::generate(KeyAlgorithm::EcdsaP256),
            now,
        }
    }

    /// Parameters of an intermediate that passes every rule.
    fn good(w: &World) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.serial_number = Some(SerialNumber::from_slice(&[0x11; 16]));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Lint Intermediate");
        p.distinguished_name = dn;
        p.not_before = w.now;
        p.not_after = w.now + Duration::days(365);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.custom_extensions = vec![
            granted().extension().expect("encode"),
            marker().extension().expect("encode"),
        ];
        p.use_authority_key_identifier_extension = true;
        p.key_identifier_method = KeyIdMethod::PreSpecified(w.subject.public_key().key_id());
        p
    }

    /// The lint tests' tier marker.
    fn marker() -> PolicyOid {
        PolicyOid::tier(Tier::Mesh)
    }

    /// What the lint tests' policy grants: every form.
    fn granted() -> Nc {
        let ip = |s: &str, l| Subtree::Ip(s.parse().expect("ip"), l);
        Nc {
            permitted: vec![
                Subtree::Dns("acme.example".into()),
                Subtree::Email("acme.example".into()),
                Subtree::Email(".acme.example".into()),
                Subtree::Uri("acme.example".into()),
                Subtree::Uri(".acme.example".into()),
                Subtree::Directory(vec![
                    (DirAttr::Organization, "Lint".into()),
                    (DirAttr::OrganizationalUnit, "acme".into()),
                ]),
            ],
            excluded: vec![ip("0.0.0.0", 0), ip("::", 0)],
        }
    }

    fn findings(
        w: &World,
        p: &CertificateParams,
        tweak: impl Fn(&mut CaExpectations<'_>),
    ) -> Vec<String> {
        let signer = RcgenSigner::new(&w.root);
        let issuer = Issuer::from_params(&w.root_params, &signer);
        let der = p
            .signed_by(w.subject.public_key(), &issuer)
            .expect("build")
            .der()
            .to_vec();
        let cert = x509::parse_cert(&der).expect("parse");
        let root = x509::parse_cert(&w.root_der).expect("root");
        let rt = &root.tbs_certificate;
        let root_id = w.root.public_key().key_id();
        let granted = granted();
        let marker = marker();
        let usages = [KeyUsage::KeyCertSign, KeyUsage::CrlSign];
        let mut want = CaExpectations {
            issuer_name: rt.subject.as_raw(),
            issuer_key_id: &root_id,
            issuer_window: (
                rt.validity.not_before.timestamp(),
                rt.validity.not_after.timestamp(),
            ),
            subject_key: w.subject.public_key(),
            path_len: Some(0),
            key_usages: &usages,
            name_constraints: Some(&granted),
            certificate_policy: Some(&marker),
        };
        tweak(&mut want);
        lint_ca_cert(&cert, &want)
    }

    fn assert_finds(found: &[String], needle: &str) {
        assert!(
            found.iter().any(|f| f.contains(needle)),
            "expected a finding with `{needle}`, got {found:?}"
        );
    }

    #[test]
    fn every_certificate_rule_is_seen_failing() {
        let w = world();
        assert_eq!(findings(&w, &good(&w), |_| {}), Vec::<String>::new());
        // The tweaks store into expectations of any lifetime, so what they store is 'static.
        let other_key: &'static SoftKey =
            Box::leak(Box::new(SoftKey::generate(KeyAlgorithm::EcdsaP256)));
        let other_name: &'static [u8] = &[0x30, 0x00];
        let other_id: &'static [u8] = &[1, 2, 3];
        let leak = |nc: Nc| -> &'static Nc { Box::leak(Box::new(nc)) };
        let with = |permit: Option<Subtree>, exclude: Option<Subtree>| {
            let mut nc = granted();
            nc.permitted.extend(permit);
            nc.excluded.extend(exclude);
            leak(nc)
        };
        let more_email = with(Some(Subtree::Email("other.example".into())), None);
        let more_ip = with(None, Some(Subtree::Ip("10.0.0.0".parse().expect("ip"), 8)));
        let mut globex = granted();
        globex.permitted[5] = Subtree::Directory(vec![
            (DirAttr::Organization, "Lint".into()),
            (DirAttr::OrganizationalUnit, "globex".into()),
        ]);
        let globex = leak(globex);
        let mut no_uri = granted();
        no_uri.permitted.retain(|s| !matches!(s, Subtree::Uri(_)));
        let no_uri = leak(no_uri);
        let just_sign: &'static [KeyUsage] = &[KeyUsage::KeyCertSign];
        let with_ds: &'static [KeyUsage] = &[
            KeyUsage::KeyCertSign,
            KeyUsage::CrlSign,
            KeyUsage::DigitalSignature,
        ];
        // Rules checked against what the policy and the issuer expect.
        let expectation_cases: Vec<(Box<Tweak>, &str)> = vec![
            (Box::new(|e| e.issuer_name = other_name), "issuer name"),
            (
                Box::new(|e| e.issuer_window.1 = e.issuer_window.0 + 60),
                "inside the root's validity",
            ),
            (
                Box::new(|e| e.subject_key = other_key.public_key()),
                "subjectPublicKeyInfo",
            ),
            (
                Box::new(|e| e.subject_key = other_key.public_key()),
                "subjectKeyIdentifier",
            ),
            (
                Box::new(|e| e.issuer_key_id = other_id),
                "authorityKeyIdentifier is not",
            ),
            (Box::new(|e| e.path_len = Some(3)), "pathLenConstraint"),
            (Box::new(|e| e.key_usages = with_ds), "keyUsage lacks"),
            (Box::new(|e| e.key_usages = just_sign), "keyUsage has bits"),
            (
                Box::new(|e| e.name_constraints = Some(more_email)),
                "nameConstraints does not permit email:other.example",
            ),
            (
                Box::new(|e| e.name_constraints = Some(more_ip)),
                "nameConstraints does not exclude IP:10.0.0.0/8",
            ),
            (
                Box::new(|e| e.name_constraints = Some(globex)),
                "nameConstraints does not permit DirName:O=Lint, OU=globex",
            ),
            (
                Box::new(|e| e.name_constraints = Some(globex)),
                "nameConstraints permits DirName:O=Lint, OU=acme, which the policy does not list",
            ),
            (
                Box::new(|e| e.name_constraints = Some(no_uri)),
                "nameConstraints permits URI:.acme.example, which the policy does not list",
            ),
            (
                Box::new(|e| e.name_constraints = None),
                "the root carries no nameConstraints",
            ),
        ];
        for (tweak, needle) in &expectation_cases {
            assert_finds(&findings(&w, &good(&w), tweak), needle);
        }
        // Rules checked against what the certificate itself says.
        let unknown =
            || CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![5, 0]);
        let cert_cases: Vec<(Box<Edit>, &str)> = vec![
            (
                Box::new(|p| p.serial_number = Some(SerialNumber::from_slice(&[0, 0]))),
                "serial must be a positive integer",
            ),
            (
                Box::new(|p| p.serial_number = Some(SerialNumber::from_slice(&[1; 21]))),
                "serial must be a positive integer",
            ),
            (
                Box::new(|p| p.distinguished_name = DistinguishedName::new()),
                "subject is empty",
            ),
            (
                Box::new(|p| p.not_after = p.not_before - Duration::days(1)),
                "notBefore is not before notAfter",
            ),
            (
                Box::new(|p| {
                    p.subject_alt_names =
                        vec![SanType::DnsName("acme.example".try_into().expect("ia5"))]
                }),
                "carries no SAN",
            ),
            (
                Box::new(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]),
                "carries no EKU",
            ),
            (
                Box::new(move |p| {
                    let mut e = unknown();
                    e.set_criticality(true);
                    p.custom_extensions.push(e);
                }),
                "unknown critical extension",
            ),
            (
                Box::new(move |p| p.custom_extensions.extend([unknown(), unknown()])),
                "appears twice",
            ),
            (Box::new(|p| p.is_ca = IsCa::ExplicitNoCa), "cA is not TRUE"),
            (
                Box::new(|p| p.is_ca = IsCa::NoCa),
                "basicConstraints is missing",
            ),
            (Box::new(|p| p.key_usages = vec![]), "keyUsage is missing"),
            (
                Box::new(|p| p.key_identifier_method = KeyIdMethod::PreSpecified(vec![9; 20])),
                "subjectKeyIdentifier is not RFC 7093",
            ),
            (
                Box::new(|p| p.use_authority_key_identifier_extension = false),
                "authorityKeyIdentifier is missing",
            ),
            (
                Box::new(|p| p.custom_extensions.clear()),
                "nameConstraints is missing",
            ),
            (
                Box::new(|p| {
                    let mut e = granted().extension().expect("encode");
                    e.set_criticality(false);
                    p.custom_extensions = vec![e];
                }),
                "nameConstraints must be critical",
            ),
            (
                Box::new(|p| {
                    let mut nc = granted();
                    nc.permitted.push(Subtree::Dns("evil.example".into()));
                    p.custom_extensions = vec![nc.extension().expect("encode")];
                }),
                "permits DNS:evil.example, which the policy does not list",
            ),
            (
                Box::new(|p| {
                    let mut nc = granted();
                    nc.permitted.reverse();
                    p.custom_extensions = vec![nc.extension().expect("encode")];
                }),
                "not encoded as the policy's",
            ),
            (
                Box::new(|p| {
                    // rcgen's own encoding: a directoryName with a CN, which no policy grants.
                    let mut dn = DistinguishedName::new();
                    dn.push(DnType::CommonName, "acme");
                    p.custom_extensions.clear();
                    p.name_constraints = Some(NameConstraints {
                        permitted_subtrees: vec![GeneralSubtree::DirectoryName(dn)],
                        excluded_subtrees: vec![],
                    });
                }),
                "a subtree the policy never grants: directoryName attribute 2.5.4.3",
            ),
        ];
        for (edit, needle) in &cert_cases {
            let mut p = good(&w);
            edit(&mut p);
            assert_finds(&findings(&w, &p, |_| {}), needle);
        }
        // Each subtree of each form, left out of the certificate, is seen missing.
        let all = granted();
        for (i, s) in all.permitted.iter().chain(&all.excluded).enumerate() {
            let mut nc = granted();
            let kind = if i < nc.permitted.len() {
                nc.permitted.remove(i);
                "permit"
            } else {
                nc.excluded.remove(i - all.permitted.len());
                "exclude"
            };
            let mut p = good(&w);
            p.custom_extensions = vec![nc.extension().expect("encode")];
            assert_finds(
                &findings(&w, &p, |_| {}),
                &format!("nameConstraints does not {kind} {s}"),
            );
        }
    }

    #[test]
    fn an_intermediate_carries_exactly_its_tiers_marker() {
        let w = world();
        // certificatePolicies with these PolicyInformation bodies (OID, then qualifiers).
        let policies = |infos: Vec<Vec<u8>>| {
            let mut body = Vec::new();
            for info in infos {
                body.extend(
                    der::asn1::Any::new(der::Tag::Sequence, info)
                        .expect("info")
                        .to_der()
                        .expect("der"),
                );
            }
            let value = der::asn1::Any::new(der::Tag::Sequence, body)
                .expect("ext")
                .to_der()
                .expect("der");
            CustomExtension::from_oid_content(certpolicy::OID, value)
        };
        let oid_of = |t: Tier| {
            let ext = PolicyOid::tier(t).extension_der().expect("encode");
            // SEQUENCE { SEQUENCE { OID } }: the OID's TLV is the innermost value.
            let outer = der::asn1::Any::from_der(&ext).expect("outer");
            let info = der::asn1::Any::from_der(outer.value()).expect("info");
            info.value().to_vec()
        };
        let fleet: &'static PolicyOid = Box::leak(Box::new(PolicyOid::tier(Tier::Fleet)));
        let with_ext = |ext: CustomExtension| {
            move |p: &mut CertificateParams| {
                p.custom_extensions.truncate(1);
                p.custom_extensions.push(ext.clone());
            }
        };
        let mut critical = marker().extension().expect("encode");
        critical.set_criticality(true);
        let mut qualified = oid_of(Tier::Mesh);
        qualified.extend([0x30, 0x00]);
        let cases: Vec<(Box<Edit>, Box<Tweak>, &str)> =
            vec![
            (
                Box::new(|_| {}),
                Box::new(move |e| e.certificate_policy = Some(fleet)),
                "certificatePolicies lists [1.2.840.113556.1.8000.2554.51417.8491.7273.17270.45367.12609703.14420564.1.2], \
                 the tier's policy says exactly 1.2.840.113556.1.8000.2554.51417.8491.7273.17270.45367.12609703.14420564.1.3",
            ),
            (
                Box::new(|_| {}),
                Box::new(|e| e.certificate_policy = None),
                "certificatePolicies is present, but none is expected",
            ),
            (
                Box::new(|p| p.custom_extensions.truncate(1)),
                Box::new(|_| {}),
                "certificatePolicies is missing: the tier's policy OID 1.2.840.113556.1.8000.2554.",
            ),
            (
                Box::new(with_ext(critical)),
                Box::new(|_| {}),
                "certificatePolicies must not be critical",
            ),
            (
                Box::new(with_ext(policies(vec![oid_of(Tier::Mesh), oid_of(Tier::Fleet)]))),
                Box::new(|_| {}),
                "certificatePolicies lists [1.2.840.113556.1.8000.2554.51417.8491.7273.17270.45367.12609703.14420564.1.2, \
                 1.2.840.113556.1.8000.2554.51417.8491.7273.17270.45367.12609703.14420564.1.3]",
            ),
            (
                Box::new(with_ext(policies(vec![qualified]))),
                Box::new(|_| {}),
                "certificatePolicies carries policy qualifiers",
            ),
            (
                Box::new(with_ext(policies(vec![vec![0x05, 0x00]]))),
                Box::new(|_| {}),
                "something other than a policy OID",
            ),
        ];
        for (edit, tweak, needle) in &cases {
            let mut p = good(&w);
            edit(&mut p);
            assert_finds(&findings(&w, &p, tweak), needle);
        }
    }

    #[test]
    fn every_crl_rule_is_seen_failing() {
        let w = world();
        let root = x509::parse_cert(&w.root_der).expect("root");
        let name = root.tbs_certificate.subject.as_raw().to_vec();
        let id = w.root.public_key().key_id();
        let good = || CertificateRevocationListParams {
            this_update: w.now,
            next_update: w.now + Duration::days(30),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from_slice(&[7; 16]),
                revocation_time: w.now - Duration::hours(1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::PreSpecified(id.clone()),
        };
        let root_end = (w.now + Duration::days(60)).unix_timestamp();
        let lint = |p: &CertificateRevocationListParams, name: &[u8], id: &[u8]| {
            let signer = RcgenSigner::new(&w.root);
            let issuer = Issuer::from_params(&w.root_params, &signer);
            let der = p.signed_by(&issuer).expect("crl").der().to_vec();
            lint_crl(&x509::parse_crl(&der).expect("parse"), name, id, root_end)
        };
        assert_eq!(lint(&good(), &name, &id), Vec::<String>::new());
        assert_finds(&lint(&good(), &[0x30, 0x00], &id), "CRL issuer");
        assert_finds(
            &lint(&good(), &name, &[1, 2]),
            "CRL authorityKeyIdentifier is not",
        );
        // (rcgen cannot build a CRL whose nextUpdate is not after thisUpdate, so that rule's
        // failure is not reachable from here.)
        let mut p = good();
        p.crl_number = SerialNumber::from_slice(&[1; 21]);
        assert_finds(&lint(&p, &name, &id), "at most 20 octets");
        let mut p = good();
        let again = p.revoked_certs[0].clone();
        p.revoked_certs.push(again);
        assert_finds(&lint(&p, &name, &id), "listed twice");
        let mut p = good();
        p.revoked_certs[0].revocation_time = w.now + Duration::hours(1);
        assert_finds(&lint(&p, &name, &id), "after thisUpdate");
        let mut p = good();
        p.next_update = w.now + Duration::days(61);
        assert_finds(&lint(&p, &name, &id), "beyond the root's notAfter");
    }
}
