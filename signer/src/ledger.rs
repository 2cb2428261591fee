//! The tamper-evident ledger of everything the root ever signed: `ledger.jsonl`.
//!
//! One JSON object per line, one line per event. Each entry carries `prev`, the hash of the entry
//! before it, and `hash`, the SHA-256 of its own canonical serialization with `hash` set to "".
//! Lines must be byte-identical to the canonical serialization, so one changed byte anywhere is
//! caught and reported with its entry number. Artifacts (certificates, CRLs) are stored whole
//! (base64 DER), so the ledger alone proves what was signed and `export` can write any of them
//! again. [`Check::Full`] (`ledger verify`) re-verifies every artifact against the root key;
//! [`Check::Chain`] (every other command) checks the hash chain, the entries' consistency and the
//! root, so a command's cost does not grow with the CA's age. The signer's state (issued,
//! revoked, CRL number) is derived from a verified ledger and from nothing else. Truncation of
//! the newest entries is caught against the head the witness wrote down (`--expect-head`,
//! `--head-file`) and, on hardware backends, against the head the device remembers.
//!
//! [`Check::Full`] also holds what each `intermediate_issued` entry records (slug, tier,
//! subject, key id) to the certificate it holds. The tier is read from the certificate's tier
//! marker ([`crate::certpolicy`]); a certificate without one was issued before tier markers:
//! its entry is listed in [`State::before_tier_markers`] (and `ledger verify` says so) and not
//! failed, so ledgers written before markers still verify.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::algo::PublicKey;
use crate::certpolicy::{self, PolicyOid};
use crate::constraints::{NameConstraints, Subtree};
use crate::preflight::PreflightRecord;
use crate::slug::{Slug, Tier};
use crate::words::Fingerprint;
use crate::x509::{self, Serial};

/// The ledger's file name inside a CA directory.
pub const FILE: &str = "ledger.jsonl";

/// A damaged ledger, or one that could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", entry.map(|n| format!(" entry {n}")).unwrap_or_default())]
pub struct LedgerError {
    /// The ledger file.
    pub file: String,
    /// The entry at fault (0-based, as `seq`), if one is.
    pub entry: Option<u64>,
    /// What is wrong.
    pub message: String,
}

/// Why an intermediate was revoked (RFC 5280 reason codes the signer uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reason {
    /// The intermediate's key leaked.
    KeyCompromise,
    /// The CA itself was compromised.
    #[serde(rename = "cACompromise")]
    CaCompromise,
    /// Replaced by a newer certificate.
    Superseded,
    /// The customer stopped using it.
    CessationOfOperation,
    /// The customer left or changed.
    AffiliationChanged,
}

impl Reason {
    /// All reasons with their command-line names.
    pub const ALL: [(Reason, &'static str); 5] = [
        (Reason::KeyCompromise, "keyCompromise"),
        (Reason::CaCompromise, "cACompromise"),
        (Reason::Superseded, "superseded"),
        (Reason::CessationOfOperation, "cessationOfOperation"),
        (Reason::AffiliationChanged, "affiliationChanged"),
    ];

    /// Whether a certificate's key must never be certified again: its key (keyCompromise)
    /// or its CA (cACompromise) was compromised. Compromise is forever.
    pub fn compromised(self) -> bool {
        matches!(self, Reason::KeyCompromise | Reason::CaCompromise)
    }

    /// Whether a revocation for `self` may later be changed to `to`: only superseded or
    /// cessationOfOperation, and only to keyCompromise (a retirement later found to be a
    /// compromise). Every other change is refused, so a compromise is never undone.
    pub fn may_become(self, to: Reason) -> bool {
        matches!(self, Reason::Superseded | Reason::CessationOfOperation)
            && to == Reason::KeyCompromise
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        Reason::ALL
            .iter()
            .find(|(r, _)| *r == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }

    /// rcgen's reason code.
    pub fn rcgen(self) -> rcgen::RevocationReason {
        match self {
            Reason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
            Reason::CaCompromise => rcgen::RevocationReason::CaCompromise,
            Reason::Superseded => rcgen::RevocationReason::Superseded,
            Reason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
            Reason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
        }
    }
}

impl std::str::FromStr for Reason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Reason::ALL
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(r, _)| *r)
            .ok_or_else(|| {
                let names: Vec<&str> = Reason::ALL.iter().map(|(_, n)| *n).collect();
                format!(
                    "unknown revocation reason `{s}`; use one of {}",
                    names.join(", ")
                )
            })
    }
}

