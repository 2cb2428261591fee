//! `revoke`: an issued intermediate is revoked and a new CRL listing it is issued, recorded as
//! two ledger entries (`revoked`, then `crl_issued`) in one append.

use std::path::PathBuf;

use time::OffsetDateTime;

use super::crl::{crl_artifact, revoked_list};
use super::{add_file, Operation, Plan, Step};
use crate::ca::Ca;
use crate::error::{Error, Result};
use crate::hooks::{EventData, EventKind};
use crate::ledger::{self, Event, Reason};
use crate::x509::Serial;

/// Parameters for `revoke`.
#[derive(Debug, Clone)]
pub struct Revoke {
    /// The intermediate's serial.
    pub serial: Serial,
    /// Why.
    pub reason: Reason,
    /// Output CRL path.
    pub out: PathBuf,
}

impl Operation for Revoke {
    fn events(&self) -> &'static [EventKind] {
        &[EventKind::Revoked, EventKind::CrlIssued]
    }

    fn hook_data(&self) -> EventData {
        let mut data = EventData {
            serial: Some(self.serial.to_string()),
            ..EventData::default()
        };
        data.details
            .insert("reason".into(), self.reason.name().into());
        add_file(&mut data, "out", &self.out);
        data
    }

    fn plan<'a>(&'a self, ca: &'a Ca, now: OffsetDateTime) -> Result<Plan<'a>> {
        let serial = &self.serial;
        let Some(issued) = ca.state().issued.get(serial) else {
            return Err(Error::NotIssued {
                serial: serial.clone(),
                dir: ca.dir().to_path_buf(),
            });
        };
        if let Some(r) = ca.state().revoked.get(serial) {
            return Err(Error::AlreadyRevoked {
                serial: serial.clone(),
                at: r.revoked_at.clone(),
                reason: r.reason.name(),
            });
        }
        let mut revoked = revoked_list(ca);
        revoked.push((serial.clone(), self.reason, now));
        let (crl, _, listed) = crl_artifact(ca, revoked, now, &self.out)?;
        let summary = format!(
            "Revoke intermediate\n  serial:   {serial}\n  customer: {} ({} tier)\n  subject:  {}\n  reason:   {}\n  \
             A new CRL listing {listed} revoked certificate(s) is written to {}.\n",
            issued.slug,
            issued.tier,
            issued.subject,
            self.reason.name(),
            self.out.display()
        );
        let revoked_event = Event::Revoked {
            serial: serial.clone(),
            slug: issued.slug.clone(),
            reason: self.reason,
            revoked_at: ledger::fmt_time(now),
        };
        Ok(Plan {
            summary,
            steps: vec![Step::Record(revoked_event), Step::Sign(crl)],
            serial: Some(serial.clone()),
        })
    }
}
