//! `kiwictl secrets rotate --hooks`: a vetoing pre hook leaves every file byte-identical; a post
//! hook receives the changed files (paths only), and the rotated files still decrypt with sops.

use std::process::Command;

use kiwi_e2e::{kiwictl, path_str, run, run_ok, stderr, stdout, venv_tool};

#[test]
fn rotate_runs_between_secrets_rotated_hooks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let key = t.join("op.agekey");
    run_ok(Command::new("age-keygen").arg("-o").arg(&key));
    let recipient = std::fs::read_to_string(&key)
        .expect("key")
        .lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(str::to_string))
        .expect("public key");
    let repo = t.join("cust-acme/secrets");
    std::fs::create_dir_all(&repo).expect("mkdir");
    std::fs::write(
        repo.join(".sops.yaml"),
        format!("creation_rules:\n  - age: {recipient}\n"),
    )
    .expect("cfg");
    for name in ["a.sops.yaml", "b.sops.yaml"] {
        let f = repo.join(name);
        std::fs::write(&f, "# db\npassword: hunter2\nport: 5432\n").expect("plain");
        let o = kiwictl(&["secrets", "encrypt", "-i", path_str(&f)], Some(&key));
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let snapshot = || -> Vec<Vec<u8>> {
        ["a.sops.yaml", "b.sops.yaml"]
            .iter()
            .map(|n| std::fs::read(repo.join(n)).expect("read"))
            .collect()
    };
    let before = snapshot();
    let seen = t.join("seen.json");
    let freeze = t.join("FREEZE");
    let hooks = t.join("hooks.yaml");
    std::fs::write(
        &hooks,
        format!(
            "hooks:\n  - name: freeze\n    event: secrets_rotated\n    phase: pre\n    timeout_secs: 10\n    run: [sh, -c, 'test ! -e {f} || {{ echo rotation window closed >&2; exit 1; }}']\n  - name: record\n    event: secrets_rotated\n    phase: post\n    timeout_secs: 10\n    run: [sh, -c, 'cat > {s}']\n",
            f = freeze.display(),
            s = seen.display()
        ),
    )
    .expect("hooks");
    let tree = t.join("cust-acme");

    let rotate = || {
        kiwictl(
            &[
                "secrets",
                "rotate",
                path_str(&tree),
                "--hooks",
                path_str(&hooks),
            ],
            Some(&key),
        )
    };
    std::fs::write(&freeze, "").expect("freeze");
    let o = rotate();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("rotation window closed"),
        "{}",
        stderr(&o)
    );
    assert_eq!(before, snapshot(), "a vetoed rotation changed files");
    assert!(!seen.exists());

    std::fs::remove_file(&freeze).expect("thaw");
    let o = rotate();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_ne!(before, snapshot());
    let event: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&seen).expect("post hook ran")).expect("JSON");
    assert_eq!(event["event"], "secrets_rotated");
    assert_eq!(event["details"]["operation"], "rotate");
    assert_eq!(event["details"]["changed"], "2");
    let changed = event["files"]["changed"].as_array().expect("changed files");
    assert_eq!(changed.len(), 2, "{event}");
    assert!(
        !event.to_string().contains("hunter2"),
        "plaintext in the hook's input"
    );
    for n in ["a.sops.yaml", "b.sops.yaml"] {
        let d = run(Command::new(venv_tool("sops"))
            .args(["--decrypt"])
            .arg(repo.join(n))
            .env_remove("SOPS_AGE_KEY")
            .env("SOPS_AGE_KEY_FILE", &key));
        assert!(d.status.success(), "{}", stderr(&d));
        assert!(stdout(&d).contains("password: hunter2"), "{}", stdout(&d));
    }
}

/// The reproduction: `kiwictl secrets rotate` run with the operator's key in `SOPS_AGE_KEY`
/// used to hand it to every hook. A hook that dumps its environment now finds no key.
#[test]
fn rotate_hooks_never_see_the_operators_age_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let key = t.join("op.agekey");
    run_ok(Command::new("age-keygen").arg("-o").arg(&key));
    let key_text = std::fs::read_to_string(&key).expect("key");
    let recipient = key_text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(str::to_string))
        .expect("public key");
    let repo = t.join("cust-acme/secrets");
    std::fs::create_dir_all(&repo).expect("mkdir");
    std::fs::write(
        repo.join(".sops.yaml"),
        format!("creation_rules:\n  - age: {recipient}\n"),
    )
    .expect("cfg");
    let f = repo.join("a.sops.yaml");
    std::fs::write(&f, "password: hunter2\n").expect("plain");
    let o = kiwictl(&["secrets", "encrypt", "-i", path_str(&f)], Some(&key));
    assert!(o.status.success(), "{}", stderr(&o));
    let dump = t.join("env.txt");
    let hooks = t.join("hooks.yaml");
    std::fs::write(
        &hooks,
        format!(
            "hooks:\n  - name: dump\n    event: secrets_rotated\n    phase: pre\n    timeout_secs: 10\n    run: [sh, -c, 'env > {}']\n",
            dump.display()
        ),
    )
    .expect("hooks");
    let o = run(Command::new(kiwi_e2e::bin("kiwictl"))
        .args(["secrets", "rotate", path_str(&t.join("cust-acme"))])
        .args(["--hooks", path_str(&hooks)])
        .env_remove("SOPS_AGE_KEY_FILE")
        .env("SOPS_AGE_KEY", &key_text));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let env = std::fs::read_to_string(&dump).expect("the hook ran");
    assert!(
        !env.contains("AGE-SECRET-KEY") && !env.contains("SOPS_AGE_KEY"),
        "the hook saw the operator's key:\n{env}"
    );
    assert!(env.contains("KIWI_HOOK_EVENT=secrets_rotated"), "{env}");
}
