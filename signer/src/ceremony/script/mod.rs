//! Ceremony scripts: a ceremony file the signer plans, runs step by step through the one
//! pipeline with the key opened once, and closes with a transcript bound to the ledger.
//!
//! [`plan`] checks everything that can be checked without the key, through each operation's
//! own plan (CSRs, policies, serials, outputs, with a throwaway key for the lint) and the
//! witness's head; it asks for nothing and writes nothing. [`run`] plans again, then runs
//! each step with [`super::run_with`] (the preflight, a confirmation per step, the key opened
//! at the first step and kept for the rest), stops at the first failure (that step writes
//! nothing, as any single command), writes the transcript and appends `ceremony_closed`
//! ([`transcript`] says in which order, and what a crash leaves). [`close`] appends that entry
//! for a transcript whose run stopped before it. [`transcript::verify`] checks it all later.

pub mod file;
pub mod sshsig;
pub mod transcript;

use std::cell::OnceCell;
use std::path::Path;
use std::time::Instant;

use time::OffsetDateTime;

pub use file::{Body, Script, ScriptKind, ScriptStep};
use transcript::{ArtifactRef, Hashed, OutputRecord, StepRecord, Transcript};

use super::{check, init, run_with, Ceremony, Witness};
use crate::backend::{Anchor, BackendError, KeyBackend};
use crate::ca::{files, Ca};
use crate::error::{Error, Result};
use crate::ledger::{self, Event};
use crate::policy;
use crate::words::Fingerprint;

/// What `ceremony plan` found: the ceremony as it will run.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The ledger head the ceremony starts from (none for a new CA).
    pub head: Option<Fingerprint>,
    /// Every input, with its SHA-256.
    pub inputs: Vec<(String, Fingerprint)>,
    /// Each step's name and summary.
    pub steps: Vec<(&'static str, String)>,
}

impl Planned {
    /// The plan as printed for the operator and the witness.
    pub fn text(&self, script: &Script) -> String {
        let mut s = format!(
            "Ceremony {}\n  file      {}\n  SHA-256   {}\n  operator  {}\n  witnesses {}\n  device    {}\n",
            script.kind.name(),
            script.path.display(),
            script.sha256.for_reading(),
            script.operator,
            script.witnesses.join(", "),
            script.device.serial(),
        );
        if let Some(h) = &self.head {
            s.push_str(&format!("  ledger head now {}\n", h.for_reading()));
        }
        for (path, f) in &self.inputs {
            s.push_str(&format!("input {path}\n  SHA-256 {}\n", f.for_reading()));
        }
        for (i, (name, summary)) in self.steps.iter().enumerate() {
            s.push_str(&format!("step {} ({name}):\n", i + 1));
            for l in summary.lines() {
                s.push_str(&format!("  {l}\n"));
            }
        }
        s
    }
}

