//! The sops command-line features kiwictl answers to, each checked against the real sops 3.11
//! on the same files: `decrypt --ignore-mac`, `SOPS_AGE_KEY_CMD`, stdin with
//! `--filename-override`, `filestatus`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use kiwi_e2e::sops::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf8 path")
}

/// Runs `bin args` with `stdin` fed in and only the given environment for keys.
fn run_with(bin: &Path, args: &[&str], stdin: &[u8], env: &[(&str, &str)], cwd: &Path) -> Output {
    let mut c = Command::new(bin);
    c.args(args)
        .current_dir(cwd)
        .env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY_CMD")
        .env("HOME", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("spawn");
    // A command that refuses before reading its input (no file, no override) may exit while
    // the input is still being written: that broken pipe is its answer, not a test failure.
    match child.stdin.take().expect("stdin").write_all(stdin) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.expect("feed stdin"),
    }
    child.wait_with_output().expect("wait")
}

fn corpus(name: &str) -> std::path::PathBuf {
    fixtures().join("corpus").join(name)
}

#[test]
fn ignore_mac_decrypts_like_sops_and_still_refuses_bad_values() {
    let (sops, kiwi) = (sops_bin(), kiwictl_bin());
    let mut agreed_ok = 0;
    for name in [
        "fail_removed_value.yaml",
        "fail_wrong_mac.yaml",
        "fail_swapped_values.yaml",
        "fail_tampered_value.yaml",
        "fail_tampered_value.json",
    ] {
        let f = corpus(name);
        // Without the flag both refuse.
        assert!(!run(&sops, &["-d", p(&f)], Some("test1"), None)
            .status
            .success());
        assert!(
            !run(&kiwi, &["secrets", "decrypt", p(&f)], Some("test1"), None)
                .status
                .success()
        );
        let theirs = run(&sops, &["-d", "--ignore-mac", p(&f)], Some("test1"), None);
        let ours = run(
            &kiwi,
            &["secrets", "decrypt", "--ignore-mac", p(&f)],
            Some("test1"),
            None,
        );
        let stderr = String::from_utf8_lossy(&ours.stderr);
        assert!(
            stderr.contains("WARNING: --ignore-mac"),
            "{name}: no warning: {stderr}"
        );
        assert_eq!(
            ours.status.success(),
            theirs.status.success(),
            "{name}: sops says {}, kiwictl says {stderr}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        if theirs.status.success() {
            assert_eq!(ours.stdout, theirs.stdout, "{name}");
            agreed_ok += 1;
        }
    }
    // The removed value and the wrong MAC open without the check; the tampered and swapped
    // values do not decrypt under their own paths, with or without it.
    assert_eq!(agreed_ok, 2);
    let tampered = corpus("fail_tampered_value.yaml");
    let o = run(
        &kiwi,
        &["secrets", "decrypt", "--ignore-mac", p(&tampered)],
        Some("test1"),
        None,
    );
    assert!(o.stdout.is_empty(), "a refused file printed plaintext");
}

