//! A customer state repo's PKI and secrets part: the layout `kiwictl repo init` lays down and
//! the later commands (intermediate request and install) rely on.
//!
//! ```text
//! .kiwi/repo.yaml          slug and tier: marks the directory as this customer's state repo
//! secrets/.sops.yaml       creation rule: *.sops.yaml encrypt to the operator (+ recovery) age keys
//! values/ overrides/       Helm values and Kustomize patches (seed G1)
//! fleet-config/            mesh and fleet tiers only
//! ```

use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use serde::{Deserialize, Serialize};

use kiwi_signer::fsutil::{self, Mode};
use kiwi_signer::slug::{Slug, Tier};

/// The marker file, relative to the repo root.
pub const MARKER: &str = ".kiwi/repo.yaml";
/// The SOPS configuration, relative to the repo root.
pub const SOPS_CONFIG: &str = "secrets/.sops.yaml";
/// Which files the creation rule covers (sops matches it against the file's path).
pub const PATH_REGEX: &str = r"\.sops\.yaml$";

/// What the marker records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoInfo {
    /// Format version.
    pub format: u32,
    /// The customer.
    pub slug: Slug,
    /// The customer's tier.
    pub tier: Tier,
}

/// Why a state repo operation refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// A recipient is not an age X25519 public key.
    #[error("`{0}` is not an age recipient (age1...); pass the public key, never the identity")]
    BadRecipient(String),
    /// The target has other content.
    #[error("{0} is not empty and is not a state repo for this customer; pick an empty directory")]
    NotEmpty(PathBuf),
    /// The target is a state repo for something else.
    #[error("{path} is already the state repo of {found}, not of {wanted}; nothing was changed")]
    Mismatch {
        /// The repo.
        path: PathBuf,
        /// What it is.
        found: String,
        /// What was asked.
        wanted: String,
    },
    /// Not a state repo at all.
    #[error("{0} is not a kiwi state repo (no {MARKER}); create it with `kiwictl repo init`")]
    NotARepo(PathBuf),
    /// Reading or writing failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// Writing failed in the PKI core's safe writer.
    #[error(transparent)]
    Write(#[from] kiwi_signer::Error),
    /// The marker is damaged.
    #[error("{0}")]
    Marker(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
    move |error| RepoError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Checks that `r` is an age X25519 recipient.
pub fn check_recipient(r: &str) -> Result<(), RepoError> {
    age::x25519::Recipient::from_str(r)
        .map(|_| ())
        .map_err(|_| RepoError::BadRecipient(r.to_string()))
}

/// The `secrets/.sops.yaml` text for these recipients.
pub fn sops_config(recipients: &[String]) -> String {
    format!(
        "# Written by `kiwictl repo init`. Every *.sops.yaml under secrets/ is encrypted to these\n\
         # age recipients: the operator key (Argo CD's key in the cluster) and, if the customer\n\
         # chose one, their recovery key. `kiwictl secrets updatekeys secrets/` applies changes.\n\
         creation_rules:\n  - path_regex: {PATH_REGEX}\n    age: >-\n      {}\n",
        recipients.join(",")
    )
}

/// Reads the marker of the state repo at `dir`.
pub fn open(dir: &Path) -> Result<RepoInfo, RepoError> {
    let marker = dir.join(MARKER);
    let text =
        std::fs::read_to_string(&marker).map_err(|_| RepoError::NotARepo(dir.to_path_buf()))?;
    kiwi_signer::policy::parse_strict(&marker.display().to_string(), &text)
        .map_err(|e| RepoError::Marker(e.to_string()))
}

/// What `init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Initialized {
    /// Created these files and folders.
    Created(Vec<PathBuf>),
    /// The directory already was this customer's state repo with these recipients.
    AlreadyThere,
}

/// Lays down the state repo's secrets layout in `dir` (absent or empty), or accepts a
/// directory that already is the same customer's state repo with the same recipients.
pub fn init(
    dir: &Path,
    slug: &Slug,
    tier: Tier,
    operator: &str,
    recovery: Option<&str>,
) -> Result<Initialized, RepoError> {
    check_recipient(operator)?;
    let mut recipients = vec![operator.to_string()];
    if let Some(r) = recovery {
        check_recipient(r)?;
        recipients.push(r.to_string());
    }
    let config = sops_config(&recipients);
    let info = RepoInfo {
        format: 1,
        slug: slug.clone(),
        tier,
    };
    if dir.join(MARKER).exists() {
        let found = open(dir)?;
        if found.slug != *slug || found.tier != tier {
            return Err(RepoError::Mismatch {
                path: dir.to_path_buf(),
                found: format!("{} ({})", found.slug, found.tier),
                wanted: format!("{slug} ({tier})"),
            });
        }
        let existing = std::fs::read_to_string(dir.join(SOPS_CONFIG)).unwrap_or_default();
        if existing != config {
            return Err(RepoError::Mismatch {
                path: dir.to_path_buf(),
                found: format!("{slug} with other recipients in {SOPS_CONFIG}"),
                wanted: format!("{slug} encrypting to {}", recipients.join(", ")),
            });
        }
        return Ok(Initialized::AlreadyThere);
    }
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io(dir))?;
        // A fresh `git init` is still empty for our purposes.
        if entries.any(|e| e.map(|e| e.file_name() != ".git").unwrap_or(true)) {
            return Err(RepoError::NotEmpty(dir.to_path_buf()));
        }
    }
    let mut folders = vec![".kiwi", "secrets", "values", "overrides"];
    if matches!(tier, Tier::Mesh | Tier::Fleet) {
        folders.push("fleet-config");
    }
    let mut created = Vec::new();
    for f in folders {
        let p = dir.join(f);
        std::fs::create_dir_all(&p).map_err(io(&p))?;
        created.push(p);
    }
    for keep in ["values/.gitkeep", "overrides/.gitkeep"]
        .into_iter()
        .chain(matches!(tier, Tier::Mesh | Tier::Fleet).then_some("fleet-config/.gitkeep"))
    {
        fsutil::write_new(&dir.join(keep), b"", Mode::Public)?;
    }
    let marker = serde_yaml_ng::to_string(&info).map_err(|e| RepoError::Marker(e.to_string()))?;
    fsutil::write_new(&dir.join(SOPS_CONFIG), config.as_bytes(), Mode::Public)?;
    created.push(dir.join(SOPS_CONFIG));
    // The marker last: a directory without it is not claimed as a state repo.
    fsutil::write_new(&dir.join(MARKER), marker.as_bytes(), Mode::Public)?;
    created.push(dir.join(MARKER));
    Ok(Initialized::Created(created))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OP: &str = "age1mqjwg52nzvxdkml0k3908q8fcqwqrv5h2gh8y45dkjqaalaqzv8snne4qv";

    fn slug(s: &str) -> Slug {
        Slug::parse(s).expect("slug")
    }

    #[test]
    fn init_is_idempotent_and_refuses_others() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("cust-acme");
        let done = init(&dir, &slug("acme"), Tier::Mesh, OP, None).expect("init");
        assert!(matches!(done, Initialized::Created(_)));
        assert!(dir.join("fleet-config").is_dir());
        let cfg = std::fs::read_to_string(dir.join(SOPS_CONFIG)).expect("config");
        assert!(cfg.contains(OP) && cfg.contains(PATH_REGEX), "{cfg}");
        assert_eq!(open(&dir).expect("marker").slug, slug("acme"));
        assert_eq!(
            init(&dir, &slug("acme"), Tier::Mesh, OP, None).expect("again"),
            Initialized::AlreadyThere
        );
        assert!(matches!(
            init(&dir, &slug("globex"), Tier::Mesh, OP, None),
            Err(RepoError::Mismatch { .. })
        ));
        assert!(matches!(
            init(&dir, &slug("acme"), Tier::Core, OP, None),
            Err(RepoError::Mismatch { .. })
        ));
        let other = tmp.path().join("busy");
        std::fs::create_dir(&other).expect("mkdir");
        std::fs::write(other.join("README"), "x").expect("write");
        assert!(matches!(
            init(&other, &slug("acme"), Tier::Core, OP, None),
            Err(RepoError::NotEmpty(_))
        ));
        let bad = tmp.path().join("bad");
        assert!(matches!(
            init(&bad, &slug("acme"), Tier::Core, "AGE-SECRET-KEY-1XYZ", None),
            Err(RepoError::BadRecipient(_))
        ));
        assert!(!bad.exists(), "a refused init created the directory");
    }
}
