//! The hand-over bundle (issue 12 items 4, 5, 7): `kiwictl churn export` on a real state repo
//! and `kiwictl churn verify` as the customer runs it, judged with the real `sops` (the
//! operator's key opens nothing, the customer's key opens everything), openssl and git.
//! Tampering (one byte in any file, a recipient added with `sops`, a file left to the operator)
//! fails the check; a Core-tier export is refused with nothing written. A re-root with an
//! extra permitted DNS name exports, and its renewal installs in the bundle's repo.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiwi_e2e::{
    age_keygen, kiwictl, kiwictl_ok, openssl_ok, path_str, run, run_ok, stderr, stdout, venv_tool,
    workspace_root, Fixture,
};

fn sops_decrypt(file: &Path, key: &Path) -> Output {
    run(Command::new(venv_tool("sops"))
        .arg("--decrypt")
        .arg(file)
        .env_remove("SOPS_AGE_KEY")
        .env("SOPS_AGE_KEY_FILE", key))
}

/// Every file under `dir` named `*.sops.yaml`.
fn sops_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() && e.file_name() != ".git" {
            out.extend(sops_files(&p));
        } else if path_str(&p).ends_with(".sops.yaml") && e.file_name() != ".sops.yaml" {
            out.push(p);
        }
    }
    out
}

fn copy_bundle(bundle: &Path, to: &Path) {
    run_ok(Command::new("cp").arg("-a").arg(bundle).arg(to));
}

fn verify(bundle: &Path, key: &Path) -> Output {
    kiwictl(
        &[
            "churn",
            "verify",
            path_str(bundle),
            "--identity",
            path_str(key),
            "--json",
        ],
        None,
    )
}

/// The failures `churn verify --json` names, as `check file` strings.
fn failures(o: &Output) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&stdout(o)).expect("verify --json");
    v["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .map(|f| {
            format!(
                "{} {} {}",
                f["check"].as_str().unwrap_or(""),
                f["file"].as_str().unwrap_or(""),
                f["message"]
            )
        })
        .collect()
}

/// Nothing named like the bundle (nor its staging directory) exists in `dir`.
fn assert_no_bundle(dir: &Path) {
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .expect("work")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("bundle"))
        .collect();
    assert!(leftovers.is_empty(), "a refused export left {leftovers:?}");
}

/// `churn verify` fails on `bundle`, with a failure starting with `prefix` and naming `needle`.
fn assert_fails_naming(bundle: &Path, key: &Path, prefix: &str, needle: &str) {
    let o = verify(bundle, key);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let named = failures(&o);
    assert!(
        named
            .iter()
            .any(|f| f.starts_with(prefix) && f.contains(needle)),
        "{named:?}"
    );
}

/// The serial of the certificate in `pem`, as the signer prints it.
fn serial_hex(ca: &Fixture, pem: &Path) -> String {
    kiwi_signer::x509::Serial::parse_hex(&ca.serial_of(pem))
        .expect("hex")
        .hex()
}

/// HANDOVER.md step 6 (a) and (b), with the customer's age key alone: a new key and its CSR in
/// the bundle's `repo` (`intermediate renew --new-key`), then the renewal of the re-rooted
/// certificate `serial` under the customer's root. Returns the renewed certificate.
fn renew_in_bundle(
    ca: &Fixture,
    customer: &Fixture,
    repo: &Path,
    key: &Path,
    serial: &str,
) -> PathBuf {
    let new_csr = ca.w("new.csr");
    kiwictl_ok(
        &[
            "intermediate",
            "renew",
            "--repo",
            path_str(repo),
            "--out",
            path_str(&new_csr),
            "--new-key",
            "--policies",
            path_str(&workspace_root().join("policies")),
        ],
        Some(key),
    );
    let new_pem = ca.w("new.pem");
    customer.signer_ok(&[
        "renew",
        "--serial",
        serial,
        "--csr",
        path_str(&new_csr),
        "--out",
        path_str(&new_pem),
        "--yes",
    ]);
    new_pem
}

