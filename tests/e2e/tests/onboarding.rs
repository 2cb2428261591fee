//! Onboarding end to end (issue 5): registry entry, state repo (a real git repository),
//! intermediate request, signing by `kiwi-signer`, install, with the shipped git-commit hook.
//! The results are checked with other tools: the real `sops` decrypts every secret, openssl
//! verifies the installed chain and matches the stored key to the certificate, `git log` shows
//! the hook's commits. Bad certificates and a vetoing pre hook change nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiwi_e2e::{
    age_keygen, bin, kiwictl, kiwictl_ok, openssl_ok, path_str, policy_oid, run_ok, sops_decrypt,
    stderr, stdout, workspace_root, write_private, Fixture,
};

/// Every file under `dir` except .git, with its bytes: to prove a refusal changed nothing.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(d: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(d).expect("read dir").flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.insert(p.clone(), std::fs::read(&p).expect("read"));
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(dir, &mut m);
    m
}

/// A certificate's SHA-256 fingerprint as openssl computes it, lowercase hex.
fn sha256_of(cert: &Path) -> String {
    let out = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(cert),
    );
    out.trim()
        .rsplit('=')
        .next()
        .expect("openssl prints NAME=FINGERPRINT")
        .replace(':', "")
        .to_lowercase()
}

fn git(repo: &Path, args: &[&str]) -> String {
    run_ok(
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
            .args(args),
    )
}

