//! `exec-env` and `exec-file`: hand a decrypted document to one child command, as sops 3.11
//! does, and leave nothing behind.
//!
//! The command is run by `/bin/sh -c` (sops' `BuildCommand`) with our stdin, stdout and stderr;
//! its exit status is returned (a child killed by signal N gives 128+N, as a shell reports it).
//! `exec-env` adds the flat document's keys to the child's environment only. `exec-file` puts
//! the plaintext in a new 0700 directory, either behind a FIFO (default: the plaintext never
//! reaches a disk, a writer thread feeds the first reader) or in a 0600 file (`--no-fifo`), and
//! replaces every `{}` in the command with its path. The directory is removed when the child
//! ends, however it ends (success, failure, killed by a signal); while the child runs, SIGINT,
//! SIGQUIT, SIGTERM and SIGHUP do not kill us (TERM and HUP are passed on to the child), so the
//! removal still happens. Only a SIGKILL of kiwictl itself can leave the directory: with the
//! FIFO that is an empty pipe node, with `--no-fifo` the 0600 file. Neither child gets
//! `SOPS_AGE_KEY` (the user's inline identity) in its environment.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::engine::OpenDoc;
use super::error::{Result, SopsError};
use super::format::{dotenv, FileFormat};
use super::value::Plain;

/// What `exec-file` gives the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMode {
    /// A FIFO that yields the plaintext once (sops' default).
    Fifo,
    /// A 0600 regular file (`--no-fifo`).
    TempFile,
}

/// The `KEY=value` pairs `exec-env` gives the child, as sops 3.11 builds them: the document's
/// top-level keys with their values as text (line breaks kept), a nested value refused. A
/// dotenv file gives every `KEY=value` line, empty values included.
pub fn env_pairs(doc: &OpenDoc) -> Result<Vec<(String, Zeroizing<String>)>> {
    let pairs: Vec<(String, Zeroizing<String>)> = if doc.format() == FileFormat::Dotenv {
        let plain = doc.plaintext()?;
        let text = std::str::from_utf8(&plain).map_err(|_| SopsError::Malformed {
            format: "dotenv",
            detail: "not UTF-8".into(),
        })?;
        text.lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                (k.to_string(), Zeroizing::new(v.replace("\\n", "\n")))
            })
            .collect()
    } else {
        doc.values()
            .map(|(path, value)| {
                let [key] = path else {
                    return Err(SopsError::BadValue {
                        path: path.join(":"),
                        detail: "exec-env needs a flat file (top-level keys with scalar values); \
                                 use exec-file for nested documents"
                            .into(),
                    });
                };
                let text = match value {
                    Plain::Str(s) => Zeroizing::new(s.to_string()),
                    v => Zeroizing::new(dotenv::plain_text(v, path)?),
                };
                Ok((key.clone(), text))
            })
            .collect::<Result<_>>()?
    };
    for (key, value) in &pairs {
        if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
            return Err(SopsError::BadValue {
                path: key.clone(),
                detail:
                    "not usable in an environment (an empty name, `=` in the name, or a NUL byte)"
                        .into(),
            });
        }
    }
    Ok(pairs)
}

/// Runs `command` with the document's keys in its environment; returns its exit status.
/// `pristine`: only those keys, none of ours (sops' `--pristine`).
pub fn exec_env(doc: &OpenDoc, command: &str, pristine: bool) -> Result<i32> {
    let pairs = env_pairs(doc)?;
    let mut cmd = shell(command);
    if pristine {
        cmd.env_clear();
    }
    for (k, v) in &pairs {
        cmd.env(k, v.as_str());
    }
    run(cmd)
}

/// The name `exec-file` gives the plaintext when none is asked (sops' `--filename` default).
pub const DEFAULT_FILE_NAME: &str = "tmp-file";

/// Runs `command` with `{}` replaced by the path of the plaintext, a file called `name` in a
/// new private directory; returns its exit status. The directory holding the plaintext is
/// gone when this returns.
pub fn exec_file(plaintext: &[u8], command: &str, mode: FileMode, name: &str) -> Result<i32> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(SopsError::BadValue {
            path: name.to_string(),
            detail: "the exec-file name must be a plain file name, without `/`".into(),
        });
    }
    let dir = tempfile::Builder::new()
        .prefix(".sops")
        .tempdir()
        .map_err(|source| SopsError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SopsError::Io { path, source }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (path, writer) = match mode {
        FileMode::TempFile => {
            let path = dir.path().join(name);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io(&path))?;
            f.write_all(plaintext).map_err(io(&path))?;
            (path, None)
        }
        FileMode::Fifo => {
            let path = dir.path().join(name);
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &path,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )
            .map_err(|e| io(&path)(e.into()))?;
            let data = Zeroizing::new(plaintext.to_vec());
            let (p, s) = (path.clone(), Arc::clone(&stop));
            (
                path,
                Some(std::thread::spawn(move || feed_fifo(&p, &data, &s))),
            )
        }
    };
    let status = run(shell(&command.replace("{}", &path.to_string_lossy())));
    stop.store(true, Ordering::SeqCst);
    // The writer ends on its own once the child is gone (no reader: it stops polling; a reader
    // that closed: EPIPE). It is not joined, so a reader the child left running cannot hold
    // us; removing the directory below is what matters.
    drop(writer);
    dir.close().map_err(|source| SopsError::Io {
        path: path.clone(),
        source,
    })?;
    status
}

