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
//! `--head-file`) and, on hardware backends, against the head the device remembers. A
//! `ceremony_closed` entry records no signature: it binds a scripted ceremony's transcript (its
//! SHA-256) to the ledger, right after the entries of the ceremony's steps.
//!
//! [`Check::Full`] also holds what each `intermediate_issued` entry records (slug, tier,
//! subject, key id) to the certificate it holds. The tier is read from the certificate's tier
//! marker ([`crate::certpolicy`]); a certificate without one was issued before tier markers:
//! its entry is listed in [`State::before_tier_markers`] (and `ledger verify` says so) and not
//! failed, so ledgers written before markers still verify.
//!
//! # Storage and crashes
//!
//! The ledger grows by appending and is never rewritten, so a command's cost does not grow with
//! the CA's age. [`Ledger::append`] writes an operation's new lines (one or more entries) at the
//! end of `ledger.jsonl` and `fdatasync`s the file, then replaces `ledger.commit` atomically
//! ([`crate::fsutil::replace_atomically`]: temporary sibling, fsync, rename, fsync of the
//! directory) with the new committed length in bytes and the head of the entry that ends there.
//! That rename is the commit point: the ledger is the file up to the recorded length, and bytes
//! after it are an append that did not commit. Every reader ignores them, `ledger verify`
//! reports them, and the next append cuts them off under the CA's lock (an `ftruncate`, before
//! anything is written). No output exists before the commit (the pipeline writes outputs from
//! the entries afterwards). Which crashes an append survives, step by step:
//! - killed (SIGKILL, Ctrl-C) or power lost before, during or after the `write`, or before the
//!   rename: the file may end in any part of the new lines (a kill can cut a write short too;
//!   power loss can also leave blocks the filesystem allocated but never filled), but the record
//!   still names the old length, so the ledger is the old one, and an operation's entries are
//!   all there or none is;
//! - the rename is atomic: the record is the old one or the new one, never a mix;
//! - power lost after the rename, before the directory is synced: the record may still be the
//!   old one; the command had not returned and written no output, so this is the case above;
//! - after the directory sync: the new entries are durable, because their bytes were synced
//!   (`fdatasync` flushes the data and the new file size) before the record that names them
//!   was written.
//!
//! The append must not change the bytes before the committed end. It does not write there, but
//! the last, partly filled disk block is written again with the new bytes; on power loss a disk
//! must keep the old bytes of that block (what SQLite calls "powersafe overwrite" and assumes by
//! default). A disk that breaks this damages the newest committed entry, and the chain check
//! reports it on the next open: it is never accepted silently; the CA is restored from its
//! backup.
//!
//! A ledger without a usable record (a CA made before records were kept, a restored backup
//! without it, a ledger edited by hand: a record whose length is beyond the file or does not end
//! at the entry it names) is read whole, exactly as it is, and the next append first writes a
//! record for it, so a crash during that append is survived too. The record is no security
//! boundary (whoever can edit the ledger can edit it too): rolling the ledger back by editing the
//! record is the same as cutting entries off, and is caught the same way (the witness's head, the
//! device's anchor). Restore the ledger and its record together: a record older than the ledger
//! hides the newer entries (`ledger verify` reports the bytes it ignores).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::algo::PublicKey;
use crate::certpolicy::{self, PolicyOid};
use crate::constraints::{NameConstraints, Subtree};
use crate::error::{Error, Result};
use crate::fsutil::{self, Mode};
use crate::preflight::PreflightRecord;
use crate::slug::{Slug, Tier};
use crate::words::Fingerprint;
use crate::x509::{self, Serial};

/// The ledger's file name inside a CA directory.
pub const FILE: &str = "ledger.jsonl";

