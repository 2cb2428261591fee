//! The customer registry of the platform repo: `customers/<slug>.yaml`, one file per customer.
//!
//! Validation reports every problem with its file and field, not only the first, so one run of
//! `kiwictl registry validate` in CI lists everything a pull request must fix. Entries are read
//! into YAML values first and checked field by field for that reason (strict serde stops at the
//! first error).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use kiwi_signer::slug::{Slug, Tier};

/// The folder of the platform repo holding the entries.
pub const CUSTOMERS: &str = "customers";

const ISO3166: &str = include_str!("iso3166-alpha2.txt");

/// Whether `code` is an ISO 3166-1 alpha-2 country code.
pub fn is_iso3166_alpha2(code: &str) -> bool {
    code.len() == 2
        && ISO3166
            .lines()
            .filter(|l| !l.starts_with('#'))
            .any(|l| l.split_once(' ').is_some_and(|(c, _)| c == code))
}

/// Whether `tag` is a semver release tag: `v` then MAJOR.MINOR.PATCH (no leading zeros), with an
/// optional `-pre.release` and `+build`.
pub fn is_semver_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix('v') else {
        return false;
    };
    let (rest, build) = match rest.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (rest, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let numeric = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && !(s.len() > 1 && s.starts_with('0'))
    };
    let ident_ok = |s: &str, numeric_rule: bool| {
        !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && (!numeric_rule || !s.bytes().all(|b| b.is_ascii_digit()) || numeric(s))
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| numeric(p))
        && pre.is_none_or(|p| p.split('.').all(|i| ident_ok(i, true)))
        && build.is_none_or(|b| b.split('.').all(|i| ident_ok(i, false)))
}

/// One problem in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The entry's file.
    pub file: PathBuf,
    /// Dotted field path (`.` for the whole file).
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.file.display(),
            self.field,
            self.message
        )
    }
}

/// The base repositories an entry pins (`base_versions` keys).
pub const BASES: [&str; 3] = ["core-base", "mesh-base", "intelligence-base"];

/// A valid registry entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The customer's slug (equal to the file name).
    pub slug: Slug,
    /// The tier.
    pub tier: Tier,
    /// ISO 3166-1 alpha-2 jurisdiction.
    pub jurisdiction: String,
    /// Whether the intelligence layer is on.
    pub intelligence: bool,
    /// Pinned base versions, by base name.
    pub base_versions: BTreeMap<String, String>,
    /// Core tenants only: the Core cluster whose shared sub-CA holds the tenant's ACME
    /// provisioner. Mesh and fleet customers run their own intermediate CA and have none.
    pub cluster: Option<Slug>,
}

impl Entry {
    /// The entry as YAML, in the registry's key order.
    pub fn to_yaml(&self) -> String {
        let mut s = format!(
            "slug: {}\ntier: {}\njurisdiction: {}\nintelligence: {}\nbase_versions:\n",
            self.slug, self.tier, self.jurisdiction, self.intelligence
        );
        for base in BASES {
            if let Some(v) = self.base_versions.get(base) {
                s.push_str(&format!("  {base}: {v}\n"));
            }
        }
        if let Some(c) = &self.cluster {
            s.push_str(&format!("cluster: {c}\n"));
        }
        s
    }
}

