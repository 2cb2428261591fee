//! Issue 13: a real step-ca (smallstep's, built offline from Debian's 0.19 sources by
//! `scripts/build-step-ca`) starts from what `kiwictl intermediate install` wrote, decrypted from
//! the state repo by the real sops, and serves a TLS chain that `openssl s_client
//! -verify_return_error` accepts with the MSP root alone; `/health` answers ok. After a
//! hand-over (issue 12), the bundle's repo, decrypted with the customer's age key alone, starts
//! a step-ca whose chain verifies against the customer's root and not the MSP's. The Core tier:
//! `intermediate request` refuses a Core repo naming the tier and `provisioner add`; `provisioner
//! add` records each tenant's ACME provisioner and template; `provisioner gather` puts every
//! tenant's provisioner into the shared CA's configuration, which step-ca starts with, from the
//! shared sub-CA made by `repo init --shared`, `intermediate request` and `intermediate install`
//! on its repo in the platform repo (no key in plaintext on disk).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use kiwi_e2e::{
    age_keygen, free_port, kiwictl, kiwictl_ok, openssl_ok, path_str, run, run_ok, sops_decrypt,
    stderr, stdout, write_private, x509_template_check, Fixture, StepCa,
};

/// A 0700 directory for decrypted materials (removed with the fixture's temporary directory).
fn private_dir(path: &Path) -> PathBuf {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .expect("private dir");
    path.to_path_buf()
}

fn yaml_file(path: &Path) -> Value {
    serde_yaml_ng::from_slice(&std::fs::read(path).expect("read")).expect("yaml")
}

/// The PEM certificates in `pem`, each with its END line.
fn pem_certs(pem: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    pem.split_inclusive(END)
        .filter(|c| c.contains("-----BEGIN CERTIFICATE-----"))
        .map(|c| format!("{}\n", c.trim_start()))
        .collect()
}

/// `openssl s_client -verify_return_error` against the CA at `port` for `dns_name`, trusting
/// `cafile` alone: whether it verified the chain (exit 0 and verify code 0) and what it said.
fn s_client(port: u16, cafile: &Path, dns_name: &str) -> (bool, String) {
    let o = run(Command::new("openssl")
        .args(["s_client", "-verify_return_error", "-CAfile"])
        .arg(cafile)
        .args(["-servername", dns_name, "-verify_hostname", dns_name])
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .stdin(std::process::Stdio::null()));
    let text = format!("{}{}", stdout(&o), stderr(&o));
    (
        o.status.success() && text.contains("Verify return code: 0 (ok)"),
        text,
    )
}

