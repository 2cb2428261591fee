//! The operations on one document held in memory: encrypt a plaintext document, open (decrypt
//! and MAC-check) a SOPS document, and reseal it with a new data key or new recipients.
//!
//! Every rewrite is checked before it is returned: the new bytes are parsed again, decrypted
//! with the data key and MAC-checked, and must hold the same values.

use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use super::agekeys::{AgeRecipient, Identities};
use super::cipher::{
    aad_for, decrypt_bytes, encrypt_bytes, encrypt_value, is_enc, DataKey, DecryptFailure,
};
use super::comments::{item_start, line_of, open_comment};
use super::error::{Result, SopsError};
use super::format::{self, FileFormat, Leaf, Parsed};
use super::metadata::{now_rfc3339, AgeStanza, KeyGroup, Metadata, Rules, SOPS_FORMAT_VERSION};
use super::shamir;
use super::value::Plain;

/// sops' constant that starts the MAC when `mac_only_encrypted` is set.
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// Who can unwrap the data key: age recipients in key groups, and the Shamir threshold.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// Key groups (one group: no Shamir).
    pub groups: Vec<Vec<AgeRecipient>>,
    /// Groups needed to recover the key when there is more than one (0 = all).
    pub threshold: usize,
}

impl KeySpec {
    /// One group with these recipients.
    pub fn single(recipients: Vec<AgeRecipient>) -> KeySpec {
        KeySpec {
            groups: vec![recipients],
            threshold: 0,
        }
    }

    /// The recipients as text, per group.
    pub fn texts(&self) -> Vec<Vec<String>> {
        self.groups
            .iter()
            .map(|g| g.iter().map(|r| r.as_str().to_string()).collect())
            .collect()
    }

    fn effective_threshold(&self) -> usize {
        if self.groups.len() <= 1 {
            0
        } else if self.threshold == 0 {
            self.groups.len()
        } else {
            self.threshold
        }
    }
}

/// A decrypted leaf.
enum Opened {
    /// A value and whether the file holds it encrypted.
    Value { plain: Plain, encrypted: bool },
    /// A comment's text (an encrypted comment that does not decrypt is an error); `encrypted`
    /// when it must be encrypted; `moved` when it decrypted only under another path than its
    /// own, which sops cannot read it with. A comment sops stores as a list item
    /// (`- ENC[...,type:comment]`) is a comment held by a [`Leaf::Value`].
    Comment {
        text: String,
        encrypted: bool,
        moved: bool,
    },
}

impl Opened {
    /// Whether a rotation encrypts this leaf again under the new data key.
    fn is_resealed(&self) -> bool {
        match self {
            Opened::Value { plain, encrypted } => *encrypted && !plain.is_empty(),
            Opened::Comment {
                text,
                encrypted: true,
                ..
            } => !text.is_empty(),
            Opened::Comment { .. } => false,
        }
    }
}

/// A SOPS document opened in memory.
pub struct OpenDoc {
    format: FileFormat,
    src: Vec<u8>,
    parsed: Parsed,
    /// The metadata block.
    pub meta: Metadata,
    key: DataKey,
    leaves: Vec<Opened>,
}

impl std::fmt::Debug for OpenDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OpenDoc({:?}, {} leaves, <redacted>)",
            self.format,
            self.leaves.len()
        )
    }
}

