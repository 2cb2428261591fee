//! INI files as sops 3.11 reads and writes them (its `stores/ini`, on go-ini v1): sections of
//! string values, `;`/`#` comment lines that belong to the key or section header after them,
//! keys before any header in the `DEFAULT` section, and the metadata flattened (as for dotenv)
//! into a last `[sops]` section.
//!
//! sops does not keep an INI file's layout: it writes the whole file again, keys aligned on
//! ` = ` within each section, a blank line between sections, each comment as `; text` before
//! its key, values quoted as go-ini quotes them. So [`canonical`] first puts a plaintext in
//! that layout, and values and comments are then spliced in place like other formats'; a file
//! sops wrote is already in it, so its decrypted form is the bytes sops prints. Like sops, a
//! comment after the last key of the file and inline comments after values are dropped.
//!
//! Refused with a clear error rather than guessed: values continued with a trailing `\` or in
//! backquotes over several lines, quoted key names, keys without `=`, and a key twice in one
//! section. (`"""` values over several lines are read as go-ini reads them: sops writes one
//! for a value holding a line break, and sops 3.13.0/3.13.1 wrote its metadata so.)

use std::ops::Range;

use super::emit::{Comments, Place};
use super::{Ctx, Leaf, MetaBlock, Parsed};
use crate::sops::error::{Result, SopsError};
use crate::sops::metadata::MVal;
use crate::sops::path::{Node, Step};
use crate::sops::set::Change;
use crate::sops::value::Plain;

/// go-ini's name for the keys before any section header.
const DEFAULT_SECTION: &str = "DEFAULT";
/// The section sops keeps its metadata in.
const SOPS_SECTION: &str = "sops";

/// A comment: its text (sops' `stripCommentChar` applied) and the span of its lines.
struct Comment {
    text: String,
    span: Range<usize>,
    /// It ends with a comment after a value on its key's line (go-ini keeps it with the key).
    inline: bool,
}

/// One `key = value` line.
struct Entry {
    comment: Option<Comment>,
    key: String,
    value: String,
    /// The value as written (quotes included).
    span: Range<usize>,
}

/// One section, in file order.
struct Section {
    name: String,
    comment: Option<Comment>,
    entries: Vec<Entry>,
    /// From its first line (comment or header) to the next section's first line.
    span: Range<usize>,
    /// Where its header line starts (none for the implicit `DEFAULT`).
    header: Option<usize>,
}

fn malformed(detail: impl Into<String>) -> SopsError {
    SopsError::Malformed {
        format: "ini",
        detail: detail.into(),
    }
}

fn unsupported(detail: impl Into<String>) -> SopsError {
    SopsError::Unsupported {
        format: "ini",
        detail: detail.into(),
    }
}

/// sops' `stripCommentChar`.
fn strip_comment_char(c: &str) -> String {
    if c.starts_with(';') {
        c.trim_start_matches([';', ' ']).to_string()
    } else if c.starts_with('#') {
        c.trim_start_matches(['#', ' ']).to_string()
    } else {
        c.to_string()
    }
}

/// A value as go-ini's reader gives it, from the text after the `=`: `(value, span of the
/// value token relative to `raw`, inline comment)`.
fn read_value(raw: &str, line_no: usize) -> Result<(String, Range<usize>, Option<String>)> {
    let lead = raw.len() - raw.trim_start().len();
    let v = raw.trim_start();
    if v.is_empty() {
        return Ok((String::new(), raw.len()..raw.len(), None));
    }
    let end = lead + v.trim_end().len();
    for q in ["\"\"\"", "`"] {
        if v.starts_with(q) && (q == "`" || v.len() > 3) {
            let inner = &v[q.len()..];
            let Some(close) = inner.rfind(q) else {
                return Err(unsupported(format!(
                    "line {line_no}: a `{q}` value continued over several lines; write it on one \
                     line"
                )));
            };
            return Ok((inner[..close].to_string(), lead..end, None));
        }
    }
    let mut t = v.trim_end();
    if t.ends_with('\\') {
        return Err(unsupported(format!(
            "line {line_no}: a value continued on the next line (`\\`); write it on one line"
        )));
    }
    let mut inline = None;
    if let Some(i) = t.find(['#', ';']) {
        inline = Some(t[i..].to_string());
        t = t[..i].trim_end();
    }
    let span = lead..lead + t.len();
    for q in ['\'', '"'] {
        if t.len() >= 2 && t.starts_with(q) && t.ends_with(q) && t.matches(q).count() == 2 {
            return Ok((t[1..t.len() - 1].to_string(), span, inline));
        }
    }
    Ok((t.to_string(), span, inline))
}

