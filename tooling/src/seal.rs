//! Encrypting key material for a state repo (the intermediate key, step-ca's secrets, the
//! installed certificate): it is never on disk in plaintext, nor encrypted to anyone the repo
//! does not name.
//!
//! The recipients come from the repo's own `secrets/.sops.yaml`, never from a config found
//! above the repo, and the creation rule covering the file may name only the recipients
//! `kiwictl repo init` recorded in `.kiwi/repo.yaml`: a rule naming anyone else refuses the
//! write. The rule's partial-encryption options (`unencrypted_regex`, `encrypted_regex`, both
//! suffixes, `mac_only_encrypted`) are ignored: every value is encrypted. The encrypted bytes
//! are checked again before they are returned (every value `ENC[...]`, only recorded
//! recipients in the metadata); the caller writes them.

use std::path::{Path, PathBuf};

use crate::sops::config::SopsConfig;
use crate::sops::engine;
use crate::sops::error::SopsError;
use crate::sops::format::FileFormat;
use crate::sops::metadata::Rules;
use crate::staterepo::{RepoInfo, MARKER, PATH_REGEX, SOPS_CONFIG};

/// Why key material was not encrypted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The repo has no `secrets/.sops.yaml`.
    #[error("{0} is missing: kiwictl encrypts a state repo's key material only under the repo's own SOPS config, never one found above the repo; run `kiwictl repo init` on the repo again (same options) to write it; nothing was written")]
    NoConfig(PathBuf),
    /// `secrets/.sops.yaml` is unreadable or invalid, or encryption failed.
    #[error(transparent)]
    Sops(#[from] SopsError),
    /// No creation rule covers the file.
    #[error("{config}: no creation rule covers {file}; restore the config `kiwictl repo init` wrote (path_regex: {PATH_REGEX}); nothing was written")]
    NoRule {
        /// The config.
        config: PathBuf,
        /// The file to be written.
        file: PathBuf,
    },
    /// The creation rule names a recipient the repo does not record.
    #[error("{config}: creation_rules[{rule}] encrypts to {recipient}, which is not one of this repo's recipients recorded in {MARKER} ({recorded}); key material is never encrypted to anyone else: restore {config} from version control or with `kiwictl repo init`; nothing was written")]
    Outsider {
        /// The config.
        config: PathBuf,
        /// The rule's index in `creation_rules`.
        rule: usize,
        /// The recipient the repo does not record.
        recipient: String,
        /// The recorded recipients, comma-separated.
        recorded: String,
    },
    /// The encrypted output failed the final check.
    #[error("{file}: the encrypted output failed its final check ({detail}); nothing was written: please report this as a bug")]
    Check {
        /// The file to be written.
        file: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

/// Encrypts `plaintext`, to be written as `file` inside the state repo `repo` (whose marker is
/// `info`), under the creation rule of the repo's `secrets/.sops.yaml` that covers `file`.
pub fn seal(
    repo: &Path,
    info: &RepoInfo,
    file: &Path,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let config = repo.join(SOPS_CONFIG);
    if !config.is_file() {
        return Err(SealError::NoConfig(config));
    }
    let cfg = SopsConfig::load(&config)?;
    let no_rule = || SealError::NoRule {
        config: config.clone(),
        file: file.to_path_buf(),
    };
    let secrets_dir = config.parent().ok_or_else(no_rule)?;
    let rel = file.strip_prefix(secrets_dir).map_err(|_| no_rule())?;
    let rule = cfg
        .rule_for_relative(&rel.to_string_lossy())
        .ok_or_else(no_rule)?;
    let recorded = |r: &String| info.recipients.contains(r);
    if let Some(outsider) = rule
        .keys
        .texts()
        .concat()
        .into_iter()
        .find(|r| !recorded(r))
    {
        return Err(SealError::Outsider {
            config,
            rule: rule.index,
            recipient: outsider,
            recorded: info.recipients.join(", "),
        });
    }
    let fmt = FileFormat::from_path(file);
    let sealed = engine::encrypt(plaintext, fmt, &rule.keys, Rules::default())?;
    let check = |detail: String| SealError::Check {
        file: file.to_path_buf(),
        detail,
    };
    let shape = engine::inspect(&sealed, fmt).map_err(|e| check(e.to_string()))?;
    if let Some(path) = shape.clear.first() {
        return Err(check(format!("the value at `{path}` is not encrypted")));
    }
    if let Some(r) = shape.meta.recipients().iter().find(|r| !recorded(r)) {
        return Err(check(format!("it is encrypted to {r}")));
    }
    Ok(sealed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;
    use kiwi_signer::slug::{Slug, Tier};
    use kiwi_signer::words::Fingerprint;

    const OP: &str = "age1mqjwg52nzvxdkml0k3908q8fcqwqrv5h2gh8y45dkjqaalaqzv8snne4qv";
    const OUTSIDER: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    const SECRET: &str =
        "key: |\n    -----BEGIN PRIVATE KEY-----\n    AAAA\n    -----END PRIVATE KEY-----\n";

    fn repo() -> (tempfile::TempDir, RepoInfo, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let slug = Slug::parse("acme").unwrap();
        let root = Fingerprint::of(b"root");
        crate::staterepo::init(d.path(), &slug, Tier::Core, OP, None, &root).unwrap();
        let info = crate::staterepo::open(d.path()).unwrap();
        let file = d.path().join("secrets/intermediate.key.sops.yaml");
        (d, info, file)
    }

    fn config(d: &Path, rule: &str) {
        std::fs::write(
            d.join(SOPS_CONFIG),
            format!("creation_rules:\n  - path_regex: \\.sops\\.yaml$\n{rule}"),
        )
        .unwrap();
    }

    #[test]
    fn every_value_is_encrypted_whatever_the_rule_says() {
        let (d, info, file) = repo();
        for partial in [
            "    unencrypted_regex: ^key$\n",
            "    encrypted_regex: ^nothing$\n",
            "    unencrypted_suffix: key\n",
            "    encrypted_suffix: nothing\n",
            "    mac_only_encrypted: true\n",
        ] {
            config(d.path(), &format!("{partial}    age: {OP}\n"));
            let out = seal(d.path(), &info, &file, SECRET.as_bytes()).unwrap();
            let text = String::from_utf8(out.clone()).unwrap();
            assert!(!text.contains("PRIVATE KEY"), "{partial}: {text}");
            let shape = engine::inspect(&out, FileFormat::Yaml).unwrap();
            assert!(shape.clear.is_empty(), "{partial}: {:?}", shape.clear);
            assert!(!shape.meta.rules.mac_only_encrypted);
        }
    }

    #[test]
    fn refuses_outsiders_a_missing_config_and_an_uncovered_file() {
        let (d, info, file) = repo();
        config(d.path(), &format!("    age: {OP},{OUTSIDER}\n"));
        let e = seal(d.path(), &info, &file, SECRET.as_bytes()).unwrap_err();
        assert!(
            matches!(&e, SealError::Outsider { rule: 0, recipient, .. } if recipient == OUTSIDER),
            "{e}"
        );
        assert!(e.to_string().contains("creation_rules[0]"), "{e}");
        std::fs::write(
            d.path().join(SOPS_CONFIG),
            format!("creation_rules:\n  - path_regex: other$\n    age: {OP}\n"),
        )
        .unwrap();
        let e = seal(d.path(), &info, &file, SECRET.as_bytes()).unwrap_err();
        assert!(matches!(e, SealError::NoRule { .. }), "{e}");
        std::fs::remove_file(d.path().join(SOPS_CONFIG)).unwrap();
        // A config above the repo is never used.
        std::fs::write(
            d.path().join(".sops.yaml"),
            format!("creation_rules:\n  - age: {OP}\n"),
        )
        .unwrap();
        let e = seal(d.path(), &info, &file, SECRET.as_bytes()).unwrap_err();
        assert!(matches!(e, SealError::NoConfig(_)), "{e}");
    }

    #[test]
    fn a_value_sops_would_leave_in_the_clear_fails_the_final_check() {
        let (d, info, file) = repo();
        // sops' default rule leaves `*_unencrypted` plain: the check catches it.
        let doc = format!("{SECRET}key_unencrypted: x\n");
        let e = seal(d.path(), &info, &file, doc.as_bytes()).unwrap_err();
        assert!(
            matches!(&e, SealError::Check { detail, .. } if detail.contains("key_unencrypted")),
            "{e}"
        );
    }
}
