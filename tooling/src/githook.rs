//! The shipped provisioning hook: commit a state repo's changed files with a message naming the
//! event (`kiwictl hook git-commit`, bound in a hooks file as a `post` hook).
//!
//! It reads the event JSON on standard input (see `kiwi_signer::hooks`), commits only the files
//! the event names inside the repository (`files.written`, `files.changed`), and never pushes:
//! publishing stays a human or CI decision.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Why the hook failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitHookError {
    /// The event on stdin is not the JSON the tools send.
    #[error("the event on standard input is not valid hook JSON ({0}); bind this hook in a hooks file, do not run it by hand")]
    BadEvent(String),
    /// No repository to commit to.
    #[error("no state repo: the event names none (files.repo) and --repo was not given")]
    NoRepo,
    /// git failed.
    #[error("git {args} failed in {repo}: {stderr}")]
    Git {
        /// The repository.
        repo: PathBuf,
        /// git's arguments.
        args: String,
        /// git's error output.
        stderr: String,
    },
}

/// What the hook did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// A commit was made with this message's first line.
    Commit(String),
    /// None of the event's files had changes.
    NothingToCommit,
}

fn git(repo: &Path, args: &[&str]) -> Result<String, GitHookError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .map_err(|e| GitHookError::Git {
            repo: repo.to_path_buf(),
            args: args.join(" "),
            stderr: format!("{e}; is git installed?"),
        })?;
    if !out.status.success() {
        return Err(GitHookError::Git {
            repo: repo.to_path_buf(),
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The commit message for an event.
pub fn message(event: &Value) -> String {
    let s = |k: &str| event.get(k).and_then(Value::as_str);
    let name = s("event").unwrap_or("event");
    let mut first = format!(
        "{}: {}",
        s("tool").unwrap_or("kiwi"),
        name.replace('_', " ")
    );
    if let Some(slug) = s("slug") {
        first.push_str(&format!(" for {slug}"));
    }
    if let Some(serial) = s("serial") {
        first.push_str(&format!(" (serial {serial})"));
    }
    let mut body = vec![String::new(), format!("Event: {name}")];
    for k in ["slug", "tier", "serial", "ledger_head"] {
        if let Some(v) = s(k) {
            body.push(format!("{}: {v}", k.replace('_', " ")));
        }
    }
    if let Some(map) = event.get("sha256").and_then(Value::as_object) {
        for (role, v) in map {
            body.push(format!("sha256 {role}: {}", v.as_str().unwrap_or("")));
        }
    }
    format!("{first}\n{}\n", body.join("\n"))
}

/// Commits the event's files inside `repo` (or the event's `files.repo`).
pub fn commit(event_json: &[u8], repo: Option<&Path>) -> Result<Committed, GitHookError> {
    let event: Value =
        serde_json::from_slice(event_json).map_err(|e| GitHookError::BadEvent(e.to_string()))?;
    if event.get("event").and_then(Value::as_str).is_none() {
        return Err(GitHookError::BadEvent("no `event` field".into()));
    }
    let files = event.get("files").and_then(Value::as_object);
    let repo = match repo {
        Some(r) => r.to_path_buf(),
        None => files
            .and_then(|f| f.get("repo"))
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .ok_or(GitHookError::NoRepo)?,
    };
    let top = PathBuf::from(git(&repo, &["rev-parse", "--show-toplevel"])?.trim());
    let top = top.canonicalize().unwrap_or(top);
    let mut paths: Vec<String> = Vec::new();
    for role in ["written", "changed"] {
        for p in files
            .and_then(|f| f.get(role))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let abs = Path::new(p)
                .canonicalize()
                .unwrap_or_else(|_| PathBuf::from(p));
            if let Ok(rel) = abs.strip_prefix(&top) {
                paths.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    if paths.is_empty() {
        return Ok(Committed::NothingToCommit);
    }
    let mut add = vec!["add", "--"];
    add.extend(paths.iter().map(String::as_str));
    git(&top, &add)?;
    let mut diff = vec!["diff", "--cached", "--name-only", "--"];
    diff.extend(paths.iter().map(String::as_str));
    if git(&top, &diff)?.trim().is_empty() {
        return Ok(Committed::NothingToCommit);
    }
    let msg = message(&event);
    let mut args: Vec<String> = Vec::new();
    // A rotation job's machine may have no git identity; the commit must still say who made it.
    if git(&top, &["config", "user.email"]).is_err() {
        args.extend(
            [
                "-c",
                "user.name=kiwictl hook",
                "-c",
                "user.email=kiwictl@localhost",
            ]
            .map(String::from),
        );
    }
    args.extend(["commit", "-q", "-m", &msg, "--"].map(String::from));
    args.extend(paths);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    git(&top, &args)?;
    Ok(Committed::Commit(
        msg.lines().next().unwrap_or_default().to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_the_events_files_with_a_message_naming_the_event() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = tmp.path();
        git(repo, &["init", "-q"]).expect("git init");
        std::fs::write(repo.join("cert.pem"), "cert").expect("write");
        std::fs::write(repo.join("unrelated.txt"), "x").expect("write");
        let event = serde_json::json!({
            "version": 1, "event": "intermediate_installed", "phase": "post", "tool": "kiwictl",
            "slug": "acme", "serial": "0a1b",
            "files": { "repo": [repo], "written": [repo.join("cert.pem")] }
        });
        let bytes = serde_json::to_vec(&event).expect("json");
        let done = commit(&bytes, None).expect("commit");
        assert_eq!(
            done,
            Committed::Commit("kiwictl: intermediate installed for acme (serial 0a1b)".into())
        );
        let log = git(repo, &["log", "--format=%s%n%b", "--name-only"]).expect("log");
        assert!(
            log.contains("cert.pem") && !log.contains("unrelated.txt"),
            "{log}"
        );
        assert!(log.contains("Event: intermediate_installed"), "{log}");
        // Running again: nothing changed.
        assert_eq!(
            commit(&bytes, None).expect("again"),
            Committed::NothingToCommit
        );
        assert!(matches!(commit(b"{", None), Err(GitHookError::BadEvent(_))));
    }
}
