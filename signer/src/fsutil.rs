//! File writing rules: outputs are created new (never overwritten), key material is 0600, and
//! every write is flushed to disk before the signer says it is done.
//!
//! Crashes: a file written by [`write_new`] or [`replace_atomically`] survives SIGKILL and power
//! loss once the call returns, and before that the path holds either nothing (or the old file)
//! or the whole new content, never part of it: the bytes go to a temporary sibling, are synced,
//! and only then appear under their name (a hard link, so an existing file is never replaced, or
//! a rename). A crash can leave a temporary `.NAME.kiwi-*` sibling behind; it is never read.
//!
//! [`DirLock`] is an `flock` on the CA directory itself: the kernel releases it when the process
//! ends however it ends (Ctrl-C, SIGKILL, power loss), so no stale lock is ever left.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Who may read a file the signer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Key material: owner read/write only (0600).
    Secret,
    /// Certificates, CRLs, ledger: 0644.
    Public,
}

impl Mode {
    fn bits(self) -> u32 {
        match self {
            Mode::Secret => 0o600,
            Mode::Public => 0o644,
        }
    }
}

/// Creates `path` with `data`, all or nothing; refuses if it exists. Flushes file and directory.
pub fn write_new(path: &Path, data: &[u8], mode: Mode) -> Result<()> {
    ensure_absent(path)?;
    let tmp = sibling(path, &format!("kiwi-new-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    write_synced(&tmp, data, mode)?;
    let linked = std::fs::hard_link(&tmp, path);
    let result = match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists(path)),
        // Filesystems without hard links (FAT on a transfer medium): checked absent, renamed.
        Err(_) => ensure_absent(path).and_then(|()| {
            std::fs::rename(&tmp, path)
                .map_err(|e| Error::io(path, e, "check that the directory exists and is writable"))
        }),
    };
    let _ = std::fs::remove_file(&tmp);
    result?;
    sync_parent(path)
}

fn exists(path: &Path) -> Error {
    Error::io(
        path,
        std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        "the signer never overwrites a file: choose another --out path or move the old file away",
    )
}

/// `.NAME.TAG` beside `path`.
fn sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{tag}"))
}

/// Creates `path` (which must not exist), writes `data` and syncs it; removes it on failure.
fn write_synced(path: &Path, data: &[u8], mode: Mode) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode.bits())
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                exists(path)
            } else {
                Error::io(path, e, "check that the directory exists and is writable")
            }
        })?;
    let res = f.write_all(data).and_then(|_| f.sync_all());
    if let Err(e) = res {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(Error::io(path, e, "the disk may be full; nothing was kept"));
    }
    Ok(())
}

/// Refuses early if `path` exists, so a long operation does not fail at its last step.
pub fn ensure_absent(path: &Path) -> Result<()> {
    if path.exists() || path.symlink_metadata().is_ok() {
        return Err(exists(path));
    }
    Ok(())
}

/// Refuses an output path that cannot be created: one that exists, or whose directory does not.
/// Run while planning, before any key is asked for anything.
pub fn check_creatable(path: &Path) -> Result<()> {
    if path.exists() || path.symlink_metadata().is_ok() {
        return Err(Error::OutputUnusable {
            path: path.to_path_buf(),
            reason: "it exists already, and the signer never overwrites a file: choose another \
                     --out path or move the old file away"
                .into(),
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::OutputUnusable {
            path: path.to_path_buf(),
            reason: format!(
                "the directory {} does not exist: create it (or mount the transfer medium) first",
                dir.display()
            ),
        });
    }
    Ok(())
}

/// Replaces `path` atomically: temporary file in the same directory, fsync, rename, fsync dir.
pub fn replace_atomically(path: &Path, data: &[u8], mode: Mode) -> Result<()> {
    let tmp = sibling(path, "kiwi-tmp");
    let _ = std::fs::remove_file(&tmp);
    write_synced(&tmp, data, mode)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e, "could not replace the file; it is unchanged")
    })?;
    sync_parent(path)
}

/// Flushes the directory holding `path` to disk (after a rename into it, for one).
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e, "could not flush the directory to disk"))
}

/// An exclusive `flock` on a CA directory, held for the length of one operation and released
/// by the kernel when the process ends, however it ends.
#[derive(Debug)]
pub struct DirLock {
    _dir: File,
}

impl DirLock {
    /// Takes the lock without waiting, or says that another process holds it.
    pub fn acquire(ca_dir: &Path) -> Result<Self> {
        let dir = File::open(ca_dir).map_err(|e| {
            Error::io(
                ca_dir,
                e,
                "this is not a CA directory; pass the --ca that `kiwi-signer init` created",
            )
        })?;
        match rustix::fs::flock(&dir, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(DirLock { _dir: dir }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(Error::Locked {
                dir: ca_dir.to_path_buf(),
            }),
            Err(e) => Err(Error::io(
                ca_dir,
                e.into(),
                "could not lock the CA directory",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_new_never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a");
        write_new(&p, b"one", Mode::Public).expect("first");
        let e = write_new(&p, b"two", Mode::Public).expect_err("second");
        assert!(e.to_string().contains("never overwrites"), "{e}");
        assert_eq!(std::fs::read(&p).expect("read"), b"one");
        assert!(ensure_absent(&p).is_err());
    }

    #[test]
    fn modes_and_atomic_replace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("k");
        write_new(&p, b"x", Mode::Secret).expect("write");
        assert_eq!(
            std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        replace_atomically(&p, b"y", Mode::Public).expect("replace");
        assert_eq!(std::fs::read(&p).expect("read"), b"y");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn lock_is_exclusive_and_leaves_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = DirLock::acquire(dir.path()).expect("lock");
        let second = DirLock::acquire(dir.path()).expect_err("a second lock");
        assert!(matches!(second, Error::Locked { .. }), "{second}");
        drop(l);
        assert!(DirLock::acquire(dir.path()).is_ok());
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
    }

    #[test]
    fn outputs_into_missing_directories_or_over_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("no-such-dir/out.pem");
        let e = check_creatable(&missing).expect_err("missing directory");
        assert!(matches!(e, Error::OutputUnusable { .. }), "{e}");
        assert!(e.to_string().contains("does not exist"), "{e}");
        let p = dir.path().join("a");
        write_new(&p, b"one", Mode::Public).expect("write");
        assert!(matches!(
            check_creatable(&p),
            Err(Error::OutputUnusable { .. })
        ));
        assert!(check_creatable(&dir.path().join("b")).is_ok());
        // write_new leaves no temporary sibling behind.
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }
}
