//! A crash-consistency checker for tree runs, in the style of ALICE (Pillai et al., "All File
//! Systems Are Not Created Equal", OSDI 2014): a run is made on a real directory through a
//! [`FileOps`] that also records each operation; the checker then replays every crash the
//! recorded trace allows and asserts that in each one every target is byte for byte its old or
//! its new content (and both decrypt), and that once the run has returned every target is new.
//!
//! The persistence model is more pessimistic than ext4, xfs or btrfs: an operation is only
//! certain to be on disk once a later fsync of its file (for data) or of its directory (for
//! names) has completed; any other operation before the crash may or may not have reached the
//! disk, independently of the others, so a rename can land without the write before it, or a
//! create without its data. Each operation that does land is whole (a rename is atomic; a write
//! is lost or kept entire, which is no weaker here because a target only ever gets a file whose
//! data was fsynced before its name).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::files::{FileOps, RealFs};

/// One recorded operation, on inode numbers of the model (not the real ones).
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// A new inode, empty, under `path`.
    Create { path: PathBuf, ino: usize },
    /// The whole content of `ino` becomes `data`.
    Write { ino: usize, data: Vec<u8> },
    /// fsync of a file.
    SyncFile { ino: usize },
    /// `to` names `ino` (which `from` named) and `from` is gone, atomically.
    Rename {
        from: PathBuf,
        to: PathBuf,
        ino: usize,
    },
    /// `a` and `b` swap inodes, atomically (`renameat2(RENAME_EXCHANGE)`).
    Exchange {
        a: PathBuf,
        b: PathBuf,
        ino_a: usize,
        ino_b: usize,
    },
    /// The name is gone.
    Unlink { path: PathBuf },
    /// fsync of a directory.
    SyncDir { dir: PathBuf },
    /// Everything before is durable (`sync`, `syncfs`).
    SyncAll,
}

impl Op {
    /// The directories whose entries this changes (empty for data operations and syncs).
    fn dirs(&self) -> Vec<&Path> {
        match self {
            Op::Create { path, .. } | Op::Unlink { path } => vec![dir_of(path)],
            Op::Rename { from, to, .. } => vec![dir_of(from), dir_of(to)],
            Op::Exchange { a, b, .. } => vec![dir_of(a), dir_of(b)],
            _ => vec![],
        }
    }

    /// Whether the completed sync `self` makes the earlier operation `op` durable.
    fn covers(&self, op: &Op) -> bool {
        match (self, op) {
            (Op::SyncAll, _) => true,
            (Op::SyncFile { ino }, Op::Write { ino: w, .. }) => ino == w,
            // Every directory the operation changed must be synced (a rename across two
            // directories is durable only once both are; ours never cross).
            (Op::SyncDir { dir }, op) => {
                let dirs = op.dirs();
                !dirs.is_empty() && dirs.iter().all(|d| d == dir)
            }
            _ => false,
        }
    }
}

fn dir_of(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new("."))
}

/// A filesystem as the model sees it: names to inodes, inodes to content.
#[derive(Debug, Clone, Default)]
pub(crate) struct Disk {
    names: BTreeMap<PathBuf, usize>,
    data: HashMap<usize, Vec<u8>>,
}

impl Disk {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Create { path, ino } => {
                self.names.insert(path.clone(), *ino);
            }
            Op::Write { ino, data } => {
                self.data.insert(*ino, data.clone());
            }
            Op::Rename { from, to, ino } => {
                self.names.remove(from);
                self.names.insert(to.clone(), *ino);
            }
            Op::Exchange { a, b, ino_a, ino_b } => {
                self.names.insert(a.clone(), *ino_b);
                self.names.insert(b.clone(), *ino_a);
            }
            Op::Unlink { path } => {
                self.names.remove(path);
            }
            Op::SyncFile { .. } | Op::SyncDir { .. } | Op::SyncAll => {}
        }
    }

    /// The content under `path` (an inode never written reads empty).
    fn read(&self, path: &Path) -> Option<&[u8]> {
        let ino = self.names.get(path)?;
        Some(self.data.get(ino).map_or(&[][..], Vec::as_slice))
    }
}

/// A [`FileOps`] that does each operation on the real filesystem and records it.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    inner: Mutex<(Vec<Op>, HashMap<PathBuf, usize>, usize)>,
}

impl Recorder {
    /// Starts from `files` (already on disk and durable, with their content).
    pub(crate) fn new(files: &[(PathBuf, Vec<u8>)]) -> (Recorder, Disk) {
        let mut disk = Disk::default();
        let mut inos = HashMap::new();
        for (i, (p, bytes)) in files.iter().enumerate() {
            disk.names.insert(p.clone(), i);
            disk.data.insert(i, bytes.clone());
            inos.insert(p.clone(), i);
        }
        let r = Recorder {
            inner: Mutex::new((Vec::new(), inos, files.len())),
        };
        (r, disk)
    }

