//! Provisioning hooks: the PKI events, and running the local commands a hooks file binds to them.
//!
//! A hooks file (YAML, strict) binds events to commands with a timeout. A hook receives the
//! event as JSON on standard input: slug, tier, serial, fingerprints and file paths, never key
//! material. `pre` hooks run before an operation and veto it by exiting non-zero (nothing
//! happens; the hook's stderr is shown). `post` hooks run once the operation's outputs are
//! durable; their failure is reported and does not undo anything.
//!
//! Hooks are local processes only: the signer gains no network code by running them. Both
//! `kiwi-signer` and `kiwictl` use this module, so the events mean the same everywhere.
//!
//! A hook gets no secrets: it starts with an empty environment plus [`BASE_ENV`] (and `LC_*`),
//! `KIWI_HOOK_EVENT`, `KIWI_HOOK_PHASE`, and the names its own `env:` list asks for, so an
//! operator's `SOPS_AGE_KEY` or any other secret in the caller's environment never reaches it.
//! A hook runs in its own process group, and its timeout kills the whole group: a grandchild
//! holding the hook's stderr open cannot stretch the timeout.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::policy::{self, PolicyError};

/// The PKI events hooks can bind to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// `kiwi-signer init` created a root.
    RootCreated,
    /// `kiwictl intermediate request` made an intermediate key and CSR.
    IntermediateRequested,
    /// `kiwi-signer sign` issued an intermediate certificate.
    IntermediateIssued,
    /// `kiwictl intermediate install` installed a certificate into a state repo.
    IntermediateInstalled,
    /// `kiwi-signer revoke` revoked an intermediate.
    Revoked,
    /// A CRL was issued (`revoke` or `crl`).
    CrlIssued,
    /// `kiwictl secrets rotate` or `updatekeys` changed secrets.
    SecretsRotated,
    /// A churning customer's intermediate was re-signed under their own root.
    Rerooted,
    /// A churning customer's PKI and state repo were handed over.
    HandedOver,
    /// `kiwictl intermediate install --replace` installed a renewed intermediate, or
    /// `kiwi-signer renew` issued one under a customer-owned root.
    IntermediateRenewed,
    /// `kiwictl provisioner add` recorded a Core tenant's step-ca provisioner.
    ProvisionerAdded,
}

impl EventKind {
    /// The event's name in hooks files and JSON.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::RootCreated => "root_created",
            EventKind::IntermediateRequested => "intermediate_requested",
            EventKind::IntermediateIssued => "intermediate_issued",
            EventKind::IntermediateInstalled => "intermediate_installed",
            EventKind::Revoked => "revoked",
            EventKind::CrlIssued => "crl_issued",
            EventKind::SecretsRotated => "secrets_rotated",
            EventKind::Rerooted => "rerooted",
            EventKind::HandedOver => "handed_over",
            EventKind::IntermediateRenewed => "intermediate_renewed",
            EventKind::ProvisionerAdded => "provisioner_added",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// When a hook runs relative to its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before: a non-zero exit vetoes the operation.
    Pre,
    /// After the outputs are durable: failures are reported only.
    Post,
}

