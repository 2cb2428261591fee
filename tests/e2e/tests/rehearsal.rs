//! The README's main command, `scripts/rehearsal`, run in a fresh directory: it must succeed,
//! leave a CA whose ledger verifies and state repos with the hook's commits, tell the hand-over
//! (the leaf acme's intermediate issued before it chains to acme's root, and is revoked in the
//! MSP chain; the bundle verifies with acme's key; with step-ca built, acme's step-ca starts
//! from the bundle with acme's key and its chain verifies against acme's root alone; no
//! plaintext key is left behind), and refuse a directory that is not empty.

use std::path::Path;
use std::process::Command;

use kiwi_e2e::{bin, kiwictl, openssl, path_str, run, stderr, stdout, workspace_root};

/// `kiwi-signer ledger verify --ca DIR` succeeds; returns its output.
fn ledger_verify(ca: &Path) -> String {
    let verify = run(Command::new(bin("kiwi-signer"))
        .args(["ledger", "verify", "--ca"])
        .arg(ca));
    assert!(verify.status.success(), "{}", stderr(&verify));
    stdout(&verify)
}

/// Every file under `dir` whose text holds an unencrypted PEM private key (regular files only:
/// opening a FIFO, such as the password pipe step-ca read, would block).
fn plaintext_keys(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        let kind = e.file_type().expect("file type");
        if kind.is_dir() {
            found.extend(plaintext_keys(&p));
        } else if !kind.is_file() {
            continue;
        } else if let Ok(text) = std::fs::read_to_string(&p) {
            if text.contains("BEGIN PRIVATE KEY") || text.contains("BEGIN EC PRIVATE KEY") {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

#[test]
fn rehearsal_runs_in_a_fresh_directory_and_refuses_a_used_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("rehearsal");
    // The script's temporary directories (the decrypted intermediate key's) go here.
    let scratch = tmp.path().join("tmp");
    std::fs::create_dir(&scratch).expect("scratch");
    let script = workspace_root().join("scripts/rehearsal");
    let o = run(Command::new(&script).arg(&dir).env("TMPDIR", &scratch));
    assert!(
        o.status.success(),
        "rehearsal failed:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    let out = stdout(&o);
    let printed = format!("{out}{}", stderr(&o));
    assert!(out.contains("rehearsal complete"), "{out}");
    assert!(
        out.contains("Ceremony verified."),
        "the ceremony transcript did not verify:\n{out}"
    );
    // With step-ca built (scripts/install-test-deps builds it), acme's CA was started from its
    // state repo, then from the bundle with acme's key: the chain verified against acme's root,
    // and the MSP root alone refused it.
    if workspace_root().join("target/step-ca/step-ca").exists() {
        assert!(
            out.contains("step-ca for acme: /health ok")
                && out.contains("step-ca for acme from the bundle: /health ok")
                && out.matches("Verify return code: 0 (ok)").count() == 2
                && out.contains(&format!(
                    "step-ca for acme from the bundle: {} alone refuses its chain (verify error:",
                    dir.join("offline-root/root.pem").display()
                )),
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
        "od-platform/core-shared/core-eu1/values/smallstep-config.yaml",
        "od-platform/core-shared/core-eu1/values/smallstep.yaml",
        "od-platform/core-shared/core-eu1/secrets/intermediate.key.sops.yaml",
        "od-platform/core-shared/core-eu1/secrets/smallstep.sops.yaml",
        "transfer/core-eu1.crt",
        "acme-root/root.pem",
        "transfer/acme-rerooted.pem",
        "transfer/root-crl-3.pem",
        "acme-bundle/HANDOVER.md",
        "acme-bundle/MANIFEST",
    ] {
        assert!(dir.join(f).exists(), "{f} missing after the rehearsal");
    }
    // root, 2 intermediates, CRL, ceremony_closed, the shared sub-CA, revocation, CRL,
    // hand-over (handed_over, revocation, CRL).
    let said = ledger_verify(&dir.join("offline-root"));
    assert!(said.contains("11 entries"), "{said}");
    let msp_ledger =
        std::fs::read_to_string(dir.join("offline-root/ledger.jsonl")).expect("MSP ledger");
    assert!(msp_ledger.contains("\"handed_over\""), "{msp_ledger}");
    // acme's own root: init, re-root.
    let said = ledger_verify(&dir.join("acme-root"));
    assert!(said.contains("2 entries"), "{said}");
    let acme_ledger =
        std::fs::read_to_string(dir.join("acme-root/ledger.jsonl")).expect("acme ledger");
    assert!(acme_ledger.contains("\"rerooted\""), "{acme_ledger}");

    // The bundle verifies with acme's key alone.
    let o = kiwictl(
        &[
            "churn",
            "verify",
            path_str(&dir.join("acme-bundle")),
            "--identity",
            path_str(&dir.join("keys/acme.agekey")),
        ],
        None,
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));

    // The leaf issued before the hand-over: valid under acme's root (the bundle's chain),
    // valid in the MSP chain before the hand-over and revoked in it after.
    let leaf = ["-untrusted", "transfer/acme.crt", "acme-leaf/leaf.pem"];
    let o = openssl(
        &dir,
        &[
            "verify",
            "-CAfile",
            "acme-bundle/customer-root.pem",
            "-untrusted",
            "acme-bundle/intermediate.pem",
            "acme-leaf/leaf.pem",
        ],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let msp_chain = |crl: &str| {
        let mut args = vec![
            "verify",
            "-crl_check_all",
            "-CAfile",
            "offline-root/root.pem",
        ];
        args.extend(["-CRLfile", "acme-leaf/intermediate.crl", "-CRLfile", crl]);
        args.extend(leaf);
        let o = openssl(&dir, &args);
        (o.status.success(), format!("{}{}", stdout(&o), stderr(&o)))
    };
    let (ok, said) = msp_chain("transfer/root-crl-1.pem");
    assert!(ok, "before the hand-over: {said}");
    let (ok, said) = msp_chain("transfer/root-crl-3.pem");
    assert!(!ok && said.contains("certificate revoked"), "{said}");

    // The intermediate key was decrypted into a temporary directory that is gone; no plaintext
    // private key is left anywhere, nor printed.
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .expect("scratch")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("kiwi-rehearsal-key")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(plaintext_keys(&dir), Vec::<String>::new());
    assert!(!printed.contains("PRIVATE KEY"), "{printed}");

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
    let shared = std::fs::read_to_string(
        dir.join("od-platform/core-shared/core-eu1/values/smallstep-config.yaml"),
    )
    .expect("shared values");
    assert!(shared.contains("name: initech"), "{shared}");

    let again = run(Command::new(&script).arg(path_str(&dir)));
    assert!(
        !again.status.success(),
        "a second rehearsal into the same directory ran"
    );
    assert!(stderr(&again).contains("not empty"), "{}", stderr(&again));
}