/// Checks one entry's text; `stem` is the file name without `.yaml`. Returns the entry if it
/// is valid, and every problem found.
pub fn check_entry(file: &Path, stem: &str, text: &str) -> (Option<Entry>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut p = |field: &str, message: String| {
        problems.push(Problem {
            file: file.to_path_buf(),
            field: field.to_string(),
            message,
        })
    };
    let value: Value = match serde_yaml_ng::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            p(".", format!("not valid YAML ({e})"));
            return (None, problems);
        }
    };
    let Some(map) = value.as_mapping() else {
        p(
            ".",
            "must be a mapping with slug, tier, jurisdiction, intelligence, base_versions".into(),
        );
        return (None, problems);
    };
    let known = [
        "slug",
        "tier",
        "jurisdiction",
        "intelligence",
        "base_versions",
        "cluster",
    ];
    for k in map.keys() {
        let name = k.as_str().unwrap_or("?");
        if !known.contains(&name) {
            p(
                name,
                format!("unknown field; expected one of {}", known.join(", ")),
            );
        }
    }
    let get = |k: &str| map.get(Value::String(k.to_string()));
    let slug = match get("slug").map(|v| v.as_str()) {
        None => {
            p("slug", "missing".into());
            None
        }
        Some(None) => {
            p("slug", "must be a string".into());
            None
        }
        Some(Some(s)) => match Slug::parse(s) {
            Ok(slug) if slug.as_str() == stem => Some(slug),
            Ok(_) => {
                p(
                    "slug",
                    format!("is `{s}` but the file is {stem}.yaml; they must be equal"),
                );
                None
            }
            Err(e) => {
                p("slug", e.to_string());
                None
            }
        },
    };
    let tier = match get("tier").map(|v| v.as_str()) {
        None => {
            p("tier", "missing (core, mesh or fleet)".into());
            None
        }
        Some(t) => match t.unwrap_or("").parse::<Tier>() {
            Ok(t) => Some(t),
            Err(e) => {
                p("tier", e.to_string());
                None
            }
        },
    };
    let jurisdiction = match get("jurisdiction").map(|v| v.as_str()) {
        None => {
            p(
                "jurisdiction",
                "missing (an ISO 3166-1 alpha-2 code such as BE)".into(),
            );
            None
        }
        Some(Some(j)) if is_iso3166_alpha2(j) => Some(j.to_string()),
        Some(j) => {
            p(
                "jurisdiction",
                format!(
                    "`{}` is not an ISO 3166-1 alpha-2 code (two capital letters, e.g. BE, DE, NL)",
                    j.unwrap_or("?")
                ),
            );
            None
        }
    };
    let intelligence = match get("intelligence") {
        None => {
            p("intelligence", "missing (true or false)".into());
            None
        }
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            p("intelligence", "must be true or false".into());
            None
        }
    };
    let mut base_versions = BTreeMap::new();
    match get("base_versions") {
        None => p("base_versions", "missing".into()),
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                let name = k.as_str().unwrap_or("?").to_string();
                let field = format!("base_versions.{name}");
                if !BASES.contains(&name.as_str()) {
                    p(
                        &field,
                        format!("unknown base; expected {}", BASES.join(", ")),
                    );
                    continue;
                }
                match v.as_str() {
                    Some(tag) if is_semver_tag(tag) => {
                        base_versions.insert(name, tag.to_string());
                    }
                    _ => p(
                        &field,
                        format!(
                            "`{}` is not a semver tag like v1.4.2",
                            serde_yaml_ng::to_string(v).unwrap_or_default().trim()
                        ),
                    ),
                }
            }
        }
        Some(_) => p(
            "base_versions",
            "must be a mapping of base name to tag".into(),
        ),
    }
    let has = |b: &str| {
        get("base_versions")
            .and_then(Value::as_mapping)
            .is_some_and(|m| m.contains_key(Value::String(b.to_string())))
    };
    if get("base_versions").is_some() {
        if !has("core-base") {
            p(
                "base_versions.core-base",
                "missing: every customer runs core-base".into(),
            );
        }
        if let Some(t) = tier {
            let wants_mesh = matches!(t, Tier::Mesh | Tier::Fleet);
            if wants_mesh && !has("mesh-base") {
                p(
                    "base_versions.mesh-base",
                    format!("missing: required for the {t} tier"),
                );
            }
            if !wants_mesh && has("mesh-base") {
                p(
                    "base_versions.mesh-base",
                    "only mesh and fleet customers run mesh-base".into(),
                );
            }
        }
        if let Some(i) = intelligence {
            if i && !has("intelligence-base") {
                p(
                    "base_versions.intelligence-base",
                    "missing: required when intelligence is true".into(),
                );
            }
            if !i && has("intelligence-base") {
                p(
                    "base_versions.intelligence-base",
                    "present but intelligence is false; remove it or set intelligence: true".into(),
                );
            }
        }
    }
    // Core tenants share their cluster's sub-CA; mesh and fleet customers run their own.
    let cluster = match (tier, get("cluster")) {
        (Some(Tier::Core), None) => {
            p(
                "cluster",
                "missing: a core tenant names the Core cluster whose shared sub-CA holds its ACME provisioner (`kiwictl provisioner add`)".into(),
            );
            None
        }
        (Some(Tier::Core), Some(v)) => match v.as_str().map(Slug::parse) {
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                p("cluster", e.to_string());
                None
            }
            None => {
                p("cluster", "must be a string (the cluster's slug)".into());
                None
            }
        },
        (Some(t), Some(_)) => {
            p(
                "cluster",
                format!("only core tenants share a cluster's sub-CA; a {t} customer runs its own intermediate CA (`kiwictl intermediate request`): remove it"),
            );
            None
        }
        (_, None) | (None, _) => None,
    };
    let entry = match (slug, tier, jurisdiction, intelligence) {
        (Some(slug), Some(tier), Some(jurisdiction), Some(intelligence)) if problems.is_empty() => {
            Some(Entry {
                slug,
                tier,
                jurisdiction,
                intelligence,
                base_versions,
                cluster,
            })
        }
        _ => None,
    };
    (entry, problems)
}

