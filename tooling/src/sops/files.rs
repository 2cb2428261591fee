//! Files on disk: atomic replacement (temporary file in the same directory, fsync, rename,
//! fsync of the directory), batched replacement for tree runs ([`stage`] then [`commit`]: the
//! same guarantee with one `syncfs` per filesystem and batch instead of an fsync per file),
//! private plaintext output, and recognising SOPS files by content.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// [`io`] for the system calls made through rustix.
#[cfg(target_os = "linux")]
fn os(path: &Path) -> impl FnOnce(rustix::io::Errno) -> SopsError + '_ {
    move |e| io(path)(e.into())
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
    copy_permissions(&f, tmp, path)?;
    f.write_all(bytes).map_err(io(tmp))?;
    Ok(f)
}

/// Gives the temporary file `f` (at `tmp`) the permissions of the file it will replace.
fn copy_permissions(f: &File, tmp: &Path, path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) => f.set_permissions(m.permissions()).map_err(io(tmp)),
        Err(_) => Ok(()),
    }
}

/// What a file was when it was read: a rewrite is put in place only if the file is still the
/// same (same inode, size, modification time, owner and link count), so a concurrent edit is
/// never overwritten.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    owner: (u32, u32),
    nlink: u64,
    /// Read by [`read_stamped`] as a plain file: one link, no extended attributes (so no ACL or
    /// security label), whose inode may hold another file's next content once it is replaced.
    reusable: bool,
}

impl PartialEq for Stamp {
    /// The same file in the same state (`reusable` is a finding about it, not its state).
    fn eq(&self, o: &Stamp) -> bool {
        (
            self.dev, self.ino, self.len, self.mtime, self.owner, self.nlink,
        ) == (o.dev, o.ino, o.len, o.mtime, o.owner, o.nlink)
    }
}

impl Eq for Stamp {}

impl Stamp {
    #[cfg(unix)]
    fn of(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            owner: (m.uid(), m.gid()),
            nlink: m.nlink(),
            reusable: false,
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
            owner: (0, 0),
            nlink: 1,
            reusable: false,
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
    let stamp = Stamp::of(&md);
    #[cfg(target_os = "linux")]
    let stamp = Stamp {
        reusable: md.is_file()
            && stamp.nlink == 1
            && rustix::fs::flistxattr_query(&f).is_ok_and(|n| n == 0),
        ..stamp
    };
    Ok((bytes, stamp))
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

/// The inodes of the files a run has replaced, each still under the temporary name that held
/// its replacement, until they are reused for later files or removed at the end of the run.
///
/// A journal-less ext4 will not reuse an inode freed in the last minute or so and scans past
/// every such inode each time it creates a file, so a run that freed an inode per file (and
/// created one per file) got slower file by file, and so did the next run. Reusing them keeps
/// a run at a few hundred new inodes, whatever the size of the tree. An inode is reused only
/// for a plain file (one link, no extended attributes) with the same owner on the same
/// filesystem, and only if it held a plain file too: nothing of that file carries over but
/// its blocks, which are overwritten.
#[derive(Debug, Default)]
pub struct Spares {
    free: Mutex<Vec<(PathBuf, Stamp)>>,
    other: Mutex<Vec<PathBuf>>,
}

impl Spares {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the replaced content now at `path` (it was `was`) for reuse, or for removal.
    fn put(&self, path: PathBuf, was: Stamp) {
        if was.reusable {
            Self::lock(&self.free).push((path, was));
        } else {
            self.remove_later(path);
        }
    }

    fn remove_later(&self, path: PathBuf) {
        Self::lock(&self.other).push(path);
    }

    fn take(&self, like: &Stamp) -> Option<(PathBuf, Stamp)> {
        if !like.reusable {
            return None;
        }
        let mut free = Self::lock(&self.free);
        let i = free
            .iter()
            .rposition(|(_, was)| was.dev == like.dev && was.owner == like.owner)?;
        Some(free.swap_remove(i))
    }

    /// Removes every replaced content still kept. (A run killed before this leaves them as
    /// temporary files of a dead writer, which the next run removes.)
    pub fn remove_all(&self) -> Result<()> {
        let mut left: Vec<PathBuf> = Self::lock(&self.free).drain(..).map(|(p, _)| p).collect();
        left.append(&mut Self::lock(&self.other));
        // A few at a time: freeing blocks waits on the device where the filesystem discards
        // them as it frees them (`-o discard`).
        const THREADS: usize = 4;
        if left.is_empty() {
            return Ok(());
        }
        std::thread::scope(|s| {
            let workers: Vec<_> = left
                .chunks(left.len().div_ceil(THREADS))
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .try_for_each(|p| std::fs::remove_file(p).map_err(io(p)))
                    })
                })
                .collect();
            workers
                .into_iter()
                .try_for_each(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        })
    }
}

