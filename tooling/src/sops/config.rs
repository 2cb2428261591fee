//! `.sops.yaml` creation rules: the nearest config file above a file, and the first rule whose
//! `path_regex` matches the file's path relative to the config's directory (as sops does).

use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;

use super::agekeys::AgeRecipient;
use super::engine::KeySpec;
use super::error::{Result, SopsError};
use super::metadata::Rules;

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    creation_rules: Option<Vec<RawRule>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StrOrList {
    Str(String),
    List(Vec<String>),
}

impl StrOrList {
    fn recipients(&self) -> Result<Vec<AgeRecipient>> {
        match self {
            StrOrList::Str(s) => AgeRecipient::parse_list(s),
            StrOrList::List(l) => l
                .iter()
                .map(|s| AgeRecipient::parse_list(s))
                .collect::<Result<Vec<_>>>()
                .map(|v| v.concat()),
        }
    }
}

#[derive(Deserialize)]
struct RawGroup {
    #[serde(default)]
    age: Option<StrOrList>,
}

#[derive(Deserialize)]
struct RawRule {
    path_regex: Option<String>,
    age: Option<StrOrList>,
    #[serde(default)]
    key_groups: Vec<RawGroup>,
    #[serde(default)]
    shamir_threshold: usize,
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<String>,
    encrypted_regex: Option<String>,
    #[serde(default)]
    mac_only_encrypted: bool,
}

/// One validated creation rule.
#[derive(Debug, Clone)]
pub struct CreationRule {
    /// Its position in `creation_rules` (for messages: `creation_rules[N]`).
    pub index: usize,
    path_regex: Option<Regex>,
    /// Recipients and Shamir threshold.
    pub keys: KeySpec,
    /// Partial-encryption rule.
    pub rules: Rules,
}

/// A parsed `.sops.yaml`.
#[derive(Debug, Clone)]
pub struct SopsConfig {
    /// The file.
    pub path: PathBuf,
    dir: PathBuf,
    rules: Vec<CreationRule>,
}

/// Finds the nearest `.sops.yaml` (or `.sops.yml`) in `start` or above (`start` need not
/// exist: a `--filename-override` name is looked up from where it would be).
pub fn find_config(start: &Path) -> Option<PathBuf> {
    let start = std::fs::canonicalize(start)
        .or_else(|_| std::path::absolute(start))
        .ok()?;
    start.ancestors().find_map(|d| {
        [".sops.yaml", ".sops.yml"]
            .iter()
            .map(|n| d.join(n))
            .find(|p| p.is_file())
    })
}

impl SopsConfig {
    /// Loads and validates a config file.
    pub fn load(path: &Path) -> Result<SopsConfig> {
        let io = |source| SopsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(io)?;
        let dir = std::fs::canonicalize(path.parent().unwrap_or(Path::new("."))).map_err(io)?;
        SopsConfig::parse(path, dir, &text)
    }

    /// Validates the config `text` of the file `path` (named in messages), whose rules match
    /// paths relative to `dir`.
    pub fn parse(path: &Path, dir: PathBuf, text: &str) -> Result<SopsConfig> {
        let cfg_err = |detail: String| SopsError::Config {
            path: path.to_path_buf(),
            detail,
        };
        let raw: RawConfig =
            serde_yaml_ng::from_str(text).map_err(|e| cfg_err(format!("{e}; fix the YAML")))?;
        let mut rules = Vec::new();
        for (i, r) in raw
            .creation_rules
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let at = |d: String| cfg_err(format!("creation_rules[{i}]: {d}"));
            let path_regex = r
                .path_regex
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|p| Regex::new(p).map_err(|e| at(format!("path_regex: {e}"))))
                .transpose()?;
            let groups = if !r.key_groups.is_empty() {
                r.key_groups
                    .iter()
                    .map(|g| {
                        g.age
                            .as_ref()
                            .map(StrOrList::recipients)
                            .unwrap_or(Ok(vec![]))
                    })
                    .collect::<Result<Vec<_>>>()
                    .map_err(|e| at(e.to_string()))?
            } else {
                vec![r
                    .age
                    .as_ref()
                    .map(StrOrList::recipients)
                    .unwrap_or(Ok(vec![]))
                    .map_err(|e| at(e.to_string()))?]
            };
            let rules_ = Rules {
                unencrypted_suffix: r.unencrypted_suffix,
                encrypted_suffix: r.encrypted_suffix,
                unencrypted_regex: r.unencrypted_regex,
                encrypted_regex: r.encrypted_regex,
                mac_only_encrypted: r.mac_only_encrypted,
            };
            rules_.validate().map_err(|e| at(e.to_string()))?;
            rules.push(CreationRule {
                index: i,
                path_regex,
                keys: KeySpec {
                    groups,
                    threshold: r.shamir_threshold,
                },
                rules: rules_,
            });
        }
        Ok(SopsConfig {
            path: path.to_path_buf(),
            dir,
            rules,
        })
    }

    /// The first rule matching `file`.
    pub fn rule_for(&self, file: &Path) -> Result<&CreationRule> {
        let abs = std::fs::canonicalize(file)
            .or_else(|_| std::path::absolute(file))
            .map_err(|source| SopsError::Io {
                path: file.to_path_buf(),
                source,
            })?;
        let rel = abs
            .strip_prefix(&self.dir)
            .unwrap_or(&abs)
            .to_string_lossy()
            .to_string();
        self.rule_for_relative(&rel)
            .ok_or_else(|| SopsError::Config {
                path: self.path.clone(),
                detail: format!("no creation rule matches `{rel}`; add one or pass --age"),
            })
    }

    /// Every creation rule, in order.
    pub fn rules(&self) -> &[CreationRule] {
        &self.rules
    }

    /// The first rule matching `rel`, a path relative to the config's directory.
    pub fn rule_for_relative(&self, rel: &str) -> Option<&CreationRule> {
        self.rules
            .iter()
            .find(|r| r.path_regex.as_ref().is_none_or(|re| re.is_match(rel)))
    }
}

