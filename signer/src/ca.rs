//! A CA directory: its files, its configuration, and the verified ledger it holds.
//!
//! Layout of `DIR`: `ca.toml` (backend and policy), `root.pem`, `ledger.jsonl` with its commit
//! record `ledger.commit`, `policies/`, and for the soft backend `root.key.age`. Opening a CA reads these and checks the ledger's
//! hash chain against root.pem ([`Check::Chain`]; `ledger verify` checks every signature too).
//! Reading is all this module does to a CA, apart from [`Ca::export`] writing a recorded
//! artifact out again: every change goes through the one pipeline in [`crate::ceremony`].

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, KeyIdMethod};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::algo::PublicKey;
use crate::backend::{BackendConfig, BackendKind, KeyBackend};
use crate::callbacks::Callbacks;
use crate::ceremony::head::ExpectedHead;
use crate::error::{Error, Result};
use crate::fsutil::{self, Mode};
use crate::ledger::{self, Check, Ledger, Recorded, State};
use crate::pipeline::{self, Kind};
use crate::policy::{self, RootPolicy};
use crate::slug::Tier;
use crate::x509;
/// How far notBefore is set back from now, for relying parties with slow clocks.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// `ca.toml` (format 2): the policy paths, then the `[backend]` table, whose `type` names the
/// backend and whose other keys are that backend's settings (never a PIN or passphrase).
///
/// ```toml
/// format = 2
/// policy = "policies/root.yaml"
/// policies_dir = "policies"
///
/// [backend]
/// type = "yubikey"
/// serial = 20000001
/// slot = "9c"
/// ```
///
/// Format 1 files (`backend = "yubikey"` with a `[yubikey]` table) are still read; see
/// [`crate::config_v1`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    /// File format version.
    pub format: u32,
    /// The root policy file (relative paths are inside the CA directory: `init` copies the
    /// policies there, so the CA carries the policies it signs under).
    pub policy: PathBuf,
    /// Directory holding the intermediate policies (relative: inside the CA directory).
    pub policies_dir: PathBuf,
    /// Which backend holds the root key, and where.
    pub backend: BackendConfig,
}

/// The `format` `init` writes.
pub const CONFIG_FORMAT: u32 = 2;

/// The file names inside a CA directory.
pub mod files {
    /// Configuration.
    pub const CONFIG: &str = "ca.toml";
    /// Root certificate.
    pub const ROOT: &str = "root.pem";
}

fn read_config(dir: &Path) -> Result<CaConfig> {
    let path = dir.join(files::CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::io(
            &path,
            e,
            "this is not a CA directory; pass the --ca that `kiwi-signer init` created",
        )
    })?;
    let mut config = crate::config_v1::parse_config(&text).map_err(|detail| Error::Damaged {
        path: path.clone(),
        detail,
    })?;
    config.policy = dir.join(&config.policy);
    config.policies_dir = dir.join(&config.policies_dir);
    Ok(config)
}

/// The policies directory inside a CA directory.
pub(crate) const POLICIES: &str = "policies";

/// An open, verified CA directory: a snapshot of the ledger it verified. The ceremony pipeline
/// opens its own under the directory lock, so no snapshot outlives a change.
pub struct Ca {
    dir: PathBuf,
    config: CaConfig,
    ledger: Ledger,
    root_subject_raw: Vec<u8>,
    root_window: (i64, i64),
    root_dn: rcgen::DistinguishedName,
}