/// Starts step-ca in the new private directory `dir` on `values` (chart values: ca.json and
/// certificates) with the decrypted `secrets` (chart values: key and password), checks /health
/// and the TLS chain for `dns_name` against `root` with openssl, and returns it running
/// (stopped on drop).
fn start_and_check(
    dir: &Path,
    values: &Value,
    secrets: &Value,
    root: &Path,
    dns_name: &str,
) -> StepCa {
    let dir = private_dir(dir);
    let files = &values["inject"]["config"]["files"];
    assert_eq!(values["inject"]["enabled"], true, "inject.enabled");
    assert_eq!(files["ca.json"]["dnsNames"], serde_json::json!([dns_name]));
    let certs = &values["inject"]["certificates"];
    std::fs::write(
        dir.join("root_ca.crt"),
        certs["root_ca"].as_str().expect("root_ca"),
    )
    .expect("w");
    std::fs::write(
        dir.join("intermediate_ca.crt"),
        certs["intermediate_ca"].as_str().expect("intermediate_ca"),
    )
    .expect("w");
    let sec = &secrets["inject"]["secrets"];
    write_private(
        &dir.join("intermediate_ca_key"),
        sec["x509"]["intermediate_ca_key"].as_str().expect("key"),
    );
    // The chart base64-decodes ca_password into the password file step-ca reads.
    let b64 = dir.join("password.b64");
    write_private(&b64, sec["ca_password"].as_str().expect("ca_password"));
    let password = run_ok(Command::new("base64").arg("-d").arg(&b64));
    write_private(&dir.join("password"), &password);
    let port = free_port();
    let mut ca_json =
        kiwi_tooling::stepca::localise(&files["ca.json"], &dir, &format!("127.0.0.1:{port}"));
    // A hand-over bundle's root_ca holds two roots (the customer's, then the MSP's). Current
    // step-ca reads `root` as a bundle (pemutil.ReadCertificateBundle); 0.19, built here, reads
    // one certificate per file and stops at a second ("contains more than one PEM encoded
    // block"). So each root gets its own file, all listed in `root` (0.19 takes a list): the
    // same roots, in the same order, current step-ca loads from the one file.
    let roots = pem_certs(certs["root_ca"].as_str().expect("root_ca"));
    if roots.len() > 1 {
        let files: Vec<String> = roots
            .iter()
            .enumerate()
            .map(|(i, pem)| {
                let f = dir.join(format!("root_ca-{i}.crt"));
                std::fs::write(&f, pem).expect("w");
                path_str(&f).to_string()
            })
            .collect();
        ca_json["root"] = serde_json::json!(files);
    }
    let config = dir.join("ca.json");
    std::fs::write(&config, serde_json::to_vec_pretty(&ca_json).expect("json")).expect("w");
    let ca = StepCa::start(&dir, &config, &dir.join("password"), port, dns_name, root);

    // The TLS chain, for the CA's own name, verifies against `root` alone.
    let (ok, text) = s_client(ca.port, root, dns_name);
    assert!(
        ok,
        "openssl s_client refused the chain:\n{text}\nstep-ca:\n{}",
        ca.log_text()
    );
    // /roots answers over that chain.
    let roots = ca.get(dns_name, root, "/roots");
    assert!(roots.status.success(), "{}", stderr(&roots));
    ca
}

/// `kiwictl repo init` of `cust-SLUG` in the fixture's directory for `tier`, encrypting to `op`.
fn repo_init(ca: &Fixture, op: &str, slug: &str, tier: &str) -> PathBuf {
    let repo = ca.tmp.path().join(format!("cust-{slug}"));
    kiwictl_ok(
        &[
            "repo",
            "init",
            path_str(&repo),
            "--slug",
            slug,
            "--tier",
            tier,
            "--operator-age",
            op,
            "--root",
            path_str(&ca.root_pem()),
        ],
        None,
    );
    repo
}