#[test]
fn churn_bundle_is_the_customers_alone_and_any_tampering_fails_verify() {
    let ca = Fixture::new();
    let w = &ca.work;
    let cust_key = ca.w("customer.agekey");
    let cust = age_keygen(&cust_key);

    // A Core-tier repo is refused before anything is read or written.
    let core_op = age_keygen(&ca.w("core-op.agekey"));
    let core = ca.w("cust-tiny");
    kiwictl_ok(
        &[
            "repo",
            "init",
            path_str(&core),
            "--slug",
            "tiny",
            "--tier",
            "core",
            "--operator-age",
            &core_op,
            "--root",
            path_str(&ca.root_pem()),
        ],
        None,
    );
    // A Core cluster's shared sub-CA repo is no customer's: refused too.
    let shared = ca.w("core-shared-eu1");
    kiwictl_ok(
        &[
            "repo",
            "init",
            path_str(&shared),
            "--shared",
            "--slug",
            "core-eu1",
            "--tier",
            "core",
            "--operator-age",
            &core_op,
            "--root",
            path_str(&ca.root_pem()),
        ],
        None,
    );
    // The customer's own root (`init --org`).
    let customer = Fixture::with_root(
        &workspace_root().join("policies/customer-root.yaml"),
        &["--org", "Acme GmbH"],
    );
    let customer_root = customer.root_pem();
    let out = ca.w("bundle");
    let export = |repo: &Path, cert: &Path, crl: &Path, extra: &[&str], key: &Path| {
        let mut args = vec![
            "churn",
            "export",
            "--repo",
            path_str(repo),
            "--customer-age",
            &cust,
            "--root",
            path_str(&customer_root),
            "--cert",
            path_str(cert),
            "--msp-crl",
            path_str(crl),
            "--out",
            path_str(&out),
        ];
        args.extend_from_slice(extra);
        let mut cmd = Command::new(kiwi_e2e::bin("kiwictl"));
        cmd.current_dir(w)
            .args(&args)
            .env_remove("SOPS_AGE_KEY")
            .env("SOPS_AGE_KEY_FILE", key);
        run(&mut cmd)
    };

    // The MSP side: acme (mesh) with an installed intermediate; the customer's root re-roots
    // it; the MSP hands it over (revoked as affiliationChanged).
    let r = ca.installed_repo("acme", "mesh", &[]);
    run_ok(
        Command::new("git")
            .arg("-C")
            .arg(&r.repo)
            .args(["init", "-q"]),
    );
    run_ok(
        Command::new("git")
            .arg("-C")
            .arg(&r.repo)
            .args(["add", "-A"]),
    );
    run_ok(Command::new("git").arg("-C").arg(&r.repo).args([
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@e",
        "commit",
        "-qm",
        "onboarded",
    ]));
    let current_crl = ca.w("msp-current.crl");
    ca.signer_ok(&["crl", "--out", path_str(&current_crl)]);
    let rerooted = ca.w("rerooted.pem");
    customer.signer_ok(&[
        "reroot",
        "--cert",
        path_str(&r.cert),
        "--msp-root",
        path_str(&ca.root_pem()),
        "--msp-crl",
        path_str(&current_crl),
        "--out",
        path_str(&rerooted),
        "--yes",
    ]);
    let old_serial = ca.serial_of(&r.cert);
    let msp_crl = ca.w("msp.crl");
    ca.signer_ok(&[
        "handover",
        "--serial",
        &old_serial,
        "--new-root",
        path_str(&customer_root),
        "--out",
        path_str(&msp_crl),
        "--yes",
    ]);

    let o = export(&core, &rerooted, &msp_crl, &[], &ca.w("core-op.agekey"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("core-tier customer"), "{}", stderr(&o));
    assert_no_bundle(w);
    let o = export(&shared, &rerooted, &msp_crl, &[], &ca.w("core-op.agekey"));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("shared sub-CA") && stderr(&o).contains("nothing was written"),
        "{}",
        stderr(&o)
    );
    assert_no_bundle(w);

    // The MSP-issued certificate is not a re-rooted one: refused, nothing written.
    let o = export(&r.repo, &r.cert, &msp_crl, &[], &r.op_key);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("does not chain to the customer root"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());

    // A file the operator cannot open fails the re-encryption mid-way: the staging directory
    // goes, nothing is left behind.
    let foreign = r.repo.join("secrets/foreign.sops.yaml");
    std::fs::write(&foreign, "a: b\n").expect("plaintext");
    run_ok(
        Command::new(venv_tool("sops"))
            .args(["--encrypt", "--in-place", "--age", &cust])
            .arg(&foreign)
            .current_dir(w),
    );
    let o = export(&r.repo, &rerooted, &msp_crl, &[], &r.op_key);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("secrets/foreign.sops.yaml"),
        "{}",
        stderr(&o)
    );
    assert_no_bundle(w);
    std::fs::remove_file(&foreign).expect("remove");

    // The export, with its handed_over post hook.
    let seen = ca.w("seen.json");
    let hooks = ca.w("hooks.yaml");
    std::fs::write(
        &hooks,
        format!("hooks:\n  - name: record\n    event: handed_over\n    phase: post\n    timeout_secs: 10\n    run: [sh, -c, 'cat > {}']\n", seen.display()),
    )
    .expect("hooks");
    let o = export(
        &r.repo,
        &rerooted,
        &msp_crl,
        &["--hooks", path_str(&hooks)],
        &r.op_key,
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let event: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&seen).expect("hook ran")).expect("json");
    assert_eq!(event["event"], "handed_over");
    assert_eq!(event["tool"], "kiwictl");
    assert_eq!(event["slug"], "acme");
    assert_eq!(event["details"]["previous_serial"], old_serial.as_str());

    // The real sops: the operator's key opens no file of the bundle, the customer's opens all.
    let files = sops_files(&out.join("repo"));
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        let o = sops_decrypt(f, &r.op_key);
        assert!(
            !o.status.success(),
            "the operator's key still opens {}",
            f.display()
        );
        let o = sops_decrypt(f, &cust_key);
        assert!(o.status.success(), "{}: {}", f.display(), stderr(&o));
    }
    // A new data key: no ciphertext is shared with the MSP's repo.
    let old_key_file =
        std::fs::read_to_string(r.repo.join("secrets/intermediate.key.sops.yaml")).expect("old");
    let new_key_file =
        std::fs::read_to_string(out.join("repo/secrets/intermediate.key.sops.yaml")).expect("new");
    let enc = |t: &str| {
        t.lines()
            .find(|l| l.contains("ENC["))
            .map(str::to_string)
            .expect("ENC")
    };
    assert_ne!(enc(&old_key_file), enc(&new_key_file));
    // The chain verifies with openssl; a fresh history of one commit; the instructions.
    openssl_ok(
        w,
        &[
            "verify",
            "-CAfile",
            path_str(&out.join("customer-root.pem")),
            path_str(&out.join("intermediate.pem")),
        ],
    );
    let count = run_ok(
        Command::new("git")
            .arg("-C")
            .arg(out.join("repo"))
            .args(["rev-list", "--count", "HEAD"]),
    );
    assert_eq!(count.trim(), "1");
    let handover = std::fs::read_to_string(out.join("HANDOVER.md")).expect("HANDOVER.md");
    assert!(
        handover.contains("secrets/intermediate.key.sops.yaml") && handover.contains(&old_serial),
        "{handover}"
    );
    // The customer's root cannot sign a renewal yet: HANDOVER.md says so, and when the
    // re-rooted certificate expires.
    let end = openssl_ok(
        w,
        &["x509", "-in", path_str(&rerooted), "-noout", "-enddate"]
            .into_iter()
            .chain(["-dateopt", "iso_8601"])
            .collect::<Vec<_>>(),
    );
    let end_date = end
        .trim_start_matches("notAfter=")
        .split(' ')
        .next()
        .expect("date");
    // Step 6 is the renewal under the customer's root, with the re-rooted serial to revoke.
    let rerooted_serial = serial_hex(&ca, &rerooted);
    assert!(
        handover.contains(&format!("`intermediate.pem` expires on {end_date}"))
            && handover.contains("kiwictl intermediate renew --repo repo --out new.csr --new-key")
            && handover.contains(&format!(
                "kiwi-signer renew --ca YOUR_ROOT_CA --serial {rerooted_serial} --csr new.csr --out new.pem"
            ))
            && handover.contains(
                "kiwictl intermediate install --repo repo --cert new.pem --root customer-root.pem --replace"
            )
            && handover.contains(&format!(
                "kiwi-signer revoke --ca YOUR_ROOT_CA --serial {rerooted_serial} --reason superseded"
            )),
        "{handover}"
    );
    run_ok(
        Command::new("sha256sum")
            .current_dir(&out)
            .args(["-c", "--quiet", "MANIFEST"]),
    );

    // The customer's check passes.
    let o = verify(&out, &cust_key);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    // ... and not with the operator's key.
    assert!(!verify(&out, &r.op_key).status.success());

    // One changed byte in any file fails it, naming the file.
    let listed: Vec<String> = std::fs::read_to_string(out.join("MANIFEST"))
        .expect("MANIFEST")
        .lines()
        .map(|l| l.split_once("  ").expect("manifest line").1.to_string())
        .chain(["MANIFEST".to_string()])
        .collect();
    for (i, rel) in listed.iter().enumerate() {
        let copy = ca.w(&format!("tampered-{i}"));
        copy_bundle(&out, &copy);
        let p = copy.join(rel);
        let mut bytes = std::fs::read(&p).expect("read");
        if bytes.is_empty() {
            bytes.push(b'\n'); // an empty file (.gitkeep) gets its one byte
        } else {
            let at = bytes.len() / 2;
            bytes[at] ^= 0x01;
        }
        std::fs::write(&p, bytes).expect("write");
        let o = verify(&copy, &cust_key);
        assert_eq!(o.status.code(), Some(1), "a changed byte in {rel} passed");
        let named = failures(&o);
        assert!(
            rel == "MANIFEST"
                || named
                    .iter()
                    .any(|f| f.starts_with(&format!("manifest {rel} "))),
            "{rel}: {named:?}"
        );
        std::fs::remove_dir_all(&copy).expect("clean");
    }

    // A recipient added with the real sops fails it.
    let copy = ca.w("added-recipient");
    copy_bundle(&out, &copy);
    let target = copy.join("repo/secrets/smallstep.sops.yaml");
    run_ok(
        Command::new(venv_tool("sops"))
            .args(["rotate", "--in-place", "--add-age", &r.op])
            .arg(&target)
            .env_remove("SOPS_AGE_KEY")
            .env("SOPS_AGE_KEY_FILE", &cust_key),
    );
    assert_fails_naming(
        &copy,
        &cust_key,
        "sops repo/secrets/smallstep.sops.yaml",
        &r.op,
    );

    // A file left decryptable by the operator's key fails it.
    let copy = ca.w("left-behind");
    copy_bundle(&out, &copy);
    std::fs::copy(
        r.repo.join("secrets/smallstep.sops.yaml"),
        copy.join("repo/secrets/smallstep.sops.yaml"),
    )
    .expect("copy");
    assert_fails_naming(
        &copy,
        &cust_key,
        "sops repo/secrets/smallstep.sops.yaml",
        "does not decrypt with your key",
    );

    // --out exists: refused. --keep-history elsewhere: the MSP's commit stays, with a warning.
    let o = export(&r.repo, &rerooted, &msp_crl, &[], &r.op_key);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("exists already"), "{}", stderr(&o));
    std::fs::rename(&out, ca.w("first-bundle")).expect("move");
    let o = export(&r.repo, &rerooted, &msp_crl, &["--keep-history"], &r.op_key);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("git history holds every earlier version"),
        "{}",
        stderr(&o)
    );
    let count = run_ok(
        Command::new("git")
            .arg("-C")
            .arg(out.join("repo"))
            .args(["rev-list", "--count", "HEAD"]),
    );
    assert_eq!(count.trim(), "2");
    assert!(verify(&out, &cust_key).status.success());

    // HANDOVER.md step 6, as the customer runs it on the bundle with their age key alone: a
    // new key and CSR in the repo, the renewal under their root, install --replace, and the
    // re-rooted certificate revoked on their CRL.
    let bundle = ca.w("renew-bundle");
    copy_bundle(&ca.w("first-bundle"), &bundle);
    let repo = bundle.join("repo");
    let policies = workspace_root().join("policies");
    let pol = path_str(&policies);
    let new_pem = renew_in_bundle(&ca, &customer, &repo, &cust_key, &rerooted_serial);
    let installed = kiwictl_ok(
        &[
            "intermediate",
            "install",
            "--repo",
            path_str(&repo),
            "--cert",
            path_str(&new_pem),
            "--root",
            path_str(&bundle.join("customer-root.pem")),
            "--replace",
            "--policies",
            pol,
        ],
        Some(&cust_key),
    );
    assert!(installed.contains(&rerooted_serial), "{installed}");
    let doc = sops_decrypt(&repo.join("secrets/intermediate.crt.sops.yaml"), &cust_key);
    assert!(doc.status.success(), "{}", stderr(&doc));
    let new_serial = serial_hex(&ca, &new_pem);
    assert!(stdout(&doc).contains(&new_serial), "{}", stdout(&doc));
    // The pending new key became the repo's key (install checked it is the certificate's).
    let key_doc = sops_decrypt(&repo.join("secrets/intermediate.key.sops.yaml"), &cust_key);
    assert!(key_doc.status.success(), "{}", stderr(&key_doc));
    assert!(!repo
        .join("secrets/intermediate.next.key.sops.yaml")
        .exists());
    // During the transition both roots stay in step-ca's root_ca.
    let values = std::fs::read_to_string(repo.join("values/smallstep.yaml")).expect("values");
    assert_eq!(values.matches("BEGIN CERTIFICATE").count(), 3, "{values}");
    let crl = customer.revoke(&rerooted_serial, "superseded", "customer-1.crl");
    let crl_check = ["-crl_check", "-CRLfile", path_str(&crl)];
    let check = |cert: &Path| {
        let mut args = vec!["verify"];
        args.extend_from_slice(&crl_check);
        args.extend(["-CAfile", path_str(&customer_root), path_str(cert)]);
        kiwi_e2e::openssl(w, &args).status.success()
    };
    assert!(!check(&rerooted), "the re-rooted certificate is revoked");
    assert!(check(&new_pem), "the renewed certificate verifies");
}