/// Reads an INI file as go-ini does (the subset sops files use).
fn read(src: &str) -> Result<Vec<Section>> {
    let mut sections = vec![Section {
        name: DEFAULT_SECTION.into(),
        comment: None,
        entries: vec![],
        span: 0..src.len(),
        header: None,
    }];
    let mut pending: Option<(String, Range<usize>)> = None;
    let mut pos = 0;
    let mut lines = src.split_inclusive('\n').enumerate();
    while let Some((n, raw)) = lines.next() {
        let line_no = n + 1;
        let start = pos;
        pos += raw.len();
        let content = raw.trim_end_matches(['\n', '\r']);
        let lead = content.len() - content.trim_start().len();
        let t = &content[lead..];
        if t.is_empty() {
            continue;
        }
        let take_comment = |p: &mut Option<(String, Range<usize>)>, inline: bool| {
            p.take().map(|(text, span)| Comment {
                text: strip_comment_char(text.trim()),
                span,
                inline,
            })
        };
        if t.starts_with(['#', ';']) {
            match &mut pending {
                Some((text, span)) => {
                    text.push('\n');
                    text.push_str(t);
                    span.end = start + content.trim_end().len();
                }
                None => {
                    let span = start + lead..start + content.trim_end().len();
                    pending = Some((t.to_string(), span));
                }
            }
            continue;
        }
        if let Some(rest) = t.strip_prefix('[') {
            let close = rest
                .find(']')
                .ok_or_else(|| malformed(format!("line {line_no}: unclosed section header")))?;
            let first = pending.as_ref().map_or(start, |(_, s)| {
                src[..s.start].rfind('\n').map_or(0, |i| i + 1)
            });
            if let Some(last) = sections.last_mut() {
                last.span.end = first;
            }
            sections.push(Section {
                name: rest[..close].trim().to_string(),
                comment: take_comment(&mut pending, false),
                entries: vec![],
                span: first..src.len(),
                header: Some(start),
            });
            continue;
        }
        let d = t.find(['=', ':']).ok_or_else(|| {
            malformed(format!(
                "line {line_no}: `{}` has no `=`; write `key = value`",
                t.split_whitespace().next().unwrap_or_default()
            ))
        })?;
        let key = t[..d].trim();
        if key.starts_with(['"', '`']) {
            return Err(unsupported(format!(
                "line {line_no}: a quoted key name; use a plain one"
            )));
        }
        let value_at = start + lead + d + 1;
        let raw_value = &t[d + 1..];
        let vt = raw_value.trim_start();
        let (value, span, inline) =
            if vt.len() > 3 && vt.starts_with("\"\"\"") && !vt[3..].contains("\"\"\"") {
                // go-ini's multi-line value: every line up to the one holding the closing quotes.
                let open = value_at + raw_value.len() - vt.len();
                let mut value = vt[3..].trim_end_matches(['\n', '\r']).to_string();
                loop {
                    let Some((_, next)) = lines.next() else {
                        return Err(malformed(format!(
                            "line {line_no}: a \"\"\" value without its closing \"\"\""
                        )));
                    };
                    let next_start = pos;
                    pos += next.len();
                    let text = next.trim_end_matches(['\n', '\r']);
                    value.push('\n');
                    if let Some(close) = text.rfind("\"\"\"") {
                        value.push_str(&text[..close]);
                        let end = next_start + close + 3;
                        break (value, open - value_at..end - value_at, None);
                    }
                    value.push_str(text);
                }
            } else {
                read_value(raw_value, line_no)?
            };
        if let Some(c) = &inline {
            // go-ini adds a comment after the value to the comment lines before the key.
            let end = start + content.len();
            match &mut pending {
                Some((text, s)) => {
                    text.push('\n');
                    text.push_str(c);
                    s.end = end;
                }
                None => pending = Some((c.clone(), end - c.len()..end)),
            }
        }
        let comment = take_comment(&mut pending, inline.is_some());
        // The loop starts with DEFAULT, so there is always a last section.
        let Some(section) = sections.last_mut() else {
            continue;
        };
        if section.entries.iter().any(|e| e.key == key) {
            return Err(unsupported(format!(
                "line {line_no}: `{key}` appears twice in [{}]; keep one",
                section.name
            )));
        }
        section.entries.push(Entry {
            comment,
            key: key.to_string(),
            value,
            span: value_at + span.start..value_at + span.end,
        });
    }
    Ok(sections)
}

