//! Issue 11 item 4: plaintext where a secret belongs is caught. `kiwictl secrets verify` fails a
//! file a creation rule covers (or named `*.sops.*`) that has no SOPS metadata, where the real
//! `sops filestatus` calls it unencrypted; `kiwictl hook pre-commit`, run by real git as
//! `.git/hooks/pre-commit` and as the pre-commit framework runs it, refuses such a file when it
//! is staged, judging the index and not the work tree.

use std::path::Path;
use std::process::{Command, Output};

use kiwi_e2e::{
    age_keygen, bin, kiwictl, path_str, run, run_ok, stderr, stdout, venv_tool, workspace_root,
};

fn write(path: &Path, text: &str) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

fn encrypt_in_place(file: &Path, key: &Path) {
    let o = kiwictl(&["secrets", "encrypt", "-i", path_str(file)], Some(key));
    assert!(o.status.success(), "{}", stderr(&o));
}

/// What the real sops says: is `file` encrypted?
fn sops_says_encrypted(file: &Path) -> bool {
    let out = run_ok(Command::new(venv_tool("sops")).arg("filestatus").arg(file));
    let v: serde_json::Value = serde_json::from_str(&out).expect("filestatus JSON");
    v["encrypted"].as_bool().expect("encrypted: bool")
}

const PLAIN: &str = "password: hunter2\nport: 5432\n";