/// Checks `script` against the CA in `ca_dir` without the key; `c.witness` adds a head to
/// expect (`--expect-head`) to the file's own. Nothing is asked and nothing is written.
pub fn plan(script: &Script, ca_dir: &Path, c: &Ceremony<'_>) -> Result<Planned> {
    let mut inputs = Vec::new();
    for i in script.inputs() {
        let bytes = std::fs::read(&i.path)
            .map_err(|e| Error::io(&i.path, e, "check the path in the ceremony file"))?;
        inputs.push((i.rel.clone(), Fingerprint::of(&bytes)));
    }
    let now = c.now.replace_nanosecond(0).unwrap_or(c.now);
    if let Body::Init { policy, org } = &script.body {
        // The policy decides whether `org` is required; the field names the fault.
        let checked =
            init::precheck(ca_dir, &policy.path, org.as_deref()).map_err(|e| match e {
                Error::BadOrg { detail } => Error::Script {
                    file: script.path.display().to_string(),
                    field: "org".into(),
                    message: match org {
                        Some(_) => detail,
                        None => format!(
                            "{} is a customer-owned root's policy: add `org: <the customer's \
                             organization>`",
                            policy.rel
                        ),
                    },
                },
                e => e,
            })?;
        let (pol, path) = (checked.pol, checked.policy_path);
        // The intermediate policies beside the root policy go into the CA too.
        let dir = path.parent().unwrap_or(Path::new("."));
        for &tier in checked.tiers {
            let file = policy::intermediate_file(tier);
            let bytes =
                std::fs::read(dir.join(&file)).map_err(|e| Error::io(dir.join(&file), e, ""))?;
            let rel = Path::new(&policy.rel).with_file_name(&file);
            inputs.push((rel.display().to_string(), Fingerprint::of(&bytes)));
        }
        let summary = format!(
            "Create a root CA{} in {} under {} ({} days), the key {} {}\n",
            org.as_deref()
                .map(|o| format!(" owned by {o}"))
                .unwrap_or_default(),
            ca_dir.display(),
            policy.rel,
            pol.validity_days,
            if script.device.import {
                "generated in memory and imported into"
            } else {
                "generated on"
            },
            script.device.serial(),
        );
        return Ok(Planned {
            head: None,
            inputs,
            steps: vec![("init", summary)],
        });
    }
    let ca = Ca::open(ca_dir)?;
    let head = ca.state().head;
    for w in [&script.expect_head, &c.witness.expect]
        .into_iter()
        .flatten()
    {
        w.check(&head)?;
    }
    script
        .device
        .check(&script.path.display().to_string(), &ca.config().backend)?;
    ca.check_clock(now)?;
    let ops = script.operations()?;
    let mut steps = Vec::new();
    for (name, op) in &ops {
        let (p, _) = check(&ca, op.as_ref(), now)?;
        steps.push((*name, p.summary));
    }
    Ok(Planned {
        head: Some(head),
        inputs,
        steps,
    })
}

/// What `ceremony run` did.
#[derive(Debug, Clone)]
pub struct Ran {
    /// The transcript written.
    pub transcript: Transcript,
    /// transcript.json's SHA-256 (in the ledger).
    pub transcript_sha256: Fingerprint,
    /// The ledger head after `ceremony_closed`.
    pub head: Fingerprint,
    /// Warnings from the steps (a device anchor, a hook).
    pub warnings: Vec<String>,
}

/// Where the running binary is, for its hash in the transcript.
#[derive(Debug, Clone)]
pub struct Binary(pub std::path::PathBuf);

impl Default for Binary {
    fn default() -> Self {
        Binary("/proc/self/exe".into())
    }
}

