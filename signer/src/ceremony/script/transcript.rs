//! The transcript of a scripted ceremony, and its verification.
//!
//! `transcript.json` (read by machines, signed by the witness) and `transcript.txt` (printed
//! and filed) record the running binary's SHA-256, the ceremony file's, every input's and
//! output's, the device and its attestation, the ledger head after each step and the times.
//! Its SHA-256 goes into the ledger as a `ceremony_closed` entry.
//!
//! Order and crashes: transcript.json is written durably first ([`fsutil::write_new`]: whole
//! or absent), then transcript.txt, then the ledger entry (replaced atomically). A crash
//! before transcript.json exists leaves the steps' entries in the ledger as ordinary
//! operations and no transcript; `verify` reports the missing file. A crash after it and before
//! the ledger entry leaves a transcript the ledger does not name: `verify` says so, and
//! `kiwi-signer ceremony close` appends the entry (it refuses if anything was appended after
//! the ceremony's last step). The reverse order would leave a ledger naming a transcript that
//! can never be produced again, since it records times.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sshsig::{self, AllowedSigner};
use crate::ca::Ca;
use crate::error::{Error, Result};
use crate::fsutil::{self, Mode};
use crate::ledger::{Check, Event, Recorded};
use crate::pipeline::{self, Kind};
use crate::words::Fingerprint;
use crate::x509::Serial;

/// The machine-readable transcript's file name.
pub const JSON: &str = "transcript.json";
/// The printable transcript's file name.
pub const TEXT: &str = "transcript.txt";
/// The transcript format this signer writes.
pub const FORMAT: u32 = 1;

/// `transcript.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transcript {
    /// [`FORMAT`].
    pub format: u32,
    /// The ceremony kind.
    pub kind: String,
    /// The ceremony file (its name, in `base`).
    pub ceremony: Hashed,
    /// The directory the ceremony file's paths are relative to.
    pub base: String,
    /// The CA directory.
    pub ca: String,
    /// Who operated.
    pub operator: String,
    /// Who witnessed.
    pub witnesses: Vec<String>,
    /// The device serial(s), as the ceremony file names them.
    pub device: String,
    /// The key backend, as it describes itself.
    pub backend: String,
    /// The device's attestation certificate (base64 DER), where the device gives one.
    pub attestation: Option<String>,
    /// The running `kiwi-signer` binary.
    pub binary: Hashed,
    /// The ledger head before the ceremony (none for a new CA).
    pub head_before: Option<String>,
    /// When the ceremony started (RFC 3339).
    pub started: String,
    /// When its last step ended.
    pub finished: String,
    /// Every file read, as the ceremony file names it.
    pub inputs: Vec<Hashed>,
    /// The steps done, in order.
    pub steps: Vec<StepRecord>,
    /// Why the ceremony stopped before its end, if it did.
    pub stopped: Option<String>,
}

/// A file and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hashed {
    /// Relative to the transcript's `base` (or absolute).
    pub path: String,
    /// SHA-256, hex.
    pub sha256: String,
}

/// One step done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    /// 1-based.
    pub n: usize,
    /// `init`, `sign`, `revoke`, `reroot`, `handover`, `renew`, `crl`.
    pub op: String,
    /// When it started.
    pub started: String,
    /// When it ended.
    pub finished: String,
    /// The serial issued or revoked.
    pub serial: Option<String>,
    /// The CRL number issued.
    pub crl_number: Option<u64>,
    /// The ledger head after it.
    pub head: String,
    /// The files it wrote.
    pub outputs: Vec<OutputRecord>,
}

/// A file a step wrote, and the ledger artifact it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputRecord {
    /// The file.
    #[serde(flatten)]
    pub file: Hashed,
    /// Which ledger artifact it holds.
    pub artifact: ArtifactRef,
}

/// A recorded artifact, by what names it in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ArtifactRef {
    /// A certificate, by serial (hex).
    Certificate(String),
    /// A CRL, by number.
    Crl(u64),
}

impl ArtifactRef {
    fn recorded(&self) -> Option<(Recorded, Kind)> {
        match self {
            ArtifactRef::Certificate(s) => Some((
                Recorded::Certificate(Serial::parse_hex(s).ok()?),
                Kind::Certificate,
            )),
            ArtifactRef::Crl(n) => Some((Recorded::Crl(*n), Kind::Crl)),
        }
    }
}

impl Transcript {
    /// The head after the last step.
    pub fn last_head(&self) -> Option<Fingerprint> {
        self.steps
            .last()
            .and_then(|s| Fingerprint::from_hex(&s.head))
    }

