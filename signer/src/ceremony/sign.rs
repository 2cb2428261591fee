//! `sign`: an intermediate CA certificate for a customer's CSR, under the tier's policy.
//!
//! The plan checks the request (CSR proof of possession, key algorithm, key reuse across
//! customers, keys revoked for keyCompromise or cACompromise, validity within the policy and the root), and
//! supplies one certificate and its `intermediate_issued` entry.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, IsCa, Issuer, KeyIdMethod,
    SerialNumber,
};
use time::{Duration, OffsetDateTime};

use super::{add_file, Operation, Plan};
use crate::ca::{Ca, CLOCK_SKEW};
use crate::constraints::NameConstraints;
use crate::csr::{self, VerifiedCsr};
use crate::error::{Error, Result};
use crate::hooks::{EventData, EventKind};
use crate::ledger::{self, Event};
use crate::lint::{self, CaExpectations};
use crate::policy::{self, IntermediatePolicy};
use crate::slug::{Slug, Tier};
use crate::words::Fingerprint;
use crate::x509::{self, dn_string, Serial};

/// Parameters for `sign`.
#[derive(Debug, Clone)]
pub struct SignRequest {
    /// CSR bytes (PEM or DER).
    pub csr: Vec<u8>,
    /// Where the CSR came from (for messages).
    pub csr_origin: String,
    /// Customer slug.
    pub slug: Slug,
    /// Customer tier.
    pub tier: Tier,
    /// Validity in days (None: the policy's default).
    pub days: Option<u32>,
    /// Output certificate path.
    pub out: PathBuf,
    /// A Core cluster's shared sub-CA (`slug` names the cluster, the policy is
    /// `intermediate-core-shared.yaml`); tier must be core.
    pub shared: bool,
}

impl Operation for SignRequest {
    fn events(&self) -> &'static [EventKind] {
        &[EventKind::IntermediateIssued]
    }

    fn hook_data(&self) -> EventData {
        let mut data = EventData {
            slug: Some(self.slug.to_string()),
            tier: Some(self.tier.to_string()),
            ..EventData::default()
        };
        if self.shared {
            data.details.insert("shared".into(), "true".into());
        }
        data.sha256
            .insert("csr".into(), Fingerprint::of(&self.csr).hex());
        add_file(&mut data, "csr", &PathBuf::from(&self.csr_origin));
        add_file(&mut data, "out", &self.out);
        data
    }

    fn plan<'a>(&'a self, ca: &'a Ca, now: OffsetDateTime) -> Result<Plan<'a>> {
        let csr = csr::parse_and_verify(&self.csr, &self.csr_origin)?;
        let dir = &ca.config().policies_dir;
        let pol = match (self.shared, self.tier) {
            (false, tier) => policy::load_intermediate(dir, tier)?,
            (true, Tier::Core) => policy::load_core_shared(dir)?,
            (true, tier) => return Err(Error::SharedNotCore(tier)),
        };
        check_request(ca, &csr, &pol, &self.slug)?;
        let days = self.days.unwrap_or(pol.default_days);
        if days == 0 || days > pol.max_days {
            return Err(Error::DaysOutsidePolicy {
                days,
                tier: pol.tier,
                max: pol.max_days,
            });
        }
        let not_before = now - CLOCK_SKEW;
        let not_after = now + Duration::days(i64::from(days));
        let root_end = ca.root_window().1;
        if not_after.unix_timestamp() > root_end {
            return Err(Error::PastRootExpiry {
                days,
                left: (root_end - now.unix_timestamp()) / 86_400,
            });
        }
        let serial = fresh_serial(ca);
        let constraints = pol.name_constraints.render(&self.slug);
        let mut params =
            intermediate_params(&pol, &self.slug, &csr, &serial, not_before, not_after);
        let build_err = |what: &str, e: der::Error| Error::Build {
            what: "certificate",
            detail: format!("{what}: {e}"),
        };
        params.custom_extensions = vec![
            constraints
                .extension()
                .map_err(|e| build_err("nameConstraints", e))?,
            pol.certificate_policy
                .extension()
                .map_err(|e| build_err("certificatePolicies", e))?,
        ];
        let who = if self.shared {
            format!(
                "SHARED sub-CA of core cluster {} (covers every tenant of the cluster)",
                self.slug
            )
        } else {
            format!("{} ({} tier)", self.slug, pol.tier)
        };
        let summary = summary(&who, &csr, &params, &constraints, days);
        let issuer_params = ca.issuer_params();
        let subject_key = csr.public_key.clone();
        let build = move |signer: &crate::backend::RcgenSigner<'_>| {
            let issuer = Issuer::from_params(&issuer_params, signer);
            params
                .signed_by(&subject_key, &issuer)
                .map(|c| c.der().to_vec())
        };
        let root_id = ca.root_key().key_id();
        let lint_key = csr.public_key.clone();
        let (path_len, key_usages) = (pol.path_len, pol.key_usages.clone());
        let marker = pol.certificate_policy.clone();
        let lint = move |der: &[u8]| match x509::parse_cert(der) {
            Ok(c) => lint::lint_ca_cert(
                &c,
                &CaExpectations {
                    issuer_name: ca.root_subject_raw(),
                    issuer_key_id: &root_id,
                    issuer_window: ca.root_window(),
                    subject_key: &lint_key,
                    path_len: Some(path_len),
                    key_usages: &key_usages,
                    name_constraints: Some(&constraints),
                    certificate_policy: Some(&marker),
                },
            ),
            Err(e) => vec![e],
        };
        let event_serial = serial.clone();
        let (slug, tier) = (self.slug.clone(), pol.tier);
        let subject = dn_string(&pol.subject.render(Some(&self.slug)));
        let key_id = hex::encode(csr.public_key.key_id());
        let csr_sha256 = csr.fingerprint.hex();
        let policy_sha256 = pol.source.sha256.hex();
        let shared = self.shared;
        let record = move |der: &[u8]| {
            let (artifact_sha256, artifact) = ledger::encode_artifact(der);
            Event::IntermediateIssued {
                serial: event_serial,
                slug,
                tier,
                subject,
                not_after: ledger::fmt_time(not_after),
                key_id,
                csr_sha256,
                policy_sha256,
                artifact_sha256,
                artifact,
                shared,
            }
        };
        Ok(Plan::certificate(
            summary, serial, &self.out, build, lint, record,
        ))
    }
}

