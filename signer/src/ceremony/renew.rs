//! `renew`: a customer-owned root issues a replacement for an intermediate it re-rooted (or
//! renewed before), certifying a NEW key (after a hand-over KiwiStack could read the old one).
//!
//! The new certificate has the CSR's key (proof of possession checked, ecdsa-p256 or
//! ecdsa-p384 as the tier policies allow), the replaced certificate's subject DN bytes, its
//! nameConstraints extension byte for byte (critical) and its tier marker (if it has one),
//! pathLenConstraint 0, keyCertSign and cRLSign, a fresh serial, an RFC 7093 subject key
//! identifier of the new key (as `sign` makes), and a validity from now for `--days` or, by
//! default, as long as the replaced certificate's, clamped to this root's notAfter (`--days`
//! beyond it is refused). The plan refuses, before anything is signed: a KiwiStack root (it
//! renews with `sign`), a serial this root did not re-root or renew or has revoked, and a CSR
//! whose key is the replaced certificate's or any other this root certified. The `renewed`
//! entry records the serial it replaces; revoke that one afterwards (`revoke --reason superseded`).

use std::path::PathBuf;

use time::{Duration, OffsetDateTime};
use x509_parser::oid_registry::OID_X509_EXT_NAME_CONSTRAINTS;

use super::carry::{self, unix, Carried};
use super::reroot::fresh_serial;
use super::{add_file, Operation, Plan};
use crate::algo::KeyAlgorithm;
use crate::ca::{Ca, CLOCK_SKEW};
use crate::certpolicy::{self, PolicyOid};
use crate::constraints::NameConstraints;
use crate::csr;
use crate::error::{Error, Result};
use crate::hooks::{EventData, EventKind};
use crate::ledger::{self, Event, Recorded};
use crate::words::Fingerprint;
use crate::x509::{self, Serial};

/// The key types a renewal may certify: what every tier policy allows.
pub const ALLOWED_KEYS: [KeyAlgorithm; 2] = [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384];

/// Parameters for `renew`.
#[derive(Debug, Clone)]
pub struct Renew {
    /// The serial of the certificate to replace (re-rooted or renewed by this root).
    pub serial: Serial,
    /// CSR bytes (PEM or DER) for the new key.
    pub csr: Vec<u8>,
    /// Where the CSR came from (for messages).
    pub csr_origin: String,
    /// Validity in days (None: as long as the replaced certificate's, within the root's).
    pub days: Option<u32>,
    /// Output certificate path.
    pub out: PathBuf,
}

