//! Issue 13: a real step-ca (smallstep's, built offline from Debian's 0.19 sources by
//! `scripts/build-step-ca`) starts from what `kiwictl intermediate install` wrote, decrypted from
//! the state repo by the real sops, and serves a TLS chain that `openssl s_client
//! -verify_return_error` accepts with the MSP root alone; `/health` answers ok. The Core tier:
//! `intermediate request` refuses a Core repo naming the tier and `provisioner add`; `provisioner
//! add` records each tenant's ACME provisioner and template; `provisioner gather` puts every
//! tenant's provisioner into the shared CA's configuration, which step-ca starts with.

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

/// Starts step-ca on `values` (chart values: ca.json and certificates) with the decrypted
/// `secrets` (chart values: key and password) and checks /health and the TLS chain for
/// `dns_name` against `root` with openssl.
fn start_and_check(work: &Path, values: &Value, secrets: &Value, root: &Path, dns_name: &str) {
    let dir = private_dir(&work.join("step"));
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
    let config = dir.join("ca.json");
    std::fs::write(
        &config,
        serde_json::to_vec_pretty(&kiwi_tooling::stepca::localise(
            &files["ca.json"],
            &dir,
            &format!("127.0.0.1:{port}"),
        ))
        .expect("json"),
    )
    .expect("w");
    let ca = StepCa::start(&dir, &config, &dir.join("password"), port, dns_name, root);

    // The TLS chain, for the CA's own name, verifies against the MSP root alone.
    let o = run(Command::new("openssl")
        .args(["s_client", "-verify_return_error", "-CAfile"])
        .arg(root)
        .args(["-servername", dns_name, "-verify_hostname", dns_name])
        .arg("-connect")
        .arg(format!("127.0.0.1:{}", ca.port))
        .stdin(std::process::Stdio::null()));
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        o.status.success() && text.contains("Verify return code: 0 (ok)"),
        "openssl s_client refused the chain:\n{text}\nstep-ca:\n{}",
        ca.log_text()
    );
    // /roots serves the MSP root.
    let roots = ca.get(dns_name, root, "/roots");
    assert!(roots.status.success(), "{}", stderr(&roots));
    drop(ca);
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
    start_and_check(
        &ca.work,
        &values,
        &secrets,
        &ca.root_pem(),
        "ca.acme.od.kiwistack.io",
    );
}

/// The cluster's shared sub-CA, signed by the MSP root with `kiwi-signer sign --shared` under
/// `policies/intermediate-core-shared.yaml`; its key made with openssl and encrypted (PKCS#8,
/// PBES2 AES-256-CBC) as step-ca reads it. Returns chart certificates and secrets.
fn shared_sub_ca(ca: &Fixture, cluster: &str) -> (Value, Value) {
    let work = &ca.work;
    let csr = ca.csr("shared", "P-256", &[]);
    // Only the core tier has a shared sub-CA: refused, nothing issued.
    let sign = |tier: &str, out: &str| {
        ca.signer(&[
            "sign",
            "--csr",
            path_str(&csr),
            "--slug",
            cluster,
            "--tier",
            tier,
            "--shared",
            "--out",
            path_str(&ca.w(out)),
            "--yes",
        ])
    };
    let o = sign("mesh", "shared-mesh.pem");
    assert!(
        !o.status.success() && stderr(&o).contains("--tier core"),
        "{}",
        stderr(&o)
    );
    let o = sign("core", "shared.pem");
    assert!(o.status.success(), "{}", stderr(&o));
    // The summary the witness reads says what is signed.
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        said.contains("SHARED sub-CA of core cluster core-eu1"),
        "{said}"
    );
    ca.assert_ledger_ok();
    let text = openssl_ok(
        work,
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
    std::fs::write(work.join("shared.pass"), "test-only").expect("w");
    openssl_ok(
        work,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "shared.key",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "file:shared.pass",
            "-out",
            "shared.enc",
        ],
    );
    let read = |f: &str| std::fs::read_to_string(work.join(f)).expect("read");
    let password_b64 = run_ok(
        Command::new("base64")
            .arg("-w0")
            .arg(work.join("shared.pass")),
    );
    let certs = serde_json::json!({
        "root_ca": std::fs::read_to_string(ca.root_pem()).expect("root"),
        "intermediate_ca": read("shared.pem"),
    });
    let secrets = serde_json::json!({"inject": {"secrets": {
        "ca_password": password_b64,
        "x509": {"intermediate_ca_key": read("shared.enc")}}}});
    (certs, secrets)
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

    // The platform repo's shared CA configuration gathers both tenants' provisioners.
    let platform = t.join("od-platform");
    kiwictl_ok(
        &[
            "provisioner",
            "gather",
            "--platform",
            path_str(&platform),
            "--cluster",
            "core-eu1",
            "--root",
            path_str(&ca.root_pem()),
            "--repo",
            path_str(&globex),
            "--repo",
            path_str(&acme),
        ],
        None,
    );
    let mut values = yaml_file(&platform.join("core-shared/core-eu1/smallstep.yaml"));
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

    // step-ca starts with that configuration and the shared sub-CA's materials.
    let (certs, secrets) = shared_sub_ca(&ca, "core-eu1");
    values["inject"]["certificates"] = certs;
    start_and_check(
        &ca.work,
        &values,
        &secrets,
        &ca.root_pem(),
        "ca.core-eu1.od.kiwistack.io",
    );
}