    /// The printable transcript.
    pub fn text(&self) -> String {
        let fp = |hex: &str| {
            Fingerprint::from_hex(hex)
                .map(|f| f.for_reading())
                .unwrap_or_else(|| hex.to_string())
        };
        let mut s = String::new();
        let mut line = |l: String| {
            s.push_str(&l);
            s.push('\n');
        };
        line(format!("KiwiStack ceremony transcript ({})", self.kind));
        line(format!("ceremony file  {}", self.ceremony.path));
        line(format!("  SHA-256      {}", fp(&self.ceremony.sha256)));
        line(format!("operator       {}", self.operator));
        line(format!("witnesses      {}", self.witnesses.join(", ")));
        line(format!("device         {}", self.device));
        line(format!("backend        {}", self.backend));
        if let Some(a) = &self.attestation {
            line(format!(
                "attestation    {} base64 characters (in transcript.json)",
                a.len()
            ));
        }
        line(format!("kiwi-signer    {}", self.binary.path));
        line(format!("  SHA-256      {}", fp(&self.binary.sha256)));
        line(format!("CA             {}", self.ca));
        if let Some(h) = &self.head_before {
            line(format!("head before    {}", fp(h)));
        }
        line(format!("started        {}", self.started));
        line(format!("finished       {}", self.finished));
        for i in &self.inputs {
            line(format!("input          {}", i.path));
            line(format!("  SHA-256      {}", fp(&i.sha256)));
        }
        for st in &self.steps {
            line(format!(
                "step {} {} ({} to {})",
                st.n, st.op, st.started, st.finished
            ));
            if let Some(s) = &st.serial {
                line(format!("  serial       {s}"));
            }
            if let Some(n) = st.crl_number {
                line(format!("  CRL number   {n}"));
            }
            for o in &st.outputs {
                line(format!("  wrote        {}", o.file.path));
                line(format!("  SHA-256      {}", fp(&o.file.sha256)));
            }
            line(format!("  ledger head  {}", fp(&st.head)));
        }
        if let Some(why) = &self.stopped {
            line(format!("STOPPED        {why}"));
        }
        line(String::new());
        line("Witness: sign transcript.json with your SSH key:".into());
        line("  ssh-keygen -Y sign -n kiwi-ceremony -f ~/.ssh/id_ed25519 transcript.json".into());
        s
    }

    /// Writes transcript.json then transcript.txt into `out_dir` (created), each durably and
    /// never over an existing file. Returns transcript.json's SHA-256.
    pub fn write(&self, out_dir: &Path) -> Result<Fingerprint> {
        if !out_dir.is_dir() {
            std::fs::create_dir(out_dir).map_err(|e| {
                Error::io(out_dir, e, "the transcript directory's parent must exist")
            })?;
        }
        let mut json =
            serde_json::to_string_pretty(self).map_err(|e| Error::SelfCheck(e.to_string()))?;
        json.push('\n');
        fsutil::write_new(&out_dir.join(JSON), json.as_bytes(), Mode::Public)?;
        fsutil::write_new(&out_dir.join(TEXT), self.text().as_bytes(), Mode::Public)?;
        Ok(Fingerprint::of(json.as_bytes()))
    }

    /// Reads transcript.json from `out_dir`, with its SHA-256.
    pub fn read(out_dir: &Path) -> Result<(Transcript, Fingerprint)> {
        let path = out_dir.join(JSON);
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::io(&path, e, "pass the --transcript directory of the ceremony"))?;
        let t: Transcript = serde_json::from_slice(&bytes).map_err(|e| Error::Script {
            file: path.display().to_string(),
            field: "(file)".into(),
            message: format!("not a transcript ({e})"),
        })?;
        Ok((t, Fingerprint::of(&bytes)))
    }

    fn resolve(&self, path: &str) -> PathBuf {
        Path::new(&self.base).join(path)
    }
}

/// Ensures `out_dir` can take a transcript: absent (with an existing parent) or empty.
pub fn check_out_dir(out_dir: &Path) -> Result<()> {
    let unusable = |reason: &str| Error::OutputUnusable {
        path: out_dir.to_path_buf(),
        reason: reason.into(),
    };
    if out_dir.symlink_metadata().is_ok() {
        let empty = std::fs::read_dir(out_dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(unusable(
                "the transcript directory exists and is not empty; give each ceremony a new one",
            ));
        }
        return Ok(());
    }
    fsutil::check_creatable(out_dir)
}

/// One check `verify` made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Whether it held.
    pub ok: bool,
    /// What was checked, and what was found.
    pub what: String,
}

/// Everything `ceremony verify` checked; it passes only if every finding is ok.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// The checks, in order.
    pub findings: Vec<Finding>,
}

impl Verification {
    fn add(&mut self, ok: bool, what: impl Into<String>) {
        self.findings.push(Finding {
            ok,
            what: what.into(),
        });
    }

    /// Whether every check held (and there was at least one).
    pub fn passed(&self) -> bool {
        !self.findings.is_empty() && self.findings.iter().all(|f| f.ok)
    }
}

