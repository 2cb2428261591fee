//! Provisioning hooks through the real `kiwi-signer`, and `kiwictl registry` and `crl check`
//! on real files: vetoes and bad input change nothing; post hooks see the event as JSON.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use kiwi_e2e::{bin, path_str, run, run_ok, stderr, stdout, Fixture};

fn hooks_file(f: &Fixture, body: &str) -> std::path::PathBuf {
    let p = f.w("hooks.yaml");
    std::fs::write(&p, format!("hooks:\n{body}")).expect("write hooks");
    p
}

#[test]
fn signer_pre_hooks_veto_and_post_hooks_get_the_event() {
    let f = Fixture::new();
    let csr = f.csr("acme", "P-256", &[]);
    let seen = f.w("seen.json");
    let hooks = hooks_file(
        &f,
        &format!(
            "  - name: freeze\n    event: intermediate_issued\n    phase: pre\n    timeout_secs: 5\n    run: [sh, -c, 'test ! -e {freeze} || {{ echo change freeze >&2; exit 3; }}']\n  - name: label\n    event: intermediate_issued\n    phase: post\n    timeout_secs: 5\n    run: [sh, -c, 'cat > {seen}']\n",
            freeze = f.w("FREEZE").display(),
            seen = seen.display()
        ),
    );
    let sign = |out: &str| {
        let out = f.w(out);
        let o = f.signer(&[
            "sign",
            "--csr",
            path_str(&csr),
            "--slug",
            "acme",
            "--tier",
            "core",
            "--out",
            path_str(&out),
            "--yes",
            "--hooks",
            path_str(&hooks),
        ]);
        (o, out)
    };

    // The veto: nothing written, the ledger unchanged, the hook's stderr shown.
    std::fs::write(f.w("FREEZE"), "").expect("freeze");
    let before = f.ledger_bytes();
    let (o, out) = sign("vetoed.pem");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("vetoed") && stderr(&o).contains("change freeze"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
    assert_eq!(before, f.ledger_bytes());
    assert!(!seen.exists(), "a post hook ran for a vetoed operation");

    // Allowed: the post hook gets the event, with public facts only.
    std::fs::remove_file(f.w("FREEZE")).expect("thaw");
    let (o, out) = sign("acme.pem");
    assert!(o.status.success(), "{}", stderr(&o));
    let event: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&seen).expect("post hook ran")).expect("JSON");
    assert_eq!(event["event"], "intermediate_issued");
    assert_eq!(event["phase"], "post");
    assert_eq!(event["slug"], "acme");
    assert_eq!(event["serial"].as_str(), Some(f.serial_of(&out).as_str()));
    let text = event.to_string();
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains(kiwi_e2e::PASSPHRASE),
        "{text}"
    );
    f.assert_ledger_ok();

    // The shipped ceremony hooks: copy the CRL to the transfer medium, print a label.
    let usb = f.w("usb");
    std::fs::create_dir(&usb).expect("mkdir");
    let signer = kiwi_e2e::bin("kiwi-signer");
    let ceremony = hooks_file(
        &f,
        &format!(
            "  - name: copy\n    event: crl_issued\n    phase: post\n    timeout_secs: 10\n    run: [{s}, hook, copy-to, --dest, {usb}]\n  - name: label\n    event: crl_issued\n    phase: post\n    timeout_secs: 10\n    run: [{s}, hook, label]\n",
            s = signer.display(),
            usb = usb.display()
        ),
    );
    let crl1 = f.w("crl1.pem");
    let o = f.signer(&[
        "crl",
        "--out",
        path_str(&crl1),
        "--hooks",
        path_str(&ceremony),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(usb.join("crl1.pem")).expect("copied to the medium"),
        std::fs::read(&crl1).expect("crl")
    );
    assert!(
        stdout(&o).contains("KiwiStack offline root — crl issued"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        std::fs::read_dir(&usb).expect("ls").count(),
        1,
        "more than the CRL was copied"
    );

    // A hooks file with an unknown key is refused before anything happens.
    let bad = hooks_file(
        &f,
        "  - name: x\n    event: crl_issued\n    phase: post\n    timeout_secs: 5\n    run: [true]\n    shell: bash\n",
    );
    let before = f.ledger_bytes();
    let crl = f.w("crl.pem");
    let o = f.signer(&["crl", "--out", path_str(&crl), "--hooks", path_str(&bad)]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("hooks[0]") && stderr(&o).contains("shell"),
        "{}",
        stderr(&o)
    );
    assert!(!crl.exists());
    assert_eq!(before, f.ledger_bytes());
}

#[test]
fn registry_validate_reports_every_problem_and_add_writes_valid_entries() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let platform = tmp.path();
    let kiwictl = bin("kiwictl");
    let add = run(Command::new(&kiwictl)
        .arg("registry")
        .arg("add")
        .arg(platform)
        .args([
            "--slug",
            "acme",
            "--tier",
            "mesh",
            "--jurisdiction",
            "BE",
            "--intelligence",
            "--core-base",
            "v1.4.2",
            "--mesh-base",
            "v0.7.1",
            "--intelligence-base",
            "v0.3.0",
        ]));
    assert!(add.status.success(), "{}", stderr(&add));
    let ok = run(Command::new(&kiwictl)
        .arg("registry")
        .arg("validate")
        .arg(platform));
    assert!(ok.status.success(), "{}", stderr(&ok));

    // An invalid entry: refused by `add`, nothing written.
    let bad_add = run(Command::new(&kiwictl)
        .arg("registry")
        .arg("add")
        .arg(platform)
        .args([
            "--slug",
            "globex",
            "--tier",
            "fleet",
            "--jurisdiction",
            "EU",
            "--core-base",
            "1.0",
        ]));
    assert!(!bad_add.status.success());
    let err = stderr(&bad_add);
    for needle in ["jurisdiction", "core-base", "mesh-base"] {
        assert!(err.contains(needle), "no `{needle}` in:\n{err}");
    }
    assert!(!platform.join("customers/globex.yaml").exists());

    // A hand-written bad entry: every problem listed with file and field, exit 1.
    std::fs::write(
        platform.join("customers/initech.yaml"),
        "slug: initech\ntier: core\njurisdiction: XX\nintelligence: maybe\nbase_versions:\n  core-base: v1.0\n",
    )
    .expect("write");
    let v = run(Command::new(&kiwictl)
        .arg("registry")
        .arg("validate")
        .arg(platform)
        .arg("--json"));
    assert_eq!(v.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_str(&stdout(&v)).expect("JSON");
    let fields: Vec<&str> = report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "jurisdiction",
            "intelligence",
            "base_versions.core-base",
            "cluster"
        ],
        "{report}"
    );
}