/// Writes `data` to the FIFO once a reader opens it; gives up when `stop` is set first.
fn feed_fifo(path: &PathBuf, data: &[u8], stop: &AtomicBool) {
    // A non-blocking open for writing fails with ENXIO until a reader is there; polling
    // lets the thread notice that the child ended without ever reading.
    let file = loop {
        match OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path)
        {
            Ok(f) => break f,
            Err(_) if !stop.load(Ordering::SeqCst) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => return,
        }
    };
    if rustix::fs::fcntl_setfl(&file, rustix::fs::OFlags::empty()).is_err() {
        return;
    }
    let mut file = file;
    // A reader that goes away early gives EPIPE (Rust ignores SIGPIPE); nothing to report.
    let _ = file.write_all(data);
}

/// `/bin/sh -c command`, without the user's inline age identity in its environment.
fn shell(command: &str) -> Command {
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(command).env_remove("SOPS_AGE_KEY");
    c
}

/// Spawns the command, keeps termination signals from killing us while it runs, and returns
/// its exit status as a shell would report it.
fn run(mut cmd: Command) -> Result<i32> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    let spawn_err = |source| SopsError::Io {
        path: PathBuf::from("/bin/sh"),
        source,
    };
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGQUIT, SIGTERM, SIGHUP])
        .map_err(spawn_err)?;
    let handle = signals.handle();
    let mut child: Child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            handle.close();
            return Err(spawn_err(e));
        }
    };
    let pid = rustix::process::Pid::from_child(&child);
    let forward = std::thread::spawn(move || {
        for sig in signals.forever() {
            // INT and QUIT from a terminal reach the child's process group already.
            let to = match sig {
                SIGTERM => rustix::process::Signal::TERM,
                SIGHUP => rustix::process::Signal::HUP,
                _ => continue,
            };
            let _ = rustix::process::kill_process(pid, to);
        }
    });
    let status = child.wait().map_err(spawn_err);
    handle.close();
    let _ = forward.join();
    Ok(exit_code(status?))
}

fn exit_code(s: ExitStatus) -> i32 {
    s.code()
        .or_else(|| s.signal().map(|n| 128 + n))
        .unwrap_or(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn leftovers(before: &[PathBuf]) -> Vec<PathBuf> {
        sops_dirs()
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect()
    }

    fn sops_dirs() -> Vec<PathBuf> {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(".sops"))
            })
            .collect()
    }

    #[test]
    fn exec_file_reads_once_and_cleans_up_on_every_exit() {
        let before = sops_dirs();
        let out = tempfile::tempdir().unwrap();
        let copy = out.path().join("copy");
        for mode in [FileMode::Fifo, FileMode::TempFile] {
            let cmd = format!("cat {{}} > '{}'; test -e {{}} || exit 9", copy.display());
            assert_eq!(
                exec_file(b"s3cret\n", &cmd, mode, DEFAULT_FILE_NAME).unwrap(),
                0
            );
            assert_eq!(std::fs::read(&copy).unwrap(), b"s3cret\n");
            // The child fails without reading, or is killed: its status, and no leftovers.
            assert_eq!(
                exec_file(b"x", "exit 7", mode, DEFAULT_FILE_NAME).unwrap(),
                7
            );
            assert_eq!(
                exec_file(b"x", "kill -9 $$", mode, DEFAULT_FILE_NAME).unwrap(),
                128 + 9
            );
        }
        // The temp file is private.
        let cmd = format!("stat -c %a {{}} > '{}'", copy.display());
        exec_file(b"x", &cmd, FileMode::TempFile, DEFAULT_FILE_NAME).unwrap();
        assert_eq!(std::fs::read_to_string(&copy).unwrap().trim(), "600");
        assert!(leftovers(&before).is_empty(), "{:?}", leftovers(&before));
    }
}