/// Verifies the transcript in `out_dir` against the CA in `ca_dir` (whose ledger is verified
/// completely), the files it names, and the witness signatures `transcript.json*.sig` against
/// `allowed` (ssh-keygen's allowed_signers format, namespace `kiwi-ceremony`).
pub fn verify(out_dir: &Path, ca_dir: &Path, allowed: &[AllowedSigner]) -> Result<Verification> {
    let (t, sha) = Transcript::read(out_dir)?;
    let json = std::fs::read(out_dir.join(JSON)).map_err(|e| Error::io(out_dir, e, ""))?;
    let mut v = Verification::default();
    let ca = Ca::open_checked(ca_dir, Check::Full)?;
    v.add(
        true,
        format!(
            "ledger of {} intact (every signature verified)",
            ca_dir.display()
        ),
    );

    // The transcript is named by a ceremony_closed entry right after its last step.
    let closed = ca.ledger().entries().find_map(|e| match e.event {
        Event::CeremonyClosed {
            kind,
            ceremony_sha256,
            transcript_sha256,
        } if transcript_sha256 == sha.hex() => Some((e.seq, e.prev, kind, ceremony_sha256)),
        _ => None,
    });
    match closed {
        Some((seq, prev, kind, ceremony_sha256)) => {
            v.add(
                true,
                format!(
                    "transcript.json (SHA-256 {}) is closed by ledger entry {seq}",
                    sha.hex()
                ),
            );
            v.add(
                ceremony_sha256 == t.ceremony.sha256 && kind == t.kind,
                "the ledger entry names the transcript's ceremony file and kind",
            );
            v.add(
                t.last_head().map(|h| h.hex()) == Some(prev),
                "the ledger entry follows the transcript's last step directly",
            );
        }
        None => v.add(
            false,
            format!(
                "transcript.json (SHA-256 {}) is not in the ledger: it was changed, or the run \
                 stopped before closing it (then `kiwi-signer ceremony close` records it)",
                sha.hex()
            ),
        ),
    }
    if let Ok(b) = std::fs::read(t.resolve(&t.ceremony.path)) {
        v.add(
            Fingerprint::of(&b).hex() == t.ceremony.sha256,
            format!(
                "the ceremony file {} has the recorded SHA-256",
                t.ceremony.path
            ),
        );
    }
    if let Some(why) = &t.stopped {
        v.add(false, format!("the ceremony did not run to its end: {why}"));
    }
    for st in &t.steps {
        let head_ok =
            Fingerprint::from_hex(&st.head).is_some_and(|h| ca.ledger().contains_head(&h));
        v.add(
            head_ok,
            format!(
                "step {} ({}): ledger head {} is in the ledger",
                st.n, st.op, st.head
            ),
        );
        for o in &st.outputs {
            match check_output(&t, &ca, ca_dir, o) {
                Ok(()) => v.add(
                    true,
                    format!(
                        "step {}: {} matches the transcript and the ledger",
                        st.n, o.file.path
                    ),
                ),
                Err(why) => v.add(false, format!("step {}: {}: {why}", st.n, o.file.path)),
            }
        }
    }
    for i in &t.inputs {
        match std::fs::read(t.resolve(&i.path)) {
            Ok(b) => v.add(
                Fingerprint::of(&b).hex() == i.sha256,
                format!("input {} has the recorded SHA-256", i.path),
            ),
            Err(_) => v.add(true, format!("input {} is not here (not checked)", i.path)),
        }
    }
    signatures(&mut v, out_dir, &json, allowed)?;
    Ok(v)
}

fn check_output(
    t: &Transcript,
    ca: &Ca,
    ca_dir: &Path,
    o: &OutputRecord,
) -> std::result::Result<(), String> {
    // A file in the CA directory (root.pem) is looked for in the CA given now, wherever the
    // CA directory was when the ceremony ran.
    let path = match Path::new(&o.file.path).strip_prefix(&t.ca) {
        Ok(inside) => ca_dir.join(inside),
        Err(_) => t.resolve(&o.file.path),
    };
    let bytes =
        std::fs::read(&path).map_err(|e| format!("cannot read {} ({e})", path.display()))?;
    if Fingerprint::of(&bytes).hex() != o.file.sha256 {
        return Err("its SHA-256 differs from the transcript's: the file was changed".into());
    }
    let (which, kind) = o
        .artifact
        .recorded()
        .ok_or("the transcript names no valid artifact")?;
    let der = ca
        .ledger()
        .artifact(&which)
        .ok_or("the ledger records no such artifact")?;
    if pipeline::encode(&path, kind, &der) != bytes {
        return Err("it is not the artifact the ledger records".into());
    }
    Ok(())
}

/// Every `transcript.json.sig` / `transcript.json.*.sig` must verify; at least one must exist.
fn signatures(
    v: &mut Verification,
    out_dir: &Path,
    json: &[u8],
    allowed: &[AllowedSigner],
) -> Result<()> {
    let mut sigs: Vec<PathBuf> = std::fs::read_dir(out_dir)
        .map_err(|e| Error::io(out_dir, e, ""))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(JSON) && n.ends_with(".sig"))
        })
        .collect();
    sigs.sort();
    if sigs.is_empty() {
        v.add(
            false,
            "no witness signature: the witness runs `ssh-keygen -Y sign -n kiwi-ceremony -f KEY transcript.json`",
        );
    }
    for p in sigs {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        match sshsig::verify(allowed, json, &text) {
            Ok(principal) => v.add(true, format!("{name}: a good signature by {principal}")),
            Err(why) => v.add(false, format!("{name}: {why}")),
        }
    }
    Ok(())
}
