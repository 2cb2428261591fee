//! dotenv files as sops reads them: `KEY=value` lines (value taken verbatim, `\n` escapes),
//! `#` comment lines, and the metadata flattened into `sops_…` keys.

use std::ops::Range;

use super::{Ctx, Leaf, MetaBlock, Parsed};
use crate::sops::error::{Result, SopsError};
use crate::sops::metadata::MVal;
use crate::sops::path::Node;
use crate::sops::value::Plain;

/// Parses a dotenv file.
pub(crate) fn parse(src: &str) -> Result<Parsed> {
    let mut leaves = Vec::new();
    let mut meta_lines: Vec<(String, String)> = Vec::new();
    let mut spans: Vec<Range<usize>> = Vec::new();
    let mut pos = 0;
    for raw in src.split_inclusive('\n') {
        let start = pos;
        pos += raw.len();
        let line = raw.strip_suffix('\n').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        if let Some(text) = line.strip_prefix('#') {
            leaves.push(Leaf::Comment {
                path: vec![],
                span: start..start + line.len(),
                text: text.to_string(),
            });
            continue;
        }
        let eq = line.find('=').ok_or_else(|| SopsError::Malformed {
            format: "dotenv",
            detail: format!("line without `=` at byte {start}"),
        })?;
        let key = &line[..eq];
        let value = line[eq + 1..].replace("\\n", "\n");
        if let Some(k) = key.strip_prefix("sops_") {
            meta_lines.push((k.to_string(), value));
            spans.push(start..pos);
            continue;
        }
        if !value.is_empty() {
            leaves.push(Leaf::Value {
                path: vec![key.to_string()],
                span: start + eq + 1..start + line.len(),
                value: Plain::str(value),
                ctx: Ctx::Dotenv,
            });
        }
    }
    let meta = if meta_lines.is_empty() {
        None
    } else {
        Some(MetaBlock {
            value: unflatten(&meta_lines),
            spans: spans.clone(),
            remove: spans,
        })
    };
    Ok(Parsed { leaves, meta })
}

enum Tok {
    Map(String),
    List(usize),
}

fn tokenize(path: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut rest = path;
    let mut kind_map = true;
    loop {
        let next = [("__map_", true), ("__list_", false)]
            .iter()
            .filter_map(|(sep, m)| rest.find(sep).map(|i| (i, sep.len(), *m)))
            .min_by_key(|x| x.0);
        let (piece, after) = match next {
            Some((i, l, m)) => {
                let p = &rest[..i];
                let r = &rest[i + l..];
                let tok = if kind_map {
                    Tok::Map(p.to_string())
                } else {
                    Tok::List(p.parse().unwrap_or(0))
                };
                kind_map = m;
                (tok, Some(r))
            }
            None => (
                if kind_map {
                    Tok::Map(rest.to_string())
                } else {
                    Tok::List(rest.parse().unwrap_or(0))
                },
                None,
            ),
        };
        toks.push(piece);
        match after {
            Some(r) => rest = r,
            None => return toks,
        }
    }
}

fn place(root: &mut MVal, toks: &[Tok], value: &str) {
    let Some((first, rest)) = toks.split_first() else {
        *root = MVal::Str(value.to_string());
        return;
    };
    match first {
        Tok::Map(k) => {
            if !matches!(root, MVal::Map(_)) {
                *root = MVal::Map(Vec::new());
            }
            if let MVal::Map(m) = root {
                if !m.iter().any(|(x, _)| x == k) {
                    m.push((k.clone(), MVal::Str(String::new())));
                }
                if let Some((_, v)) = m.iter_mut().find(|(x, _)| x == k) {
                    place(v, rest, value);
                }
            }
        }
        Tok::List(i) => {
            if !matches!(root, MVal::List(_)) {
                *root = MVal::List(Vec::new());
            }
            if let MVal::List(l) = root {
                while l.len() <= *i {
                    l.push(MVal::Str(String::new()));
                }
                place(&mut l[*i], rest, value);
            }
        }
    }
}

