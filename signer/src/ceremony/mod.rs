//! The one pipeline every operation that changes a CA goes through.
//!
//! An operation ([`sign::SignRequest`], [`revoke::Revoke`], [`crl::Crl`], [`reroot::Reroot`],
//! [`handover::Handover`], [`renew::Renew`], and the operations to come) only supplies a [`Plan`]: what to record, what to sign, where each artifact goes, which
//! hook events it raises. [`run`] does the rest, always in this order:
//!
//! 1. take an `flock` on the CA directory before reading anything (the kernel drops it when the
//!    process dies, so Ctrl-C or SIGKILL never leaves a stale lock);
//! 2. read the ledger and check its hash chain against root.pem;
//! 3. anti-rollback: the ledger's head must be what the witness recorded (`--expect-head`,
//!    `--head-file`);
//! 4. the clock must not be earlier than the newest entry;
//! 5. plan: build every artifact with a throwaway key and lint it, and check every output path
//!    can be created; then the air-gap preflight ([`crate::preflight::enforce`]: with a
//!    hardware backend a connected machine is refused unless `--allow-network` was given; the
//!    failed checks are shown and recorded in every entry the run appends); then the pre
//!    hooks (which may veto);
//! 6. confirm;
//! 7. open the backend, check its key is root.pem's, and check the ledger against what the
//!    device remembers ([`Anchor`]: its head must be in the ledger, its CRL number not above);
//! 8. one signature per artifact, each verified against root.pem and re-linted;
//! 9. append the ledger entries durably (the commit point);
//! 10. write the outputs from what the entries hold, update the device's anchor and the head file;
//! 11. post hooks.
//!
//! Crashes: nothing before step 9 changes a file, and an append a crash cuts short is ignored
//! (see [`crate::ledger`] for each crash point), so a crash (SIGKILL, power loss) before the
//! append completes leaves the CA as it was. After it,
//! the entry is durable and holds the artifact; an output missing after a crash is written again
//! by `kiwi-signer export` (outputs appear whole or not at all, see [`crate::fsutil`]). A device
//! anchor behind the ledger after a crash is accepted and brought up to date by the next run.
//!
//! [`script`] runs the operations of a ceremony file one after the other through [`run_with`],
//! with the key opened once, and binds the ceremony's transcript to the ledger.
//!
//! [`init`] creates a CA, so it has no ledger to read or lock to take; it shares the steps
//! that apply (plan, hooks, one checked signature, the head file) and renames a staged
//! directory into place as its commit point.

mod carry;
pub mod crl;
pub mod handover;
pub mod head;
pub mod init;
pub mod renew;
pub mod reroot;
pub mod revoke;
pub mod script;
pub mod sign;

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::backend::{check_matches, Anchor, BackendKind, KeyBackend};
use crate::ca::Ca;
use crate::callbacks::Callbacks;
use crate::error::{Error, Result};
use crate::fsutil::{self, DirLock, Mode};
use crate::hooks::{EventData, EventKind, Hooks};
use crate::ledger::Event;
use crate::pipeline::{self, Build, Kind, Lint};
use crate::preflight::{self, Host, PreflightRecord};
use crate::words::Fingerprint;
use crate::x509::Serial;

pub use head::{ExpectedHead, Witness};
pub use init::init;

/// The tool name hooks are told.
pub const TOOL: &str = "kiwi-signer";

/// An operation that changes the CA: it plans, the pipeline does the rest.
pub trait Operation {
    /// The hook events it raises, in order (pre hooks before confirming, post hooks at the end).
    fn events(&self) -> &'static [EventKind];
    /// The public facts hooks are told before the operation (the pipeline adds the results).
    fn hook_data(&self) -> EventData;
    /// Everything the operation will do, from the verified CA at `now` (whole seconds).
    /// Nothing is asked for and nothing is written while planning.
    fn plan<'a>(&'a self, ca: &'a Ca, now: OffsetDateTime) -> Result<Plan<'a>>;
}

/// What an operation will do: a summary to confirm and the steps, in ledger order.
pub struct Plan<'a> {
    /// Shown to the operator before anything is signed.
    pub summary: String,
    /// Ledger events and artifacts, in the order they are recorded.
    pub steps: Vec<Step<'a>>,
    /// The serial the operation is about (issued or revoked), for the outcome and hooks.
    pub serial: Option<Serial>,
}

