//! `filestatus`: whether a file is one sops would call encrypted, decided as sops 3.11 does.
//! A file that does not parse in its format is an error (sops fails too); a file that parses
//! and has no `sops` metadata, or metadata without a `version` or a `mac`, is not encrypted.

use super::error::{Result, SopsError};
use super::format::{self, FileFormat};
use super::metadata::{MVal, Metadata};

/// sops' answer for `filestatus`, serialized exactly as sops prints it (`{"encrypted":true}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FileStatus {
    /// Whether the file holds sops metadata with a version and a MAC.
    pub encrypted: bool,
}

/// The status of `src` read as `fmt`. Reads no keys and decrypts nothing.
pub fn file_status(src: &[u8], fmt: FileFormat) -> Result<FileStatus> {
    let Some(block) = format::parse(fmt, src)?.meta else {
        return Ok(FileStatus { encrypted: false });
    };
    let MVal::Map(entries) = &block.value else {
        return Err(SopsError::Metadata(
            "the `sops` block is not a mapping".into(),
        ));
    };
    let present = |k: &str| {
        entries
            .iter()
            .any(|(n, v)| n == k && v.as_text().is_some_and(|t| !t.is_empty()))
    };
    let encrypted = present("version") && present("mac");
    // Like sops, metadata that is otherwise broken (no keys, no `lastmodified`) is an error,
    // while a missing version or MAC only means "not encrypted".
    let mut filled = entries.clone();
    for k in ["version", "mac"] {
        if !present(k) {
            filled.retain(|(n, _)| n != k);
            filled.push((k.to_string(), MVal::Str("-".into())));
        }
    }
    Metadata::from_mval(&MVal::Map(filled))?;
    Ok(FileStatus { encrypted })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn needs_metadata_with_version_and_mac() {
        let st = |s: &str| {
            file_status(s.as_bytes(), FileFormat::Yaml)
                .unwrap()
                .encrypted
        };
        let keys = "    age:\n        - recipient: age1x\n          enc: x\n    lastmodified: \"2025-01-01T00:00:00Z\"\n";
        assert!(!st("a: 1\n"));
        assert!(!st(&format!("a: 1\nsops:\n{keys}    version: 3.11.0\n")));
        assert!(!st(&format!("a: 1\nsops:\n{keys}    mac: ENC[x]\n")));
        assert!(st(&format!(
            "a: 1\nsops:\n{keys}    mac: ENC[x]\n    version: 3.11.0\n"
        )));
        // No keys: an error, as in sops.
        assert!(file_status(b"a: 1\nsops:\n    version: 3.11.0\n", FileFormat::Yaml).is_err());
        assert!(file_status(b"{", FileFormat::Json).is_err());
        assert_eq!(
            serde_json::to_string(&FileStatus { encrypted: true }).unwrap(),
            r#"{"encrypted":true}"#
        );
    }
}