/// Writes `bytes` as the next content of `path` (read as `seen`), under a temporary name in
/// the same directory: into a spare inode when one fits, else a new file. Nothing is synced or
/// renamed yet: see [`commit`].
pub fn stage(path: &Path, bytes: &[u8], seen: Stamp, spares: &Spares) -> Result<Staged> {
    let tmp = temp_beside(path);
    let staged = Staged {
        tmp,
        target: path.to_path_buf(),
        seen,
        done: false,
    };
    // On error the guard's drop removes whatever was written under the temporary name.
    if let Some((spare, was)) = spares.take(&seen) {
        if std::fs::rename(&spare, &staged.tmp).is_err() {
            // Still where it was: removed with the others at the end.
            spares.remove_later(spare);
        } else {
            reuse(&staged.tmp, was, path, bytes)?;
            return Ok(staged);
        }
    }
    write_temp(&staged.tmp, path, bytes)?;
    Ok(staged)
}

/// Overwrites the spare inode just moved to `tmp` with `bytes` and `path`'s permissions, after
/// checking it is still the inode we kept (not a link or another file put in its place).
fn reuse(tmp: &Path, was: Stamp, path: &Path, bytes: &[u8]) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{openat, Mode, OFlags, CWD};
        let fd = openat(
            CWD,
            tmp,
            OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(os(tmp))?;
        let mut f = File::from(fd);
        let now = Stamp::of(&f.metadata().map_err(io(tmp))?);
        if now.dev != was.dev || now.ino != was.ino || now.nlink != 1 {
            return Err(SopsError::Io {
                path: tmp.to_path_buf(),
                source: std::io::Error::other(
                    "our temporary file was replaced by another process; run the command again",
                ),
            });
        }
        copy_permissions(&f, tmp, path)?;
        // Overwrite, then cut: a rotation's output is about as long as its input, so this
        // reuses the blocks instead of freeing and allocating them.
        f.write_all(bytes).map_err(io(tmp))?;
        f.set_len(bytes.len() as u64).map_err(io(tmp))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = was;
        std::fs::remove_file(tmp).map_err(io(tmp))?;
        write_temp(tmp, path, bytes).map(|_| ())
    }
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
                rustix::fs::syncfs(&f).map_err(os(d))?;
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
/// temporary name, in `spares`, instead of being freed at once. Where the exchange is not
/// supported, a plain rename.
///
/// Returns, for each staged file in order, whether it was put in place.
pub fn commit(batch: Vec<Staged>, spares: &Spares) -> Vec<Result<()>> {
    if batch.is_empty() {
        return vec![];
    }
    let durable: Result<()> = {
        #[cfg(target_os = "linux")]
        {
            // One directory per filesystem the batch's files were read on.
            let mut devs: Vec<u64> = Vec::new();
            let dirs: Vec<&Path> = batch
                .iter()
                .filter(|s| {
                    let new = !devs.contains(&s.seen.dev);
                    if new {
                        devs.push(s.seen.dev);
                    }
                    new
                })
                .map(|s| parent_dir(&s.target))
                .collect();
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
            let exchanged = swap_in(&s.tmp, &s.target)?;
            s.done = true;
            if exchanged {
                spares.put(s.tmp.clone(), s.seen);
            }
            Ok(())
        })
        .collect()
}

