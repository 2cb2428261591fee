//! The corpus made by the real sops (tests/fixtures/sops/regenerate.sh): kiwictl decrypts every
//! file to the same bytes as `sops -d`, and rejects every `fail_*` file.

use kiwi_e2e::sops::*;

fn corpus() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(fixtures().join("corpus"))
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    assert!(
        v.len() >= 15,
        "corpus is missing; run tests/fixtures/sops/regenerate.sh"
    );
    v
}

/// A corpus file's name.
fn name_of(f: &std::path::Path) -> String {
    f.file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_string()
}

#[test]
fn corpus_decrypts_like_sops() {
    let (sops, kiwi) = (sops_bin(), kiwictl_bin());
    let mut checked = 0;
    for f in corpus() {
        let name = name_of(&f);
        if name.starts_with("fail_") {
            continue;
        }
        let p = f.to_str().expect("utf8 path");
        // The Shamir file needs two of its three groups: test1 from the file, test2 from the env.
        let extra = (name == "shamir.yaml").then_some("test2");
        let ours = run(&kiwi, &["secrets", "decrypt", p], Some("test1"), extra);
        let theirs = run(&sops, &["-d", p], Some("test1"), extra);
        assert!(
            theirs.status.success(),
            "sops -d {name}: {}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        assert!(
            ours.status.success(),
            "kiwictl decrypt {name}: {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        if name.ends_with(".yaml") {
            assert_eq!(
                yaml_data(&ours.stdout),
                yaml_data(&theirs.stdout),
                "{name}: data differs"
            );
            assert_eq!(
                comments(&ours.stdout),
                comments(&theirs.stdout),
                "{name}: comments differ"
            );
        } else if name.ends_with(".json") {
            let a: serde_json::Value = serde_json::from_slice(&ours.stdout).expect("json");
            let b: serde_json::Value = serde_json::from_slice(&theirs.stdout).expect("json");
            assert_eq!(a, b, "{name}");
        }
        // And byte for byte: layout, quoting, block indentation, float format.
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&theirs.stdout),
            "{name}: kiwictl decrypt differs from sops -d"
        );
        checked += 1;
    }
    assert!(checked >= 11);
}

#[test]
fn corpus_tampered_files_are_rejected() {
    let (sops, kiwi) = (sops_bin(), kiwictl_bin());
    for f in corpus() {
        let name = name_of(&f);
        if !name.starts_with("fail_") {
            continue;
        }
        let p = f.to_str().expect("utf8 path");
        let ours = run(&kiwi, &["secrets", "decrypt", p], Some("test1"), None);
        let err = String::from_utf8_lossy(&ours.stderr);
        assert!(!ours.status.success(), "kiwictl accepted {name}");
        assert!(
            ours.stdout.is_empty(),
            "{name}: plaintext printed despite the error"
        );
        assert!(
            err.contains(&name),
            "{name}: error does not name the file: {err}"
        );
        let theirs = run(&sops, &["-d", p], Some("test1"), None);
        assert!(
            !theirs.status.success(),
            "sops accepted {name}: the case does not test anything"
        );
    }
}

#[test]
fn an_empty_sops_age_key_file_is_unset_as_in_sops() {
    let (sops, kiwi) = (sops_bin(), kiwictl_bin());
    let file = fixtures().join("corpus/basic.yaml");
    let key = std::fs::read_to_string(key("test1")).expect("key");
    let path = file.to_str().expect("utf-8");
    // Both tools with the key in SOPS_AGE_KEY and SOPS_AGE_KEY_FILE set but empty.
    let decrypt = |bin: &std::path::Path, args: &[&str]| {
        let o = std::process::Command::new(bin)
            .args(args)
            .env("SOPS_AGE_KEY", &key)
            .env("SOPS_AGE_KEY_FILE", "")
            .env("HOME", "/nonexistent")
            .output()
            .expect("spawn");
        assert!(
            o.status.success(),
            "{} {args:?}: {}",
            bin.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    };
    let theirs = decrypt(&sops, &["-d", path]);
    let ours = decrypt(&kiwi, &["secrets", "decrypt", path]);
    assert_eq!(yaml_data(&ours.stdout), yaml_data(&theirs.stdout));

    // A key file that is not there: the error names the path once and the OS error once.
    let missing = "/nonexistent/kiwi-e2e/keys.txt";
    let o = std::process::Command::new(&kiwi)
        .args(["secrets", "decrypt", path])
        .env_remove("SOPS_AGE_KEY")
        .env("SOPS_AGE_KEY_FILE", missing)
        .output()
        .expect("spawn");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.matches(missing).count(), 1, "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

/// Every `--output-type`, and `--extract` of every top- and second-level key, of the corpus
/// gives what `sops -d` gives, comments included, wherever sops succeeds (issue 16's
/// conversions). (Indexes into a list holding comments are not compared: sops counts each
/// comment there as an item.)
#[test]
fn corpus_conversions_match_sops() {
    let (sops, kiwi) = (sops_bin(), kiwictl_bin());
    let mut checked = 0;
    for f in corpus() {
        let name = name_of(&f);
        if name.starts_with("fail_") || name == "shamir.yaml" || name == "blob.bin" {
            continue;
        }
        let p = f.to_str().expect("utf8 path");
        let theirs = |args: &[&str]| {
            run(
                &sops,
                &[&["-d"][..], args, &[p]].concat(),
                Some("test1"),
                None,
            )
        };
        let ours = |args: &[&str]| {
            run(
                &kiwi,
                &[&["secrets", "decrypt"][..], args, &[p]].concat(),
                Some("test1"),
                None,
            )
        };
        // The whole document in each format.
        let mut cases: Vec<Vec<String>> = ["yaml", "json", "dotenv", "ini"]
            .iter()
            .map(|t| vec!["--output-type".to_string(), t.to_string()])
            .collect();
        // Each top-level and second-level part, in the file's format and as JSON.
        let doc: serde_json::Value =
            serde_json::from_slice(&theirs(&["--output-type", "json"]).stdout).expect("json");
        let mut paths = Vec::new();
        if let Some(m) = doc.as_object() {
            for (k, v) in m {
                paths.push(format!("[\"{k}\"]"));
                if let Some(inner) = v.as_object() {
                    paths.extend(inner.keys().map(|k2| format!("[\"{k}\"][\"{k2}\"]")));
                }
            }
        }
        for x in &paths {
            cases.push(vec!["--extract".into(), x.clone()]);
            cases.push(vec![
                "--extract".into(),
                x.clone(),
                "--output-type".into(),
                "json".into(),
            ]);
        }
        for c in &cases {
            let args: Vec<&str> = c.iter().map(String::as_str).collect();
            let t = theirs(&args);
            if !t.status.success() {
                continue;
            }
            let o = ours(&args);
            assert!(
                o.status.success(),
                "{name} {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&t.stdout),
                "{name} {args:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 100, "{checked}");
}