#[test]
fn a_real_step_ca_starts_from_what_intermediate_install_wrote() {
    let ca = Fixture::new();
    let t = ca.tmp.path();
    let pol = path_str(&kiwi_e2e::workspace_root().join("policies")).to_string();
    let op_key = t.join("operator.agekey");
    let op = age_keygen(&op_key);
    let repo = repo_init(&ca, &op, "acme", "mesh");
    let csr = ca.w("acme.csr");
    kiwictl_ok(
        &[
            "intermediate",
            "request",
            "--repo",
            path_str(&repo),
            "--out",
            path_str(&csr),
            "--policies",
            &pol,
        ],
        None,
    );
    let cert = ca.sign(&csr, "acme", "mesh", "acme.crt");
    kiwictl_ok(
        &[
            "intermediate",
            "install",
            "--repo",
            path_str(&repo),
            "--cert",
            path_str(&cert),
            "--root",
            path_str(&ca.root_pem()),
            "--policies",
            &pol,
        ],
        Some(&op_key),
    );
    let values = yaml_file(&repo.join("values/smallstep.yaml"));
    // defaults.json pins the MSP root by the fingerprint openssl computes.
    let fp = openssl_ok(
        &ca.work,
        &[
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
            path_str(&ca.root_pem()),
        ],
    );
    let fp = fp.trim().rsplit('=').next().expect("fp").replace(':', "");
    let defaults = &values["inject"]["config"]["files"]["defaults.json"];
    assert_eq!(
        defaults["fingerprint"].as_str(),
        Some(fp.to_lowercase().as_str())
    );
    assert_eq!(
        defaults["ca-url"].as_str(),
        Some("https://ca.acme.od.kiwistack.io")
    );
    assert_eq!(values["bootstrap"]["enabled"], false);
    // The secrets stay encrypted in the repo; the real sops decrypts them into memory.
    let secrets_file = repo.join("secrets/smallstep.sops.yaml");
    assert!(!std::fs::read_to_string(&secrets_file)
        .expect("secrets")
        .contains("PRIVATE KEY-----\n"));
    let d = sops_decrypt(&secrets_file, &op_key);
    assert!(d.status.success(), "{}", stderr(&d));
    let secrets: Value = serde_yaml_ng::from_slice(&d.stdout).expect("yaml");
    let name = "ca.acme.od.kiwistack.io";
    drop(start_and_check(
        &ca.w("step"),
        &values,
        &secrets,
        &ca.root_pem(),
        name,
    ));

    // After the hand-over (issue 12): acme's own root re-roots the intermediate, the MSP revokes
    // its certificate, and the bundle's repo, decrypted with acme's age key alone, starts a
    // step-ca whose chain verifies against acme's root and no longer against the MSP's.
    let customer = Fixture::with_root(
        &kiwi_e2e::workspace_root().join("policies/customer-root.yaml"),
        &["--org", "Acme GmbH"],
    );
    let cust_key = t.join("customer.agekey");
    let cust = age_keygen(&cust_key);
    let crl = ca.w("msp-current.crl");
    ca.signer_ok(&["crl", "--out", path_str(&crl)]);
    let rerooted = ca.w("rerooted.pem");
    customer.signer_ok(&[
        "reroot",
        "--cert",
        path_str(&cert),
        "--msp-root",
        path_str(&ca.root_pem()),
        "--msp-crl",
        path_str(&crl),
        "--out",
        path_str(&rerooted),
        "--yes",
    ]);
    let msp_crl = ca.w("msp-handover.crl");
    ca.signer_ok(&[
        "handover",
        "--serial",
        &ca.serial_of(&cert),
        "--new-root",
        path_str(&customer.root_pem()),
        "--out",
        path_str(&msp_crl),
        "--yes",
    ]);
    let bundle = t.join("bundle");
    kiwictl_ok(
        &[
            "churn",
            "export",
            "--repo",
            path_str(&repo),
            "--customer-age",
            &cust,
            "--root",
            path_str(&customer.root_pem()),
            "--cert",
            path_str(&rerooted),
            "--msp-crl",
            path_str(&msp_crl),
            "--out",
            path_str(&bundle),
        ],
        Some(&op_key),
    );
    let values = yaml_file(&bundle.join("repo/values/smallstep.yaml"));
    let secrets_file = bundle.join("repo/secrets/smallstep.sops.yaml");
    assert!(
        !sops_decrypt(&secrets_file, &op_key).status.success(),
        "the operator's key still opens the bundle's step-ca secrets"
    );
    let d = sops_decrypt(&secrets_file, &cust_key);
    assert!(d.status.success(), "{}", stderr(&d));
    let secrets: Value = serde_yaml_ng::from_slice(&d.stdout).expect("yaml");
    let customer_root = bundle.join("customer-root.pem");
    let step = start_and_check(
        &ca.w("step-handover"),
        &values,
        &secrets,
        &customer_root,
        name,
    );
    // During the transition step-ca hands out both roots (HANDOVER.md): acme's, then the MSP's.
    let served = step.get(name, &customer_root, "/roots");
    assert!(served.status.success(), "{}", stderr(&served));
    let served: Value = serde_json::from_slice(&served.stdout).expect("/roots json");
    let pem = |text: &str| text.replace("\r\n", "\n").trim().to_string();
    let read = |f: &Path| pem(&std::fs::read_to_string(f).expect("root"));
    let crts: Vec<String> = served["crts"]
        .as_array()
        .expect("crts")
        .iter()
        .map(|c| pem(c.as_str().expect("pem")))
        .collect();
    assert_eq!(crts, [read(&customer_root), read(&ca.root_pem())]);
    // The served intermediate is issued by acme's root: the MSP root alone refuses the chain.
    let (ok, text) = s_client(step.port, &ca.root_pem(), name);
    assert!(
        !ok && text.contains("unable to get local issuer certificate"),
        "the MSP root accepted the handed-over chain (or the CA did not answer):\n{text}"
    );
}