    /// The operations recorded so far.
    pub(crate) fn trace(&self) -> Vec<Op> {
        self.lock().0.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<Op>, HashMap<PathBuf, usize>, usize)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ino(inos: &HashMap<PathBuf, usize>, path: &Path) -> std::io::Result<usize> {
        inos.get(path).copied().ok_or_else(|| {
            std::io::Error::other(format!("the recorder does not know {}", path.display()))
        })
    }
}

impl FileOps for Recorder {
    fn create(&self, path: &Path, bytes: &[u8], like: &Path) -> std::io::Result<()> {
        let mut g = self.lock();
        RealFs.create(path, bytes, like)?;
        let ino = g.2;
        g.2 += 1;
        g.1.insert(path.to_path_buf(), ino);
        g.0.push(Op::Create {
            path: path.to_path_buf(),
            ino,
        });
        g.0.push(Op::Write {
            ino,
            data: bytes.to_vec(),
        });
        Ok(())
    }

    fn sync_file(&self, path: &Path) -> std::io::Result<()> {
        let mut g = self.lock();
        RealFs.sync_file(path)?;
        let ino = Self::ino(&g.1, path)?;
        g.0.push(Op::SyncFile { ino });
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        let mut g = self.lock();
        RealFs.rename(from, to)?;
        let ino = Self::ino(&g.1, from)?;
        g.1.remove(from);
        g.1.insert(to.to_path_buf(), ino);
        g.0.push(Op::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            ino,
        });
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        let mut g = self.lock();
        RealFs.sync_dir(dir)?;
        g.0.push(Op::SyncDir {
            dir: dir.to_path_buf(),
        });
        Ok(())
    }

    fn remove(&self, path: &Path) -> std::io::Result<()> {
        let mut g = self.lock();
        RealFs.remove(path)?;
        g.1.remove(path);
        g.0.push(Op::Unlink {
            path: path.to_path_buf(),
        });
        Ok(())
    }
}

/// Most operations one crash point may leave in doubt (2^this crash states per point).
const MAX_IN_DOUBT: usize = 16;

/// Replays every crash `trace` allows from `start` and returns the first state in which a
/// target (`targets`: path, old content, new content) is neither old nor new, or, after the
/// whole trace, not new. `None` when every crash state is consistent.
pub(crate) fn find_inconsistency(
    start: &Disk,
    trace: &[Op],
    targets: &[(PathBuf, Vec<u8>, Vec<u8>)],
) -> Option<String> {
    for crash in 0..=trace.len() {
        let done = &trace[..crash];
        // Which operations a completed sync before the crash made durable.
        let durable: Vec<bool> = (0..done.len())
            .map(|i| done[i + 1..].iter().any(|s| s.covers(&done[i])))
            .collect();
        let in_doubt: Vec<usize> = (0..done.len())
            .filter(|&i| {
                !durable[i]
                    && !matches!(
                        done[i],
                        Op::SyncFile { .. } | Op::SyncDir { .. } | Op::SyncAll
                    )
            })
            .collect();
        assert!(
            in_doubt.len() <= MAX_IN_DOUBT,
            "{} operations in doubt at one crash point: use a smaller tree",
            in_doubt.len()
        );
        for landed in 0u32..(1 << in_doubt.len()) {
            let mut disk = start.clone();
            let mut k = 0;
            for (i, op) in done.iter().enumerate() {
                let applies = if k < in_doubt.len() && in_doubt[k] == i {
                    k += 1;
                    landed & (1 << (k - 1)) != 0
                } else {
                    durable[i]
                };
                if applies {
                    disk.apply(op);
                }
            }
            for (path, old, new) in targets {
                let now = disk.read(path);
                let ok = if crash == trace.len() {
                    now == Some(new.as_slice())
                } else {
                    now == Some(old.as_slice()) || now == Some(new.as_slice())
                };
                if !ok {
                    let what = match now {
                        None => "missing".to_string(),
                        Some([]) => "empty".to_string(),
                        Some(b) => targets.iter().find(|(_, o, n)| o == b || n == b).map_or(
                            "other bytes".to_string(),
                            |(p, o, _)| {
                                format!(
                                    "the {} content of {}",
                                    if o == b { "old" } else { "new" },
                                    p.display()
                                )
                            },
                        ),
                    };
                    let lost: Vec<String> = in_doubt
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| landed & (1 << j) == 0)
                        .map(|(_, &i)| format!("#{i} {:?}", short(&done[i])))
                        .collect();
                    return Some(format!(
                        "{} holds {what} after a crash {}, with these operations lost: [{}]",
                        path.display(),
                        if crash == trace.len() {
                            "after the run reported success".to_string()
                        } else {
                            format!("before operation #{crash} ({:?})", short(&trace[crash]))
                        },
                        lost.join(", ")
                    ));
                }
            }
        }
    }
    None
}

