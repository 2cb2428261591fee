//! The README's main command, `scripts/rehearsal`, run in a fresh directory: it must succeed,
//! leave a CA whose ledger verifies and state repos with the hook's commits, and refuse a
//! directory that is not empty.

use std::process::Command;

use kiwi_e2e::{bin, path_str, run, stderr, stdout, workspace_root};

#[test]
fn rehearsal_runs_in_a_fresh_directory_and_refuses_a_used_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("rehearsal");
    let script = workspace_root().join("scripts/rehearsal");
    let o = run(Command::new(&script).arg(&dir));
    assert!(
        o.status.success(),
        "rehearsal failed:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    let out = stdout(&o);
    assert!(out.contains("rehearsal complete"), "{out}");
    assert!(
        out.contains("Ceremony verified."),
        "the ceremony transcript did not verify:\n{out}"
    );
    // With step-ca built (scripts/install-test-deps builds it), acme's CA was started.
    if workspace_root().join("target/step-ca/step-ca").exists() {
        assert!(
            out.contains("step-ca for acme: /health ok")
                && out.contains("Verify return code: 0 (ok)"),
            "{out}"
        );
    }
    for f in [
        "offline-root/root.pem",
        "offline-root/ledger.jsonl",
        "transfer/acme.crt",
        "transfer/globex.crt",
        "transfer/ceremony-1/transcript.json",
        "transfer/ceremony-1/transcript.json.sig",
        "od-platform/customers/acme.yaml",
        "cust-acme/secrets/intermediate.key.sops.yaml",
        "cust-acme/secrets/smallstep.sops.yaml",
        "cust-acme/values/smallstep.yaml",
        "cust-globex/secrets/intermediate.crt.sops.yaml",
        "cust-initech/values/step-provisioner.yaml",
        "od-platform/core-shared/core-eu1/smallstep.yaml",
    ] {
        assert!(dir.join(f).exists(), "{f} missing after the rehearsal");
    }
    let verify = run(Command::new(bin("kiwi-signer"))
        .args(["ledger", "verify", "--ca"])
        .arg(dir.join("offline-root")));
    assert!(verify.status.success(), "{}", stderr(&verify));
    // root, 2 intermediates, CRL, ceremony_closed, revocation, CRL.
    assert!(stdout(&verify).contains("7 entries"), "{}", stdout(&verify));

    // The hook committed the request and the install to each state repo.
    let log = run(Command::new("git")
        .arg("-C")
        .arg(dir.join("cust-globex"))
        .args(["log", "--format=%s"]));
    let log = stdout(&log);
    assert!(
        log.contains("kiwictl: intermediate installed for globex"),
        "{log}"
    );
    assert!(
        log.contains("kiwictl: intermediate requested for globex"),
        "{log}"
    );

    // The Core tenant has a provisioner (committed by the hook) and no intermediate.
    assert!(!dir
        .join("cust-initech/secrets/intermediate.key.sops.yaml")
        .exists());
    let log = run(Command::new("git")
        .arg("-C")
        .arg(dir.join("cust-initech"))
        .args(["log", "--format=%s"]));
    assert!(
        stdout(&log).contains("kiwictl: provisioner added for initech"),
        "{}",
        stdout(&log)
    );
    let shared =
        std::fs::read_to_string(dir.join("od-platform/core-shared/core-eu1/smallstep.yaml"))
            .expect("shared values");
    assert!(shared.contains("name: initech"), "{shared}");

    let again = run(Command::new(&script).arg(path_str(&dir)));
    assert!(
        !again.status.success(),
        "a second rehearsal into the same directory ran"
    );
    assert!(stderr(&again).contains("not empty"), "{}", stderr(&again));
}