#[test]
fn key_cmd_gives_identities_like_sops() {
    let (sops, kiwi) = (sops_bin(), kiwictl_bin());
    let d = tempfile::tempdir().expect("tempdir");
    let f = corpus("basic.yaml");
    let key1 = key("test1");
    let cmd = format!("cat '{}'", p(&key1));
    let env = [("SOPS_AGE_KEY_CMD", cmd.as_str())];
    let theirs = run_with(&sops, &["-d", p(&f)], b"", &env, d.path());
    let ours = run_with(&kiwi, &["secrets", "decrypt", p(&f)], b"", &env, d.path());
    assert!(
        theirs.status.success(),
        "{}",
        String::from_utf8_lossy(&theirs.stderr)
    );
    assert!(
        ours.status.success(),
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    assert_eq!(ours.stdout, theirs.stdout);

    // The command does not see an inline key: it records its environment in a file.
    let seen = d.path().join("seen");
    let script = d.path().join("keycmd.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s' \"${{SOPS_AGE_KEY-unset}}\" > '{}'\ncat '{}'\n",
            p(&seen),
            p(&key1)
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let k2 = std::fs::read_to_string(key("test2")).expect("key2");
    let env = [
        ("SOPS_AGE_KEY_CMD", p(&script)),
        ("SOPS_AGE_KEY", k2.as_str()),
    ];
    let ours = run_with(&kiwi, &["secrets", "decrypt", p(&f)], b"", &env, d.path());
    assert!(
        ours.status.success(),
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    assert_eq!(ours.stdout, theirs.stdout);
    assert_eq!(std::fs::read_to_string(&seen).expect("seen"), "unset");

    // A failing command is a clear refusal that names it.
    let env = [("SOPS_AGE_KEY_CMD", "false")];
    let ours = run_with(&kiwi, &["secrets", "decrypt", p(&f)], b"", &env, d.path());
    assert!(!ours.status.success());
    assert!(ours.stdout.is_empty());
    let e = String::from_utf8_lossy(&ours.stderr);
    assert!(e.contains("SOPS_AGE_KEY_CMD `false`"), "{e}");
}

#[test]
fn stdin_with_filename_override_like_sops() {
    let (sops, kiwi) = (sops_bin(), kiwictl_bin());
    let d = tempfile::tempdir().expect("tempdir");
    let key1 = key("test1");
    let env = [("SOPS_AGE_KEY_FILE", p(&key1))];
    // Decrypt: every format of the corpus, read from stdin, named by the override.
    for name in ["basic.yaml", "basic.json", "basic.env", "blob.bin"] {
        let src = std::fs::read(corpus(name)).expect("corpus");
        let theirs = run_with(
            &sops,
            &["decrypt", "--filename-override", name],
            &src,
            &env,
            d.path(),
        );
        assert!(
            theirs.status.success(),
            "{}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        for args in [
            &["secrets", "decrypt", "--filename-override", name][..],
            &["secrets", "decrypt", "--filename-override", name, "-"][..],
        ] {
            let ours = run_with(&kiwi, args, &src, &env, d.path());
            assert!(
                ours.status.success(),
                "{}",
                String::from_utf8_lossy(&ours.stderr)
            );
            assert_eq!(ours.stdout, theirs.stdout, "{name} {args:?}");
        }
    }
    // Encrypt: the creation rule is chosen by the override name.
    let r1 = recipient("test1");
    let r2 = recipient("test2");
    std::fs::write(
        d.path().join(".sops.yaml"),
        format!("creation_rules:\n  - path_regex: ^prod/.*\n    age: {r2}\n  - age: {r1}\n"),
    )
    .expect("config");
    let plain = std::fs::read(fixtures().join("plain/basic.yaml")).expect("plain");
    let ours = run_with(
        &kiwi,
        &["secrets", "encrypt", "--filename-override", "prod/app.yaml"],
        &plain,
        &[],
        d.path(),
    );
    assert!(
        ours.status.success(),
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    let enc = d.path().join("enc.yaml");
    std::fs::write(&enc, &ours.stdout).expect("write");
    assert!(String::from_utf8_lossy(&ours.stdout).contains(&r2));
    let by_sops = ok(&sops, &["-d", p(&enc)], Some("test2"));
    let reference = ok(&sops, &["-d", p(&corpus("basic.yaml"))], Some("test1"));
    assert_eq!(yaml_data(&by_sops), yaml_data(&reference));
    // Without a file and without an override: refused, nothing printed.
    let o = run_with(&kiwi, &["secrets", "decrypt"], &plain, &env, d.path());
    assert!(!o.status.success() && o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--filename-override"));
}

#[test]
fn filestatus_prints_what_sops_prints() {
    let (sops, kiwi) = (sops_bin(), kiwictl_bin());
    let d = tempfile::tempdir().expect("tempdir");
    let mut files: Vec<std::path::PathBuf> = ["basic.yaml", "basic.json", "basic.env", "blob.bin"]
        .iter()
        .map(|n| corpus(n))
        .collect();
    files.extend(
        ["basic.yaml", "basic.json", "basic.env"]
            .iter()
            .map(|n| fixtures().join("plain").join(n)),
    );
    // A YAML file with a whole `sops` block but no MAC, or no version, is not encrypted for sops.
    let enc =
        String::from_utf8(std::fs::read(corpus("basic.yaml")).expect("corpus")).expect("utf8");
    for (name, drop) in [
        ("no_mac.yaml", "    mac: "),
        ("no_version.yaml", "    version: "),
    ] {
        let f = d.path().join(name);
        let text: String = enc
            .split_inclusive('\n')
            .filter(|l| !l.starts_with(drop))
            .collect();
        std::fs::write(&f, text).expect("write");
        files.push(f);
    }
    let mut seen = std::collections::BTreeSet::new();
    for f in &files {
        let theirs = run(&sops, &["filestatus", p(f)], None, None);
        let ours = run(&kiwi, &["secrets", "filestatus", p(f)], None, None);
        assert!(
            theirs.status.success(),
            "{}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        assert!(
            ours.status.success(),
            "{}",
            String::from_utf8_lossy(&ours.stderr)
        );
        assert_eq!(ours.stdout, theirs.stdout, "{}", f.display());
        seen.insert(ours.stdout);
    }
    assert_eq!(seen.len(), 2, "both answers were exercised");
    // A missing file and a file that does not parse: both tools fail.
    let no_keys = d.path().join("no_keys.yaml");
    std::fs::write(&no_keys, "a: 1\nsops:\n    version: 3.11.0\n").expect("write");
    for bad in [
        d.path().join("missing.yaml"),
        fixtures().join("plain/blob.bin"),
        no_keys,
    ] {
        assert!(!run(&sops, &["filestatus", p(&bad)], None, None)
            .status
            .success());
        assert!(!run(&kiwi, &["secrets", "filestatus", p(&bad)], None, None)
            .status
            .success());
    }
}

/// The child's environment, sorted, without the variables the shell sets itself.
fn env_cmd(out: &Path) -> String {
    format!(
        "env | grep -v -e '^_=' -e '^PWD=' -e '^SHLVL=' | sort > '{}'; exit 3",
        p(out)
    )
}

#[test]
fn exec_env_gives_the_child_what_sops_gives_it() {
    let (sops, kiwi) = (sops_bin(), kiwictl_bin());
    let d = tempfile::tempdir().expect("tempdir");
    // A flat YAML file with a multi-line value, a number and a bool, encrypted by sops.
    let flat = d.path().join("flat.yaml");
    std::fs::write(
        &flat,
        "TOKEN: s3cr3t\nPORT: 5432\nON: true\nCERT: |\n    line1\n    line2\n",
    )
    .expect("write");
    let enc = ok(
        &sops,
        &["encrypt", "--age", &recipient("test1"), p(&flat)],
        None,
    );
    std::fs::write(&flat, enc).expect("write");
    for f in [corpus("basic.env"), flat] {
        let (theirs_env, ours_env) = (d.path().join("theirs"), d.path().join("ours"));
        let theirs = run(
            &sops,
            &["exec-env", p(&f), &env_cmd(&theirs_env)],
            Some("test1"),
            None,
        );
        let ours = run(
            &kiwi,
            &["secrets", "exec-env", p(&f), "--", &env_cmd(&ours_env)],
            Some("test1"),
            None,
        );
        assert_eq!(theirs.status.code(), Some(3));
        assert_eq!(
            ours.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&ours.stderr)
        );
        let ours_text = std::fs::read_to_string(&ours_env).expect("ours");
        assert_eq!(
            ours_text,
            std::fs::read_to_string(&theirs_env).expect("theirs"),
            "{}",
            f.display()
        );
        assert!(!ours_text.contains("SOPS_AGE_KEY="));
    }
    // The keys go to the child only, and a nested file is refused by both before anything runs.
    let marker = d.path().join("ran");
    let cmd = format!("touch '{}'", p(&marker));
    let nested = corpus("basic.yaml");
    assert!(
        !run(&sops, &["exec-env", p(&nested), &cmd], Some("test1"), None)
            .status
            .success()
    );
    let o = run(
        &kiwi,
        &["secrets", "exec-env", p(&nested), "--", &cmd],
        Some("test1"),
        None,
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("flat file"));
    assert!(!marker.exists());
}

/// `.sops*` entries in the temporary directory.
fn sops_temps(tmp: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(tmp)
        .expect("tmp")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".sops"))
        })
        .collect()
}