/// `kiwictl intermediate install` of `cert` into `repo` with the operator's key.
fn install(repo: &Path, cert: &Path, root: &Path, op_key: &Path) -> std::process::Output {
    let pol = path_str(&kiwi_e2e::workspace_root().join("policies")).to_string();
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
            "--policies",
            &pol,
        ],
        Some(op_key),
    )
}

/// The cluster's shared sub-CA made the way an operator makes it, with no key in plaintext on
/// disk: `kiwictl repo init --shared` of the platform repo's `core-shared/CLUSTER`, `intermediate
/// request` on it (the shared policy's key; it prints the `kiwi-signer sign --shared` line),
/// `kiwi-signer sign --shared` under `policies/intermediate-core-shared.yaml`, `intermediate
/// install` (checked against that policy). Returns the shared repo.
fn shared_sub_ca(ca: &Fixture, op: &str, op_key: &Path, platform: &Path, cluster: &str) -> PathBuf {
    let repo = platform.join("core-shared").join(cluster);
    let init = |tier: &str| {
        kiwictl(
            &[
                "repo",
                "init",
                path_str(&repo),
                "--shared",
                "--slug",
                cluster,
                "--tier",
                tier,
                "--operator-age",
                op,
                "--root",
                path_str(&ca.root_pem()),
            ],
            None,
        )
    };
    let o = init("mesh");
    assert!(
        !o.status.success() && stderr(&o).contains("pass --tier core") && !repo.exists(),
        "{}",
        stderr(&o)
    );
    let o = init("core");
    assert!(o.status.success(), "{}", stderr(&o));
    let marker = std::fs::read_to_string(repo.join(".kiwi/repo.yaml")).expect("marker");
    assert!(marker.contains("shared: true"), "{marker}");
    // Not a tenant: no provisioner of its own.
    let o = kiwictl(&["provisioner", "add", "--repo", path_str(&repo)], None);
    assert!(
        !o.status.success() && stderr(&o).contains("shared sub-CA, not a tenant"),
        "{}",
        stderr(&o)
    );

    let csr = ca.w("shared.csr");
    let pol = path_str(&kiwi_e2e::workspace_root().join("policies")).to_string();
    let said = kiwictl_ok(
        &[
            "intermediate",
            "request",
            "--repo",
            path_str(&repo),
            "--out",
            path_str(&csr),
            "--policies",
            &pol,
        ],
        None,
    );
    assert!(
        said.contains(&format!(
            "kiwi-signer sign --csr shared.csr --slug {cluster} --tier core --shared --out {cluster}.crt"
        )),
        "{said}"
    );
    let key_file = repo.join("secrets/intermediate.key.sops.yaml");
    let sealed = std::fs::read_to_string(&key_file).expect("key file");
    assert!(!sealed.contains("PRIVATE KEY"), "{sealed}");
    let d = sops_decrypt(&key_file, op_key);
    assert!(
        d.status.success() && stdout(&d).contains("BEGIN PRIVATE KEY"),
        "{}",
        stderr(&d)
    );

    let sign = |tier: &str, shared: bool, out: &str| {
        let out = ca.w(out);
        let mut args = vec![
            "sign",
            "--csr",
            path_str(&csr),
            "--slug",
            cluster,
            "--tier",
            tier,
            "--out",
            path_str(&out),
            "--yes",
        ];
        if shared {
            args.push("--shared");
        }
        (ca.signer(&args), out)
    };
    // Only the core tier has a shared sub-CA: refused, nothing issued.
    let (o, _) = sign("mesh", true, "shared-mesh.pem");
    assert!(
        !o.status.success() && stderr(&o).contains("--tier core"),
        "{}",
        stderr(&o)
    );
    // A per-customer Core intermediate for the cluster's name (signed without --shared) carries
    // another policy's name constraints: install refuses it, naming them, and writes nothing.
    let (o, narrow) = sign("core", false, "shared-narrow.pem");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = install(&repo, &narrow, &ca.root_pem(), op_key);
    assert!(!o.status.success(), "a per-customer certificate installed");
    let err = stderr(&o);
    assert!(
        err.contains("does not match the core policy")
            && err.contains("nameConstraints")
            && err.contains("od.kiwistack.io"),
        "{err}"
    );
    assert!(!repo.join("values/smallstep.yaml").exists());
    assert!(!repo.join("secrets/smallstep.sops.yaml").exists());

    let (o, cert) = sign("core", true, "shared.pem");
    assert!(o.status.success(), "{}", stderr(&o));
    // The summary the witness reads says what is signed.
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        said.contains(&format!("SHARED sub-CA of core cluster {cluster}")),
        "{said}"
    );
    ca.assert_ledger_ok();
    let text = openssl_ok(
        &ca.work,
        &[
            "x509",
            "-in",
            "shared.pem",
            "-noout",
            "-ext",
            "nameConstraints",
        ],
    );
    assert!(text.contains("DNS:od.kiwistack.io"), "{text}");
    let o = install(&repo, &cert, &ca.root_pem(), op_key);
    assert!(o.status.success(), "{}", stderr(&o));
    // The certificates file holds the chain only; the configuration is `provisioner gather`'s.
    let values = yaml_file(&repo.join("values/smallstep.yaml"));
    assert!(values["inject"]["config"].is_null(), "{values:?}");
    assert_eq!(
        pem_certs(
            values["inject"]["certificates"]["intermediate_ca"]
                .as_str()
                .expect("pem")
        ),
        pem_certs(
            &std::fs::read_to_string(&cert)
                .expect("cert")
                .replace("\r\n", "\n")
        )
    );
    // `intermediate check` reads it like any repo's.
    let said = kiwictl_ok(&["intermediate", "check", "--repo", path_str(&repo)], None);
    assert!(said.contains("valid for"), "{said}");
    repo
}

