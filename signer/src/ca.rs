//! A CA directory and the operations on it: init, sign, revoke, crl, status.
//!
//! Layout of `DIR`: `ca.toml` (backend and policy), `root.pem`, `ledger.jsonl`, and for the soft
//! backend `root.key.age`. Every operation takes the directory lock, verifies the whole ledger,
//! refuses a clock earlier than the newest entry, runs the pipeline, writes its output with
//! create_new and appends to the ledger last; on any failure nothing is left behind.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CidrSubnet,
    CrlDistributionPoint, GeneralSubtree, IsCa, Issuer, KeyIdMethod, NameConstraints,
    RevokedCertParams, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::algo::PublicKey;
pub use crate::backend::BackendSpec;
use crate::backend::{check_matches, BackendConfig, KeyBackend, KeyRequest, NewKey};
use crate::callbacks::Callbacks;
use crate::csr::{self, VerifiedCsr};
use crate::error::{Error, Result};
use crate::fsutil::{self, DirLock, Mode};
use crate::ledger::{self, Event, Ledger, Reason, State};
use crate::lint::{self, CaExpectations};
use crate::pipeline::{self, Kind};
use crate::policy::{self, IntermediatePolicy, RootPolicy};
use crate::slug::{Slug, Tier};
use crate::words::Fingerprint;
use crate::x509::{self, Serial};

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

/// What an operation did, for the CLI to print.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Files written.
    pub written: Vec<PathBuf>,
    /// Serial of what was issued or revoked.
    pub serial: Option<Serial>,
    /// CRL number, when a CRL was issued.
    pub crl_number: Option<u64>,
    /// The ledger's new head hash.
    pub head: String,
    /// The head as PGP words, for the witness.
    pub head_words: String,
}

impl Outcome {
    fn new(written: Vec<PathBuf>, head: Fingerprint) -> Self {
        Outcome {
            written,
            serial: None,
            crl_number: None,
            head: head.hex(),
            head_words: head.words(),
        }
    }
}

/// Where an output goes: PEM unless the name ends in `.der`.
fn encode_output(path: &Path, tag: &str, der: &[u8]) -> Vec<u8> {
    if path.extension().is_some_and(|e| e == "der") {
        der.to_vec()
    } else {
        pem::encode(&pem::Pem::new(tag, der.to_vec())).into_bytes()
    }
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
    let mut config = crate::config_v1::parse_config(&text).map_err(|e| {
        Error::Refused(format!(
            "{}: {e}; restore ca.toml from the backup",
            path.display()
        ))
    })?;
    config.policy = dir.join(&config.policy);
    config.policies_dir = dir.join(&config.policies_dir);
    Ok(config)
}

/// The policies directory inside a CA directory.
const POLICIES: &str = "policies";

/// An open, verified CA directory.
///
/// A handle is a snapshot of the ledger it verified: after an operation that changed the CA,
/// open it again for the next one. A stale handle (or a second process that appended in the
/// meantime) is refused at commit, with its output removed, so no ledger entry is ever lost.
pub struct Ca {
    dir: PathBuf,
    config: CaConfig,
    ledger: Ledger,
    root_subject_raw: Vec<u8>,
    root_window: (i64, i64),
    root_dn: rcgen::DistinguishedName,
}

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
}

