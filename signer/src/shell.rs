//! Shell completions and man pages for both binaries, generated from their clap definitions.
//!
//! `kiwi-signer completions bash` / `kiwictl completions zsh` print a completion script;
//! `kiwi-signer man --out DIR` / `kiwictl man --out DIR` write one roff page per command and
//! subcommand (`kiwictl-secrets-rotate.1`), so `man kiwictl-secrets-rotate` works once DIR is on
//! the MANPATH. Generation is pure code: nothing here touches the network or any key.

use std::io::Write;
use std::path::{Path, PathBuf};

pub use clap_complete::Shell;

/// Writes the completion script for `shell` to `out`.
pub fn completions(cmd: &mut clap::Command, shell: Shell, out: &mut dyn Write) {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, cmd, name, out);
}

/// Writes `NAME.1` for the command and `NAME-SUB[-SUB...].1` for every subcommand into `dir`
/// (created if missing). Refuses, before writing anything, when a page already exists there: an
/// older set is removed by the user, never overwritten silently. Returns the pages written.
pub fn write_man_pages(cmd: clap::Command, dir: &Path) -> crate::Result<Vec<PathBuf>> {
    let mut cmd = cmd;
    cmd.build();
    let mut pages = Vec::new();
    collect(&cmd, &mut Vec::new(), &mut pages);
    for (name, _) in &pages {
        crate::fsutil::ensure_absent(&dir.join(format!("{name}.1")))?;
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| crate::Error::io(dir, e, "could not create the man page directory"))?;
    let mut written = Vec::new();
    for (name, page) in pages {
        let mut buf = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut buf)
            .map_err(|e| crate::Error::io(dir, e, "could not render a man page"))?;
        let path = dir.join(format!("{name}.1"));
        crate::fsutil::write_new(&path, &buf, crate::fsutil::Mode::Public)?;
        written.push(path);
    }
    Ok(written)
}

/// Every command below `cmd` (itself included) with its page name, skipping clap's `help`.
fn collect(cmd: &clap::Command, prefix: &mut Vec<String>, out: &mut Vec<(String, clap::Command)>) {
    prefix.push(cmd.get_name().to_string());
    let name = prefix.join("-");
    // A subcommand's page is titled with its full name so `man -l` shows where it belongs.
    out.push((
        name.clone(),
        cmd.clone().name(name.clone()).display_name(name),
    ));
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        collect(sub, prefix, out);
    }
    prefix.pop();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> clap::Command {
        clap::Command::new("demo")
            .about("A demo.")
            .subcommand(
                clap::Command::new("ledger")
                    .about("Ledger.")
                    .subcommand(clap::Command::new("verify").about("Verify.")),
            )
            .subcommand(clap::Command::new("sign").about("Sign."))
    }

    #[test]
    fn one_page_per_command_and_no_overwrite() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("man1");
        let pages = write_man_pages(demo(), &dir).expect("pages");
        let mut names: Vec<_> = pages
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "demo-ledger-verify.1",
                "demo-ledger.1",
                "demo-sign.1",
                "demo.1"
            ]
        );
        let page = std::fs::read_to_string(dir.join("demo-ledger-verify.1")).expect("page");
        assert!(page.contains(".TH demo-ledger-verify"), "{page}");
        let before = std::fs::read(dir.join("demo.1")).expect("page");
        assert!(
            write_man_pages(demo(), &dir).is_err(),
            "existing pages overwritten"
        );
        assert_eq!(std::fs::read(dir.join("demo.1")).expect("page"), before);
    }

    #[test]
    fn completions_name_the_subcommands() {
        let mut out = Vec::new();
        completions(&mut demo(), Shell::Bash, &mut out);
        let script = String::from_utf8(out).expect("utf-8");
        assert!(
            script.contains("complete") && script.contains("verify"),
            "{script}"
        );
    }
}
