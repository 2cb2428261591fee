//! Files on disk: atomic replacement (temporary file in the same directory, fsync, rename,
//! fsync of the directory), private plaintext output, and recognising SOPS files by content.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};

use super::error::{Result, SopsError};
use super::format::FileFormat;

/// Marker in the names of our temporary files.
pub const TMP_MARKER: &str = ".kiwi-tmp-";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SopsError + '_ {
    move |source| SopsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(io(path))
}

/// Replaces `path` with `bytes` atomically: a crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_inner(path, bytes, true)
}

/// Like [`write_atomic`] but leaves the directory fsync (which makes the rename durable) to
/// the caller, who syncs each directory once with [`sync_dir`] after a batch of files.
pub fn write_atomic_nosyncdir(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_inner(path, bytes, false)
}

/// Fsyncs a directory so the renames in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn write_atomic_inner(path: &Path, bytes: &[u8], sync_parent: bool) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}{TMP_MARKER}{}-{:08x}",
        std::process::id(),
        OsRng.next_u32()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        if let Ok(m) = std::fs::metadata(path) {
            f.set_permissions(m.permissions()).map_err(io(&tmp))?;
        }
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io(path))?;
        if sync_parent {
            // Make the rename itself durable.
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates `path` with mode 0600, refusing to overwrite anything.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            SopsError::OutputExists(path.to_path_buf())
        } else {
            SopsError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Whether the content carries SOPS metadata for its format (a cheap check before parsing).
pub fn looks_like_sops(path: &Path, bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    match FileFormat::from_path(path) {
        FileFormat::Yaml => text.starts_with("sops:") || text.contains("\nsops:"),
        FileFormat::Json | FileFormat::Binary => {
            text.contains("\"sops\"") && text.contains("\"mac\"")
        }
        FileFormat::Dotenv => text.starts_with("sops_mac=") || text.contains("\nsops_mac="),
    }
}

/// Every SOPS file under `paths` (files given explicitly are always included), skipping `.git`
/// and our own temporary files; sorted for stable output.
pub fn find_sops_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    Ok(find_sops_files_and_stale(paths)?.0)
}

/// Like [`find_sops_files`], and also returns our temporary files left behind by a run that
/// was killed (their writer's process is gone); they are never SOPS files of their own.
pub fn find_sops_files_and_stale(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut out = Vec::new();
    let mut stale = Vec::new();
    for p in paths {
        let md = std::fs::symlink_metadata(p).map_err(io(p))?;
        if md.is_dir() {
            walk(p, &mut out, &mut stale)?;
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok((out, stale))
}

/// Whether a temporary file's writer (the PID in its name) is gone.
fn is_stale_temp(name: &str) -> bool {
    let Some((_, rest)) = name.split_once(TMP_MARKER) else {
        return false;
    };
    let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, stale: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        let ft = entry.file_type().map_err(io(&path))?;
        if ft.is_dir() {
            if name != ".git" {
                walk(&path, out, stale)?;
            }
        } else if ft.is_file() && name.starts_with('.') && is_stale_temp(&name) {
            stale.push(path);
        } else if ft.is_file() && !name.contains(TMP_MARKER) && !name.starts_with(".sops.y") {
            let bytes = read(&path)?;
            if looks_like_sops(&path, &bytes) {
                out.push(path);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn temps_of_dead_writers_are_stale_and_ours_are_not() {
        let d = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = d.path().join(format!(".a.yaml{TMP_MARKER}{dead}-0000abcd"));
        let live = d.path().join(format!(
            ".b.yaml{TMP_MARKER}{}-0000abcd",
            std::process::id()
        ));
        std::fs::write(&stale, "x").unwrap();
        std::fs::write(&live, "x").unwrap();
        let (files, found) = find_sops_files_and_stale(&[d.path().to_path_buf()]).unwrap();
        assert!(files.is_empty());
        assert_eq!(found, vec![stale]);
    }

    #[test]
    fn atomic_write_and_private_create() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.yaml");
        std::fs::write(&f, "old").unwrap();
        write_atomic(&f, b"new").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        let p = d.path().join("plain");
        write_new_private(&p, b"x").unwrap();
        assert!(matches!(
            write_new_private(&p, b"y"),
            Err(SopsError::OutputExists(_))
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }
}