#[test]
fn exec_file_gives_the_plaintext_and_leaves_nothing() {
    let (sops, kiwi) = (sops_bin(), kiwictl_bin());
    let d = tempfile::tempdir().expect("tempdir");
    let tmp = d.path().join("tmp");
    std::fs::create_dir(&tmp).expect("tmp");
    let with_tmp = |bin: &Path, args: &[&str]| {
        let mut c = Command::new(bin);
        c.args(args)
            .env_remove("SOPS_AGE_KEY")
            .env("SOPS_AGE_KEY_FILE", key("test1"))
            .env("TMPDIR", &tmp)
            .env("HOME", "/nonexistent");
        c.output().expect("spawn")
    };
    for name in ["basic.yaml", "basic.json", "basic.env", "blob.bin"] {
        let f = corpus(name);
        let reference = ok(&sops, &["-d", p(&f)], Some("test1"));
        for fifo in [true, false] {
            let (theirs_out, ours_out) = (d.path().join("t"), d.path().join("o"));
            let cmd = |out: &Path| format!("cat {{}} > '{}'; ls -l {{}} >&2; exit 5", p(out));
            let mut sargs = vec!["exec-file"];
            let mut kargs = vec!["secrets", "exec-file"];
            if !fifo {
                sargs.push("--no-fifo");
                kargs.push("--no-fifo");
            }
            let (sc, kc) = (cmd(&theirs_out), cmd(&ours_out));
            sargs.extend([p(&f), sc.as_str()]);
            kargs.extend([p(&f), "--", kc.as_str()]);
            let theirs = with_tmp(&sops, &sargs);
            let ours = with_tmp(&kiwi, &kargs);
            assert_eq!(theirs.status.code(), Some(5));
            assert_eq!(
                ours.status.code(),
                Some(5),
                "{}",
                String::from_utf8_lossy(&ours.stderr)
            );
            let listing = String::from_utf8_lossy(&ours.stderr).to_string();
            assert!(
                listing.starts_with(if fifo { "prw-------" } else { "-rw-------" }),
                "{name}: {listing}"
            );
            assert_eq!(std::fs::read(&ours_out).expect("ours"), reference, "{name}");
            assert_eq!(
                std::fs::read(&ours_out).expect("ours"),
                std::fs::read(&theirs_out).expect("theirs")
            );
            assert_eq!(sops_temps(&tmp), Vec::<std::path::PathBuf>::new(), "{name}");
        }
    }
    // The child killed by a signal, or never reading the FIFO: its status, nothing left.
    let f = corpus("basic.yaml");
    for extra in [&[][..], &["--no-fifo"][..]] {
        for (cmd, code) in [("kill -TERM $$", 128 + 15), ("exit 0", 0)] {
            let mut args = vec!["secrets", "exec-file"];
            args.extend_from_slice(extra);
            args.extend([p(&f), "--", cmd]);
            let o = with_tmp(&kiwi, &args);
            assert_eq!(o.status.code(), Some(code), "{cmd} {extra:?}");
            assert!(sops_temps(&tmp).is_empty(), "{cmd} {extra:?}");
        }
    }
}

#[test]
fn exec_file_cleans_up_when_kiwictl_is_sent_sigterm() {
    let kiwi = kiwictl_bin();
    let d = tempfile::tempdir().expect("tempdir");
    let ready = d.path().join("ready");
    let cmd = format!("touch '{}'; exec sleep 30", p(&ready));
    let mut child = Command::new(&kiwi)
        .args([
            "secrets",
            "exec-file",
            "--no-fifo",
            p(&corpus("basic.yaml")),
            "--",
            &cmd,
        ])
        .env_remove("SOPS_AGE_KEY")
        .env("SOPS_AGE_KEY_FILE", key("test1"))
        .env("TMPDIR", d.path())
        .spawn()
        .expect("spawn");
    let t0 = std::time::Instant::now();
    while !ready.exists() {
        assert!(t0.elapsed().as_secs() < 20, "the command never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        sops_temps(d.path()).len(),
        1,
        "the plaintext is there while it runs"
    );
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let status = child.wait().expect("wait");
    // The TERM reached the shell, whose status kiwictl reports; the file is gone.
    assert_eq!(status.code(), Some(128 + 15));
    assert!(
        sops_temps(d.path()).is_empty(),
        "{:?}",
        sops_temps(d.path())
    );
}