#[test]
fn onboarding_story_checked_with_sops_openssl_and_git() {
    let ca = Fixture::new();
    let t = ca.tmp.path();
    let policies = workspace_root().join("policies");
    let pol = path_str(&policies);
    let op_key = t.join("operator.agekey");
    let rec_key = t.join("recovery.agekey");
    let op = age_keygen(&op_key);
    let rec = age_keygen(&rec_key);

    // 1. Registry entry in the platform repo.
    let platform = t.join("od-platform");
    kiwictl_ok(
        &[
            "registry",
            "add",
            path_str(&platform),
            "--slug",
            "acme",
            "--tier",
            "mesh",
            "--jurisdiction",
            "BE",
            "--core-base",
            "v1.4.2",
            "--mesh-base",
            "v0.7.1",
        ],
        None,
    );
    kiwictl_ok(&["registry", "validate", path_str(&platform)], None);

    // 2. The state repo, a real git repository.
    let repo = t.join("cust-acme");
    kiwictl_ok(
        &[
            "repo",
            "init",
            path_str(&repo),
            "--slug",
            "acme",
            "--tier",
            "mesh",
            "--operator-age",
            &op,
            "--recovery-age",
            &rec,
            "--root",
            path_str(&ca.root_pem()),
        ],
        None,
    );
    // The pinned root is the one openssl fingerprints.
    let marker = std::fs::read_to_string(repo.join(".kiwi/repo.yaml")).expect("marker");
    assert!(
        marker.contains(&format!("root_sha256: {}", sha256_of(&ca.root_pem()))),
        "{marker}"
    );
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "skeleton"]);

    // Hooks: commit after request and install; a pre hook that vetoes while FREEZE exists.
    let freeze = t.join("FREEZE");
    let hooks = t.join("hooks.yaml");
    let commit = path_str(&bin("kiwictl")).to_string();
    std::fs::write(
        &hooks,
        format!(
            "hooks:\n\
             \x20 - name: freeze\n    event: intermediate_installed\n    phase: pre\n    timeout_secs: 10\n    run: [sh, -c, 'test ! -e {f} || {{ echo installs are frozen >&2; exit 1; }}']\n\
             \x20 - name: commit-request\n    event: intermediate_requested\n    phase: post\n    timeout_secs: 30\n    run: [{commit}, hook, git-commit]\n\
             \x20 - name: commit-install\n    event: intermediate_installed\n    phase: post\n    timeout_secs: 30\n    run: [{commit}, hook, git-commit]\n",
            f = freeze.display()
        ),
    )
    .expect("hooks file");
    let hooks_s = path_str(&hooks);

    // 3. Intermediate request: key only SOPS-encrypted in the repo, CSR to the transfer medium.
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
            pol,
            "--hooks",
            hooks_s,
        ],
        None,
    );
    let key_file = repo.join("secrets/intermediate.key.sops.yaml");
    let key_text = std::fs::read_to_string(&key_file).expect("key file");
    assert!(
        !key_text.contains("PRIVATE KEY"),
        "plaintext key in the repo:\n{key_text}"
    );

    // 4. The ceremony: sign acme twice (one to revoke), plus bad certificates for the refusals.
    let revoked = ca.sign(&csr, "acme", "mesh", "acme-revoked.crt");
    let good = ca.sign(&csr, "acme", "mesh", "acme.crt");
    let serial = ca.serial_of(&revoked);
    let crl = ca.revoke(&serial, "superseded", "root.crl");
    let other_key_csr = ca.csr("other", "P-256", &[]);
    let wrong_key = ca.sign(&other_key_csr, "acme", "mesh", "acme-wrong-key.crt");
    // acme's own request signed with the wrong --tier: only the tier marker tells it apart.
    let wrong_tier = ca.sign(&csr, "acme", "fleet", "acme-fleet.crt");
    // A rogue root signs a certificate for acme's own key: only the pin tells it apart.
    let ca2 = Fixture::new();
    let foreign_root = ca2.sign(&csr, "acme", "mesh", "acme-foreign.crt");

    // 5. Refusals: each names the problem and changes nothing in the repo.
    let root = ca.root_pem();
    let install = |cert: &Path, root: &Path| {
        kiwictl(
            &[
                "intermediate",
                "install",
                "--repo",
                path_str(&repo),
                "--cert",
                path_str(cert),
                "--root",
                path_str(root),
                "--crl",
                path_str(&crl),
                "--policies",
                pol,
                "--hooks",
                hooks_s,
            ],
            Some(&op_key),
        )
    };
    let before = snapshot(&repo);
    let commits_before = git(&repo, &["rev-list", "--count", "HEAD"]);
    let rogue_root = ca2.root_pem();
    let pin_refusal = format!(
        "the root given has SHA-256 {}, but this state repo is pinned to the MSP root {}",
        sha256_of(&rogue_root),
        sha256_of(&root)
    );
    let tier_refusal = format!(
        "it is a fleet-tier certificate (policy OID {}), but this state repo is mesh tier",
        policy_oid("fleet")
    );
    for (cert, root, needle) in [
        (&wrong_tier, &root, tier_refusal.as_str()),
        (&foreign_root, &rogue_root, pin_refusal.as_str()),
        (&foreign_root, &root, "another root"),
        (&revoked, &root, "revoked"),
        (&wrong_key, &root, "different key"),
    ] {
        let o = install(cert, root);
        assert!(!o.status.success(), "{} was installed", cert.display());
        assert!(
            stderr(&o).contains(needle),
            "refusal of {} lacks `{needle}`:\n{}",
            cert.display(),
            stderr(&o)
        );
        assert_eq!(
            before,
            snapshot(&repo),
            "a refused install changed the repo"
        );
    }
    std::fs::write(&freeze, "").expect("freeze");
    let o = install(&good, &root);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("installs are frozen"), "{}", stderr(&o));
    assert_eq!(before, snapshot(&repo));
    assert_eq!(commits_before, git(&repo, &["rev-list", "--count", "HEAD"]));
    std::fs::remove_file(&freeze).expect("thaw");

    // 6. Install the good certificate.
    let o = install(&good, &root);
    assert!(
        o.status.success(),
        "install failed:\n{}{}",
        stdout(&o),
        stderr(&o)
    );

    // The real sops decrypts every secret, with the operator key and with the recovery key.
    let secrets: Vec<PathBuf> = std::fs::read_dir(repo.join("secrets"))
        .expect("secrets")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.ends_with(".sops.yaml") && !name.starts_with('.')
        })
        .collect();
    assert_eq!(secrets.len(), 3, "{secrets:?}");
    for f in &secrets {
        for key in [&op_key, &rec_key] {
            let d = sops_decrypt(f, key);
            assert!(
                d.status.success(),
                "sops -d {} failed: {}",
                f.display(),
                stderr(&d)
            );
        }
    }
    let verify = kiwictl(&["secrets", "verify", path_str(&repo)], Some(&op_key));
    assert!(
        verify.status.success(),
        "{}{}",
        stdout(&verify),
        stderr(&verify)
    );

    // The stored key matches the certificate; the step-ca key PEM opens with its password.
    let work = &ca.work;
    let key_yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_slice(&sops_decrypt(&key_file, &op_key).stdout).expect("yaml");
    let key_pem = work.join("acme-plain.key");
    write_private(&key_pem, key_yaml["key"].as_str().expect("key"));
    let pub_from_key = openssl_ok(work, &["pkey", "-in", path_str(&key_pem), "-pubout"]);
    let pub_from_cert = openssl_ok(work, &["x509", "-in", path_str(&good), "-noout", "-pubkey"]);
    assert_eq!(pub_from_key, pub_from_cert);
    let step: serde_yaml_ng::Value = serde_yaml_ng::from_slice(
        &sops_decrypt(&repo.join("secrets/smallstep.sops.yaml"), &op_key).stdout,
    )
    .expect("yaml");
    let password_b64 = step["inject"]["secrets"]["ca_password"]
        .as_str()
        .expect("ca_password");
    let password = base64_decode(password_b64);
    let pass_file = work.join("step.pass");
    write_private(&pass_file, &password);
    let enc_key = work.join("step.key");
    write_private(
        &enc_key,
        step["inject"]["secrets"]["x509"]["intermediate_ca_key"]
            .as_str()
            .expect("key"),
    );
    let pub_from_step = openssl_ok(
        work,
        &[
            "pkey",
            "-in",
            path_str(&enc_key),
            "-passin",
            &format!("file:{}", pass_file.display()),
            "-pubout",
        ],
    );
    assert_eq!(pub_from_step, pub_from_cert);

    // openssl verifies the chain exactly as installed in values/smallstep.yaml.
    let values: serde_yaml_ng::Value = serde_yaml_ng::from_slice(
        &std::fs::read(repo.join("values/smallstep.yaml")).expect("values"),
    )
    .expect("yaml");
    let root_in = work.join("installed-root.pem");
    let inter_in = work.join("installed-intermediate.pem");
    std::fs::write(
        &root_in,
        values["inject"]["certificates"]["root_ca"]
            .as_str()
            .expect("root_ca"),
    )
    .expect("w");
    std::fs::write(
        &inter_in,
        values["inject"]["certificates"]["intermediate_ca"]
            .as_str()
            .expect("ic"),
    )
    .expect("w");
    let ok = openssl_ok(
        work,
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            path_str(&root_in),
            "-CRLfile",
            path_str(&crl),
            path_str(&inter_in),
        ],
    );
    assert!(ok.contains(": OK"), "{ok}");

    // git log shows the hook's commits, naming the events.
    let log = git(&repo, &["log", "--format=%s"]);
    let subjects: Vec<&str> = log.lines().collect();
    assert_eq!(subjects.len(), 3, "{log}");
    assert!(
        subjects[1].starts_with("kiwictl: intermediate requested for acme"),
        "{log}"
    );
    assert!(
        subjects[0].starts_with("kiwictl: intermediate installed for acme"),
        "{log}"
    );
    assert!(subjects[0].contains(&ca.serial_of(&good)), "{log}");
    assert!(
        git(&repo, &["status", "--porcelain"]).trim().is_empty(),
        "uncommitted files left"
    );

    // A renewal CSR carries the same key (what re-rooting at churn signs under a new root).
    let renew = ca.w("acme-renew.csr");
    kiwictl_ok(
        &[
            "intermediate",
            "csr",
            "--repo",
            path_str(&repo),
            "--out",
            path_str(&renew),
        ],
        Some(&op_key),
    );
    let pub_from_renew = openssl_ok(work, &["req", "-in", path_str(&renew), "-noout", "-pubkey"]);
    assert_eq!(pub_from_renew, pub_from_cert);

    // A second install is refused: nothing is overwritten.
    let again = install(&good, &root);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("exists"), "{}", stderr(&again));
}

