//! Writing a whole plaintext tree the way sops writes each format: yaml.v3 with 4-space
//! indentation, Go's `encoding/json` with tabs, `KEY=value` lines, and go-ini. Used where sops
//! prints a document it re-encoded (`--output-type`, `--extract` of a subtree). Comments go
//! where sops's tree holds them ([`Comments`]): YAML, dotenv and INI print them, JSON has none.

use zeroize::Zeroizing;

use super::yaml_write;
use super::{FileFormat, Leaf};
use crate::sops::error::{Result, SopsError};
use crate::sops::path::{Node, Step};
use crate::sops::value::{go_format_float_json, Plain};

/// Where a comment goes: in the mapping or list at a path, before the entry at an index (the
/// number of entries: after the last), and its text.
pub(crate) type Place = (Vec<Step>, usize, String);

/// The comments of a plaintext document, where sops's tree holds them: in the mapping or list
/// at a path, before the entry at an index. (sops keeps a comment in a list as a list item;
/// here it only decides where the comment is printed.)
#[derive(Debug, Clone, Default)]
pub struct Comments(Vec<Place>);

impl Comments {
    /// The comments of `plain` (a document of `fmt` whose tree is `tree`); none when they
    /// cannot be placed.
    pub fn parse(plain: &[u8], fmt: FileFormat, tree: &Node) -> Comments {
        let Ok(text) = std::str::from_utf8(plain) else {
            return Comments::default();
        };
        match fmt {
            FileFormat::Dotenv => {
                let mut keys = 0;
                let mut v = Vec::new();
                for line in text.lines().filter(|l| !l.is_empty()) {
                    match line.strip_prefix('#') {
                        Some(c) => v.push((vec![], keys, c.to_string())),
                        None => keys += 1,
                    }
                }
                Comments(v)
            }
            FileFormat::Ini => Comments(super::ini::comment_places(text).unwrap_or_default()),
            FileFormat::Yaml => Comments(yaml_places(text, tree)),
            FileFormat::Json | FileFormat::Binary => Comments::default(),
        }
    }

    /// The same comments with the texts `texts` (in document order), when there are as many:
    /// the decrypted comments of an INI file, whose plaintext holds them rewritten.
    pub fn retext(self, texts: &[String]) -> Comments {
        if texts.len() != self.0.len() {
            return self;
        }
        Comments(
            self.0
                .into_iter()
                .zip(texts)
                .map(|((p, i, _), t)| (p, i, t.clone()))
                .collect(),
        )
    }

    /// The comments of the part at `path`, placed relative to it.
    pub fn under(&self, path: &[Step]) -> Comments {
        Comments(
            self.0
                .iter()
                .filter_map(|(p, i, t)| {
                    p.strip_prefix(path)
                        .map(|rest| (rest.to_vec(), *i, t.clone()))
                })
                .collect(),
        )
    }

    /// The comments before entry `index` of the mapping or list at `path`.
    pub(crate) fn at<'a>(
        &'a self,
        path: &'a [Step],
        index: usize,
    ) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |(p, i, _)| p.as_slice() == path && *i == index)
            .map(|(_, _, t)| t.as_str())
    }
}

