//! Ceremony scripts through the real binary: `ceremony plan` refuses each bad input before any
//! PIN with the ledger unchanged; `ceremony run` of the shipped examples (root-init, then
//! signing) on the soft backend; `ceremony verify` passes with a witness signature made by the
//! real `ssh-keygen -Y sign`, which the real `ssh-keygen -Y verify` accepts too, and fails after
//! one changed byte in the transcript, in an output, in the ledger, and without the signature
//! or with one by another key. The churn hand-over examples run as their story goes: the
//! customer's root (`customer-root-init.yaml`) on a second CA directory, the re-root there
//! (`reroot.yaml`, what the MSP sends copied into `in/`), then the MSP's `handover.yaml` (the
//! customer's root in `in/`, the serial filled in from `kiwi-signer status`), each verified
//! with a witness signature and its outcome checked with openssl; then the customer's
//! `renew.yaml` (a new P-256 key's CSR made with openssl in `in/`, the re-rooted serial filled
//! in) replaces the re-rooted certificate under their root and revokes it as superseded in the
//! same ceremony. `ceremony plan` refuses a re-root against anything but the MSP root, and the
//! handover and renew examples' placeholder serials.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiwi_e2e::{
    openssl, openssl_ok, path_str, run, stderr, stdout, witness_key, witness_sign, workspace_root,
    write_private, Fixture, PASSPHRASE,
};

/// A copy of `ceremony/examples` and `policies` in `dir`, as the examples' relative paths
/// expect (`ceremony/examples/root-init.yaml` names `../../policies/root.yaml`).
fn examples(dir: &Path) -> PathBuf {
    let ex = dir.join("ceremony/examples");
    std::fs::create_dir_all(ex.join("requests")).expect("mkdir");
    std::fs::create_dir_all(ex.join("out")).expect("mkdir");
    std::fs::create_dir_all(dir.join("policies")).expect("mkdir");
    let root = workspace_root();
    for entry in std::fs::read_dir(root.join("policies")).expect("policies") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&p, dir.join("policies").join(p.file_name().expect("name")))
                .expect("copy");
        }
    }
    std::fs::create_dir_all(ex.join("in")).expect("mkdir");
    for f in [
        "root-init.yaml",
        "signing.yaml",
        "customer-root-init.yaml",
        "reroot.yaml",
        "handover.yaml",
        "renew.yaml",
        "requests/acme.csr",
        "requests/globex.csr",
    ] {
        std::fs::copy(root.join("ceremony/examples").join(f), ex.join(f)).expect("copy example");
    }
    ex
}

fn signer(args: &[&str]) -> std::process::Output {
    run(Command::new(kiwi_e2e::bin("kiwi-signer")).args(args))
}

/// `ceremony run FILE --ca CA --transcript OUT --pin-file PIN --yes EXTRA...`, which must
/// succeed; returns its standard output.
fn ceremony_run(file: &Path, ca: &Path, pin: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "ceremony",
        "run",
        path_str(file),
        "--ca",
        path_str(ca),
        "--transcript",
        path_str(out),
        "--pin-file",
        path_str(pin),
        "--yes",
    ];
    args.extend_from_slice(extra);
    let o = signer(&args);
    assert!(o.status.success(), "ceremony run {file:?}: {}", stderr(&o));
    stdout(&o)
}

fn verify(out: &Path, ca: &Path, allowed: &Path) -> std::process::Output {
    signer(&[
        "ceremony",
        "verify",
        path_str(out),
        "--ca",
        path_str(ca),
        "--allowed-signers",
        path_str(allowed),
    ])
}

fn assert_fails(o: &std::process::Output, needle: &str, what: &str) {
    let all = format!("{}{}", stdout(o), stderr(o));
    assert!(!o.status.success(), "verify passed {what}:\n{all}");
    assert!(all.contains(needle), "{what}: `{needle}` not in:\n{all}");
}

