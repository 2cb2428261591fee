//! Where a PKCS#11 root key lives: module, token label and key label, from command-line flags
//! or an RFC 7512 `pkcs11:` URI. Recorded in `ca.toml`; the PIN never is.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A PKCS#11 key's location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (shared library).
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// The key's label (CKA_LABEL of the private and public key objects).
    pub key_label: String,
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("a truncated %-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad %-escape `%{hex}`"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after %-decoding".to_string())
}

impl Pkcs11Config {
    /// Parses an RFC 7512 URI such as
    /// `pkcs11:token=KiwiStack%20Root;object=root-r1?module-path=/usr/lib/softhsm/libsofthsm2.so`.
    /// `token` and `object` are required, and `module-path` unless `module` is given.
    pub fn from_uri(uri: &str, module: Option<PathBuf>) -> Result<Self, String> {
        let rest = uri
            .strip_prefix("pkcs11:")
            .ok_or_else(|| format!("`{uri}` is not a pkcs11: URI (RFC 7512)"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (mut token, mut object, mut module_path) = (None, None, None);
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (k, v) = attr
                .split_once('=')
                .ok_or_else(|| format!("`{attr}` in the URI has no `=`"))?;
            match k {
                "token" => token = Some(percent_decode(v)?),
                "object" => object = Some(percent_decode(v)?),
                // Other path attributes (type, id, manufacturer, serial...) narrow the match;
                // we select by the two labels only and refuse what we would silently ignore.
                "type" if v == "private" => {}
                other => {
                    return Err(format!(
                        "the URI attribute `{other}` is not supported; use token= and object="
                    ))
                }
            }
        }
        for q in query.split('&').filter(|a| !a.is_empty()) {
            let (k, v) = q
                .split_once('=')
                .ok_or_else(|| format!("`{q}` in the URI query has no `=`"))?;
            match k {
                "module-path" => module_path = Some(PathBuf::from(percent_decode(v)?)),
                "pin-value" | "pin-source" => {
                    return Err(
                        "a PIN in the URI is refused; give it with --pin-file or at the prompt"
                            .into(),
                    );
                }
                other => {
                    return Err(format!(
                        "the URI query attribute `{other}` is not supported"
                    ))
                }
            }
        }
        Ok(Pkcs11Config {
            module: module
                .or(module_path)
                .ok_or("the URI has no module-path; add ?module-path=... or pass --module")?,
            token_label: token.ok_or("the URI has no token=")?,
            key_label: object.ok_or("the URI has no object=")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_and_pins_are_refused() {
        let c = Pkcs11Config::from_uri(
            "pkcs11:token=KiwiStack%20Root;object=root-r1;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so",
            None,
        )
        .expect("valid");
        assert_eq!(c.token_label, "KiwiStack Root");
        assert_eq!(c.key_label, "root-r1");
        assert_eq!(c.module, PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
        assert!(Pkcs11Config::from_uri(
            "pkcs11:token=a;object=b?pin-value=1234",
            Some("/m".into())
        )
        .is_err());
        assert!(Pkcs11Config::from_uri("pkcs11:token=a", Some("/m".into())).is_err());
        assert!(Pkcs11Config::from_uri("pkcs11:token=a;object=b", None).is_err());
        assert!(Pkcs11Config::from_uri("https://x", None).is_err());
    }
}