/// What a hook is told on standard input. It holds public facts only: never key material,
/// passphrases or plaintext secrets.
#[derive(Debug, Clone, Serialize, Default)]
pub struct EventData {
    /// Customer slug, when the event concerns one customer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    /// Customer tier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Certificate serial (hex), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// SHA-256 fingerprints by role (`csr`, `certificate`, `crl`, `root`...), lowercase hex.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sha256: BTreeMap<String, String>,
    /// Files by role (`out`, `csr`, `repo`, `changed`...). Paths only, never contents.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, Vec<PathBuf>>,
    /// The ledger head after the operation (post hooks of signer events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger_head: Option<String>,
    /// Anything else worth knowing (CRL number, reason...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

/// The JSON document a hook reads on standard input.
#[derive(Debug, Clone, Serialize)]
pub struct HookInput<'a> {
    /// Format version of this document.
    pub version: u32,
    /// The event.
    pub event: EventKind,
    /// pre or post.
    pub phase: Phase,
    /// Which tool raised it (`kiwi-signer`, `kiwictl`).
    pub tool: &'a str,
    /// The event's facts.
    #[serde(flatten)]
    pub data: &'a EventData,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHooksFile {
    hooks: Vec<RawHook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHook {
    name: String,
    event: EventKind,
    phase: Phase,
    run: Vec<String>,
    timeout_secs: u64,
    #[serde(default)]
    cwd: Option<PathBuf>,
    #[serde(default)]
    env: Vec<String>,
}

/// One validated hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Name shown in messages.
    pub name: String,
    /// The event it is bound to.
    pub event: EventKind,
    /// pre or post.
    pub phase: Phase,
    /// Program and arguments (no shell).
    pub run: Vec<String>,
    /// Killed after this long (a `pre` hook that times out vetoes).
    pub timeout: Duration,
    /// Working directory (relative paths are relative to the hooks file).
    pub cwd: PathBuf,
    /// Extra environment variables passed through from the caller (besides [`BASE_ENV`]).
    pub env: Vec<String>,
}

/// A validated hooks file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    hooks: Vec<Hook>,
}

/// The longest timeout a hook may ask for.
pub const MAX_TIMEOUT_SECS: u64 = 3600;

/// The caller's variables every hook gets (with every `LC_*`); anything else only when the
/// hook names it under `env:`.
pub const BASE_ENV: [&str; 5] = ["PATH", "HOME", "LANG", "TZ", "TMPDIR"];

/// Prefixes of variables no hook may ask for: age identities and where they are.
const SECRET_ENV_PREFIXES: [&str; 1] = ["SOPS_AGE_"];

/// Why `name` cannot be listed under a hook's `env:`, if it cannot.
fn env_name_problem(name: &str) -> Option<String> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Some(format!(
            "`{name}` is not an environment variable name (letters, digits and `_`)"
        ));
    }
    if let Some(p) = SECRET_ENV_PREFIXES.iter().find(|p| name.starts_with(**p)) {
        return Some(format!(
            "`{name}` may hold a secret key ({p}*): hooks never get key material; remove it"
        ));
    }
    if name.starts_with("KIWI_HOOK_") {
        return Some(format!(
            "`{name}` is set by the hook runner itself; remove it"
        ));
    }
    None
}

impl Phase {
    /// `pre` or `post`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Pre => "pre",
            Phase::Post => "post",
        }
    }
}

/// What a hook run went wrong with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// The hooks file is invalid.
    #[error(transparent)]
    File(#[from] PolicyError),
    /// A `pre` hook exited non-zero or timed out: the operation did not happen.
    #[error(
        "the pre hook `{name}` vetoed the {event} operation ({status}); nothing was done.{}",
        stderr_suffix(.stderr)
    )]
    Vetoed {
        /// Hook name.
        name: String,
        /// Event.
        event: EventKind,
        /// Exit status or "timed out after N s".
        status: String,
        /// The hook's standard error (truncated).
        stderr: String,
    },
    /// A hook's program could not be started.
    #[error("the {} hook `{name}` could not start `{program}`: {error}; fix `run` in the hooks file", phase.name())]
    Spawn {
        /// Hook name.
        name: String,
        /// pre or post.
        phase: Phase,
        /// The program.
        program: String,
        /// OS error.
        error: std::io::Error,
    },
}

fn stderr_suffix(s: &str) -> String {
    if s.trim().is_empty() {
        String::new()
    } else {
        format!(" The hook said:\n{}", s.trim_end())
    }
}

/// A `post` hook that failed: reported, the operation stands.
#[derive(Debug, Clone)]
pub struct PostFailure {
    /// Hook name.
    pub name: String,
    /// Exit status, timeout or start failure.
    pub status: String,
    /// The hook's standard error (truncated).
    pub stderr: String,
}

