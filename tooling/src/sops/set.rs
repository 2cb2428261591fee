//! `set` and `unset` on one encrypted file, as `sops set`/`sops unset` do, keeping the file's
//! comments and layout outside the changed part.
//!
//! The change is made on the plaintext tree; the new plaintext is the old one with only the
//! lines that differ between the canonical (sops-written) forms of the old and new trees
//! replaced, comment and blank lines staying with the line they precede. The result must read
//! back as exactly the new tree, else nothing is written. The file is then encrypted again
//! (new data key, same recipients and rules) and replaced atomically ([`write_atomic`]): a
//! crash, SIGKILL or power loss leaves the old file or the new one, never a mix.

use std::path::Path;

use super::agekeys::Identities;
use super::engine::{encrypt, open, Unlock};
use super::error::{Result, SopsError};
use super::files::{read, write_atomic};
use super::format::{emit, FileFormat};
use super::path::{Node, Step};
use super::tree::spec_of;

/// One change to a document.
#[derive(Debug)]
pub enum Change {
    /// Set the part at the path to a value (missing mapping keys are created).
    Set(Vec<Step>, Node),
    /// Remove the part at the path (it must exist).
    Unset(Vec<Step>),
}

/// Applies `change` to the SOPS file at `path` in place; returns whether the file was
/// rewritten. With `idempotent` (sops' `--idempotent`), a `Set` to the value already there and
/// an `Unset` of a missing part leave the file untouched instead of rewriting it or failing.
pub fn apply_file(
    path: &Path,
    fmt: FileFormat,
    ids: &Identities,
    change: Change,
    idempotent: bool,
) -> Result<bool> {
    apply_file_as(path, fmt, fmt, ids, change, idempotent)
}

/// [`apply_file`], writing the file back in `out_fmt` (sops' `set --output-type`: the changed
/// document is re-encoded as sops re-encodes it, comments where sops prints them, and
/// encrypted again in that format under the same recipients and rules).
pub fn apply_file_as(
    path: &Path,
    fmt: FileFormat,
    out_fmt: FileFormat,
    ids: &Identities,
    change: Change,
    idempotent: bool,
) -> Result<bool> {
    let src = read(path)?;
    let doc = open(&src, fmt, Unlock::Identities(ids))?;
    let plain = doc.plaintext()?;
    if idempotent {
        let tree = Node::parse(&plain, fmt)?;
        let nothing_to_do = match &change {
            Change::Set(p, v) => tree.get(p).is_ok_and(|old| old == v),
            Change::Unset(p) => tree.get(p).is_err(),
        };
        if nothing_to_do {
            return Ok(false);
        }
    }
    let mut new_plain = apply_plaintext(&plain, fmt, change)?;
    if out_fmt != fmt {
        let tree = Node::parse(&new_plain, fmt)?;
        let comments = emit::Comments::parse(&new_plain, fmt, &tree);
        new_plain = emit::document_with(&tree, out_fmt, &comments)?;
    }
    let out = encrypt(&new_plain, out_fmt, &spec_of(&doc)?, doc.meta.rules.clone())?;
    write_atomic(path, &out)?;
    Ok(true)
}

/// The plaintext with `change` applied, layout and comments elsewhere kept.
pub fn apply_plaintext(
    plain: &[u8],
    fmt: FileFormat,
    change: Change,
) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    if fmt == FileFormat::Ini {
        // sops writes INI whole; the INI module keeps the comments through the change.
        let text = std::str::from_utf8(plain).map_err(|_| SopsError::Malformed {
            format: "ini",
            detail: "not UTF-8".into(),
        })?;
        return Ok(zeroize::Zeroizing::new(
            super::format::ini::apply(text, change)?.into_bytes(),
        ));
    }
    let mut tree = Node::parse(plain, fmt)?;
    let old = emit::document(&tree, fmt)?;
    match change {
        Change::Set(p, v) => tree.set(&p, v)?,
        Change::Unset(p) => tree.unset(&p)?,
    }
    let new = emit::document(&tree, fmt)?;
    fn text(b: &[u8]) -> Result<&str> {
        std::str::from_utf8(b).map_err(|_| SopsError::Malformed {
            format: "plaintext",
            detail: "not UTF-8".into(),
        })
    }
    let merged = match merge(text(plain)?, text(&old)?, text(&new)?, fmt) {
        Some(m) => zeroize::Zeroizing::new(m.into_bytes()),
        // A layout the merge cannot follow (one-line JSON, flow-style YAML): written whole in
        // sops's layout, as sops itself does, when that loses nothing (no comment can be in it).
        None if fmt == FileFormat::Json || !has_comments(plain, fmt) => return Ok(new),
        None => return Err(layout()),
    };
    if emit::document(&Node::parse(&merged, fmt)?, fmt)? != new {
        return Err(layout());
    }
    Ok(merged)
}

fn layout() -> SopsError {
    SopsError::BadPath(
        "the file's layout is not the one sops writes around this change (flow style, inline \
         comments or other indentation), so it cannot be changed in place without rewriting it; \
         change it with `kiwictl secrets edit` instead"
            .into(),
    )
}

/// Lines that carry no data: blank lines and whole-line comments.
fn is_extra(line: &str, fmt: FileFormat) -> bool {
    let t = line.trim();
    t.is_empty()
        || (fmt != FileFormat::Json && t.starts_with('#'))
        || (fmt == FileFormat::Ini && t.starts_with(';'))
}

/// Whether the plaintext may hold a comment (any `#`, or an INI `;`).
fn has_comments(plain: &[u8], fmt: FileFormat) -> bool {
    plain.contains(&b'#') || (fmt == FileFormat::Ini && plain.contains(&b';'))
}