fn base64_decode(s: &str) -> String {
    let out = run_ok(
        Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s '{s}' | base64 -d")),
    );
    out
}

/// Files under `dir` (`.git` too) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, needle: &[u8], out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, needle, out);
            } else if std::fs::read(&p)
                .expect("read")
                .windows(needle.len())
                .any(|w| w == needle)
            {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, needle.as_bytes(), &mut out);
    out
}

/// A CA, an operator and an outsider age key, and helpers for the item 3 tests.
struct Item3 {
    ca: Fixture,
    pol: String,
    op_key: PathBuf,
    op: String,
    outsider: String,
}

impl Item3 {
    fn new() -> Item3 {
        let ca = Fixture::new();
        let t = ca.tmp.path().to_path_buf();
        let op_key = t.join("operator.agekey");
        let op = age_keygen(&op_key);
        let outsider = age_keygen(&t.join("outsider.agekey"));
        let pol = path_str(&workspace_root().join("policies")).to_string();
        let me = Item3 {
            ca,
            pol,
            op_key,
            op,
            outsider,
        };
        me.no_plain_key("before");
        me
    }

    fn init(&self, dir: &Path) {
        kiwictl_ok(
            &[
                "repo",
                "init",
                path_str(dir),
                "--slug",
                "acme",
                "--tier",
                "mesh",
                "--operator-age",
                &self.op,
                "--root",
                path_str(&self.ca.root_pem()),
            ],
            None,
        );
    }

