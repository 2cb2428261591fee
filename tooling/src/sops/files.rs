//! Files on disk: atomic replacement (temporary file in the same directory, fsync, rename,
//! fsync of the directory), batched replacement for tree runs ([`stage`] then [`commit`]: the
//! same guarantee with one `syncfs` per filesystem and batch instead of an fsync per file),
//! private plaintext output, and recognising SOPS files by content.

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

/// Replaces `path` with `bytes` atomically and durably: a crash leaves either the old or the
/// new content. (Tree runs use [`stage`] and [`commit`] instead, which batch the syncs.)
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let tmp = temp_beside(path);
    let result = (|| {
        let f = write_temp(&tmp, path, bytes)?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io(path))?;
        // Make the rename itself durable.
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Fsyncs a directory so the renames in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A fresh temporary name beside `path` that names our process (so a later run can tell a
/// dead writer's leftovers from a live one's).
fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    parent_dir(path).join(format!(
        ".{name}{TMP_MARKER}{}-{:08x}",
        std::process::id(),
        OsRng.next_u32()
    ))
}

/// Creates the temporary file (never over an existing one) with `path`'s permissions and
/// writes `bytes` into it, without syncing.
fn write_temp(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<File> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(io(tmp))?;
    if let Ok(m) = std::fs::metadata(path) {
        f.set_permissions(m.permissions()).map_err(io(tmp))?;
    }
    f.write_all(bytes).map_err(io(tmp))?;
    Ok(f)
}

/// What a file was when it was read: a rewrite is put in place only if the file is still the
/// same (same inode, size and modification time), so a concurrent edit is never overwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

impl Stamp {
    #[cfg(unix)]
    fn of(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
        }
    }

    #[cfg(not(unix))]
    fn of(m: &std::fs::Metadata) -> Stamp {
        let mtime = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| (d.as_secs() as i64, i64::from(d.subsec_nanos())))
            .unwrap_or_default();
        Stamp {
            dev: 0,
            ino: 0,
            len: m.len(),
            mtime,
        }
    }
}

/// Reads a whole file and notes what it was ([`Stamp`]) for a later [`stage`].
pub fn read_stamped(path: &Path) -> Result<(Vec<u8>, Stamp)> {
    use std::io::Read;
    let mut f = File::open(path).map_err(io(path))?;
    let md = f.metadata().map_err(io(path))?;
    let mut bytes = Vec::with_capacity(usize::try_from(md.len()).unwrap_or(0) + 1);
    f.read_to_end(&mut bytes).map_err(io(path))?;
    Ok((bytes, Stamp::of(&md)))
}

/// A file's new content, written beside it under a temporary name: not yet durable, not yet in
/// place. [`commit`] finishes the job; dropping it without a commit removes the temporary file.
#[derive(Debug)]
pub struct Staged {
    tmp: PathBuf,
    target: PathBuf,
    seen: Stamp,
    done: bool,
}

