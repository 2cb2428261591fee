//! Which YubiKey and PIV slot hold a root key: recorded in `ca.toml` (never the PIN or the
//! management key).

use serde::{Deserialize, Serialize};

/// A YubiKey PIV key's location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YubikeyConfig {
    /// The device's serial number: any other device is refused.
    pub serial: u32,
    /// The PIV slot, in hex (`9c` by default; `82`–`95` are the retired slots).
    pub slot: String,
    /// Backup devices holding the same key (`init --import-to`); any of them may sign.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<u32>,
}

impl YubikeyConfig {
    /// The same slot on another device.
    pub fn on(&self, serial: u32) -> YubikeyConfig {
        YubikeyConfig {
            serial,
            slot: self.slot.clone(),
            backups: Vec::new(),
        }
    }
}

/// Parses a slot name: 9a, 9c, 9d, 9e or 82–95.
pub fn parse_slot(s: &str) -> Result<u8, String> {
    let v = u8::from_str_radix(s.trim_start_matches("0x"), 16)
        .map_err(|_| format!("`{s}` is not a PIV slot; use 9c (signature) or 82 to 95"))?;
    if matches!(v, 0x9a | 0x9c | 0x9d | 0x9e) || (0x82..=0x95).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "`{s}` is not a PIV key slot; use 9c (signature) or 82 to 95"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots() {
        assert_eq!(parse_slot("9c"), Ok(0x9c));
        assert_eq!(parse_slot("95"), Ok(0x95));
        assert!(parse_slot("96").is_err());
        assert!(
            parse_slot("9b").is_err(),
            "the management key slot is not a key slot"
        );
        assert!(parse_slot("zz").is_err());
    }
}