#[test]
fn crl_check_passes_a_fresh_crl_and_pages_when_due_or_foreign() {
    let f = Fixture::new();
    let crl = f.w("crl.pem");
    f.signer_ok(&["crl", "--out", path_str(&crl)]);
    let check = |root: &std::path::Path, warn: &str| {
        run(Command::new(bin("kiwictl"))
            .args(["crl", "check", "--crl"])
            .arg(&crl)
            .arg("--root")
            .arg(root)
            .args(["--warn-days", warn, "--json"]))
    };
    let ok = check(&f.root_pem(), "30");
    assert!(ok.status.success(), "{}{}", stdout(&ok), stderr(&ok));
    let report: serde_json::Value = serde_json::from_str(&stdout(&ok)).expect("JSON");
    assert_eq!(report["verdict"], "ok");
    assert_eq!(report["crl_number"], "1");
    // The root policy's CRL lives 180 days: a 200-day margin means a ceremony is due.
    let due = check(&f.root_pem(), "200");
    assert_eq!(due.status.code(), Some(1));
    assert!(stdout(&due).contains("\"due\""), "{}", stdout(&due));
    // Another root's CRL check fails.
    let other = Fixture::new();
    let foreign = check(&other.root_pem(), "30");
    assert_eq!(foreign.status.code(), Some(1));
    assert!(
        stdout(&foreign).contains("\"invalid\""),
        "{}",
        stdout(&foreign)
    );
}