/// The result of validating a whole registry.
#[derive(Debug, Default)]
pub struct Report {
    /// Valid entries, by slug.
    pub entries: BTreeMap<String, Entry>,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

/// Validates every `customers/*.yaml` (and flags `*.yml` and other stray files) under `dir`.
pub fn validate(dir: &Path) -> std::io::Result<Report> {
    let customers = dir.join(CUSTOMERS);
    let mut report = Report::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&customers)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') || file.is_dir() {
            continue;
        }
        let Some(stem) = name.strip_suffix(".yaml") else {
            report.problems.push(Problem {
                file: file.clone(),
                field: ".".into(),
                message: "registry entries are named <slug>.yaml; rename or remove this file"
                    .into(),
            });
            continue;
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                report.problems.push(Problem {
                    file: file.clone(),
                    field: ".".into(),
                    message: format!("cannot read ({e})"),
                });
                continue;
            }
        };
        let (entry, problems) = check_entry(&file, stem, &text);
        report.problems.extend(problems);
        // A duplicate is judged on the slug the file declares, whatever else is wrong with it.
        let declared = serde_yaml_ng::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("slug").and_then(Value::as_str).map(str::to_string));
        if let Some(slug) = declared {
            if let Some(first) = seen.get(&slug) {
                report.problems.push(Problem {
                    file: file.clone(),
                    field: "slug".into(),
                    message: format!(
                        "duplicate slug `{slug}`, already used by {}",
                        first.display()
                    ),
                });
            } else {
                seen.insert(slug, file.clone());
            }
        }
        if let Some(e) = entry {
            report.entries.insert(e.slug.to_string(), e);
        }
    }
    Ok(report)
}

