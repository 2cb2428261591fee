//! The `sops` metadata block: who can unwrap the data key (age stanzas, Shamir key groups), the
//! encrypted MAC, `lastmodified`, the partial-encryption rule in force and the format version.
//!
//! Every format stores the same tree (nested in YAML/JSON, flattened in dotenv), so parsing goes
//! through the small ordered [`MVal`] tree that each format produces and consumes.

use regex::Regex;

use super::error::{Result, SopsError};

/// The sops version we write into `version`: the format revision this engine implements.
pub const SOPS_FORMAT_VERSION: &str = "3.11.0";

/// A small ordered value tree: what a metadata block is made of.
#[derive(Debug, Clone, PartialEq)]
pub enum MVal {
    /// A string (or any scalar, as text).
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A list.
    List(Vec<MVal>),
    /// A mapping, in order.
    Map(Vec<(String, MVal)>),
}

impl MVal {
    fn get<'a>(&'a self, key: &str) -> Option<&'a MVal> {
        match self {
            MVal::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(crate) fn as_text(&self) -> Option<String> {
        match self {
            MVal::Str(s) => Some(s.clone()),
            MVal::Int(i) => Some(i.to_string()),
            MVal::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// Which values a file encrypts: at most one of the four sops rules, plus `mac_only_encrypted`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// Keys ending with this stay plain (sops' default `_unencrypted`).
    pub unencrypted_suffix: Option<String>,
    /// Only keys ending with this are encrypted.
    pub encrypted_suffix: Option<String>,
    /// Keys matching this stay plain.
    pub unencrypted_regex: Option<String>,
    /// Only keys matching this are encrypted.
    pub encrypted_regex: Option<String>,
    /// The MAC covers only the encrypted values.
    pub mac_only_encrypted: bool,
}

impl Rules {
    /// sops' default when no rule is given: `unencrypted_suffix: _unencrypted`.
    pub fn with_default(mut self) -> Rules {
        if self.unencrypted_suffix.is_none()
            && self.encrypted_suffix.is_none()
            && self.unencrypted_regex.is_none()
            && self.encrypted_regex.is_none()
        {
            self.unencrypted_suffix = Some("_unencrypted".to_string());
        }
        self
    }

    /// Rejects more than one rule, as sops does.
    pub fn validate(&self) -> Result<()> {
        let n = [
            &self.unencrypted_suffix,
            &self.encrypted_suffix,
            &self.unencrypted_regex,
            &self.encrypted_regex,
        ]
        .iter()
        .filter(|r| r.is_some())
        .count();
        if n > 1 {
            return Err(SopsError::Metadata(
                "more than one of unencrypted_suffix, encrypted_suffix, unencrypted_regex, encrypted_regex is set"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Compiles the rule into a matcher.
    pub fn compile(&self) -> Result<Matcher> {
        let re = |r: &Option<String>| -> Result<Option<Regex>> {
            r.as_ref()
                .map(|p| {
                    Regex::new(p).map_err(|e| SopsError::BadRegex {
                        regex: p.clone(),
                        detail: e.to_string(),
                    })
                })
                .transpose()
        };
        Ok(Matcher {
            unencrypted_suffix: self.unencrypted_suffix.clone(),
            encrypted_suffix: self.encrypted_suffix.clone(),
            unencrypted_regex: re(&self.unencrypted_regex)?,
            encrypted_regex: re(&self.encrypted_regex)?,
        })
    }
}

/// A compiled [`Rules`]: decides per key path whether a value is encrypted (sops `shouldBeEncrypted`).
#[derive(Debug, Clone)]
pub struct Matcher {
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<Regex>,
    encrypted_regex: Option<Regex>,
}

impl Matcher {
    /// Whether the value (or comment) at `path` is encrypted.
    pub fn encrypts(&self, path: &[String]) -> bool {
        let mut enc = true;
        if let Some(s) = self.unencrypted_suffix.as_deref().filter(|s| !s.is_empty()) {
            if path.iter().any(|p| p.ends_with(s)) {
                enc = false;
            }
        }
        if let Some(s) = self.encrypted_suffix.as_deref().filter(|s| !s.is_empty()) {
            enc = path.iter().any(|p| p.ends_with(s));
        }
        if let Some(r) = &self.unencrypted_regex {
            if path.iter().any(|p| r.is_match(p)) {
                enc = false;
            }
        }
        if let Some(r) = &self.encrypted_regex {
            enc = path.iter().any(|p| r.is_match(p));
        }
        enc
    }
}

/// One age recipient and its wrapped copy of the data key (or Shamir share).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgeStanza {
    /// `age1…` recipient.
    pub recipient: String,
    /// Armored age file.
    pub enc: String,
}

/// A key group: every member wraps the same data key (or the same share).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyGroup {
    /// age members.
    pub age: Vec<AgeStanza>,
    /// Names of non-age master-key types present (pgp, kms, …); kiwictl keeps out of such files.
    pub foreign: Vec<String>,
}

/// The parsed metadata block.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// Key groups; one group means no Shamir.
    pub key_groups: Vec<KeyGroup>,
    /// Shares needed with more than one group.
    pub shamir_threshold: usize,
    /// RFC 3339 time of the last change; also the AAD of the MAC.
    pub lastmodified: String,
    /// The encrypted MAC (`ENC[...]`); empty when the file has none.
    pub mac: String,
    /// The partial-encryption rule.
    pub rules: Rules,
    /// Format version.
    pub version: String,
}

const FOREIGN: [&str; 6] = ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms"];

fn parse_group(v: &MVal, allow_missing_age: bool) -> Result<KeyGroup> {
    let mut g = KeyGroup::default();
    match v.get("age") {
        Some(MVal::List(items)) => {
            for it in items {
                let field = |k: &str| {
                    it.get(k)
                        .and_then(MVal::as_text)
                        .ok_or_else(|| SopsError::Metadata(format!("an age entry has no `{k}`")))
                };
                g.age.push(AgeStanza {
                    recipient: field("recipient")?,
                    enc: field("enc")?,
                });
            }
        }
        Some(MVal::Str(s)) if s.is_empty() => {}
        None => {
            if !allow_missing_age {
                return Err(SopsError::Metadata("key group without keys".into()));
            }
        }
        Some(_) => return Err(SopsError::Metadata("`age` is not a list".into())),
    }
    for f in FOREIGN {
        if let Some(MVal::List(l)) = v.get(f) {
            if !l.is_empty() {
                g.foreign.push(f.to_string());
            }
        }
    }
    Ok(g)
}

impl Metadata {
    /// Parses the `sops` block.
    pub fn from_mval(v: &MVal) -> Result<Metadata> {
        let text = |k: &str| v.get(k).and_then(MVal::as_text);
        let version = text("version")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| SopsError::Metadata("no `version`".into()))?;
        let lastmodified =
            text("lastmodified").ok_or_else(|| SopsError::Metadata("no `lastmodified`".into()))?;
        // A missing MAC is refused when the file is opened ([`SopsError::MacMissing`]) unless
        // the MAC is ignored, as sops does.
        let mac = text("mac").unwrap_or_default();
        for unsupported in ["unencrypted_comment_regex", "encrypted_comment_regex"] {
            if text(unsupported).is_some_and(|s| !s.is_empty()) {
                return Err(SopsError::Metadata(format!(
                    "`{unsupported}` is not supported by kiwictl; use sops for this file"
                )));
            }
        }
        let nonempty = |k: &str| text(k).filter(|s| !s.is_empty());
        let rules = Rules {
            unencrypted_suffix: nonempty("unencrypted_suffix"),
            encrypted_suffix: nonempty("encrypted_suffix"),
            unencrypted_regex: nonempty("unencrypted_regex"),
            encrypted_regex: nonempty("encrypted_regex"),
            mac_only_encrypted: matches!(v.get("mac_only_encrypted"), Some(MVal::Bool(true)))
                || text("mac_only_encrypted").as_deref() == Some("true"),
        };
        let key_groups = match v.get("key_groups") {
            Some(MVal::List(gs)) if !gs.is_empty() => gs
                .iter()
                .map(|g| parse_group(g, true))
                .collect::<Result<Vec<_>>>()?,
            _ => vec![parse_group(v, true)?],
        };
        let shamir_threshold = match text("shamir_threshold") {
            Some(t) => t
                .parse::<usize>()
                .map_err(|_| SopsError::Metadata("`shamir_threshold` is not a number".into()))?,
            None => 0,
        };
        if key_groups
            .iter()
            .all(|g| g.age.is_empty() && g.foreign.is_empty())
        {
            return Err(SopsError::Metadata("no master keys".into()));
        }
        Ok(Metadata {
            key_groups,
            shamir_threshold,
            lastmodified,
            mac,
            rules,
            version,
        })
    }

    /// The threshold actually in force (all groups when unset).
    pub fn threshold(&self) -> usize {
        if self.key_groups.len() <= 1 {
            1
        } else if self.shamir_threshold == 0 {
            self.key_groups.len()
        } else {
            self.shamir_threshold
        }
    }

    /// Every age recipient, in order.
    pub fn recipients(&self) -> Vec<String> {
        self.key_groups
            .iter()
            .flat_map(|g| g.age.iter().map(|a| a.recipient.clone()))
            .collect()
    }

    /// Non-age key types present anywhere.
    pub fn foreign(&self) -> Vec<String> {
        let mut f: Vec<String> = self
            .key_groups
            .iter()
            .flat_map(|g| g.foreign.clone())
            .collect();
        f.sort();
        f.dedup();
        f
    }

    /// The block as an ordered tree, fields in the order sops writes them.
    pub fn to_mval(&self) -> MVal {
        let ages = |g: &KeyGroup| {
            MVal::List(
                g.age
                    .iter()
                    .map(|a| {
                        MVal::Map(vec![
                            ("recipient".into(), MVal::Str(a.recipient.clone())),
                            ("enc".into(), MVal::Str(a.enc.clone())),
                        ])
                    })
                    .collect(),
            )
        };
        let mut m: Vec<(String, MVal)> = Vec::new();
        if self.key_groups.len() > 1 {
            m.push((
                "shamir_threshold".into(),
                MVal::Int(self.threshold() as i64),
            ));
            m.push((
                "key_groups".into(),
                MVal::List(
                    self.key_groups
                        .iter()
                        .map(|g| MVal::Map(vec![("age".into(), ages(g))]))
                        .collect(),
                ),
            ));
        } else if let Some(g) = self.key_groups.first() {
            m.push(("age".into(), ages(g)));
        }
        m.push(("lastmodified".into(), MVal::Str(self.lastmodified.clone())));
        m.push(("mac".into(), MVal::Str(self.mac.clone())));
        let r = &self.rules;
        for (k, v) in [
            ("unencrypted_suffix", &r.unencrypted_suffix),
            ("encrypted_suffix", &r.encrypted_suffix),
            ("unencrypted_regex", &r.unencrypted_regex),
            ("encrypted_regex", &r.encrypted_regex),
        ] {
            if let Some(v) = v {
                m.push((k.into(), MVal::Str(v.clone())));
            }
        }
        if r.mac_only_encrypted {
            m.push(("mac_only_encrypted".into(), MVal::Bool(true)));
        }
        m.push(("version".into(), MVal::Str(self.version.clone())));
        MVal::Map(m)
    }
}

/// Go `time.Now().UTC().Format(time.RFC3339)`.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rules_match_sops() {
        let m = Rules::default().with_default().compile().unwrap();
        assert!(m.encrypts(&p(&["a", "b"])));
        assert!(!m.encrypts(&p(&["a_unencrypted", "b"])));
        let m = Rules {
            encrypted_regex: Some("^(data|stringData)$".into()),
            ..Rules::default()
        }
        .compile()
        .unwrap();
        assert!(m.encrypts(&p(&["data", "x"])));
        assert!(!m.encrypts(&p(&["metadata", "name"])));
        assert!(!m.encrypts(&[]));
        let m = Rules {
            encrypted_suffix: Some("_secret".into()),
            ..Rules::default()
        }
        .compile()
        .unwrap();
        assert!(m.encrypts(&p(&["db_secret"])));
        assert!(!m.encrypts(&p(&["db"])));
    }

    #[test]
    fn metadata_round_trips_through_mval() {
        let md = Metadata {
            key_groups: vec![KeyGroup {
                age: vec![AgeStanza {
                    recipient: "age1x".into(),
                    enc: "E\n".into(),
                }],
                foreign: vec![],
            }],
            shamir_threshold: 0,
            lastmodified: "2024-01-01T00:00:00Z".into(),
            mac: "ENC[x]".into(),
            rules: Rules::default().with_default(),
            version: SOPS_FORMAT_VERSION.into(),
        };
        assert_eq!(Metadata::from_mval(&md.to_mval()).unwrap(), md);
    }
}