impl<'a> Plan<'a> {
    /// A plan that signs one certificate, records it with `record` and writes it to `out`.
    pub fn certificate(
        summary: String,
        serial: Serial,
        out: &Path,
        build: impl Fn(&crate::backend::RcgenSigner<'_>) -> std::result::Result<Vec<u8>, rcgen::Error>
            + 'a,
        lint: impl Fn(&[u8]) -> Vec<String> + 'a,
        record: impl FnOnce(&[u8]) -> Event + 'a,
    ) -> Self {
        Plan {
            summary,
            steps: vec![Step::Sign(Artifact {
                kind: Kind::Certificate,
                role: "certificate",
                build: Box::new(build),
                lint: Box::new(lint),
                record: Box::new(record),
                out: Some(out.to_path_buf()),
            })],
            serial: Some(serial),
        }
    }
}

/// One step of a plan.
pub enum Step<'a> {
    /// A ledger event that records no artifact (a revocation).
    Record(Event),
    /// An artifact the root signs, and its ledger event.
    Sign(Artifact<'a>),
}

/// An artifact to build, lint, sign once, record and (optionally) write.
pub struct Artifact<'a> {
    /// Certificate or CRL.
    pub kind: Kind,
    /// Its role for hooks (`certificate`, `crl`).
    pub role: &'static str,
    /// Builds it with the signer given (the throwaway key, then the root).
    pub build: Box<Build<'a>>,
    /// Lints it (empty means clean).
    pub lint: Box<Lint<'a>>,
    /// The ledger event recording the signed DER.
    pub record: Box<Record<'a>>,
    /// Where it is written, if anywhere.
    pub out: Option<PathBuf>,
}

/// Type of the closure that makes an artifact's ledger event from its signed DER.
pub type Record<'a> = dyn FnOnce(&[u8]) -> Event + 'a;

/// Everything one run needs from outside: prompts, the time, the witness's head, hooks, and
/// whether the operator accepts a connected machine.
pub struct Ceremony<'a> {
    /// Prompts (confirmation, passphrase or PIN).
    pub cb: &'a dyn Callbacks,
    /// The time the operation happens at.
    pub now: OffsetDateTime,
    /// `--expect-head` and `--head-file`.
    pub witness: Witness,
    /// Hooks bound to the operation's events.
    pub hooks: Option<&'a Hooks>,
    /// `--allow-network`: a hardware root key may be used although the air-gap preflight
    /// failed (the failed checks are recorded in the ledger).
    pub allow_network: bool,
    /// Where the air-gap preflight reads the machine's state (`/`; a fixture in tests).
    pub host: Host,
}

impl<'a> Ceremony<'a> {
    /// A run with no witness head, no hooks and no `--allow-network`, on this machine.
    pub fn new(cb: &'a dyn Callbacks, now: OffsetDateTime) -> Self {
        Ceremony {
            cb,
            now,
            witness: Witness::default(),
            hooks: None,
            allow_network: false,
            host: Host::default(),
        }
    }

    /// The air-gap preflight before the root key is opened (`hardware`: any backend but the
    /// software one, which only warns):
    /// refuses a connected machine ([`Error::NotAirGapped`]) unless the run allows it, and
    /// otherwise shows the failed checks. The record is for the ledger entries.
    pub(crate) fn preflight(&self, hardware: bool) -> Result<PreflightRecord> {
        let record = preflight::enforce_on(&self.host, hardware, self.allow_network)?;
        if let Some(w) = record.warning() {
            self.cb.notice(&format!("warning: {w}"));
        }
        Ok(record)
    }
}

/// What an operation did, for the CLI to print.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Files written.
    pub written: Vec<PathBuf>,
    /// Serial of what was issued or revoked.
    pub serial: Option<Serial>,
    /// CRL number, when a CRL was issued.
    pub crl_number: Option<u64>,
    /// The ledger's new head.
    pub head: Fingerprint,
    /// Things that went wrong after the operation was recorded (a post hook, the device anchor,
    /// the head file): reported, nothing undone.
    pub warnings: Vec<String>,
}

/// Runs `op` on the CA in `dir`.
pub fn run(dir: &Path, op: &dyn Operation, c: &Ceremony<'_>) -> Result<Outcome> {
    run_with(dir, op, c, &|ca: &Ca| ca.open_backend(c.cb))
}