/// The commit record's file name inside a CA directory: how much of the ledger is known whole.
pub const COMMIT_FILE: &str = "ledger.commit";

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

    /// Whether a revocation for `self` may later be changed to `to`: only superseded,
    /// cessationOfOperation or affiliationChanged (a hand-over), and only to keyCompromise (a
    /// retirement later found to be a compromise). Every other change is refused, so a
    /// compromise is never undone.
    pub fn may_become(self, to: Reason) -> bool {
        matches!(
            self,
            Reason::Superseded | Reason::CessationOfOperation | Reason::AffiliationChanged
        ) && to == Reason::KeyCompromise
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
        /// A Core cluster's shared sub-CA (`slug` names the cluster; its subtrees cover every
        /// tenant, so they do not contain the slug). Absent (false) in older entries.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shared: bool,
    },
    /// An intermediate was revoked (the CRL that carries it follows as the next entry), or a
    /// revocation's reason was changed to keyCompromise (`replaces` names the old reason).
    Revoked {
        /// Serial.
        serial: Serial,
        /// Customer slug; absent for a certificate a customer-owned root re-rooted or
        /// renewed (it names no KiwiStack customer).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slug: Option<Slug>,
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
    /// A scripted ceremony (`kiwi-signer ceremony run`) closed: its transcript, which the
    /// witness signs, is bound to the ledger by its SHA-256. The entries of its steps come
    /// before this one.
    CeremonyClosed {
        /// The ceremony's kind (`root-init`, `signing`, `crl-reissue`, `backup-import`).
        kind: String,
        /// SHA-256 of the ceremony file.
        ceremony_sha256: String,
        /// SHA-256 of `transcript.json`.
        transcript_sha256: String,
    },
    /// An intermediate another root (the MSP's) issued was re-signed under this root (a
    /// customer-owned root, at churn hand-over): the same key, subject and key identifier,
    /// so the leaves it issued chain to this root.
    Rerooted {
        /// Serial of the re-rooted certificate.
        serial: Serial,
        /// Serial of the certificate the MSP root issued.
        original_serial: Serial,
        /// SHA-256 of the MSP root certificate's DER (its fingerprint).
        msp_root_sha256: String,
        /// Subject (the original's).
        subject: String,
        /// notAfter (RFC 3339).
        not_after: String,
        /// Subject key id (hex).
        key_id: String,
        /// SHA-256 of the certificate DER.
        artifact_sha256: String,
        /// The certificate, base64 DER.
        artifact: String,
    },
    /// A customer-owned root issued a replacement for an intermediate it re-rooted or renewed:
    /// a new key, the replaced certificate's subject, nameConstraints and tier marker.
    Renewed {
        /// Serial of the new certificate.
        serial: Serial,
        /// Serial of the certificate it replaces (re-rooted or renewed by this root).
        replaces: Serial,
        /// Subject (the replaced certificate's).
        subject: String,
        /// notAfter (RFC 3339).
        not_after: String,
        /// Subject key id (hex) of the new key.
        key_id: String,
        /// SHA-256 of the CSR DER.
        csr_sha256: String,
        /// SHA-256 of the certificate DER.
        artifact_sha256: String,
        /// The certificate, base64 DER.
        artifact: String,
    },
    /// An intermediate was handed over to the customer's own root at churn: the `revoked`
    /// entry (affiliationChanged) and the CRL listing it follow in the same append.
    HandedOver {
        /// Serial of the intermediate.
        serial: Serial,
        /// Customer slug.
        slug: Slug,
        /// SHA-256 of the customer root certificate's DER (where the customer went).
        new_root_sha256: String,
        /// The customer root's subject.
        new_root_subject: String,
    },
}

impl Event {
    /// The signed artifact (certificate or CRL DER) the event records, if it records one.
    pub fn artifact_der(&self) -> Option<Vec<u8>> {
        match self {
            Event::RootCreated { artifact, .. }
            | Event::IntermediateIssued { artifact, .. }
            | Event::CrlIssued { artifact, .. }
            | Event::Rerooted { artifact, .. }
            | Event::Renewed { artifact, .. } => base64::engine::general_purpose::STANDARD
                .decode(artifact)
                .ok(),
            Event::Revoked { .. } | Event::CeremonyClosed { .. } | Event::HandedOver { .. } => None,
        }
    }

