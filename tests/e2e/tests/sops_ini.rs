//! INI files as the real sops 3.11 reads and writes them: files sops made decrypt, rotate, and
//! take `set`/`unset` here to the bytes sops gives; files kiwictl made decrypt in sops to the
//! bytes sops gives for its own; `--output-type ini` matches (sops's functional test
//! `test_ini_values_as_strings`); tree runs pick INI files up.

use std::path::{Path, PathBuf};

use kiwi_e2e::sops::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf8 path")
}

/// Plaintexts: the corpus's two and a layout sops rewrites heavily (DEFAULT keys, `:`, quotes,
/// inline and multi-line comments, no final newline).
fn plains() -> Vec<(&'static str, Vec<u8>)> {
    let mut v: Vec<(&str, Vec<u8>)> = ["basic.ini", "comments.ini"]
        .iter()
        .map(|n| {
            (
                *n,
                std::fs::read(fixtures().join("plain").join(n)).expect("plain"),
            )
        })
        .collect();
    v.push((
        "odd.ini",
        b"a=1\nb : two\n#c1\n#c2\n[s1]\n  x =  `q#r`\ny=\"  sp  \"\nz = v ; why\nm = \"\"\"l1\n\n  l3\"\"\"\n[s2]\nk=v"
            .to_vec(),
    ));
    v
}

fn decrypt(bin: &Path, file: &Path, sub: bool) -> Vec<u8> {
    let args: Vec<&str> = if sub {
        vec!["secrets", "decrypt", p(file)]
    } else {
        vec!["-d", p(file)]
    };
    ok(bin, &args, Some("test1"))
}

/// Writes the plaintext `name` into `dir` and the real sops's encryption of it beside it.
fn sops_made(dir: &Path, name: &str, text: &[u8]) -> (PathBuf, PathBuf) {
    let plain = dir.join(name);
    std::fs::write(&plain, text).expect("write");
    let enc = dir.join(format!("sops.{name}"));
    let out = ok(
        &sops_bin(),
        &["encrypt", "--age", &recipient("test1"), p(&plain)],
        None,
    );
    std::fs::write(&enc, out).expect("write");
    (plain, enc)
}