/// go-ini's quoting of a value it writes.
fn quote(v: &str) -> String {
    if v.contains(['\n', '`']) {
        format!("\"\"\"{v}\"\"\"")
    } else if v.contains(['#', ';']) {
        format!("`{v}`")
    } else if v.trim() != v {
        format!("\"{v}\"")
    } else {
        v.to_string()
    }
}

/// go-ini's lines for a comment.
pub(crate) fn comment_lines(text: &str) -> String {
    text.split('\n')
        .map(|l| match l.chars().next() {
            Some(c @ ('#' | ';')) => format!("{c} {}\n", l[1..].trim()),
            _ => format!("; {}\n", l.trim()),
        })
        .collect::<String>()
        .trim_end_matches('\n')
        .to_string()
}

/// A key, its value and its comment.
type Item = (String, String, Option<String>);
/// A section: its name, its comment and its items.
type Sect = (String, Option<String>, Vec<Item>);

/// What sops writes for a list of sections.
fn write(sections: &[Sect]) -> String {
    let mut out = String::new();
    let last = sections.len().saturating_sub(1);
    for (i, (name, comment, entries)) in sections.iter().enumerate() {
        if let Some(c) = comment {
            out.push_str(&comment_lines(c));
            out.push('\n');
        }
        if i == 0 && name.eq_ignore_ascii_case(DEFAULT_SECTION) {
            if entries.is_empty() {
                continue;
            }
        } else {
            out.push_str(&format!("[{name}]\n"));
        }
        let align = entries.iter().map(|(k, _, _)| k.len()).max().unwrap_or(0);
        for (k, v, c) in entries {
            if let Some(c) = c {
                out.push_str(&comment_lines(c));
                out.push('\n');
            }
            out.push_str(&format!("{k:align$} = {}\n", quote(v)));
        }
        if i != last {
            out.push('\n');
        }
    }
    out
}

/// The sections of `src` with their comments, as sops holds them.
fn sects(src: &str) -> Result<Vec<Sect>> {
    Ok(read(src)?
        .into_iter()
        .map(|s| {
            (
                s.name,
                s.comment.map(|c| c.text),
                s.entries
                    .into_iter()
                    .map(|e| (e.key, e.value, e.comment.map(|c| c.text)))
                    .collect(),
            )
        })
        .collect())
}

/// The plaintext in the layout sops writes INI in (see the module doc).
pub(crate) fn canonical(src: &str) -> Result<String> {
    Ok(write(&sects(src)?))
}

/// `set`/`unset` on a plaintext INI document, as sops does it on its tree: a changed value
/// keeps its place and comment, a new key goes to the end of its section, a new section to
/// the end of the file, a removed key takes its comment with it; the file is written whole.
pub(crate) fn apply(src: &str, change: Change) -> Result<String> {
    let mut doc = sects(src)?;
    let bad = |d: String| SopsError::BadPath(d);
    let scalar = |n: &Node, path: &[String]| match n {
        Node::Scalar(p) => value_string(p, path),
        _ => Err(bad(format!(
            "`{}`: an INI value must be a string, number or boolean",
            path.join(".")
        ))),
    };
    let key = |s: &Step| match s {
        Step::Key(k) => Ok(k.clone()),
        Step::Index(i) => Err(bad(format!("[{i}]: an INI file has no lists"))),
    };
    match change {
        Change::Set(path, value) => match path.as_slice() {
            [s] => {
                let name = key(s)?;
                let Node::Map(entries) = &value else {
                    return Err(bad(format!(
                        "[\"{name}\"]: an INI section must be a mapping"
                    )));
                };
                let items = entries
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), scalar(v, &[name.clone(), k.clone()])?, None)))
                    .collect::<Result<Vec<_>>>()?;
                match doc.iter_mut().find(|(n, _, _)| *n == name) {
                    Some(sect) => sect.2 = items,
                    None => doc.push((name, None, items)),
                }
            }
            [s, k] => {
                let (name, k) = (key(s)?, key(k)?);
                let v = scalar(&value, &[name.clone(), k.clone()])?;
                let pos = match doc.iter().position(|(n, _, _)| *n == name) {
                    Some(p) => p,
                    None => {
                        doc.push((name, None, vec![]));
                        doc.len() - 1
                    }
                };
                let items = &mut doc[pos].2;
                match items.iter_mut().find(|(x, _, _)| *x == k) {
                    Some(item) => item.1 = v,
                    None => items.push((k, v, None)),
                }
            }
            _ => {
                return Err(bad(
                    "an INI path is [\"section\"] or [\"section\"][\"key\"]".into(),
                ))
            }
        },
        Change::Unset(path) => {
            let missing = |what: String| bad(format!("component {what} not found"));
            match path.as_slice() {
                [s] => {
                    let name = key(s)?;
                    let pos = doc
                        .iter()
                        .position(|(n, _, _)| *n == name)
                        .ok_or_else(|| missing(format!("[\"{name}\"]")))?;
                    doc.remove(pos);
                }
                [s, k] => {
                    let (name, k) = (key(s)?, key(k)?);
                    let sect = doc
                        .iter_mut()
                        .find(|(n, _, _)| *n == name)
                        .ok_or_else(|| missing(format!("[\"{name}\"]")))?;
                    let pos = sect
                        .2
                        .iter()
                        .position(|(x, _, _)| *x == k)
                        .ok_or_else(|| missing(format!("[\"{k}\"]")))?;
                    sect.2.remove(pos);
                }
                _ => {
                    return Err(bad(
                        "an INI path is [\"section\"] or [\"section\"][\"key\"]".into(),
                    ))
                }
            }
        }
    }
    Ok(write(&doc))
}

