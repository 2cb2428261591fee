//! kiwictl runs online and never links the offline root's hardware stacks: the tooling depends
//! on the PKI core without its `yubikey` and `pkcs11` features.
//!
//! Two facts, each proved on a control that has what kiwictl must not:
//! - `cargo tree -p kiwi-tooling -e normal` names neither `pcsc` nor `cryptoki` (the signer's
//!   own tree names both);
//! - the kiwictl binary that `cargo build -p kiwi-tooling` makes (what an operator installs) does
//!   not load libpcsclite (`ldd`; the kiwi-signer binary does).
//!
//! The two catch different mistakes: the linker drops a library nothing calls (`--as-needed`),
//! so `ldd` alone would not notice the features switched on but unused (the tree does), and the
//! tree alone would not show hardware code actually reached from kiwictl (`ldd` does).
//!
//! Cargo unifies features per build invocation: a workspace build (or `-p kiwi-signer -p
//! kiwi-tooling`) compiles the PKI core once, with the signer's default features, for every
//! binary it builds. So this test builds kiwictl alone, with `-p kiwi-tooling`, in a target
//! directory of its own (`target/kiwictl-alone`, built once and then reused), and never looks at
//! the `target/debug/kiwictl` a workspace build left behind.

use std::path::PathBuf;
use std::process::Command;

use kiwi_e2e::{bin, run, stderr, stdout, workspace_root};

const HARDWARE_CRATES: &[&str] = &["pcsc", "cryptoki", "yubikey"];

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// The hardware crates in `cargo tree -p PACKAGE -e normal`.
fn hardware_in_tree(package: &str) -> Vec<String> {
    let o = run(cargo().args([
        "tree",
        "--locked",
        "--offline",
        "-p",
        package,
        "-e",
        "normal",
        "--prefix",
        "none",
    ]));
    assert!(
        o.status.success(),
        "cargo tree -p {package}: {}",
        stderr(&o)
    );
    let mut found: Vec<String> = stdout(&o)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| {
            HARDWARE_CRATES
                .iter()
                .any(|h| name == h || name.starts_with(&format!("{h}-")))
        })
        .map(str::to_string)
        .collect();
    found.sort();
    found.dedup();
    found
}

/// The shared libraries `binary` loads, per `ldd`.
fn libraries(binary: &std::path::Path) -> String {
    let o = run(Command::new("ldd").arg(binary));
    assert!(
        o.status.success(),
        "ldd {}: {}",
        binary.display(),
        stderr(&o)
    );
    stdout(&o)
}

#[test]
fn kiwictls_dependency_tree_has_no_hardware_stack() {
    let control = hardware_in_tree("kiwi-signer");
    for needed in ["pcsc", "cryptoki"] {
        assert!(
            control.iter().any(|c| c == needed),
            "the check does not see the signer's {needed}: {control:?}"
        );
    }
    let found = hardware_in_tree("kiwi-tooling");
    assert!(
        found.is_empty(),
        "kiwi-tooling depends on {found:?}; depend on kiwi-signer with default-features = false \
         and find what enables the feature (cargo tree -p kiwi-tooling -e features -i kiwi-signer)"
    );
}

#[test]
fn kiwictl_built_alone_does_not_load_libpcsclite() {
    let control = libraries(&bin("kiwi-signer"));
    assert!(
        control.contains("libpcsclite"),
        "the check does not see the signer's libpcsclite:\n{control}"
    );
    let target: PathBuf = workspace_root().join("target/kiwictl-alone");
    let o = run(cargo()
        .args([
            "build",
            "--locked",
            "--offline",
            "-p",
            "kiwi-tooling",
            "--bin",
            "kiwictl",
        ])
        .arg("--target-dir")
        .arg(&target));
    assert!(
        o.status.success(),
        "cargo build -p kiwi-tooling: {}",
        stderr(&o)
    );
    let libs = libraries(&target.join("debug/kiwictl"));
    assert!(
        !libs.contains("pcsclite"),
        "kiwictl loads the YubiKey stack:\n{libs}"
    );
}
