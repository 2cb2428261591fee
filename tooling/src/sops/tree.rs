//! Operations over whole trees of state repos: find SOPS files, process them in parallel, keep
//! going past bad files, and summarise (files changed, skipped, failed) for people or `--json`.
//!
//! Each worker puts its own rewrites in place ([`files::replace`]: new file, fsync, rename);
//! the run fsyncs every directory it renamed into before it reports success. A crash (SIGKILL
//! or power loss) at any moment leaves each file as it was or wholly rewritten, and a run that
//! reported success is durable (see [`files`] for the reasoning and `sops::crash` for the
//! check).

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;
use serde::Serialize;

use super::agekeys::{AgeRecipient, Identities};
use super::config::{must_be_encrypted, rule_for_file};
use super::engine::{open, KeySpec, OpenDoc, Unlock};
use super::error::{Result, SopsError};
use super::files::{self, find_candidates, looks_like_sops, read_stamped, FileOps, RealFs};
use super::format::FileFormat;

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Rewritten.
    Changed,
    /// Nothing to do (or verified fine).
    Unchanged,
    /// Would change (dry run).
    Pending,
    /// Could not be processed; left untouched.
    Failed,
}

/// The result for one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileResult {
    /// The file.
    pub path: PathBuf,
    /// Outcome.
    pub status: Status,
    /// The error, for failed files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// age recipients of the file (after the operation).
    pub recipients: Vec<String>,
    /// Ways the file does not conform to its `.sops.yaml` rule (verify, updatekeys).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl FileResult {
    fn failed(path: &Path, e: SopsError) -> FileResult {
        FileResult {
            path: path.to_path_buf(),
            status: Status::Failed,
            error: Some(e.to_string()),
            recipients: vec![],
            problems: vec![],
        }
    }
}

/// The outcome of a tree run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Files rewritten.
    pub changed: usize,
    /// Files left as they were because nothing had to change.
    pub skipped: usize,
    /// Files that could not be processed.
    pub failed: usize,
    /// Files that do not conform to their rule.
    pub nonconforming: usize,
    /// Temporary files of an earlier, killed run that were removed.
    pub stale_temps_removed: usize,
    /// Every file, sorted by path.
    pub files: Vec<FileResult>,
}

impl Summary {
    /// Exit status: 0 when nothing failed and everything conforms.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.nonconforming == 0
    }
}

/// How to run over a tree.
#[derive(Debug, Clone, Default)]
pub struct TreeOptions {
    /// Show a progress bar (only honoured when stderr is a terminal).
    pub progress: bool,
    /// Worker threads (default: eight per core: a rewriting worker spends most of its time
    /// waiting for its fsync, and more fsyncs in flight keep the disk's queue full).
    pub jobs: Option<usize>,
    /// Remove temporary files left by a killed run (rewriting runs; verify leaves the tree alone).
    pub clean_stale: bool,
    /// Fail a file found in a directory that must be encrypted but has no SOPS metadata
    /// ([`must_be_encrypted`]) instead of skipping it (verify).
    pub plaintext_fails: bool,
}

/// What an operation on one file produced: its result and, when the file is to be rewritten,
/// its new content (checked, encrypted) for the runner to put in place.
pub struct Outcome {
    /// The result (a rewritten file reports `Changed` unless putting it in place fails).
    pub result: FileResult,
    /// The new content.
    pub rewrite: Option<Vec<u8>>,
}

impl From<FileResult> for Outcome {
    fn from(result: FileResult) -> Outcome {
        Outcome {
            result,
            rewrite: None,
        }
    }
}

/// Runs `op` over every SOPS file under `paths`, in parallel, and puts the rewrites it returns
/// in place ([`files::replace`]); returns once every rewrite is durable. Each file is read once,
/// by its worker: `op` gets its path and its bytes.
pub fn run_tree<F>(paths: &[PathBuf], opts: &TreeOptions, op: F) -> Result<Summary>
where
    F: Fn(&Path, &[u8]) -> Outcome + Sync,
{
    run_tree_on(&RealFs, paths, opts, op)
}

