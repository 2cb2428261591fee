//! Data-key wrapping with age: each recipient gets its own armored age file holding the data key
//! (or its Shamir share), exactly like sops' `age` key source; and loading identities the way
//! sops does (`SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY`, `~/.config/sops/age/keys.txt`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use zeroize::Zeroizing;

use super::error::{Result, SopsError};

/// A parsed age X25519 recipient (`age1…`).
#[derive(Clone)]
pub struct AgeRecipient {
    text: String,
    key: age::x25519::Recipient,
}

impl std::fmt::Debug for AgeRecipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AgeRecipient({})", self.text)
    }
}

impl AgeRecipient {
    /// Parses one recipient string.
    pub fn parse(s: &str) -> Result<AgeRecipient> {
        let t = s.trim();
        let key = age::x25519::Recipient::from_str(t)
            .map_err(|_| SopsError::BadRecipient(t.to_string()))?;
        Ok(AgeRecipient {
            text: t.to_string(),
            key,
        })
    }

    /// Parses a comma-separated list, as in `--age a,b` and `.sops.yaml` `age:` strings.
    pub fn parse_list(s: &str) -> Result<Vec<AgeRecipient>> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(AgeRecipient::parse)
            .collect()
    }

    /// The `age1…` text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Encrypts `secret` to this recipient as an armored age file (what sops stores in `enc`).
    pub fn wrap(&self, secret: &[u8]) -> Result<String> {
        let enc =
            age::Encryptor::with_recipients(std::iter::once(&self.key as &dyn age::Recipient))
                .map_err(|e| SopsError::Age(e.to_string()))?;
        let mut out = Vec::new();
        let io = |e: std::io::Error| SopsError::Age(e.to_string());
        let armored = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).map_err(io)?;
        let mut w = enc.wrap_output(armored).map_err(io)?;
        w.write_all(secret).map_err(io)?;
        w.finish().map_err(io)?.finish().map_err(io)?;
        let mut s =
            String::from_utf8(out).map_err(|_| SopsError::Age("armor is not UTF-8".into()))?;
        if !s.ends_with('\n') {
            s.push('\n');
        }
        Ok(s)
    }
}

/// The identities a user holds (X25519 only).
pub struct Identities {
    keys: Vec<age::x25519::Identity>,
    sources: Vec<String>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Identities({} keys from {:?})",
            self.keys.len(),
            self.sources
        )
    }
}

impl Identities {
    /// No identities.
    pub fn empty() -> Identities {
        Identities {
            keys: Vec::new(),
            sources: Vec::new(),
        }
    }

    /// Parses an identity file's text (`AGE-SECRET-KEY-1…` lines, `#` comments).
    pub fn add_text(&mut self, text: &str, source_name: &str) -> Result<()> {
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let id = age::x25519::Identity::from_str(line).map_err(|_| SopsError::BadIdentity {
                source_name: source_name.to_string(),
                detail: "a line is not an age X25519 secret key".into(),
            })?;
            self.keys.push(id);
        }
        self.sources.push(source_name.to_string());
        Ok(())
    }

    /// Reads an identity file.
    pub fn add_file(&mut self, path: &Path) -> Result<()> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| SopsError::Io {
                    path: path.to_path_buf(),
                    source,
                })?,
            );
        self.add_text(&text, &path.display().to_string())
    }

    /// Loads identities as sops does: `SOPS_AGE_KEY`, `SOPS_AGE_KEY_FILE` (empty means unset),
    /// then the default `keys.txt` under the user config directory if it exists, plus any
    /// explicit files.
    pub fn from_env(explicit: &[PathBuf]) -> Result<Identities> {
        let mut ids = Identities::empty();
        for p in explicit {
            ids.add_file(p)?;
        }
        if let Ok(k) = std::env::var("SOPS_AGE_KEY") {
            let k = Zeroizing::new(k);
            ids.add_text(&k, "SOPS_AGE_KEY")?;
        }
        // An empty SOPS_AGE_KEY_FILE counts as unset, as in sops 3.11.
        if let Some(p) = std::env::var_os("SOPS_AGE_KEY_FILE").filter(|p| !p.is_empty()) {
            ids.add_file(Path::new(&p))?;
        }
        let default = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .map(|c| c.join("sops").join("age").join("keys.txt"));
        if let Some(d) = default.filter(|d| d.is_file()) {
            ids.add_file(&d)?;
        }
        Ok(ids)
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Where the keys came from, for error messages.
    pub fn describe(&self) -> String {
        if self.sources.is_empty() {
            "no identities found".to_string()
        } else {
            format!(
                "{} key(s) from {}",
                self.keys.len(),
                self.sources.join(", ")
            )
        }
    }

    /// The recipients matching the held identities.
    pub fn recipients(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.to_public().to_string())
            .collect()
    }

    /// Whether we hold the identity for this recipient.
    pub fn holds(&self, recipient: &str) -> bool {
        self.keys
            .iter()
            .any(|k| k.to_public().to_string() == recipient)
    }

    /// Decrypts an armored age file (a sops `enc` value) with any held identity.
    pub fn unwrap(&self, armored: &str) -> Option<Zeroizing<Vec<u8>>> {
        let dec = age::Decryptor::new_buffered(ArmoredReader::new(armored.as_bytes())).ok()?;
        let mut r = dec
            .decrypt(self.keys.iter().map(|k| k as &dyn age::Identity))
            .ok()?;
        let mut out = Zeroizing::new(Vec::new());
        r.read_to_end(&mut out).ok()?;
        Some(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap() {
        let id = age::x25519::Identity::generate();
        let r = AgeRecipient::parse(&id.to_public().to_string()).unwrap();
        let armored = r.wrap(b"0123456789abcdef0123456789abcdef").unwrap();
        assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n"));
        let mut ids = Identities::empty();
        use age::secrecy::ExposeSecret;
        ids.add_text(id.to_string().expose_secret(), "test")
            .unwrap();
        assert_eq!(
            &ids.unwrap(&armored).unwrap()[..],
            b"0123456789abcdef0123456789abcdef"
        );
        assert!(AgeRecipient::parse("age1nope").is_err());
    }
}