/// One event the root took part in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// The root certificate was created.
    RootCreated {
        /// Root serial.
        serial: Serial,
        /// Root subject.
        subject: String,
        /// Root notAfter (RFC 3339).
        not_after: String,
        /// Root key id (hex).
        key_id: String,
        /// Which backend holds the key.
        backend: String,
        /// SHA-256 of the root policy file.
        policy_sha256: String,
        /// SHA-256 of the certificate DER.
        artifact_sha256: String,
        /// The certificate, base64 DER.
        artifact: String,
        /// The device's attestation certificate for the key (base64 DER), where the device
        /// gives one (YubiKey PIV attestation): evidence the key was generated on the device.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attestation: Option<String>,
    },
    /// An intermediate CA certificate was issued.
    IntermediateIssued {
        /// Serial.
        serial: Serial,
        /// Customer slug.
        slug: Slug,
        /// Customer tier.
        tier: Tier,
        /// Subject.
        subject: String,
        /// notAfter (RFC 3339).
        not_after: String,
        /// Subject key id (hex).
        key_id: String,
        /// SHA-256 of the CSR DER.
        csr_sha256: String,
        /// SHA-256 of the tier policy file.
        policy_sha256: String,
        /// SHA-256 of the certificate DER.
        artifact_sha256: String,
        /// The certificate, base64 DER.
        artifact: String,
    },
    /// An intermediate was revoked (the CRL that carries it follows as the next entry), or a
    /// revocation's reason was changed to keyCompromise (`replaces` names the old reason).
    Revoked {
        /// Serial.
        serial: Serial,
        /// Customer slug.
        slug: Slug,
        /// Reason.
        reason: Reason,
        /// Revocation time (RFC 3339): the first revocation's, also when the reason changes
        /// (CRLs keep that revocationDate; the entry's own time says when it changed).
        revoked_at: String,
        /// The reason this entry replaces, when a superseded or cessationOfOperation
        /// revocation is found to be a keyCompromise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaces: Option<Reason>,
    },
    /// A CRL was issued.
    CrlIssued {
        /// CRL number.
        crl_number: u64,
        /// thisUpdate (RFC 3339).
        this_update: String,
        /// nextUpdate (RFC 3339).
        next_update: String,
        /// Revoked serials it lists.
        revoked: Vec<Serial>,
        /// SHA-256 of the CRL DER.
        artifact_sha256: String,
        /// The CRL, base64 DER.
        artifact: String,
    },
}

impl Event {
    /// The signed artifact (certificate or CRL DER) the event records, if it records one.
    pub fn artifact_der(&self) -> Option<Vec<u8>> {
        match self {
            Event::RootCreated { artifact, .. }
            | Event::IntermediateIssued { artifact, .. }
            | Event::CrlIssued { artifact, .. } => base64::engine::general_purpose::STANDARD
                .decode(artifact)
                .ok(),
            Event::Revoked { .. } => None,
        }
    }

    /// The event's name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::RootCreated { .. } => "root_created",
            Event::IntermediateIssued { .. } => "intermediate_issued",
            Event::Revoked { .. } => "revoked",
            Event::CrlIssued { .. } => "crl_issued",
        }
    }
}

/// A ledger line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Position, from 0.
    pub seq: u64,
    /// When (RFC 3339, UTC, seconds).
    pub time: String,
    /// Hash of the previous entry (64 zeros for the first).
    pub prev: String,
    /// What happened.
    pub event: Event,
    /// The air-gap checks that failed when the root key was used for this entry, and why it
    /// went ahead anyway (absent when the machine looked offline): an auditor sees every use
    /// of the root on a connected machine. Covered by the hash like the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight: Option<PreflightRecord>,
    /// SHA-256 of this entry serialized with `hash` = "".
    pub hash: String,
}

impl Entry {
    fn compute_hash(&self) -> String {
        let mut blank = self.clone();
        blank.hash = String::new();
        // Serializing plain data structs to JSON cannot fail.
        let json = serde_json::to_string(&blank).unwrap_or_default();
        Fingerprint::of(json.as_bytes()).hex()
    }

    fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The hash of a line from its text alone: SHA-256 of the line with its own hash blanked. For a
/// canonical line this equals [`Entry::compute_hash`] (`hash` is the last field), without
/// serializing the entry again. None when the line does not end in `"hash":"<64 hex>"}`.
fn hash_of_line(line: &str) -> Option<String> {
    let cut = line.len().checked_sub(64 + 2)?;
    let kept = line.get(..cut)?;
    if !kept.ends_with("\"hash\":\"") || !line.ends_with("\"}") {
        return None;
    }
    let mut h = Sha256::new();
    h.update(kept.as_bytes());
    h.update(b"\"}");
    Some(hex::encode(h.finalize()))
}

/// Formats a time as the ledger stores it.
pub fn fmt_time(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

/// Parses a time the ledger stored.
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Encodes an artifact for the ledger.
pub fn encode_artifact(der: &[u8]) -> (String, String) {
    (
        Fingerprint::of(der).hex(),
        base64::engine::general_purpose::STANDARD.encode(der),
    )
}

/// An issued intermediate, as the ledger knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issued {
    /// Serial.
    pub serial: Serial,
    /// Slug.
    pub slug: Slug,
    /// Tier.
    pub tier: Tier,
    /// Subject.
    pub subject: String,
    /// notAfter.
    pub not_after: String,
    /// Subject key id.
    pub key_id: String,
    /// When issued.
    pub issued_at: String,
    /// Ledger entry.
    pub entry: u64,
}

/// A revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revocation {
    /// Serial.
    pub serial: Serial,
    /// Slug.
    pub slug: Slug,
    /// Reason.
    pub reason: Reason,
    /// When.
    pub revoked_at: String,
}

/// The newest CRL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrlInfo {
    /// CRL number.
    pub number: u64,
    /// thisUpdate.
    pub this_update: String,
    /// nextUpdate.
    pub next_update: String,
}

/// Everything derived from a verified ledger.
#[derive(Debug, Clone)]
pub struct State {
    /// The root certificate's DER.
    pub root_der: Vec<u8>,
    /// The root's key.
    pub root_key: PublicKey,
    /// Issued intermediates by serial.
    pub issued: BTreeMap<Serial, Issued>,
    /// Revocations by serial.
    pub revoked: BTreeMap<Serial, Revocation>,
    /// The newest CRL.
    pub last_crl: Option<CrlInfo>,
    /// Hash of the newest entry.
    pub head: Fingerprint,
    /// Time of the newest entry.
    pub last_time: OffsetDateTime,
    /// Number of entries.
    pub len: u64,
    /// Entries (`seq`) of intermediates issued before tier markers, whose recorded tier the
    /// certificate cannot confirm (filled by [`Check::Full`] only).
    pub before_tier_markers: Vec<u64>,
}

/// How much of the ledger to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The hash chain, canonical form, sequence, time order, the root certificate and the
    /// consistency of the recorded events (every routine open).
    Chain,
    /// Everything in [`Check::Chain`], plus every artifact decoded and its signature verified
    /// against the root key (`ledger verify`).
    Full,
}

/// A recorded artifact that `export` can write again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A certificate (the root or an intermediate), by serial.
    Certificate(Serial),
    /// A CRL, by number.
    Crl(u64),
}