/// Parses an INI file into leaves (values and comments) and its `[sops]` section.
pub(crate) fn parse(src: &str) -> Result<Parsed> {
    let sections = read(src)?;
    let mut leaves = Vec::new();
    let mut meta = None;
    for s in &sections {
        if s.name == SOPS_SECTION && s.header.is_some() {
            let lines: Vec<(String, String)> = s
                .entries
                .iter()
                .map(|e| (e.key.clone(), e.value.replace("\\n", "\n")))
                .collect();
            let header = s.header.unwrap_or(s.span.start);
            // Removing the section also removes the blank line sops puts before it.
            let before = src[..s.span.start].trim_end_matches('\n').len();
            let remove_from = if before == 0 { 0 } else { before + 1 };
            meta = Some(MetaBlock {
                value: super::dotenv::unflatten(&lines),
                spans: std::iter::once(header..s.span.end).collect(),
                remove: std::iter::once(remove_from..s.span.end).collect(),
            });
            continue;
        }
        if s.entries
            .iter()
            .any(|e| e.comment.as_ref().is_some_and(|c| c.inline))
        {
            return Err(unsupported(format!(
                "[{}]: a comment after a value in an encrypted file (sops never writes one); \
                 move it to its own line above the key",
                s.name
            )));
        }
        let path = vec![s.name.clone()];
        if let Some(c) = &s.comment {
            leaves.push(Leaf::Comment {
                path: path.clone(),
                span: c.span.clone(),
                text: c.text.clone(),
            });
        }
        for e in &s.entries {
            if let Some(c) = &e.comment {
                leaves.push(Leaf::Comment {
                    path: path.clone(),
                    span: c.span.clone(),
                    text: c.text.clone(),
                });
            }
            leaves.push(Leaf::Value {
                path: vec![s.name.clone(), e.key.clone()],
                span: e.span.clone(),
                value: Plain::str(e.value.clone()),
                ctx: Ctx::Ini,
            });
        }
    }
    Ok(Parsed { leaves, meta })
}

/// INI text for a decrypted value (strings as they are; other types as sops' `ValToString`),
/// quoted as go-ini quotes it.
pub(crate) fn plain_text(v: &Plain, path: &[String]) -> Result<String> {
    Ok(quote(&value_string(v, path)?))
}

fn value_string(v: &Plain, path: &[String]) -> Result<String> {
    match v {
        Plain::Str(s) => Ok(s.to_string()),
        Plain::Null => Ok("<nil>".into()),
        other => super::dotenv::plain_text(other, path),
    }
}

/// The `[sops]` section for `m`.
pub(crate) fn meta_text(m: &MVal) -> String {
    // sops 3.11 writes these keys in Go's random map order; 3.13 sorts them, and so do we.
    let mut pairs = super::dotenv::flat_pairs(m);
    pairs.sort();
    write(&[(
        SOPS_SECTION.to_string(),
        None,
        pairs.into_iter().map(|(k, v)| (k, v, None)).collect(),
    )])
}

/// A plaintext INI document as sections of strings (comments left out; see
/// [`comment_places`]). Like sops's tree, it always starts with `DEFAULT`, empty or not.
pub(crate) fn parse_tree(src: &[u8]) -> Result<Node> {
    let text = std::str::from_utf8(src).map_err(|_| malformed("not UTF-8"))?;
    Ok(Node::Map(
        read(text)?
            .into_iter()
            .filter(|s| s.name != SOPS_SECTION || s.header.is_none())
            .map(|s| {
                let entries = s
                    .entries
                    .into_iter()
                    .map(|e| (e.key, Node::Scalar(Plain::str(e.value))))
                    .collect();
                (s.name, Node::Map(entries))
            })
            .collect(),
    ))
}

