//! `kiwictl hook pre-commit`: refuses a commit that stages plaintext where a secret belongs.
//!
//! It judges what is about to be committed, the index, never the work tree: the staged paths
//! come from `git diff --cached`, their content from `git show :PATH`. A staged file must be a
//! SOPS file when its name says so (`*.sops.*`) or when a creation rule of the nearest
//! `.sops.yaml` inside the repository covers it (the config as staged, or as in the work tree
//! when it is not tracked; a config above the repository is not the repository's). Such a file
//! must carry valid SOPS metadata and store every value its rule encrypts as `ENC[...]`; this is
//! checked without any key, so the hook needs no secret.
//!
//! Git runs it as `.git/hooks/pre-commit` with no arguments (every staged file is checked); the
//! pre-commit framework runs it with the staged file names as arguments (those are checked).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sops::config::SopsConfig;
use crate::sops::engine;
use crate::sops::error::SopsError;
use crate::sops::format::FileFormat;

/// Why the check could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreCommitError {
    /// git failed (not a repository, git missing).
    #[error("git {args} failed in {dir}: {stderr}; run the hook inside a git work tree")]
    Git {
        /// Where git ran.
        dir: PathBuf,
        /// git's arguments.
        args: String,
        /// git's error output.
        stderr: String,
    },
    /// A `.sops.yaml` in the repository is invalid.
    #[error(transparent)]
    Config(#[from] SopsError),
}

/// A staged file that must not be committed as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Its path from the repository's top.
    pub path: String,
    /// Why it must be encrypted, and what is wrong with it.
    pub reason: String,
}

fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, PreCommitError> {
    let failed = |stderr: String| PreCommitError::Git {
        dir: dir.to_path_buf(),
        args: args.join(" "),
        stderr,
    };
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| failed(format!("{e}; is git installed?")))?;
    if !out.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(out.stdout)
}

fn nul_list(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

/// The staged content of `path` (from the top), if the index holds it.
fn staged(top: &Path, path: &str) -> Option<Vec<u8>> {
    git(top, &["show", &format!(":{path}")]).ok()
}

/// The repository's `.sops.yaml` files by directory (from the top), as staged or, when not
/// tracked, as in the work tree; `None` for a directory without one.
struct Configs<'a> {
    top: &'a Path,
    by_dir: BTreeMap<String, Option<SopsConfig>>,
}

impl Configs<'_> {
    fn in_dir(&mut self, dir: &str) -> Result<Option<&SopsConfig>, PreCommitError> {
        if !self.by_dir.contains_key(dir) {
            let mut found = None;
            for name in [".sops.yaml", ".sops.yml"] {
                let rel = if dir.is_empty() {
                    name.to_string()
                } else {
                    format!("{dir}/{name}")
                };
                let on_disk = self.top.join(&rel);
                let text = match staged(self.top, &rel) {
                    Some(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                    None => std::fs::read_to_string(&on_disk).ok(),
                };
                if let Some(text) = text {
                    found = Some(SopsConfig::parse(&on_disk, self.top.join(dir), &text)?);
                    break;
                }
            }
            self.by_dir.insert(dir.to_string(), found);
        }
        Ok(self.by_dir.get(dir).and_then(Option::as_ref))
    }

    /// Why `path` must be encrypted (see the module doc), or `None`.
    fn must_be_encrypted(&mut self, path: &str) -> Result<Option<String>, PreCommitError> {
        let name = path.rsplit('/').next().unwrap_or(path);
        if name.starts_with(".sops.y") {
            return Ok(None);
        }
        if name.contains(".sops.") {
            return Ok(Some("its name says it is a SOPS file (`.sops.`)".into()));
        }
        let mut dir = path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        loop {
            if let Some(cfg) = self.in_dir(&dir)? {
                let rel = if dir.is_empty() {
                    path
                } else {
                    &path[dir.len() + 1..]
                };
                return Ok(cfg.rule_for_relative(rel).map(|r| {
                    format!(
                        "creation_rules[{}] of {} covers it",
                        r.index,
                        cfg.path.display()
                    )
                }));
            }
            if dir.is_empty() {
                return Ok(None);
            }
            dir = dir.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        }
    }
}

/// Checks the staged files of the repository around `dir` (only `paths`, relative to `dir`,
/// when given) and returns those that must not be committed.
pub fn check_staged(dir: &Path, paths: &[PathBuf]) -> Result<Vec<Refusal>, PreCommitError> {
    let top_out = git(dir, &["rev-parse", "--show-toplevel"])?;
    let top = PathBuf::from(String::from_utf8_lossy(&top_out).trim_end_matches('\n'));
    let staged_paths = if paths.is_empty() {
        nul_list(&git(
            &top,
            &[
                "diff",
                "--cached",
                "--name-only",
                "-z",
                "--diff-filter=ACMRT",
            ],
        )?)
    } else {
        let mut args = vec!["ls-files", "-z", "--cached", "--full-name", "--"];
        let given: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        args.extend(given.iter().map(String::as_str));
        nul_list(&git(dir, &args)?)
    };
    let mut configs = Configs {
        top: &top,
        by_dir: BTreeMap::new(),
    };
    let mut refusals = Vec::new();
    for path in staged_paths {
        let Some(why) = configs.must_be_encrypted(&path)? else {
            continue;
        };
        let Some(blob) = staged(&top, &path) else {
            continue;
        };
        let problem = match engine::inspect(&blob, FileFormat::from_path(Path::new(&path))) {
            Ok(_) => continue,
            Err(SopsError::NotEncrypted) => "it is staged without SOPS metadata".to_string(),
            Err(e) => format!("it is not a valid SOPS file: {e}"),
        };
        refusals.push(Refusal {
            path,
            reason: format!("{why}, but {problem}"),
        });
    }
    Ok(refusals)
}
