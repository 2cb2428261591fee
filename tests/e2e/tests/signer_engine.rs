//! The ceremony pipeline's guarantees through the real binary: the witness's head catches a
//! rolled-back ledger on the soft backend, the lock does not outlive a killed process, an
//! output into a missing directory is refused before the key is read, and `export` writes
//! what the ledger recorded. Refusals are checked by exit status and exact message.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiwi_e2e::{bin, path_str, run, stderr, stdout, Fixture};

/// The ledger head the last command printed (hex, from the ledger's newest entry).
fn head(f: &Fixture) -> String {
    let text = std::fs::read_to_string(f.ca.join("ledger.jsonl")).expect("ledger");
    let last: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("an entry")).expect("JSON");
    last["hash"].as_str().expect("hash").to_string()
}

fn refused(o: &std::process::Output, message: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
    assert_eq!(stderr(o), format!("kiwi-signer: error: {message}\n"));
}

#[test]
fn a_ledger_cut_after_a_revocation_is_refused_against_the_witness_head() {
    let f = Fixture::new();
    let csr = f.csr("acme", "P-256", &[]);
    let cert = f.sign(&csr, "acme", "core", "acme.pem");
    let serial = f.serial_of(&cert);
    // The witness starts the routine with the head the last command printed.
    let head_file = f.w("head.txt");
    std::fs::write(&head_file, format!("{}\n", head(&f))).expect("head file");
    f.signer_ok(&[
        "revoke",
        "--serial",
        &serial,
        "--reason",
        "keyCompromise",
        "--out",
        path_str(&f.w("crl1.pem")),
        "--yes",
        "--head-file",
        path_str(&head_file),
    ]);
    let newest = head(&f);
    let recorded = std::fs::read_to_string(&head_file).expect("head file");
    assert_eq!(recorded.lines().next(), Some(newest.as_str()));

    // `head -n -2 ledger.jsonl`: the revocation and its CRL are gone, the chain still verifies.
    let ledger = f.ca.join("ledger.jsonl");
    let cut = run(Command::new("head").args(["-n", "-2"]).arg(&ledger));
    assert!(cut.status.success());
    std::fs::write(&ledger, &cut.stdout).expect("cut");
    f.assert_ledger_ok();
    let old = head(&f);
    let words = stdout(&run(Command::new("sed").args(["-n", "2p"]).arg(&head_file)));
    let four: Vec<&str> = words.split_whitespace().take(4).collect();
    let four = four.join(" ");

    let expect = format!(
        "the ledger's head is {old} ({}) but the witness recorded {newest} ({four}): entries were \
         removed, or this is not the ledger the witness saw. Restore the newest backup of the CA \
         directory; nothing was signed",
        first_words(&old, &f)
    );
    let other = f.csr("globex", "P-256", &[]);
    let (g, r, c) = (f.w("g.pem"), f.w("r.pem"), f.w("c.pem"));
    for witness in [
        vec!["--expect-head", newest.as_str()],
        vec!["--head-file", path_str(&head_file)],
    ] {
        let commands: [Vec<&str>; 3] = [
            vec![
                "sign",
                "--csr",
                path_str(&other),
                "--slug",
                "globex",
                "--tier",
                "core",
                "--out",
                path_str(&g),
                "--yes",
            ],
            vec![
                "revoke",
                "--serial",
                &serial,
                "--reason",
                "keyCompromise",
                "--out",
                path_str(&r),
                "--yes",
            ],
            vec!["crl", "--out", path_str(&c)],
        ];
        for mut args in commands {
            args.extend(witness.iter().copied());
            let before = f.ledger_bytes();
            let o = f.signer(&args);
            refused(&o, &expect);
            assert_eq!(before, f.ledger_bytes());
        }
    }
    // The first four PGP words work as well as the hex.
    let o = f.signer(&[
        "crl",
        "--out",
        path_str(&f.w("c.pem")),
        "--expect-head",
        &four,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("but the witness recorded {four}:")),
        "{}",
        stderr(&o)
    );
    for name in ["g.pem", "r.pem", "c.pem"] {
        assert!(!f.w(name).exists(), "{name} was written");
    }
    // With the head the ledger really has, the command runs.
    f.signer_ok(&[
        "crl",
        "--out",
        path_str(&f.w("c.pem")),
        "--expect-head",
        &old,
    ]);
    // `status` says what protects a soft-backend CA.
    let status = f.signer_ok(&["status"]);
    assert!(
        status.contains(
            "rollback     the witness's head only: the soft backend has no device to remember \
             the ledger, so pass --expect-head or --head-file to every sign, revoke and crl"
        ),
        "{status}"
    );
}