/// An operation without its data, for messages.
fn short(op: &Op) -> String {
    match op {
        Op::Write { ino, data } => format!("Write {{ ino: {ino}, {} bytes }}", data.len()),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;
    use crate::sops::engine::tests::setup as keys;
    use crate::sops::engine::{encrypt, open, Unlock};
    use crate::sops::format::FileFormat;
    use crate::sops::metadata::Rules;
    use crate::sops::tree::{rotate_file, run_tree_on, TreeOptions};

    /// Four SOPS files in two directories, rotated through a recorder; every crash state of
    /// the recorded run must be consistent. Fails if the fsync before the rename, or the
    /// directory fsync before success, is removed from `files::replace` or the tree runner.
    #[test]
    fn every_crash_during_a_tree_rotation_leaves_each_file_old_or_new() {
        let (ids, spec) = keys();
        let d = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for (i, dir) in ["repo-a", "repo-b", "repo-a", "repo-b"].iter().enumerate() {
            let p = d.path().join(dir).join(format!("s{i}.yaml"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let plain = format!("name: file {i}\npassword: secret-{i}\n");
            let enc = encrypt(plain.as_bytes(), FileFormat::Yaml, &spec, Rules::default()).unwrap();
            std::fs::write(&p, &enc).unwrap();
            files.push((p, enc));
        }
        let (rec, start) = Recorder::new(&files);
        let opts = TreeOptions {
            jobs: Some(2),
            ..TreeOptions::default()
        };
        let s = run_tree_on(&rec, &[d.path().to_path_buf()], &opts, |p, b| {
            rotate_file(p, b, &ids, &[], &[])
        })
        .unwrap();
        assert_eq!((s.changed, s.failed), (4, 0));
        let targets: Vec<(PathBuf, Vec<u8>, Vec<u8>)> = files
            .iter()
            .map(|(p, old)| (p.clone(), old.clone(), std::fs::read(p).unwrap()))
            .collect();
        for (p, old, new) in &targets {
            assert_ne!(old, new, "{} was not rotated", p.display());
            for bytes in [old, new] {
                open(bytes, FileFormat::Yaml, Unlock::Identities(&ids)).unwrap();
            }
        }
        let trace = rec.trace();
        if let Some(bad) = find_inconsistency(&start, &trace, &targets) {
            panic!(
                "{bad}\ntrace: {:#?}",
                trace.iter().map(short).collect::<Vec<_>>()
            );
        }
    }

    /// The order the tree runner used before (a replaced file's inode kept as a spare and
    /// overwritten with the next file's content right after `RENAME_EXCHANGE`, with a `syncfs`
    /// per batch) is caught: A can end up holding B's bytes.
    #[test]
    fn the_old_inode_reuse_order_is_caught() {
        let (a, b) = (PathBuf::from("/t/a.yaml"), PathBuf::from("/t/b.yaml"));
        let (ta, tb) = (PathBuf::from("/t/.a.tmp"), PathBuf::from("/t/.b.tmp"));
        let (old_a, old_b) = (b"old a".to_vec(), b"old b".to_vec());
        let (new_a, new_b) = (b"new a".to_vec(), b"new b".to_vec());
        let (_, start) = Recorder::new(&[(a.clone(), old_a.clone()), (b.clone(), old_b.clone())]);
        let trace = vec![
            // Batch 1: A's new content staged in a new file, synced, exchanged with A.
            Op::Create {
                path: ta.clone(),
                ino: 2,
            },
            Op::Write {
                ino: 2,
                data: new_a.clone(),
            },
            Op::SyncAll,
            Op::Exchange {
                a: ta.clone(),
                b: a.clone(),
                ino_a: 2,
                ino_b: 0,
            },
            // Batch 2: A's old inode (now at ta) is B's spare: moved and overwritten at once.
            Op::Rename {
                from: ta.clone(),
                to: tb.clone(),
                ino: 0,
            },
            Op::Write {
                ino: 0,
                data: new_b.clone(),
            },
            Op::SyncAll,
            Op::Exchange {
                a: tb.clone(),
                b: b.clone(),
                ino_a: 0,
                ino_b: 1,
            },
            Op::Unlink { path: tb.clone() },
            Op::SyncAll,
        ];
        let targets = vec![(a, old_a, new_a), (b, old_b, new_b)];
        let bad = find_inconsistency(&start, &trace, &targets).expect("the old order passed");
        assert!(bad.contains("the new content of /t/b.yaml"), "{bad}");
        // The new order on the same two files passes.
        let mut ok = Vec::new();
        for (ino, (target, tmp)) in [(2, (&targets[0], ta)), (3, (&targets[1], tb))] {
            ok.extend([
                Op::Create {
                    path: tmp.clone(),
                    ino,
                },
                Op::Write {
                    ino,
                    data: target.2.clone(),
                },
                Op::SyncFile { ino },
                Op::Rename {
                    from: tmp,
                    to: target.0.clone(),
                    ino,
                },
            ]);
        }
        ok.push(Op::SyncDir {
            dir: PathBuf::from("/t"),
        });
        assert_eq!(find_inconsistency(&start, &ok, &targets), None);
    }
}