/// Where sops's tree holds the comments of an INI document: a section's comment first in the
/// section, a key's comment right after the key.
pub(crate) fn comment_places(src: &str) -> Result<Vec<Place>> {
    let mut out = Vec::new();
    for s in read(src)? {
        let path = vec![Step::Key(s.name.clone())];
        if let Some(c) = s.comment {
            out.push((path.clone(), 0, c.text));
        }
        for (j, e) in s.entries.into_iter().enumerate() {
            if let Some(c) = e.comment {
                out.push((path.clone(), j + 1, c.text));
            }
        }
    }
    Ok(out)
}

/// A tree as sops writes it as INI: every top-level value must be a mapping of scalars. A
/// section's first comment goes before its header; a comment after a key goes before that key
/// (the last one wins), as sops's encoder attaches them; others are dropped, as there.
pub(crate) fn emit_tree(n: &Node, comments: &Comments) -> Result<String> {
    let cannot = |detail: &str| SopsError::CannotEmit {
        format: "ini",
        detail: detail.into(),
    };
    let Node::Map(sections) = n else {
        return Err(cannot("the document must be a mapping of sections"));
    };
    let mut out = Vec::new();
    for (name, body) in sections {
        let Node::Map(entries) = body else {
            return Err(cannot(&format!(
                "`{name}` is not a mapping: section values should always be mappings"
            )));
        };
        let path = [Step::Key(name.clone())];
        let mut items: Vec<Item> = Vec::new();
        for (i, (k, v)) in entries.iter().enumerate() {
            let Node::Scalar(p) = v else {
                return Err(cannot(&format!(
                    "`{name}.{k}` is a list or mapping: INI holds only strings"
                )));
            };
            let comment = comments.at(&path, i + 1).last().map(str::to_string);
            items.push((
                k.clone(),
                value_string(p, &[name.clone(), k.clone()])?,
                comment,
            ));
        }
        let comment = comments.at(&path, 0).next().map(str::to_string);
        out.push((name.clone(), comment, items));
    }
    Ok(write(&out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn canonical_is_the_layout_sops_writes() {
        let src = "top=1\n; about the section\n[s]\nk=v\n# about long\n;   two\nlonger_key =  `a;b`  \nq = \" x \"\nc = 1 ; inline\n";
        assert_eq!(
            canonical(src).unwrap(),
            "top = 1\n\n; about the section\n[s]\nk          = v\n; about long\n; two\nlonger_key = `a;b`\nq          = \" x \"\n; inline\nc          = 1\n"
        );
    }

    #[test]
    fn the_sops_section_is_metadata() {
        let src =
            "[a]\nk = ENC[x]\n\n[sops]\nversion  = 3.11.0\nage__list_0__map_enc = l1\\nl2\\n\n";
        let p = parse(src).unwrap();
        let m = p.meta.unwrap();
        assert_eq!(m.remove.first(), Some(&(15..src.len())));
        assert_eq!(
            m.value,
            MVal::Map(vec![
                ("version".into(), MVal::Str("3.11.0".into())),
                (
                    "age".into(),
                    MVal::List(vec![MVal::Map(vec![(
                        "enc".into(),
                        MVal::Str("l1\nl2\n".into())
                    )])])
                ),
            ])
        );
        assert_eq!(p.leaves.len(), 1);
    }

    #[test]
    fn multi_line_values_as_go_ini_reads_them() {
        let src = "[a]\nk = \"\"\"l1\n\nl3\"\"\"\nz = 1\n";
        let p = parse(src).unwrap();
        let Leaf::Value { value, span, .. } = &p.leaves[0] else {
            panic!("not a value")
        };
        assert_eq!(*value, Plain::str("l1\n\nl3"));
        assert_eq!(&src[span.clone()], "\"\"\"l1\n\nl3\"\"\"");
        assert_eq!(
            canonical(src).unwrap(),
            "[a]\nk = \"\"\"l1\n\nl3\"\"\"\nz = 1\n"
        );
        assert!(parse("[a]\nk = \"\"\"x\n").is_err());
    }

    #[test]
    fn unsupported_layouts_are_refused() {
        assert!(parse("[a]\nk = `x\ny`\n").is_err());
        assert!(parse("[a]\nk = x\\\n").is_err());
        assert!(parse("[a]\nk\n").is_err());
        assert!(parse("[a]\nk = 1\nk = 2\n").is_err());
    }
}