/// Opens the root key backend for a CA.
pub type Opener<'o, 'cb> = dyn Fn(&Ca) -> Result<Box<dyn KeyBackend + 'cb>> + 'o;

/// [`run`], with the backend opened by `open` instead of from `ca.toml`: for a sequence of
/// operations that opens the key once (a ceremony script, a benchmark) and for test doubles.
/// The backend's key is still checked against root.pem, and every other step is the same.
pub fn run_with<'cb>(
    dir: &Path,
    op: &dyn Operation,
    c: &Ceremony<'cb>,
    open: &Opener<'_, 'cb>,
) -> Result<Outcome> {
    let _lock = DirLock::acquire(dir)?;
    let ca = Ca::open(dir)?;
    c.witness.check(&ca.state().head)?;
    ca.check_clock(c.now)?;
    let now = c.now.replace_nanosecond(0).unwrap_or(c.now);
    let (plan, dry) = check(&ca, op, now)?;
    let air_gap = c.preflight(ca.config().backend.kind() != BackendKind::Soft)?;
    let mut data = op.hook_data();
    if let Some(hooks) = c.hooks {
        for event in op.events() {
            hooks.run_pre(TOOL, *event, &data)?;
        }
    }
    if !c.cb.confirm(&plan.summary)? {
        return Err(Error::NotConfirmed);
    }

    let backend = open(&ca)?;
    check_matches(backend.as_ref(), ca.root_key())?;
    check_anchor(&ca, backend.as_ref())?;
    let mut events = Vec::new();
    let mut outputs = Vec::new();
    let mut dry = dry.iter();
    for step in plan.steps {
        match step {
            Step::Record(e) => events.push(e),
            Step::Sign(a) => {
                let checked = dry
                    .next()
                    .ok_or_else(|| Error::SelfCheck("an artifact was not linted".into()))?;
                let der = pipeline::sign_real(
                    checked,
                    backend.as_ref(),
                    ca.root_key(),
                    &a.build,
                    &a.lint,
                )?;
                events.push((a.record)(&der));
                if let Some(out) = a.out {
                    outputs.push((events.len() - 1, out, a.kind, a.role));
                }
            }
        }
    }
    let crl_number = events.iter().rev().find_map(|e| match e {
        Event::CrlIssued { crl_number, .. } => Some(*crl_number),
        _ => None,
    });
    let head = ca.ledger().append(events.clone(), now, Some(&air_gap))?;

    // Recorded: from here on nothing is undone, and the outputs come from the entries.
    let mut outcome = Outcome {
        written: Vec::new(),
        serial: plan.serial,
        crl_number,
        head,
        warnings: Vec::new(),
    };
    for (i, out, kind, role) in outputs {
        let der = events[i]
            .artifact_der()
            .ok_or_else(|| Error::SelfCheck("a ledger entry holds no artifact to write".into()))?;
        let bytes = pipeline::encode(&out, kind, &der);
        if let Err(e) = fsutil::write_new(&out, &bytes, Mode::Public) {
            return Err(Error::NotWritten {
                path: out,
                detail: e.to_string(),
                head: head.hex(),
                export: export_args(&events[i]),
            });
        }
        data.sha256
            .insert(role.into(), Fingerprint::of(&bytes).hex());
        outcome.written.push(out);
    }
    let highest_crl = crl_number
        .or(ca.state().last_crl.as_ref().map(|l| l.number))
        .unwrap_or(0);
    outcome
        .warnings
        .extend(finish(backend.as_ref(), head, highest_crl, c));
    if let Some(hooks) = c.hooks {
        add_results(&mut data, &outcome);
        for event in op.events() {
            for f in hooks.run_post(TOOL, *event, &data) {
                outcome.warnings.push(f.to_string());
            }
        }
    }
    Ok(outcome)
}

/// Step 5 without the key: `op`'s plan, each artifact built with a throwaway key and linted,
/// each output path checked creatable. `ceremony plan` runs this for every step of a script.
pub(crate) fn check<'a>(
    ca: &'a Ca,
    op: &'a dyn Operation,
    now: OffsetDateTime,
) -> Result<(Plan<'a>, Vec<pipeline::DryRun>)> {
    let plan = op.plan(ca, now)?;
    let mut dry = Vec::new();
    for step in &plan.steps {
        if let Step::Sign(a) = step {
            dry.push(pipeline::dry_run(
                a.kind,
                ca.root_key().algorithm(),
                &a.build,
                &a.lint,
            )?);
            if let Some(out) = &a.out {
                fsutil::check_creatable(out)?;
            }
        }
    }
    Ok((plan, dry))
}