/// A verified ledger, ready to be appended to.
#[derive(Debug, Clone)]
pub struct Ledger {
    file: String,
    text: String,
    state: State,
}

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl Ledger {
    /// Reads and verifies `path` as deep as `check` says; `root_pem_der` (from root.pem) must be
    /// the ledger's root.
    pub fn open(path: &Path, root_pem_der: &[u8], check: Check) -> Result<Self, LedgerError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| LedgerError {
            file: file.clone(),
            entry: None,
            message: format!("cannot read the ledger ({e}); is this a CA directory?"),
        })?;
        let state = verify(&file, &text, check)?;
        if state.root_der != root_pem_der {
            return Err(LedgerError {
                file,
                entry: Some(0),
                message:
                    "the root certificate in the ledger is not root.pem; root.pem was replaced"
                        .into(),
            });
        }
        Ok(Ledger { file, text, state })
    }

    /// The verified state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The ledger text with `events` appended at `now`, each carrying `preflight` (the failed
    /// air-gap checks, if any), and the new head. Nothing is written.
    pub fn prepare(
        &self,
        events: Vec<Event>,
        now: OffsetDateTime,
        preflight: Option<&PreflightRecord>,
    ) -> (String, Fingerprint) {
        let mut text = self.text.clone();
        let mut prev = self.state.head.hex();
        for (seq, event) in (self.state.len..).zip(events) {
            let line = make_line(seq, now, &prev, event, preflight);
            prev = line.1;
            text.push_str(&line.0);
            text.push('\n');
        }
        let head = Fingerprint::from_hex(&prev).unwrap_or(Fingerprint([0; 32]));
        (text, head)
    }

    /// Whether `head` is the hash of one of this ledger's entries.
    pub fn contains_head(&self, head: &Fingerprint) -> bool {
        // The text is verified canonical, so this key appears only as an entry's own hash.
        self.text.contains(&format!("\"hash\":\"{}\"", head.hex()))
    }

    /// The DER of a recorded certificate or CRL.
    pub fn artifact(&self, which: &Recorded) -> Option<Vec<u8>> {
        self.text
            .lines()
            .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
            .find(|e| match (&e.event, which) {
                (
                    Event::RootCreated { serial, .. } | Event::IntermediateIssued { serial, .. },
                    Recorded::Certificate(want),
                ) => serial == want,
                (Event::CrlIssued { crl_number, .. }, Recorded::Crl(want)) => crl_number == want,
                _ => false,
            })
            .and_then(|e| e.event.artifact_der())
    }

    /// The verified text this ledger was opened with.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The file name used in messages.
    pub fn file(&self) -> &str {
        &self.file
    }
}

fn make_line(
    seq: u64,
    now: OffsetDateTime,
    prev: &str,
    event: Event,
    preflight: Option<&PreflightRecord>,
) -> (String, String) {
    let mut e = Entry {
        seq,
        time: fmt_time(now),
        prev: prev.to_string(),
        event,
        preflight: preflight.filter(|p| !p.clean()).cloned(),
        hash: String::new(),
    };
    e.hash = e.compute_hash();
    (e.line(), e.hash)
}

/// The first ledger text of a new CA (its entry carrying `preflight`, the failed air-gap
/// checks, if any), and its head.
pub fn genesis(
    event: Event,
    now: OffsetDateTime,
    preflight: Option<&PreflightRecord>,
) -> (String, Fingerprint) {
    let (line, hash) = make_line(0, now, ZERO, event, preflight);
    (
        format!("{line}\n"),
        Fingerprint::from_hex(&hash).unwrap_or(Fingerprint([0; 32])),
    )
}

/// Checks what an entry records about a certificate against the certificate itself: the
/// subject, the key id, and for an intermediate the slug, which must be a label of every
/// permitted DNS, email and URI subtree (policies put `{slug}` there as a whole label). The tier
/// is checked by [`check_recorded_tier`].
fn check_recorded_names(
    cert: &x509_parser::certificate::X509Certificate<'_>,
    subject: &str,
    key_id: &str,
    slug: Option<&Slug>,
) -> Result<(), String> {
    let actual = x509::rcgen_name(cert.subject())
        .map(|dn| x509::dn_string(&dn))
        .map_err(|m| format!("certificate subject: {m}"))?;
    if actual != subject {
        return Err(format!(
            "recorded subject `{subject}` differs from the certificate's `{actual}`"
        ));
    }
    let key = x509::cert_key(cert).map_err(|m| format!("certificate key: {m}"))?;
    if hex::encode(key.key_id()) != key_id {
        return Err("recorded key id differs from the certificate's".into());
    }
    let Some(slug) = slug else {
        return Ok(());
    };
    let constraints = cert
        .name_constraints()
        .map_err(|m| format!("certificate name constraints: {m}"))?;
    let (constraints, _) = constraints
        .map(|c| NameConstraints::from_parsed(c.value))
        .unwrap_or_default();
    let hosts: Vec<&str> = constraints
        .permitted
        .iter()
        .filter_map(Subtree::host)
        .collect();
    if hosts.is_empty() {
        return Err(format!(
            "recorded slug `{slug}`, but the certificate permits no DNS, email or URI subtree to name it"
        ));
    }
    if let Some(h) = hosts
        .iter()
        .find(|h| !h.split('.').any(|l| l == slug.as_str()))
    {
        return Err(format!(
            "recorded slug `{slug}` differs from the certificate's: it permits `{h}`"
        ));
    }
    Ok(())
}

