//! Witness signatures: SSHSIG (`ssh-keygen -Y sign -n kiwi-ceremony`) checked in-process
//! against an allowed-signers file in ssh-keygen's format.
//!
//! Each line of the file is `PRINCIPALS [OPTIONS] KEYTYPE BASE64 [COMMENT]`; `#` starts a
//! comment line. The `namespaces="..."` option is honoured (the key may sign only in those
//! namespaces); `cert-authority`, `valid-after` and `valid-before` are refused rather than
//! ignored, since ignoring them would accept what ssh-keygen rejects. Parsing and verification
//! only: the `ssh-key` crate is built without agent, encryption or random-number features.

use ssh_key::{PublicKey, SshSig};

use crate::error::{Error, Result};

/// The namespace every ceremony transcript signature is made in.
pub const NAMESPACE: &str = "kiwi-ceremony";

/// One line of an allowed-signers file.
#[derive(Debug, Clone)]
pub struct AllowedSigner {
    /// The principals (comma-separated patterns, as written).
    pub principals: String,
    /// The namespaces the key may sign in (None: any).
    pub namespaces: Option<Vec<String>>,
    /// The key.
    pub key: PublicKey,
}

/// Parses an allowed-signers file (`file` names it in errors).
pub fn parse_allowed_signers(file: &str, text: &str) -> Result<Vec<AllowedSigner>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |m: String| Error::Script {
            file: file.to_string(),
            field: format!("line {}", i + 1),
            message: m,
        };
        let tokens = split_quoted(line, |c| c.is_ascii_whitespace());
        let (principals, rest) = tokens
            .split_first()
            .ok_or_else(|| bad("empty line".into()))?;
        let key_starts =
            |t: &str| t.starts_with("ssh-") || t.starts_with("ecdsa-") || t.starts_with("sk-");
        let (options, key_tokens) = match rest.first() {
            Some(t) if !key_starts(t) => (Some(t.as_str()), &rest[1..]),
            _ => (None, rest),
        };
        if key_tokens.len() < 2 {
            return Err(bad(
                "expected PRINCIPALS [OPTIONS] KEYTYPE BASE64 [COMMENT]".into(),
            ));
        }
        let key = PublicKey::from_openssh(&format!("{} {}", key_tokens[0], key_tokens[1]))
            .map_err(|e| bad(format!("not a public key ({e})")))?;
        let mut namespaces = None;
        for opt in options
            .map(|o| split_quoted(o, |c| c == ','))
            .unwrap_or_default()
        {
            let (name, value) = opt.split_once('=').unwrap_or((opt.as_str(), ""));
            match name.to_ascii_lowercase().as_str() {
                "namespaces" => {
                    namespaces = Some(
                        value
                            .trim_matches('"')
                            .split(',')
                            .map(|n| n.trim().to_string())
                            .collect(),
                    );
                }
                other => {
                    return Err(bad(format!(
                        "option `{other}` is not supported here; use plain keys with \
                         namespaces=\"{NAMESPACE}\""
                    )))
                }
            }
        }
        out.push(AllowedSigner {
            principals: principals.trim_matches('"').to_string(),
            namespaces,
            key,
        });
    }
    Ok(out)
}

/// Splits `s` at characters `sep` matches, except inside double quotes.
fn split_quoted(s: &str, sep: impl Fn(char) -> bool) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        if c == '"' {
            quoted = !quoted;
            cur.push(c);
        } else if !quoted && sep(c) {
            if !cur.is_empty() {
                parts.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    parts
}

/// Verifies the armored SSHSIG `sig` over `msg` in [`NAMESPACE`]: it must be made by a key
/// in `allowed` that may sign in that namespace. Returns the signer's principals, or why not.
pub fn verify(
    allowed: &[AllowedSigner],
    msg: &[u8],
    sig: &str,
) -> std::result::Result<String, String> {
    let sig = SshSig::from_pem(sig).map_err(|e| format!("not an SSH signature ({e})"))?;
    if sig.namespace() != NAMESPACE {
        return Err(format!(
            "made in namespace `{}`, not `{NAMESPACE}`",
            sig.namespace()
        ));
    }
    let signer = allowed
        .iter()
        .find(|a| a.key.key_data() == sig.public_key())
        .ok_or("made by a key that is not in the allowed signers")?;
    if signer
        .namespaces
        .as_ref()
        .is_some_and(|ns| !ns.iter().any(|n| n == NAMESPACE))
    {
        return Err(format!(
            "{}'s key is not allowed to sign in namespace {NAMESPACE}",
            signer.principals
        ));
    }
    signer
        .key
        .verify(NAMESPACE, msg, &sig)
        .map_err(|e| format!("does not verify ({e}): the transcript or the signature changed"))?;
    Ok(signer.principals.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEq5Qgzc5zjf6lyucxB3BiXxdiY+JRXbGWj9fKEilTZA";

    #[test]
    fn allowed_signers_lines_parse_with_and_without_namespaces() {
        let text = format!(
            "# witnesses\nben@example.org {KEY} ben\n\"ana@x,eva@x\" namespaces=\"git,kiwi-ceremony\" {KEY}\n"
        );
        let a = parse_allowed_signers("allowed", &text).expect("valid");
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].namespaces, None);
        assert_eq!(a[1].principals, "ana@x,eva@x");
        assert_eq!(
            a[1].namespaces.as_deref(),
            Some(&["git".to_string(), NAMESPACE.to_string()][..])
        );
        for bad in [
            format!("ben cert-authority {KEY}"),
            "ben ssh-ed25519".to_string(),
            "ben ssh-ed25519 AAAA".to_string(),
        ] {
            assert!(parse_allowed_signers("allowed", &bad).is_err(), "{bad}");
        }
    }
}
