//! Files kiwictl writes (encrypt, updatekeys, rotate) decrypt with the real `sops -d` to the
//! same data and comments; removed recipients lose access; the `age` CLI unwraps the data key
//! for added recipients; `verify` reports bad and non-conforming files.

use std::path::Path;

use kiwi_e2e::sops::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf8 path")
}

/// What sops itself makes of a plaintext: encrypt with sops, decrypt with sops.
fn sops_reference(dir: &Path, plain: &Path, flags: &[&str]) -> Vec<u8> {
    let sops = sops_bin();
    let mut args = vec!["encrypt", "--age"];
    let r1 = recipient("test1");
    args.push(&r1);
    args.extend_from_slice(flags);
    args.push(p(plain));
    let enc = ok(&sops, &args, None);
    let ext = plain.extension().and_then(|e| e.to_str()).unwrap_or("bin");
    let f = dir.join(format!("reference.{ext}"));
    std::fs::write(&f, enc).expect("write");
    ok(&sops, &["-d", p(&f)], Some("test1"))
}

#[test]
fn kiwictl_encrypt_decrypts_with_sops() {
    let (sops, kiwi) = (sops_bin(), kiwictl_bin());
    let d = tempfile::tempdir().expect("tempdir");
    let r1 = recipient("test1");
    let cases: &[(&str, &[&str])] = &[
        ("basic.yaml", &[]),
        (
            "k8s-secret.yaml",
            &["--encrypted-regex", "^(data|stringData)$"],
        ),
        (
            "k8s-secret.yaml",
            &["--unencrypted-regex", "^(apiVersion|kind|metadata|type)$"],
        ),
        ("suffixes.yaml", &["--encrypted-suffix", "_secret"]),
        ("suffixes.yaml", &["--unencrypted-suffix", "_plain"]),
        ("basic.json", &[]),
        ("basic.env", &[]),
        ("blob.bin", &[]),
        // Comments at the end of nested mappings and inside lists, under the paths sops reads
        // them with; a block scalar that ends the file without a line break, encrypted and
        // not; floats yaml.v3 prints with an exponent; flow mappings at the top level.
        ("comments.yaml", &[]),
        ("block_eof.yaml", &[]),
        ("block_eof.yaml", &["--unencrypted-regex", "^key$"]),
        ("floats.yaml", &[]),
        ("flow.yaml", &[]),
        ("flow_empty.yaml", &[]),
        ("strings.yaml", &[]),
        ("floats.json", &[]),
    ];
    for (i, (name, flags)) in cases.iter().enumerate() {
        let plain = fixtures().join("plain").join(name);
        let mut args = vec!["secrets", "encrypt", "--age", &r1];
        args.extend_from_slice(flags);
        args.push(p(&plain));
        let enc = ok(&kiwi, &args, None);
        let f = d.path().join(format!("case{i}-{name}"));
        std::fs::write(&f, &enc).expect("write");
        let by_sops = ok(&sops, &["-d", p(&f)], Some("test1"));
        let reference = sops_reference(d.path(), &plain, flags);
        if name.ends_with(".yaml") {
            assert_eq!(
                yaml_data(&by_sops),
                yaml_data(&reference),
                "{name} {flags:?}"
            );
            assert_eq!(
                comments(&by_sops),
                comments(&std::fs::read(&plain).expect("plain")),
                "{name}: comments lost"
            );
        } else if name.ends_with(".json") {
            let a: serde_json::Value = serde_json::from_slice(&by_sops).expect("json");
            let b: serde_json::Value = serde_json::from_slice(&reference).expect("json");
            assert_eq!(a, b, "{name}");
        } else {
            assert_eq!(by_sops, std::fs::read(&plain).expect("plain"), "{name}");
        }
        // Canonical files come back byte for byte through kiwictl. A block scalar that ended
        // the file without a line break now has one (the metadata followed it), so it comes
        // back as `|-` with one: the same data, checked above.
        let back = ok(&kiwi, &["secrets", "decrypt", p(&f)], Some("test1"));
        if *name == "block_eof.yaml" {
            assert_eq!(
                yaml_data(&back),
                yaml_data(&std::fs::read(&plain).expect("plain")),
                "{name}: kiwictl round trip"
            );
        } else if !name.starts_with("basic") {
            assert_eq!(
                back,
                std::fs::read(&plain).expect("plain"),
                "{name}: kiwictl round trip"
            );
        }
    }
}