/// What unlocks a document.
pub enum Unlock<'a> {
    /// age identities.
    Identities(&'a Identities),
    /// The data key itself (self-checks).
    Key(&'a DataKey),
}

fn mac_hasher(rules: &Rules) -> Sha512 {
    let mut h = Sha512::new();
    if rules.mac_only_encrypted {
        h.update(MAC_ONLY_ENCRYPTED_INIT);
    }
    h
}

fn hex_upper(b: &[u8]) -> String {
    hex::encode_upper(b)
}

/// Recovers the data key from the metadata with the given identities.
fn unwrap_key(meta: &Metadata, ids: &Identities) -> Result<DataKey> {
    let mut parts: Vec<Zeroizing<Vec<u8>>> = Vec::new();
    for g in &meta.key_groups {
        if let Some(p) = g.age.iter().find_map(|a| ids.unwrap(&a.enc)) {
            parts.push(p);
        }
    }
    let no_id = || {
        SopsError::NoIdentity(format!(
            "file recipients: {}; you hold: {}",
            meta.recipients().join(", "),
            if ids.is_empty() {
                ids.describe()
            } else {
                ids.recipients().join(", ")
            }
        ))
    };
    let key = if meta.key_groups.len() > 1 {
        if parts.len() < meta.threshold() {
            return Err(SopsError::NoIdentity(format!(
                "only {} of the {} key groups needed could be opened; {}",
                parts.len(),
                meta.threshold(),
                no_id()
            )));
        }
        shamir::combine(&parts).map_err(SopsError::Shamir)?
    } else {
        parts.pop().ok_or_else(no_id)?
    };
    DataKey::from_slice(&key)
        .ok_or_else(|| SopsError::Metadata("the data key is not 32 bytes".into()))
}

/// Opens a SOPS document: unwraps the data key, decrypts every value and checks the MAC.
pub fn open(src: &[u8], fmt: FileFormat, unlock: Unlock<'_>) -> Result<OpenDoc> {
    open_checked(src, fmt, unlock, true)
}

/// [`open`] without the MAC check (sops' `--ignore-mac`): for recovering a file whose values
/// were edited by hand. Every value must still decrypt and authenticate on its own, so a value
/// that was altered is refused all the same; only removed, added or swapped values go unnoticed.
pub fn open_ignoring_mac(src: &[u8], fmt: FileFormat, unlock: Unlock<'_>) -> Result<OpenDoc> {
    open_checked(src, fmt, unlock, false)
}

fn open_checked(
    src: &[u8],
    fmt: FileFormat,
    unlock: Unlock<'_>,
    check_mac: bool,
) -> Result<OpenDoc> {
    let parsed = format::parse(fmt, src)?;
    let block = parsed.meta.as_ref().ok_or(SopsError::NotEncrypted)?;
    let meta = Metadata::from_mval(&block.value)?;
    meta.rules.validate()?;
    let key = match unlock {
        Unlock::Identities(ids) => unwrap_key(&meta, ids)?,
        Unlock::Key(k) => k.clone(),
    };
    let matcher = meta.rules.compile()?;
    let mut h = mac_hasher(&meta.rules);
    let mut leaves = Vec::with_capacity(parsed.leaves.len());
    for leaf in &parsed.leaves {
        match leaf {
            Leaf::Value { path, value, .. } => {
                let encrypted = matcher.encrypts(path);
                let plain = if encrypted {
                    let p = path.join(":");
                    match value {
                        Plain::Str(s) if s.is_empty() => Plain::str(""),
                        Plain::Str(s) => {
                            let (bytes, ty) =
                                decrypt_bytes(&key, s, &aad_for(path)).map_err(|e| match e {
                                    DecryptFailure::Auth => {
                                        SopsError::ValueTampered { path: p.clone() }
                                    }
                                    DecryptFailure::Malformed(d) => SopsError::BadEncValue {
                                        path: p.clone(),
                                        detail: d,
                                    },
                                })?;
                            if ty == "comment" {
                                // A comment sops moved into a list as an item: not a value,
                                // and not part of the MAC.
                                let (Leaf::Value { span, .. }, FileFormat::Yaml) = (leaf, fmt)
                                else {
                                    return Err(SopsError::BadEncValue {
                                        path: p,
                                        detail: "a comment where a value belongs".into(),
                                    });
                                };
                                if item_start(src, span).is_none() {
                                    return Err(SopsError::BadEncValue {
                                        path: p,
                                        detail: "a comment stored as a list item that does not start its line".into(),
                                    });
                                }
                                let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                                    SopsError::BadEncValue {
                                        path: p,
                                        detail: "comment is not UTF-8".into(),
                                    }
                                })?;
                                leaves.push(Opened::Comment {
                                    text,
                                    encrypted: true,
                                    moved: false,
                                });
                                continue;
                            }
                            Plain::from_decrypted(bytes, &ty)
                                .map_err(|d| SopsError::BadEncValue { path: p, detail: d })?
                        }
                        _ => {
                            return Err(SopsError::BadEncValue {
                                path: p,
                                detail: "a value that must be encrypted is stored in the clear"
                                    .into(),
                            })
                        }
                    }
                } else {
                    value.clone()
                };
                if !meta.rules.mac_only_encrypted || encrypted {
                    h.update(plain.mac_bytes());
                }
                leaves.push(Opened::Value { plain, encrypted });
            }
            Leaf::Comment { path, text, span } => {
                let encrypted = matcher.encrypts(path);
                let (text, moved) = if encrypted && is_enc(text) {
                    open_comment(&key, text, path, &parsed.leaves).ok_or_else(|| {
                        SopsError::CommentUnreadable {
                            line: line_of(src, span.start),
                        }
                    })?
                } else {
                    (text.clone(), false)
                };
                leaves.push(Opened::Comment {
                    text,
                    encrypted,
                    moved,
                });
            }
        }
    }
    if check_mac && meta.mac.is_empty() {
        return Err(SopsError::MacMissing);
    }
    if check_mac {
        let computed = hex_upper(&h.finalize());
        let stored = match decrypt_bytes(&key, &meta.mac, &meta.lastmodified) {
            Ok((b, _)) => String::from_utf8(b.to_vec()).unwrap_or_default(),
            Err(_) => return Err(SopsError::MacMismatch),
        };
        if stored != computed {
            return Err(SopsError::MacMismatch);
        }
    }
    Ok(OpenDoc {
        format: fmt,
        src: src.to_vec(),
        parsed,
        meta,
        key,
        leaves,
    })
}