/// Runs `script` on the CA in `ca_dir`, writing the transcript into `out_dir`.
pub fn run(
    script: &Script,
    ca_dir: &Path,
    out_dir: &Path,
    binary: &Binary,
    c: &Ceremony<'_>,
) -> Result<Ran> {
    let planned = plan(script, ca_dir, c)?;
    transcript::check_out_dir(out_dir)?;
    let binary_bytes = std::fs::read(&binary.0).map_err(|e| Error::io(&binary.0, e, ""))?;
    let started = Instant::now();
    let at = |i: Instant| c.now + (i - started);
    let mut t = Transcript {
        format: transcript::FORMAT,
        kind: script.kind.name().into(),
        ceremony: Hashed {
            path: script
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256: script.sha256.hex(),
        },
        base: script.base.display().to_string(),
        ca: std::path::absolute(ca_dir)
            .unwrap_or_else(|_| ca_dir.to_path_buf())
            .display()
            .to_string(),
        operator: script.operator.clone(),
        witnesses: script.witnesses.clone(),
        device: script.device.serial(),
        backend: String::new(),
        attestation: None,
        binary: Hashed {
            path: std::fs::read_link(&binary.0)
                .unwrap_or_else(|_| binary.0.clone())
                .display()
                .to_string(),
            sha256: Fingerprint::of(&binary_bytes).hex(),
        },
        head_before: planned.head.map(|h| h.hex()),
        started: ledger::fmt_time(c.now),
        finished: String::new(),
        inputs: planned
            .inputs
            .iter()
            .map(|(p, f)| Hashed {
                path: p.clone(),
                sha256: f.hex(),
            })
            .collect(),
        steps: Vec::new(),
        stopped: None,
    };
    let mut warnings = Vec::new();
    let result = match &script.body {
        Body::Init { policy, org } => {
            // `init` asks nothing before it creates the key: the ceremony asks here.
            let summary = planned.steps.first().map(|(_, s)| s.as_str()).unwrap_or("");
            if !c.cb.confirm(summary)? {
                return Err(Error::NotConfirmed);
            }
            let step_start = Instant::now();
            let o = init::init_org(
                ca_dir,
                &policy.path,
                org.as_deref(),
                &script.device.spec(),
                c,
            )?;
            warnings.extend(o.warnings);
            let ca = Ca::open(ca_dir)?;
            if let Some(e) = ca.ledger().entries().next() {
                if let Event::RootCreated {
                    backend,
                    attestation,
                    serial,
                    ..
                } = e.event
                {
                    t.backend = backend;
                    t.attestation = attestation;
                    let root = ca_dir.join(files::ROOT);
                    let bytes = std::fs::read(&root).map_err(|e| Error::io(&root, e, ""))?;
                    t.steps.push(StepRecord {
                        n: 1,
                        op: "init".into(),
                        started: ledger::fmt_time(at(step_start)),
                        finished: ledger::fmt_time(at(Instant::now())),
                        serial: Some(serial.to_string()),
                        crl_number: None,
                        head: o.head.hex(),
                        outputs: vec![OutputRecord {
                            file: Hashed {
                                path: std::path::absolute(&root)
                                    .unwrap_or(root)
                                    .display()
                                    .to_string(),
                                sha256: Fingerprint::of(&bytes).hex(),
                            },
                            artifact: ArtifactRef::Certificate(serial.to_string()),
                        }],
                    });
                }
            }
            Ok(())
        }
        _ => run_steps(script, ca_dir, c, &mut t, &mut warnings, &at),
    };
    t.finished = ledger::fmt_time(at(Instant::now()));
    if let Err(e) = result {
        if t.steps.is_empty() {
            return Err(e);
        }
        let failed = t.steps.len() + 1;
        t.stopped = Some(format!("step {failed} failed: {e}"));
        write_and_close(&t, ca_dir, out_dir, at(Instant::now()))?;
        return Err(Error::CeremonyStopped {
            step: failed,
            done: t.steps.len(),
            transcript: out_dir.join(transcript::JSON),
            source: Box::new(e),
        });
    }
    let (transcript_sha256, head) = write_and_close(&t, ca_dir, out_dir, at(Instant::now()))?;
    Ok(Ran {
        transcript: t,
        transcript_sha256,
        head,
        warnings,
    })
}