fn check_request(ca: &Ca, csr: &VerifiedCsr, pol: &IntermediatePolicy, slug: &Slug) -> Result<()> {
    let alg = csr.public_key.algorithm();
    if !pol.allowed_keys.contains(&alg) {
        let allowed: Vec<&str> = pol.allowed_keys.iter().map(|a| a.name()).collect();
        return Err(Error::KeyNotAllowed {
            alg,
            tier: pol.tier,
            allowed: allowed.join(", "),
        });
    }
    if csr.public_key == *ca.root_key() {
        return Err(Error::RootKeyInCsr);
    }
    let state = ca.state();
    let key_id = hex::encode(csr.public_key.key_id());
    if let Some(other) = state
        .issued
        .values()
        .find(|i| i.key_id == key_id && i.slug != *slug)
    {
        return Err(Error::KeyOfAnotherCustomer {
            slug: other.slug.clone(),
            serial: other.serial.clone(),
        });
    }
    if let Some(r) = state
        .issued
        .values()
        .filter(|i| i.key_id == key_id)
        .filter_map(|i| state.revoked.get(&i.serial))
        .find(|r| r.reason.compromised())
    {
        return Err(Error::KeyCompromised {
            serial: r.serial.clone(),
            reason: r.reason.name(),
        });
    }
    Ok(())
}

fn fresh_serial(ca: &Ca) -> Serial {
    loop {
        let s = Serial::random();
        if !ca.state().issued.contains_key(&s) {
            return s;
        }
    }
}

fn intermediate_params(
    pol: &IntermediatePolicy,
    slug: &Slug,
    csr: &VerifiedCsr,
    serial: &Serial,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.serial_number = Some(SerialNumber::from_slice(serial.bytes()));
    p.not_before = not_before;
    p.not_after = not_after;
    p.distinguished_name = pol.subject.render(Some(slug));
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(pol.path_len));
    p.key_usages = pol.key_usages.iter().map(|u| u.rcgen()).collect();
    // nameConstraints is a custom extension (crate::constraints): rcgen's has no URI or
    // directoryName subtree.
    p.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![pol.crl_distribution_point.render(slug)],
    }];
    p.use_authority_key_identifier_extension = true;
    p.key_identifier_method = KeyIdMethod::PreSpecified(csr.public_key.key_id());
    p
}

fn summary(
    who: &str,
    csr: &VerifiedCsr,
    params: &CertificateParams,
    constraints: &NameConstraints,
    days: u32,
) -> String {
    let mut s = String::new();
    s.push_str("Issue intermediate CA certificate\n");
    s.push_str(&format!("  customer:         {who}\n"));
    s.push_str(&format!(
        "  subject:          {}\n",
        dn_string(&params.distinguished_name)
    ));
    s.push_str(&format!(
        "  key:              {}\n",
        csr.public_key.algorithm()
    ));
    s.push_str(&format!(
        "  validity:         {} to {} ({days} days)\n",
        ledger::fmt_time(params.not_before),
        ledger::fmt_time(params.not_after)
    ));
    s.push_str(&format!("  name constraints: {constraints} (critical)\n"));
    s.push_str("  basicConstraints: CA:TRUE, pathlen:0 (critical)\n");
    s.push_str(&format!(
        "  CSR subject (ignored): {}\n",
        if csr.requested_subject.is_empty() {
            "(empty)"
        } else {
            &csr.requested_subject
        }
    ));
    if !csr.requested_extensions.is_empty() {
        s.push_str(&format!(
            "  CSR asked for {} extension(s): ignored, the policy decides\n",
            csr.requested_extensions.len()
        ));
    }
    s.push_str(&format!(
        "  request SHA-256:  {}\n",
        csr.fingerprint.for_reading()
    ));
    s
}