impl Ca {
    /// Opens `dir`, verifying the whole ledger against root.pem.
    pub fn open(dir: &Path) -> Result<Self> {
        let config = read_config(dir)?;
        let root_path = dir.join(files::ROOT);
        let root_pem = std::fs::read(&root_path)
            .map_err(|e| Error::io(&root_path, e, "restore root.pem from the backup"))?;
        let root_der = pem::parse(&root_pem)
            .map_err(|e| {
                Error::Refused(format!(
                    "{}: not PEM ({e}); restore it from the backup",
                    root_path.display()
                ))
            })?
            .into_contents();
        let ledger = Ledger::open(&dir.join(ledger::FILE), &root_der)?;
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

    fn root_key(&self) -> &PublicKey {
        &self.state().root_key
    }

    fn check_clock(&self, now: OffsetDateTime) -> Result<()> {
        let newest = self.state().last_time;
        if now < newest {
            return Err(Error::ClockBehindLedger {
                now: ledger::fmt_time(now),
                newest: ledger::fmt_time(newest),
            });
        }
        Ok(())
    }

    fn open_backend<'cb>(&self, cb: &'cb dyn Callbacks) -> Result<Box<dyn KeyBackend + 'cb>> {
        let backend = self.config.backend.open(&self.dir, cb)?;
        check_matches(backend.as_ref(), self.root_key())?;
        Ok(backend)
    }

    fn issuer_params(&self) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = self.root_dn.clone();
        p.key_identifier_method = KeyIdMethod::PreSpecified(self.root_key().key_id());
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        p
    }

    fn commit(
        &self,
        events: Vec<Event>,
        now: OffsetDateTime,
        written: &[PathBuf],
    ) -> Result<Fingerprint> {
        let path = self.dir.join(ledger::FILE);
        // Under the directory lock: the ledger on disk must still be the one this `Ca` verified
        // at open. Otherwise another process (or an earlier operation on this handle) appended
        // since, and writing our text would drop its entries.
        let unchanged = std::fs::read_to_string(&path).is_ok_and(|t| t == self.ledger.text());
        if !unchanged {
            for w in written {
                let _ = std::fs::remove_file(w);
            }
            return Err(Error::Refused(format!(
                "{} changed since this CA was opened (another kiwi-signer run?); nothing was \
                 recorded and the output was removed. Run the command again",
                path.display()
            )));
        }
        let (text, head) = self.ledger.prepare(events, now);
        if let Err(e) = fsutil::replace_atomically(&path, text.as_bytes(), Mode::Public) {
            for w in written {
                let _ = std::fs::remove_file(w);
            }
            return Err(e);
        }
        Ok(head)
    }

    /// Issues an intermediate CA certificate for a CSR, under the tier's policy.
    pub fn sign(
        &self,
        req: &SignRequest,
        cb: &dyn Callbacks,
        now: OffsetDateTime,
    ) -> Result<Outcome> {
        fsutil::ensure_absent(&req.out)?;
        let _lock = DirLock::acquire(&self.dir)?;
        self.check_clock(now)?;
        let csr = csr::parse_and_verify(&req.csr, &req.csr_origin)?;
        let pol = policy::load_intermediate(&self.config.policies_dir, req.tier)?;
        self.check_request(&csr, &pol, &req.slug)?;
        let days = req.days.unwrap_or(pol.default_days);
        if days == 0 || days > pol.max_days {
            return Err(Error::Refused(format!(
                "--days {days} is outside the {} policy (1 to {} days)",
                pol.tier, pol.max_days
            )));
        }
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let not_before = now - CLOCK_SKEW;
        let not_after = now + Duration::days(i64::from(days));
        if not_after.unix_timestamp() > self.root_window.1 {
            let left = (self.root_window.1 - now.unix_timestamp()) / 86_400;
            return Err(Error::Refused(format!(
                "{days} days would end after the root expires ({left} days left); pass --days {left} or less"
            )));
        }
        let serial = self.fresh_serial();
        let params =
            self.intermediate_params(&pol, &req.slug, &csr, &serial, not_before, not_after);
        let permitted: Vec<String> = pol
            .permitted_dns
            .iter()
            .map(|t| t.render(&req.slug))
            .collect();
        let subject = params.distinguished_name.clone();
        let summary = sign_summary(&req.slug, pol.tier, &csr, &params, &permitted, days);
        let root_key = self.root_key().clone();
        let issuer_params = self.issuer_params();
        let subject_key = csr.public_key.clone();
        let build = |signer: &crate::backend::RcgenSigner<'_>| {
            let issuer = Issuer::from_params(&issuer_params, signer);
            params
                .signed_by(&subject_key, &issuer)
                .map(|c| c.der().to_vec())
        };
        let root_id = root_key.key_id();
        let expect = CaExpectations {
            issuer_name: &self.root_subject_raw,
            issuer_key_id: &root_id,
            issuer_window: self.root_window,
            subject_key: &csr.public_key,
            path_len: Some(pol.path_len),
            key_usages: &pol.key_usages,
            permitted_dns: &permitted,
        };
        let lint = |der: &[u8]| match x509::parse_cert(der) {
            Ok(c) => lint::lint_ca_cert(&c, &expect),
            Err(e) => vec![e],
        };
        // Lint first: a policy that breaks RFC 5280 is refused before anyone types a PIN.
        let dry = pipeline::dry_run(Kind::Certificate, root_key.algorithm(), &build, &lint)?;
        if !cb.confirm(&summary)? {
            return Err(Error::NotConfirmed);
        }
        let backend = self.open_backend(cb)?;
        let der = pipeline::sign_real(&dry, backend.as_ref(), &root_key, &build, &lint)?;
        fsutil::write_new(
            &req.out,
            &encode_output(&req.out, "CERTIFICATE", &der),
            Mode::Public,
        )?;
        let (artifact_sha256, artifact) = ledger::encode_artifact(&der);
        let event = Event::IntermediateIssued {
            serial: serial.clone(),
            slug: req.slug.clone(),
            tier: pol.tier,
            subject: dn_string(&subject),
            not_after: ledger::fmt_time(not_after),
            key_id: hex::encode(csr.public_key.key_id()),
            csr_sha256: csr.fingerprint.hex(),
            policy_sha256: pol.source.sha256.hex(),
            artifact_sha256,
            artifact,
        };
        let head = self.commit(vec![event], now, std::slice::from_ref(&req.out))?;
        let mut o = Outcome::new(vec![req.out.clone()], head);
        o.serial = Some(serial);
        Ok(o)
    }

    fn check_request(
        &self,
        csr: &VerifiedCsr,
        pol: &IntermediatePolicy,
        slug: &Slug,
    ) -> Result<()> {
        let alg = csr.public_key.algorithm();
        if !pol.allowed_keys.contains(&alg) {
            let allowed: Vec<&str> = pol.allowed_keys.iter().map(|a| a.name()).collect();
            return Err(Error::Refused(format!(
                "the CSR's key is {alg}, which the {} policy does not allow ({}); ask for a new CSR",
                pol.tier,
                allowed.join(", ")
            )));
        }
        if csr.public_key == *self.root_key() {
            return Err(Error::Refused(
                "the CSR carries the root's own public key; an intermediate must have its own key. \
                 Nothing was signed: find out how the root key reached the requester"
                    .into(),
            ));
        }
        let key_id = hex::encode(csr.public_key.key_id());
        if let Some(other) = self
            .state()
            .issued
            .values()
            .find(|i| i.key_id == key_id && i.slug != *slug)
        {
            return Err(Error::Refused(format!(
                "this key was already certified for customer `{}` (serial {}); a key belongs to one customer only",
                other.slug, other.serial
            )));
        }
        if let Some(revoked) = self.state().issued.values().find(|i| {
            i.key_id == key_id
                && self
                    .state()
                    .revoked
                    .get(&i.serial)
                    .is_some_and(|r| r.reason == Reason::KeyCompromise)
        }) {
            return Err(Error::Refused(format!(
                "this key's certificate {} was revoked for keyCompromise; it must never be certified again",
                revoked.serial
            )));
        }
        Ok(())
    }

    fn fresh_serial(&self) -> Serial {
        loop {
            let s = Serial::random();
            if !self.state().issued.contains_key(&s) {
                return s;
            }
        }
    }

    fn intermediate_params(
        &self,
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
        p.name_constraints = Some(NameConstraints {
            permitted_subtrees: pol
                .permitted_dns
                .iter()
                .map(|t| GeneralSubtree::DnsName(t.render(slug)))
                .collect(),
            excluded_subtrees: pol
                .excluded_ip
                .iter()
                .map(|(ip, len)| GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(*ip, *len)))
                .collect(),
        });
        p.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![pol.crl_distribution_point.render(slug)],
        }];
        p.use_authority_key_identifier_extension = true;
        p.key_identifier_method = KeyIdMethod::PreSpecified(csr.public_key.key_id());
        p
    }

    /// Revokes an issued intermediate and issues a new CRL to `out`.
    pub fn revoke(
        &self,
        serial: &Serial,
        reason: Reason,
        out: &Path,
        cb: &dyn Callbacks,
        now: OffsetDateTime,
    ) -> Result<Outcome> {
        fsutil::ensure_absent(out)?;
        let _lock = DirLock::acquire(&self.dir)?;
        self.check_clock(now)?;
        let Some(issued) = self.state().issued.get(serial) else {
            return Err(Error::Refused(format!(
                "serial {serial} is not an intermediate this root issued; `kiwi-signer status --ca {}` lists them",
                self.dir.display()
            )));
        };
        if let Some(r) = self.state().revoked.get(serial) {
            return Err(Error::Refused(format!(
                "serial {serial} was already revoked at {} ({}); to publish a fresh CRL run `kiwi-signer crl`",
                r.revoked_at,
                r.reason.name()
            )));
        }
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let mut revoked: Vec<(Serial, Reason, OffsetDateTime)> = self.revoked_list();
        revoked.push((serial.clone(), reason, now));
        let summary = format!(
            "Revoke intermediate\n  serial:   {serial}\n  customer: {} ({} tier)\n  subject:  {}\n  reason:   {}\n  \
             A new CRL listing {} revoked certificate(s) is written to {}.\n",
            issued.slug,
            issued.tier,
            issued.subject,
            reason.name(),
            revoked.len(),
            out.display()
        );
        if !cb.confirm(&summary)? {
            return Err(Error::NotConfirmed);
        }
        let revoked_event = Event::Revoked {
            serial: serial.clone(),
            slug: issued.slug.clone(),
            reason,
            revoked_at: ledger::fmt_time(now),
        };
        let (crl_event, number) = self.issue_crl(revoked, out, cb, now)?;
        let head = self.commit(vec![revoked_event, crl_event], now, &[out.to_path_buf()])?;
        let mut o = Outcome::new(vec![out.to_path_buf()], head);
        o.serial = Some(serial.clone());
        o.crl_number = Some(number);
        Ok(o)
    }

    /// Re-issues the CRL (same revocations, next number) to `out`.
    pub fn crl(&self, out: &Path, cb: &dyn Callbacks, now: OffsetDateTime) -> Result<Outcome> {
        fsutil::ensure_absent(out)?;
        let _lock = DirLock::acquire(&self.dir)?;
        self.check_clock(now)?;
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let (event, number) = self.issue_crl(self.revoked_list(), out, cb, now)?;
        let head = self.commit(vec![event], now, &[out.to_path_buf()])?;
        let mut o = Outcome::new(vec![out.to_path_buf()], head);
        o.crl_number = Some(number);
        Ok(o)
    }

    fn revoked_list(&self) -> Vec<(Serial, Reason, OffsetDateTime)> {
        self.state()
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

    /// Builds, signs and writes a CRL; returns its ledger event. The caller commits.
    fn issue_crl(
        &self,
        revoked: Vec<(Serial, Reason, OffsetDateTime)>,
        out: &Path,
        cb: &dyn Callbacks,
        now: OffsetDateTime,
    ) -> Result<(Event, u64)> {
        let root_policy = self.root_policy()?;
        let number = self
            .state()
            .last_crl
            .as_ref()
            .map(|c| c.number + 1)
            .unwrap_or(1);
        let next_update = now + Duration::days(i64::from(root_policy.crl.validity_days));
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
            key_identifier_method: KeyIdMethod::PreSpecified(self.root_key().key_id()),
        };
        let issuer_params = self.issuer_params();
        let build = |signer: &crate::backend::RcgenSigner<'_>| {
            let issuer = Issuer::from_params(&issuer_params, signer);
            params.signed_by(&issuer).map(|c| c.der().to_vec())
        };
        let root_id = self.root_key().key_id();
        let lint = |der: &[u8]| match x509::parse_crl(der) {
            Ok(c) => lint::lint_crl(&c, &self.root_subject_raw, &root_id),
            Err(e) => vec![e],
        };
        let backend = self.open_backend(cb)?;
        let der =
            pipeline::sign_checked(Kind::Crl, backend.as_ref(), self.root_key(), &build, &lint)?;
        fsutil::write_new(out, &encode_output(out, "X509 CRL", &der), Mode::Public)?;
        let (artifact_sha256, artifact) = ledger::encode_artifact(&der);
        Ok((
            Event::CrlIssued {
                crl_number: number,
                this_update: ledger::fmt_time(now),
                next_update: ledger::fmt_time(next_update),
                revoked: revoked.into_iter().map(|(s, _, _)| s).collect(),
                artifact_sha256,
                artifact,
            },
            number,
        ))
    }
}