    fn request(&self, repo: &Path, csr: &Path) -> Output {
        kiwictl(
            &[
                "intermediate",
                "request",
                "--repo",
                path_str(repo),
                "--out",
                path_str(csr),
                "--policies",
                &self.pol,
            ],
            None,
        )
    }

    /// No file anywhere in the test's directory holds a plaintext key.
    fn no_plain_key(&self, when: &str) {
        let found = files_containing(self.ca.tmp.path(), "BEGIN PRIVATE KEY");
        assert!(found.is_empty(), "{when}: a plaintext key in {found:?}");
    }
}

fn rule(extra: &str, age: &str) -> String {
    format!("creation_rules:\n  - path_regex: \\.sops\\.yaml$\n{extra}    age: {age}\n")
}

/// Issue 11 item 3, the reproduction: a config that leaves the key in the clear and names an
/// outsider is refused, naming the rule; the key is encrypted only under the repo's own
/// `secrets/.sops.yaml`, only to the recipients `repo init` recorded, every value `ENC[...]`
/// (partial-encryption options ignored), for step-ca's secrets too; the real sops reads it.
#[test]
fn hostile_sops_configs_never_get_the_key() {
    let x = Item3::new();
    let (ca, op, op_key, outsider) = (&x.ca, x.op.as_str(), &x.op_key, x.outsider.as_str());
    let t = ca.tmp.path();
    let pol = x.pol.as_str();
    let repo = t.join("cust-acme");
    x.init(&repo);
    let config = repo.join("secrets/.sops.yaml");
    let good_config = std::fs::read(&config).expect("config");
    let request = |repo: &Path, csr: &Path| x.request(repo, csr);
    let no_plain_key = |when: &str| x.no_plain_key(when);

    // The reproduction: the key's value left in the clear, and an outsider among the recipients.
    std::fs::write(
        &config,
        rule(
            "    unencrypted_regex: ^key$\n",
            &format!("{op},{outsider}"),
        ),
    )
    .expect("hostile config");
    let before = snapshot(t);
    let csr = ca.w("acme.csr");
    let o = request(&repo, &csr);
    assert!(!o.status.success(), "request followed a hostile config");
    let err = stderr(&o);
    assert!(
        err.contains("creation_rules[0]") && err.contains(outsider) && err.contains(op),
        "the refusal does not name the rule and the recipients:\n{err}"
    );
    no_plain_key("hostile config");
    assert_eq!(before, snapshot(t), "a refused request wrote something");

    // Partial-encryption rules alone are ignored for key material: every value is encrypted,
    // and the real sops decrypts the key with the operator's identity.
    std::fs::write(
        &config,
        rule(
            "    unencrypted_regex: ^key$\n    mac_only_encrypted: true\n",
            op,
        ),
    )
    .expect("partial config");
    let o = request(&repo, &csr);
    assert!(o.status.success(), "{}", stderr(&o));
    no_plain_key("partial-encryption config");
    let key_file = repo.join("secrets/intermediate.key.sops.yaml");
    let key_text = std::fs::read_to_string(&key_file).expect("key file");
    let stored: serde_yaml_ng::Value = serde_yaml_ng::from_str(&key_text).expect("yaml");
    assert!(
        stored["key"]
            .as_str()
            .is_some_and(|k| k.starts_with("ENC[")),
        "{key_text}"
    );
    assert!(!key_text.contains("unencrypted_regex"), "{key_text}");
    let d = sops_decrypt(&key_file, op_key);
    assert!(d.status.success(), "sops -d: {}", stderr(&d));
    assert!(String::from_utf8_lossy(&d.stdout).contains("BEGIN PRIVATE KEY"));

    // Install: an outsider in the config refuses step-ca's secrets too; the repo's own config
    // installs them, encrypted to the operator only.
    let cert = ca.sign(&csr, "acme", "mesh", "acme.crt");
    let install = || {
        kiwictl(
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
                pol,
            ],
            Some(op_key),
        )
    };
    std::fs::write(&config, rule("", &format!("{outsider},{op}"))).expect("hostile config");
    let before = snapshot(&repo);
    let o = install();
    assert!(!o.status.success(), "install followed a hostile config");
    assert!(stderr(&o).contains(outsider), "{}", stderr(&o));
    assert_eq!(before, snapshot(&repo), "a refused install wrote something");
    std::fs::write(&config, &good_config).expect("restore config");
    let o = install();
    assert!(o.status.success(), "{}", stderr(&o));
    let step = repo.join("secrets/smallstep.sops.yaml");
    let text = std::fs::read_to_string(&step).expect("smallstep");
    let stored: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("yaml");
    let secrets = &stored["inject"]["secrets"];
    for v in [
        &secrets["ca_password"],
        &secrets["x509"]["intermediate_ca_key"],
    ] {
        assert!(v.as_str().is_some_and(|v| v.starts_with("ENC[")), "{text}");
    }
    assert!(!text.contains(outsider), "{text}");
    assert!(sops_decrypt(&step, op_key).status.success());
    no_plain_key("installed");
}

/// Issue 11 item 3: a `.sops.yaml` above the repo, with none in the repo, is never used.
#[test]
fn a_config_above_the_repo_is_never_used() {
    let x = Item3::new();
    let t = x.ca.tmp.path();
    let bare = t.join("bare");
    std::fs::create_dir(&bare).expect("mkdir");
    let repo = bare.join("cust-acme");
    x.init(&repo);
    std::fs::remove_file(repo.join("secrets/.sops.yaml")).expect("rm config");
    std::fs::write(
        bare.join(".sops.yaml"),
        rule("    unencrypted_regex: ^key$\n", &x.op),
    )
    .expect("parent config");
    let before = snapshot(t);
    let o = x.request(&repo, &x.ca.w("acme.csr"));
    assert!(
        !o.status.success(),
        "request used a parent directory's config"
    );
    let err = stderr(&o);
    assert!(
        err.contains("secrets/.sops.yaml is missing") && err.contains("never one found above"),
        "{err}"
    );
    x.no_plain_key("parent config");
    assert_eq!(before, snapshot(t), "a refused request wrote something");
}
