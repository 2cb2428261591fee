//! A customer state repo's PKI and secrets part: the layout `kiwictl repo init` lays down and
//! the later commands (intermediate request and install) rely on.
//!
//! ```text
//! .kiwi/repo.yaml          slug, tier, the MSP root's SHA-256 and the age recipients: marks the
//!                          directory as this customer's state repo, pins the root `intermediate
//!                          install` trusts and records the only recipients key material is
//!                          encrypted to (`secrets/.sops.yaml` is checked against them, see `seal`)
//! secrets/.sops.yaml       creation rule: *.sops.yaml encrypt to the operator (+ recovery) age keys
//! values/ overrides/       Helm values and Kustomize patches (seed G1)
//! fleet-config/            mesh and fleet tiers only
//! ```
//!
//! A Core cluster's shared sub-CA has the same layout, in the platform repo at
//! `core-shared/CLUSTER/` (`kiwictl repo init --shared`): its marker says `shared: true`, the
//! slug names the cluster and the tier is core. That one field is the whole difference, so the
//! shared sub-CA's key, CSR and certificate go through the per-customer commands (`intermediate
//! request`, `install`, `renew`, `check`) instead of a second implementation: they take the
//! shared policy (`policies/intermediate-core-shared.yaml`) for it, and `provisioner gather`
//! writes the tenants' provisioners into the same directory (see `stepca`).

use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use serde::{Deserialize, Serialize};

use kiwi_signer::fsutil::{self, Mode};
use kiwi_signer::slug::{Slug, Tier};
use kiwi_signer::words::Fingerprint;
use kiwi_signer::x509;

/// The marker file, relative to the repo root.
pub const MARKER: &str = ".kiwi/repo.yaml";
/// The SOPS configuration, relative to the repo root.
pub const SOPS_CONFIG: &str = "secrets/.sops.yaml";
/// Which files the creation rule covers (sops matches it against the file's path).
pub const PATH_REGEX: &str = r"\.sops\.yaml$";

/// The marker's format: 3 pins the MSP root and records the age recipients (format 2 markers
/// have no recipients, format 1 markers no root either; `repo init` run again upgrades them).
pub const FORMAT: u32 = 3;

/// What the marker records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInfo {
    /// The customer.
    pub slug: Slug,
    /// The customer's tier.
    pub tier: Tier,
    /// SHA-256 of the MSP root certificate's DER: the only root `intermediate install` accepts.
    pub root_sha256: Fingerprint,
    /// The operator's age recipient, then the customer's recovery recipient if they keep one:
    /// the only recipients key material in this repo may be encrypted to.
    pub recipients: Vec<String>,
    /// A Core cluster's shared sub-CA (`slug` names the cluster), not a customer's repo.
    pub shared: bool,
}

