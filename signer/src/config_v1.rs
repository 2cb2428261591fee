//! `ca.toml` as `init` wrote it before the `[backend]` table (format 1), read so that CAs created
//! then keep working. New CAs get format 2 ([`crate::ca::CaConfig`]).
//!
//! Format 1 named the backend in a top-level `backend = "..."` and kept each backend's settings
//! in a table of its own (`[yubikey]`, `[pkcs11]`, or `soft_key_file`). The list here is frozen:
//! a backend added later exists only in format 2, so this is the one place that names the
//! original three.

use std::path::PathBuf;

use serde::Deserialize;

use crate::backend::pkcs11_config::Pkcs11Config;
use crate::backend::soft::SoftConfig;
use crate::backend::yubikey_config::YubikeyConfig;
use crate::backend::BackendConfig;
use crate::ca::{CaConfig, CONFIG_FORMAT};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Version {
    format: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaConfigV1 {
    #[allow(dead_code)] // checked by `parse_config` before this is read
    format: u32,
    backend: String,
    policy: PathBuf,
    policies_dir: PathBuf,
    #[serde(default)]
    soft_key_file: Option<String>,
    #[serde(default)]
    pkcs11: Option<Pkcs11Config>,
    #[serde(default)]
    yubikey: Option<YubikeyConfig>,
}

/// Parses `ca.toml` text of format 1 or 2 into the current form. The error names the field.
pub fn parse_config(text: &str) -> Result<CaConfig, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let format = match table.get("format") {
        Some(v) => {
            Version::deserialize(toml::Value::Table(
                [("format".to_string(), v.clone())].into_iter().collect(),
            ))
            .map_err(|e| format!("format: {e}"))?
            .format
        }
        None => return Err("missing field `format`".into()),
    };
    match format {
        1 => from_v1(toml::from_str(text).map_err(|e| e.to_string())?),
        CONFIG_FORMAT => toml::from_str(text).map_err(|e| e.to_string()),
        n => Err(format!(
            "format: {n} is not a ca.toml format this kiwi-signer reads (1 or {CONFIG_FORMAT}); use the kiwi-signer that created this CA"
        )),
    }
}

fn from_v1(v1: CaConfigV1) -> Result<CaConfig, String> {
    let missing = |table: &str| {
        format!(
            "backend: `{}` needs the [{table}] table, which is missing",
            v1.backend
        )
    };
    let backend = match v1.backend.as_str() {
        "soft" => BackendConfig::Soft(SoftConfig {
            key_file: v1
                .soft_key_file
                .clone()
                .unwrap_or_else(|| SoftConfig::default().key_file),
        }),
        "yubikey" => BackendConfig::Yubikey(v1.yubikey.clone().ok_or_else(|| missing("yubikey"))?),
        "pkcs11" => BackendConfig::Pkcs11(v1.pkcs11.clone().ok_or_else(|| missing("pkcs11"))?),
        other => {
            return Err(format!(
                "backend: unknown backend `{other}`; use soft, yubikey or pkcs11"
            ))
        }
    };
    Ok(CaConfig {
        format: CONFIG_FORMAT,
        policy: v1.policy,
        policies_dir: v1.policies_dir,
        backend,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_1_files_read_as_format_2() {
        let v1 = "format = 1\nbackend = \"yubikey\"\npolicy = \"policies/root.yaml\"\n\
                  policies_dir = \"policies\"\n\n[yubikey]\nserial = 123\nslot = \"9c\"\n";
        let c = parse_config(v1).expect("format 1");
        assert_eq!(
            c.backend,
            BackendConfig::Yubikey(YubikeyConfig {
                serial: 123,
                slot: "9c".into(),
                backups: vec![],
            })
        );
        let text = toml::to_string(&c).expect("serializes");
        assert!(
            text.contains("[backend]\ntype = \"yubikey\"\nserial = 123"),
            "{text}"
        );
        assert_eq!(parse_config(&text).expect("format 2"), c);

        let soft = "format = 1\nbackend = \"soft\"\npolicy = \"p.yaml\"\npolicies_dir = \".\"\n\
                    soft_key_file = \"root.key.age\"\n";
        assert_eq!(
            parse_config(soft).expect("soft").backend,
            BackendConfig::Soft(SoftConfig::default())
        );
    }

    #[test]
    fn bad_files_name_the_field() {
        for (text, why) in [
            (
                "format = 1\nbackend = \"pkcs11\"\npolicy = \"p\"\npolicies_dir = \".\"\n",
                "[pkcs11] table",
            ),
            (
                "format = 1\nbackend = \"hsm\"\npolicy = \"p\"\npolicies_dir = \".\"\n",
                "unknown backend `hsm`",
            ),
            ("format = 9\n", "format: 9"),
            ("format = \"two\"\n", "format:"),
            ("policy = \"p\"\n", "missing field `format`"),
            (
                "format = 2\npolicy = \"p\"\npolicies_dir = \".\"\n[backend]\ntype = \"floppy\"\n",
                "floppy",
            ),
            (
                "format = 2\npolicy = \"p\"\npolicies_dir = \".\"\n[backend]\ntype = \"soft\"\npin = \"1\"\n",
                "unknown field `pin`",
            ),
            (
                "format = 2\npolicy = \"p\"\npolicies_dir = \".\"\n[backend]\ntype = \"pkcs11\"\nmodule = \"/m\"\ntoken_label = \"t\"\n",
                "key_label",
            ),
            ("format = 2\npolicy = \"p\"\npolicies_dir = \".\"\n", "backend"),
        ] {
            let e = parse_config(text).expect_err(text);
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