/// Changes the byte of `path` right after `marker` (so the file stays well-formed), returns
/// the original bytes.
fn change_byte(path: &Path, marker: &str) -> Vec<u8> {
    let orig = std::fs::read(path).expect("read");
    let i = orig
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .unwrap_or_else(|| panic!("{marker} not in {path:?}"))
        + marker.len();
    let mut b = orig.clone();
    b[i] = if b[i] == b'0' { b'1' } else { b'0' };
    std::fs::write(path, &b).expect("write");
    orig
}

#[test]
fn examples_run_and_verify_and_every_change_is_caught() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let ex = examples(t);
    let ca = t.join("ca");
    let pin = t.join("pin");
    write_private(&pin, &format!("{PASSPHRASE}\n"));
    let run_ceremony = |file: &str, out: &Path, extra: &[&str]| {
        ceremony_run(&ex.join(file), &ca, &pin, out, extra)
    };
    run_ceremony("root-init.yaml", &t.join("t0"), &[]);
    let head = signer(&["ledger", "verify", "--ca", path_str(&ca)]);
    let head: String = stdout(&head)
        .lines()
        .find_map(|l| l.trim().strip_prefix("head "))
        .expect("head line")
        .split_whitespace()
        .take(16)
        .collect();
    let t1 = t.join("t1");
    run_ceremony("signing.yaml", &t1, &["--expect-head", &head]);
    for f in ["acme.pem", "globex.pem", "root-crl.pem"] {
        assert!(ex.join("out").join(f).exists(), "{f} not written");
    }

    // The witness signs with ssh-keygen; an impostor has a key too.
    let ben = witness_key(t, "ben");
    witness_key(t, "eve");
    let allowed = t.join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("ben@example.org namespaces=\"kiwi-ceremony\" {ben}"),
    )
    .expect("allowed");
    let json = t1.join("transcript.json");
    let sign = |key: &str| witness_sign(t, key, &json);
    let sig = t1.join("transcript.json.sig");
    assert_fails(
        &verify(&t1, &ca, &allowed),
        "no witness signature",
        "without a signature",
    );
    sign("ben");
    let o = verify(&t1, &ca, &allowed);
    assert!(
        o.status.success(),
        "verify failed:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        stdout(&o).contains("good signature by ben@example.org"),
        "{}",
        stdout(&o)
    );
    // `run` gives no standard input; ssh-keygen -Y verify reads the message there.
    let o = Command::new("ssh-keygen")
        .args([
            "-Y",
            "verify",
            "-f",
            path_str(&allowed),
            "-I",
            "ben@example.org",
        ])
        .args(["-n", "kiwi-ceremony", "-s", path_str(&sig)])
        .stdin(std::fs::File::open(&json).expect("open"))
        .output()
        .expect("ssh-keygen");
    assert!(o.status.success(), "ssh-keygen -Y verify: {}", stderr(&o));

    // One changed byte anywhere is caught, each restored afterwards.
    let cases = [
        (json.clone(), "\"operator\": \"", "is not in the ledger"),
        (ex.join("out/globex.pem"), "MII", "globex.pem"),
        (
            ca.join("ledger.jsonl"),
            "\"transcript_sha256\":\"",
            "ledger",
        ),
    ];
    for (file, marker, needle) in cases {
        let orig = change_byte(&file, marker);
        assert_fails(
            &verify(&t1, &ca, &allowed),
            needle,
            &format!("after a change to {file:?}"),
        );
        std::fs::write(&file, orig).expect("restore");
    }
    std::fs::remove_file(&sig).expect("rm sig");
    sign("eve");
    assert_fails(
        &verify(&t1, &ca, &allowed),
        "not in the allowed signers",
        "signed by another key",
    );
    std::fs::remove_file(&sig).expect("rm sig");
    sign("ben");

    // A crash between the transcript and its ledger entry: `close` records it, once.
    let ledger = ca.join("ledger.jsonl");
    let full = std::fs::read_to_string(&ledger).expect("ledger");
    let cut = &full[..full.trim_end().rfind('\n').expect("lines") + 1];
    std::fs::write(&ledger, cut).expect("cut the ceremony_closed entry");
    assert_fails(
        &verify(&t1, &ca, &allowed),
        "is not in the ledger",
        "before close",
    );
    let close = |out: &Path| signer(&["ceremony", "close", path_str(out), "--ca", path_str(&ca)]);
    let o = close(&t1);
    assert!(o.status.success(), "close: {}", stderr(&o));
    assert!(
        verify(&t1, &ca, &allowed).status.success(),
        "verify after close"
    );
    assert!(
        !close(&t1).status.success(),
        "a transcript was closed twice"
    );

    // A step that fails at run time (the same key for two customers: each step alone plans)
    // stops the ceremony with nothing of it written; the steps before it are in the transcript.
    let csr = kiwi_e2e::ec_csr(&ex, "fresh", "P-256", &[]);
    let step = |slug: &str| {
        format!("  - sign: {{csr: {csr}, slug: {slug}, tier: core, out: out/{slug}.pem}}\n")
    };
    std::fs::write(
        ex.join("twice.yaml"),
        format!(
            "kind: signing\noperator: Ana\nwitnesses: [Ben]\ndevice: {{backend: soft}}\nsteps:\n{}{}crl: {{out: out/twice-crl.pem}}\n",
            step("initech"),
            step("umbrella")
        ),
    )
    .expect("ceremony file");
    let twice = ex.join("twice.yaml");
    let plan = signer(&["ceremony", "plan", path_str(&twice), "--ca", path_str(&ca)]);
    assert!(plan.status.success(), "plan: {}", stderr(&plan));
    let t2 = t.join("t2");
    let o = signer(&[
        "ceremony",
        "run",
        path_str(&twice),
        "--ca",
        path_str(&ca),
        "--transcript",
        path_str(&t2),
        "--pin-file",
        path_str(&pin),
        "--yes",
    ]);
    assert!(!o.status.success(), "the second step was not refused");
    assert!(stderr(&o).contains("step 2 failed"), "{}", stderr(&o));
    assert!(
        ex.join("out/initech.pem").exists(),
        "step 1's output is missing"
    );
    assert!(!ex.join("out/umbrella.pem").exists() && !ex.join("out/twice-crl.pem").exists());
    let json = t2.join("transcript.json");
    witness_sign(t, "ben", &json);
    let o = verify(&t2, &ca, &allowed);
    assert_fails(&o, "did not run to its end", "a stopped ceremony");
    assert!(
        stdout(&o).contains("ok   transcript.json"),
        "the stopped transcript is not closed:\n{}",
        stdout(&o)
    );

    // The root-init transcript verifies too, with the CA directory moved since.
    witness_sign(t, "ben", &t.join("t0/transcript.json"));
    let moved = t.join("ca-moved");
    std::fs::rename(&ca, &moved).expect("move the CA");
    let o = verify(&t.join("t0"), &moved, &allowed);
    assert!(
        o.status.success(),
        "root-init transcript:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
}