/// What a SOPS document shows without its key: its metadata and the values it holds in the clear.
#[derive(Debug)]
pub struct Inspected {
    /// The metadata block.
    pub meta: Metadata,
    /// Key paths (colon-joined) of the non-empty values stored in the clear (those the file's
    /// partial-encryption rule leaves plain).
    pub clear: Vec<String>,
}

/// Reads a SOPS document's shape without decrypting it (no key is needed): it must carry valid
/// metadata, and every value its rule encrypts must be stored as `ENC[...]`. A plaintext file
/// fails with [`SopsError::NotEncrypted`].
pub fn inspect(src: &[u8], fmt: FileFormat) -> Result<Inspected> {
    let parsed = format::parse(fmt, src)?;
    let block = parsed.meta.as_ref().ok_or(SopsError::NotEncrypted)?;
    let meta = Metadata::from_mval(&block.value)?;
    meta.rules.validate()?;
    let matcher = meta.rules.compile()?;
    let mut clear = Vec::new();
    for leaf in &parsed.leaves {
        let Leaf::Value { path, value, .. } = leaf else {
            continue;
        };
        if value.is_empty() || matches!(value, Plain::Str(s) if is_enc(s)) {
            continue;
        }
        if matcher.encrypts(path) {
            return Err(SopsError::BadEncValue {
                path: path.join(":"),
                detail: "a value that must be encrypted is stored in the clear".into(),
            });
        }
        clear.push(path.join(":"));
    }
    Ok(Inspected { meta, clear })
}