#[test]
fn verify_fails_plaintext_under_a_creation_rule() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let key = t.join("op.agekey");
    let op = age_keygen(&key);
    let repo = t.join("cust-acme");
    write(
        &repo.join("secrets/.sops.yaml"),
        &format!("creation_rules:\n  - path_regex: \\.sops\\.yaml$\n    age: {op}\n"),
    );
    write(
        &repo.join("other/.sops.yaml"),
        &format!("creation_rules:\n  - age: {op}\n"),
    );
    let sealed = repo.join("secrets/db.sops.yaml");
    write(&sealed, PLAIN);
    encrypt_in_place(&sealed, &key);
    let leak = repo.join("secrets/leak.sops.yaml");
    let covered = repo.join("other/db.yaml");
    let named = repo.join("values/app.sops.json");
    write(&leak, PLAIN);
    write(&covered, PLAIN);
    write(&named, "{\"password\": \"hunter2\"}\n");
    // Not covered by any rule, not named as a SOPS file: not a secret file.
    write(&repo.join("secrets/README.md"), "notes\n");
    write(&repo.join("values/app.yaml"), "replicas: 2\n");

    let verify = || kiwictl(&["secrets", "verify", path_str(&repo)], Some(&key));
    let o = verify();
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    for f in [&leak, &covered, &named] {
        assert!(
            !sops_says_encrypted(f),
            "sops calls {} encrypted",
            f.display()
        );
        assert!(
            err.contains(&format!("FAILED {}: not encrypted", f.display())),
            "{} not reported:\n{err}",
            f.display()
        );
    }
    assert!(err.contains("creation_rules[0]"), "{err}");
    assert!(
        !err.contains("README") && !err.contains("app.yaml"),
        "{err}"
    );
    assert!(stdout(&o).contains("3 failed"), "{}", stdout(&o));

    encrypt_in_place(&leak, &key);
    encrypt_in_place(&covered, &key);
    // No rule covers values/: its recipient is given.
    let o = kiwictl(
        &["secrets", "encrypt", "-i", "--age", &op, path_str(&named)],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [&leak, &covered, &named] {
        assert!(sops_says_encrypted(f), "{}", f.display());
    }
    // Encrypted, but under no rule: verify reports that as not conforming, another check.
    std::fs::remove_file(&named).expect("rm");
    let o = verify();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

fn git(repo: &Path, args: &[&str]) -> Output {
    run(Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args(args))
}

fn git_ok(repo: &Path, args: &[&str]) -> String {
    let o = git(repo, args);
    assert!(o.status.success(), "git {args:?}: {}", stderr(&o));
    stdout(&o)
}

#[test]
fn pre_commit_hook_refuses_staged_plaintext_with_real_git() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let key = t.join("op.agekey");
    let op = age_keygen(&key);
    let repo = t.join("cust-acme");
    std::fs::create_dir(&repo).expect("mkdir");
    git_ok(&repo, &["init", "-q"]);
    write(
        &repo.join("secrets/.sops.yaml"),
        &format!("creation_rules:\n  - path_regex: \\.sops\\.yaml$\n    age: {op}\n"),
    );
    write(&repo.join("README.md"), "state repo\n");
    let hook = repo.join(".git/hooks/pre-commit");
    write(
        &hook,
        &format!(
            "#!/bin/sh\nexec '{}' hook pre-commit\n",
            bin("kiwictl").display()
        ),
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    // The first commit (no HEAD yet) goes through the hook too.
    git_ok(&repo, &["add", "-A"]);
    git_ok(&repo, &["commit", "-q", "-m", "skeleton"]);
    let head = || git_ok(&repo, &["rev-parse", "HEAD"]);
    let commit = |msg: &str| git(&repo, &["commit", "-q", "-m", msg]);

    // Plaintext staged under the rule: refused, naming the file and the rule.
    let leak = repo.join("secrets/db.sops.yaml");
    write(&leak, PLAIN);
    git_ok(&repo, &["add", "secrets/db.sops.yaml"]);
    let before = head();
    let o = commit("leak");
    assert!(!o.status.success(), "plaintext was committed");
    let err = stderr(&o);
    assert!(
        err.contains("refused: secrets/db.sops.yaml") && err.contains("without SOPS metadata"),
        "{err}"
    );
    assert_eq!(before, head());

    // The index decides, not the work tree: encrypted on disk but plaintext staged is refused.
    encrypt_in_place(&leak, &key);
    assert!(!commit("leak").status.success(), "the work tree was judged");
    assert_eq!(before, head());
    // ...and encrypted staged, plaintext on disk, is accepted.
    git_ok(&repo, &["add", "secrets/db.sops.yaml"]);
    let sealed = std::fs::read(&leak).expect("sealed");
    write(&leak, PLAIN);
    let o = commit("sealed");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(before, head());
    std::fs::write(&leak, &sealed).expect("restore");

    // SOPS metadata pasted onto plaintext values is not encryption.
    let text = String::from_utf8(sealed.clone()).expect("utf-8");
    let meta = &text[text.find("\nsops:").expect("metadata")..];
    write(
        &repo.join("secrets/fake.sops.yaml"),
        &format!("password: hunter2{meta}"),
    );
    git_ok(&repo, &["add", "secrets/fake.sops.yaml"]);
    let o = commit("fake");
    assert!(!o.status.success(), "fake metadata was committed");
    assert!(
        stderr(&o).contains("refused: secrets/fake.sops.yaml")
            && stderr(&o).contains("stored in the clear"),
        "{}",
        stderr(&o)
    );
    git_ok(&repo, &["rm", "-q", "--cached", "secrets/fake.sops.yaml"]);

    // A staged catch-all rule in another directory covers its plain files.
    write(
        &repo.join("other/.sops.yaml"),
        &format!("creation_rules:\n  - age: {op}\n"),
    );
    write(&repo.join("other/db.yaml"), PLAIN);
    git_ok(&repo, &["add", "other"]);
    let o = commit("other");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("refused: other/db.yaml") && stderr(&o).contains("creation_rules[0]"),
        "{}",
        stderr(&o)
    );
    git_ok(&repo, &["rm", "-q", "--cached", "other/db.yaml"]);
    let o = commit("rule");
    assert!(o.status.success(), "{}", stderr(&o));

    // As the pre-commit framework runs it: the entry from .pre-commit-hooks.yaml with the
    // staged file names as arguments, from the repository's top.
    let hooks: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(workspace_root().join(".pre-commit-hooks.yaml"))
            .expect(".pre-commit-hooks.yaml"),
    )
    .expect("yaml");
    let entry = hooks
        .as_sequence()
        .and_then(|s| s.iter().find(|h| h["id"] == "kiwictl-no-plaintext"))
        .and_then(|h| h["entry"].as_str())
        .expect("the hook's entry");
    let words: Vec<&str> = entry.split_whitespace().collect();
    assert_eq!(words[0], "kiwictl", "{entry}");
    write(&repo.join("secrets/api.sops.yaml"), PLAIN);
    write(&repo.join("notes.md"), "notes\n");
    git_ok(&repo, &["add", "secrets/api.sops.yaml", "notes.md"]);
    let framework = |files: &[&str]| {
        run(Command::new(bin("kiwictl"))
            .current_dir(&repo)
            .args(&words[1..])
            .args(files))
    };
    let o = framework(&["secrets/api.sops.yaml", "notes.md"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("refused: secrets/api.sops.yaml"),
        "{}",
        stderr(&o)
    );
    let o = framework(&["notes.md"]);
    assert!(o.status.success(), "{}", stderr(&o));
}
