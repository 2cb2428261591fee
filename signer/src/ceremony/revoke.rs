//! `revoke`: an issued intermediate (on a customer-owned root: one it re-rooted or renewed) is
//! revoked and a new CRL listing it is issued, recorded as
//! two ledger entries (`revoked`, then `crl_issued`) in one append.
//!
//! Compromise is forever: a certificate revoked as superseded, cessationOfOperation or
//! affiliationChanged can be revoked again as keyCompromise (its `revoked` entry names the reason it `replaces`, keeps the
//! first revocation date, and the new CRL carries the new reason); no other reason ever
//! changes.

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
        // An intermediate this root issued for a customer, or (a customer-owned root) one it
        // re-rooted or renewed, which names no customer.
        let (slug, who) = match (
            ca.state().issued.get(serial),
            ca.state().customer_owned(serial),
        ) {
            (Some(i), _) => (
                Some(i.slug.clone()),
                format!(
                    "customer: {} ({} tier)\n  subject:  {}",
                    i.slug, i.tier, i.subject
                ),
            ),
            (None, Some((subject, _))) => {
                let origin = if ca.state().rerooted.contains_key(serial) {
                    "re-rooted"
                } else {
                    "renewed"
                };
                (
                    None,
                    format!("{origin} by this root\n  subject:  {subject}"),
                )
            }
            (None, None) => {
                return Err(Error::NotIssued {
                    serial: serial.clone(),
                    dir: ca.dir().to_path_buf(),
                })
            }
        };
        let mut revoked = revoked_list(ca);
        let (title, reason, revoked_at, replaces) = match ca.state().revoked.get(serial) {
            None => {
                revoked.push((serial.clone(), self.reason, now));
                (
                    "Revoke intermediate",
                    self.reason.name().to_string(),
                    ledger::fmt_time(now),
                    None,
                )
            }
            Some(r) if r.reason.may_become(self.reason) => {
                // The revocation date stays the first one; only the reason changes.
                for listed in revoked.iter_mut().filter(|(s, _, _)| s == serial) {
                    listed.1 = self.reason;
                }
                (
                    "Change the revocation reason of intermediate",
                    format!(
                        "{} (was {} at {})",
                        self.reason.name(),
                        r.reason.name(),
                        r.revoked_at
                    ),
                    r.revoked_at.clone(),
                    Some(r.reason),
                )
            }
            Some(r) => {
                return Err(Error::AlreadyRevoked {
                    serial: serial.clone(),
                    at: r.revoked_at.clone(),
                    reason: r.reason.name(),
                })
            }
        };
        let (crl, _, listed) = crl_artifact(ca, revoked, now, &self.out)?;
        let summary = format!(
            "{title}\n  serial:   {serial}\n  {who}\n  reason:   {reason}\n  \
             A new CRL listing {listed} revoked certificate(s) is written to {}.\n",
            self.out.display()
        );
        let revoked_event = Event::Revoked {
            serial: serial.clone(),
            slug,
            reason: self.reason,
            revoked_at,
            replaces,
        };
        Ok(Plan {
            summary,
            steps: vec![Step::Record(revoked_event), Step::Sign(crl)],
            serial: Some(serial.clone()),
        })
    }
}