    /// The event's name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::RootCreated { .. } => "root_created",
            Event::IntermediateIssued { .. } => "intermediate_issued",
            Event::Revoked { .. } => "revoked",
            Event::CrlIssued { .. } => "crl_issued",
            Event::CeremonyClosed { .. } => "ceremony_closed",
            Event::Rerooted { .. } => "rerooted",
            Event::Renewed { .. } => "renewed",
            Event::HandedOver { .. } => "handed_over",
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

/// The hash of a line from its text alone: SHA-256 of the line with its own hash blanked, in
/// lowercase hex. For a canonical line this equals [`Entry::compute_hash`] (`hash` is the last
/// field), without serializing the entry again. None when the line does not end in
/// `"hash":"<64 characters>"}`.
fn hash_of_line(line: &str) -> Option<[u8; 64]> {
    let cut = line.len().checked_sub(64 + 2)?;
    let kept = line.get(..cut)?;
    if !kept.ends_with("\"hash\":\"") || !line.ends_with("\"}") {
        return None;
    }
    let mut h = Sha256::new();
    h.update(kept.as_bytes());
    h.update(b"\"}");
    // On the stack: one line per entry is hashed on every open. 32 bytes fit 64 characters.
    let mut out = [0; 64];
    hex::encode_to_slice(h.finalize(), &mut out).ok()?;
    Some(out)
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
    /// Slug (None for a re-rooted or renewed certificate of a customer-owned root).
    pub slug: Option<Slug>,
    /// Reason.
    pub reason: Reason,
    /// When.
    pub revoked_at: String,
}

/// An intermediate another root issued and this root re-signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rerooted {
    /// Serial of the re-rooted certificate.
    pub serial: Serial,
    /// Serial of the original (the MSP root's).
    pub original_serial: Serial,
    /// SHA-256 of the MSP root.
    pub msp_root_sha256: String,
    /// Subject.
    pub subject: String,
    /// notAfter.
    pub not_after: String,
    /// Subject key id.
    pub key_id: String,
    /// When re-rooted.
    pub rerooted_at: String,
    /// Ledger entry.
    pub entry: u64,
}

/// A replacement a customer-owned root issued for an intermediate it re-rooted or renewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Renewed {
    /// Serial of the new certificate.
    pub serial: Serial,
    /// Serial of the certificate it replaces.
    pub replaces: Serial,
    /// Subject.
    pub subject: String,
    /// notAfter.
    pub not_after: String,
    /// Subject key id of the new key.
    pub key_id: String,
    /// When renewed.
    pub renewed_at: String,
    /// Ledger entry.
    pub entry: u64,
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
    /// Intermediates of other roots this root re-signed, by (new) serial.
    pub rerooted: BTreeMap<Serial, Rerooted>,
    /// Replacements this (customer-owned) root issued for them, by (new) serial.
    pub renewed: BTreeMap<Serial, Renewed>,
    /// Time of the newest entry.
    pub last_time: OffsetDateTime,
    /// Number of entries.
    pub len: u64,
    /// Bytes after the committed end that are ignored: an append that did not commit (the
    /// next append removes them).
    pub ignored_tail: u64,
    /// Entries (`seq`) of intermediates issued before tier markers, whose recorded tier the
    /// certificate cannot confirm (filled by [`Check::Full`] only).
    pub before_tier_markers: Vec<u64>,
}

impl State {
    /// The subject and key id of a certificate this root re-rooted or renewed (a
    /// customer-owned root's own intermediates), None for any other serial.
    pub fn customer_owned(&self, serial: &Serial) -> Option<(&str, &str)> {
        self.rerooted
            .get(serial)
            .map(|r| (r.subject.as_str(), r.key_id.as_str()))
            .or_else(|| {
                self.renewed
                    .get(serial)
                    .map(|r| (r.subject.as_str(), r.key_id.as_str()))
            })
    }
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
    path: PathBuf,
    file: String,
    text: String,
    state: State,
    /// Whether `ledger.commit` marks `text`'s end (else the whole file was read).
    recorded: bool,
}