/// The steps of a signing or CRL ceremony, each through the pipeline with the key opened
/// once; each step's expected head is the one the step before left.
fn run_steps(
    script: &Script,
    ca_dir: &Path,
    c: &Ceremony<'_>,
    t: &mut Transcript,
    warnings: &mut Vec<String>,
    at: &dyn Fn(Instant) -> OffsetDateTime,
) -> Result<()> {
    let ops = script.operations()?;
    // Each operation's outputs, and whether they are a certificate (otherwise a CRL).
    let outputs: Vec<(Vec<&file::Output>, bool)> = match &script.body {
        Body::Signing { steps, crl } => steps
            .iter()
            .map(|s| (s.outputs(), s.issues_certificate()))
            .chain(std::iter::once((vec![crl], false)))
            .collect(),
        Body::CrlReissue { crl } => vec![(vec![crl], false)],
        Body::Init { .. } => Vec::new(),
    };
    let key: OnceCell<Box<dyn KeyBackend + '_>> = OnceCell::new();
    let open = |ca: &Ca| -> Result<Box<dyn KeyBackend + '_>> {
        if key.get().is_none() {
            let _ = key.set(ca.open_backend(c.cb)?);
        }
        let k = key
            .get()
            .ok_or_else(|| Error::SelfCheck("the key was not kept open".into()))?;
        Ok(Box::new(Shared(k.as_ref())))
    };
    let mut expect = c.witness.expect.clone().or(script.expect_head.clone());
    for (i, ((name, op), (outs, certificate))) in ops.iter().zip(outputs).enumerate() {
        let step_start = Instant::now();
        let step_c = Ceremony {
            cb: c.cb,
            now: at(step_start),
            witness: Witness {
                expect: expect.clone(),
                head_file: None,
            },
            hooks: c.hooks,
            allow_network: c.allow_network,
            host: c.host.clone(),
        };
        let o = run_with(ca_dir, op.as_ref(), &step_c, &open)?;
        if t.backend.is_empty() {
            if let Some(k) = key.get() {
                t.backend = k.describe();
                t.attestation = k.attestation().map(|der| {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD.encode(der)
                });
            }
        }
        warnings.extend(o.warnings.iter().cloned());
        let mut records = Vec::new();
        for out in outs {
            let bytes = std::fs::read(&out.path).map_err(|e| Error::io(&out.path, e, ""))?;
            let artifact = match (certificate, &o.serial) {
                (true, Some(s)) => ArtifactRef::Certificate(s.to_string()),
                _ => ArtifactRef::Crl(o.crl_number.unwrap_or(0)),
            };
            records.push(OutputRecord {
                file: Hashed {
                    path: out.rel.clone(),
                    sha256: Fingerprint::of(&bytes).hex(),
                },
                artifact,
            });
        }
        t.steps.push(StepRecord {
            n: i + 1,
            op: (*name).into(),
            started: ledger::fmt_time(step_c.now),
            finished: ledger::fmt_time(at(Instant::now())),
            serial: o.serial.as_ref().map(ToString::to_string),
            crl_number: o.crl_number,
            head: o.head.hex(),
            outputs: records,
        });
        expect = Some(super::ExpectedHead::Hex(o.head));
    }
    Ok(())
}

fn write_and_close(
    t: &Transcript,
    ca_dir: &Path,
    out_dir: &Path,
    now: OffsetDateTime,
) -> Result<(Fingerprint, Fingerprint)> {
    let sha = t.write(out_dir)?;
    let head = close_transcript(t, &sha, ca_dir, now)?;
    Ok((sha, head))
}

fn close_transcript(
    t: &Transcript,
    sha: &Fingerprint,
    ca_dir: &Path,
    now: OffsetDateTime,
) -> Result<Fingerprint> {
    let last = t.last_head().ok_or_else(|| Error::Script {
        file: transcript::JSON.into(),
        field: "steps".into(),
        message: "the transcript records no step, so there is nothing to close".into(),
    })?;
    super::append_unsigned(
        ca_dir,
        Event::CeremonyClosed {
            kind: t.kind.clone(),
            ceremony_sha256: t.ceremony.sha256.clone(),
            transcript_sha256: sha.hex(),
        },
        &last,
        now,
    )
}

/// Appends `ceremony_closed` for the transcript in `out_dir`, after a run that stopped
/// between writing it and closing it. Refused unless the ledger's head is still the one its
/// last step left. Returns the new head.
pub fn close(out_dir: &Path, ca_dir: &Path, now: OffsetDateTime) -> Result<Fingerprint> {
    let (t, sha) = Transcript::read(out_dir)?;
    close_transcript(&t, &sha, ca_dir, now)
}

/// A key opened once, lent to each step of a ceremony.
struct Shared<'a>(&'a dyn KeyBackend);

impl KeyBackend for Shared<'_> {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn public_key(&self) -> &crate::algo::PublicKey {
        self.0.public_key()
    }
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, BackendError> {
        self.0.sign(msg)
    }
    fn store_certificate(&self, der: &[u8]) -> std::result::Result<(), BackendError> {
        self.0.store_certificate(der)
    }
    fn attestation(&self) -> Option<Vec<u8>> {
        self.0.attestation()
    }
    fn algorithm(&self) -> crate::algo::KeyAlgorithm {
        self.0.algorithm()
    }
    fn remembers(&self) -> bool {
        self.0.remembers()
    }
    fn read_anchor(&self) -> std::result::Result<Option<Anchor>, BackendError> {
        self.0.read_anchor()
    }
    fn write_anchor(&self, anchor: &Anchor) -> std::result::Result<(), BackendError> {
        self.0.write_anchor(anchor)
    }
}
