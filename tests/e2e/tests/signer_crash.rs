//! Crash at every write: `sign`, `revoke` and `crl` killed (SIGKILL) at the 1st, 2nd, ... call
//! of every file-changing system call, until a run completes.
//!
//! The kill comes from strace's fault injection (`-e inject=SYSCALL:signal=SIGKILL:when=K`),
//! so the binary under test is the one operators run, with no test-only code path in it, and
//! every real write of the process counts, including ones a fail-point list would forget. Each
//! syscall is injected on its own (strace counts invocations per syscall), K = 1, 2, ... until
//! the process is no longer killed. Killing a process before a call runs leaves the state after
//! the previous call, so every state a crash can leave is reached. `openat` is not injected: it
//! also opens files for reading, and a file it creates is seen empty by the kill at the `write`
//! that follows.
//!
//! `init` is crashed the same way, into a directory that does not exist yet: after each crash
//! there is either no CA directory, and the next init succeeds with no clean-up, or a whole CA
//! whose ledger verifies; no staging directory is left once an init has completed.
//!
//! After each crash of `sign`, `revoke` or `crl`: `ledger verify` passes; the next command is not blocked by a lock (it runs
//! up to its own, different refusal); and either the ledger is unchanged and there is no output,
//! or the new entry is there and `export` writes exactly its artifact, byte-identical to the
//! output when the output exists.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiwi_e2e::{bin, path_str, run, stderr, workspace_root, Fixture};

/// The system calls that change files (creating, writing, syncing, renaming, linking, removing).
const FILE_CHANGING: &[&str] = &[
    "write",
    "pwrite64",
    "writev",
    "fsync",
    "fdatasync",
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "unlink",
    "unlinkat",
    "mkdir",
    "mkdirat",
    "ftruncate",
];

fn strace() -> PathBuf {
    for dir in ["/usr/bin", "/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join("strace");
        if p.exists() {
            return p;
        }
    }
    panic!("strace is missing; run scripts/install-test-deps (it installs strace)");
}

/// One command to crash, on a copy of the CA.
struct Case {
    name: &'static str,
    /// Arguments after `--ca DIR`; `{out}` is replaced with the output path.
    args: Vec<String>,
    /// The `export` selector for the artifact the new entry holds, from that entry's JSON.
    export: fn(&serde_json::Value) -> Vec<String>,
}

fn copy_dir(from: &Path, to: &Path) {
    let o = run(Command::new("cp").arg("-a").arg(from).arg(to));
    assert!(o.status.success(), "cp: {}", stderr(&o));
}

fn signer(ca: &Path, cmd: &str, args: &[String]) -> Command {
    let mut c = Command::new(bin("kiwi-signer"));
    c.arg(cmd).arg("--ca").arg(ca).args(args);
    c
}

/// The committed entries of the ledger in `ca`: the lines up to the length `ledger.commit`
/// records (bytes after it are an append that did not commit, which the signer ignores).
fn lines(ca: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(ca.join("ledger.jsonl")).expect("ledger");
    let record = std::fs::read_to_string(ca.join("ledger.commit")).expect("commit record");
    let record: serde_json::Value = serde_json::from_str(&record).expect("JSON record");
    let end = record["bytes"].as_u64().expect("a length") as usize;
    text[..end].lines().map(String::from).collect()
}

/// Runs `cmd` (a `kiwi-signer` command, given `--pin-file pin`) under strace with SIGKILL at
/// the `k`-th `syscall`; returns its output and whether it was killed.
fn killed_run(
    cmd: &mut Command,
    pin: &Path,
    trace: &Path,
    syscall: &str,
    k: u32,
) -> (Output, bool) {
    let mut c = Command::new(strace());
    c.arg("-f")
        .arg("-o")
        .arg(trace)
        .arg("-e")
        .arg(format!("trace={syscall}"))
        .arg("-e")
        .arg(format!("inject={syscall}:signal=SIGKILL:when={k}"))
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .arg("--pin-file")
        .arg(pin);
    let o = run(&mut c);
    let traced = std::fs::read_to_string(trace).unwrap_or_default();
    (o, traced.contains("killed by SIGKILL"))
}

/// `ledger verify` passes on `ca`.
fn assert_verifies(ca: &Path, at: &str) {
    let verify = run(Command::new(bin("kiwi-signer"))
        .args(["ledger", "verify", "--ca"])
        .arg(ca));
    assert!(
        verify.status.success(),
        "{at}: ledger verify: {}",
        stderr(&verify)
    );
}

