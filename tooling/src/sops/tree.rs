//! Operations over whole trees of state repos: find SOPS files, process them in parallel, keep
//! going past bad files, and summarise (files changed, skipped, failed) for people or `--json`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use super::agekeys::{AgeRecipient, Identities};
use super::config::rule_for_file;
use super::engine::{open, KeySpec, OpenDoc, Unlock};
use super::error::{Result, SopsError};
use super::files::{find_sops_files_and_stale, read, sync_dir, write_atomic_nosyncdir};
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
    /// Worker threads (default: enough to overlap fsyncs with CPU work).
    pub jobs: Option<usize>,
    /// Remove temporary files left by a killed run (rewriting runs; verify leaves the tree alone).
    pub clean_stale: bool,
}

/// Runs `op` over every SOPS file under `paths`, in parallel.
pub fn run_tree<F>(paths: &[PathBuf], opts: &TreeOptions, op: F) -> Result<Summary>
where
    F: Fn(&Path) -> FileResult + Sync,
{
    let (files, stale) = find_sops_files_and_stale(paths)?;
    let mut stale_temps_removed = 0;
    if opts.clean_stale {
        for t in &stale {
            if std::fs::remove_file(t).is_ok() {
                stale_temps_removed += 1;
            }
        }
    }
    let jobs = opts
        .jobs
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .saturating_mul(8)
                .min(64)
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
    let results: Vec<FileResult> = pool.install(|| {
        files
            .par_iter()
            .map(|f| {
                let r = op(f);
                if let Some(b) = &bar {
                    b.inc(1);
                }
                r
            })
            .collect()
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // Files were fsynced before their rename; make the renames durable, once per directory.
    let mut dirs: Vec<&Path> = results
        .iter()
        .filter(|r| r.status == Status::Changed)
        .filter_map(|r| r.path.parent())
        .collect();
    dirs.sort();
    dirs.dedup();
    let dir_errors: Vec<SopsError> =
        pool.install(|| dirs.par_iter().filter_map(|d| sync_dir(d).err()).collect());
    if let Some(e) = dir_errors.into_iter().next() {
        return Err(e);
    }
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

fn open_file(path: &Path, ids: &Identities) -> Result<(OpenDoc, FileFormat)> {
    let bytes = read(path)?;
    let fmt = FileFormat::from_path(path);
    Ok((open(&bytes, fmt, Unlock::Identities(ids))?, fmt))
}

fn spec_of(doc: &OpenDoc) -> Result<KeySpec> {
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
    ids: &Identities,
    add: &[AgeRecipient],
    rm: &[String],
) -> FileResult {
    let run = || -> Result<FileResult> {
        let (doc, _) = open_file(path, ids)?;
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
        write_resealed(path, &doc, &spec, true)
    };
    run().unwrap_or_else(|e| FileResult::failed(path, e))
}

/// Reseals `doc` under `spec` (a new data key when `new_key`), writes it over `path` through a
/// temporary file, and reports the file changed.
fn write_resealed(path: &Path, doc: &OpenDoc, spec: &KeySpec, new_key: bool) -> Result<FileResult> {
    let out = doc.reseal(spec, new_key)?;
    write_atomic_nosyncdir(path, &out)?;
    Ok(FileResult {
        path: path.to_path_buf(),
        status: Status::Changed,
        error: None,
        recipients: spec.texts().concat(),
        problems: vec![],
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
pub fn updatekeys_file(path: &Path, ids: &Identities, apply: bool) -> FileResult {
    let run = || -> Result<FileResult> {
        let (doc, _) = open_file(path, ids)?;
        let (spec, problems) = rule_problems(&doc, path)?;
        let Some(spec) = spec else {
            return Err(SopsError::Config {
                path: path.to_path_buf(),
                detail: "no .sops.yaml found above this file".into(),
            });
        };
        if problems.is_empty() {
            return Ok(FileResult {
                path: path.to_path_buf(),
                status: Status::Unchanged,
                error: None,
                recipients: doc.recipients().concat(),
                problems,
            });
        }
        if !apply {
            return Ok(FileResult {
                path: path.to_path_buf(),
                status: Status::Pending,
                error: None,
                recipients: doc.recipients().concat(),
                problems,
            });
        }
        write_resealed(path, &doc, &spec, false)
    };
    run().unwrap_or_else(|e| FileResult::failed(path, e))
}

/// Checks one file: it decrypts, its MAC holds, and its recipients match its rule.
pub fn verify_file(path: &Path, ids: &Identities) -> FileResult {
    let run = || -> Result<FileResult> {
        let (doc, _) = open_file(path, ids)?;
        let (_, problems) = rule_problems(&doc, path)?;
        Ok(FileResult {
            path: path.to_path_buf(),
            status: Status::Unchanged,
            error: None,
            recipients: doc.recipients().concat(),
            problems,
        })
    };
    run().unwrap_or_else(|e| FileResult::failed(path, e))
}