/// The marker as written (format 3) or found (format 2 has no recipients, format 1 no root).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepoInfo {
    format: u32,
    slug: Slug,
    tier: Tier,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    operator_age: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recovery_age: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    shared: bool,
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
    /// The marker predates root pinning.
    #[error("{0} pins no MSP root (its {MARKER} is format 1); run `kiwictl repo init` on it again with the same options and --root ROOT.pem to pin the root")]
    NoPinnedRoot(PathBuf),
    /// The marker predates recorded recipients.
    #[error("{0} records no age recipients (its {MARKER} is format 2, from an older kiwictl); run `kiwictl repo init` on it again with the same --operator-age, --recovery-age and --root to record them (it checks them against {SOPS_CONFIG})")]
    NoRecordedRecipients(PathBuf),
    /// The `--root` file is not a self-signed root certificate.
    #[error("the root {path} was refused: {reason}; pass KiwiStack's MSP root certificate (root.pem from the signer)")]
    BadRoot {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
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

/// The MSP root certificate in `bytes` (PEM or DER) checked to be a self-signed certificate,
/// and its SHA-256 (over the DER, as `openssl x509 -fingerprint -sha256` shows it).
pub fn root_fingerprint(path: &Path, bytes: &[u8]) -> Result<Fingerprint, RepoError> {
    let refused = |reason: String| RepoError::BadRoot {
        path: path.to_path_buf(),
        reason,
    };
    let der = match pem::parse(bytes) {
        Ok(p) if p.tag() == "CERTIFICATE" => p.into_contents(),
        Ok(p) => {
            return Err(refused(format!(
                "it is a PEM `{}`, not a CERTIFICATE",
                p.tag()
            )))
        }
        Err(_) => bytes.to_vec(),
    };
    let cert = x509::parse_cert(&der).map_err(refused)?;
    let key = x509::cert_key(&cert).map_err(|e| refused(e.to_string()))?;
    x509::verify_cert(&cert, &key)
        .map_err(|e| refused(format!("it is not self-signed by its own key ({e})")))?;
    Ok(Fingerprint::of(&der))
}

/// Reads the MSP root certificate file at `path` and returns its SHA-256 ([`root_fingerprint`]).
pub fn read_root(path: &Path) -> Result<Fingerprint, RepoError> {
    let bytes = std::fs::read(path).map_err(|e| RepoError::BadRoot {
        path: path.to_path_buf(),
        reason: format!("cannot read it ({e})"),
    })?;
    root_fingerprint(path, &bytes)
}

fn read_marker(dir: &Path) -> Result<RawRepoInfo, RepoError> {
    let marker = dir.join(MARKER);
    let text =
        std::fs::read_to_string(&marker).map_err(|_| RepoError::NotARepo(dir.to_path_buf()))?;
    kiwi_signer::policy::parse_strict(&marker.display().to_string(), &text)
        .map_err(|e| RepoError::Marker(e.to_string()))
}

/// Reads the marker of the state repo at `dir`.
pub fn open(dir: &Path) -> Result<RepoInfo, RepoError> {
    let raw = read_marker(dir)?;
    let bad = |m: String| RepoError::Marker(format!("{}: {m}", dir.join(MARKER).display()));
    if raw.shared && raw.tier != Tier::Core {
        return Err(bad(format!(
            "shared: true, but tier: {}; only a Core cluster has a shared sub-CA",
            raw.tier
        )));
    }
    match (raw.format, raw.root_sha256, raw.operator_age) {
        (1, None, None) => Err(RepoError::NoPinnedRoot(dir.to_path_buf())),
        (2, Some(_), None) => Err(RepoError::NoRecordedRecipients(dir.to_path_buf())),
        (FORMAT, Some(hex), Some(operator)) => {
            let mut recipients = vec![operator];
            recipients.extend(raw.recovery_age);
            for (field, r) in ["operator_age", "recovery_age"].iter().zip(&recipients) {
                check_recipient(r).map_err(|e| bad(format!("{field}: {e}")))?;
            }
            Ok(RepoInfo {
                slug: raw.slug,
                tier: raw.tier,
                root_sha256: Fingerprint::from_hex(&hex).ok_or_else(|| {
                    bad(format!(
                        "root_sha256: `{hex}` is not a SHA-256 (64 hex digits)"
                    ))
                })?,
                recipients,
                shared: raw.shared,
            })
        }
        (FORMAT, None, _) => Err(bad("root_sha256: missing".into())),
        (FORMAT, _, None) => Err(bad("operator_age: missing".into())),
        (f @ (1 | 2), _, _) => Err(bad(format!(
            "format: {f} markers have no {}; restore the file from version control",
            if f == 1 {
                "root_sha256"
            } else {
                "operator_age"
            }
        ))),
        (f, _, _) => Err(bad(format!(
            "format: {f} is not one this kiwictl reads (1 to {FORMAT})"
        ))),
    }
}

fn marker_text(
    slug: &Slug,
    tier: Tier,
    shared: bool,
    root: &Fingerprint,
    recipients: &[String],
) -> Result<String, RepoError> {
    serde_yaml_ng::to_string(&RawRepoInfo {
        format: FORMAT,
        slug: slug.clone(),
        tier,
        root_sha256: Some(root.hex()),
        operator_age: recipients.first().cloned(),
        recovery_age: recipients.get(1).cloned(),
        shared,
    })
    .map_err(|e| RepoError::Marker(e.to_string()))
}

/// Replaces the marker of the state repo at `dir` with one recording `info` (a hand-over: the
/// customer's own recipients and root). Atomic: a crash leaves the old marker or the new one.
pub fn write_marker(dir: &Path, info: &RepoInfo) -> Result<(), RepoError> {
    if info.recipients.is_empty() || info.recipients.len() > 2 {
        return Err(RepoError::Marker(format!(
            "a state repo records one or two age recipients (operator, recovery), not {}",
            info.recipients.len()
        )));
    }
    for r in &info.recipients {
        check_recipient(r)?;
    }
    let text = marker_text(
        &info.slug,
        info.tier,
        info.shared,
        &info.root_sha256,
        &info.recipients,
    )?;
    fsutil::replace_atomically(&dir.join(MARKER), text.as_bytes(), Mode::Public)?;
    Ok(())
}

/// The root a format 2 marker pins.
fn format_2_root(dir: &Path, found: &RawRepoInfo) -> Result<Fingerprint, RepoError> {
    let hex = found.root_sha256.as_deref().unwrap_or_default();
    Fingerprint::from_hex(hex).ok_or_else(|| {
        RepoError::Marker(format!(
            "{}: root_sha256: `{hex}` is not a SHA-256 (64 hex digits)",
            dir.join(MARKER).display()
        ))
    })
}

/// What `init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Initialized {
    /// Created these files and folders.
    Created(Vec<PathBuf>),
    /// The directory already was this customer's state repo with these recipients and root.
    AlreadyThere,
    /// The directory was this customer's state repo made by an older kiwictl (format 1 or 2,
    /// with these recipients in its `secrets/.sops.yaml`): the marker now pins the root and
    /// records the recipients.
    Pinned,
}