/// Why `add` refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddError {
    /// The new entry itself is invalid.
    #[error("the new entry is invalid:\n{}", list(.0))]
    Invalid(Vec<Problem>),
    /// The registry already has problems; fix them first.
    #[error("the registry has problems; fix them before adding (kiwictl registry validate):\n{}", list(.0))]
    RegistryInvalid(Vec<Problem>),
    /// The customer exists.
    #[error(
        "{0} already exists; a customer is added once (edit the file by pull request instead)"
    )]
    Exists(PathBuf),
    /// Writing failed.
    #[error("{0}")]
    Write(#[from] kiwi_signer::Error),
    /// Reading the registry failed.
    #[error("cannot read {path}: {error}; is this the platform repo?")]
    Read {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
}

fn list(p: &[Problem]) -> String {
    p.iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes `customers/<slug>.yaml` for `entry` after checking it and the registry it joins.
pub fn add(dir: &Path, entry: &Entry) -> Result<PathBuf, AddError> {
    let customers = dir.join(CUSTOMERS);
    let path = customers.join(format!("{}.yaml", entry.slug));
    let text = entry.to_yaml();
    let (_, problems) = check_entry(&path, entry.slug.as_str(), &text);
    if !problems.is_empty() {
        return Err(AddError::Invalid(problems));
    }
    if path.exists() {
        return Err(AddError::Exists(path));
    }
    if customers.exists() {
        let report = validate(dir).map_err(|error| AddError::Read {
            path: customers.clone(),
            error,
        })?;
        if !report.problems.is_empty() {
            return Err(AddError::RegistryInvalid(report.problems));
        }
    } else {
        std::fs::create_dir_all(&customers).map_err(|error| AddError::Read {
            path: customers.clone(),
            error,
        })?;
    }
    kiwi_signer::fsutil::write_new(&path, text.as_bytes(), kiwi_signer::fsutil::Mode::Public)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(stem: &str, text: &str) -> Vec<String> {
        check_entry(Path::new("customers/x.yaml"), stem, text)
            .1
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect()
    }

    const ACME: &str = "slug: acme\ntier: mesh\njurisdiction: BE\nintelligence: true\nbase_versions:\n  core-base: v1.4.2\n  mesh-base: v0.7.1\n  intelligence-base: v0.3.0\n";

    #[test]
    fn the_seed_example_is_valid_and_round_trips() {
        let (entry, problems) = check_entry(Path::new("acme.yaml"), "acme", ACME);
        assert!(problems.is_empty(), "{problems:?}");
        let entry = entry.expect("valid");
        assert_eq!(entry.to_yaml(), ACME);
    }

    #[test]
    fn core_tenants_name_their_cluster_and_only_they_do() {
        let core = "slug: globex\ntier: core\njurisdiction: NL\nintelligence: false\nbase_versions:\n  core-base: v1.4.2\ncluster: core-eu1\n";
        let (entry, problems) = check_entry(Path::new("globex.yaml"), "globex", core);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(entry.expect("valid").to_yaml(), core);
        let missing = check("globex", &core.replace("cluster: core-eu1\n", ""));
        assert!(
            missing.len() == 1 && missing[0].starts_with("cluster: missing"),
            "{missing:?}"
        );
        let mesh = format!("{ACME}cluster: core-eu1\n");
        let refused = check("acme", &mesh);
        assert!(
            refused.len() == 1 && refused[0].contains("own intermediate CA"),
            "{refused:?}"
        );
        let bad = check("globex", &core.replace("core-eu1", "Core EU"));
        assert!(bad.len() == 1 && bad[0].starts_with("cluster: "), "{bad:?}");
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let text = "slug: Acme\ntier: gold\njurisdiction: EU\nintelligence: yes please\ncolour: red\nbase_versions:\n  core-base: 1.4\n  mesh-base: v0.7.1\n  intelligence-base: v0.3.0\n";
        let problems = check("acme", text);
        let fields: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap_or(""))
            .collect();
        for f in [
            "colour",
            "slug",
            "tier",
            "jurisdiction",
            "intelligence",
            "base_versions.core-base",
        ] {
            assert!(fields.contains(&f), "no problem for {f}: {problems:#?}");
        }
    }

    #[test]
    fn tier_and_intelligence_rules() {
        let core_with_mesh = "slug: x\ntier: core\ncluster: c1\njurisdiction: DE\nintelligence: false\nbase_versions:\n  core-base: v1.0.0\n  mesh-base: v1.0.0\n";
        assert_eq!(check("x", core_with_mesh).len(), 1);
        let fleet_without_mesh = "slug: x\ntier: fleet\njurisdiction: DE\nintelligence: false\nbase_versions:\n  core-base: v1.0.0\n";
        assert!(check("x", fleet_without_mesh)[0].contains("mesh-base: missing"));
        let intel_missing = "slug: x\ntier: core\ncluster: c1\njurisdiction: DE\nintelligence: true\nbase_versions:\n  core-base: v1.0.0\n";
        assert!(check("x", intel_missing)[0].contains("intelligence-base"));
        let intel_extra = "slug: x\ntier: core\ncluster: c1\njurisdiction: DE\nintelligence: false\nbase_versions:\n  core-base: v1.0.0\n  intelligence-base: v1.0.0\n";
        assert!(check("x", intel_extra)[0].contains("intelligence is false"));
        assert!(check("y", "slug: x\ntier: core\ncluster: c1\njurisdiction: DE\nintelligence: false\nbase_versions:\n  core-base: v1.0.0\n")[0].contains("the file is y.yaml"));
    }

    #[test]
    fn semver_tags_and_country_codes() {
        for ok in [
            "v1.4.2",
            "v0.0.0",
            "v10.20.30",
            "v1.0.0-rc.1",
            "v1.0.0+build.5",
            "v1.0.0-alpha-1",
        ] {
            assert!(is_semver_tag(ok), "{ok}");
        }
        for bad in [
            "1.4.2",
            "v1.4",
            "v01.0.0",
            "v1.0.0-",
            "v1.0.0-01",
            "va.b.c",
            "v1.0.0+",
            "",
        ] {
            assert!(!is_semver_tag(bad), "{bad}");
        }
        for ok in ["BE", "DE", "NL", "US", "GB"] {
            assert!(is_iso3166_alpha2(ok), "{ok}");
        }
        for bad in ["EU", "UK", "be", "BEL", "", "#"] {
            assert!(!is_iso3166_alpha2(bad), "{bad}");
        }
    }

    #[test]
    fn validate_finds_duplicates_and_stray_files_and_add_refuses_into_a_broken_registry() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let c = tmp.path().join(CUSTOMERS);
        std::fs::create_dir(&c).expect("mkdir");
        std::fs::write(c.join("acme.yaml"), ACME).expect("write");
        let entry = Entry {
            slug: Slug::parse("globex").expect("slug"),
            tier: Tier::Core,
            jurisdiction: "NL".into(),
            intelligence: false,
            base_versions: [("core-base".to_string(), "v1.4.2".to_string())].into(),
            cluster: Some(Slug::parse("core-eu1").expect("slug")),
        };
        let path = add(tmp.path(), &entry).expect("add");
        assert!(path.ends_with("customers/globex.yaml"));
        assert!(matches!(add(tmp.path(), &entry), Err(AddError::Exists(_))));
        let report = validate(tmp.path()).expect("validate");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.entries.len(), 2);

        std::fs::write(c.join("acme2.yaml"), ACME).expect("write");
        std::fs::write(c.join("notes.yml"), "x").expect("write");
        let report = validate(tmp.path()).expect("validate");
        let msgs: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert!(
            msgs.iter().any(|m| m.contains("duplicate slug `acme`")),
            "{msgs:#?}"
        );
        assert!(msgs.iter().any(|m| m.contains("notes.yml")), "{msgs:#?}");
        let other = Entry {
            slug: Slug::parse("initech").expect("slug"),
            ..entry
        };
        assert!(matches!(
            add(tmp.path(), &other),
            Err(AddError::RegistryInvalid(_))
        ));
        assert!(!c.join("initech.yaml").exists());
    }
}