/// Where the comments of a YAML document sit: a comment's collection comes from the engine's
/// parser; in a mapping, its index is the number of that mapping's keys met before it; in a
/// list, see [`list_place`].
fn yaml_places(text: &str, tree: &Node) -> Vec<Place> {
    let Ok(parsed) = super::yaml::parse(text) else {
        return vec![];
    };
    let mut seen: Vec<Vec<String>> = Vec::new();
    let mut out = Vec::new();
    for leaf in &parsed.leaves {
        match leaf {
            Leaf::Value { path, .. } => {
                for n in 1..=path.len() {
                    if !seen.iter().any(|s| s.as_slice() == &path[..n]) {
                        seen.push(path[..n].to_vec());
                    }
                }
            }
            Leaf::Comment {
                path,
                text: t,
                span,
            } => {
                let steps: Vec<Step> = path.iter().cloned().map(Step::Key).collect();
                match tree.get(&steps) {
                    Ok(Node::Map(_)) => {
                        let index = seen
                            .iter()
                            .filter(|s| s.len() == path.len() + 1 && s.starts_with(path))
                            .count();
                        out.push((steps, index, t.clone()));
                    }
                    Ok(Node::List(items)) => {
                        let first = parsed.leaves.iter().find_map(|l| match l {
                            Leaf::Value { path: p, span, .. } if p.starts_with(path) => {
                                Some(span.start)
                            }
                            _ => None,
                        });
                        if let Some(p) = first.and_then(|f| list_place(text, f, span.start, items))
                        {
                            let (mut at, index) = p;
                            at.splice(0..0, steps);
                            out.push((at, index, t.clone()));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// Where a comment at byte `at` goes in a block list whose first value is at byte `first`:
/// sops keeps it in the list when it is at the items' `-` column (before the next item), or
/// in the mapping item it is indented into (after that mapping's keys above it). Returns the
/// path below the list and the index; `None` for a layout this does not follow.
fn list_place(src: &str, first: usize, at: usize, items: &[Node]) -> Option<(Vec<Step>, usize)> {
    let line_start = |b: usize| src[..b].rfind('\n').map_or(0, |i| i + 1);
    let col = |l: &str| l.len() - l.trim_start().len();
    let first_line = line_start(first);
    let dash = col(&src[first_line..]);
    if !src[first_line + dash..].starts_with('-') {
        return None;
    }
    let comment_line = line_start(at);
    let c = at - comment_line;
    // A comment above the first item has no item before it.
    let lines: Vec<&str> = src
        .get(first_line..comment_line)
        .unwrap_or_default()
        .lines()
        .collect();
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| col(l) == dash && l.trim_start().starts_with('-'))
        .map(|(i, _)| i)
        .collect();
    if c == dash {
        return Some((vec![], starts.len()));
    }
    let (item, start) = (starts.len().checked_sub(1)?, *starts.last()?);
    let Node::Map(m) = items.get(item)? else {
        return None;
    };
    let keys_below = lines[start + 1..]
        .iter()
        .filter(|l| col(l) == c && !l.trim_start().starts_with('#'))
        .count();
    (c > dash).then(|| (vec![Step::Index(item)], (1 + keys_below).min(m.len())))
}

/// The document `n` as `fmt`, ending with a line break (sops's whole-document output).
pub fn document(n: &Node, fmt: FileFormat) -> Result<Zeroizing<Vec<u8>>> {
    document_with(n, fmt, &Comments::default())
}

/// [`document`] with `comments` where sops prints them.
pub fn document_with(n: &Node, fmt: FileFormat, comments: &Comments) -> Result<Zeroizing<Vec<u8>>> {
    let mut out = String::new();
    match fmt {
        FileFormat::Yaml => yaml(n, comments, &mut out)?,
        FileFormat::Json => {
            json(n, 0, &mut out)?;
            out.push('\n');
        }
        FileFormat::Dotenv => dotenv(n, comments, &mut out)?,
        FileFormat::Ini => out = super::ini::emit_tree(n, comments)?,
        FileFormat::Binary => {
            return Err(SopsError::CannotEmit {
                format: "binary",
                detail: "a structured document has no binary form; pick yaml, json or dotenv"
                    .into(),
            })
        }
    }
    Ok(Zeroizing::new(out.into_bytes()))
}

/// What `sops -d --extract` prints for `n`: a string as it is, a mapping as a whole document,
/// anything else as sops's stores emit one value (JSON without the final line break; dotenv
/// only strings).
pub fn extracted(n: &Node, fmt: FileFormat) -> Result<Zeroizing<Vec<u8>>> {
    extracted_with(n, fmt, &Comments::default())
}

/// [`extracted`] with the comments of the part (see [`Comments::under`]).
pub fn extracted_with(
    n: &Node,
    fmt: FileFormat,
    comments: &Comments,
) -> Result<Zeroizing<Vec<u8>>> {
    match (n, fmt) {
        (Node::Scalar(Plain::Str(s)), _) => Ok(Zeroizing::new(s.as_bytes().to_vec())),
        (Node::Map(_), _) => document_with(n, fmt, comments),
        (_, FileFormat::Json | FileFormat::Ini) => {
            let mut out = String::new();
            json(n, 0, &mut out)?;
            Ok(Zeroizing::new(out.into_bytes()))
        }
        (_, FileFormat::Dotenv) => Err(SopsError::CannotEmit {
            format: "dotenv",
            detail:
                "the dotenv store only supports emitting strings; pick --output-type yaml or json"
                    .into(),
        }),
        _ => document_with(n, fmt, comments),
    }
}

/// The next block indentation yaml.v3 picks past `indent`: the next multiple of four.
fn next_indent(indent: usize) -> usize {
    4 * ((indent + 4) / 4)
}

fn yaml(n: &Node, comments: &Comments, out: &mut String) -> Result<()> {
    match n {
        Node::Map(m) if !m.is_empty() => yaml_map(m, 0, false, Some((&mut vec![], comments)), out),
        Node::List(l) if !l.is_empty() => {
            yaml_list(l, 0, false, Some((&mut vec![], comments)), out)
        }
        other => {
            yaml_inline(other, 4, out)?;
            out.push('\n');
            Ok(())
        }
    }
}

/// A scalar or an empty collection on the current line.
fn yaml_inline(n: &Node, block_indent: usize, out: &mut String) -> Result<()> {
    match n {
        Node::Map(_) => out.push_str("{}"),
        Node::List(_) => out.push_str("[]"),
        Node::Scalar(p) => out.push_str(&yaml_write::scalar(p, block_indent)?),
    }
    Ok(())
}

/// A comment as yaml.v3 writes sops's `#text`: later lines that do not start with `#` get `# `.
fn yaml_comment(text: &str, indent: usize, out: &mut String) {
    for (i, line) in text.split('\n').enumerate() {
        out.push_str(&" ".repeat(indent));
        if i > 0 && !line.starts_with('#') {
            out.push_str("# ");
        } else {
            out.push('#');
        }
        out.push_str(if i > 0 && line.starts_with('#') {
            &line[1..]
        } else {
            line
        });
        out.push('\n');
    }
}

/// The path of the collection being written and the document's comments.
type At<'a, 'p> = Option<(&'p mut Vec<Step>, &'a Comments)>;

/// `at` one level down, at `step`: runs `f` with it, then climbs back.
fn descend<T>(at: &mut At<'_, '_>, step: Step, f: impl FnOnce(At<'_, '_>) -> T) -> T {
    match at {
        Some((path, c)) => {
            path.push(step);
            let r = f(Some((&mut **path, *c)));
            path.pop();
            r
        }
        None => f(None),
    }
}

fn yaml_map(
    m: &[(String, Node)],
    indent: usize,
    inline: bool,
    mut place: At<'_, '_>,
    out: &mut String,
) -> Result<()> {
    for (i, (k, v)) in m.iter().enumerate() {
        if let Some((path, c)) = &place {
            // (Before the first key of a list item, the `- ` is already written.)
            if !(inline && i == 0) {
                for t in c.at(path, i) {
                    yaml_comment(t, indent, out);
                }
            }
        }
        if !(inline && i == 0) {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&yaml_write::inline_str(k));
        out.push(':');
        match v {
            Node::Map(c) if !c.is_empty() => {
                out.push('\n');
                descend(&mut place, Step::Key(k.clone()), |at| {
                    yaml_map(c, next_indent(indent), false, at, out)
                })?;
            }
            Node::List(c) if !c.is_empty() => {
                out.push('\n');
                descend(&mut place, Step::Key(k.clone()), |at| {
                    yaml_list(c, next_indent(indent), false, at, out)
                })?;
            }
            other => {
                out.push(' ');
                yaml_inline(other, next_indent(indent), out)?;
                out.push('\n');
            }
        }
    }
    if let Some((path, c)) = &place {
        for t in c.at(path, m.len()) {
            yaml_comment(t, indent, out);
        }
    }
    Ok(())
}

fn yaml_list(
    l: &[Node],
    indent: usize,
    inline: bool,
    mut place: At<'_, '_>,
    out: &mut String,
) -> Result<()> {
    for (i, v) in l.iter().enumerate() {
        if let Some((path, c)) = &place {
            if !(inline && i == 0) {
                for t in c.at(path, i) {
                    yaml_comment(t, indent, out);
                }
            }
        }
        if !(inline && i == 0) {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str("- ");
        match v {
            Node::Map(c) if !c.is_empty() => descend(&mut place, Step::Index(i), |at| {
                yaml_map(c, indent + 2, true, at, out)
            })?,
            Node::List(c) if !c.is_empty() => descend(&mut place, Step::Index(i), |at| {
                yaml_list(c, indent + 2, true, at, out)
            })?,
            other => {
                yaml_inline(other, indent + 2, out)?;
                out.push('\n');
            }
        }
    }
    if let Some((path, c)) = &place {
        for t in c.at(path, l.len()) {
            yaml_comment(t, indent, out);
        }
    }
    Ok(())
}

/// A JSON string as Go's `encoding/json` writes it (`<`, `>`, `&` and controls as `\u00XX`).
fn json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json(n: &Node, depth: usize, out: &mut String) -> Result<()> {
    let pad = "\t".repeat(depth + 1);
    match n {
        Node::Map(m) if m.is_empty() => out.push_str("{}"),
        Node::List(l) if l.is_empty() => out.push_str("[]"),
        Node::Map(m) => {
            out.push_str("{\n");
            for (i, (k, v)) in m.iter().enumerate() {
                out.push_str(&pad);
                json_str(k, out);
                out.push_str(": ");
                json(v, depth + 1, out)?;
                out.push_str(if i + 1 < m.len() { ",\n" } else { "\n" });
            }
            out.push_str(&"\t".repeat(depth));
            out.push('}');
        }
        Node::List(l) => {
            out.push_str("[\n");
            for (i, v) in l.iter().enumerate() {
                out.push_str(&pad);
                json(v, depth + 1, out)?;
                out.push_str(if i + 1 < l.len() { ",\n" } else { "\n" });
            }
            out.push_str(&"\t".repeat(depth));
            out.push(']');
        }
        Node::Scalar(p) => match p {
            Plain::Null => out.push_str("null"),
            Plain::Str(s) => json_str(s, out),
            Plain::Time(t) => json_str(t, out),
            Plain::Int(i) => out.push_str(&i.to_string()),
            Plain::Bool(b) => out.push_str(&b.to_string()),
            Plain::Float(f) if f.is_finite() => out.push_str(&go_format_float_json(*f)),
            Plain::Float(_) | Plain::Bytes(_) => {
                return Err(SopsError::CannotEmit {
                    format: "json",
                    detail: "a NaN, infinite or non-UTF-8 value has no JSON form".into(),
                })
            }
        },
    }
    Ok(())
}

fn dotenv(n: &Node, comments: &Comments, out: &mut String) -> Result<()> {
    let Node::Map(m) = n else {
        return Err(SopsError::CannotEmit {
            format: "dotenv",
            detail: "the top level is not a mapping".into(),
        });
    };
    for (i, (k, v)) in m.iter().enumerate() {
        for t in comments.at(&[], i) {
            out.push_str(&format!("#{t}\n"));
        }
        let Node::Scalar(p) = v else {
            return Err(SopsError::CannotEmit {
                format: "dotenv",
                detail: format!("cannot use complex value in dotenv file; offending key {k}"),
            });
        };
        out.push_str(k);
        out.push('=');
        out.push_str(&super::dotenv::plain_text(p, std::slice::from_ref(k))?);
        out.push('\n');
    }
    for t in comments.at(&[], m.len()) {
        out.push_str(&format!("#{t}\n"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn yaml_of(src: &str) -> String {
        let n = Node::parse(src.as_bytes(), FileFormat::Yaml).unwrap();
        String::from_utf8(document(&n, FileFormat::Yaml).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn yaml_indents_like_yaml_v3() {
        assert_eq!(
            yaml_of("l: [x, {k: v, z: [1, 2]}, [[1], 2]]\nm: {a: {}}\nn: 1\n"),
            "l:\n    - x\n    - k: v\n      z:\n        - 1\n        - 2\n    - - - 1\n      - 2\nm:\n    a: {}\n\"n\": 1\n"
        );
    }

    #[test]
    fn comments_go_where_sops_prints_them() {
        let env = b"#c0\nA=1\n# c1\nB=2\n#end\n";
        let n = Node::parse(env, FileFormat::Dotenv).unwrap();
        let c = Comments::parse(env, FileFormat::Dotenv, &n);
        let yaml = document_with(&n, FileFormat::Yaml, &c).unwrap();
        assert_eq!(
            std::str::from_utf8(&yaml).unwrap(),
            "#c0\nA: \"1\"\n# c1\nB: \"2\"\n#end\n"
        );
        let src = b"# head\na:\n    b: 1\n    # in a\nc: 2\n";
        let n = Node::parse(src, FileFormat::Yaml).unwrap();
        let c = Comments::parse(src, FileFormat::Yaml, &n);
        let a = [Step::Key("a".into())];
        let list = b"l:\n    - x\n    # between\n    - k: 1\n      # in item\n    # end\n";
        let n2 = Node::parse(list, FileFormat::Yaml).unwrap();
        let c2 = Comments::parse(list, FileFormat::Yaml, &n2);
        let l = [Step::Key("l".into())];
        assert_eq!(
            std::str::from_utf8(
                &extracted_with(n2.get(&l).unwrap(), FileFormat::Yaml, &c2.under(&l)).unwrap()
            )
            .unwrap(),
            // `# end` belongs to the mapping above the list, as in sops.
            "- x\n# between\n- k: 1\n  # in item\n"
        );
        assert_eq!(
            std::str::from_utf8(
                &extracted_with(n.get(&a).unwrap(), FileFormat::Yaml, &c.under(&a)).unwrap()
            )
            .unwrap(),
            "b: 1\n# in a\n"
        );
        assert_eq!(
            std::str::from_utf8(&document_with(&n, FileFormat::Dotenv, &c).unwrap_or_default())
                .unwrap(),
            ""
        );
    }

    #[test]
    fn json_escapes_like_go() {
        let n = Node::parse(b"a: \"<&>\"\nb: [1.5, null]\n", FileFormat::Yaml).unwrap();
        assert_eq!(
            String::from_utf8(document(&n, FileFormat::Json).unwrap().to_vec()).unwrap(),
            "{\n\t\"a\": \"\\u003c\\u0026\\u003e\",\n\t\"b\": [\n\t\t1.5,\n\t\tnull\n\t]\n}\n"
        );
        assert!(document(&n, FileFormat::Dotenv).is_err());
    }
}