/// Wraps a data key for a key spec (Shamir-splitting it across groups).
fn wrap_groups(key: &DataKey, spec: &KeySpec) -> Result<Vec<KeyGroup>> {
    if spec.groups.is_empty() || spec.groups.iter().any(|g| g.is_empty()) {
        return Err(SopsError::NoRecipients);
    }
    let shares: Vec<Zeroizing<Vec<u8>>> = if spec.groups.len() == 1 {
        vec![Zeroizing::new(key.as_bytes().to_vec())]
    } else {
        shamir::split(
            key.as_bytes(),
            spec.groups.len(),
            spec.effective_threshold(),
        )
        .map_err(SopsError::Shamir)?
    };
    spec.groups
        .iter()
        .zip(shares.iter())
        .map(|(g, share)| {
            Ok(KeyGroup {
                age: g
                    .iter()
                    .map(|r| {
                        Ok(AgeStanza {
                            recipient: r.as_str().to_string(),
                            enc: r.wrap(share)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
                foreign: vec![],
            })
        })
        .collect()
}

fn finish_meta(
    key: &DataKey,
    mac_hex: &str,
    groups: Vec<KeyGroup>,
    spec_threshold: usize,
    rules: Rules,
) -> Metadata {
    let lastmodified = now_rfc3339();
    let mac = encrypt_bytes(key, mac_hex.as_bytes(), "str", &lastmodified);
    Metadata {
        shamir_threshold: if groups.len() > 1 { spec_threshold } else { 0 },
        key_groups: groups,
        lastmodified,
        mac,
        rules,
        version: SOPS_FORMAT_VERSION.to_string(),
    }
}

/// Encrypts a plaintext document.
pub fn encrypt(src: &[u8], fmt: FileFormat, spec: &KeySpec, rules: Rules) -> Result<Vec<u8>> {
    let rules = rules.with_default();
    rules.validate()?;
    let matcher = rules.compile()?;
    let key = DataKey::generate();
    let groups = wrap_groups(&key, spec)?;
    let threshold = if spec.groups.len() > 1 {
        spec.effective_threshold()
    } else {
        0
    };
    let mut h = mac_hasher(&rules);
    let out = if fmt == FileFormat::Binary {
        let data = Plain::Bytes(Zeroizing::new(src.to_vec()));
        h.update(data.mac_bytes());
        let enc = if src.is_empty() {
            String::new()
        } else {
            encrypt_value(&key, &data, "data:")
        };
        let meta = finish_meta(&key, &hex_upper(&h.finalize()), groups, threshold, rules);
        let member = format::json::meta_member(&meta.to_mval(), "\t");
        format!("{{\n\t\"data\": \"{enc}\",\n\t{member}\n}}").into_bytes()
    } else {
        // sops writes an INI file whole, in its own layout: encrypt that layout.
        let canonical;
        let src = if fmt == FileFormat::Ini {
            let text = std::str::from_utf8(src).map_err(|_| SopsError::Malformed {
                format: "ini",
                detail: "not UTF-8".into(),
            })?;
            canonical = format::ini::canonical(text)?;
            canonical.as_bytes()
        } else {
            src
        };
        let parsed = format::parse(fmt, src)?;
        if parsed.meta.is_some() {
            return Err(SopsError::AlreadyEncrypted);
        }
        let text = std::str::from_utf8(src).unwrap_or_default();
        let mut edits = Vec::new();
        for leaf in &parsed.leaves {
            match leaf {
                Leaf::Value {
                    path,
                    span,
                    value,
                    ctx,
                } => {
                    let enc = matcher.encrypts(path);
                    if !rules.mac_only_encrypted || enc {
                        h.update(value.mac_bytes());
                    }
                    if enc && !value.is_empty() {
                        let e = encrypt_value(&key, value, &aad_for(path));
                        edits.push((
                            span.clone(),
                            format::enc_text(ctx, text, span, &e).into_bytes(),
                        ));
                    } else if fmt == FileFormat::Yaml
                        && span.end == text.len()
                        && !text.ends_with('\n')
                    {
                        // The metadata block will follow this value on a new line; write the
                        // value so that line break does not become part of it (a `|` block).
                        edits.push((
                            span.clone(),
                            format::plain_text(ctx, value, path)?.into_bytes(),
                        ));
                    }
                }
                Leaf::Comment { path, span, text } => {
                    if matcher.encrypts(path) && !text.is_empty() {
                        let e = encrypt_bytes(&key, text.as_bytes(), "comment", &aad_for(path));
                        edits.push((span.clone(), format::comment_text(fmt, &e).into_bytes()));
                    }
                }
            }
        }
        let meta = finish_meta(&key, &hex_upper(&h.finalize()), groups, threshold, rules);
        edits.extend(format::meta_edits(
            fmt,
            text,
            &parsed,
            Some(&meta.to_mval()),
        ));
        format::splice(src, edits)?
    };
    self_check(&out, fmt, &key, None)?;
    Ok(out)
}

/// Replaces the `ENC[...]` token inside a scalar's source text.
fn replace_token(raw: &str, new: &str) -> Option<String> {
    let t = enc_token(raw)?;
    Some(format!("{}{new}{}", &raw[..t.start], &raw[t.end..]))
}

/// Where the `ENC[...]` token sits in a scalar's raw text (which may hold quotes around it).
fn enc_token(raw: &str) -> Option<std::ops::Range<usize>> {
    let start = raw.find("ENC[AES256_GCM,")?;
    Some(start..start + raw[start..].find(']')? + 1)
}

impl OpenDoc {
    /// The format.
    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// Every value with its key path, in document order (comments left out).
    pub fn values(&self) -> impl Iterator<Item = (&[String], &Plain)> {
        self.parsed
            .leaves
            .iter()
            .zip(&self.leaves)
            .filter_map(|(leaf, o)| match (leaf, o) {
                (Leaf::Value { path, .. }, Opened::Value { plain, .. }) => {
                    Some((path.as_slice(), plain))
                }
                _ => None,
            })
    }

    /// The plaintext document (metadata removed), zeroized on drop.
    pub fn plaintext(&self) -> Result<Zeroizing<Vec<u8>>> {
        if self.format == FileFormat::Binary {
            for (leaf, o) in self.parsed.leaves.iter().zip(&self.leaves) {
                if let (Leaf::Value { path, .. }, Opened::Value { plain, .. }) = (leaf, o) {
                    if path.len() == 1 && path[0] == "data" {
                        return Ok(Zeroizing::new(match plain {
                            Plain::Str(s) => s.as_bytes().to_vec(),
                            Plain::Bytes(b) => b.to_vec(),
                            _ => {
                                return Err(SopsError::Metadata(
                                    "binary `data` is not a string".into(),
                                ))
                            }
                        }));
                    }
                }
            }
            return Ok(Zeroizing::new(Vec::new()));
        }
        let text = std::str::from_utf8(&self.src).unwrap_or_default();
        let mut edits = Vec::new();
        for (leaf, o) in self.parsed.leaves.iter().zip(&self.leaves) {
            match (leaf, o) {
                (
                    Leaf::Value {
                        path, span, ctx, ..
                    },
                    Opened::Value {
                        plain,
                        encrypted: true,
                    },
                ) if !plain.is_empty() => {
                    edits.push((
                        span.clone(),
                        format::plain_text(ctx, plain, path)?.into_bytes(),
                    ));
                }
                (
                    Leaf::Comment {
                        span, text: orig, ..
                    },
                    Opened::Comment { text: t, .. },
                ) if t != orig => {
                    edits.push((
                        span.clone(),
                        format::comment_text(self.format, t).into_bytes(),
                    ));
                }
                (Leaf::Value { span, .. }, Opened::Comment { text: t, .. }) => {
                    // A comment sops stored as a list item goes back to being a comment line.
                    let start = item_start(&self.src, span).ok_or_else(|| {
                        SopsError::SelfCheck("a list-item comment lost its `-`".into())
                    })?;
                    edits.push((
                        start..span.end,
                        format::comment_text(self.format, t).into_bytes(),
                    ));
                }
                _ => {}
            }
        }
        edits.extend(format::meta_edits(self.format, text, &self.parsed, None));
        let out = format::splice(&self.src, edits)?;
        if self.format == FileFormat::Yaml && out.iter().all(u8::is_ascii_whitespace) {
            // Nothing but the metadata: an empty mapping, as sops prints it.
            return Ok(Zeroizing::new(b"{}\n".to_vec()));
        }
        Ok(Zeroizing::new(out))
    }

    /// The comments' texts, decrypted, in document order.
    pub(crate) fn comment_texts(&self) -> Vec<String> {
        self.leaves
            .iter()
            .filter_map(|l| match l {
                Opened::Comment { text, .. } => Some(text.clone()),
                Opened::Value { .. } => None,
            })
            .collect()
    }

    /// The data key's recipients, per group.
    pub fn recipients(&self) -> Vec<Vec<String>> {
        self.meta
            .key_groups
            .iter()
            .map(|g| g.age.iter().map(|a| a.recipient.clone()).collect())
            .collect()
    }

    /// Writes the document again under `spec`, with a new data key when `new_key` is set
    /// (every value re-encrypted) or the same key re-wrapped otherwise. The new bytes are
    /// opened again with the data key and must hold the same values before they are returned.
    pub fn reseal(&self, spec: &KeySpec, new_key: bool) -> Result<Vec<u8>> {
        let foreign = self.meta.foreign();
        if !foreign.is_empty() {
            return Err(SopsError::ForeignKeys(foreign.join(", ")));
        }
        let key = if new_key {
            DataKey::generate()
        } else {
            self.key.clone()
        };
        let groups = wrap_groups(&key, spec)?;
        let threshold = if spec.groups.len() > 1 {
            spec.effective_threshold()
        } else {
            0
        };
        let text = std::str::from_utf8(&self.src).unwrap_or_default();
        let mut edits = Vec::new();
        let meta = if new_key {
            let mut h = mac_hasher(&self.meta.rules);
            for (leaf, o) in self.parsed.leaves.iter().zip(&self.leaves) {
                match (leaf, o) {
                    (Leaf::Value { path, span, .. }, Opened::Value { plain, encrypted }) => {
                        if !self.meta.rules.mac_only_encrypted || *encrypted {
                            h.update(plain.mac_bytes());
                        }
                        if o.is_resealed() {
                            let e = encrypt_value(&key, plain, &aad_for(path));
                            let raw = &text[span.clone()];
                            let new = replace_token(raw, &e).ok_or_else(|| {
                                SopsError::SelfCheck(format!(
                                    "no ENC token at `{}`",
                                    path.join(":")
                                ))
                            })?;
                            edits.push((span.clone(), new.into_bytes()));
                        }
                    }
                    (Leaf::Comment { path, span, .. }, Opened::Comment { text: t, .. })
                        if o.is_resealed() =>
                    {
                        let e = encrypt_bytes(&key, t.as_bytes(), "comment", &aad_for(path));
                        edits.push((
                            span.clone(),
                            format::comment_text(self.format, &e).into_bytes(),
                        ));
                    }
                    (Leaf::Value { path, span, .. }, Opened::Comment { text: t, .. })
                        if o.is_resealed() =>
                    {
                        let e = encrypt_bytes(&key, t.as_bytes(), "comment", &aad_for(path));
                        let new = replace_token(&text[span.clone()], &e).ok_or_else(|| {
                            SopsError::SelfCheck(format!("no ENC token at `{}`", path.join(":")))
                        })?;
                        edits.push((span.clone(), new.into_bytes()));
                    }
                    _ => {}
                }
            }
            finish_meta(
                &key,
                &hex_upper(&h.finalize()),
                groups,
                threshold,
                self.meta.rules.clone(),
            )
        } else {
            // Same key: values and MAC stay; only the wrapped keys change, and comments found
            // under another path than their own move to it, where sops reads them.
            for (leaf, o) in self.parsed.leaves.iter().zip(&self.leaves) {
                if let (
                    Leaf::Comment { path, span, .. },
                    Opened::Comment {
                        text: t,
                        moved: true,
                        ..
                    },
                ) = (leaf, o)
                {
                    let e = encrypt_bytes(&key, t.as_bytes(), "comment", &aad_for(path));
                    edits.push((
                        span.clone(),
                        format::comment_text(self.format, &e).into_bytes(),
                    ));
                }
            }
            Metadata {
                key_groups: groups,
                shamir_threshold: if spec.groups.len() > 1 { threshold } else { 0 },
                ..self.meta.clone()
            }
        };
        edits.extend(format::meta_edits(
            self.format,
            text,
            &self.parsed,
            Some(&meta.to_mval()),
        ));
        let out = format::splice(&self.src, edits)?;
        self_check(&out, self.format, &key, Some(self))?;
        Ok(out)
    }
}

/// Re-opens freshly written bytes with the data key; they must decrypt, pass the MAC and (when
/// `before` is given) hold the same values.
fn self_check(out: &[u8], fmt: FileFormat, key: &DataKey, before: Option<&OpenDoc>) -> Result<()> {
    let doc = open(out, fmt, Unlock::Key(key)).map_err(|e| SopsError::SelfCheck(e.to_string()))?;
    if let Some(b) = before {
        let vals = |d: &OpenDoc| -> Vec<Zeroizing<Vec<u8>>> {
            d.leaves
                .iter()
                .filter_map(|l| match l {
                    Opened::Value { plain, .. } => Some(plain.mac_bytes()),
                    _ => None,
                })
                .collect()
        };
        if vals(&doc) != vals(b) {
            return Err(SopsError::SelfCheck(
                "values changed while rewriting".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
pub(crate) mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    /// A fresh age identity, and a key spec with its recipient (shared by the sops tests).
    pub(crate) fn setup() -> (Identities, KeySpec) {
        let id = age::x25519::Identity::generate();
        let mut ids = Identities::empty();
        ids.add_text(id.to_string().expose_secret(), "test")
            .unwrap();
        let r = AgeRecipient::parse(&id.to_public().to_string()).unwrap();
        (ids, KeySpec::single(vec![r]))
    }

    #[test]
    fn yaml_round_trip_is_byte_identical() {
        let (ids, spec) = setup();
        let src = "# top\na: hello # inline\nn:\n  # c\n  b: 1\n  q: 'it''s'\n  m: |\n    l1\n    l2\nl: [x, 2]\nkeep_unencrypted: x\n";
        let enc = encrypt(src.as_bytes(), FileFormat::Yaml, &spec, Rules::default()).unwrap();
        let enc_text = String::from_utf8(enc.clone()).unwrap();
        assert!(!enc_text.contains("hello") && enc_text.contains("keep_unencrypted: x"));
        let doc = open(&enc, FileFormat::Yaml, Unlock::Identities(&ids)).unwrap();
        assert_eq!(
            String::from_utf8(doc.plaintext().unwrap().to_vec()).unwrap(),
            src
        );
        let rotated = doc.reseal(&spec, true).unwrap();
        let doc2 = open(&rotated, FileFormat::Yaml, Unlock::Identities(&ids)).unwrap();
        assert_eq!(
            String::from_utf8(doc2.plaintext().unwrap().to_vec()).unwrap(),
            src
        );
    }

    /// The `#ENC[...]` token of the first encrypted comment.
    fn comment_token(text: &str) -> &str {
        let at = text.find("#ENC[").unwrap() + 1;
        &text[at..at + text[at..].find(']').unwrap() + 1]
    }

    #[test]
    fn comments_under_another_path_are_read_and_a_rewrap_moves_them_home() {
        let (ids, spec) = setup();
        let src = "a:\n  b:\n    c: x\n    # foot of a:b\nd: z\n";
        let enc = encrypt(src.as_bytes(), FileFormat::Yaml, &spec, Rules::default()).unwrap();
        let text = String::from_utf8(enc.clone()).unwrap();
        let key = open(&enc, FileFormat::Yaml, Unlock::Identities(&ids))
            .unwrap()
            .key;
        let tok = comment_token(&text);
        assert!(
            decrypt_bytes(&key, tok, "a:b:").is_ok(),
            "sops reads it under a:b:"
        );
        // As kiwictl wrote it before: under the top level, where sops does not look.
        let legacy = text.replacen(
            tok,
            &encrypt_bytes(&key, b" foot of a:b", "comment", ":"),
            1,
        );
        let doc = open(
            legacy.as_bytes(),
            FileFormat::Yaml,
            Unlock::Identities(&ids),
        )
        .unwrap();
        assert_eq!(&doc.plaintext().unwrap()[..], src.as_bytes());
        let rewrapped = String::from_utf8(doc.reseal(&spec, false).unwrap()).unwrap();
        let (bytes, _) = decrypt_bytes(&key, comment_token(&rewrapped), "a:b:").unwrap();
        assert_eq!(&bytes[..], b" foot of a:b");
        // Under another data key it is an error that names the line, not `#ENC[...]` output.
        let other = DataKey::generate();
        let stale = text.replacen(tok, &encrypt_bytes(&other, b" x", "comment", "a:b:"), 1);
        assert!(matches!(
            open(stale.as_bytes(), FileFormat::Yaml, Unlock::Identities(&ids)),
            Err(SopsError::CommentUnreadable { line: 4 })
        ));
    }

    #[test]
    fn tampering_is_detected() {
        let (ids, spec) = setup();
        let enc = encrypt(b"a: x\nb: y\n", FileFormat::Yaml, &spec, Rules::default()).unwrap();
        let text = String::from_utf8(enc).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let (va, vb) = (&lines[0][3..], &lines[1][3..]);
        let swapped = text
            .replacen(va, "@@", 1)
            .replacen(vb, va, 1)
            .replacen("@@", vb, 1);
        assert!(matches!(
            open(
                swapped.as_bytes(),
                FileFormat::Yaml,
                Unlock::Identities(&ids)
            ),
            Err(SopsError::ValueTampered { .. })
        ));
        // Without the MAC check a swapped value is refused all the same ...
        assert!(matches!(
            open_ignoring_mac(
                swapped.as_bytes(),
                FileFormat::Yaml,
                Unlock::Identities(&ids)
            ),
            Err(SopsError::ValueTampered { .. })
        ));
        // ... while a removed value opens, and only without the check.
        let removed: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
        let unlock = Unlock::Identities(&ids);
        assert!(matches!(
            open(removed.as_bytes(), FileFormat::Yaml, unlock),
            Err(SopsError::MacMismatch)
        ));
        let doc = open_ignoring_mac(
            removed.as_bytes(),
            FileFormat::Yaml,
            Unlock::Identities(&ids),
        )
        .unwrap();
        let values: Vec<_> = doc.values().collect();
        assert_eq!(values.len(), 1);
        assert_eq!(
            (values[0].0, values[0].1),
            (&["b".to_string()][..], &Plain::str("y"))
        );
    }
}
