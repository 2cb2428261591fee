//! Helpers for the SOPS interop tests: the real `sops` from the test venv, our `kiwictl`, the
//! committed corpus, and comparisons that ignore layout but not data or comments.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The real Go sops; fails the test when it is not installed.
pub fn sops_bin() -> PathBuf {
    let venv = std::env::var_os("KIWI_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"));
    let p = venv.join("bin/sops");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/install-test-deps first",
        p.display()
    );
    p
}

/// The `age` CLI; fails the test when it is not installed.
pub fn age_bin() -> PathBuf {
    let ok = Command::new("age")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the age CLI is missing: run scripts/install-test-deps first"
    );
    PathBuf::from("age")
}

/// Our kiwictl, built once per test process.
pub fn kiwictl_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = workspace_root();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-q", "-p", "kiwi-tooling", "--bin", "kiwictl"])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(st.success(), "building kiwictl failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join("debug/kiwictl")
    })
    .clone()
}

/// The committed fixtures directory.
pub fn fixtures() -> PathBuf {
    workspace_root().join("tests/fixtures/sops")
}

/// A test identity file.
pub fn key(name: &str) -> PathBuf {
    fixtures().join("keys").join(format!("{name}.agekey"))
}

/// The public recipient of a test identity.
pub fn recipient(name: &str) -> String {
    let t = std::fs::read_to_string(key(name)).expect("read key");
    t.split_whitespace()
        .find(|w| w.starts_with("age1"))
        .expect("public key comment")
        .to_string()
}

/// Runs a command with `SOPS_AGE_KEY_FILE` set to the given identity (and nothing else).
pub fn run(bin: &Path, args: &[&str], identity: Option<&str>, extra_key: Option<&str>) -> Output {
    let mut c = Command::new(bin);
    c.args(args)
        .env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env("HOME", "/nonexistent");
    if let Some(id) = identity {
        c.env("SOPS_AGE_KEY_FILE", key(id));
    }
    if let Some(k) = extra_key {
        c.env(
            "SOPS_AGE_KEY",
            std::fs::read_to_string(key(k)).expect("key"),
        );
    }
    c.output().expect("spawn")
}

/// `run` that must succeed; returns stdout.
pub fn ok(bin: &Path, args: &[&str], identity: Option<&str>) -> Vec<u8> {
    let o = run(bin, args, identity, None);
    assert!(
        o.status.success(),
        "{} {:?} failed: {}",
        bin.display(),
        args,
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// YAML data, layout ignored.
pub fn yaml_data(b: &[u8]) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_slice(b).expect("valid YAML")
}

/// Comment texts in document order, whether on their own line or after a value.
pub fn comments(b: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(b)
        .lines()
        .filter_map(|l| {
            let t = l.trim_start();
            if t.starts_with('#') {
                Some(t.to_string())
            } else {
                l.find(" #").map(|i| l[i + 1..].to_string())
            }
        })
        .collect()
}
