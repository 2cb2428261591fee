//! Both binaries' shell integration, checked with the real shell and the real `man`: the bash
//! completion script loads and completes subcommands, and every man page renders without a
//! warning from groff.

use std::process::Command;

use kiwi_e2e::{bin, run, run_ok, stderr};

#[test]
fn bash_completions_load_and_complete_subcommands() {
    for (tool, sub) in [("kiwictl", "secrets"), ("kiwi-signer", "ledger")] {
        let script = run_ok(Command::new(bin(tool)).args(["completions", "bash"]));
        let probe = format!(
            "source /dev/stdin\ncomplete -p {tool} >/dev/null || exit 3\n\
             COMP_WORDS=({tool} {first}); COMP_CWORD=1; COMP_LINE='{tool} {first}'; COMP_POINT=${{#COMP_LINE}}\n\
             fn=$(complete -p {tool} | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p')\n\
             $fn {tool} {first} {tool}\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            first = &sub[..3]
        );
        let mut child = Command::new("bash")
            .args(["--norc", "-c", &probe])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("bash");
        std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), script.as_bytes())
            .expect("feed the script");
        let o = child.wait_with_output().expect("bash ran");
        assert!(o.status.success(), "{tool}: {}", stderr(&o));
        let words = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            words.lines().any(|w| w == sub),
            "{tool}: `{}` does not complete to {sub}: {words:?}",
            &sub[..3]
        );
    }
}

#[test]
fn every_man_page_renders_with_man() {
    for (tool, expect) in [
        (
            "kiwictl",
            &[
                "kiwictl.1",
                "kiwictl-secrets-rotate.1",
                "kiwictl-crl-check.1",
            ][..],
        ),
        (
            "kiwi-signer",
            &[
                "kiwi-signer.1",
                "kiwi-signer-sign.1",
                "kiwi-signer-ledger-verify.1",
            ][..],
        ),
    ] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("man1");
        run_ok(Command::new(bin(tool)).arg("man").arg("--out").arg(&dir));
        let pages: Vec<_> = std::fs::read_dir(&dir)
            .expect("man dir")
            .map(|e| e.expect("entry").path())
            .collect();
        for name in expect {
            assert!(dir.join(name).exists(), "{tool}: no {name} in {pages:?}");
        }
        for page in &pages {
            let o = run(Command::new("man")
                .arg("-l")
                .arg(page)
                .env("MANWIDTH", "80")
                .env("MAN_KEEP_STDERR", "1")
                .env("MANROFFOPT", "-ww"));
            assert!(o.status.success(), "{}: {}", page.display(), stderr(&o));
            assert!(
                stderr(&o).trim().is_empty(),
                "{}: {}",
                page.display(),
                stderr(&o)
            );
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            assert!(text.contains("SYNOPSIS"), "{}: {text}", page.display());
        }
        // A second run refuses rather than overwrite the pages.
        let again = run(Command::new(bin(tool)).arg("man").arg("--out").arg(&dir));
        assert_eq!(again.status.code(), Some(1), "{tool}: {}", stderr(&again));
        assert!(
            stderr(&again).contains("never overwrites"),
            "{}",
            stderr(&again)
        );
    }
}