impl Operation for Renew {
    fn events(&self) -> &'static [EventKind] {
        &[EventKind::IntermediateRenewed]
    }

    fn hook_data(&self) -> EventData {
        let mut data = EventData::default();
        data.details
            .insert("replaces".into(), self.serial.hex().to_string());
        data.sha256
            .insert("csr".into(), Fingerprint::of(&self.csr).hex());
        add_file(&mut data, "csr", &PathBuf::from(&self.csr_origin));
        add_file(&mut data, "out", &self.out);
        data
    }

    fn plan<'a>(&'a self, ca: &'a Ca, now: OffsetDateTime) -> Result<Plan<'a>> {
        if ca.root_policy()?.subject.is_some() {
            return Err(Error::NotCustomerRoot {
                dir: ca.dir().to_path_buf(),
            });
        }
        let state = ca.state();
        let not_renewable = |detail: String| Error::NotRenewable {
            serial: self.serial.clone(),
            dir: ca.dir().to_path_buf(),
            detail,
        };
        let Some((_, old_key_id)) = state.customer_owned(&self.serial) else {
            return Err(not_renewable(if state.issued.contains_key(&self.serial) {
                "this root issued it for a KiwiStack customer, it did not re-root it".into()
            } else {
                "this root neither re-rooted nor renewed it".into()
            }));
        };
        if let Some(r) = state.revoked.get(&self.serial) {
            return Err(not_renewable(format!(
                "it was revoked ({}) at {}",
                r.reason.name(),
                r.revoked_at
            )));
        }
        let old_der = ca
            .ledger()
            .artifact(&Recorded::Certificate(self.serial.clone()))
            .ok_or_else(|| Error::SelfCheck(format!("the ledger holds no {}", self.serial)))?;
        let old = x509::parse_cert(&old_der).map_err(Error::SelfCheck)?;

        let csr = csr::parse_and_verify(&self.csr, &self.csr_origin)?;
        let alg = csr.public_key.algorithm();
        if !ALLOWED_KEYS.contains(&alg) {
            return Err(Error::RenewKeyNotAllowed { alg });
        }
        let key_id = hex::encode(csr.public_key.key_id());
        if key_id == old_key_id {
            return Err(Error::RenewSameKey {
                serial: self.serial.clone(),
            });
        }
        if csr.public_key == *ca.root_key() {
            return Err(Error::RootKeyInCsr);
        }
        let reused = state
            .rerooted
            .values()
            .map(|r| (&r.serial, &r.key_id))
            .chain(state.renewed.values().map(|r| (&r.serial, &r.key_id)))
            .chain(state.issued.values().map(|i| (&i.serial, &i.key_id)))
            .find(|(_, k)| **k == key_id);
        if let Some((serial, _)) = reused {
            return Err(Error::RenewKeyInUse {
                serial: serial.clone(),
            });
        }

        let root_end = ca.root_window().1;
        let old_len = old.validity().not_after.timestamp() - old.validity().not_before.timestamp();
        let not_before = now - CLOCK_SKEW;
        let not_after = match self.days {
            Some(0) => return Err(not_renewable("--days 0: give at least one day".into())),
            Some(days) => {
                let end = now + Duration::days(i64::from(days));
                if end.unix_timestamp() > root_end {
                    return Err(Error::PastRootExpiry {
                        days,
                        left: (root_end - now.unix_timestamp()) / 86_400,
                    });
                }
                end
            }
            None => unix((now.unix_timestamp() + old_len).min(root_end)),
        };
        if not_after <= now {
            return Err(Error::RootExpired {
                not_after: ledger::fmt_time(unix(root_end)),
            });
        }

        let refuse = |what: &str, m: String| not_renewable(format!("its {what}: {m}"));
        let subject_dn = x509::rcgen_name(old.subject()).map_err(|m| refuse("subject", m))?;
        let nc_ext = old
            .tbs_certificate
            .get_extension_unique(&OID_X509_EXT_NAME_CONSTRAINTS)
            .map_err(|e| refuse("nameConstraints", e.to_string()))?;
        let (nc_der, expected_nc, shown_nc) = match nc_ext {
            Some(ext) => {
                let x509_parser::extensions::ParsedExtension::NameConstraints(nc) =
                    ext.parsed_extension()
                else {
                    return Err(refuse("nameConstraints", "they do not parse".into()));
                };
                let (expected, _) = NameConstraints::from_parsed(nc);
                let shown = expected.to_string();
                (Some(ext.value.to_vec()), Some(expected), shown)
            }
            None => (None, None, "none (as the replaced certificate)".into()),
        };
        let marker = certpolicy::marked_tier(&old)
            .map_err(|m| refuse("certificatePolicies", m))?
            .map(PolicyOid::tier);

        let serial = fresh_serial(ca);
        let p = Carried {
            serial: serial.clone(),
            subject: subject_dn.clone(),
            validity: (not_before, not_after),
            nc_der: nc_der.clone(),
            marker: marker.clone(),
            ski: csr.public_key.key_id(),
        }
        .params()?;

        let summary = format!(
            "Renew an intermediate under this (customer-owned) root, with a NEW key\n  \
             replaces:         {}\n  subject (kept):   {}\n  new key:          {alg} (key id {key_id})\n  \
             validity:         {} to {}\n  name constraints: {shown_nc} (kept byte for byte, critical)\n  \
             basicConstraints: CA:TRUE, pathlen:0 (critical)\n  request SHA-256:  {}\n  \
             Afterwards revoke {} (`revoke --reason superseded`).\n",
            self.serial,
            x509::dn_string(&subject_dn),
            ledger::fmt_time(not_before),
            ledger::fmt_time(not_after),
            csr.fingerprint.for_reading(),
            self.serial,
        );
        let kept_subject = old.subject().as_raw().to_vec();
        // The nameConstraints are the replaced certificate's bytes, compared below.
        let (build, lint) = carry::build_and_lint(
            ca,
            p,
            csr.public_key.clone(),
            (expected_nc, marker),
            &["nameConstraints is not encoded as the policy's"],
            move |c| {
                let mut f = Vec::new();
                if c.subject().as_raw() != kept_subject.as_slice() {
                    f.push("subject DN bytes differ from the replaced certificate's".into());
                }
                if !carry::keeps_name_constraints(c, nc_der.as_deref()) {
                    f.push("nameConstraints are not the replaced certificate's, critical".into());
                }
                f
            },
        );
        let event_serial = serial.clone();
        let replaces = self.serial.clone();
        let subject = x509::dn_string(&subject_dn);
        let csr_sha256 = csr.fingerprint.hex();
        let record = move |der: &[u8]| {
            let (artifact_sha256, artifact) = ledger::encode_artifact(der);
            Event::Renewed {
                serial: event_serial,
                replaces,
                subject,
                not_after: ledger::fmt_time(not_after),
                key_id,
                csr_sha256,
                artifact_sha256,
                artifact,
            }
        };
        Ok(Plan::certificate(
            summary, serial, &self.out, build, lint, record,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use time::OffsetDateTime;

    use super::super::crl::Crl;
    use super::super::init::{init_org, BackendSpec};
    use super::super::reroot::Reroot;
    use super::super::revoke::Revoke;
    use super::super::tests::{crl_reason, csr_for, fresh, go, ledger_text, request, yes};
    use super::super::Ceremony;
    use super::*;
    use crate::backend::soft::SoftKey;
    use crate::backend::KeyBackend;
    use crate::ledger::Reason;

    fn der(path: &Path) -> Vec<u8> {
        pem::parse(std::fs::read(path).expect("read"))
            .expect("pem")
            .into_contents()
    }

    fn renew(t: &Path, serial: &Serial, key: &SoftKey, out: &str) -> Renew {
        Renew {
            serial: serial.clone(),
            csr: csr_for(key),
            csr_origin: "new.csr".into(),
            days: None,
            out: t.join(out),
        }
    }

    #[test]
    fn renew_certifies_a_new_key_with_the_old_subject_and_constraints_and_revoke_takes_both() {
        let now = OffsetDateTime::now_utc();
        let (tmp, msp) = fresh(now);
        let t = tmp.path();
        let old_key = SoftKey::generate(KeyAlgorithm::EcdsaP256);
        let issued = go(
            &msp,
            &request(&tmp, &csr_for(&old_key), "acme", "acme.pem"),
            &yes(),
            now,
        )
        .expect("sign")
        .serial
        .expect("serial");
        go(
            &msp,
            &Crl {
                out: t.join("msp.crl"),
            },
            &yes(),
            now,
        )
        .expect("crl");
        let customer = t.join("customer");
        let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/customer-root.yaml");
        let cb = yes();
        init_org(
            &customer,
            &policy,
            Some("Acme GmbH"),
            &BackendSpec::soft(),
            &Ceremony::new(&cb, now),
        )
        .expect("init");
        let op = Reroot::read(
            &t.join("acme.pem"),
            &msp.join("root.pem"),
            &t.join("msp.crl"),
            vec![],
            t.join("rerooted.pem"),
        )
        .expect("read");
        let rerooted = go(&customer, &op, &yes(), now)
            .expect("reroot")
            .serial
            .expect("serial");

        // Refusals: nothing written, nothing recorded.
        let new_key = SoftKey::generate(KeyAlgorithm::EcdsaP384);
        let before = ledger_text(&customer);
        let msp_before = ledger_text(&msp);
        let cases = [
            (
                customer.clone(),
                renew(t, &rerooted, &old_key, "x1.pem"),
                "same key",
            ),
            (
                customer.clone(),
                renew(t, &issued, &new_key, "x2.pem"),
                "unknown",
            ),
            (
                msp.clone(),
                renew(t, &issued, &new_key, "x3.pem"),
                "msp root",
            ),
            (
                customer.clone(),
                Renew {
                    days: Some(40_000),
                    ..renew(t, &rerooted, &new_key, "x4.pem")
                },
                "past the root",
            ),
        ];
        for (dir, op, why) in &cases {
            let err = go(dir, op, &yes(), now).expect_err(why);
            let ok = match *why {
                "same key" => matches!(err, Error::RenewSameKey { .. }),
                "unknown" => matches!(err, Error::NotRenewable { .. }),
                "msp root" => matches!(err, Error::NotCustomerRoot { .. }),
                _ => matches!(err, Error::PastRootExpiry { .. }),
            };
            assert!(ok, "{why}: {err}");
            assert!(!op.out.exists(), "{why}");
        }
        assert_eq!(before, ledger_text(&customer));
        assert_eq!(msp_before, ledger_text(&msp));

        let op = renew(t, &rerooted, &new_key, "renewed.pem");
        let renewed = go(&customer, &op, &yes(), now)
            .expect("renew")
            .serial
            .expect("serial");
        let (old_der, new_der) = (der(&t.join("rerooted.pem")), der(&op.out));
        let (old, new) = (
            x509::parse_cert(&old_der).expect("old"),
            x509::parse_cert(&new_der).expect("new"),
        );
        assert_eq!(old.subject().as_raw(), new.subject().as_raw());
        assert_ne!(old.public_key().raw, new.public_key().raw);
        assert_eq!(
            x509::cert_key(&new).expect("key").key_id(),
            new_key.public_key().key_id()
        );
        let nc = |c: &x509_parser::certificate::X509Certificate<'_>| {
            let e = c
                .tbs_certificate
                .get_extension_unique(&OID_X509_EXT_NAME_CONSTRAINTS)
                .expect("unique")
                .expect("nameConstraints");
            (e.critical, e.value.to_vec())
        };
        assert_eq!(nc(&old), nc(&new));
        assert_eq!(
            certpolicy::marked_tier(&new).expect("marker"),
            certpolicy::marked_tier(&old).expect("marker")
        );
        let ca = Ca::open(&customer).expect("open");
        // Default validity: as long as the re-rooted one, within the root's.
        let len = |c: &x509_parser::certificate::X509Certificate<'_>| {
            c.validity().not_after.timestamp() - c.validity().not_before.timestamp()
        };
        assert!(new.validity().not_after.timestamp() <= ca.root_window().1);
        assert!((len(&new) - len(&old)).abs() <= 2 * CLOCK_SKEW.whole_seconds());
        assert_eq!(ca.state().renewed[&renewed].replaces, rerooted);
        crate::ca::verify_ledger(&customer, None).expect("the ledger verifies");

        // The same new key again is refused: it is certified already.
        let err = go(
            &customer,
            &renew(t, &renewed, &new_key, "x5.pem"),
            &yes(),
            now,
        )
        .expect_err("in use");
        assert!(matches!(err, Error::RenewSameKey { .. }), "{err}");
        let err = go(
            &customer,
            &renew(t, &rerooted, &new_key, "x6.pem"),
            &yes(),
            now,
        )
        .expect_err("in use");
        assert!(matches!(err, Error::RenewKeyInUse { .. }), "{err}");

        // Revoke the re-rooted one as superseded: listed on the customer's CRL.
        let rv = Revoke {
            serial: rerooted.clone(),
            reason: Reason::Superseded,
            out: t.join("customer-1.crl"),
        };
        go(&customer, &rv, &yes(), now).expect("revoke re-rooted");
        assert_eq!(
            crl_reason(&t.join("customer-1.crl"), &rerooted),
            Some(Reason::Superseded.rcgen() as u8)
        );
        assert_eq!(crl_reason(&t.join("customer-1.crl"), &renewed), None);
        let st = Ca::open(&customer)
            .expect("open")
            .status(now)
            .expect("status");
        let listed: Vec<(&str, bool)> = st
            .customer_owned
            .iter()
            .map(|o| (o.origin, o.revoked.is_some()))
            .collect();
        assert_eq!(listed.len(), 2);
        assert!(listed.contains(&("rerooted", true)) && listed.contains(&("renewed", false)));
        // A revoked one is not renewed again; superseded may become keyCompromise.
        let err = go(
            &customer,
            &renew(
                t,
                &rerooted,
                &SoftKey::generate(KeyAlgorithm::EcdsaP256),
                "x7.pem",
            ),
            &yes(),
            now,
        )
        .expect_err("revoked");
        assert!(matches!(err, Error::NotRenewable { .. }), "{err}");
        let kc = Revoke {
            reason: Reason::KeyCompromise,
            out: t.join("customer-2.crl"),
            ..rv
        };
        go(&customer, &kc, &yes(), now).expect("superseded becomes keyCompromise");
        let again = Revoke {
            reason: Reason::Superseded,
            out: t.join("customer-3.crl"),
            ..kc
        };
        let err = go(&customer, &again, &yes(), now).expect_err("compromise is forever");
        assert!(matches!(err, Error::AlreadyRevoked { .. }), "{err}");
        // The renewed one can be renewed and revoked in turn.
        let op = renew(
            t,
            &renewed,
            &SoftKey::generate(KeyAlgorithm::EcdsaP256),
            "r2.pem",
        );
        go(&customer, &op, &yes(), now).expect("renew the renewed");
        let rv = Revoke {
            serial: renewed.clone(),
            reason: Reason::Superseded,
            out: t.join("customer-4.crl"),
        };
        go(&customer, &rv, &yes(), now).expect("revoke renewed");
        crate::ca::verify_ledger(&customer, None).expect("the ledger verifies");

        // The ledger refuses a forged slug on such a revocation.
        let ca = Ca::open(&customer).expect("open");
        let forged = Event::Revoked {
            serial: renewed.clone(),
            slug: Some(crate::slug::Slug::parse("acme").expect("slug")),
            reason: Reason::KeyCompromise,
            revoked_at: ca.state().revoked[&renewed].revoked_at.clone(),
            replaces: Some(Reason::Superseded),
        };
        let (lines, _) = ca
            .ledger()
            .new_lines(vec![forged], now + time::Duration::hours(1), None);
        let text = format!("{}{lines}", ca.ledger().text());
        let err = ledger::verify_text("ledger", &text).expect_err("forged slug");
        assert!(err.to_string().contains("names no customer"), "{err}");

        // ... and a `renewed` entry that replaces what this root never re-rooted, a revoked
        // certificate, or keeps the replaced key.
        let r = &ca.state().renewed[&renewed];
        let forge = |replaces: &Serial, key_id: &str| Event::Renewed {
            serial: Serial::random(),
            replaces: replaces.clone(),
            subject: r.subject.clone(),
            not_after: r.not_after.clone(),
            key_id: key_id.to_string(),
            csr_sha256: "0".repeat(64),
            artifact_sha256: "0".repeat(64),
            artifact: String::new(),
        };
        let live = ca
            .state()
            .renewed
            .keys()
            .find(|s| !ca.state().revoked.contains_key(*s))
            .expect("the second renewal")
            .clone();
        let live_key = ca.state().renewed[&live].key_id.clone();
        for (event, why) in [
            (forge(&issued, "00"), "neither re-rooted nor renewed"),
            (forge(&rerooted, "00"), "was revoked before"),
            (forge(&live, &live_key), "with the same key"),
        ] {
            let (lines, _) =
                ca.ledger()
                    .new_lines(vec![event], now + time::Duration::hours(1), None);
            let text = format!("{}{lines}", ca.ledger().text());
            let err = ledger::verify_text("ledger", &text).expect_err(why);
            assert!(err.to_string().contains(why), "{why}: {err}");
        }
    }
}