/// Runs the case with SIGKILL at the `k`-th `syscall`; returns whether the process was killed.
fn crash_once(f: &Fixture, template: &Path, case: &Case, syscall: &str, k: u32) -> bool {
    let scratch = tempfile::tempdir().expect("tempdir");
    let ca = scratch.path().join("ca");
    copy_dir(template, &ca);
    let out = scratch.path().join("out.pem");
    let trace = scratch.path().join("trace");
    let args: Vec<String> = case
        .args
        .iter()
        .map(|a| a.replace("{out}", path_str(&out)))
        .collect();
    let (o, killed) = killed_run(
        &mut signer(&ca, &args[0], &args[1..]),
        &f.pin,
        &trace,
        syscall,
        k,
    );
    let at = format!("{} killed at {syscall} #{k}", case.name);
    if !killed {
        assert!(
            o.status.success(),
            "{at}: the run was not killed but failed: {}",
            stderr(&o)
        );
    }

    assert_verifies(&ca, &at);
    // No lock blocks the next command: it gets as far as its own refusal (an existing --out).
    let busy = scratch.path().join("busy.pem");
    std::fs::write(&busy, "x").expect("write");
    let next = run(&mut signer(
        &ca,
        "crl",
        &["--out".into(), path_str(&busy).into()],
    ));
    let err = stderr(&next);
    assert!(
        err.contains("it exists already") && !err.contains("another kiwi-signer"),
        "{at}: the next command did not get past the lock: {err}"
    );

    let before = lines(template);
    let after = lines(&ca);
    if after == before {
        assert!(!out.exists(), "{at}: an output without a ledger entry");
        assert!(killed, "{at}: a completed run recorded nothing");
        return true;
    }
    assert!(
        after.len() > before.len() && after[..before.len()] == before[..],
        "{at}"
    );
    let entry: serde_json::Value =
        serde_json::from_str(after.last().expect("an entry")).expect("JSON entry");
    let exported = scratch.path().join("exported.pem");
    let mut export_args = (case.export)(&entry["event"]);
    export_args.extend(["--out".into(), path_str(&exported).into()]);
    let ex = run(&mut signer(&ca, "export", &export_args));
    assert!(ex.status.success(), "{at}: export: {}", stderr(&ex));
    if out.exists() {
        assert_eq!(
            std::fs::read(&out).expect("out"),
            std::fs::read(&exported).expect("exported"),
            "{at}: the output differs from the recorded artifact"
        );
    } else {
        assert!(killed, "{at}: a completed run wrote no output");
    }
    killed
}

#[test]
fn a_crash_at_any_write_leaves_either_nothing_or_a_recorded_exportable_artifact() {
    let f = Fixture::new();
    let csr = f.csr("acme", "P-256", &[]);
    let other = f.csr("globex", "P-256", &[]);
    let cert = f.sign(&csr, "acme", "core", "acme.pem");
    let serial = f.serial_of(&cert);
    let template = f.tmp.path().join("template");
    copy_dir(&f.ca, &template);

    let by_serial = |e: &serde_json::Value| {
        vec![
            "--serial".into(),
            e["intermediate_issued"]["serial"]
                .as_str()
                .expect("serial")
                .into(),
        ]
    };
    let by_crl = |e: &serde_json::Value| {
        vec![
            "--crl-number".into(),
            e["crl_issued"]["crl_number"].to_string(),
        ]
    };
    let cases = [
        Case {
            name: "sign",
            args: [
                "sign",
                "--csr",
                path_str(&other),
                "--slug",
                "globex",
                "--tier",
                "core",
                "--out",
                "{out}",
                "--yes",
            ]
            .map(String::from)
            .to_vec(),
            export: by_serial,
        },
        Case {
            name: "revoke",
            args: [
                "revoke",
                "--serial",
                &serial,
                "--reason",
                "superseded",
                "--out",
                "{out}",
                "--yes",
            ]
            .map(String::from)
            .to_vec(),
            export: by_crl,
        },
        Case {
            name: "crl",
            args: ["crl", "--out", "{out}"].map(String::from).to_vec(),
            export: by_crl,
        },
    ];
    for case in &cases {
        let mut kills = 0;
        for syscall in FILE_CHANGING {
            let mut k = 1;
            while crash_once(&f, &template, case, syscall, k) {
                kills += 1;
                k += 1;
                assert!(k < 200, "{} never completes under {syscall}", case.name);
            }
        }
        // The ledger append and the output need at least a write, an fsync and a rename each.
        assert!(
            kills >= 5,
            "{}: only {kills} crash points were reached",
            case.name
        );
    }
}

/// `init --backend soft` into `DIR/ca`, as the fixture runs it.
fn init(dir: &Path) -> Command {
    let mut c = signer(&dir.join("ca"), "init", &[]);
    c.args(["--backend", "soft", "--policy"])
        .arg(workspace_root().join("policies/root.yaml"));
    c
}

/// Crashes `init` at the `k`-th `syscall`; returns whether it was killed.
fn init_crash_once(pin: &Path, syscall: &str, k: u32) -> bool {
    let scratch = tempfile::tempdir().expect("tempdir");
    let ca = scratch.path().join("ca");
    let trace = scratch.path().join("trace");
    let (o, killed) = killed_run(&mut init(scratch.path()), pin, &trace, syscall, k);
    let at = format!("init killed at {syscall} #{k}");
    if !killed {
        assert!(
            o.status.success(),
            "{at}: not killed but failed: {}",
            stderr(&o)
        );
    }
    if !ca.exists() {
        assert!(killed, "{at}: a completed init left no CA");
        let again = run(init(scratch.path()).arg("--pin-file").arg(pin));
        assert!(
            again.status.success(),
            "{at}: the next init needed clean-up: {}",
            stderr(&again)
        );
    }
    assert_verifies(&ca, &at);
    let left: Vec<String> = std::fs::read_dir(scratch.path())
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".ca.init-"))
        .collect();
    assert!(left.is_empty(), "{at}: staging directories left: {left:?}");
    killed
}

#[test]
fn init_killed_at_any_write_leaves_no_ca_or_a_whole_one() {
    let f = Fixture::new();
    let mut kills = 0;
    for syscall in FILE_CHANGING {
        let mut k = 1;
        while init_crash_once(&f.pin, syscall, k) {
            kills += 1;
            k += 1;
            assert!(k < 200, "init never completes under {syscall}");
        }
    }
    // Staging: a directory, each file written, synced and linked, the rename.
    assert!(kills >= 10, "init: only {kills} crash points were reached");
}
