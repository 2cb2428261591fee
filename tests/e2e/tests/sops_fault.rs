//! Killing a tree rotation part-way (SIGKILL) leaves every file decryptable, either as it was or
//! fully rotated, and a second run completes.

use std::time::{Duration, Instant};

use kiwi_e2e::sops::*;

#[test]
fn sigkill_during_tree_rotation_leaves_every_file_readable() {
    let (sops, kiwi) = (sops_bin(), kiwictl_bin());
    let d = tempfile::tempdir().expect("tempdir");
    let r1 = recipient("test1");
    let plain = fixtures().join("plain/basic.yaml");
    let enc = ok(
        &kiwi,
        &[
            "secrets",
            "encrypt",
            "--age",
            &r1,
            plain.to_str().expect("utf8"),
        ],
        None,
    );
    let n = 400;
    let mut files = Vec::new();
    for i in 0..n {
        let f = d.path().join(format!("repo{}/secrets/s{i}.yaml", i % 20));
        std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        std::fs::write(&f, &enc).expect("write");
        files.push(f);
    }
    let root = d.path().to_str().expect("utf8");
    let mut child = std::process::Command::new(&kiwi)
        .args(["secrets", "rotate", "--jobs", "1", "--json", root])
        .env("SOPS_AGE_KEY_FILE", key("test1"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Kill once some, but not all, files are rotated.
    let start = Instant::now();
    loop {
        let changed = files
            .iter()
            .filter(|f| std::fs::read(f).map(|b| b != enc).unwrap_or(false))
            .count();
        if changed >= 5 || start.elapsed() > Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let changed = files
        .iter()
        .filter(|f| std::fs::read(f).map(|b| b != enc).unwrap_or(false))
        .count();
    assert!(
        changed > 0 && changed < n,
        "the kill did not land part-way ({changed} of {n} rotated)"
    );
    // Every file opens and passes its MAC; a sample is compared value for value.
    let o = run(
        &kiwi,
        &["secrets", "verify", "--json", root],
        Some("test1"),
        None,
    );
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("summary");
    assert_eq!(s["failed"], 0, "{s}");
    assert_eq!(s["files"].as_array().expect("files").len(), n);
    let expected = ok(
        &kiwi,
        &["secrets", "decrypt", files[0].to_str().expect("utf8")],
        Some("test1"),
    );
    for f in files.iter().step_by(10) {
        let out = ok(
            &kiwi,
            &["secrets", "decrypt", f.to_str().expect("utf8")],
            Some("test1"),
        );
        assert_eq!(out, expected, "{} changed its data", f.display());
    }
    // The real sops reads rotated and untouched files alike.
    for f in files.iter().step_by(37) {
        ok(&sops, &["-d", f.to_str().expect("utf8")], Some("test1"));
    }
    // A second run completes.
    let o = run(
        &kiwi,
        &["secrets", "rotate", "--json", root],
        Some("test1"),
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("summary");
    assert_eq!(s["changed"], n);
    assert_eq!(s["failed"], 0);
    // Temporary files the killed run left behind are gone after the second run.
    fn temps(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                temps(&p, found);
            } else if e.file_name().to_string_lossy().contains(".kiwi-tmp-") {
                found.push(p);
            }
        }
    }
    let mut left = Vec::new();
    temps(std::path::Path::new(root), &mut left);
    assert!(left.is_empty(), "temporary files left: {left:?}");
    let o = run(
        &kiwi,
        &["secrets", "verify", "--json", root],
        Some("test1"),
        None,
    );
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("summary");
    assert_eq!(s["failed"], 0);
}
