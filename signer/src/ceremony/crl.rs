//! `crl`: the CRL again, with the same revocations and the next number (at every scheduled
//! ceremony, before nextUpdate). [`crl_artifact`] is also the CRL that `revoke` issues. Its
//! nextUpdate is the policy's schedule, clamped to the root's notAfter.

use std::path::PathBuf;

use rcgen::{
    CertificateRevocationListParams, Issuer, KeyIdMethod, RevokedCertParams, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use super::{add_file, Artifact, Operation, Plan, Step};
use crate::ca::Ca;
use crate::error::{Error, Result};
use crate::hooks::{EventData, EventKind};
use crate::ledger::{self, Event, Reason};
use crate::lint;
use crate::pipeline::Kind;
use crate::x509::{self, Serial};

/// Parameters for `crl`.
#[derive(Debug, Clone)]
pub struct Crl {
    /// Output CRL path.
    pub out: PathBuf,
}

impl Operation for Crl {
    fn events(&self) -> &'static [EventKind] {
        &[EventKind::CrlIssued]
    }

    fn hook_data(&self) -> EventData {
        let mut data = EventData::default();
        add_file(&mut data, "out", &self.out);
        data
    }

    fn plan<'a>(&'a self, ca: &'a Ca, now: OffsetDateTime) -> Result<Plan<'a>> {
        let (artifact, number, listed) = crl_artifact(ca, revoked_list(ca), now, &self.out)?;
        Ok(Plan {
            summary: format!(
                "Issue CRL number {number} listing {listed} revoked certificate(s) to {}\n",
                self.out.display()
            ),
            steps: vec![Step::Sign(artifact)],
            serial: None,
        })
    }
}

/// A revocation a CRL lists.
pub(crate) type Revoked = (Serial, Reason, OffsetDateTime);

/// The revocations the ledger holds.
pub(crate) fn revoked_list(ca: &Ca) -> Vec<Revoked> {
    ca.state()
        .revoked
        .values()
        .map(|r| {
            (
                r.serial.clone(),
                r.reason,
                ledger::parse_time(&r.revoked_at).unwrap_or(OffsetDateTime::UNIX_EPOCH),
            )
        })
        .collect()
}

/// The next CRL listing `revoked`, to be written to `out`; with its number and how many it lists.
pub(crate) fn crl_artifact<'a>(
    ca: &'a Ca,
    revoked: Vec<Revoked>,
    now: OffsetDateTime,
    out: &std::path::Path,
) -> Result<(Artifact<'a>, u64, usize)> {
    let root_policy = ca.root_policy()?;
    let number = ca.state().last_crl.as_ref().map_or(1, |c| c.number + 1);
    // nextUpdate never lies beyond the root's notAfter: clamped, not refused, so the root can
    // still publish a CRL in its last months (relying parties need one until it expires). A
    // root that has expired signs no CRL at all.
    let root_end = ca.root_window().1;
    let scheduled = now + Duration::days(i64::from(root_policy.crl.validity_days));
    if now.unix_timestamp() >= root_end {
        return Err(Error::RootExpired {
            not_after: ledger::fmt_time(
                OffsetDateTime::from_unix_timestamp(root_end).unwrap_or(now),
            ),
        });
    }
    let next_update = if scheduled.unix_timestamp() > root_end {
        OffsetDateTime::from_unix_timestamp(root_end).unwrap_or(scheduled)
    } else {
        scheduled
    };
    let listed = revoked.len();
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update,
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|(s, r, t)| RevokedCertParams {
                serial_number: SerialNumber::from_slice(s.bytes()),
                revocation_time: *t,
                reason_code: Some(r.rcgen()),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::PreSpecified(ca.root_key().key_id()),
    };
    let issuer_params = ca.issuer_params();
    let build = move |signer: &crate::backend::RcgenSigner<'_>| {
        let issuer = Issuer::from_params(&issuer_params, signer);
        params.signed_by(&issuer).map(|c| c.der().to_vec())
    };
    let root_id = ca.root_key().key_id();
    let lint = move |der: &[u8]| match x509::parse_crl(der) {
        Ok(c) => lint::lint_crl(&c, ca.root_subject_raw(), &root_id, root_end),
        Err(e) => vec![e],
    };
    let record = move |der: &[u8]| {
        let (artifact_sha256, artifact) = ledger::encode_artifact(der);
        Event::CrlIssued {
            crl_number: number,
            this_update: ledger::fmt_time(now),
            next_update: ledger::fmt_time(next_update),
            revoked: revoked.into_iter().map(|(s, _, _)| s).collect(),
            artifact_sha256,
            artifact,
        }
    };
    let artifact = Artifact {
        kind: Kind::Crl,
        role: "crl",
        build: Box::new(build),
        lint: Box::new(lint),
        record: Box::new(record),
        out: Some(out.to_path_buf()),
    };
    Ok((artifact, number, listed))
}