#[test]
fn plan_refuses_bad_inputs_before_any_pin_and_changes_nothing() {
    let f = Fixture::new();
    let good = f.csr("good", "P-256", &[]);
    let mut bad = std::fs::read(&good).expect("csr");
    let mid = bad.len() / 2;
    bad[mid] = if bad[mid] == b'A' { b'B' } else { b'A' };
    std::fs::write(f.w("bad.csr"), bad).expect("bad csr");
    std::fs::write(f.w("exists.pem"), "taken").expect("existing output");
    let file = |steps: &str| {
        let p = f.w(&format!(
            "c{}.yaml",
            f.work.read_dir().map(|d| d.count()).unwrap_or(0)
        ));
        let text = format!(
            "kind: signing\noperator: Ana\nwitnesses: [Ben]\ndevice: {{backend: soft}}\nsteps:\n{steps}crl: {{out: crl.pem}}\n"
        );
        std::fs::write(&p, text).expect("ceremony file");
        p
    };
    let sign = |csr: &str, out: &str| {
        format!("  - sign: {{csr: {csr}, slug: acme, tier: core, out: {out}}}\n")
    };
    let zero_head = "0".repeat(64);
    let cases = [
        (file(&sign("bad.csr", "a.pem")), vec![], "CSR"),
        (
            file("  - revoke: {serial: 0a0b0c, reason: superseded, crl_out: r.pem}\n"),
            vec![],
            "0a0b0c",
        ),
        (file(&sign("good.csr", "exists.pem")), vec![], "exists"),
        (
            file(&sign("good.csr", "a.pem")),
            vec!["--expect-head", zero_head.as_str()],
            "head",
        ),
        (
            file(&sign("good.csr", "a.pem").replace("tier: core", "tier: core, extra: 1")),
            vec![],
            "steps[0].sign",
        ),
    ];
    for (path, extra, needle) in cases {
        let before = f.ledger_bytes();
        let mut args = vec!["ceremony", "plan", path_str(&path), "--ca", path_str(&f.ca)];
        args.extend(extra);
        // No --pin-file and stdin closed: a prompt for the PIN would fail differently.
        let o = signer(&args);
        let err = stderr(&o);
        assert!(!o.status.success(), "plan of {path:?} was not refused");
        assert!(err.contains(needle), "{path:?}: `{needle}` not in {err}");
        assert!(!err.to_lowercase().contains("passphrase"), "{err}");
        assert_eq!(before, f.ledger_bytes(), "the ledger changed");
        assert!(!f.w("a.pem").exists() && !f.w("crl.pem").exists());
    }
    // run refuses a transcript directory that is not empty, before any PIN is asked.
    let used = f.w("used");
    std::fs::create_dir(&used).expect("mkdir");
    std::fs::write(used.join("transcript.json"), "{}").expect("old transcript");
    let good_file = file(&sign("good.csr", "a.pem"));
    let before = f.ledger_bytes();
    let o = signer(&[
        "ceremony",
        "run",
        path_str(&good_file),
        "--ca",
        path_str(&f.ca),
        "--transcript",
        path_str(&used),
        "--yes",
    ]);
    assert!(
        !o.status.success(),
        "a used transcript directory was accepted"
    );
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    assert_eq!(before, f.ledger_bytes(), "the ledger changed");
    f.assert_ledger_ok();
}

