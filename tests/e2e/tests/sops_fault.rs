//! Faults during a tree rotation: killing it part-way (SIGKILL), or the filesystem filling up,
//! leaves every file decryptable, either as it was or fully rotated, and a second run
//! completes. (Power loss is checked on recorded operation traces: tooling's `sops::crash`.)
//! Also, under strace, a rotation never writes into an existing file.

use std::path::{Path, PathBuf};
use std::process::Command;
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
    let left = temps(std::path::Path::new(root));
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

/// Our temporary files under `dir`.
fn temps(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            found.extend(temps(&p));
        } else if e.file_name().to_string_lossy().contains(".kiwi-tmp-") {
            found.push(p);
        }
    }
    found
}

/// A size-limited tmpfs, unmounted when dropped (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -t tmpfs failed");
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let st = Command::new("umount").arg(&self.0).status();
        if !st.is_ok_and(|s| s.success()) {
            // Busy (a child still running): detach it so nothing is left mounted.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
fn a_full_disk_leaves_every_file_old_or_new_and_the_next_run_completes() {
    if Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout != b"0\n")
    {
        eprintln!("SKIPPED: mounting a size-limited tmpfs needs root; run this test as root");
        return;
    }
    let (sops, kiwi) = (sops_bin(), kiwictl_bin());
    let r1 = recipient("test1");
    let work = tempfile::tempdir().expect("tempdir");
    let encrypt = |name: &str, text: &str| {
        let p = work.path().join(name);
        std::fs::write(&p, text).expect("write plain");
        ok(
            &kiwi,
            &[
                "secrets",
                "encrypt",
                "--age",
                &r1,
                p.to_str().expect("utf8"),
            ],
            None,
        )
    };
    let small = encrypt("small.yaml", "user: admin\npassword: hunter2\n");
    let large = encrypt(
        "large.yaml",
        &format!("user: admin\nbundle: {}\n", "x".repeat(96 * 1024)),
    );
    let mnt = work.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let fs = Tmpfs::mount(&mnt, "2m");
    // Small files sort first and fit in the space left; the large ones do not.
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for (i, bytes) in [&small, &small, &large, &large, &small, &large]
        .into_iter()
        .enumerate()
    {
        let f = fs.0.join(format!("repo{}/s{i}.yaml", i % 2));
        std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        std::fs::write(&f, bytes).expect("write");
        files.push((f, bytes.clone()));
    }
    // Fill the filesystem, then free 32 KiB: room for a small file's rewrite, not a large one.
    let filler = fs.0.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let len = f.metadata().expect("stat").len();
        f.set_len(len.saturating_sub(32 * 1024)).expect("shrink");
    }
    let root = fs.0.to_str().expect("utf8");
    let o = run(
        &kiwi,
        &["secrets", "rotate", "--jobs", "2", root],
        Some("test1"),
        None,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for (f, before) in &files {
        let now = std::fs::read(f).expect("read");
        let is_large = before.len() > 64 * 1024;
        if is_large {
            assert_eq!(
                &now,
                before,
                "{} changed though it could not be written",
                f.display()
            );
            assert!(
                err.contains(&format!("FAILED {}: ", f.display()))
                    && err.contains("No space left on device"),
                "the failing file is not named: {err}"
            );
        } else {
            assert_ne!(&now, before, "{} was not rotated", f.display());
        }
        // Old or new, the real sops reads it, to the same data.
        let out = ok(&sops, &["-d", f.to_str().expect("utf8")], Some("test1"));
        assert!(out.starts_with(b"user: admin\n"), "{}", f.display());
    }
    assert!(
        temps(&fs.0).is_empty(),
        "temporary files left: {:?}",
        temps(&fs.0)
    );
    // Space freed: the next run rotates every file.
    std::fs::remove_file(&filler).expect("free space");
    let o = run(
        &kiwi,
        &["secrets", "rotate", "--json", root],
        Some("test1"),
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("summary");
    assert_eq!(
        (s["changed"].as_u64(), s["failed"].as_u64()),
        (Some(6), Some(0)),
        "{s}"
    );
    for (f, before) in &files {
        assert_ne!(&std::fs::read(f).expect("read"), before);
        ok(&sops, &["-d", f.to_str().expect("utf8")], Some("test1"));
    }
    assert!(temps(&fs.0).is_empty());
}

#[test]
fn a_rotation_never_opens_an_existing_file_for_writing() {
    let present = Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        present,
        "strace is missing: run scripts/install-test-deps first"
    );
    let kiwi = kiwictl_bin();
    let d = tempfile::tempdir().expect("tempdir");
    let plain = fixtures().join("plain/basic.yaml");
    let enc = ok(
        &kiwi,
        &[
            "secrets",
            "encrypt",
            "--age",
            &recipient("test1"),
            plain.to_str().expect("utf8"),
        ],
        None,
    );
    // More files than a batch of the old committer (128), so that an inode reused in place
    // would show up here as an open without O_CREAT.
    let n = 300;
    let tree = d.path().join("tree");
    for i in 0..n {
        let f = tree.join(format!("repo{}/s{i}.yaml", i % 3));
        std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        std::fs::write(&f, &enc).expect("write");
    }
    let log = d.path().join("strace.log");
    let o = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=%file", "-o"])
        .arg(&log)
        .arg(&kiwi)
        .args(["secrets", "rotate", "--json"])
        .arg(&tree)
        .env("SOPS_AGE_KEY_FILE", key("test1"))
        .output()
        .expect("run strace");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log = std::fs::read_to_string(&log).expect("strace log");
    let (mut creates, mut renames) = (0, 0);
    for line in log.lines() {
        assert!(!line.contains("RENAME_EXCHANGE"), "an exchange: {line}");
        let open = ["open(", "openat(", "openat2(", "creat("]
            .iter()
            .any(|c| line.contains(c));
        if open && (line.contains("O_WRONLY") || line.contains("O_RDWR") || line.contains("creat("))
        {
            assert!(
                line.contains("O_CREAT") && line.contains("O_EXCL"),
                "an open for writing without O_CREAT|O_EXCL: {line}"
            );
            creates += usize::from(line.contains(".kiwi-tmp-"));
        }
        renames += usize::from(line.contains("rename") && line.contains(".kiwi-tmp-"));
    }
    assert_eq!(
        (creates, renames),
        (n, n),
        "strace saw another run than expected:\n{log}"
    );
}
