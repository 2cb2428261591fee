//! Intermediate renewal end to end (issue 12 items 6, 7; issue 16 item 4): `intermediate check`
//! warns at the threshold (Prometheus file read by a real parser), `renew --new-key` seals a
//! new key, `kiwi-signer sign` signs it, `install --replace` installs it (raising
//! `intermediate_renewed`) and names the old serial, which `kiwi-signer revoke` then revokes.
//! Checked with openssl and the real sops.

use std::process::Command;

use kiwi_e2e::{
    kiwictl, kiwictl_ok, openssl_ok, path_str, run_ok, stdout, venv_tool, workspace_root, Fixture,
};

#[test]
fn renewal_with_a_new_key_replaces_the_intermediate_and_check_warns_before_expiry() {
    let ca = Fixture::new();
    let w = &ca.work;
    let r = ca.installed_repo("acme", "mesh", &["--days", "20"]);
    let repo = path_str(&r.repo);
    let pol = workspace_root().join("policies");
    let pol = path_str(&pol);

    // 20 days left: due with a 30-day margin, fine with a 10-day one.
    let prom = ca.w("kiwi_intermediate.prom");
    let check = |warn: &str| {
        kiwictl(
            &[
                "intermediate",
                "check",
                "--repo",
                repo,
                "--warn-days",
                warn,
                "--json",
                "--prometheus",
                path_str(&prom),
            ],
            None,
        )
    };
    let due = check("30");
    assert_eq!(due.status.code(), Some(1), "{}", stdout(&due));
    let report: serde_json::Value = serde_json::from_str(&stdout(&due)).expect("json");
    assert_eq!(report[0]["verdict"], "due");
    assert_eq!(report[0]["slug"], "acme");
    let old_serial = ca.serial_of(&r.cert);
    assert_eq!(report[0]["serial"], old_serial.as_str());
    let script =
        "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\n\
                  for fam in p(open(sys.argv[1]).read()):\n    for s in fam.samples:\n        \
                  print(s.name, s.labels.get('slug', ''), float(s.value))\n";
    let samples = run_ok(
        Command::new(venv_tool("python"))
            .args(["-c", script])
            .arg(&prom),
    );
    assert!(
        samples.contains("kiwi_intermediate_valid acme 1.0"),
        "{samples}"
    );
    let secs: f64 = samples
        .lines()
        .find_map(|l| l.strip_prefix("kiwi_intermediate_not_after_seconds acme "))
        .expect("notAfter gauge")
        .parse()
        .expect("number");
    assert!((19.0 * 86400.0..=20.0 * 86400.0).contains(&secs), "{secs}");
    assert!(check("10").status.success());

    // Renewal with a new key: the CSR certifies another key; the current one keeps serving.
    let csr = ca.w("acme-renew.csr");
    kiwictl_ok(
        &[
            "intermediate",
            "renew",
            "--repo",
            repo,
            "--out",
            path_str(&csr),
            "--new-key",
            "--policies",
            pol,
        ],
        Some(&r.op_key),
    );
    let pubkey_of_cert =
        |c: &std::path::Path| openssl_ok(w, &["x509", "-in", path_str(c), "-noout", "-pubkey"]);
    let new_pub = openssl_ok(w, &["req", "-in", path_str(&csr), "-noout", "-pubkey"]);
    assert_ne!(new_pub, pubkey_of_cert(&r.cert));
    let pending = r.repo.join("secrets/intermediate.next.key.sops.yaml");
    assert!(pending.exists());

    let renewed = ca.sign(&csr, "acme", "mesh", "acme-renewed.crt");
    let seen = ca.w("seen.json");
    let hooks = ca.w("hooks.yaml");
    std::fs::write(
        &hooks,
        format!("hooks:\n  - name: record\n    event: intermediate_renewed\n    phase: post\n    timeout_secs: 10\n    run: [sh, -c, 'cat > {}']\n", seen.display()),
    )
    .expect("hooks");
    let install = |cert: &std::path::Path| {
        kiwictl(
            &[
                "intermediate",
                "install",
                "--repo",
                repo,
                "--cert",
                path_str(cert),
                "--root",
                path_str(&ca.root_pem()),
                "--policies",
                pol,
                "--hooks",
                path_str(&hooks),
                "--replace",
            ],
            Some(&r.op_key),
        )
    };
    let o = install(&renewed);
    assert!(o.status.success(), "{}", kiwi_e2e::stderr(&o));
    assert!(
        stdout(&o).contains(&format!("replaced {old_serial}: revoke it as superseded")),
        "{}",
        stdout(&o)
    );
    let event: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&seen).expect("hook ran")).expect("json");
    assert_eq!(event["event"], "intermediate_renewed");
    assert_eq!(event["serial"], ca.serial_of(&renewed).as_str());
    assert_eq!(event["details"]["replaced_serial"], old_serial.as_str());

    // The new key is the repo's key now (sops decrypts it; openssl matches it to the cert).
    assert!(!pending.exists());
    let key_doc = run_ok(
        Command::new(venv_tool("sops"))
            .args(["--decrypt", "--extract", "[\"key\"]"])
            .arg(r.repo.join("secrets/intermediate.key.sops.yaml"))
            .env_remove("SOPS_AGE_KEY")
            .env("SOPS_AGE_KEY_FILE", &r.op_key),
    );
    kiwi_e2e::write_private(&ca.w("new.key"), &key_doc);
    let key_pub = openssl_ok(w, &["pkey", "-in", "new.key", "-pubout"]);
    assert_eq!(key_pub, pubkey_of_cert(&renewed));
    let values = std::fs::read_to_string(r.repo.join("values/smallstep.yaml")).expect("values");
    let cert_body: String = std::fs::read_to_string(&renewed)
        .expect("cert")
        .lines()
        .nth(1)
        .expect("pem")
        .to_string();
    assert!(values.contains(&cert_body), "{values}");
    assert!(
        check("30").status.success(),
        "the renewed intermediate is not due"
    );

    // The same certificate again is refused; the old serial is revoked as superseded.
    let again = install(&renewed);
    assert!(!again.status.success());
    assert!(
        kiwi_e2e::stderr(&again).contains("installed already"),
        "{}",
        kiwi_e2e::stderr(&again)
    );
    let crl = ca.revoke(&old_serial, "superseded", "root.crl");
    let listed = openssl_ok(w, &["crl", "-in", path_str(&crl), "-noout", "-text"]);
    assert!(
        listed.to_lowercase().contains(&old_serial.to_lowercase()),
        "{listed}"
    );
}