/// Why a file must hold SOPS metadata: its name says it is a SOPS file (`x.sops.yaml`), or a
/// creation rule of the nearest `.sops.yaml` covers it. `None` for any other file (and for
/// `.sops.yaml` itself).
pub fn must_be_encrypted(file: &Path) -> Result<Option<String>> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    if name.starts_with(".sops.y") {
        return Ok(None);
    }
    if name.contains(".sops.") {
        return Ok(Some("its name says it is a SOPS file (`.sops.`)".into()));
    }
    let Some(cfg) = find_config(parent_of(file)) else {
        return Ok(None);
    };
    let cfg = SopsConfig::load(&cfg)?;
    let abs = std::fs::canonicalize(file).map_err(|source| SopsError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    let rel = abs.strip_prefix(&cfg.dir).unwrap_or(&abs).to_string_lossy();
    Ok(cfg.rule_for_relative(&rel).map(|r| {
        format!(
            "creation_rules[{}] of {} covers it",
            r.index,
            cfg.path.display()
        )
    }))
}

fn parent_of(file: &Path) -> &Path {
    file.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The creation rule for `file` from the nearest `.sops.yaml` above it.
pub fn rule_for_file(file: &Path) -> Result<Option<CreationRule>> {
    rule_for_file_in(config_near(file).as_deref(), file)
}

/// The nearest `.sops.yaml` above `file` (kiwictl's own lookup; sops starts from the working
/// directory instead).
pub fn config_near(file: &Path) -> Option<PathBuf> {
    find_config(parent_of(file))
}

/// The creation rule for `file` from the config file `config` (none: no rule). The sops front
/// passes `--config`/`SOPS_CONFIG`, or the nearest `.sops.yaml` above the working directory, as
/// sops 3.x does.
pub fn rule_for_file_in(config: Option<&Path>, file: &Path) -> Result<Option<CreationRule>> {
    match config {
        None => Ok(None),
        Some(p) => Ok(Some(SopsConfig::load(p)?.rule_for(file)?.clone())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn first_matching_rule_wins() {
        let d = tempfile::tempdir().unwrap();
        let r = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        std::fs::write(
            d.path().join(".sops.yaml"),
            format!("creation_rules:\n  - path_regex: secrets/.*\\.yaml$\n    encrypted_regex: ^data$\n    age: {r}\n  - age: '{r},{r}'\n"),
        )
        .unwrap();
        std::fs::create_dir(d.path().join("secrets")).unwrap();
        let f = d.path().join("secrets/a.yaml");
        std::fs::write(&f, "a: 1\n").unwrap();
        let rule = rule_for_file(&f).unwrap().unwrap();
        assert_eq!(rule.rules.encrypted_regex.as_deref(), Some("^data$"));
        let g = d.path().join("other.yaml");
        std::fs::write(&g, "a: 1\n").unwrap();
        assert_eq!(rule_for_file(&g).unwrap().unwrap().keys.groups[0].len(), 2);
    }
}