/// Lays down the state repo's secrets layout in `dir` (absent or empty) pinning the MSP root
/// `root_sha256` (from [`root_fingerprint`]) and recording the recipients, or accepts a
/// directory that already is the same customer's state repo with the same recipients and root
/// (upgrading a format 1 or 2 marker, which lacked the root or the recipients, once its
/// `secrets/.sops.yaml` is exactly what `init` writes for these recipients).
pub fn init(
    dir: &Path,
    slug: &Slug,
    tier: Tier,
    operator: &str,
    recovery: Option<&str>,
    root_sha256: &Fingerprint,
) -> Result<Initialized, RepoError> {
    init_as(dir, slug, tier, false, operator, recovery, root_sha256)
}

/// [`init`] for the shared sub-CA of the Core cluster `cluster` (the platform repo's
/// `core-shared/CLUSTER/`): the same layout, its marker saying `shared: true`.
pub fn init_shared(
    dir: &Path,
    cluster: &Slug,
    operator: &str,
    recovery: Option<&str>,
    root_sha256: &Fingerprint,
) -> Result<Initialized, RepoError> {
    init_as(
        dir,
        cluster,
        Tier::Core,
        true,
        operator,
        recovery,
        root_sha256,
    )
}

fn what(slug: &Slug, tier: Tier, shared: bool) -> String {
    if shared {
        format!("the shared sub-CA of core cluster {slug}")
    } else {
        format!("{slug} ({tier})")
    }
}