/// The first four PGP words of a head, as `status --json` cannot give them: through `ledger
/// verify`, which prints the head's words on its second line.
fn first_words(hex: &str, f: &Fixture) -> String {
    let out = f.signer_ok(&["ledger", "verify"]);
    let squeezed: String = out.split_whitespace().collect();
    assert!(squeezed.contains(hex), "{out}");
    let words_line = out.lines().last().expect("words line");
    words_line
        .split_whitespace()
        .take(4)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn an_output_into_a_missing_directory_is_refused_before_the_passphrase_is_read() {
    let f = Fixture::new();
    let csr = f.csr("acme", "P-256", &[]);
    // A FIFO nobody writes to: reading the passphrase from it blocks for ever, so a signer that
    // reads the key's passphrase before refusing the output hangs instead of refusing.
    let fifo = f.w("pin.fifo");
    let made = run(Command::new("mkfifo").args(["-m", "600"]).arg(&fifo));
    assert!(made.status.success(), "mkfifo: {}", stderr(&made));
    let spawn = |out: &Path| {
        Command::new(bin("kiwi-signer"))
            .args(["sign", "--ca", path_str(&f.ca), "--csr", path_str(&csr)])
            .args([
                "--slug",
                "acme",
                "--tier",
                "core",
                "--yes",
                "--out",
                path_str(out),
            ])
            .arg("--pin-file")
            .arg(&fifo)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let wait = |child: &mut std::process::Child, limit: Duration| {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = child.try_wait().expect("wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    };
    // Control: with a good --out, the signer does read the FIFO, and blocks there.
    let mut control = spawn(&f.w("good.pem"));
    let still = wait(&mut control, Duration::from_secs(5));
    let _ = control.kill();
    let _ = control.wait();
    assert!(
        still.is_none(),
        "the control run did not block on the FIFO: the witness proves nothing"
    );

    let before = f.ledger_bytes();
    let missing = f.w("no-such-dir/acme.pem");
    let mut child = spawn(&missing);
    let status = wait(&mut child, Duration::from_secs(60));
    if status.is_none() {
        let _ = child.kill();
    }
    let o = child.wait_with_output().expect("output");
    assert!(
        status.is_some(),
        "the signer read the passphrase before checking --out"
    );
    refused(
        &o,
        &format!(
            "--out {}: the directory {} does not exist: create it (or mount the transfer medium) \
             first; nothing was signed",
            missing.display(),
            f.w("no-such-dir").display()
        ),
    );
    assert_eq!(before, f.ledger_bytes());
}

#[test]
fn a_kill_during_a_pre_hook_leaves_no_lock_and_the_same_command_succeeds() {
    let f = Fixture::new();
    let started = f.w("started");
    let hooks = f.w("hooks.yaml");
    std::fs::write(
        &hooks,
        format!(
            "hooks:\n  - name: slow\n    event: crl_issued\n    phase: pre\n    timeout_secs: 60\n    run: [sh, -c, 'test -e {s} || {{ touch {s}; sleep 20; }}']\n",
            s = started.display()
        ),
    )
    .expect("hooks");
    let out = f.w("crl.pem");
    let args = |c: &mut Command| {
        c.args(["crl", "--ca", path_str(&f.ca), "--out", path_str(&out)])
            .args(["--hooks", path_str(&hooks), "--pin-file", path_str(&f.pin)]);
    };
    let mut cmd = Command::new(bin("kiwi-signer"));
    args(&mut cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while !started.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the pre hook never ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(!out.exists());
    // The same command again, with nothing cleaned up by hand.
    let mut again = Command::new(bin("kiwi-signer"));
    args(&mut again);
    let o = run(&mut again);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.exists());
    f.assert_ledger_ok();
}

#[test]
fn export_writes_recorded_certificates_and_crls_again() {
    let f = Fixture::new();
    let csr = f.csr("acme", "P-256", &[]);
    let cert = f.sign(&csr, "acme", "core", "acme.pem");
    let serial = f.serial_of(&cert);
    let crl = f.w("crl.der");
    f.signer_ok(&["crl", "--out", path_str(&crl)]);
    let again = f.w("again.pem");
    f.signer_ok(&["export", "--serial", &serial, "--out", path_str(&again)]);
    assert_eq!(
        std::fs::read(&again).expect("a"),
        std::fs::read(&cert).expect("c")
    );
    let crl_again = f.w("crl-again.der");
    f.signer_ok(&["export", "--crl-number", "1", "--out", path_str(&crl_again)]);
    assert_eq!(
        std::fs::read(&crl_again).expect("a"),
        std::fs::read(&crl).expect("c")
    );
    // Never overwritten; unknown artifacts named.
    let o = f.signer(&["export", "--serial", &serial, "--out", path_str(&again)]);
    assert_eq!(o.status.code(), Some(1));
    let o = f.signer(&[
        "export",
        "--crl-number",
        "9",
        "--out",
        path_str(&f.w("nine.pem")),
    ]);
    refused(
        &o,
        &format!(
            "CRL number 9 is not in the ledger; `kiwi-signer status --ca {}` lists what it holds",
            f.ca.display()
        ),
    );
}