impl std::fmt::Display for PostFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "post hook `{}` failed ({}); the operation itself completed and stands{}",
            self.name,
            self.status,
            stderr_suffix(&self.stderr)
        )
    }
}

impl Hooks {
    /// No hooks.
    pub fn none() -> Self {
        Hooks::default()
    }

    /// Reads and validates a hooks file.
    pub fn load(path: &Path) -> Result<Self, HookError> {
        let file = path.display().to_string();
        let err = |field: &str, message: String| PolicyError {
            file: file.clone(),
            field: field.to_string(),
            message,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(".", format!("cannot read the hooks file ({e})")))?;
        let base = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&file, &text, &base)
    }

    /// Validates hooks file text; relative `cwd`s resolve against `base`.
    pub fn parse(file: &str, text: &str, base: &Path) -> Result<Self, HookError> {
        let raw: RawHooksFile = policy::parse_strict(file, text)?;
        let err = |field: String, message: &str| PolicyError {
            file: file.to_string(),
            field,
            message: message.to_string(),
        };
        let mut hooks = Vec::new();
        for (i, h) in raw.hooks.into_iter().enumerate() {
            if h.name.trim().is_empty() {
                return Err(err(format!("hooks[{i}].name"), "must not be empty").into());
            }
            if h.run.first().is_none_or(|p| p.trim().is_empty()) {
                return Err(err(
                    format!("hooks[{i}].run"),
                    "must name a program: [program, arg...]",
                )
                .into());
            }
            if h.timeout_secs == 0 || h.timeout_secs > MAX_TIMEOUT_SECS {
                return Err(err(
                    format!("hooks[{i}].timeout_secs"),
                    &format!("must be 1 to {MAX_TIMEOUT_SECS}"),
                )
                .into());
            }
            for (j, name) in h.env.iter().enumerate() {
                if let Some(problem) = env_name_problem(name) {
                    return Err(err(format!("hooks[{i}].env[{j}]"), &problem).into());
                }
            }
            let cwd = match h.cwd {
                Some(c) if c.is_absolute() => c,
                Some(c) => base.join(c),
                None => base.to_path_buf(),
            };
            hooks.push(Hook {
                name: h.name,
                event: h.event,
                phase: h.phase,
                run: h.run,
                timeout: Duration::from_secs(h.timeout_secs),
                cwd,
                env: h.env,
            });
        }
        Ok(Hooks { hooks })
    }

    /// The hooks bound to `event` in `phase`, in file order.
    pub fn bound(&self, event: EventKind, phase: Phase) -> impl Iterator<Item = &Hook> {
        self.hooks
            .iter()
            .filter(move |h| h.event == event && h.phase == phase)
    }

    /// Runs the `pre` hooks for `event`: the first that fails vetoes (the rest do not run).
    pub fn run_pre(&self, tool: &str, event: EventKind, data: &EventData) -> Result<(), HookError> {
        for h in self.bound(event, Phase::Pre) {
            match run_one(h, tool, Phase::Pre, data) {
                Ok(()) => {}
                Err(RunFailure::Spawn(source)) => {
                    return Err(HookError::Spawn {
                        name: h.name.clone(),
                        phase: Phase::Pre,
                        program: h.run[0].clone(),
                        error: source,
                    });
                }
                Err(RunFailure::Status { status, stderr }) => {
                    return Err(HookError::Vetoed {
                        name: h.name.clone(),
                        event,
                        status,
                        stderr,
                    });
                }
            }
        }
        Ok(())
    }

    /// Runs every `post` hook for `event` and returns the failures (all hooks run).
    pub fn run_post(&self, tool: &str, event: EventKind, data: &EventData) -> Vec<PostFailure> {
        let mut failures = Vec::new();
        for h in self.bound(event, Phase::Post) {
            let (status, stderr) = match run_one(h, tool, Phase::Post, data) {
                Ok(()) => continue,
                Err(RunFailure::Spawn(e)) => (
                    format!("could not start `{}`: {e}", h.run[0]),
                    String::new(),
                ),
                Err(RunFailure::Status { status, stderr }) => (status, stderr),
            };
            failures.push(PostFailure {
                name: h.name.clone(),
                status,
                stderr,
            });
        }
        failures
    }
}

