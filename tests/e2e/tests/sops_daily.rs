//! sops parity for daily use: `--extract`, `--output-type`, `set`/`unset` and `edit` give what
//! the real `sops` 3.11 gives on the same files (sops encrypts the inputs; both decrypt).

use std::path::{Path, PathBuf};

use kiwi_e2e::sops::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf8 path")
}

const YAML: &str = "# top\na:\n    b: hello\n    n: 12\n    f: 1.5\n    t: true\n    e: \"\"\n    l:\n        - x\n        - {k: v, z: [1, 2, [3, {w: 1}]]}\n    m: |\n        l1\n        l2\n    o: {}\n    q: null\ns: 'quoted: yes'\n\"n\": \"<&>\"\nf: [[1, 2], [3]]\ng: 1.0e+20\n";
const JSON: &str =
    "{\"a\": {\"b\": \"x\", \"n\": [1, 2.5, null, {\"q\": true}]}, \"c\": 3, \"e\": {}}";
const ENV: &str = "A=1\nB=two words\nC=\nD=a\\nb\n";

/// Plaintext files and the same files encrypted by the real sops, in `dir`.
fn sops_made(dir: &Path) -> Vec<PathBuf> {
    let r1 = recipient("test1");
    [("doc.yaml", YAML), ("doc.json", JSON), ("doc.env", ENV)]
        .iter()
        .map(|(name, text)| {
            let plain = dir.join(name);
            std::fs::write(&plain, text).expect("write");
            let enc = ok(&sops_bin(), &["encrypt", "--age", &r1, p(&plain)], None);
            let f = dir.join(format!("enc.{name}"));
            std::fs::write(&f, enc).expect("write");
            f
        })
        .collect()
}

/// (exit status, stdout) of sops and of kiwictl for the same decrypt options.
fn both_decrypt(file: &Path, extract: Option<&str>, out: Option<&str>) -> [(bool, Vec<u8>); 2] {
    let mut opts = vec![];
    if let Some(x) = extract {
        opts.extend(["--extract", x]);
    }
    if let Some(o) = out {
        opts.extend(["--output-type", o]);
    }
    let s: Vec<&str> = ["-d"]
        .into_iter()
        .chain(opts.clone())
        .chain([p(file)])
        .collect();
    let k: Vec<&str> = ["secrets", "decrypt", p(file)]
        .into_iter()
        .chain(opts)
        .collect();
    [
        run(&sops_bin(), &s, Some("test1"), None),
        run(&kiwictl_bin(), &k, Some("test1"), None),
    ]
    .map(|o| (o.status.success(), o.stdout))
}

