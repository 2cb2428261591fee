//! File writing rules: outputs are created new (never overwritten), key material is 0600, and
//! every write is flushed to disk before the signer says it is done.

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

/// Creates `path` with `data`; refuses if it exists. Flushes file and directory.
pub fn write_new(path: &Path, data: &[u8], mode: Mode) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode.bits())
        .open(path)
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::AlreadyExists {
                "the signer never overwrites a file: choose another --out path or move the old file away"
            } else {
                "check that the directory exists and is writable"
            };
            Error::io(path, e, hint)
        })?;
    let res = f.write_all(data).and_then(|_| f.sync_all());
    if let Err(e) = res {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(Error::io(path, e, "the disk may be full; nothing was kept"));
    }
    sync_parent(path)
}

/// Refuses early if `path` exists, so a long operation does not fail at its last step.
pub fn ensure_absent(path: &Path) -> Result<()> {
    if path.exists() || path.symlink_metadata().is_ok() {
        return Err(Error::io(
            path,
            std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            "the signer never overwrites a file: choose another --out path or move the old file away",
        ));
    }
    Ok(())
}

/// Replaces `path` atomically: temporary file in the same directory, fsync, rename, fsync dir.
pub fn replace_atomically(path: &Path, data: &[u8], mode: Mode) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, data, mode)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e, "could not replace the file; it is unchanged")
    })?;
    sync_parent(path)
}

fn sync_parent(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e, "could not flush the directory to disk"))
}

/// An exclusive lock on a CA directory, held for the length of one operation.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock, or explains who holds it.
    pub fn acquire(ca_dir: &Path) -> Result<Self> {
        let path = ca_dir.join(".lock");
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
        {
            Ok(mut f) => {
                let _ = writeln!(f, "{}", std::process::id());
                Ok(DirLock { path })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                Err(Error::io(
                    &path,
                    e,
                    if holder.trim().is_empty() {
                        "another kiwi-signer is working on this CA; wait for it, or if none is running, remove the lock file"
                    } else {
                        "another kiwi-signer (pid in the file) is working on this CA; wait for it, or if that process is gone, remove the lock file"
                    },
                ))
            }
            Err(e) => Err(Error::io(
                &path,
                e,
                "check that the CA directory is writable",
            )),
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
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
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = DirLock::acquire(dir.path()).expect("lock");
        assert!(DirLock::acquire(dir.path()).is_err());
        drop(l);
        assert!(DirLock::acquire(dir.path()).is_ok());
    }
}