/// The textfile-collector output parses with Prometheus's own Python parser, carries what the
/// alert rules in the README use, is replaced whole on the next run, and still says
/// `kiwi_crl_valid 0` when the CRL is another root's.
#[test]
fn crl_check_writes_prometheus_metrics_a_real_parser_reads() {
    let f = Fixture::new();
    let crl = f.w("crl.pem");
    f.signer_ok(&["crl", "--out", path_str(&crl)]);
    let prom = f.w("kiwi_crl.prom");
    let check = |root: &std::path::Path| {
        run(Command::new(bin("kiwictl"))
            .args(["crl", "check", "--crl"])
            .arg(&crl)
            .arg("--root")
            .arg(root)
            .arg("--prometheus")
            .arg(&prom))
    };
    let parse = || {
        let script = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\n\
                      for fam in p(open(sys.argv[1]).read()):\n    for s in fam.samples:\n        \
                      print(fam.type, s.name, s.labels['crl'], float(s.value))\n";
        run_ok(
            Command::new(kiwi_e2e::venv_tool("python"))
                .args(["-c", script])
                .arg(&prom),
        )
    };
    let ok = check(&f.root_pem());
    assert!(ok.status.success(), "{}", stderr(&ok));
    let samples = parse();
    let c = path_str(&crl);
    assert!(
        samples.contains(&format!("gauge kiwi_crl_valid {c} 1.0")),
        "{samples}"
    );
    assert!(
        samples.contains(&format!("gauge kiwi_crl_number {c} 1.0")),
        "{samples}"
    );
    assert!(
        samples.contains(&format!("gauge kiwi_crl_revoked_certificates {c} 0.0")),
        "{samples}"
    );
    // The root policy's CRL lives 180 days.
    let secs: f64 = samples
        .lines()
        .find_map(|l| l.strip_prefix(&format!("gauge kiwi_crl_next_update_seconds {c} ")))
        .expect("next update gauge")
        .parse()
        .expect("number");
    assert!(
        (179.0 * 86400.0..=180.0 * 86400.0).contains(&secs),
        "{secs}"
    );

    let other = Fixture::new();
    let bad = check(&other.root_pem());
    assert_eq!(bad.status.code(), Some(1));
    let samples = parse();
    assert!(
        samples.contains(&format!("gauge kiwi_crl_valid {c} 0.0")),
        "{samples}"
    );
    assert!(
        !samples.contains("kiwi_crl_number"),
        "stale samples kept: {samples}"
    );
    let mode = std::fs::metadata(&prom).expect("prom").permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "node_exporter runs as another user");
}

#[test]
fn hooks_get_no_secrets_from_the_signers_environment() {
    let f = Fixture::new();
    let dump = f.w("env.txt");
    let hooks = hooks_file(
        &f,
        &format!(
            "  - name: dump\n    event: crl_issued\n    phase: post\n    timeout_secs: 10\n    env: [DEPLOY_TARGET]\n    run: [sh, -c, 'env > {}']\n",
            dump.display()
        ),
    );
    let crl = f.w("crl.pem");
    let o = run(Command::new(bin("kiwi-signer"))
        .args([
            "crl",
            "--ca",
            path_str(&f.ca),
            "--pin-file",
            path_str(&f.pin),
        ])
        .args(["--out", path_str(&crl), "--hooks", path_str(&hooks)])
        .env(
            "SOPS_AGE_KEY",
            "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX",
        )
        .env("SOPS_AGE_KEY_FILE", f.w("operator.agekey"))
        .env(
            "BACKUP_KEY",
            "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ",
        )
        .env("DEPLOY_TARGET", "usb-stick")
        .env("LC_TIME", "C"));
    assert!(o.status.success(), "{}", stderr(&o));
    let env = std::fs::read_to_string(&dump).expect("the hook dumped its environment");
    assert!(
        !env.contains("AGE-SECRET-KEY") && !env.contains("SOPS_AGE_KEY"),
        "a hook saw a secret:\n{env}"
    );
    for wanted in [
        "DEPLOY_TARGET=usb-stick",
        "LC_TIME=C",
        "KIWI_HOOK_EVENT=crl_issued",
        "PATH=",
    ] {
        assert!(
            env.lines().any(|l| l.starts_with(wanted)),
            "{wanted} missing:\n{env}"
        );
    }
}
