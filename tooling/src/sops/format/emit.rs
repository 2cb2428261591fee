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

/// The comments of a plaintext document, where sops's tree holds them: in the mapping at a
/// path, before the entry at an index (the number of entries: after the last). Comments inside
/// lists are left out (sops keeps those as list items).
#[derive(Debug, Clone, Default)]
pub struct Comments(Vec<(Vec<String>, usize, String)>);

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
        let mut keys = Vec::new();
        for s in path {
            match s {
                Step::Key(k) => keys.push(k.clone()),
                Step::Index(_) => return Comments::default(),
            }
        }
        Comments(
            self.0
                .iter()
                .filter_map(|(p, i, t)| {
                    p.strip_prefix(keys.as_slice())
                        .map(|rest| (rest.to_vec(), *i, t.clone()))
                })
                .collect(),
        )
    }

    /// The comments before entry `index` of the mapping at `path`.
    pub(crate) fn at<'a>(
        &'a self,
        path: &'a [String],
        index: usize,
    ) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |(p, i, _)| p.as_slice() == path && *i == index)
            .map(|(_, _, t)| t.as_str())
    }
}

/// Where the comments of a YAML document sit in its mappings: a comment's collection comes
/// from the engine's parser; its index is the number of that mapping's keys met before it.
fn yaml_places(text: &str, tree: &Node) -> Vec<(Vec<String>, usize, String)> {
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
            Leaf::Comment { path, text, .. } => {
                let steps: Vec<Step> = path.iter().cloned().map(Step::Key).collect();
                if !matches!(tree.get(&steps), Ok(Node::Map(_))) {
                    continue;
                }
                let index = seen
                    .iter()
                    .filter(|s| s.len() == path.len() + 1 && s.starts_with(path))
                    .count();
                out.push((path.clone(), index, text.clone()));
            }
        }
    }
    out
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
        _ => document(n, fmt),
    }
}

/// The next block indentation yaml.v3 picks past `indent`: the next multiple of four.
fn next_indent(indent: usize) -> usize {
    4 * ((indent + 4) / 4)
}

fn yaml(n: &Node, comments: &Comments, out: &mut String) -> Result<()> {
    match n {
        Node::Map(m) if !m.is_empty() => yaml_map(m, 0, false, Some((&mut vec![], comments)), out),
        Node::List(l) if !l.is_empty() => yaml_list(l, 0, false, out),
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

/// The path of the mapping being written and the document's comments (none inside lists).
type Place<'a, 'p> = Option<(&'p mut Vec<String>, &'a Comments)>;

fn yaml_map(
    m: &[(String, Node)],
    indent: usize,
    inline: bool,
    mut place: Place<'_, '_>,
    out: &mut String,
) -> Result<()> {
    for (i, (k, v)) in m.iter().enumerate() {
        if let Some((path, c)) = &place {
            for t in c.at(path, i) {
                yaml_comment(t, indent, out);
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
                let child = match &mut place {
                    Some((path, cm)) => {
                        path.push(k.clone());
                        Some((&mut **path, *cm))
                    }
                    None => None,
                };
                let r = yaml_map(c, next_indent(indent), false, child, out);
                if let Some((path, _)) = &mut place {
                    path.pop();
                }
                r?;
            }
            Node::List(c) if !c.is_empty() => {
                out.push('\n');
                yaml_list(c, next_indent(indent), false, out)?;
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

fn yaml_list(l: &[Node], indent: usize, inline: bool, out: &mut String) -> Result<()> {
    for (i, v) in l.iter().enumerate() {
        if !(inline && i == 0) {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str("- ");
        match v {
            Node::Map(c) if !c.is_empty() => yaml_map(c, indent + 2, true, None, out)?,
            Node::List(c) if !c.is_empty() => yaml_list(c, indent + 2, true, out)?,
            other => {
                yaml_inline(other, indent + 2, out)?;
                out.push('\n');
            }
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