/// `ledger.commit`: the ledger is whole up to `bytes`, where the entry `head` ends.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitRecord {
    bytes: u64,
    head: String,
}

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl Ledger {
    /// Reads and verifies `path` as deep as `check` says; `root_pem_der` (from root.pem) must be
    /// the ledger's root. An append a crash cut short is ignored (see the module doc).
    pub fn open(path: &Path, root_pem_der: &[u8], check: Check) -> Result<Self, LedgerError> {
        let file = path.display().to_string();
        let mut bytes = std::fs::read(path).map_err(|e| LedgerError {
            file: file.clone(),
            entry: None,
            message: format!("cannot read the ledger ({e}); is this a CA directory?"),
        })?;
        let record = read_record(&path.with_file_name(COMMIT_FILE));
        let (end, recorded) = committed_end(&bytes, record.as_ref());
        let ignored_tail = (bytes.len() - end) as u64;
        bytes.truncate(end);
        let text = String::from_utf8(bytes).map_err(|e| LedgerError {
            file: file.clone(),
            entry: None,
            message: format!("not UTF-8 text ({e}): the ledger was damaged or edited"),
        })?;
        let mut state = verify(&file, &text, check)?;
        state.ignored_tail = ignored_tail;
        if state.root_der != root_pem_der {
            return Err(LedgerError {
                file,
                entry: Some(0),
                message:
                    "the root certificate in the ledger is not root.pem; root.pem was replaced"
                        .into(),
            });
        }
        Ok(Ledger {
            path: path.to_path_buf(),
            file,
            text,
            state,
            recorded,
        })
    }

    /// The verified state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The lines `events` become when appended at `now`, each carrying `preflight` (the failed
    /// air-gap checks, if any), and the head they lead to. Nothing is written.
    pub fn new_lines(
        &self,
        events: Vec<Event>,
        now: OffsetDateTime,
        preflight: Option<&PreflightRecord>,
    ) -> (String, Fingerprint) {
        let mut text = String::new();
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

    /// Appends `events` durably (see the module doc for the crashes this survives) and returns
    /// the new head. The caller holds the CA's lock and opened this ledger under it; `self`
    /// stays the ledger as it was opened.
    pub fn append(
        &self,
        events: Vec<Event>,
        now: OffsetDateTime,
        preflight: Option<&PreflightRecord>,
    ) -> Result<Fingerprint> {
        let (lines, head) = self.new_lines(events, now, preflight);
        let record_path = self.path.with_file_name(COMMIT_FILE);
        let end = self.text.len() as u64;
        if !self.recorded {
            // The bytes so far are verified whole: recorded first, so that what this append
            // writes counts only once its own record commits it.
            write_record(&record_path, end, &self.state.head)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e, "nothing was recorded"))?;
        let appended = (|| {
            if f.metadata()?.len() != end {
                // An append a crash cut short, ignored when the ledger was read: cut off.
                f.set_len(end)?;
            }
            f.write_all(lines.as_bytes())?;
            f.sync_data()
        })();
        if let Err(e) = appended {
            // Best effort: the ledger as it was (readers ignore the uncommitted tail anyway).
            let _ = f.set_len(end);
            return Err(Error::io(
                &self.path,
                e,
                "the disk may be full; nothing was recorded",
            ));
        }
        // The commit point.
        write_record(&record_path, end + lines.len() as u64, &head)?;
        Ok(head)
    }

    /// Whether `head` is the hash of one of this ledger's entries.
    pub fn contains_head(&self, head: &Fingerprint) -> bool {
        // The text is verified canonical, so this key appears only as an entry's own hash.
        self.text.contains(&format!("\"hash\":\"{}\"", head.hex()))
    }

    /// The DER of a recorded certificate or CRL.
    pub fn artifact(&self, which: &Recorded) -> Option<Vec<u8>> {
        self.entries()
            .find(|e| match (&e.event, which) {
                (
                    Event::RootCreated { serial, .. }
                    | Event::IntermediateIssued { serial, .. }
                    | Event::Rerooted { serial, .. }
                    | Event::Renewed { serial, .. },
                    Recorded::Certificate(want),
                ) => serial == want,
                (Event::CrlIssued { crl_number, .. }, Recorded::Crl(want)) => crl_number == want,
                _ => false,
            })
            .and_then(|e| e.event.artifact_der())
    }

    /// Every entry, oldest first (the text is verified, so every line parses).
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.text
            .lines()
            .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
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

/// Where the ledger ends in `bytes`, and whether `record` marks that end: where the record
/// says, if it marks the end of one of these bytes' lines with its head; else at the end of the
/// file (no usable record).
fn committed_end(bytes: &[u8], record: Option<&CommitRecord>) -> (usize, bool) {
    let marked = record.and_then(|r| {
        let end = usize::try_from(r.bytes).ok()?;
        let tail = format!("\"hash\":\"{}\"}}\n", r.head);
        bytes
            .get(..end)
            .filter(|kept| kept.ends_with(tail.as_bytes()))
            .map(|_| end)
    });
    match marked {
        Some(end) => (end, true),
        None => (bytes.len(), false),
    }
}

/// The commit record at `path`, if there is a readable one.
fn read_record(path: &Path) -> Option<CommitRecord> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Replaces the commit record at `path`: the ledger is whole up to `bytes`, ending in `head`.
fn write_record(path: &Path, bytes: u64, head: &Fingerprint) -> Result<()> {
    let record = CommitRecord {
        bytes,
        head: head.hex(),
    };
    // Serializing a plain data struct to JSON cannot fail.
    let json = serde_json::to_string(&record).unwrap_or_default();
    fsutil::replace_atomically(path, format!("{json}\n").as_bytes(), Mode::Public)
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

/// What an entry records of a certificate it issued: serial, subject, key id, artifact SHA-256
/// and artifact.
type IssuedRecord<'a> = (&'a Serial, &'a str, &'a str, &'a str, &'a str);

/// Checks an entry that issued a certificate: its serial is new (added to `serials`) and, in a
/// full check, the certificate is the root's and says what the entry records (its `tier` too,
/// when the entry records one). `Ok(false)`: a full check found no tier marker to check the
/// recorded tier against (issued before tier markers).
fn check_issued(
    full: bool,
    root_key: &PublicKey,
    (serial, subject, key_id, artifact_sha256, artifact): IssuedRecord<'_>,
    (slug, tier): (Option<&Slug>, Option<Tier>),
    serials: &mut BTreeSet<Serial>,
) -> Result<bool, String> {
    let mut marked = true;
    if full {
        let der = decode_artifact(artifact_sha256, artifact)?;
        let cert = x509::parse_cert(&der).map_err(|m| format!("certificate: {m}"))?;
        x509::verify_cert(&cert, root_key).map_err(|m| format!("certificate signature: {m}"))?;
        if Serial::from_der_integer(cert.raw_serial()) != *serial {
            return Err("recorded serial differs from the certificate's".into());
        }
        check_recorded_names(&cert, subject, key_id, slug)?;
        if let Some(t) = tier {
            marked = check_recorded_tier(&cert, t)?;
        }
    }
    if !serials.insert(serial.clone()) {
        return Err(format!(
            "serial {serial} was issued before: serials must be unique"
        ));
    }
    Ok(marked)
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
        let hash_ok = if full {
            entry.compute_hash() == entry.hash
        } else {
            hash_of_line(line).is_some_and(|h| h[..] == *entry.hash.as_bytes())
        };
        if !hash_ok {
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
        // The buffer is reused: no allocation per entry.
        prev.clear();
        prev.push_str(&entry.hash);
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
                    rerooted: BTreeMap::new(),
                    renewed: BTreeMap::new(),
                    last_time: time,
                    len: 0,
                    ignored_tail: 0,
                    before_tier_markers: Vec::new(),
                });
            }
            (None, _) => return Err(e("the first entry must be root_created".into())),
            (Some(_), Event::RootCreated { .. }) => {
                return Err(e("a second root_created entry".into()))
            }
            (
                Some(_),
                Event::CeremonyClosed {
                    ceremony_sha256,
                    transcript_sha256,
                    ..
                },
            ) => {
                if Fingerprint::from_hex(ceremony_sha256)
                    .map(|f| f.hex())
                    .as_ref()
                    != Some(ceremony_sha256)
                    || Fingerprint::from_hex(transcript_sha256)
                        .map(|f| f.hex())
                        .as_ref()
                        != Some(transcript_sha256)
                {
                    return Err(e(
                        "a ceremony_closed hash is not 64 lowercase hex digits".into()
                    ));
                }
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
                    shared,
                    ..
                },
            ) => {
                let recorded = (
                    serial,
                    subject.as_str(),
                    key_id.as_str(),
                    artifact_sha256.as_str(),
                    artifact.as_str(),
                );
                // A shared sub-CA's subtrees name no slug (they cover every tenant).
                let named = (!*shared).then_some(slug);
                let names = (named, Some(*tier));
                if !check_issued(full, &s.root_key, recorded, names, &mut serials).map_err(e)? {
                    s.before_tier_markers.push(n);
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
                match (s.issued.get(serial), s.customer_owned(serial)) {
                    (Some(issued), _) if Some(&issued.slug) == slug.as_ref() => {}
                    (Some(_), _) => {
                        return Err(e(
                            "recorded slug differs from the issued certificate's".into()
                        ))
                    }
                    (None, Some(_)) if slug.is_none() => {}
                    (None, Some(_)) => {
                        return Err(e(format!(
                            "records slug for {serial}, a re-rooted or renewed certificate, \
                             which names no customer"
                        )))
                    }
                    (None, None) => {
                        return Err(e(format!("revokes {serial}, which this root never issued")))
                    }
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
                Event::Rerooted {
                    serial,
                    original_serial,
                    msp_root_sha256,
                    subject,
                    not_after,
                    key_id,
                    artifact_sha256,
                    artifact,
                },
            ) => {
                let recorded = (
                    serial,
                    subject.as_str(),
                    key_id.as_str(),
                    artifact_sha256.as_str(),
                    artifact.as_str(),
                );
                check_issued(full, &s.root_key, recorded, (None, None), &mut serials).map_err(e)?;
                s.rerooted.insert(
                    serial.clone(),
                    Rerooted {
                        serial: serial.clone(),
                        original_serial: original_serial.clone(),
                        msp_root_sha256: msp_root_sha256.clone(),
                        subject: subject.clone(),
                        not_after: not_after.clone(),
                        key_id: key_id.clone(),
                        rerooted_at: entry.time.clone(),
                        entry: n,
                    },
                );
            }
            (
                Some(s),
                Event::Renewed {
                    serial,
                    replaces,
                    subject,
                    not_after,
                    key_id,
                    artifact_sha256,
                    artifact,
                    ..
                },
            ) => {
                let Some(old_key) = s.customer_owned(replaces).map(|(_, k)| k.to_string()) else {
                    return Err(e(format!(
                        "renews {replaces}, which this root neither re-rooted nor renewed"
                    )));
                };
                if s.revoked.contains_key(replaces) {
                    return Err(e(format!("renews {replaces}, which was revoked before")));
                }
                if old_key == *key_id {
                    return Err(e(format!(
                        "renews {replaces} with the same key: a renewal certifies a new key"
                    )));
                }
                let recorded = (
                    serial,
                    subject.as_str(),
                    key_id.as_str(),
                    artifact_sha256.as_str(),
                    artifact.as_str(),
                );
                check_issued(full, &s.root_key, recorded, (None, None), &mut serials).map_err(e)?;
                s.renewed.insert(
                    serial.clone(),
                    Renewed {
                        serial: serial.clone(),
                        replaces: replaces.clone(),
                        subject: subject.clone(),
                        not_after: not_after.clone(),
                        key_id: key_id.clone(),
                        renewed_at: entry.time.clone(),
                        entry: n,
                    },
                );
            }
            (Some(s), Event::HandedOver { serial, slug, .. }) => {
                let Some(issued) = s.issued.get(serial) else {
                    return Err(e(format!(
                        "hands over {serial}, which this root never issued"
                    )));
                };
                if issued.slug != *slug {
                    return Err(e(
                        "recorded slug differs from the issued certificate's".into()
                    ));
                }
                if s.revoked.contains_key(serial) {
                    return Err(e(format!("hands over {serial}, which was revoked before")));
                }
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
            s.last_time = time;
            s.len = n + 1;
        }
    }
    let mut state = state.ok_or_else(|| err(None, "the ledger has no entries".into()))?;
    // `prev` is the newest entry's hash, checked above to be its content's.
    state.head = Fingerprint::from_hex(&prev).unwrap_or(Fingerprint([0; 32]));
    Ok(state)
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
            let hash = hash_of_line(line).expect("a hash");
            assert_eq!(hash[..], *entry.compute_hash().as_bytes());
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

    /// Runs `crl` on the CA in `dir` (a fresh output each time).
    fn crl(dir: &Path) -> crate::error::Result<crate::ceremony::Outcome> {
        let cb = Scripted {
            confirm: true,
            secret: "unit test passphrase".into(),
        };
        let c = crate::ceremony::Ceremony::new(&cb, OffsetDateTime::now_utc());
        let out = dir.with_file_name(format!("crl-{}.pem", Serial::random()));
        crate::ceremony::run(dir, &crate::ceremony::crl::Crl { out }, &c)
    }

    fn open(dir: &Path) -> Result<Ledger, LedgerError> {
        let root = std::fs::read(dir.join("root.pem")).expect("root.pem");
        let der = pem::parse(root).expect("pem").into_contents();
        Ledger::open(&dir.join(FILE), &der, Check::Chain)
    }

    #[test]
    fn an_uncommitted_append_is_ignored_then_cut_off_and_damage_before_it_is_not() {
        let (tmp, two) = two_entry_ledger();
        let dir = tmp.path().join("ca");
        let record = dir.join(COMMIT_FILE);
        let head2 = open(&dir).expect("open").state().head;
        crl(&dir).expect("third entry");
        let three = std::fs::read_to_string(dir.join(FILE)).expect("ledger");
        let head3 = open(&dir).expect("open").state().head;
        let third = &three[two.len()..];
        let (len2, len3) = (two.len() as u64, three.len() as u64);
        // (file, record, entries the ledger has, bytes ignored)
        let zeros = "\0".repeat(4096);
        let cases = [
            // Power lost during the write: part of the new line, or blocks never filled.
            (
                format!("{two}{}", &third[..third.len() / 2]),
                (len2, head2),
                2,
                third.len() / 2,
            ),
            (format!("{two}{zeros}"), (len2, head2), 2, zeros.len()),
            // Killed after the write, before the record's rename: not committed.
            (three.clone(), (len2, head2), 2, third.len()),
            (
                format!("{three}{}", &third[..10]),
                (len2, head2),
                2,
                third.len() + 10,
            ),
            (format!("{three}{zeros}"), (len3, head3), 3, zeros.len()),
        ];
        for (file, (bytes, head), entries, ignored) in cases {
            std::fs::write(dir.join(FILE), &file).expect("ledger");
            write_record(&record, bytes, &head).expect("record");
            let l = open(&dir).expect("an uncommitted append is not damage");
            assert_eq!(l.state().len, entries);
            assert_eq!(l.state().ignored_tail, ignored as u64);
            crl(&dir).expect("the next append");
            let now = std::fs::read_to_string(dir.join(FILE)).expect("ledger");
            let state = verify_text(FILE, &now).expect("whole after the append");
            assert_eq!(state.len, entries + 1);
            assert!(
                now.starts_with(&file[..file.len() - ignored]),
                "the entries are kept"
            );
        }
        // Damage before the record's end is reported, with its entry.
        std::fs::write(dir.join(FILE), &three).expect("ledger");
        write_record(&record, len3, &head3).expect("record");
        let mut edited = three.clone().into_bytes();
        let at = three.len() - 100;
        edited[at] = if edited[at] == b'0' { b'1' } else { b'0' };
        std::fs::write(dir.join(FILE), &edited).expect("ledger");
        assert_eq!(open(&dir).expect_err("damage").entry, Some(2));
        // Without a record the whole file is the ledger, as before records were kept; the next
        // append records it first.
        std::fs::write(dir.join(FILE), &three).expect("ledger");
        std::fs::remove_file(&record).expect("rm");
        std::fs::write(dir.join(FILE), format!("{three}{{\"seq\"")).expect("ledger");
        assert!(open(&dir).is_err(), "a cut line without a record is damage");
        std::fs::write(dir.join(FILE), &three).expect("ledger");
        assert!(!open(&dir).expect("open").recorded);
        let o = crl(&dir).expect("append");
        let l = open(&dir).expect("open");
        assert!(l.recorded && l.state().head == o.head && l.state().len == 4);
    }

    #[test]
    fn ceremony_closed_entries_hold_two_sha256_hashes() {
        let (_tmp, text) = two_entry_ledger();
        let ledger = Ledger {
            path: FILE.into(),
            file: FILE.into(),
            state: verify_text(FILE, &text).expect("intact"),
            text,
            recorded: false,
        };
        let with = |event: Event| {
            let (lines, _) = ledger.new_lines(vec![event], ledger.state().last_time, None);
            format!("{}{lines}", ledger.text)
        };
        let closed = |transcript_sha256: &str| Event::CeremonyClosed {
            kind: "signing".into(),
            ceremony_sha256: Fingerprint::of(b"ceremony file").hex(),
            transcript_sha256: transcript_sha256.into(),
        };
        let good = Fingerprint::of(b"transcript").hex();
        let text = with(closed(&good));
        let state = verify_text(FILE, &text).expect("a ceremony_closed entry verifies");
        assert_eq!(state.len, 3);
        for bad in [good.to_uppercase(), good[..62].to_string(), "x".repeat(64)] {
            let err = verify_text(FILE, &with(closed(&bad))).expect_err(&bad);
            assert_eq!(err.entry, Some(2), "{err}");
        }
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
            shared: false,
        };
        let len = state.len;
        let ledger = Ledger {
            path: FILE.into(),
            file: FILE.into(),
            state,
            text,
            recorded: false,
        };
        let (lines, _) = ledger.new_lines(vec![event], OffsetDateTime::now_utc(), None);
        let old = format!("{}{lines}", ledger.text);
        let verified = verify_text(FILE, &old).expect("an old ledger still verifies");
        assert_eq!(verified.before_tier_markers, [len]);
        assert!(ledger.state.before_tier_markers.is_empty());
    }

    #[test]
    fn reason_names_are_rfc5280s() {
        assert_eq!(Reason::KeyCompromise.name(), "keyCompromise");
        assert_eq!(Reason::CaCompromise.name(), "cACompromise");
        let json = serde_json::to_string(&Reason::CessationOfOperation).expect("json");
        assert_eq!(json, "\"cessationOfOperation\"");
    }
}