impl Ca {
    /// Opens `dir`, checking the ledger's hash chain against root.pem ([`Check::Chain`]).
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_checked(dir, Check::Chain)
    }

    /// Opens `dir`, checking the ledger as deep as `check` says.
    pub fn open_checked(dir: &Path, check: Check) -> Result<Self> {
        let config = read_config(dir)?;
        let root_path = dir.join(files::ROOT);
        let root_pem = std::fs::read(&root_path)
            .map_err(|e| Error::io(&root_path, e, "restore root.pem from the backup"))?;
        let root_der = pem::parse(&root_pem)
            .map_err(|e| Error::Damaged {
                path: root_path.clone(),
                detail: format!("not PEM ({e})"),
            })?
            .into_contents();
        let ledger = Ledger::open(&dir.join(ledger::FILE), &root_der, check)?;
        let cert = x509::parse_cert(&root_der).map_err(Error::SelfCheck)?;
        let tbs = &cert.tbs_certificate;
        let root_dn = x509::rcgen_name(&tbs.subject).map_err(Error::SelfCheck)?;
        Ok(Ca {
            dir: dir.to_path_buf(),
            config,
            root_subject_raw: tbs.subject.as_raw().to_vec(),
            root_window: (
                tbs.validity.not_before.timestamp(),
                tbs.validity.not_after.timestamp(),
            ),
            root_dn,
            ledger,
        })
    }

    /// The verified ledger state.
    pub fn state(&self) -> &State {
        self.ledger.state()
    }

    /// The CA's configuration.
    pub fn config(&self) -> &CaConfig {
        &self.config
    }

    /// The root policy (re-read, for the CRL schedule).
    pub fn root_policy(&self) -> Result<RootPolicy> {
        Ok(policy::load_root(&self.config.policy)?)
    }

    /// The root's public key (root.pem's, which the ledger's first entry holds).
    pub fn root_key(&self) -> &PublicKey {
        &self.state().root_key
    }

    /// Refuses a clock earlier than the newest ledger entry.
    pub(crate) fn check_clock(&self, now: OffsetDateTime) -> Result<()> {
        let newest = self.state().last_time;
        if now < newest {
            return Err(Error::ClockBehindLedger {
                now: ledger::fmt_time(now),
                newest: ledger::fmt_time(newest),
            });
        }
        Ok(())
    }

    /// Opens the root key backend `ca.toml` names (asking for its passphrase or PIN).
    pub(crate) fn open_backend<'cb>(
        &self,
        cb: &'cb dyn Callbacks,
    ) -> Result<Box<dyn KeyBackend + 'cb>> {
        let backend = self.config.backend.open(&self.dir, cb)?;
        Ok(backend)
    }

    /// rcgen parameters naming the root as issuer.
    pub(crate) fn issuer_params(&self) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = self.root_dn.clone();
        p.key_identifier_method = KeyIdMethod::PreSpecified(self.root_key().key_id());
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        p
    }

    /// The CA directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The verified ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The root certificate's subject, DER.
    pub(crate) fn root_subject_raw(&self) -> &[u8] {
        &self.root_subject_raw
    }

    /// The root certificate's notBefore and notAfter (Unix seconds).
    pub(crate) fn root_window(&self) -> (i64, i64) {
        self.root_window
    }

    /// Writes a recorded certificate or CRL to `out` again (PEM, or DER when the name ends in
    /// `.der`), exactly as the ledger holds it.
    pub fn export(&self, which: &Recorded, out: &Path) -> Result<()> {
        let (kind, what) = match which {
            Recorded::Certificate(s) => (Kind::Certificate, format!("certificate serial {s}")),
            Recorded::Crl(n) => (Kind::Crl, format!("CRL number {n}")),
        };
        let der = self
            .ledger
            .artifact(which)
            .ok_or_else(|| Error::NotRecorded {
                what,
                dir: self.dir.clone(),
            })?;
        fsutil::check_creatable(out)?;
        fsutil::write_new(out, &pipeline::encode(out, kind, &der), Mode::Public)
    }
}

/// The CA's status, derived from the verified ledger.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Root subject.
    pub root_subject: String,
    /// Root key id.
    pub root_key_id: String,
    /// Backend.
    pub backend: String,
    /// Ledger entries.
    pub ledger_entries: u64,
    /// Ledger head.
    pub ledger_head: String,
    /// Issued intermediates (revoked ones included, marked).
    pub intermediates: Vec<StatusCert>,
    /// Newest CRL number.
    pub crl_number: Option<u64>,
    /// Newest CRL's nextUpdate.
    pub crl_next_update: Option<String>,
    /// When the next CRL ceremony is due (nextUpdate minus the policy's margin).
    pub next_crl_due: Option<String>,
    /// Whether the due date has passed.
    pub crl_overdue: bool,
    /// What protects this CA against a rolled-back ledger (entries cut off, an old backup).
    pub rollback_protection: String,
    /// The window `expiring` looks ahead (`status --warn-days`).
    pub warn_days: u32,
    /// Intermediates a customer-owned root re-rooted or renewed (revoked ones included,
    /// marked); empty on a KiwiStack root.
    pub customer_owned: Vec<OwnedCert>,
    /// Unrevoked intermediates (issued, re-rooted or renewed here) that expire within `warn_days`,
    /// soonest first.
    pub expiring: Vec<Expiring>,
}

/// How far ahead `status` warns of expiring intermediates unless told otherwise.
pub const DEFAULT_WARN_DAYS: u32 = 90;

/// An unrevoked intermediate close to its notAfter (renew it before then).
#[derive(Debug, Clone, Serialize)]
pub struct Expiring {
    /// Serial.
    pub serial: String,
    /// Subject.
    pub subject: String,
    /// notAfter.
    pub not_after: String,
    /// Whole days left (negative once expired).
    pub days_left: i64,
    /// `issued` (by this root for a customer), `rerooted` (another root's, re-signed here) or
    /// `renewed` (a replacement with a new key, issued here).
    pub origin: &'static str,
}

/// An intermediate a customer-owned root re-rooted or renewed, in the status.
#[derive(Debug, Clone, Serialize)]
pub struct OwnedCert {
    /// Serial.
    pub serial: String,
    /// `rerooted` or `renewed`.
    pub origin: &'static str,
    /// The serial it replaces (renewed), or the MSP-issued original's (rerooted).
    pub replaces: String,
    /// Subject.
    pub subject: String,
    /// notAfter.
    pub not_after: String,
    /// Revocation reason, if revoked.
    pub revoked: Option<String>,
}

/// One intermediate in the status.
#[derive(Debug, Clone, Serialize)]
pub struct StatusCert {
    /// Serial.
    pub serial: String,
    /// Slug.
    pub slug: String,
    /// Tier.
    pub tier: Tier,
    /// notAfter.
    pub not_after: String,
    /// Revocation reason, if revoked.
    pub revoked: Option<String>,
}