/// Whether `a` (the file's line) and `b` (the canonical line) hold the same entry: same
/// indentation and the same key or item marker; the values are checked on the whole result.
fn same_entry(a: &str, b: &str) -> bool {
    let head = |l: &str| {
        let indent = l.len() - l.trim_start().len();
        let t = l.trim();
        let key = t
            .split_once(": ")
            .map(|(k, _)| k)
            .unwrap_or(t.strip_suffix(':').unwrap_or(""));
        (
            indent,
            key.trim_matches(['"', '\'']).to_string(),
            t.starts_with("- "),
        )
    };
    a == b || head(a) == head(b)
}

fn merge(plain: &str, old: &str, new: &str, fmt: FileFormat) -> Option<String> {
    let mut lines: Vec<&str> = Vec::new();
    let mut before: Vec<Vec<&str>> = Vec::new();
    let mut pending: Vec<&str> = Vec::new();
    for l in plain.split_inclusive('\n') {
        if is_extra(l, fmt) {
            pending.push(l);
        } else {
            lines.push(l);
            before.push(std::mem::take(&mut pending));
        }
    }
    let o: Vec<&str> = old.split_inclusive('\n').collect();
    let n: Vec<&str> = new.split_inclusive('\n').collect();
    if o.len() != lines.len() || !o.iter().zip(&lines).all(|(c, l)| same_entry(l, c)) {
        return None;
    }
    let pre = o.iter().zip(&n).take_while(|(a, b)| a == b).count();
    let max_suf = o.len().min(n.len()) - pre;
    let suf = o
        .iter()
        .rev()
        .zip(n.iter().rev())
        .take(max_suf)
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = String::new();
    for i in 0..pre {
        out.extend(before[i].iter().copied());
        out.push_str(lines[i]);
    }
    let (old_hunk, new_hunk) = (pre..o.len() - suf, &n[pre..n.len() - suf]);
    if old_hunk
        .clone()
        .any(|i| lines[i] != o[i] && lines[i].contains(" #"))
    {
        // A replaced line holds an inline comment the canonical form has no place for.
        return None;
    }
    // Comments at the end of the file belong to the top level (as sops reads them): a key
    // appended there goes after them.
    let top_append = suf == 0
        && old_hunk.is_empty()
        && new_hunk.first().is_some_and(|l| !l.starts_with([' ', '-']));
    if top_append {
        out.extend(pending.drain(..));
    }
    if old_hunk.len() == new_hunk.len() {
        for (i, l) in old_hunk.zip(new_hunk) {
            out.extend(before[i].iter().copied());
            out.push_str(l);
        }
    } else {
        // The comments above the first replaced or removed line stay where they were; the
        // comments inside a replaced or removed part go with it, as in sops.
        if !old_hunk.is_empty() {
            out.extend(before[old_hunk.start].iter().copied());
        }
        out.extend(new_hunk.iter().copied());
    }
    for i in o.len() - suf..o.len() {
        out.extend(before[i].iter().copied());
        out.push_str(lines[i]);
    }
    out.extend(pending);
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;
    use crate::sops::path::parse_path;
    use crate::sops::value::Plain;

    fn set(src: &str, path: &str, v: Node) -> Result<String> {
        let c = Change::Set(parse_path(path).unwrap(), v);
        apply_plaintext(src.as_bytes(), FileFormat::Yaml, c)
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn comments_stay_where_they_were() {
        let src = "# top\na:\n    # about b\n    b: 1\n\n# about s\ns: 'x: y'\n# end\n";
        let two = Node::Scalar(Plain::Int(2));
        assert_eq!(
            set(src, r#"["a"]["b"]"#, two.clone()).unwrap(),
            "# top\na:\n    # about b\n    b: 2\n\n# about s\ns: 'x: y'\n# end\n"
        );
        assert_eq!(
            set(src, r#"["a"]["c"]"#, two.clone()).unwrap(),
            "# top\na:\n    # about b\n    b: 1\n    c: 2\n\n# about s\ns: 'x: y'\n# end\n"
        );
        let c = Change::Unset(parse_path(r#"["a"]["b"]"#).unwrap());
        let out = apply_plaintext(src.as_bytes(), FileFormat::Yaml, c).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "# top\na: {}\n\n# about s\ns: 'x: y'\n# end\n"
        );
        let c = Change::Unset(parse_path(r#"["s"]"#).unwrap());
        let out = apply_plaintext(src.as_bytes(), FileFormat::Yaml, c).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "# top\na:\n    # about b\n    b: 1\n\n# about s\n# end\n"
        );
    }

    #[test]
    fn other_layouts_with_comments_are_refused() {
        let two = Node::Scalar(Plain::Int(2));
        assert!(set("# c\na: {b: 1}\n", r#"["a"]["b"]"#, two.clone()).is_err());
        assert!(set("a:\n  b: 1 # c\n", r#"["a"]["b"]"#, two.clone()).is_err());
        assert!(set("a: 1 # note\n", r#"["a"]"#, two).is_err());
    }

    #[test]
    fn other_layouts_without_comments_are_written_as_sops_writes_them() {
        let two = Node::Scalar(Plain::Int(2));
        assert_eq!(
            set("a: {b: 1}\n", r#"["a"]["b"]"#, two.clone()).unwrap(),
            "a:\n    b: 2\n"
        );
        assert_eq!(
            set("a:\n  b: 1\n", r#"["a"]["b"]"#, two.clone()).unwrap(),
            "a:\n    b: 2\n"
        );
        let json = apply_plaintext(
            br#"{"a": 2, "b": "ba"}"#,
            FileFormat::Json,
            Change::Set(parse_path(r#"["a"]"#).unwrap(), two),
        )
        .unwrap();
        assert_eq!(&json[..], b"{\n\t\"a\": 2,\n\t\"b\": \"ba\"\n}\n");
    }
}