#[test]
fn extract_and_output_type_match_sops() {
    let d = tempfile::tempdir().expect("tempdir");
    let files = sops_made(d.path());
    let paths = [
        None,
        Some(r#"["a"]["b"]"#),
        Some(r#"["a"]["n"]"#),
        Some(r#"["a"]["f"]"#),
        Some(r#"["a"]["t"]"#),
        Some(r#"["a"]["e"]"#),
        Some(r#"["a"]["q"]"#),
        Some(r#"["a"]["o"]"#),
        Some(r#"["a"]["l"]"#),
        Some(r#"["a"]["l"][0]"#),
        Some(r#"["a"]["l"][1]"#),
        Some(r#"["a"]["l"][1]["z"][2]"#),
        Some(r#"["a"]["m"]"#),
        Some(r#"["a"]["n"][3]"#),
        Some(r#"["s"]"#),
        Some(r#"["n"]"#),
        Some(r#"["f"]"#),
        Some(r#"["g"]"#),
        Some(r#"["B"]"#),
        Some(r#"["D"]"#),
        Some(r#"["zz"]"#),
        Some(r#"["a"]["l"][9]"#),
    ];
    let mut compared = 0;
    for f in &files {
        for x in paths {
            for o in [None, Some("yaml"), Some("json"), Some("dotenv")] {
                let [(s_ok, s_out), (k_ok, k_out)] = both_decrypt(f, x, o);
                assert_eq!(s_ok, k_ok, "{} {x:?} {o:?}: exit status", f.display());
                if s_ok {
                    compared += 1;
                    assert_eq!(
                        String::from_utf8_lossy(&k_out),
                        String::from_utf8_lossy(&s_out),
                        "{} {x:?} {o:?}",
                        f.display()
                    );
                }
            }
        }
    }
    assert!(compared > 60, "only {compared} cases compared");
}

#[test]
fn bad_extract_paths_are_refused() {
    let d = tempfile::tempdir().expect("tempdir");
    let f = &sops_made(d.path())[0];
    for x in ["a", r#"["a""#, r#"["zz"]"#, r#"["a"]["l"][9]"#] {
        let o = run(
            &kiwictl_bin(),
            &["secrets", "decrypt", p(f), "--extract", x],
            Some("test1"),
            None,
        );
        assert!(!o.status.success() && o.stdout.is_empty(), "{x}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("path"), "{x}");
    }
}

#[test]
fn encrypt_output_type_decrypts_like_sops_own() {
    let d = tempfile::tempdir().expect("tempdir");
    let r1 = recipient("test1");
    sops_made(d.path());
    for name in ["doc.yaml", "doc.json", "doc.env"] {
        let plain = d.path().join(name);
        for (o, ext) in [("yaml", "yaml"), ("json", "json"), ("dotenv", "env")] {
            let args = ["encrypt", "--age", &r1, "--output-type", o, p(&plain)];
            let s = run(&sops_bin(), &args, None, None);
            let k = run(
                &kiwictl_bin(),
                &[&["secrets"][..], &args[..]].concat(),
                None,
                None,
            );
            assert_eq!(s.status.success(), k.status.success(), "{name} -> {o}");
            if !s.status.success() {
                continue;
            }
            let (sf, kf) = (
                d.path().join(format!("s-{name}.{ext}")),
                d.path().join(format!("k-{name}.{ext}")),
            );
            std::fs::write(&sf, &s.stdout).expect("write");
            std::fs::write(&kf, &k.stdout).expect("write");
            assert_eq!(
                String::from_utf8_lossy(&ok(&sops_bin(), &["-d", p(&kf)], Some("test1"))),
                String::from_utf8_lossy(&ok(&sops_bin(), &["-d", p(&sf)], Some("test1"))),
                "{name} -> {o}"
            );
        }
    }
}

const COMMENTED: &str = "# top\na:\n    # about b\n    b: 1\n    # about c\n    c: 2\n    l:\n        - x\n# about s\ns: 'x: y'\n# end\n";

#[test]
fn set_and_unset_match_sops() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut files = sops_made(d.path());
    let extra = d.path().join("commented.yaml");
    std::fs::write(&extra, COMMENTED).expect("write");
    let enc = ok(
        &sops_bin(),
        &["encrypt", "--age", &recipient("test1"), p(&extra)],
        None,
    );
    files.push(d.path().join("enc.commented.yaml"));
    std::fs::write(&files[3], enc).expect("write");
    let changes: &[&[&str]] = &[
        &[
            "set",
            r#"["a"]["new"]["deep"]"#,
            r#"{"z": 1, "a": [true, "x"]}"#,
        ],
        &["set", r#"["a"]["b"]"#, r#""world""#],
        &["set", r#"["a"]["b"]"#, r#"{"now": ["a", "map"]}"#],
        &["set", r#"["s"]["x"]"#, "1"],
        &["set", r#"["a"]["l"][5]"#, "1.5"],
        &["set", r#"["a"]["q"][0]"#, "null"],
        &["set", r#"["B"]"#, r#""new val""#],
        &["set", r#"["Z"]"#, r#""q""#],
        &["unset", r#"["a"]["l"][0]"#],
        &["unset", r#"["a"]["b"]"#],
        &["unset", r#"["a"]["c"]"#],
        &["unset", r#"["a"]"#],
        &["unset", r#"["s"]"#],
        &["unset", r#"["A"]"#],
        &["unset", r#"["a"]["nope"]"#],
    ];
    let mut compared = 0;
    for f in &files {
        let before = std::fs::read(f).expect("read");
        for c in changes {
            let name = f.file_name().and_then(|n| n.to_str()).expect("name");
            let (s, k) = (
                d.path().join(format!("s-{name}")),
                d.path().join(format!("k-{name}")),
            );
            std::fs::write(&s, &before).expect("write");
            std::fs::write(&k, &before).expect("write");
            let so = run(
                &sops_bin(),
                &[&[c[0], p(&s)][..], &c[1..]].concat(),
                Some("test1"),
                None,
            );
            let ko = run(
                &kiwictl_bin(),
                &[&["secrets", c[0], p(&k)][..], &c[1..]].concat(),
                Some("test1"),
                None,
            );
            assert_eq!(so.status.success(), ko.status.success(), "{name} {c:?}");
            if !ko.status.success() {
                assert_eq!(std::fs::read(&k).expect("read"), before, "{name} {c:?}");
                continue;
            }
            compared += 1;
            assert_eq!(
                String::from_utf8_lossy(&ok(&sops_bin(), &["-d", p(&k)], Some("test1"))),
                String::from_utf8_lossy(&ok(&sops_bin(), &["-d", p(&s)], Some("test1"))),
                "{name} {c:?}"
            );
        }
    }
    assert!(compared > 25, "only {compared} cases compared");
}

#[test]
fn set_refuses_a_layout_it_would_rewrite_and_changes_nothing() {
    let d = tempfile::tempdir().expect("tempdir");
    let f = d.path().join("flow.yaml");
    std::fs::write(&f, "a: {b: 1, c: 2} # inline\n").expect("write");
    let enc = ok(
        &kiwictl_bin(),
        &["secrets", "encrypt", "--age", &recipient("test1"), p(&f)],
        None,
    );
    std::fs::write(&f, &enc).expect("write");
    let o = run(
        &kiwictl_bin(),
        &["secrets", "set", p(&f), r#"["a"]["b"]"#, "5"],
        Some("test1"),
        None,
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("layout"));
    assert_eq!(std::fs::read(&f).expect("read"), enc);
    let bad = run(
        &kiwictl_bin(),
        &["secrets", "set", p(&f), r#"["a"]["b"]"#, "not json"],
        Some("test1"),
        None,
    );
    assert!(!bad.status.success());
    assert_eq!(std::fs::read(&f).expect("read"), enc);
}

/// Runs `kiwictl secrets edit FILE` in its own process group with `EDITOR` set to a script and
/// `XDG_RUNTIME_DIR` to `rt`; no terminal.
fn edit_with(rt: &Path, file: &Path, script: &str) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let ed = rt.parent().expect("parent").join("editor.sh");
    std::fs::write(&ed, format!("#!/bin/sh\nset -e\n{script}\n")).expect("write");
    std::fs::set_permissions(&ed, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::process::Command::new(kiwictl_bin())
        .args(["secrets", "edit", p(file)])
        .env("EDITOR", &ed)
        .env_remove("VISUAL")
        .env("XDG_RUNTIME_DIR", rt)
        .env("SOPS_AGE_KEY_FILE", key("test1"))
        .env_remove("SOPS_AGE_KEY")
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .output()
        .expect("spawn")
}

#[test]
fn edit_with_a_scripted_editor() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().expect("tempdir");
    let rt = d.path().join("rt");
    std::fs::create_dir(&rt).expect("mkdir");
    std::fs::set_permissions(&rt, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let plain = d.path().join("c.yaml");
    std::fs::write(&plain, COMMENTED).expect("write");
    let f = d.path().join("secret.yaml");
    let enc = ok(
        &sops_bin(),
        &["encrypt", "--age", &recipient("test1"), p(&plain)],
        None,
    );
    std::fs::write(&f, &enc).expect("write");
    let sops_d =
        |f: &Path| String::from_utf8(ok(&sops_bin(), &["-d", p(f)], Some("test1"))).expect("utf8");
    let no_plaintext_left = |rt: &Path| {
        assert_eq!(
            std::fs::read_dir(rt).expect("rt").count(),
            0,
            "temp file left"
        );
    };

    // The editor sees a private file; change a value and add a key.
    let o = edit_with(
        &rt,
        &f,
        r#"test "$(stat -c %a "$1")" = 600
sed -i 's/^    b: 1$/    b: changed/' "$1"
printf 'added: key\n' >> "$1""#,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        sops_d(&f),
        COMMENTED.replace("    b: 1\n", "    b: changed\n") + "added: key\n"
    );
    no_plaintext_left(&rt);
    let saved = std::fs::read(&f).expect("read");

    // Exit without a change: not rewritten.
    let o = edit_with(&rt, &f, "true");
    assert!(o.status.success());
    assert_eq!(std::fs::read(&f).expect("read"), saved);
    no_plaintext_left(&rt);

    // Broken syntax, no terminal to ask on: refused, nothing changed.
    let o = edit_with(&rt, &f, r#"echo 'a: [unclosed' > "$1""#);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unchanged"));
    assert_eq!(std::fs::read(&f).expect("read"), saved);
    no_plaintext_left(&rt);

    // Ctrl-C (SIGINT to the whole process group) mid-edit, after the editor wrote a change.
    let o = edit_with(&rt, &f, r#"echo 'x: y' > "$1"; kill -INT 0; sleep 5"#);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("interrupted"));
    assert_eq!(std::fs::read(&f).expect("read"), saved);
    no_plaintext_left(&rt);

    // The editor killed mid-edit.
    let o = edit_with(&rt, &f, r#"echo 'x: y' > "$1"; kill -9 $$"#);
    assert!(!o.status.success());
    assert_eq!(std::fs::read(&f).expect("read"), saved);
    no_plaintext_left(&rt);

    // A new file gets the creation rule's recipients.
    std::fs::write(
        d.path().join(".sops.yaml"),
        format!(
            "creation_rules:\n  - path_regex: new\\.yaml$\n    age: {}\n",
            recipient("test2")
        ),
    )
    .expect("write");
    let new = d.path().join("new.yaml");
    let o = edit_with(&rt, &new, r#"printf 'fresh: value\n' > "$1""#);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8(ok(&sops_bin(), &["-d", p(&new)], Some("test2"))).expect("utf8"),
        "fresh: value\n"
    );
    no_plaintext_left(&rt);
}

/// `--extract` keeps the comments sops keeps: around and inside lists, inline comments sops
/// moved above their key, comments indented into a list's mapping item.
#[test]
fn extract_keeps_comments_like_sops() {
    let d = tempfile::tempdir().expect("tempdir");
    let r1 = recipient("test1");
    let docs = [
        "a:\n  # c\n  b: 1 # inl\n  c: [1, 2] # flow\n",
        "a:\n  l: [1, 2]\n  m:\n    - x # on x\n    - y\n",
        "top:\n  l:\n    - a\n    # c1\n    - k: 1\n      # in item\n      j: 2\n      # end item\n    # before b\n    - b\n    # end l\n",
    ];
    for (i, text) in docs.iter().enumerate() {
        let plain = d.path().join(format!("c{i}.yaml"));
        std::fs::write(&plain, text).expect("write");
        let enc = d.path().join(format!("c{i}.enc.yaml"));
        std::fs::write(
            &enc,
            ok(&sops_bin(), &["encrypt", "--age", &r1, p(&plain)], None),
        )
        .expect("write");
        let (top, sub) = [("a", "c"), ("a", "m"), ("top", "l")][i];
        for x in [format!("[\"{top}\"]"), format!("[\"{top}\"][\"{sub}\"]")] {
            let s = ok(
                &sops_bin(),
                &["-d", "--extract", &x, p(&enc)],
                Some("test1"),
            );
            let k = ok(
                &kiwictl_bin(),
                &["secrets", "decrypt", "--extract", &x, p(&enc)],
                Some("test1"),
            );
            assert_eq!(
                String::from_utf8_lossy(&k),
                String::from_utf8_lossy(&s),
                "doc {i} {x}"
            );
        }
    }
}
