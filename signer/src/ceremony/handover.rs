//! `handover`: the MSP side of a churn hand-over. The intermediate the customer takes away
//! (re-rooted under their own root with `reroot`) is revoked as affiliationChanged, the
//! customer root's fingerprint is recorded (where the customer went), and a CRL listing the
//! revocation is issued: one append of `handed_over`, `revoked`, `crl_issued`. It is
//! [`Revoke`] with one more entry in front.
//!
//! The runbook's order matters: the customer trusts their new root first, then the MSP
//! revokes; from then on the intermediate's leaves stop verifying in the MSP chain.
//!
//! affiliationChanged is not a compromise: the key may be certified again for the same
//! customer (a customer who comes back), it stays refused for any other customer, and the
//! revocation may later become keyCompromise (if the customer reports the key leaked), which
//! then blocks the key for good, like any compromise.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::reroot::{cert_der, check_root};
use super::revoke::Revoke;
use super::{add_file, Operation, Plan, Step};
use crate::ca::Ca;
use crate::error::{Error, Result};
use crate::hooks::{EventData, EventKind};
use crate::ledger::{Event, Reason};
use crate::words::Fingerprint;
use crate::x509::{self, Serial};

/// Parameters for `handover`.
#[derive(Debug, Clone)]
pub struct Handover {
    /// The revocation it composes (reason affiliationChanged).
    revoke: Revoke,
    /// The customer root certificate (PEM or DER) and its path.
    new_root: (PathBuf, Vec<u8>),
}

impl Handover {
    /// Reads the customer root; the intermediate `serial` is revoked and the CRL written to
    /// `out`.
    pub fn read(serial: Serial, new_root: &Path, out: PathBuf) -> Result<Self> {
        let bytes =
            std::fs::read(new_root).map_err(|e| Error::io(new_root, e, "check the path"))?;
        Ok(Handover {
            revoke: Revoke {
                serial,
                reason: Reason::AffiliationChanged,
                out,
            },
            new_root: (new_root.to_path_buf(), bytes),
        })
    }
}

impl Operation for Handover {
    fn events(&self) -> &'static [EventKind] {
        &[
            EventKind::HandedOver,
            EventKind::Revoked,
            EventKind::CrlIssued,
        ]
    }

    fn hook_data(&self) -> EventData {
        let mut data = self.revoke.hook_data();
        add_file(&mut data, "new_root", &self.new_root.0);
        if let Ok(der) = cert_der(&self.new_root) {
            let sha = Fingerprint::of(&der).hex();
            data.sha256.insert("new_root".into(), sha.clone());
            data.details.insert("new_root_sha256".into(), sha);
        }
        data
    }

    fn plan<'a>(&'a self, ca: &'a Ca, now: OffsetDateTime) -> Result<Plan<'a>> {
        let der = cert_der(&self.new_root)?;
        let root = x509::parse_cert(&der).map_err(Error::SelfCheck)?;
        check_root(&self.new_root.0, &root)?;
        if der == ca.state().root_der {
            return Err(Error::NotARoot {
                path: self.new_root.0.clone(),
                detail: "it is this CA's own root, not the customer's new one".into(),
            });
        }
        let mut plan = self.revoke.plan(ca, now)?;
        let serial = &self.revoke.serial;
        let issued = ca
            .state()
            .issued
            .get(serial)
            .ok_or_else(|| Error::NotIssued {
                serial: serial.clone(),
                dir: ca.dir().to_path_buf(),
            })?;
        let new_root_sha256 = Fingerprint::of(&der);
        let new_root_subject = x509::rcgen_name(root.subject())
            .map(|dn| x509::dn_string(&dn))
            .unwrap_or_else(|_| root.subject().to_string());
        plan.summary = format!(
            "Hand over intermediate {serial} of {} to the customer's own root\n  new root:         \
             {new_root_subject}\n  new root SHA-256: {}\n  Only after the customer trusts the new \
             root (the runbook's first step)!\n{}",
            issued.slug,
            new_root_sha256.for_reading(),
            plan.summary
        );
        plan.steps.insert(
            0,
            Step::Record(Event::HandedOver {
                serial: serial.clone(),
                slug: issued.slug.clone(),
                new_root_sha256: new_root_sha256.hex(),
                new_root_subject,
            }),
        );
        Ok(plan)
    }
}