impl Staged {
    /// The file this replaces.
    pub fn target(&self) -> &Path {
        &self.target
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` as the next content of `path` (read as `seen`), under a temporary name in
/// the same directory. Nothing is synced or renamed yet: see [`commit`].
pub fn stage(path: &Path, bytes: &[u8], seen: Stamp) -> Result<Staged> {
    let tmp = temp_beside(path);
    let staged = Staged {
        tmp,
        target: path.to_path_buf(),
        seen,
        done: false,
    };
    // On error the guard's drop removes whatever part of the temporary file was written.
    write_temp(&staged.tmp, path, bytes)?;
    Ok(staged)
}

/// Flushes everything written to the filesystems holding `dirs`: one `syncfs(2)` per
/// filesystem on Linux, an fsync of each listed directory elsewhere.
pub fn sync_filesystems(dirs: &[&Path]) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        let mut devs: Vec<u64> = Vec::new();
        for d in dirs {
            let f = File::open(d).map_err(io(d))?;
            let dev = {
                use std::os::unix::fs::MetadataExt;
                f.metadata().map_err(io(d))?.dev()
            };
            if !devs.contains(&dev) {
                devs.push(dev);
                rustix::fs::syncfs(&f).map_err(|e| SopsError::Io {
                    path: d.to_path_buf(),
                    source: e.into(),
                })?;
            }
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        dirs.iter().try_for_each(|d| sync_dir(d))
    }
}

/// Puts a batch of staged files in place, each atomically and durably: first every temporary
/// file is made durable (one `syncfs` per filesystem on Linux; an fsync of each file
/// elsewhere), then each is swapped with its target, unless the target changed since it was
/// read. A crash at any moment leaves each target either as it was or wholly replaced; the
/// swaps become durable with the next [`sync_filesystems`] over their directories.
///
/// On Linux the swap is `renameat2(RENAME_EXCHANGE)`: the previous content stays under the
/// temporary name (returned, for [`remove_replaced`] once the whole run is done) instead of
/// being freed at once. A journal-less ext4 refuses to reuse an inode freed in the last few
/// seconds and scans past every such inode on each new file, so freeing as we go makes every
/// later file of the run slower. Where the exchange is not supported, a plain rename.
///
/// Returns, for each staged file in order, whether it was put in place and where its previous
/// content still is.
pub fn commit(batch: Vec<Staged>) -> Vec<Result<Option<PathBuf>>> {
    if batch.is_empty() {
        return vec![];
    }
    let durable: Result<()> = {
        #[cfg(target_os = "linux")]
        {
            let mut dirs: Vec<&Path> = batch.iter().map(|s| parent_dir(&s.target)).collect();
            dirs.sort();
            dirs.dedup();
            sync_filesystems(&dirs)
        }
        #[cfg(not(target_os = "linux"))]
        {
            batch.iter().try_for_each(|s| {
                File::open(&s.tmp)
                    .and_then(|f| f.sync_all())
                    .map_err(io(&s.tmp))
            })
        }
    };
    batch
        .into_iter()
        .map(|mut s| {
            if let Err(e) = &durable {
                return Err(SopsError::Io {
                    path: s.target.clone(),
                    source: std::io::Error::other(format!(
                        "the new content could not be made durable ({e}); the file was left as it was, run the command again once the disk is healthy"
                    )),
                });
            }
            let now = std::fs::symlink_metadata(&s.target).map_err(io(&s.target))?;
            if Stamp::of(&now) != s.seen {
                return Err(SopsError::ChangedUnderneath(s.target.clone()));
            }
            let old = swap_in(&s.tmp, &s.target)?;
            s.done = true;
            Ok(old)
        })
        .collect()
}

/// Moves `tmp` over `target`; returns the temporary name when it now holds the old content.
fn swap_in(tmp: &Path, target: &Path) -> Result<Option<PathBuf>> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, tmp, CWD, target, RenameFlags::EXCHANGE) {
            Ok(()) => return Ok(Some(tmp.to_path_buf())),
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
            Err(e) => {
                return Err(SopsError::Io {
                    path: target.to_path_buf(),
                    source: e.into(),
                })
            }
        }
    }
    std::fs::rename(tmp, target).map_err(io(target))?;
    Ok(None)
}

/// Removes the previous contents that [`commit`] left under temporary names. (A run killed
/// before this leaves them as temporary files of a dead writer, which the next run removes.)
pub fn remove_replaced(old: &[PathBuf]) -> Result<()> {
    old.iter()
        .try_for_each(|p| std::fs::remove_file(p).map_err(io(p)))
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

/// A file a tree run looks at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Candidate {
    /// The file.
    pub path: PathBuf,
    /// Named on the command line: processed whatever it holds. A file found inside a directory
    /// is processed only if its content carries SOPS metadata ([`looks_like_sops`]).
    pub explicit: bool,
}

/// The files under `paths` that may be SOPS files (skipping `.git`, `.sops.yaml` and our own
/// temporary files), sorted, without reading them: the workers of a tree run read each file
/// once and check its content then. Also returns our temporary files left behind by a run that
/// was killed (their writer's process is gone); they are never SOPS files of their own.
pub fn find_candidates(paths: &[PathBuf]) -> Result<(Vec<Candidate>, Vec<PathBuf>)> {
    let mut out = Vec::new();
    let mut stale = Vec::new();
    for p in paths {
        let md = std::fs::symlink_metadata(p).map_err(io(p))?;
        if md.is_dir() {
            walk(p, &mut out, &mut stale)?;
        } else {
            out.push(Candidate {
                path: p.clone(),
                explicit: true,
            });
        }
    }
    // An explicit mention wins over finding the same file in a directory.
    out.sort_by(|a, b| a.path.cmp(&b.path).then(b.explicit.cmp(&a.explicit)));
    out.dedup_by(|a, b| a.path == b.path);
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

fn walk(dir: &Path, out: &mut Vec<Candidate>, stale: &mut Vec<PathBuf>) -> Result<()> {
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
            out.push(Candidate {
                path,
                explicit: false,
            });
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
        let (files, found) = find_candidates(&[d.path().to_path_buf()]).unwrap();
        assert!(files.is_empty());
        assert_eq!(found, vec![stale]);
    }

    #[test]
    fn staged_batches_replace_their_targets_and_leave_nothing_behind() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.yaml"), d.path().join("b.yaml"));
        std::fs::write(&a, "old a").unwrap();
        std::fs::write(&b, "old b").unwrap();
        let (_, sa) = read_stamped(&a).unwrap();
        let (_, sb) = read_stamped(&b).unwrap();
        let batch = vec![
            stage(&a, b"new a", sa).unwrap(),
            stage(&b, b"new b", sb).unwrap(),
        ];
        // Staged, not yet in place.
        assert_eq!(std::fs::read(&a).unwrap(), b"old a");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 4);
        let old: Vec<PathBuf> = commit(batch)
            .into_iter()
            .filter_map(|r| r.unwrap())
            .collect();
        assert_eq!(std::fs::read(&a).unwrap(), b"new a");
        assert_eq!(std::fs::read(&b).unwrap(), b"new b");
        remove_replaced(&old).unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_file_changed_after_it_was_read_is_not_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.yaml");
        std::fs::write(&f, "as read").unwrap();
        let (_, seen) = read_stamped(&f).unwrap();
        let staged = stage(&f, b"ours", seen).unwrap();
        std::fs::write(&f, "someone else's edit, longer").unwrap();
        let r = commit(vec![staged]);
        assert!(matches!(&r[0], Err(SopsError::ChangedUnderneath(p)) if p == &f));
        assert_eq!(std::fs::read(&f).unwrap(), b"someone else's edit, longer");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_staged_file_dropped_without_commit_removes_its_temporary() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.yaml");
        std::fs::write(&f, "x").unwrap();
        let (_, seen) = read_stamped(&f).unwrap();
        drop(stage(&f, b"y", seen).unwrap());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        assert_eq!(std::fs::read(&f).unwrap(), b"x");
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