/// A customer who re-rooted with `--permit-dns acme.example`: the bundle's export takes that
/// certificate, and the bundle repo installs a renewal of it (`install --replace`, the
/// customer's root pinned since the export) although its name constraints are the tier
/// policy's plus acme.example. (That the check without a hand-over refuses the extra name is
/// `intermediate`'s unit test: no MSP-root tool issues one.)
#[test]
fn a_reroot_with_extra_permitted_names_exports_and_its_renewal_installs() {
    let ca = Fixture::new();
    let w = &ca.work;
    let cust_key = ca.w("customer.agekey");
    let cust = age_keygen(&cust_key);
    let customer = Fixture::with_root(
        &workspace_root().join("policies/customer-root.yaml"),
        &["--org", "Acme GmbH"],
    );
    let customer_root = customer.root_pem();
    let policies = workspace_root().join("policies");
    let pol = path_str(&policies);

    let r = ca.installed_repo("acme", "mesh", &[]);
    let current_crl = ca.w("msp-current.crl");
    ca.signer_ok(&["crl", "--out", path_str(&current_crl)]);
    let rerooted = ca.w("rerooted.pem");
    customer.signer_ok(&[
        "reroot",
        "--cert",
        path_str(&r.cert),
        "--msp-root",
        path_str(&ca.root_pem()),
        "--msp-crl",
        path_str(&current_crl),
        "--permit-dns",
        "acme.example",
        "--out",
        path_str(&rerooted),
        "--yes",
    ]);
    let nc = openssl_ok(
        w,
        &[
            "x509",
            "-in",
            path_str(&rerooted),
            "-noout",
            "-ext",
            "nameConstraints",
        ],
    );
    assert!(nc.contains("DNS:acme.example"), "{nc}");
    let old_serial = ca.serial_of(&r.cert);
    let msp_crl = ca.w("msp.crl");
    ca.signer_ok(&[
        "handover",
        "--serial",
        &old_serial,
        "--new-root",
        path_str(&customer_root),
        "--out",
        path_str(&msp_crl),
        "--yes",
    ]);

    // The export takes the re-rooted certificate with the extra subtree.
    let out = ca.w("bundle");
    let mut cmd = Command::new(kiwi_e2e::bin("kiwictl"));
    cmd.current_dir(w)
        .args([
            "churn",
            "export",
            "--repo",
            path_str(&r.repo),
            "--customer-age",
            &cust,
            "--root",
            path_str(&customer_root),
            "--cert",
            path_str(&rerooted),
            "--msp-crl",
            path_str(&msp_crl),
            "--out",
            path_str(&out),
        ])
        .env_remove("SOPS_AGE_KEY")
        .env("SOPS_AGE_KEY_FILE", &r.op_key);
    let o = run(&mut cmd);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let o = verify(&out, &cust_key);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));

    // The renewal under the customer's root keeps the extra subtree; install --replace takes it.
    let repo = out.join("repo");
    let rerooted_serial = serial_hex(&ca, &rerooted);
    let new_pem = renew_in_bundle(&ca, &customer, &repo, &cust_key, &rerooted_serial);
    let nc_new = openssl_ok(
        w,
        &[
            "x509",
            "-in",
            path_str(&new_pem),
            "-noout",
            "-ext",
            "nameConstraints",
        ],
    );
    assert_eq!(nc, nc_new);
    let install = |cert: &Path, root: &Path, repo: &Path, key: &Path| {
        kiwictl(
            &[
                "intermediate",
                "install",
                "--repo",
                path_str(repo),
                "--cert",
                path_str(cert),
                "--root",
                path_str(root),
                "--replace",
                "--policies",
                pol,
            ],
            Some(key),
        )
    };
    let o = install(&new_pem, &out.join("customer-root.pem"), &repo, &cust_key);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains(&rerooted_serial), "{}", stdout(&o));
    let doc = sops_decrypt(&repo.join("secrets/intermediate.crt.sops.yaml"), &cust_key);
    let new_serial = serial_hex(&ca, &new_pem);
    assert!(stdout(&doc).contains(&new_serial), "{}", stdout(&doc));
}