#[test]
fn ini_made_by_sops_reads_and_changes_like_sops() {
    let (sops, kiwi) = (sops_bin(), kiwictl_bin());
    let d = tempfile::tempdir().expect("tempdir");
    for (name, text) in plains() {
        let (_, enc) = sops_made(d.path(), name, &text);
        let theirs = decrypt(&sops, &enc, false);
        assert_eq!(
            String::from_utf8_lossy(&decrypt(&kiwi, &enc, true)),
            String::from_utf8_lossy(&theirs),
            "{name}: decrypt differs from sops -d"
        );
        // Rotation: a new data key, the same plaintext for sops.
        let before = std::fs::read(&enc).expect("read");
        ok(&kiwi, &["secrets", "rotate", p(&enc)], Some("test1"));
        assert_ne!(before, std::fs::read(&enc).expect("read"), "{name}");
        assert_eq!(decrypt(&sops, &enc, false), theirs, "{name}: after rotate");
        // set/unset: sops on a copy, kiwictl on the file; the plaintexts must agree.
        let copy = d.path().join(format!("copy.{name}"));
        std::fs::copy(&enc, &copy).expect("copy");
        let sections: Vec<String> = String::from_utf8_lossy(&theirs)
            .lines()
            .filter_map(|l| l.strip_prefix('[').and_then(|l| l.strip_suffix(']')))
            .map(str::to_string)
            .collect();
        let last = sections.last().expect("a section");
        let changes = [
            vec![
                "set".to_string(),
                format!(r#"["{last}"]["new_key"]"#),
                r#""v=1""#.into(),
            ],
            vec![
                "set".into(),
                format!(r#"["{last}"]["a_very_long_key_name"]"#),
                r#""x""#.into(),
            ],
            vec![
                "set".into(),
                r#"["added"]"#.into(),
                r#"{"k": "v", "t": true}"#.into(),
            ],
            vec!["unset".into(), format!(r#"["{last}"]["new_key"]"#)],
        ];
        for c in &changes {
            let mut k: Vec<&str> = vec!["secrets", c[0].as_str(), p(&enc)];
            k.extend(c[1..].iter().map(String::as_str));
            ok(&kiwi, &k, Some("test1"));
            let mut s: Vec<&str> = vec![c[0].as_str(), p(&copy)];
            s.extend(c[1..].iter().map(String::as_str));
            ok(&sops, &s, Some("test1"));
            assert_eq!(
                String::from_utf8_lossy(&decrypt(&sops, &enc, false)),
                String::from_utf8_lossy(&decrypt(&sops, &copy, false)),
                "{name}: {c:?}"
            );
        }
    }
}

#[test]
fn ini_made_by_kiwictl_reads_in_sops() {
    let (sops, kiwi) = (sops_bin(), kiwictl_bin());
    let d = tempfile::tempdir().expect("tempdir");
    let r1 = recipient("test1");
    for (name, text) in plains() {
        let (plain, by_sops) = sops_made(d.path(), name, &text);
        let ours = ok(
            &kiwi,
            &["secrets", "encrypt", "--age", &r1, p(&plain)],
            None,
        );
        let by_kiwi = d.path().join(format!("kiwi.{name}"));
        std::fs::write(&by_kiwi, &ours).expect("write");
        assert!(
            String::from_utf8_lossy(&ours).contains("\n[sops]\n"),
            "{name}"
        );
        assert_eq!(
            String::from_utf8_lossy(&decrypt(&sops, &by_kiwi, false)),
            String::from_utf8_lossy(&decrypt(&sops, &by_sops, false)),
            "{name}: sops reads our file differently from its own"
        );
        // Each tool opens what the other rotated.
        ok(&sops, &["rotate", "-i", p(&by_kiwi)], Some("test1"));
        assert_eq!(
            decrypt(&kiwi, &by_kiwi, true),
            decrypt(&sops, &by_sops, false),
            "{name}: after sops rotate"
        );
        assert_eq!(
            ok(&kiwi, &["secrets", "filestatus", p(&by_kiwi)], None),
            b"{\"encrypted\":true}\n"
        );
    }
    // A tree run finds INI files by their [sops] section.
    let tree = d.path().join("tree");
    std::fs::create_dir(&tree).expect("mkdir");
    std::fs::copy(d.path().join("kiwi.basic.ini"), tree.join("app.ini")).expect("copy");
    let out = ok(
        &kiwi,
        &["secrets", "rotate", "--json", p(&tree)],
        Some("test1"),
    );
    let s: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(s["changed"], 1, "{s}");
}

#[test]
fn output_type_ini_matches_sops() {
    let (sops, kiwi) = (sops_bin(), kiwictl_bin());
    let d = tempfile::tempdir().expect("tempdir");
    let r1 = recipient("test1");
    // sops's functional test test_ini_values_as_strings, with an age key.
    let yaml = d.path().join("values.yaml");
    std::fs::write(
        &yaml,
        "the_section:\n  int: 123\n  float: 1.23\n  bool: true\n  date: 2025-01-02\n  timestamp: 2025-01-02 03:04:05\n  utc_timestamp: 2025-01-02T03:04:05Z\n  string: this is a string",
    )
    .expect("write");
    let enc = d.path().join("values.enc.yaml");
    std::fs::write(&enc, ok(&sops, &["encrypt", "--age", &r1, p(&yaml)], None)).expect("write");
    let args = ["--output-type", "ini", p(&enc)];
    let theirs = ok(&sops, &[&["decrypt"][..], &args].concat(), Some("test1"));
    let ours = ok(
        &kiwi,
        &[&["secrets", "decrypt"][..], &args].concat(),
        Some("test1"),
    );
    assert_eq!(
        String::from_utf8_lossy(&ours),
        "[the_section]\nint           = 123\nfloat         = 1.23\nbool          = true\ndate          = 2025-01-02T00:00:00Z\ntimestamp     = 2025-01-02T03:04:05Z\nutc_timestamp = 2025-01-02T03:04:05Z\nstring        = this is a string\n"
    );
    assert_eq!(ours, theirs);
    // And the other way: an INI file printed as JSON and as YAML (comments kept, as sops).
    let ini = fixtures().join("corpus/comments.ini");
    for t in ["json", "yaml"] {
        let args = ["--output-type", t, p(&ini)];
        assert_eq!(
            String::from_utf8_lossy(&ok(
                &kiwi,
                &[&["secrets", "decrypt"][..], &args].concat(),
                Some("test1")
            )),
            String::from_utf8_lossy(&ok(
                &sops,
                &[&["decrypt"][..], &args].concat(),
                Some("test1")
            )),
            "ini as {t}"
        );
    }
    // A document that is not sections of scalars cannot be INI, in either tool (exit 4 in sops).
    let list = d.path().join("list.yaml");
    std::fs::write(&list, "a: [1, 2]\n").expect("write");
    let enc = d.path().join("list.enc.yaml");
    std::fs::write(&enc, ok(&sops, &["encrypt", "--age", &r1, p(&list)], None)).expect("write");
    let o = run(
        &kiwi,
        &["secrets", "decrypt", "--output-type", "ini", p(&enc)],
        Some("test1"),
        None,
    );
    assert!(!o.status.success() && o.stdout.is_empty());
    let o = run(
        &sops,
        &["decrypt", "--output-type", "ini", p(&enc)],
        Some("test1"),
        None,
    );
    assert!(!o.status.success());
}