impl Ca {
    /// The status at `now`, warning of intermediates expiring within [`DEFAULT_WARN_DAYS`].
    pub fn status(&self, now: OffsetDateTime) -> Result<Status> {
        self.status_warn(now, DEFAULT_WARN_DAYS)
    }

    /// The status at `now`, warning of intermediates expiring within `warn_days`.
    pub fn status_warn(&self, now: OffsetDateTime, warn_days: u32) -> Result<Status> {
        let s = self.state();
        let cert = x509::parse_cert(&s.root_der).map_err(Error::SelfCheck)?;
        let margin = self
            .root_policy()
            .map(|p| p.crl.reissue_before_days)
            .unwrap_or(0);
        let next_update = s
            .last_crl
            .as_ref()
            .and_then(|c| ledger::parse_time(&c.next_update));
        let due = next_update.map(|n| n - Duration::days(i64::from(margin)));
        Ok(Status {
            root_subject: cert.tbs_certificate.subject.to_string(),
            root_key_id: hex::encode(s.root_key.key_id()),
            backend: self.config.backend.kind().as_str().into(),
            ledger_entries: s.len,
            ledger_head: s.head.hex(),
            intermediates: s
                .issued
                .values()
                .map(|i| StatusCert {
                    serial: i.serial.hex(),
                    slug: i.slug.to_string(),
                    tier: i.tier,
                    not_after: i.not_after.clone(),
                    revoked: s
                        .revoked
                        .get(&i.serial)
                        .map(|r| format!("{} at {}", r.reason.name(), r.revoked_at)),
                })
                .collect(),
            customer_owned: s
                .rerooted
                .values()
                .map(|r| {
                    (
                        &r.serial,
                        "rerooted",
                        &r.original_serial,
                        &r.subject,
                        &r.not_after,
                    )
                })
                .chain(
                    s.renewed
                        .values()
                        .map(|r| (&r.serial, "renewed", &r.replaces, &r.subject, &r.not_after)),
                )
                .map(|(serial, origin, replaces, subject, not_after)| OwnedCert {
                    serial: serial.hex(),
                    origin,
                    replaces: replaces.hex(),
                    subject: subject.clone(),
                    not_after: not_after.clone(),
                    revoked: s
                        .revoked
                        .get(serial)
                        .map(|r| format!("{} at {}", r.reason.name(), r.revoked_at)),
                })
                .collect(),
            crl_number: s.last_crl.as_ref().map(|c| c.number),
            crl_next_update: s.last_crl.as_ref().map(|c| c.next_update.clone()),
            next_crl_due: due.map(ledger::fmt_time),
            crl_overdue: due.is_none_or(|d| now >= d),
            rollback_protection: rollback_protection(self.config.backend.kind()).into(),
            warn_days,
            expiring: self.expiring(now, warn_days),
        })
    }

    /// Unrevoked intermediates expiring within `warn_days` of `now`, soonest first.
    pub fn expiring(&self, now: OffsetDateTime, warn_days: u32) -> Vec<Expiring> {
        let s = self.state();
        let issued = s
            .issued
            .values()
            .filter(|i| !s.revoked.contains_key(&i.serial))
            .map(|i| (&i.serial, &i.subject, &i.not_after, "issued"));
        let rerooted = s
            .rerooted
            .values()
            .map(|r| (&r.serial, &r.subject, &r.not_after, "rerooted"))
            .chain(
                s.renewed
                    .values()
                    .map(|r| (&r.serial, &r.subject, &r.not_after, "renewed")),
            )
            .filter(|(serial, ..)| !s.revoked.contains_key(*serial));
        let horizon = now + Duration::days(i64::from(warn_days));
        let mut list: Vec<Expiring> = issued
            .chain(rerooted)
            .filter_map(|(serial, subject, not_after, origin)| {
                let end = ledger::parse_time(not_after)?;
                (end <= horizon).then(|| Expiring {
                    serial: serial.hex(),
                    subject: subject.clone(),
                    not_after: not_after.clone(),
                    days_left: (end - now).whole_days(),
                    origin,
                })
            })
            .collect();
        list.sort_by(|a, b| a.not_after.cmp(&b.not_after));
        list
    }
}

/// What protects a CA on `backend` against a rolled-back ledger, for `status`.
pub fn rollback_protection(backend: BackendKind) -> &'static str {
    if backend.remembers() {
        "the device remembers the ledger head and the highest CRL number and refuses a \
         rolled-back ledger; --expect-head/--head-file add the witness's check"
    } else {
        "the witness's head only: the soft backend has no device to remember the ledger, so \
         pass --expect-head or --head-file to every sign, revoke and crl"
    }
}

/// Verifies the ledger of `dir` completely (every artifact's signature) and, when the witness
/// gave one, its head; returns the state.
pub fn verify_ledger(dir: &Path, expect_head: Option<&ExpectedHead>) -> Result<State> {
    let ca = Ca::open_checked(dir, Check::Full)?;
    if let Some(h) = expect_head {
        h.check(&ca.state().head)?;
    }
    Ok(ca.state().clone())
}