#[test]
fn core_tenants_get_provisioners_on_the_shared_ca() {
    let ca = Fixture::new();
    let t = ca.tmp.path();
    let op_key = t.join("operator.agekey");
    let op = age_keygen(&op_key);
    let init = |slug: &str, tier: &str| repo_init(&ca, &op, slug, tier);
    let (acme, globex, initech) = (
        init("acme", "core"),
        init("globex", "core"),
        init("initech", "mesh"),
    );

    // A Core repo gets no intermediate: refused, naming the tier and `provisioner add`.
    let csr = ca.w("acme.csr");
    let pol = path_str(&kiwi_e2e::workspace_root().join("policies")).to_string();
    let o = kiwictl(
        &[
            "intermediate",
            "request",
            "--repo",
            path_str(&acme),
            "--out",
            path_str(&csr),
            "--policies",
            &pol,
        ],
        None,
    );
    assert!(!o.status.success(), "a Core repo got an intermediate");
    let err = stderr(&o);
    assert!(
        err.contains("core tier") && err.contains("provisioner add"),
        "{err}"
    );
    assert!(!csr.exists() && !acme.join("secrets/intermediate.key.sops.yaml").exists());
    // A Mesh repo gets no provisioner.
    let o = kiwictl(&["provisioner", "add", "--repo", path_str(&initech)], None);
    assert!(
        !o.status.success() && stderr(&o).contains("mesh customer"),
        "{}",
        stderr(&o)
    );

    // Hooks see provisioner_added with the same JSON rules as every event.
    let seen = t.join("seen.json");
    let hooks = t.join("hooks.yaml");
    std::fs::write(
        &hooks,
        format!(
            "hooks:\n  - name: record\n    event: provisioner_added\n    phase: post\n    timeout_secs: 10\n    run: [sh, -c, 'cat >> {}']\n",
            seen.display()
        ),
    )
    .expect("hooks");
    for repo in [&acme, &globex] {
        kiwictl_ok(
            &[
                "provisioner",
                "add",
                "--repo",
                path_str(repo),
                "--hooks",
                path_str(&hooks),
            ],
            None,
        );
    }
    let events: Vec<Value> =
        serde_json::Deserializer::from_slice(&std::fs::read(&seen).expect("seen"))
            .into_iter()
            .map(|v| v.expect("json"))
            .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event"], "provisioner_added");
    assert_eq!(events[0]["slug"], "acme");
    assert_eq!(events[0]["tier"], "core");

    let record = yaml_file(&acme.join("values/step-provisioner.yaml"));
    let template = record["provisioner"]["options"]["x509"]["template"]
        .as_str()
        .expect("template");
    // The template, rendered as step-ca's ACME provisioner renders it (same Go library, built
    // from Debian's sources with step-ca): acme's names pass, anything else fails naming why.
    let template_file = ca.w("acme.tpl");
    std::fs::write(&template_file, template).expect("w");
    let render = |cn: &str, sans: &[&str]| {
        run(Command::new(x509_template_check())
            .arg(&template_file)
            .arg(cn)
            .args(sans))
    };
    for (cn, sans) in [
        (
            "www.acme.od.kiwistack.io",
            &["www.acme.od.kiwistack.io", "acme.od.kiwistack.io"][..],
        ),
        ("", &["API.Acme.od.kiwistack.io"][..]),
    ] {
        let o = render(cn, sans);
        assert!(o.status.success(), "{cn} {sans:?} refused: {}", stderr(&o));
        assert!(stdout(&o).contains("dns "), "{}", stdout(&o));
    }
    for (cn, sans, why) in [
        (
            "www.globex.od.kiwistack.io",
            &["www.globex.od.kiwistack.io"][..],
            "not dns www.globex.od.kiwistack.io",
        ),
        (
            "x",
            &["www.acme.od.kiwistack.io", "evilacme.od.kiwistack.io"][..],
            "not dns evilacme.od.kiwistack.io",
        ),
        (
            "acme.od.kiwistack.io.evil.example",
            &["acme.od.kiwistack.io.evil.example"][..],
            "not dns",
        ),
        ("ip", &["10.0.0.1"][..], "not ip 10.0.0.1"),
        (
            "www.globex.od.kiwistack.io",
            &["www.acme.od.kiwistack.io"][..],
            "not the common name www.globex.od.kiwistack.io",
        ),
    ] {
        let o = render(cn, sans);
        assert!(!o.status.success(), "{cn} {sans:?} passed the template");
        let err = stderr(&o);
        assert!(
            err.contains("acme's certificates carry only names under acme.od.kiwistack.io")
                && err.contains(why),
            "{cn} {sans:?}: {err}"
        );
    }

    // The platform repo's shared sub-CA, then its configuration with both tenants' provisioners.
    let platform = t.join("od-platform");
    let shared = shared_sub_ca(&ca, &op, &op_key, &platform, "core-eu1");
    kiwictl_ok(
        &[
            "provisioner",
            "gather",
            "--platform",
            path_str(&platform),
            "--cluster",
            "core-eu1",
            "--repo",
            path_str(&globex),
            "--repo",
            path_str(&acme),
        ],
        None,
    );
    let mut values = yaml_file(&shared.join("values/smallstep-config.yaml"));
    let provs = values["inject"]["config"]["files"]["ca.json"]["authority"]["provisioners"]
        .as_array()
        .expect("provisioners")
        .clone();
    let names: Vec<&str> = provs
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["acme", "globex"]);
    assert_eq!(provs[0], record["provisioner"]);

    // step-ca starts with that configuration and the shared sub-CA's materials, as the chart
    // merges the repo's two values files, its secrets decrypted by the real sops.
    values["inject"]["certificates"] =
        yaml_file(&shared.join("values/smallstep.yaml"))["inject"]["certificates"].clone();
    let d = sops_decrypt(&shared.join("secrets/smallstep.sops.yaml"), &op_key);
    assert!(d.status.success(), "{}", stderr(&d));
    let secrets: Value = serde_yaml_ng::from_slice(&d.stdout).expect("yaml");
    let name = "ca.core-eu1.od.kiwistack.io";
    let step = start_and_check(&ca.w("step"), &values, &secrets, &ca.root_pem(), name);
    // ... and serves every tenant's provisioner from it.
    let served = step.get(name, &ca.root_pem(), "/provisioners");
    assert!(served.status.success(), "{}", stderr(&served));
    let served: Value = serde_json::from_slice(&served.stdout).expect("/provisioners json");
    let served: Vec<(&str, &str)> = served["provisioners"]
        .as_array()
        .expect("provisioners")
        .iter()
        .map(|p| {
            (
                p["type"].as_str().expect("type"),
                p["name"].as_str().expect("name"),
            )
        })
        .collect();
    assert_eq!(served, [("ACME", "acme"), ("ACME", "globex")]);
}