/// [`run_tree`], changing the tree only through `fs`.
pub fn run_tree_on<F>(
    fs: &dyn FileOps,
    paths: &[PathBuf],
    opts: &TreeOptions,
    op: F,
) -> Result<Summary>
where
    F: Fn(&Path, &[u8]) -> Outcome + Sync,
{
    let (files, stale) = find_candidates(paths)?;
    let mut stale_temps_removed = 0;
    if opts.clean_stale {
        for t in &stale {
            if fs.remove(t).is_ok() {
                stale_temps_removed += 1;
            }
        }
    }
    let jobs = opts
        .jobs
        .unwrap_or_else(|| {
            8 * std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
        .max(1);
    let bar = if opts.progress && std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(files.len() as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {wide_msg}")
        {
            b.set_style(style);
        }
        Some(b)
    } else {
        None
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .map_err(|e| SopsError::Io {
            path: PathBuf::from("."),
            source: std::io::Error::other(e.to_string()),
        })?;
    // The directories renamed into: each is fsynced before the run reports success.
    let dirs: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
    let results: Vec<Option<FileResult>> = pool.install(|| {
        files
            .par_iter()
            .map(|f| {
                if let Some(b) = &bar {
                    b.inc(1);
                }
                let (bytes, stamp) = match read_stamped(&f.path) {
                    Ok(read) => read,
                    Err(e) => return Some(FileResult::failed(&f.path, e)),
                };
                if !f.explicit && !looks_like_sops(&f.path, &bytes) {
                    if !opts.plaintext_fails {
                        return None;
                    }
                    return match must_be_encrypted(&f.path) {
                        Ok(None) => None,
                        Ok(Some(why)) => {
                            Some(FileResult::failed(&f.path, SopsError::Plaintext(why)))
                        }
                        Err(e) => Some(FileResult::failed(&f.path, e)),
                    };
                }
                let Outcome { result, rewrite } = op(&f.path, &bytes);
                drop(bytes);
                let Some(new) = rewrite else {
                    return Some(result);
                };
                let dir = files::parent_dir(&f.path);
                dirs.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(dir.to_path_buf());
                match files::replace(fs, &f.path, &new, Some(stamp)) {
                    Ok(()) => Some(result),
                    Err(e) => Some(FileResult::failed(&f.path, e)),
                }
            })
            .collect()
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    for d in dirs.into_inner().unwrap_or_else(|e| e.into_inner()) {
        fs.sync_dir(&d).map_err(|source| SopsError::Io {
            path: d.clone(),
            source,
        })?;
    }
    let results: Vec<FileResult> = results.into_iter().flatten().collect();
    let count = |s: Status| results.iter().filter(|r| r.status == s).count();
    Ok(Summary {
        changed: count(Status::Changed),
        skipped: count(Status::Unchanged) + count(Status::Pending),
        failed: count(Status::Failed),
        nonconforming: results.iter().filter(|r| !r.problems.is_empty()).count(),
        stale_temps_removed,
        files: results,
    })
}

fn open_doc(path: &Path, bytes: &[u8], ids: &Identities) -> Result<OpenDoc> {
    open(bytes, FileFormat::from_path(path), Unlock::Identities(ids))
}

pub(crate) fn spec_of(doc: &OpenDoc) -> Result<KeySpec> {
    let groups = doc
        .recipients()
        .iter()
        .map(|g| {
            g.iter()
                .map(|r| AgeRecipient::parse(r))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(KeySpec {
        groups,
        threshold: doc.meta.shamir_threshold,
    })
}

/// Rotates one file: new data key, every value re-encrypted, recipients adjusted.
pub fn rotate_file(
    path: &Path,
    bytes: &[u8],
    ids: &Identities,
    add: &[AgeRecipient],
    rm: &[String],
) -> Outcome {
    let run = || -> Result<Outcome> {
        let doc = open_doc(path, bytes, ids)?;
        let mut spec = spec_of(&doc)?;
        for g in &mut spec.groups {
            g.retain(|r| !rm.iter().any(|x| x == r.as_str()));
        }
        if let Some(first) = spec.groups.first_mut() {
            for a in add {
                if !first.iter().any(|r| r.as_str() == a.as_str()) {
                    first.push(a.clone());
                }
            }
        }
        if spec.groups.iter().any(|g| g.is_empty()) {
            return Err(SopsError::NoRecipients);
        }
        reseal_outcome(path, &doc, &spec, true)
    };
    run().unwrap_or_else(|e| FileResult::failed(path, e).into())
}

/// Re-encrypts one file for exactly `spec`'s recipients under a new data key (every value
/// encrypted again): what a rotation does, with the recipient set replaced rather than edited
/// (a hand-over: nobody who held the old data key can read the new file).
pub fn reseal_to(path: &Path, bytes: &[u8], ids: &Identities, spec: &KeySpec) -> Outcome {
    open_doc(path, bytes, ids)
        .and_then(|doc| reseal_outcome(path, &doc, spec, true))
        .unwrap_or_else(|e| FileResult::failed(path, e).into())
}

/// Reseals `doc` under `spec` (a new data key when `new_key`): the file changes to that.
fn reseal_outcome(path: &Path, doc: &OpenDoc, spec: &KeySpec, new_key: bool) -> Result<Outcome> {
    Ok(Outcome {
        rewrite: Some(doc.reseal(spec, new_key)?),
        result: FileResult {
            path: path.to_path_buf(),
            status: Status::Changed,
            error: None,
            recipients: spec.texts().concat(),
            problems: vec![],
        },
    })
}

fn same_groups(a: &[Vec<String>], b: &[Vec<String>]) -> bool {
    let norm = |x: &[Vec<String>]| {
        x.iter()
            .map(|g| {
                let mut g = g.clone();
                g.sort();
                g
            })
            .collect::<Vec<_>>()
    };
    norm(a) == norm(b)
}

fn rule_problems(doc: &OpenDoc, path: &Path) -> Result<(Option<KeySpec>, Vec<String>)> {
    let Some(rule) = rule_for_file(path)? else {
        return Ok((
            None,
            vec!["no .sops.yaml creation rule applies to this file".into()],
        ));
    };
    let want = rule.keys.texts();
    let have = doc.recipients();
    let mut problems = Vec::new();
    if !same_groups(&want, &have)
        || (want.len() > 1 && rule.keys.threshold != doc.meta.shamir_threshold)
    {
        let w: Vec<String> = want.concat();
        let h: Vec<String> = have.concat();
        let missing: Vec<&String> = w.iter().filter(|r| !h.contains(r)).collect();
        let extra: Vec<&String> = h.iter().filter(|r| !w.contains(r)).collect();
        problems.push(format!(
            "recipients differ from .sops.yaml (missing: [{}], extra: [{}]); run `kiwictl secrets updatekeys`",
            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            extra.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok((Some(rule.keys), problems))
}

/// Makes one file's recipients match its `.sops.yaml` rule (the data key is re-wrapped, values
/// are untouched). With `apply` false, only reports what would change.
pub fn updatekeys_file(path: &Path, bytes: &[u8], ids: &Identities, apply: bool) -> Outcome {
    let run = || -> Result<Outcome> {
        let doc = open_doc(path, bytes, ids)?;
        let (spec, problems) = rule_problems(&doc, path)?;
        let Some(spec) = spec else {
            return Err(SopsError::Config {
                path: path.to_path_buf(),
                detail: "no .sops.yaml found above this file".into(),
            });
        };
        if problems.is_empty() || !apply {
            let status = if problems.is_empty() {
                Status::Unchanged
            } else {
                Status::Pending
            };
            return Ok(FileResult {
                path: path.to_path_buf(),
                status,
                error: None,
                recipients: doc.recipients().concat(),
                problems,
            }
            .into());
        }
        reseal_outcome(path, &doc, &spec, false)
    };
    run().unwrap_or_else(|e| FileResult::failed(path, e).into())
}

/// Checks one file: it decrypts, its MAC holds, and its recipients match its rule.
pub fn verify_file(path: &Path, bytes: &[u8], ids: &Identities) -> Outcome {
    let run = || -> Result<FileResult> {
        let doc = open_doc(path, bytes, ids)?;
        let (_, problems) = rule_problems(&doc, path)?;
        Ok(FileResult {
            path: path.to_path_buf(),
            status: Status::Unchanged,
            error: None,
            recipients: doc.recipients().concat(),
            problems,
        })
    };
    run().unwrap_or_else(|e| FileResult::failed(path, e)).into()
}