fn init_as(
    dir: &Path,
    slug: &Slug,
    tier: Tier,
    shared: bool,
    operator: &str,
    recovery: Option<&str>,
    root_sha256: &Fingerprint,
) -> Result<Initialized, RepoError> {
    check_recipient(operator)?;
    let mut recipients = vec![operator.to_string()];
    if let Some(r) = recovery {
        check_recipient(r)?;
        recipients.push(r.to_string());
    }
    let config = sops_config(&recipients);
    let marker = marker_text(slug, tier, shared, root_sha256, &recipients)?;
    if dir.join(MARKER).exists() {
        let found = read_marker(dir)?;
        if found.slug != *slug || found.tier != tier || found.shared != shared {
            return Err(RepoError::Mismatch {
                path: dir.to_path_buf(),
                found: what(&found.slug, found.tier, found.shared),
                wanted: what(slug, tier, shared),
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
        // The recipients were just checked against secrets/.sops.yaml, as `init` wrote it.
        let pinned = match found.format {
            1 => None,
            2 => Some(format_2_root(dir, &found)?),
            _ => {
                let info = open(dir)?;
                if info.recipients != recipients {
                    return Err(RepoError::Mismatch {
                        path: dir.to_path_buf(),
                        found: format!(
                            "{slug} recording the recipients {} in {MARKER}",
                            info.recipients.join(", ")
                        ),
                        wanted: format!("{slug} encrypting to {}", recipients.join(", ")),
                    });
                }
                Some(info.root_sha256)
            }
        };
        if let Some(pinned) = pinned.filter(|p| p != root_sha256) {
            return Err(RepoError::Mismatch {
                path: dir.to_path_buf(),
                found: format!(
                    "{slug} pinned to the MSP root with SHA-256 {}",
                    pinned.hex()
                ),
                wanted: format!("{slug} pinned to {}", root_sha256.hex()),
            });
        }
        if found.format == FORMAT {
            return Ok(Initialized::AlreadyThere);
        }
        fsutil::replace_atomically(&dir.join(MARKER), marker.as_bytes(), Mode::Public)?;
        return Ok(Initialized::Pinned);
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

    fn root() -> Fingerprint {
        Fingerprint::of(b"the MSP root's DER")
    }

    #[test]
    fn init_is_idempotent_and_refuses_others() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("cust-acme");
        let init = |dir: &Path, s: &str, tier: Tier, op: &str, root: &Fingerprint| {
            super::init(dir, &slug(s), tier, op, None, root)
        };
        let done = init(&dir, "acme", Tier::Mesh, OP, &root()).expect("init");
        assert!(matches!(done, Initialized::Created(_)));
        assert!(dir.join("fleet-config").is_dir());
        let cfg = std::fs::read_to_string(dir.join(SOPS_CONFIG)).expect("config");
        assert!(cfg.contains(OP) && cfg.contains(PATH_REGEX), "{cfg}");
        let info = open(&dir).expect("marker");
        assert_eq!(info.slug, slug("acme"));
        assert_eq!(info.root_sha256, root());
        let marker = std::fs::read_to_string(dir.join(MARKER)).expect("marker");
        assert!(
            marker.contains(&format!("root_sha256: {}", root().hex())),
            "{marker}"
        );
        assert_eq!(
            init(&dir, "acme", Tier::Mesh, OP, &root()).expect("again"),
            Initialized::AlreadyThere
        );
        assert!(matches!(
            init(&dir, "globex", Tier::Mesh, OP, &root()),
            Err(RepoError::Mismatch { .. })
        ));
        assert!(matches!(
            init(&dir, "acme", Tier::Core, OP, &root()),
            Err(RepoError::Mismatch { .. })
        ));
        let rogue = Fingerprint::of(b"another root");
        let e = init(&dir, "acme", Tier::Mesh, OP, &rogue).expect_err("another root");
        assert!(
            e.to_string().contains(&root().hex()) && e.to_string().contains(&rogue.hex()),
            "{e}"
        );
        assert_eq!(
            open(&dir).expect("marker").root_sha256,
            root(),
            "the pin changed"
        );
        let other = tmp.path().join("busy");
        std::fs::create_dir(&other).expect("mkdir");
        std::fs::write(other.join("README"), "x").expect("write");
        assert!(matches!(
            init(&other, "acme", Tier::Core, OP, &root()),
            Err(RepoError::NotEmpty(_))
        ));
        let bad = tmp.path().join("bad");
        assert!(matches!(
            init(&bad, "acme", Tier::Core, "AGE-SECRET-KEY-1XYZ", &root()),
            Err(RepoError::BadRecipient(_))
        ));
        assert!(!bad.exists(), "a refused init created the directory");
    }

    #[test]
    fn older_repos_are_refused_until_init_records_root_and_recipients() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("cust-acme");
        init(&dir, &slug("acme"), Tier::Core, OP, None, &root()).expect("init");
        let marker = std::fs::read_to_string(dir.join(MARKER)).expect("marker");
        assert!(marker.contains(&format!("operator_age: {OP}")), "{marker}");
        assert_eq!(open(&dir).expect("open").recipients, vec![OP.to_string()]);
        let format_2 = format!(
            "format: 2\nslug: acme\ntier: core\nroot_sha256: {}\n",
            root().hex()
        );
        for (old, want) in [
            (
                "format: 1\nslug: acme\ntier: core\n".to_string(),
                "--root ROOT.pem",
            ),
            (format_2.clone(), "--operator-age"),
        ] {
            std::fs::write(dir.join(MARKER), &old).expect("old");
            let e = open(&dir).expect_err("an old marker");
            assert!(e.to_string().contains(want), "{e}");
            // Other recipients than secrets/.sops.yaml holds: refused, marker unchanged.
            let other = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
            assert!(matches!(
                init(&dir, &slug("acme"), Tier::Core, other, None, &root()),
                Err(RepoError::Mismatch { .. })
            ));
            assert_eq!(std::fs::read_to_string(dir.join(MARKER)).expect("m"), old);
            assert_eq!(
                init(&dir, &slug("acme"), Tier::Core, OP, None, &root()).expect("upgrade"),
                Initialized::Pinned
            );
            let info = open(&dir).expect("upgraded");
            assert_eq!(
                (info.root_sha256, info.recipients),
                (root(), vec![OP.to_string()])
            );
        }
        // A format 2 repo pinned to another root is not re-pinned by the upgrade.
        std::fs::write(dir.join(MARKER), &format_2).expect("old");
        let rogue = Fingerprint::of(b"another root");
        assert!(init(&dir, &slug("acme"), Tier::Core, OP, None, &rogue).is_err());
        assert_eq!(
            std::fs::read_to_string(dir.join(MARKER)).expect("m"),
            format_2
        );
        for bad in [
            "format: 3\nslug: acme\ntier: core\n".to_string(),
            format!("format: 3\nslug: acme\ntier: core\nroot_sha256: {}\n", root().hex()),
            format!(
                "format: 3\nslug: acme\ntier: core\nroot_sha256: {}\noperator_age: AGE-SECRET-KEY-1X\n",
                root().hex()
            ),
            "format: 3\nslug: acme\ntier: core\nroot_sha256: abc\noperator_age: x\n".to_string(),
        ] {
            std::fs::write(dir.join(MARKER), &bad).expect("bad");
            assert!(matches!(open(&dir), Err(RepoError::Marker(_))), "{bad}");
        }
    }

    #[test]
    fn a_shared_sub_ca_repo_is_marked_and_not_mistaken_for_a_tenant() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("core-eu1");
        let cluster = slug("core-eu1");
        init_shared(&dir, &cluster, OP, None, &root()).expect("init");
        let info = open(&dir).expect("open");
        assert!(info.shared && info.tier == Tier::Core && info.slug == cluster);
        let marker = std::fs::read_to_string(dir.join(MARKER)).expect("marker");
        assert!(marker.contains("shared: true"), "{marker}");
        assert_eq!(
            init_shared(&dir, &cluster, OP, None, &root()).expect("again"),
            Initialized::AlreadyThere
        );
        // The same slug as a tenant's repo, and the other way round: refused, naming both.
        let e = init(&dir, &cluster, Tier::Core, OP, None, &root()).expect_err("as a tenant");
        assert!(
            e.to_string()
                .contains("the shared sub-CA of core cluster core-eu1")
                && e.to_string().contains("core-eu1 (core)"),
            "{e}"
        );
        let tenant = tmp.path().join("acme");
        init(&tenant, &slug("acme"), Tier::Core, OP, None, &root()).expect("tenant");
        assert!(!open(&tenant).expect("open").shared);
        assert!(!std::fs::read_to_string(tenant.join(MARKER))
            .expect("marker")
            .contains("shared"));
        assert!(matches!(
            init_shared(&tenant, &slug("acme"), OP, None, &root()),
            Err(RepoError::Mismatch { .. })
        ));
        // A hand-edited marker claiming a shared Mesh CA is refused.
        std::fs::write(dir.join(MARKER), marker.replace("tier: core", "tier: mesh")).expect("w");
        let e = open(&dir).expect_err("shared mesh");
        assert!(e.to_string().contains("only a Core cluster"), "{e}");
    }

    #[test]
    fn only_a_self_signed_certificate_is_a_root() {
        let p = Path::new("root.pem");
        let e = root_fingerprint(
            p,
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .expect_err("a key");
        assert!(e.to_string().contains("not a CERTIFICATE"), "{e}");
        assert!(root_fingerprint(p, b"garbage").is_err());
    }
}