/// Appends `event`, which records no signature, to the ledger of the CA in `dir`: under the
/// lock, after checking the chain, that the head is still `head` (nothing came between) and
/// the clock. The key is not needed; a device's anchor then trails the ledger by this entry,
/// which [`check_anchor`] accepts. Durable when it returns (the ledger's own append, see
/// [`ledger::Ledger::append`]).
pub(crate) fn append_unsigned(
    dir: &Path,
    event: Event,
    head: &Fingerprint,
    now: OffsetDateTime,
) -> Result<Fingerprint> {
    let _lock = DirLock::acquire(dir)?;
    let ca = Ca::open(dir)?;
    ExpectedHead::Hex(*head).check(&ca.state().head)?;
    ca.check_clock(now)?;
    let now = now.replace_nanosecond(0).unwrap_or(now);
    ca.ledger().append(vec![event], now, None)
}

/// Refuses a ledger the device has seen ahead of: one without the device's head, or with a
/// lower highest CRL number. A ledger ahead of the device is accepted.
fn check_anchor(ca: &Ca, backend: &dyn KeyBackend) -> Result<()> {
    let Some(anchor) = backend.read_anchor()? else {
        return Ok(());
    };
    let ledger_head = ca.state().head;
    if !ca.ledger().contains_head(&anchor.head) {
        return Err(Error::LedgerBehindDevice {
            device: backend.describe(),
            device_head: format!(
                "{} ({})",
                anchor.head.hex(),
                head::first_words(&anchor.head)
            ),
            ledger_head: format!(
                "{} ({})",
                ledger_head.hex(),
                head::first_words(&ledger_head)
            ),
        });
    }
    let ledger_number = ca.state().last_crl.as_ref().map_or(0, |c| c.number);
    if ledger_number < anchor.crl_number {
        return Err(Error::CrlNumberBehindDevice {
            device: backend.describe(),
            device_number: anchor.crl_number,
            ledger_number,
        });
    }
    Ok(())
}

/// After the entry is durable: the device's anchor and the witness's head file. Failures are
/// warnings, since the operation is recorded and a device behind the ledger is accepted.
fn finish(
    backend: &dyn KeyBackend,
    head: Fingerprint,
    crl_number: u64,
    c: &Ceremony<'_>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if backend.remembers() {
        if let Err(e) = backend.write_anchor(&Anchor { head, crl_number }) {
            warnings.push(format!(
                "the new ledger head could not be stored on the device ({e}); the next command \
                 stores it"
            ));
        }
    }
    if let Some(path) = &c.witness.head_file {
        if let Err(e) = head::write_head_file(path, &head) {
            warnings.push(format!(
                "the new head could not be written to --head-file ({e}); the witness writes it \
                 down by hand: {}",
                head.hex()
            ));
        }
    }
    warnings
}

/// Adds what the operation did to the hook facts.
pub(crate) fn add_results(data: &mut EventData, o: &Outcome) {
    if let Some(s) = &o.serial {
        data.serial = Some(s.to_string());
    }
    if let Some(n) = o.crl_number {
        data.details.insert("crl_number".into(), n.to_string());
    }
    data.ledger_head = Some(o.head.hex());
    for w in &o.written {
        add_file(data, "written", w);
    }
}

/// Adds `path` (absolute) to the hook facts under `role`.
pub(crate) fn add_file(data: &mut EventData, role: &str, path: &Path) {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    data.files.entry(role.into()).or_default().push(abs);
}

/// The `export` arguments that write `event`'s artifact again.
fn export_args(event: &Event) -> String {
    match event {
        Event::CrlIssued { crl_number, .. } => format!("--crl-number {crl_number}"),
        Event::RootCreated { serial, .. }
        | Event::IntermediateIssued { serial, .. }
        | Event::Rerooted { serial, .. }
        | Event::Renewed { serial, .. } => {
            format!("--serial {serial}")
        }
        Event::Revoked { .. } | Event::CeremonyClosed { .. } | Event::HandedOver { .. } => {
            String::new()
        }
    }
}

#[cfg(test)]
mod tests;