/// `openssl x509 -noout ARGS` of `cert`.
fn x509(dir: &Path, cert: &Path, args: &[&str]) -> String {
    let mut all = vec!["x509", "-in", path_str(cert), "-noout"];
    all.extend_from_slice(args);
    openssl_ok(dir, &all)
}

/// The certificate's SHA-256 (of its DER) in lowercase hex, as the ledger records it.
fn cert_sha256(dir: &Path, cert: &Path) -> String {
    x509(dir, cert, &["-fingerprint", "-sha256"])
        .trim()
        .rsplit('=')
        .next()
        .expect("fingerprint")
        .replace(':', "")
        .to_ascii_lowercase()
}

/// The one ledger entry of `ca` whose event is `kind`, as JSON (the event's fields).
fn ledger_event(ca: &Path, kind: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(ca.join("ledger.jsonl")).expect("ledger");
    let found: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("ledger line"))
        .filter_map(|e| e["event"].get(kind).cloned())
        .collect();
    assert_eq!(found.len(), 1, "{kind} entries in {ca:?}: {found:?}");
    found.into_iter().next().expect("one")
}

#[test]
fn churn_examples_run_as_the_runbook_orders_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let ex = examples(t);
    let out = ex.join("out");
    let msp = t.join("msp-ca");
    let acme = t.join("acme-ca");
    let pin = t.join("pin");
    write_private(&pin, &format!("{PASSPHRASE}\n"));
    let run_on = |ca: &Path, file: &str, transcript: &str| {
        ceremony_run(&ex.join(file), ca, &pin, &t.join(transcript), &[])
    };
    let plan = |ca: &Path, file: &str| {
        signer(&[
            "ceremony",
            "plan",
            path_str(&ex.join(file)),
            "--ca",
            path_str(ca),
        ])
    };
    let ledger = |ca: &Path| std::fs::read(ca.join("ledger.jsonl")).expect("ledger");

    // The MSP's CA and the customer's intermediate (out/acme.pem), with its CRL.
    run_on(&msp, "root-init.yaml", "msp-init");
    run_on(&msp, "signing.yaml", "msp-signing");
    let acme_pem = out.join("acme.pem");
    let acme_serial = x509(t, &acme_pem, &["-serial"])
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase();

    // 1. The customer's own root, on their own CA directory: it names no one but them.
    run_on(&acme, "customer-root-init.yaml", "acme-init");
    let acme_root = acme.join("root.pem");
    let subject = x509(t, &acme_root, &["-subject", "-nameopt", "RFC2253"]);
    assert_eq!(subject.trim(), "subject=CN=Acme GmbH Root CA,O=Acme GmbH");

    // 2. What the MSP sends goes into in/. The re-root is planned against the MSP root only:
    // the customer's own root, a root that did not issue the intermediate, and the
    // intermediate itself are each refused before any PIN, with nothing written.
    std::fs::copy(&acme_pem, ex.join("in/acme.pem")).expect("copy the intermediate");
    std::fs::copy(
        out.join("root-crl.pem"),
        ex.join("in/kiwistack-root-crl.pem"),
    )
    .expect("copy the MSP CRL");
    let msp_root_in = ex.join("in/kiwistack-root.pem");
    let foreign_key = t.join("foreign.key");
    let foreign = t.join("foreign-root.pem");
    openssl_ok(
        t,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            path_str(&foreign_key),
            "-subj",
            "/O=KiwiStack/CN=KiwiStack Root CA R1",
            "-days",
            "30",
            "-out",
            path_str(&foreign),
        ],
    );
    for (wrong, needle) in [
        (&acme_root, "this CA's own root, not the MSP's"),
        (&foreign, "was not issued by the MSP root"),
        (&acme_pem, "is not a root CA certificate"),
    ] {
        std::fs::copy(wrong, &msp_root_in).expect("copy into in/");
        let before = ledger(&acme);
        let o = plan(&acme, "reroot.yaml");
        let err = stderr(&o);
        assert!(!o.status.success(), "reroot planned with {wrong:?}");
        assert!(err.contains(needle), "{wrong:?}: `{needle}` not in {err}");
        assert!(!err.to_lowercase().contains("passphrase"), "{err}");
        assert_eq!(before, ledger(&acme), "the ledger changed");
        assert!(!out.join("acme-rerooted.pem").exists() && !out.join("acme-root-crl.pem").exists());
    }

    // The MSP root, as the MSP sends it: the re-root runs.
    std::fs::copy(msp.join("root.pem"), &msp_root_in).expect("copy the MSP root");
    run_on(&acme, "reroot.yaml", "acme-reroot");
    let rerooted = out.join("acme-rerooted.pem");
    let o = openssl(
        t,
        &[
            "verify",
            "-CAfile",
            path_str(&acme_root),
            path_str(&rerooted),
        ],
    );
    assert!(
        o.status.success(),
        "not under the customer root: {}",
        stderr(&o)
    );
    let o = openssl(
        t,
        &[
            "verify",
            "-CAfile",
            path_str(&msp.join("root.pem")),
            path_str(&rerooted),
        ],
    );
    assert!(
        !o.status.success(),
        "the re-rooted certificate verifies under the MSP root"
    );
    for args in [&["-pubkey"][..], &["-subject", "-nameopt", "RFC2253"]] {
        assert_eq!(
            x509(t, &acme_pem, args),
            x509(t, &rerooted, args),
            "{args:?} differs"
        );
    }
    assert_ne!(
        x509(t, &acme_pem, &["-serial"]),
        x509(t, &rerooted, &["-serial"])
    );
    let nc = x509(t, &rerooted, &["-ext", "nameConstraints"]);
    assert!(nc.contains("DNS:acme.example"), "permit_dns missing:\n{nc}");
    let r = ledger_event(&acme, "rerooted");
    assert_eq!(r["original_serial"], acme_serial.as_str());
    assert_eq!(
        r["msp_root_sha256"],
        cert_sha256(t, &msp.join("root.pem")).as_str()
    );

    // 3. (The customer installs the new chain and trusts their root.) 4. The MSP hands over:
    // the placeholder serial is refused, then filled in from `kiwi-signer status`.
    std::fs::copy(&acme_root, ex.join("in/acme-root.pem")).expect("copy the customer root");
    let before = ledger(&msp);
    let o = plan(&msp, "handover.yaml");
    let err = stderr(&o);
    assert!(!o.status.success(), "the placeholder serial was planned");
    assert!(
        err.contains("0123456789abcdef") && err.contains("kiwi-signer status"),
        "{err}"
    );
    assert_eq!(before, ledger(&msp), "the ledger changed");
    let status = stdout(&signer(&["status", "--ca", path_str(&msp)]));
    let listed = status
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            let serial = w.next()?;
            (w.next() == Some("acme")).then(|| serial.to_string())
        })
        .unwrap_or_else(|| panic!("acme not listed:\n{status}"));
    assert_eq!(listed, acme_serial);
    let handover = ex.join("handover.yaml");
    let text = std::fs::read_to_string(&handover).expect("handover.yaml");
    assert_eq!(
        text.matches("serial: 0123456789abcdef").count(),
        1,
        "{text}"
    );
    std::fs::write(
        &handover,
        text.replace("serial: 0123456789abcdef", &format!("serial: {listed}")),
    )
    .expect("fill the serial");
    run_on(&msp, "handover.yaml", "msp-handover");
    let h = ledger_event(&msp, "handed_over");
    assert_eq!(h["serial"], acme_serial.as_str());
    assert_eq!(h["new_root_sha256"], cert_sha256(t, &acme_root).as_str());
    let upper = acme_serial.to_ascii_uppercase();
    for crl in ["acme-handover-crl.pem", "handover-closing-crl.pem"] {
        let crl = out.join(crl);
        let o = openssl(
            t,
            &[
                "crl",
                "-in",
                path_str(&crl),
                "-CAfile",
                path_str(&msp.join("root.pem")),
                "-noout",
                "-text",
            ],
        );
        let text = format!("{}{}", stdout(&o), stderr(&o));
        assert!(o.status.success() && text.contains("verify OK"), "{text}");
        let entry = text
            .split("Serial Number:")
            .find(|e| e.trim_start().starts_with(&upper))
            .unwrap_or_else(|| panic!("{upper} not listed in {crl:?}:\n{text}"));
        assert!(entry.contains("Affiliation Changed"), "{entry}");
    }
    let o = openssl(
        t,
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            path_str(&msp.join("root.pem")),
            "-CRLfile",
            path_str(&out.join("acme-handover-crl.pem")),
            path_str(&acme_pem),
        ],
    );
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        !o.status.success() && text.contains("certificate revoked"),
        "{text}"
    );

    // 5. The customer replaces the re-rooted certificate with one for a new key (the MSP could
    // read the old one), and revokes it as superseded, in one ceremony on their root.
    let rerooted_serial = x509(t, &rerooted, &["-serial"])
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase();
    assert_eq!(r["serial"], rerooted_serial.as_str());
    let new_key = t.join("acme-new.key");
    openssl_ok(
        t,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            path_str(&new_key),
            "-subj",
            "/CN=acme renewal request",
            "-out",
            path_str(&ex.join("in/acme-renew.csr")),
        ],
    );
    let before = ledger(&acme);
    let o = plan(&acme, "renew.yaml");
    let err = stderr(&o);
    assert!(!o.status.success(), "the placeholder serial was planned");
    assert!(
        err.contains("0123456789abcdef") && err.contains("kiwi-signer status"),
        "{err}"
    );
    assert_eq!(before, ledger(&acme), "the ledger changed");
    let status = stdout(&signer(&["status", "--ca", path_str(&acme)]));
    assert!(status.contains(&rerooted_serial), "{status}");
    let renew = ex.join("renew.yaml");
    let text = std::fs::read_to_string(&renew).expect("renew.yaml");
    assert_eq!(
        text.matches("serial: 0123456789abcdef").count(),
        2,
        "{text}"
    );
    std::fs::write(
        &renew,
        text.replace(
            "serial: 0123456789abcdef",
            &format!("serial: {rerooted_serial}"),
        ),
    )
    .expect("fill the serial");
    run_on(&acme, "renew.yaml", "acme-renew");
    let renewed = out.join("acme-renewed.pem");
    let o = openssl(
        t,
        &[
            "verify",
            "-CAfile",
            path_str(&acme_root),
            path_str(&renewed),
        ],
    );
    assert!(
        o.status.success(),
        "the renewal is not under the customer root: {}",
        stderr(&o)
    );
    let new_pub = openssl_ok(t, &["pkey", "-in", path_str(&new_key), "-pubout"]);
    assert_eq!(
        x509(t, &renewed, &["-pubkey"]),
        new_pub,
        "not the CSR's key"
    );
    assert_ne!(
        x509(t, &renewed, &["-pubkey"]),
        x509(t, &rerooted, &["-pubkey"])
    );
    for args in [
        &["-subject", "-nameopt", "RFC2253"][..],
        &["-ext", "nameConstraints"],
    ] {
        assert_eq!(
            x509(t, &rerooted, args),
            x509(t, &renewed, args),
            "{args:?} differs"
        );
    }
    let n = ledger_event(&acme, "renewed");
    assert_eq!(n["replaces"], rerooted_serial.as_str());
    assert_eq!(
        n["serial"],
        x509(t, &renewed, &["-serial"])
            .trim()
            .trim_start_matches("serial=")
            .to_ascii_lowercase()
            .as_str()
    );
    let upper = rerooted_serial.to_ascii_uppercase();
    for crl in ["acme-superseded-crl.pem", "acme-renew-closing-crl.pem"] {
        let crl = out.join(crl);
        let o = openssl(
            t,
            &[
                "crl",
                "-in",
                path_str(&crl),
                "-CAfile",
                path_str(&acme_root),
                "-noout",
                "-text",
            ],
        );
        let text = format!("{}{}", stdout(&o), stderr(&o));
        assert!(o.status.success() && text.contains("verify OK"), "{text}");
        let entry = text
            .split("Serial Number:")
            .find(|e| e.trim_start().starts_with(&upper))
            .unwrap_or_else(|| panic!("{upper} not listed in {crl:?}:\n{text}"));
        assert!(entry.contains("Superseded"), "{entry}");
    }
    for (cert, revoked) in [(&rerooted, true), (&renewed, false)] {
        let o = openssl(
            t,
            &[
                "verify",
                "-crl_check",
                "-CAfile",
                path_str(&acme_root),
                "-CRLfile",
                path_str(&out.join("acme-renew-closing-crl.pem")),
                path_str(cert),
            ],
        );
        let text = format!("{}{}", stdout(&o), stderr(&o));
        assert_eq!(
            !o.status.success() && text.contains("certificate revoked"),
            revoked,
            "{cert:?}: {text}"
        );
        assert_eq!(o.status.success(), !revoked, "{cert:?}: {text}");
    }

    // Each ceremony verifies on its own CA with the witness's signature.
    let ben = witness_key(t, "ben");
    let allowed = t.join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("ben@example.org namespaces=\"kiwi-ceremony\" {ben}"),
    )
    .expect("allowed");
    for (transcript, ca) in [
        ("acme-init", &acme),
        ("acme-reroot", &acme),
        ("msp-handover", &msp),
        ("acme-renew", &acme),
    ] {
        let dir = t.join(transcript);
        witness_sign(t, "ben", &dir.join("transcript.json"));
        let o = verify(&dir, ca, &allowed);
        assert!(
            o.status.success() && stdout(&o).contains("good signature by ben@example.org"),
            "{transcript}:\n{}{}",
            stdout(&o),
            stderr(&o)
        );
    }
    // The renewal is the artifact verify checks against the customer's ledger.
    let o = verify(&t.join("acme-renew"), &acme, &allowed);
    let text = stdout(&o);
    for needle in [
        "step 1 (renew): ledger head",
        "step 1: out/acme-renewed.pem matches the transcript and the ledger",
        "step 2: out/acme-superseded-crl.pem matches the transcript and the ledger",
    ] {
        assert!(text.contains(needle), "`{needle}` not in:\n{text}");
    }
    let orig = change_byte(&renewed, "MII");
    assert_fails(
        &verify(&t.join("acme-renew"), &acme, &allowed),
        "out/acme-renewed.pem",
        "with a changed renewed certificate",
    );
    std::fs::write(&renewed, orig).expect("restore");
}