/// Checks an entry's tier against the certificate's tier marker; `Ok(false)` when the
/// certificate has none (issued before tier markers).
fn check_recorded_tier(
    cert: &x509_parser::certificate::X509Certificate<'_>,
    tier: Tier,
) -> Result<bool, String> {
    match certpolicy::marked_tier(cert).map_err(|m| format!("certificate policies: {m}"))? {
        None => Ok(false),
        Some(t) if t == tier => Ok(true),
        Some(t) => Err(format!(
            "recorded tier `{tier}` differs from the certificate's: it carries tier {t}'s policy OID {}",
            PolicyOid::tier(t)
        )),
    }
}

fn decode_artifact(sha: &str, b64: &str) -> Result<Vec<u8>, String> {
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "artifact is not valid base64".to_string())?;
    if Fingerprint::of(&der).hex() != sha {
        return Err("artifact_sha256 does not match the artifact".into());
    }
    Ok(der)
}

/// Verifies ledger text completely ([`Check::Full`]) and derives the state.
pub fn verify_text(file: &str, text: &str) -> Result<State, LedgerError> {
    verify(file, text, Check::Full)
}

/// Verifies ledger text as deep as `check` says and derives the state.
pub fn verify(file: &str, text: &str, check: Check) -> Result<State, LedgerError> {
    let full = check == Check::Full;
    let err = |entry: Option<u64>, message: String| LedgerError {
        file: file.to_string(),
        entry,
        message,
    };
    if text.is_empty() {
        return Err(err(None, "the ledger is empty".into()));
    }
    if !text.ends_with('\n') {
        return Err(err(
            None,
            "the last line is incomplete (no newline): the ledger was cut or edited".into(),
        ));
    }
    let mut prev = ZERO.to_string();
    let mut state: Option<State> = None;
    let mut serials: BTreeSet<Serial> = BTreeSet::new();
    let mut crl_revoked: BTreeSet<Serial> = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let n = i as u64;
        let e = |m: String| err(Some(n), m);
        let entry: Entry =
            serde_json::from_str(line).map_err(|x| e(format!("not a valid entry ({x})")))?;
        // The full check also holds every line to its canonical form; the chain check hashes
        // the text as it is, which commits to it just as well.
        if full && entry.line() != line {
            return Err(e("the line is not in canonical form: it was edited".into()));
        }
        if entry.seq != n {
            return Err(e(format!(
                "sequence number is {}, expected {n}: entries were removed or reordered",
                entry.seq
            )));
        }
        let computed = if full {
            entry.compute_hash()
        } else {
            hash_of_line(line).unwrap_or_default()
        };
        if entry.hash != computed {
            return Err(e(
                "the entry's hash does not match its content: it was altered".into(),
            ));
        }
        if entry.prev != prev {
            return Err(e("prev does not match the hash of the entry before: entries were altered, removed or inserted".into()));
        }
        let time =
            parse_time(&entry.time).ok_or_else(|| e(format!("bad time `{}`", entry.time)))?;
        if let Some(s) = &state {
            if time < s.last_time {
                return Err(e("time goes backwards".into()));
            }
        }
        prev = entry.hash.clone();
        match (&mut state, &entry.event) {
            (
                None,
                Event::RootCreated {
                    serial,
                    subject,
                    key_id,
                    artifact_sha256,
                    artifact,
                    ..
                },
            ) => {
                let der = decode_artifact(artifact_sha256, artifact).map_err(e)?;
                let cert =
                    x509::parse_cert(&der).map_err(|m| e(format!("root certificate: {m}")))?;
                let key = x509::cert_key(&cert).map_err(|m| e(format!("root certificate: {m}")))?;
                x509::verify_cert(&cert, &key).map_err(|m| {
                    e(format!(
                        "root certificate is not self-signed by its key: {m}"
                    ))
                })?;
                if Serial::from_der_integer(cert.raw_serial()) != *serial {
                    return Err(e("recorded serial differs from the certificate's".into()));
                }
                check_recorded_names(&cert, subject, key_id, None).map_err(e)?;
                serials.insert(serial.clone());
                state = Some(State {
                    root_der: der,
                    root_key: key,
                    issued: BTreeMap::new(),
                    revoked: BTreeMap::new(),
                    last_crl: None,
                    head: Fingerprint([0; 32]),
                    last_time: time,
                    len: 0,
                    before_tier_markers: Vec::new(),
                });
            }
            (None, _) => return Err(e("the first entry must be root_created".into())),
            (Some(_), Event::RootCreated { .. }) => {
                return Err(e("a second root_created entry".into()))
            }
            (
                Some(s),
                Event::IntermediateIssued {
                    serial,
                    slug,
                    tier,
                    subject,
                    not_after,
                    key_id,
                    artifact_sha256,
                    artifact,
                    ..
                },
            ) => {
                if full {
                    let der = decode_artifact(artifact_sha256, artifact).map_err(e)?;
                    let cert =
                        x509::parse_cert(&der).map_err(|m| e(format!("certificate: {m}")))?;
                    x509::verify_cert(&cert, &s.root_key)
                        .map_err(|m| e(format!("certificate signature: {m}")))?;
                    if Serial::from_der_integer(cert.raw_serial()) != *serial {
                        return Err(e("recorded serial differs from the certificate's".into()));
                    }
                    check_recorded_names(&cert, subject, key_id, Some(slug)).map_err(e)?;
                    if !check_recorded_tier(&cert, *tier).map_err(e)? {
                        s.before_tier_markers.push(n);
                    }
                }
                if !serials.insert(serial.clone()) {
                    return Err(e(format!(
                        "serial {serial} was issued before: serials must be unique"
                    )));
                }
                s.issued.insert(
                    serial.clone(),
                    Issued {
                        serial: serial.clone(),
                        slug: slug.clone(),
                        tier: *tier,
                        subject: subject.clone(),
                        not_after: not_after.clone(),
                        key_id: key_id.clone(),
                        issued_at: entry.time.clone(),
                        entry: n,
                    },
                );
            }
            (
                Some(s),
                Event::Revoked {
                    serial,
                    slug,
                    reason,
                    revoked_at,
                    replaces,
                },
            ) => {
                let Some(issued) = s.issued.get(serial) else {
                    return Err(e(format!("revokes {serial}, which this root never issued")));
                };
                if issued.slug != *slug {
                    return Err(e(
                        "recorded slug differs from the issued certificate's".into()
                    ));
                }
                match (s.revoked.get(serial), replaces) {
                    (None, None) => {}
                    (None, Some(_)) => {
                        return Err(e(format!(
                            "changes the reason of {serial}, which was not revoked"
                        )))
                    }
                    (Some(_), None) => return Err(e(format!("{serial} is revoked twice"))),
                    (Some(old), Some(replaced)) => {
                        if old.reason != *replaced
                            || !old.reason.may_become(*reason)
                            || old.revoked_at != *revoked_at
                        {
                            return Err(e(format!(
                                "changes the revocation of {serial} from {} at {} to {} at {}, \
                                 which is not a permitted change",
                                old.reason.name(),
                                old.revoked_at,
                                reason.name(),
                                revoked_at
                            )));
                        }
                    }
                }
                s.revoked.insert(
                    serial.clone(),
                    Revocation {
                        serial: serial.clone(),
                        slug: slug.clone(),
                        reason: *reason,
                        revoked_at: revoked_at.clone(),
                    },
                );
            }
            (
                Some(s),
                Event::CrlIssued {
                    crl_number,
                    this_update,
                    next_update,
                    revoked,
                    artifact_sha256,
                    artifact,
                },
            ) => {
                let recorded: BTreeSet<Serial> = revoked.iter().cloned().collect();
                let in_der = if full {
                    let der = decode_artifact(artifact_sha256, artifact).map_err(e)?;
                    let crl = x509::parse_crl(&der).map_err(|m| e(format!("CRL: {m}")))?;
                    x509::verify_crl(&crl, &s.root_key)
                        .map_err(|m| e(format!("CRL signature: {m}")))?;
                    let der_number = crl.crl_number().map(|b| b.to_bytes_be());
                    if der_number.as_deref().map(Serial::from_der_integer)
                        != Some(Serial::from_der_integer(&crl_number.to_be_bytes()))
                    {
                        return Err(e("recorded CRL number differs from the CRL's".into()));
                    }
                    crl.iter_revoked_certificates()
                        .map(|r| Serial::from_der_integer(r.raw_serial()))
                        .collect()
                } else {
                    recorded.clone()
                };
                if let Some(last) = &s.last_crl {
                    if *crl_number <= last.number {
                        return Err(e(format!(
                            "CRL number {crl_number} does not increase (last was {})",
                            last.number
                        )));
                    }
                }
                if in_der != recorded {
                    return Err(e("recorded revoked list differs from the CRL's".into()));
                }
                if let Some(gone) = crl_revoked.difference(&in_der).next() {
                    return Err(e(format!(
                        "{gone} was revoked in an earlier CRL and is missing from this one"
                    )));
                }
                for r in s.revoked.keys() {
                    if !in_der.contains(r) {
                        return Err(e(format!("{r} was revoked but this CRL does not list it")));
                    }
                }
                for r in &in_der {
                    if !s.revoked.contains_key(r) {
                        return Err(e(format!(
                            "the CRL lists {r}, which has no revocation entry"
                        )));
                    }
                }
                crl_revoked = in_der;
                s.last_crl = Some(CrlInfo {
                    number: *crl_number,
                    this_update: this_update.clone(),
                    next_update: next_update.clone(),
                });
            }
        }
        if let Some(s) = &mut state {
            s.head = Fingerprint::from_hex(&entry.hash).unwrap_or(Fingerprint([0; 32]));
            s.last_time = time;
            s.len = n + 1;
        }
    }
    state.ok_or_else(|| err(None, "the ledger has no entries".into()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::callbacks::Scripted;

    fn two_entry_ledger() -> (tempfile::TempDir, String) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("ca");
        let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/root.yaml");
        let cb = Scripted {
            confirm: true,
            secret: "unit test passphrase".into(),
        };
        let now = OffsetDateTime::now_utc();
        let c = crate::ceremony::Ceremony::new(&cb, now);
        let soft = crate::ceremony::init::BackendSpec::soft();
        crate::ceremony::init(&dir, &policy, &soft, &c).expect("init");
        let crl = crate::ceremony::crl::Crl {
            out: tmp.path().join("crl.pem"),
        };
        crate::ceremony::run(&dir, &crl, &c).expect("crl");
        let text = std::fs::read_to_string(dir.join(FILE)).expect("ledger");
        (tmp, text)
    }

    #[test]
    fn every_single_byte_edit_is_detected_and_attributed() {
        let (_tmp, text) = two_entry_ledger();
        let state = verify_text("ledger.jsonl", &text).expect("intact ledger verifies");
        assert_eq!(state.last_crl.as_ref().map(|c| c.number), Some(1));
        let first_len = text.find('\n').expect("two lines") + 1;
        let bytes = text.as_bytes();
        for at in 0..bytes.len() {
            let mut edited = bytes.to_vec();
            // A different byte of the same class keeps most edits syntactically plausible.
            edited[at] = match bytes[at] {
                b'0' => b'1',
                b'"' => b'\'',
                b'\n' => b' ',
                b => b ^ 0x01,
            };
            let Ok(edited) = String::from_utf8(edited) else {
                continue;
            };
            let err = verify_text("ledger.jsonl", &edited)
                .expect_err(&format!("edit at byte {at} went unnoticed"));
            if bytes[at] == b'\n' {
                continue; // joins two entries: attributed to either, or to the file's end
            }
            let expected = if at < first_len { 0 } else { 1 };
            assert_eq!(err.entry, Some(expected), "byte {at}: {err}");
        }
    }

    #[test]
    fn the_chain_check_hashes_the_text_and_catches_edits_too() {
        let (_tmp, text) = two_entry_ledger();
        for line in text.lines() {
            let entry: Entry = serde_json::from_str(line).expect("entry");
            assert_eq!(hash_of_line(line), Some(entry.compute_hash()));
        }
        let full = verify(FILE, &text, Check::Full).expect("full");
        let chain = verify(FILE, &text, Check::Chain).expect("chain");
        assert_eq!((full.head, full.len), (chain.head, chain.len));
        let at = text.len() / 3;
        let mut edited = text.clone().into_bytes();
        edited[at] = if edited[at] == b'0' { b'1' } else { b'0' };
        let edited = String::from_utf8(edited).expect("utf-8");
        assert!(verify(FILE, &edited, Check::Chain).is_err());
    }

    #[test]
    fn removed_reordered_and_duplicated_entries_are_detected() {
        let (_tmp, text) = two_entry_ledger();
        let lines: Vec<&str> = text.lines().collect();
        let swapped = format!("{}\n{}\n", lines[1], lines[0]);
        assert!(verify_text("l", &swapped).is_err());
        let dup = format!("{}\n{}\n{}\n", lines[0], lines[1], lines[1]);
        assert_eq!(verify_text("l", &dup).err().map(|e| e.entry), Some(Some(2)));
        let first_removed = format!("{}\n", lines[1]);
        assert!(verify_text("l", &first_removed).is_err());
        assert!(verify_text("l", "").is_err());
        assert!(verify_text("l", lines[0]).is_err(), "a cut last line");
    }

    /// A ledger written before tier markers: the root, a CRL, and an intermediate for `acme`
    /// that the root signed without certificatePolicies (as the signer did before markers).
    #[test]
    fn an_intermediate_issued_before_tier_markers_is_listed_not_failed() {
        use crate::backend::{soft, KeyBackend as _, RcgenSigner, Secret};
        let (tmp, text) = two_entry_ledger();
        let dir = tmp.path().join("ca");
        let state = verify_text(FILE, &text).expect("intact");
        let secret = Secret::new("unit test passphrase".into());
        let root_key = soft::SoftKey::open(&soft::key_path(&dir), &secret).expect("root key");
        let ca = crate::ca::Ca::open(&dir).expect("ca");
        let mut p = rcgen::CertificateParams::default();
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x33; 16]));
        p.distinguished_name.push(rcgen::DnType::CommonName, "acme");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let nc = NameConstraints {
            permitted: vec![Subtree::Dns("acme.od.kiwistack.io".into())],
            excluded: vec![],
        };
        p.custom_extensions = vec![nc.extension().expect("nameConstraints")];
        let subject_key =
            crate::backend::soft::SoftKey::generate(crate::algo::KeyAlgorithm::EcdsaP256);
        let issuer_params = ca.issuer_params();
        let signer = RcgenSigner::new(&root_key);
        let issuer = rcgen::Issuer::from_params(&issuer_params, &signer);
        let der = p
            .signed_by(subject_key.public_key(), &issuer)
            .expect("sign")
            .der()
            .to_vec();
        let cert = x509::parse_cert(&der).expect("parse");
        assert_eq!(certpolicy::marked_tier(&cert), Ok(None));
        let subject = x509::rcgen_name(cert.subject())
            .map(|dn| x509::dn_string(&dn))
            .expect("subject");
        let (artifact_sha256, artifact) = encode_artifact(&der);
        let event = Event::IntermediateIssued {
            serial: x509::Serial::from_der_integer(cert.raw_serial()),
            slug: Slug::parse("acme").expect("slug"),
            tier: Tier::Mesh,
            subject,
            not_after: fmt_time(cert.validity().not_after.to_datetime()),
            key_id: hex::encode(subject_key.public_key().key_id()),
            csr_sha256: ZERO.into(),
            policy_sha256: ZERO.into(),
            artifact_sha256,
            artifact,
        };
        let now = OffsetDateTime::now_utc();
        let (line, _) = make_line(state.len, now, &state.head.hex(), event, None);
        let old = format!("{text}{line}\n");
        let verified = verify_text(FILE, &old).expect("an old ledger still verifies");
        assert_eq!(verified.before_tier_markers, [state.len]);
        assert!(state.before_tier_markers.is_empty());
    }

    #[test]
    fn reason_names_are_rfc5280s() {
        assert_eq!(Reason::KeyCompromise.name(), "keyCompromise");
        assert_eq!(Reason::CaCompromise.name(), "cACompromise");
        let json = serde_json::to_string(&Reason::CessationOfOperation).expect("json");
        assert_eq!(json, "\"cessationOfOperation\"");
    }
}