/// Moves `tmp` over `target`; true when `tmp` now holds the old content.
fn swap_in(tmp: &Path, target: &Path) -> Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, tmp, CWD, target, RenameFlags::EXCHANGE) {
            Ok(()) => return Ok(true),
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
            Err(e) => return Err(os(target)(e)),
        }
    }
    std::fs::rename(tmp, target).map_err(io(target))?;
    Ok(false)
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
        // A link named on the command line stands for what it points to: that file is the one
        // rewritten, beside itself (links met inside a directory are not followed).
        let (p, md) = if md.file_type().is_symlink() {
            let real = std::fs::canonicalize(p).map_err(io(p))?;
            let md = std::fs::metadata(&real).map_err(io(&real))?;
            (real, md)
        } else {
            (p.clone(), md)
        };
        if md.is_dir() {
            walk(&p, &mut out, &mut stale)?;
        } else {
            out.push(Candidate {
                path: p,
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
        let spares = Spares::default();
        let batch = vec![
            stage(&a, b"new a", sa, &spares).unwrap(),
            stage(&b, b"new b", sb, &spares).unwrap(),
        ];
        // Staged, not yet in place.
        assert_eq!(std::fs::read(&a).unwrap(), b"old a");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 4);
        for r in commit(batch, &spares) {
            r.unwrap();
        }
        assert_eq!(std::fs::read(&a).unwrap(), b"new a");
        assert_eq!(std::fs::read(&b).unwrap(), b"new b");
        spares.remove_all().unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_replaced_inode_holds_the_next_file_and_nothing_of_the_old_one_survives() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.yaml"), d.path().join("b.yaml"));
        std::fs::write(&a, "old a, the longer of the two contents").unwrap();
        std::fs::write(&b, "old b").unwrap();
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o600)).unwrap();
        let a_ino = std::fs::metadata(&a).unwrap().ino();
        let spares = Spares::default();
        let (_, sa) = read_stamped(&a).unwrap();
        for r in commit(vec![stage(&a, b"new a", sa, &spares).unwrap()], &spares) {
            r.unwrap();
        }
        // b's next content goes into a's old inode: shorter, with b's permissions.
        let (_, sb) = read_stamped(&b).unwrap();
        let staged = stage(&b, b"new b", sb, &spares).unwrap();
        for r in commit(vec![staged], &spares) {
            r.unwrap();
        }
        let m = std::fs::metadata(&b).unwrap();
        assert_eq!(m.ino(), a_ino, "the spare inode was not reused");
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&b).unwrap(), b"new b");
        assert_eq!(std::fs::read(&a).unwrap(), b"new a");
        spares.remove_all().unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_inode_still_linked_elsewhere_or_owned_by_another_user_is_never_reused() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            d.path().join("a.yaml"),
            d.path().join("b.yaml"),
            d.path().join("c.yaml"),
        );
        let other = d.path().join("hard-link-to-a");
        std::fs::write(&a, "old a").unwrap();
        std::fs::write(&b, "old b").unwrap();
        std::fs::write(&c, "old c").unwrap();
        std::fs::hard_link(&a, &other).unwrap();
        let a_ino = std::fs::metadata(&a).unwrap().ino();
        let spares = Spares::default();
        let (_, sa) = read_stamped(&a).unwrap();
        for r in commit(vec![stage(&a, b"new a", sa, &spares).unwrap()], &spares) {
            r.unwrap();
        }
        // a's old inode is still `other`: b must get a new inode and `other` keep its content.
        let b_old = std::fs::metadata(&b).unwrap().ino();
        let (_, sb) = read_stamped(&b).unwrap();
        for r in commit(vec![stage(&b, b"new b", sb, &spares).unwrap()], &spares) {
            r.unwrap();
        }
        assert_ne!(std::fs::metadata(&b).unwrap().ino(), a_ino);
        assert_eq!(std::fs::read(&other).unwrap(), b"old a");
        // b's old inode is a spare now; a file of another owner does not get it.
        if std::os::unix::fs::chown(&c, Some(4242), Some(4242)).is_ok() {
            let (_, sc) = read_stamped(&c).unwrap();
            for r in commit(vec![stage(&c, b"new c", sc, &spares).unwrap()], &spares) {
                r.unwrap();
            }
            assert_ne!(std::fs::metadata(&c).unwrap().ino(), b_old);
            assert_eq!(std::fs::read(&c).unwrap(), b"new c");
        } else {
            eprintln!("not root: the other-owner half of this test needs chown");
        }
        spares.remove_all().unwrap();
        assert_eq!(std::fs::read(&other).unwrap(), b"old a");
    }

    #[cfg(unix)]
    #[test]
    fn a_link_named_on_the_command_line_stands_for_its_file() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real.yaml");
        std::fs::write(&real, "x").unwrap();
        let link = d.path().join("link.yaml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let (found, _) = find_candidates(&[link]).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, std::fs::canonicalize(&real).unwrap());
        assert!(found[0].explicit);
    }

    #[test]
    fn a_file_changed_after_it_was_read_is_not_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.yaml");
        std::fs::write(&f, "as read").unwrap();
        let (_, seen) = read_stamped(&f).unwrap();
        let spares = Spares::default();
        let staged = stage(&f, b"ours", seen, &spares).unwrap();
        std::fs::write(&f, "someone else's edit, longer").unwrap();
        let r = commit(vec![staged], &spares);
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
        drop(stage(&f, b"y", seen, &Spares::default()).unwrap());
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