fn dn_string(dn: &rcgen::DistinguishedName) -> String {
    dn.iter()
        .map(|(t, v)| {
            let name = match t {
                rcgen::DnType::CommonName => "CN",
                rcgen::DnType::OrganizationName => "O",
                rcgen::DnType::OrganizationalUnitName => "OU",
                rcgen::DnType::CountryName => "C",
                _ => "?",
            };
            let val = match v {
                rcgen::DnValue::PrintableString(s) => s.as_str().to_string(),
                rcgen::DnValue::Utf8String(s) => s.clone(),
                _ => "?".into(),
            };
            format!("{name}={val}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn sign_summary(
    slug: &Slug,
    tier: Tier,
    csr: &VerifiedCsr,
    params: &CertificateParams,
    permitted: &[String],
    days: u32,
) -> String {
    let mut s = String::new();
    s.push_str("Issue intermediate CA certificate\n");
    s.push_str(&format!("  customer:         {slug} ({tier} tier)\n"));
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
    s.push_str(&format!(
        "  name constraints: permitted DNS {}\n",
        permitted.join(", ")
    ));
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

/// Creates a new root CA in `dir` (which must be absent or empty).
pub fn init(
    dir: &Path,
    policy_path: &Path,
    backend: &BackendSpec,
    cb: &dyn Callbacks,
    now: OffsetDateTime,
) -> Result<Outcome> {
    if dir.join(files::CONFIG).exists()
        || dir.join(ledger::FILE).exists()
        || dir.join(files::ROOT).exists()
    {
        return Err(Error::Refused(format!(
            "{} already holds a CA; a CA is created once. Use another --ca directory",
            dir.display()
        )));
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e, ""))?
            .next()
            .is_some()
    {
        return Err(Error::Refused(format!(
            "{} is not empty; init needs an empty or new directory",
            dir.display()
        )));
    }
    let policy_path = std::fs::canonicalize(policy_path).map_err(|e| {
        Error::io(
            policy_path,
            e,
            "pass the root policy, e.g. policies/root.yaml",
        )
    })?;
    let pol = policy::load_root(&policy_path)?;
    let policies_dir = policy_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for tier in Tier::ALL {
        policy::load_intermediate(&policies_dir, tier)?;
    }
    let new_key = backend.create(&KeyRequest::from_policy(&pol), cb)?;
    let result = init_with_key(
        dir,
        &pol,
        &policy_path,
        &policies_dir,
        backend,
        new_key.as_ref(),
        now,
    );
    if result.is_err() {
        // A key generated on a device for a CA that was not created is removed again.
        new_key.abort();
    }
    result
}

fn init_with_key(
    dir: &Path,
    pol: &RootPolicy,
    policy_path: &Path,
    policies_dir: &Path,
    backend: &BackendSpec,
    new_key: &dyn NewKey,
    now: OffsetDateTime,
) -> Result<Outcome> {
    let key = new_key.key();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let serial = Serial::random();
    let public = key.public_key().clone();
    let mut params = CertificateParams::default();
    params.serial_number = Some(SerialNumber::from_slice(serial.bytes()));
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + Duration::days(i64::from(pol.validity_days));
    params.distinguished_name = pol.subject.render(None);
    params.is_ca = IsCa::Ca(match pol.path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = pol.key_usages.iter().map(|u| u.rcgen()).collect();
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::PreSpecified(public.key_id());
    let build = |signer: &crate::backend::RcgenSigner<'_>| {
        let issuer = Issuer::from_params(&params, signer);
        params.signed_by(&public, &issuer).map(|c| c.der().to_vec())
    };
    let key_id = public.key_id();
    let lint = |der: &[u8]| match x509::parse_cert(der) {
        Ok(c) => {
            let subject = c.tbs_certificate.subject.as_raw();
            let window = (
                c.tbs_certificate.validity.not_before.timestamp(),
                c.tbs_certificate.validity.not_after.timestamp(),
            );
            lint::lint_ca_cert(
                &c,
                &CaExpectations {
                    issuer_name: subject,
                    issuer_key_id: &key_id,
                    issuer_window: window,
                    subject_key: &public,
                    path_len: pol.path_len,
                    key_usages: &pol.key_usages,
                    permitted_dns: &[],
                },
            )
        }
        Err(e) => vec![e],
    };
    let der = pipeline::sign_checked(Kind::Certificate, key, &public, &build, &lint)?;
    // On a YubiKey the root certificate also goes into the slot's certificate object.
    key.store_certificate(&der)?;

    // Everything is staged in a sibling directory and renamed into place at the end.
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ca".into());
    let staging = parent.join(format!(".{name}.init-{}", std::process::id()));
    std::fs::create_dir(&staging)
        .map_err(|e| Error::io(&staging, e, "check that the parent directory is writable"))?;
    let result = (|| -> Result<(Fingerprint, Vec<PathBuf>)> {
        let kept = new_key.persist(&staging)?;
        fsutil::write_new(
            &staging.join(files::ROOT),
            &encode_output(Path::new("root.pem"), "CERTIFICATE", &der),
            Mode::Public,
        )?;
        // The CA keeps its own copy of the policies it signs under (the ledger records each
        // one's SHA-256), so it does not depend on where a repository checkout happens to be.
        let staged_policies = staging.join(POLICIES);
        std::fs::create_dir(&staged_policies).map_err(|e| Error::io(&staged_policies, e, ""))?;
        let mut copies = vec![(policy_path.to_path_buf(), "root.yaml".to_string())];
        for tier in Tier::ALL {
            let file = policy::intermediate_file(tier);
            copies.push((policies_dir.join(&file), file));
        }
        for (from, name) in copies {
            let bytes = std::fs::read(&from).map_err(|e| Error::io(&from, e, ""))?;
            fsutil::write_new(&staged_policies.join(name), &bytes, Mode::Public)?;
        }
        let config = CaConfig {
            format: CONFIG_FORMAT,
            policy: Path::new(POLICIES).join("root.yaml"),
            policies_dir: PathBuf::from(POLICIES),
            backend: backend.config.clone(),
        };
        let toml_text = toml::to_string(&config).map_err(|e| Error::SelfCheck(e.to_string()))?;
        fsutil::write_new(
            &staging.join(files::CONFIG),
            toml_text.as_bytes(),
            Mode::Public,
        )?;
        let (artifact_sha256, artifact) = ledger::encode_artifact(&der);
        let event = Event::RootCreated {
            serial: serial.clone(),
            subject: dn_string(&params.distinguished_name),
            not_after: ledger::fmt_time(params.not_after),
            key_id: hex::encode(public.key_id()),
            backend: key
                .describe()
                .replace(&staging.display().to_string(), &dir.display().to_string()),
            policy_sha256: pol.source.sha256.hex(),
            artifact_sha256,
            artifact,
            attestation: key.attestation().map(|der| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(der)
            }),
        };
        let (text, head) = ledger::genesis(event, now);
        ledger::verify_text(ledger::FILE, &text)?;
        fsutil::write_new(&staging.join(ledger::FILE), text.as_bytes(), Mode::Public)?;
        std::fs::rename(&staging, dir)
            .map_err(|e| Error::io(dir, e, "the directory must be empty or absent"))?;
        Ok((head, kept))
    })();
    match result {
        Ok((head, kept)) => {
            let mut written = vec![
                dir.join(files::ROOT),
                dir.join(files::CONFIG),
                dir.join(ledger::FILE),
            ];
            written.extend(kept.iter().map(|k| dir.join(k)));
            let mut o = Outcome::new(written, head);
            o.serial = Some(serial);
            Ok(o)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
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
    /// The status at `now`.
    pub fn status(&self, now: OffsetDateTime) -> Result<Status> {
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
            crl_number: s.last_crl.as_ref().map(|c| c.number),
            crl_next_update: s.last_crl.as_ref().map(|c| c.next_update.clone()),
            next_crl_due: due.map(ledger::fmt_time),
            crl_overdue: due.is_none_or(|d| now >= d),
        })
    }
}

/// Verifies the ledger of `dir` (and optionally its head); returns the state.
pub fn verify_ledger(dir: &Path, expect_head: Option<&str>) -> Result<State> {
    let ca = Ca::open(dir)?;
    let state = ca.state().clone();
    if let Some(h) = expect_head {
        let want = h.trim().to_ascii_lowercase();
        if state.head.hex() != want {
            return Err(Error::Refused(format!(
                "the ledger's head is {} but the witness recorded {want}: entries were removed or the ledger is not the one witnessed",
                state.head.hex()
            )));
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::KeyAlgorithm;
    use crate::backend::soft::SoftKey;
    use crate::backend::RcgenSigner;
    use crate::callbacks::Scripted;

    const PASS: &str = "unit test passphrase";

    fn yes() -> Scripted {
        Scripted {
            confirm: true,
            secret: PASS.into(),
        }
    }

    fn fresh(now: OffsetDateTime) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("ca");
        let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/root.yaml");
        init(&dir, &policy, &crate::ca::BackendSpec::soft(), &yes(), now).expect("init");
        (tmp, dir)
    }

    fn csr_for(key: &SoftKey) -> Vec<u8> {
        let signer = RcgenSigner::new(key);
        let params = CertificateParams::new(vec![]).expect("params");
        params
            .serialize_request(&signer)
            .expect("csr")
            .der()
            .to_vec()
    }

    fn request(tmp: &tempfile::TempDir, csr: &[u8], slug: &str, out: &str) -> SignRequest {
        SignRequest {
            csr: csr.to_vec(),
            csr_origin: "unit.csr".into(),
            slug: Slug::parse(slug).expect("slug"),
            tier: Tier::Core,
            days: Some(365),
            out: tmp.path().join(out),
        }
    }

    fn ledger_text(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(ledger::FILE)).expect("ledger")
    }

    #[test]
    fn clock_behind_the_ledger_is_refused_and_nothing_changes() {
        let now = OffsetDateTime::now_utc();
        let (tmp, dir) = fresh(now);
        let key = SoftKey::generate(KeyAlgorithm::EcdsaP256);
        let csr = csr_for(&key);
        let before = ledger_text(&dir);
        let ca = Ca::open(&dir).expect("open");
        let req = request(&tmp, &csr, "acme", "a.pem");
        let err = ca
            .sign(&req, &yes(), now - Duration::hours(2))
            .expect_err("a clock behind the ledger must be refused");
        assert!(matches!(err, Error::ClockBehindLedger { .. }), "{err}");
        assert!(err.to_string().contains("clock"), "{err}");
        assert!(!req.out.exists());
        assert_eq!(before, ledger_text(&dir));
        for result in [
            ca.crl(&tmp.path().join("c.pem"), &yes(), now - Duration::hours(2)),
            ca.revoke(
                &Serial::random(),
                Reason::Superseded,
                &tmp.path().join("r.pem"),
                &yes(),
                now - Duration::hours(2),
            ),
        ] {
            assert!(matches!(result, Err(Error::ClockBehindLedger { .. })));
        }
        // With the clock right, the same request is signed and recorded.
        let o = ca.sign(&req, &yes(), now).expect("sign");
        assert!(req.out.exists());
        let state = verify_ledger(&dir, Some(&o.head)).expect("ledger verifies");
        assert_eq!(state.issued.len(), 1);
    }

    #[test]
    fn declined_confirmation_and_key_reuse_write_nothing() {
        let now = OffsetDateTime::now_utc();
        let (tmp, dir) = fresh(now);
        let key = SoftKey::generate(KeyAlgorithm::EcdsaP384);
        let csr = csr_for(&key);
        let ca = Ca::open(&dir).expect("open");
        let before = ledger_text(&dir);
        let no = Scripted {
            confirm: false,
            secret: PASS.into(),
        };
        let req = request(&tmp, &csr, "acme", "declined.pem");
        assert!(matches!(ca.sign(&req, &no, now), Err(Error::NotConfirmed)));
        assert!(!req.out.exists());
        assert_eq!(before, ledger_text(&dir));

        let issued = ca
            .sign(&request(&tmp, &csr, "acme", "a.pem"), &yes(), now)
            .expect("sign");
        let serial = issued.serial.expect("serial");
        let ca = Ca::open(&dir).expect("reopen");
        let before = ledger_text(&dir);
        // The same key for another customer.
        let other = request(&tmp, &csr, "globex", "g.pem");
        let err = ca.sign(&other, &yes(), now).expect_err("key reuse");
        assert!(err.to_string().contains("`acme`"), "{err}");
        assert!(!other.out.exists());
        assert_eq!(before, ledger_text(&dir));
        // Revoked for keyCompromise: never again, not even for the same customer.
        ca.revoke(
            &serial,
            Reason::KeyCompromise,
            &tmp.path().join("crl.pem"),
            &yes(),
            now,
        )
        .expect("revoke");
        let ca = Ca::open(&dir).expect("reopen");
        let again = request(&tmp, &csr, "acme", "again.pem");
        let err = ca.sign(&again, &yes(), now).expect_err("compromised key");
        assert!(err.to_string().contains("keyCompromise"), "{err}");
        assert!(!again.out.exists());
        // Revoking twice is refused too.
        let err = ca
            .revoke(
                &serial,
                Reason::KeyCompromise,
                &tmp.path().join("crl2.pem"),
                &yes(),
                now,
            )
            .expect_err("double revocation");
        assert!(err.to_string().contains("already revoked"), "{err}");
        verify_ledger(&dir, None).expect("ledger verifies");
    }

    #[test]
    fn a_stale_handle_cannot_drop_ledger_entries() {
        let now = OffsetDateTime::now_utc();
        let (tmp, dir) = fresh(now);
        let first = Ca::open(&dir).expect("open");
        let second = Ca::open(&dir).expect("open");
        first
            .crl(&tmp.path().join("c1.pem"), &yes(), now)
            .expect("crl");
        let after_first = ledger_text(&dir);
        let out = tmp.path().join("c2.pem");
        let err = second.crl(&out, &yes(), now).expect_err("stale");
        assert!(err.to_string().contains("changed since"), "{err}");
        assert!(
            !out.exists(),
            "the stale operation's output was left behind"
        );
        assert_eq!(after_first, ledger_text(&dir));
        let state = verify_ledger(&dir, None).expect("verifies");
        assert_eq!(state.len, 2);
    }

    #[test]
    fn a_wrong_passphrase_signs_nothing() {
        let now = OffsetDateTime::now_utc();
        let (tmp, dir) = fresh(now);
        let csr = csr_for(&SoftKey::generate(KeyAlgorithm::EcdsaP256));
        let ca = Ca::open(&dir).expect("open");
        let before = ledger_text(&dir);
        let wrong = Scripted {
            confirm: true,
            secret: "a wrong passphrase here".into(),
        };
        let req = request(&tmp, &csr, "acme", "a.pem");
        let err = ca.sign(&req, &wrong, now).expect_err("wrong passphrase");
        assert!(err.to_string().contains("passphrase"), "{err}");
        assert!(!req.out.exists());
        assert_eq!(before, ledger_text(&dir));
    }

    #[test]
    fn init_refuses_a_directory_that_holds_a_ca_or_anything_else() {
        let now = OffsetDateTime::now_utc();
        let (tmp, dir) = fresh(now);
        let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/root.yaml");
        let before = ledger_text(&dir);
        let err = init(&dir, &policy, &crate::ca::BackendSpec::soft(), &yes(), now)
            .expect_err("second init");
        assert!(err.to_string().contains("already holds a CA"), "{err}");
        assert_eq!(before, ledger_text(&dir));
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).expect("mkdir");
        std::fs::write(other.join("notes.txt"), "x").expect("write");
        let err = init(
            &other,
            &policy,
            &crate::ca::BackendSpec::soft(),
            &yes(),
            now,
        )
        .expect_err("non-empty");
        assert!(err.to_string().contains("not empty"), "{err}");
        assert_eq!(std::fs::read_dir(&other).expect("ls").count(), 1);
    }
}