/// The metadata from flattened `(key, value)` pairs (sops' `UnflattenMetadata`, the keys
/// without their `sops_` prefix, `\n` escapes already undone).
pub(crate) fn unflatten(lines: &[(String, String)]) -> MVal {
    let mut root = MVal::Map(Vec::new());
    for (k, v) in lines {
        place(&mut root, &tokenize(k), v);
    }
    root
}

fn flatten(v: &MVal, prefix: &str, out: &mut Vec<(String, String)>) {
    match v {
        MVal::Map(m) => {
            for (k, v) in m {
                flatten(v, &format!("{prefix}__map_{k}"), out);
            }
        }
        MVal::List(l) => {
            for (i, v) in l.iter().enumerate() {
                flatten(v, &format!("{prefix}__list_{i}"), out);
            }
        }
        MVal::Str(s) => out.push((prefix.to_string(), s.replace('\n', "\\n"))),
        MVal::Int(i) => out.push((prefix.to_string(), i.to_string())),
        MVal::Bool(b) => out.push((prefix.to_string(), b.to_string())),
    }
}

/// The metadata flattened as sops flattens it for flat formats (`FlattenMetadata`, then
/// `EncodeNonStrings` and `EncodeNewLines`): `age__list_0__map_enc` and so on, in the
/// metadata's order, line breaks written `\n`.
pub(crate) fn flat_pairs(m: &MVal) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let MVal::Map(entries) = m {
        for (k, v) in entries {
            flatten(v, k, &mut out);
        }
    }
    out
}

/// The metadata as `sops_…=` lines.
pub(crate) fn meta_text(m: &MVal) -> String {
    flat_pairs(m)
        .into_iter()
        .map(|(k, v)| format!("sops_{k}={v}\n"))
        .collect()
}

/// dotenv text for a decrypted value.
pub(crate) fn plain_text(v: &Plain, path: &[String]) -> Result<String> {
    Ok(match v {
        Plain::Str(s) => s.replace('\n', "\\n"),
        Plain::Bytes(_) => {
            return Err(SopsError::BadValue {
                path: path.join(":"),
                detail: "value is not UTF-8 text".into(),
            })
        }
        Plain::Null => String::new(),
        Plain::Int(i) => i.to_string(),
        Plain::Float(f) => crate::sops::value::go_val_to_string_float(*f),
        Plain::Bool(b) => b.to_string(),
        Plain::Time(t) => t.clone(),
    })
}

/// A plaintext dotenv document as a flat mapping of strings (comments and `sops_` lines left out).
pub(crate) fn parse_tree(src: &[u8]) -> Result<Node> {
    let text = std::str::from_utf8(src).map_err(|_| SopsError::Malformed {
        format: "dotenv",
        detail: "not UTF-8".into(),
    })?;
    let mut m = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| SopsError::Malformed {
            format: "dotenv",
            detail: "a line without `=`".into(),
        })?;
        if !k.starts_with("sops_") {
            m.push((
                k.to_string(),
                Node::Scalar(Plain::str(v.replace("\\n", "\n"))),
            ));
        }
    }
    Ok(Node::Map(m))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn metadata_flattening_round_trips() {
        let m = MVal::Map(vec![
            (
                "age".into(),
                MVal::List(vec![MVal::Map(vec![
                    ("recipient".into(), MVal::Str("r".into())),
                    ("enc".into(), MVal::Str("a\nb\n".into())),
                ])]),
            ),
            ("version".into(), MVal::Str("3.11.0".into())),
        ]);
        let text = meta_text(&m);
        assert!(text.contains("sops_age__list_0__map_enc=a\\nb\\n\n"));
        let p = parse(&format!("A=1\n{text}")).unwrap();
        assert_eq!(p.meta.unwrap().value, m);
    }
}