enum RunFailure {
    Spawn(std::io::Error),
    Status { status: String, stderr: String },
}

/// Most of a hook's stderr that is shown.
const STDERR_LIMIT: usize = 4096;

/// The environment a hook starts with, taken from the caller's `parent` environment: the
/// [`BASE_ENV`] names, every `LC_*`, and the names the hook lists under `env:`.
fn hook_env(
    h: &Hook,
    parent: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    parent
        .into_iter()
        .filter(|(k, _)| {
            k.to_str().is_some_and(|k| {
                BASE_ENV.contains(&k) || k.starts_with("LC_") || h.env.iter().any(|e| e == k)
            })
        })
        .collect()
}

/// Kills every process in the hook's group (the hook leads it); an already empty group is fine.
fn kill_group(child: &std::process::Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

fn run_one(h: &Hook, tool: &str, phase: Phase, data: &EventData) -> Result<(), RunFailure> {
    let input = HookInput {
        version: 1,
        event: h.event,
        phase,
        tool,
        data,
    };
    // Serializing plain strings and maps cannot fail.
    let json = serde_json::to_vec(&input).unwrap_or_else(|_| unreachable!("event JSON"));
    let mut child = Command::new(&h.run[0])
        .args(&h.run[1..])
        .current_dir(&h.cwd)
        .env_clear()
        .envs(hook_env(h, std::env::vars_os()))
        .env("KIWI_HOOK_EVENT", h.event.name())
        .env("KIWI_HOOK_PHASE", phase.name())
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RunFailure::Spawn)?;
    let deadline = Instant::now() + h.timeout;
    if let Some(mut stdin) = child.stdin.take() {
        // Written from its own thread: an event listing many files can exceed the pipe buffer,
        // and a hook that never reads it must still be stopped at its deadline. A hook that does
        // not read its input closes the pipe early: that is its choice.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&json);
        });
    }
    let mut stderr_pipe = child.stderr.take();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(p) = stderr_pipe.as_mut() {
            let _ = p.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                kill_group(&child);
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                kill_group(&child);
                return Err(RunFailure::Spawn(e));
            }
        }
    };
    // The hook has exited, but what it left behind may still hold stderr open: wait for the
    // end of stderr until the deadline, then kill the rest of the group. A process that left
    // the group (setsid) and keeps the pipe is abandoned with the reader thread.
    let remaining = deadline.saturating_duration_since(Instant::now());
    let (buf, timed_out) = match rx.recv_timeout(remaining) {
        Ok(buf) => (buf, status.is_none()),
        Err(_) => {
            kill_group(&child);
            (
                rx.recv_timeout(Duration::from_millis(500))
                    .unwrap_or_default(),
                true,
            )
        }
    };
    let mut stderr = String::from_utf8_lossy(&buf).into_owned();
    if stderr.len() > STDERR_LIMIT {
        let mut cut = STDERR_LIMIT;
        while !stderr.is_char_boundary(cut) {
            cut -= 1;
        }
        stderr.truncate(cut);
        stderr.push_str("\n[...]");
    }
    match status {
        Some(s) if !timed_out && s.success() => Ok(()),
        Some(s) if !timed_out => Err(RunFailure::Status {
            status: s.to_string(),
            stderr,
        }),
        _ => Err(RunFailure::Status {
            status: format!("timed out after {} s", h.timeout.as_secs()),
            stderr,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Hooks, HookError> {
        Hooks::parse("hooks.yaml", text, Path::new("/tmp"))
    }

    fn sh(name: &str, event: &str, phase: &str, script: &str) -> String {
        format!(
            "  - name: {name}\n    event: {event}\n    phase: {phase}\n    timeout_secs: 5\n    run: [sh, -c, {script:?}]\n"
        )
    }

    #[test]
    fn unknown_keys_and_events_name_their_path() {
        let err = parse("hooks:\n  - name: x\n    event: revoked\n    phase: pre\n    run: [true]\n    timeout_secs: 1\n    shell: yes\n")
            .expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.contains("hooks.yaml: hooks[0]"), "{msg}");
        assert!(msg.contains("unknown field `shell`"), "{msg}");
        let err = parse("hooks:\n  - name: x\n    event: exploded\n    phase: pre\n    run: [true]\n    timeout_secs: 1\n")
            .expect_err("unknown event");
        assert!(err.to_string().contains("hooks[0].event"), "{err}");
        let err = parse("hooks:\n  - name: x\n    event: revoked\n    phase: pre\n    run: []\n    timeout_secs: 1\n")
            .expect_err("empty run");
        assert!(err.to_string().contains("hooks[0].run"), "{err}");
        let err = parse("hooks:\n  - name: x\n    event: revoked\n    phase: pre\n    run: [true]\n    timeout_secs: 0\n")
            .expect_err("zero timeout");
        assert!(err.to_string().contains("timeout_secs"), "{err}");
    }

    #[test]
    fn pre_vetoes_with_stderr_and_post_failures_are_collected() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let seen = tmp.path().join("seen.json");
        let text = format!(
            "hooks:\n{}{}{}",
            sh(
                "record",
                "revoked",
                "pre",
                &format!("cat > {}", seen.display())
            ),
            sh(
                "veto",
                "revoked",
                "pre",
                "echo 'change freeze until Monday' >&2; exit 3"
            ),
            sh("late", "crl_issued", "post", "exit 1"),
        );
        let hooks = parse(&text).expect("valid");
        let mut data = EventData {
            slug: Some("acme".into()),
            serial: Some("0a".into()),
            ..EventData::default()
        };
        data.files
            .insert("out".into(), vec![PathBuf::from("/x/crl.pem")]);
        let err = hooks
            .run_pre("kiwi-signer", EventKind::Revoked, &data)
            .expect_err("vetoed");
        let msg = err.to_string();
        assert!(msg.contains("`veto` vetoed the revoked"), "{msg}");
        assert!(msg.contains("change freeze until Monday"), "{msg}");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&seen).expect("hook wrote its input"))
                .expect("JSON");
        assert_eq!(json["event"], "revoked");
        assert_eq!(json["phase"], "pre");
        assert_eq!(json["slug"], "acme");
        assert_eq!(json["files"]["out"][0], "/x/crl.pem");
        let failures = hooks.run_post("kiwi-signer", EventKind::CrlIssued, &data);
        assert_eq!(failures.len(), 1);
        assert!(failures[0].to_string().contains("stands"));
        assert!(hooks
            .run_post("kiwi-signer", EventKind::Revoked, &data)
            .is_empty());
    }

    #[test]
    fn a_hung_hook_is_killed_at_its_timeout() {
        let text = "hooks:\n  - name: slow\n    event: crl_issued\n    phase: pre\n    timeout_secs: 1\n    run: [sleep, '30']\n";
        let hooks = parse(text).expect("valid");
        let start = Instant::now();
        let err = hooks
            .run_pre("kiwi-signer", EventKind::CrlIssued, &EventData::default())
            .expect_err("timeout vetoes");
        assert!(err.to_string().contains("timed out after 1 s"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_timeout_kills_the_whole_process_group() {
        // The shell is killed at 1 s; before, its `sleep` kept stderr open for 8 s more.
        let text = "hooks:\n  - name: slow\n    event: crl_issued\n    phase: pre\n    timeout_secs: 1\n    run: [sh, -c, 'sleep 8; exit 0']\n";
        let hooks = parse(text).expect("valid");
        let start = Instant::now();
        let err = hooks
            .run_pre("kiwi-signer", EventKind::CrlIssued, &EventData::default())
            .expect_err("timeout vetoes");
        assert!(err.to_string().contains("timed out after 1 s"), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        // A hook that exits at once but leaves a child holding stderr is stopped at the deadline.
        let text = "hooks:\n  - name: leaver\n    event: crl_issued\n    phase: pre\n    timeout_secs: 1\n    run: [sh, -c, 'sleep 8 & exit 0']\n";
        let hooks = parse(text).expect("valid");
        let start = Instant::now();
        let err = hooks
            .run_pre("kiwi-signer", EventKind::CrlIssued, &EventData::default())
            .expect_err("a leftover child holding stderr past the deadline vetoes");
        assert!(err.to_string().contains("timed out after 1 s"), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_hook_that_never_reads_a_large_event_is_still_stopped_at_its_deadline() {
        let text = "hooks:\n  - name: deaf\n    event: secrets_rotated\n    phase: pre\n    timeout_secs: 1\n    run: [sleep, '30']\n";
        let hooks = parse(text).expect("valid");
        let mut data = EventData::default();
        // About 1 MB of paths: far more than a pipe holds.
        data.files.insert(
            "changed".into(),
            (0..20_000)
                .map(|i| PathBuf::from(format!("/repos/cust-{i}/secrets/app.sops.yaml")))
                .collect(),
        );
        let start = Instant::now();
        let err = hooks
            .run_pre("kiwictl", EventKind::SecretsRotated, &data)
            .expect_err("timeout vetoes");
        assert!(err.to_string().contains("timed out after 1 s"), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn hooks_get_the_allow_list_and_their_own_names_only() {
        let text = "hooks:\n  - name: dump\n    event: crl_issued\n    phase: post\n    timeout_secs: 1\n    run: [env]\n    env: [DEPLOY_TARGET]\n";
        let hooks = parse(text).expect("valid");
        let h = hooks
            .bound(EventKind::CrlIssued, Phase::Post)
            .next()
            .expect("hook");
        let parent = [
            ("PATH", "/usr/bin"),
            ("HOME", "/root"),
            ("LC_TIME", "C"),
            ("TZ", "UTC"),
            ("DEPLOY_TARGET", "usb"),
            ("SOPS_AGE_KEY", "AGE-SECRET-KEY-1QQQ"),
            ("SOPS_AGE_KEY_FILE", "/root/key.txt"),
            ("MY_KEY", "AGE-SECRET-KEY-1QQQ"),
            ("DEPLOY_TARGET_X", "no"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let mut got: Vec<String> = hook_env(h, parent)
            .into_iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        got.sort();
        assert_eq!(got, ["DEPLOY_TARGET", "HOME", "LC_TIME", "PATH", "TZ"]);
    }

    #[test]
    fn env_lists_name_variables_and_never_age_keys() {
        for (name, why) in [
            ("SOPS_AGE_KEY", "secret"),
            ("SOPS_AGE_KEY_FILE", "secret"),
            ("A=B", "not an environment variable name"),
            ("", "not an environment variable name"),
            ("KIWI_HOOK_EVENT", "set by the hook runner"),
        ] {
            let text = format!("hooks:\n  - name: x\n    event: revoked\n    phase: pre\n    run: [env]\n    timeout_secs: 1\n    env: [ok_name, {name:?}]\n");
            let msg = parse(&text).expect_err(name).to_string();
            assert!(
                msg.contains("hooks.yaml: hooks[0].env[1]") && msg.contains(why),
                "{msg}"
            );
        }
        let err = parse("hooks:\n  - name: x\n    event: revoked\n    phase: pre\n    run: [env]\n    timeout_secs: 1\n    env: PATH\n")
            .expect_err("env is a list");
        assert!(err.to_string().contains("hooks[0].env"), "{err}");
    }
}

/// Hooks shipped with the signer, for the ceremony table: they act on the event JSON a hook
/// receives and stay local (files and the terminal only).
pub mod builtin {
    use std::path::{Path, PathBuf};

    use serde_json::Value;

    use crate::fsutil::{self, Mode};

    fn event(json: &[u8]) -> Result<Value, String> {
        let v: Value = serde_json::from_slice(json)
            .map_err(|e| format!("the event on standard input is not hook JSON ({e}); bind this hook in a hooks file"))?;
        if v.get("event").and_then(Value::as_str).is_none() {
            return Err("the event JSON has no `event` field".into());
        }
        Ok(v)
    }

    /// Copies every file the event says was written (certificates, CRLs; never key files)
    /// into `dest`, each created new; returns the copies. A file that exists in `dest` is an
    /// error: the transfer medium is never silently overwritten.
    pub fn copy_to(json: &[u8], dest: &Path) -> Result<Vec<PathBuf>, String> {
        let v = event(json)?;
        if !dest.is_dir() {
            return Err(format!(
                "{} is not a directory; mount the transfer medium",
                dest.display()
            ));
        }
        let written: Vec<PathBuf> = v["files"]["written"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(PathBuf::from)
            .collect();
        let mut copies = Vec::new();
        for src in written {
            let name = src
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // The CA's own files (key, ledger, config) stay on the laptop.
            if name.ends_with(".age")
                || name == "ledger.jsonl"
                || name == "ca.toml"
                || name.is_empty()
            {
                continue;
            }
            let bytes = std::fs::read(&src).map_err(|e| format!("{}: {e}", src.display()))?;
            let to = dest.join(&name);
            fsutil::write_new(&to, &bytes, Mode::Public).map_err(|e| e.to_string())?;
            copies.push(to);
        }
        Ok(copies)
    }

    /// A label for the artifact's envelope: event, customer, serial, fingerprint and ledger
    /// head, in hex and PGP words so it can be read aloud.
    pub fn label(json: &[u8]) -> Result<String, String> {
        let v = event(json)?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        let mut out = format!(
            "KiwiStack offline root — {}\n  customer: {} ({})\n  serial:   {}\n",
            s("event").replace('_', " "),
            s("slug"),
            s("tier"),
            s("serial")
        );
        if let Some(map) = v.get("sha256").and_then(Value::as_object) {
            for (role, hex) in map {
                let hex = hex.as_str().unwrap_or_default();
                let words = crate::words::Fingerprint::from_hex(hex)
                    .map(|f| f.for_reading())
                    .unwrap_or_else(|| hex.to_string());
                out.push_str(&format!("  sha256 {role}:\n    {words}\n"));
            }
        }
        if let Some(h) = v.get("ledger_head").and_then(Value::as_str) {
            out.push_str(&format!("  ledger head: {h}\n"));
        }
        Ok(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn copy_to_copies_outputs_only_and_never_overwrites() {
            let tmp = tempfile::tempdir().expect("tempdir");
            let cert = tmp.path().join("acme.crt");
            let key = tmp.path().join("root.key.age");
            std::fs::write(&cert, "CERT").expect("write");
            std::fs::write(&key, "KEY").expect("write");
            let dest = tmp.path().join("usb");
            std::fs::create_dir(&dest).expect("mkdir");
            let json = serde_json::json!({"event": "intermediate_issued", "slug": "acme",
                "files": {"written": [cert, key]}})
            .to_string();
            let copies = copy_to(json.as_bytes(), &dest).expect("copy");
            assert_eq!(copies, vec![dest.join("acme.crt")]);
            assert!(!dest.join("root.key.age").exists());
            assert!(
                copy_to(json.as_bytes(), &dest).is_err(),
                "overwrote the transfer medium"
            );
            assert!(copy_to(b"nope", &dest).is_err());
            let label = label(json.as_bytes()).expect("label");
            assert!(
                label.contains("intermediate issued") && label.contains("acme"),
                "{label}"
            );
        }
    }
}