#[test]
fn shamir_key_groups_from_sops_yaml() {
    let (sops, kiwi) = (sops_bin(), kiwictl_bin());
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        d.path().join(".sops.yaml"),
        format!(
            "creation_rules:\n  - path_regex: \\.yaml$\n    shamir_threshold: 2\n    key_groups:\n      - age: [{}]\n      - age: [{}]\n      - age: [{}]\n",
            recipient("test1"),
            recipient("test2"),
            recipient("test3")
        ),
    )
    .expect("config");
    let f = d.path().join("s.yaml");
    std::fs::copy(fixtures().join("plain/k8s-secret.yaml"), &f).expect("copy");
    ok(&kiwi, &["secrets", "encrypt", "-i", p(&f)], None);
    // One group is not enough, two are.
    assert!(!run(&sops, &["-d", p(&f)], Some("test1"), None)
        .status
        .success());
    let o = run(&sops, &["-d", p(&f)], Some("test1"), Some("test3"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        yaml_data(&o.stdout),
        yaml_data(&std::fs::read(fixtures().join("plain/k8s-secret.yaml")).expect("plain"))
    );
    let o = run(
        &kiwi,
        &["secrets", "decrypt", p(&f)],
        Some("test2"),
        Some("test3"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The age stanza (armored) for `recipient` in a kiwictl/sops YAML file.
fn stanza(file: &Path, recipient: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).expect("read");
    let at = text.find(&format!("recipient: {recipient}"))?;
    let rest = &text[at..];
    let b = rest.find("-----BEGIN AGE ENCRYPTED FILE-----")?;
    let e =
        rest.find("-----END AGE ENCRYPTED FILE-----")? + "-----END AGE ENCRYPTED FILE-----".len();
    Some(
        rest[b..e]
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("\n")
            + "\n",
    )
}

/// The data key as the age CLI unwraps it.
fn age_unwrap(file: &Path, recipient: &str, identity: &str) -> Vec<u8> {
    let armored = stanza(file, recipient).expect("stanza for recipient");
    // Outside the tree under test: a catch-all creation rule would make it a plaintext secret.
    let scratch = tempfile::tempdir().expect("tempdir");
    let a = scratch.path().join("stanza.age");
    std::fs::write(&a, armored).expect("write");
    let o = std::process::Command::new(age_bin())
        .args(["-d", "-i", p(&key(identity)), p(&a)])
        .output()
        .expect("age");
    assert!(
        o.status.success(),
        "age -d: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.stdout.len(), 32, "a SOPS data key is 32 bytes");
    o.stdout
}

#[test]
fn updatekeys_and_rotate_change_who_can_decrypt() {
    let (sops, kiwi) = (sops_bin(), kiwictl_bin());
    let d = tempfile::tempdir().expect("tempdir");
    let (r1, r2, r3) = (recipient("test1"), recipient("test2"), recipient("test3"));
    let cfg = d.path().join(".sops.yaml");
    std::fs::write(&cfg, format!("creation_rules:\n  - age: {r1}\n")).expect("config");
    let f = d.path().join("app.yaml");
    std::fs::copy(fixtures().join("plain/basic.yaml"), &f).expect("copy");
    ok(&kiwi, &["secrets", "encrypt", "-i", p(&f)], None);
    let reference = ok(&sops, &["-d", p(&f)], Some("test1"));
    let key_before = age_unwrap(&f, &r1, "test1");

    // updatekeys: the rule now names test2 only.
    std::fs::write(&cfg, format!("creation_rules:\n  - age: {r2}\n")).expect("config");
    ok(
        &kiwi,
        &["secrets", "updatekeys", "--yes", p(d.path())],
        Some("test1"),
    );
    let after = ok(&sops, &["-d", p(&f)], Some("test2"));
    assert_eq!(after, reference, "updatekeys changed the data");
    assert_eq!(
        comments(&after),
        comments(&std::fs::read(fixtures().join("plain/basic.yaml")).expect("plain"))
    );
    assert!(
        !run(&sops, &["-d", p(&f)], Some("test1"), None)
            .status
            .success(),
        "removed recipient still decrypts"
    );
    assert_eq!(
        age_unwrap(&f, &r2, "test2"),
        key_before,
        "updatekeys must keep the data key"
    );

    // rotate: new data key, test3 added, test2 removed.
    ok(
        &kiwi,
        &[
            "secrets",
            "rotate",
            "--add-age",
            &r3,
            "--rm-age",
            &r2,
            p(&f),
        ],
        Some("test2"),
    );
    assert_eq!(
        ok(&sops, &["-d", p(&f)], Some("test3")),
        reference,
        "rotate changed the data"
    );
    assert!(
        !run(&sops, &["-d", p(&f)], Some("test2"), None)
            .status
            .success(),
        "removed recipient still decrypts"
    );
    assert_ne!(
        age_unwrap(&f, &r3, "test3"),
        key_before,
        "rotate must change the data key"
    );
    // sops itself can rotate what we wrote.
    let o = run(&sops, &["rotate", "-i", p(&f)], Some("test3"), None);
    assert!(
        o.status.success(),
        "sops rotate: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        yaml_data(&ok(&kiwi, &["secrets", "decrypt", p(&f)], Some("test3"))),
        yaml_data(&reference)
    );
}

#[test]
fn verify_reports_bad_and_nonconforming_files() {
    let kiwi = kiwictl_bin();
    let d = tempfile::tempdir().expect("tempdir");
    let r1 = recipient("test1");
    std::fs::write(
        d.path().join(".sops.yaml"),
        format!("creation_rules:\n  - age: {r1}\n"),
    )
    .expect("config");
    std::fs::create_dir_all(d.path().join(".git")).expect("git dir");
    for (i, n) in ["a.yaml", "b.yaml", "c.json"].iter().enumerate() {
        let src = fixtures().join("plain").join(if n.ends_with("json") {
            "basic.json"
        } else {
            "suffixes.yaml"
        });
        let f = d.path().join(format!("repo{i}")).join(n);
        std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&src, &f).expect("copy");
        ok(&kiwi, &["secrets", "encrypt", "-i", p(&f)], None);
    }
    // A tampered file, a file for someone else, and a SOPS file inside .git that must be skipped.
    std::fs::copy(
        fixtures().join("corpus/fail_tampered_value.yaml"),
        d.path().join("repo0/bad.yaml"),
    )
    .expect("copy");
    let other = ok(
        &kiwi,
        &[
            "secrets",
            "encrypt",
            "--age",
            &r1,
            "--age",
            &recipient("test2"),
            p(&fixtures().join("plain/suffixes.yaml")),
        ],
        None,
    );
    std::fs::write(d.path().join("repo1/extra.yaml"), other).expect("write");
    std::fs::copy(
        fixtures().join("corpus/fail_tampered_value.yaml"),
        d.path().join(".git/x.yaml"),
    )
    .expect("copy");
    let o = run(
        &kiwi,
        &["secrets", "verify", "--json", p(d.path())],
        Some("test1"),
        None,
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json summary");
    assert_eq!(s["files"].as_array().expect("files").len(), 5);
    assert_eq!(s["failed"], 1);
    assert_eq!(s["nonconforming"], 1);
    let bad = s["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["status"] == "failed")
        .expect("failed file");
    assert!(bad["path"].as_str().expect("path").ends_with("bad.yaml"));
    // Text mode lists who can open what.
    let o = run(
        &kiwi,
        &["secrets", "verify", p(d.path())],
        Some("test1"),
        None,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("{r1} can open 4 file(s)")), "{out}");
}

/// Every `ENC[...]` token in a file: values, comments, list-item comments and the MAC.
fn enc_tokens(file: &Path) -> Vec<String> {
    let t = std::fs::read_to_string(file).expect("read");
    t.match_indices("ENC[AES256_GCM,")
        .map(|(i, _)| t[i..i + t[i..].find(']').expect("closing ]") + 1].to_string())
        .collect()
}

/// `sops -d` succeeds, leaves no ciphertext behind and gives the plaintext's comments.
fn sops_reads_everything(file: &Path, identity: &str, plain: &Path) {
    let o = run(&sops_bin(), &["-d", p(file)], Some(identity), None);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "sops -d: {err}");
    assert!(!out.contains("ENC["), "sops left ciphertext: {out}\n{err}");
    assert_eq!(
        comments(&o.stdout),
        comments(&std::fs::read(plain).expect("plain"))
    );
}

#[test]
fn rotation_and_updatekeys_leave_nothing_under_an_old_key_and_verify_finds_what_does() {
    let kiwi = kiwictl_bin();
    let d = tempfile::tempdir().expect("tempdir");
    let (r1, r2) = (recipient("test1"), recipient("test2"));
    let cfg = d.path().join(".sops.yaml");
    std::fs::write(&cfg, format!("creation_rules:\n  - age: {r1}\n")).expect("config");
    // A file sops made, with comments at the end of nested mappings and inside lists.
    let plain = fixtures().join("plain/comments.yaml");
    let f = d.path().join("app.yaml");
    std::fs::copy(fixtures().join("corpus/comments.yaml"), &f).expect("copy");
    let before = enc_tokens(&f);
    let key_before = age_unwrap(&f, &r1, "test1");

    ok(&kiwi, &["secrets", "rotate", p(&f)], Some("test1"));
    let after = enc_tokens(&f);
    assert_eq!(after.len(), before.len(), "tokens appeared or vanished");
    assert!(
        after.iter().all(|t| !before.contains(t)),
        "a value or comment kept its old ciphertext"
    );
    assert_ne!(age_unwrap(&f, &r1, "test1"), key_before);
    sops_reads_everything(&f, "test1", &plain);

    // updatekeys keeps the data key; everything stays readable for the new recipient.
    std::fs::write(&cfg, format!("creation_rules:\n  - age: {r2}\n")).expect("config");
    ok(
        &kiwi,
        &["secrets", "updatekeys", "--yes", p(d.path())],
        Some("test1"),
    );
    sops_reads_everything(&f, "test2", &plain);

    // One comment put back under the old data key: verify reports the file, rotate and
    // decrypt refuse it, and the file is left as it was.
    let text = std::fs::read_to_string(&f).expect("read");
    let comment_token = |toks: &[String], src: &str| -> String {
        toks.iter()
            .find(|t| src.contains(&format!("#{t}")))
            .expect("an encrypted comment line")
            .clone()
    };
    let old = comment_token(
        &before,
        &std::fs::read_to_string(fixtures().join("corpus/comments.yaml")).expect("read"),
    );
    let new = comment_token(&enc_tokens(&f), &text);
    std::fs::write(&f, text.replacen(&new, &old, 1)).expect("write");
    let bytes = std::fs::read(&f).expect("read");
    let o = run(
        &kiwi,
        &["secrets", "verify", "--json", p(d.path())],
        Some("test2"),
        None,
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json summary");
    assert_eq!(s["failed"], 1, "{s}");
    assert!(
        s.to_string()
            .contains("does not decrypt with this file's data key"),
        "{s}"
    );
    let o = run(&kiwi, &["secrets", "rotate", p(&f)], Some("test2"), None);
    assert!(
        !o.status.success(),
        "rotate accepted a comment under an old key"
    );
    let o = run(&kiwi, &["secrets", "decrypt", p(&f)], Some("test2"), None);
    assert!(!o.status.success() && o.stdout.is_empty());
    assert_eq!(
        std::fs::read(&f).expect("read"),
        bytes,
        "the file was changed"
    );
}
