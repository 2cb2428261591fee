//! What `reroot` and `renew` sign alike: a CA certificate under this customer-owned root that
//! carries another certificate's subject DN, nameConstraints (its DER, byte for byte, critical)
//! and tier marker, with pathLenConstraint 0, keyCertSign and cRLSign, this root's AKI and a
//! subject key identifier the operation chooses; and how it is linted: the PKI core's CA
//! linter, with the findings the carried bytes make expected waived, and the operation's exact
//! byte checks in their place.

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, IsCa, Issuer,
    KeyIdMethod, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::OID_X509_EXT_NAME_CONSTRAINTS;

use crate::algo::PublicKey;
use crate::backend::RcgenSigner;
use crate::ca::Ca;
use crate::certpolicy::PolicyOid;
use crate::constraints::NameConstraints;
use crate::error::{Error, Result};
use crate::lint::{self, CaExpectations};
use crate::policy::KeyUsage;
use crate::x509::{self, Serial};

/// The nameConstraints extension's OID (2.5.29.30).
const NAME_CONSTRAINTS: &[u64] = &[2, 5, 29, 30];

/// The key usages of every carried certificate.
const KEY_USAGES: [KeyUsage; 2] = [KeyUsage::KeyCertSign, KeyUsage::CrlSign];

/// A carried certificate, before it is signed.
pub(super) struct Carried {
    /// A fresh serial of this CA.
    pub serial: Serial,
    /// The carried subject.
    pub subject: DistinguishedName,
    /// notBefore and notAfter.
    pub validity: (OffsetDateTime, OffsetDateTime),
    /// The carried nameConstraints extension value (None: the carried certificate has none).
    pub nc_der: Option<Vec<u8>>,
    /// The carried tier marker (None: issued before tier markers).
    pub marker: Option<PolicyOid>,
    /// The subject key identifier.
    pub ski: Vec<u8>,
}

impl Carried {
    /// The certificate's parameters.
    pub fn params(&self) -> Result<CertificateParams> {
        let mut p = CertificateParams::default();
        p.serial_number = Some(SerialNumber::from_slice(self.serial.bytes()));
        (p.not_before, p.not_after) = self.validity;
        p.distinguished_name = self.subject.clone();
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = KEY_USAGES.iter().map(|u| u.rcgen()).collect();
        if let Some(der) = &self.nc_der {
            let mut ext = CustomExtension::from_oid_content(NAME_CONSTRAINTS, der.clone());
            ext.set_criticality(true);
            p.custom_extensions.push(ext);
        }
        if let Some(m) = &self.marker {
            p.custom_extensions
                .push(m.extension().map_err(|e| Error::Build {
                    what: "certificate",
                    detail: format!("certificatePolicies: {e}"),
                })?);
        }
        p.use_authority_key_identifier_extension = true;
        p.key_identifier_method = KeyIdMethod::PreSpecified(self.ski.clone());
        Ok(p)
    }
}

/// Whether `c` carries exactly `want` as its nameConstraints, critical (or none, as `want`).
pub(super) fn keeps_name_constraints(c: &X509Certificate<'_>, want: Option<&[u8]>) -> bool {
    let got = c
        .tbs_certificate
        .get_extension_unique(&OID_X509_EXT_NAME_CONSTRAINTS)
        .ok()
        .flatten()
        .map(|e| (e.critical, e.value));
    match (got, want) {
        (None, None) => true,
        (Some((true, got)), Some(want)) => got == want,
        _ => false,
    }
}

/// The build and lint of a plan that signs `p` for `subject_key`: the CA linter expects
/// `name_constraints` and `marker`; its findings that start with one of `waived` are dropped
/// (what the carried bytes make expected) and `exact`'s findings are added.
// The two closures are what `Plan::certificate` takes; naming their types would need boxes.
#[allow(clippy::type_complexity)]
pub(super) fn build_and_lint<'a>(
    ca: &'a Ca,
    p: CertificateParams,
    subject_key: PublicKey,
    (name_constraints, marker): (Option<NameConstraints>, Option<PolicyOid>),
    waived: &'static [&'static str],
    exact: impl Fn(&X509Certificate<'_>) -> Vec<String> + 'a,
) -> (
    impl Fn(&RcgenSigner<'_>) -> std::result::Result<Vec<u8>, rcgen::Error> + 'a,
    impl Fn(&[u8]) -> Vec<String> + 'a,
) {
    let issuer_params = ca.issuer_params();
    let build_key = subject_key.clone();
    let build = move |signer: &RcgenSigner<'_>| {
        let issuer = Issuer::from_params(&issuer_params, signer);
        p.signed_by(&build_key, &issuer).map(|c| c.der().to_vec())
    };
    let root_id = ca.root_key().key_id();
    let lint = move |der: &[u8]| match x509::parse_cert(der) {
        Ok(c) => {
            let mut f: Vec<String> = lint::lint_ca_cert(
                &c,
                &CaExpectations {
                    issuer_name: ca.root_subject_raw(),
                    issuer_key_id: &root_id,
                    issuer_window: ca.root_window(),
                    subject_key: &subject_key,
                    path_len: Some(0),
                    key_usages: &KEY_USAGES,
                    name_constraints: name_constraints.as_ref(),
                    certificate_policy: marker.as_ref(),
                },
            )
            .into_iter()
            .filter(|m| !waived.iter().any(|w| m.starts_with(w)))
            .collect();
            f.extend(exact(&c));
            f
        }
        Err(e) => vec![e],
    };
    (build, lint)
}

/// A Unix time as an `OffsetDateTime` (the epoch when out of range).
pub(super) fn unix(t: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
