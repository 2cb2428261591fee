//! Which collection a YAML comment belongs to, as sops sees it.
//!
//! sops encrypts a comment with the key path of the collection it lands in as additional data,
//! and where it lands is decided by how yaml.v3 attaches comments to nodes (head, line and foot
//! comments) and how sops then files them. A file one tool writes is only readable by the other
//! when both give every comment the same path, so this module reproduces that placement for
//! block collections; it was worked out from what sops 3.11 does on a set of layouts (see the
//! tests) rather than from yaml.v3's scanner, which is spread over several thousand lines.
//!
//! The rules, for the comment lines between the entry before them (P) and the entry after them
//! (N, or the `sops:` key that always follows a document; column 0 when nothing does):
//! - a comment on the same line as content belongs to the collection of the entry it follows;
//! - when no collection ends between P and N, every comment is a head comment of N and belongs
//!   to N's collection;
//! - otherwise, a first run of comments directly under P (no blank line, one column, and no
//!   blank line after it) is a foot of P and belongs to P's collection, unless it is at N's
//!   column with no comment left of it before N;
//! - a comment at N's column, or left of it with no blank line since P, and every comment
//!   after it, is a head of N;
//! - any other comment is a foot of the innermost ending collection whose column is at or left
//!   of the comment (of P's collection when there is none); a comment at a list's own column,
//!   when no blank line came before it, is the list's foot and filed in the list's parent, as
//!   yaml.v3 moves a sequence's foot comment to the key that holds the sequence.
//!
//! Checked against sops on generated documents (tests/e2e/tests/sops_comments.rs): with
//! comments at the columns of the collections around them, every comment lands where sops
//! reads it; with blank lines between them, or at columns of no collection, a few in a
//! hundred documents still have one that sops files elsewhere. Reading tries other paths
//! ([`crate::sops::engine`]), and a rotation or `updatekeys` then writes each comment under
//! the path given here.

use std::ops::Range;
use std::rc::Rc;

use super::Leaf;

/// A block collection that an entry sits in.
#[derive(Debug, Clone)]
pub(super) struct Block {
    /// Column of its keys or `-` indicators.
    pub indent: usize,
    /// Its sops key path (list items share their list's path).
    pub path: Vec<String>,
    /// A sequence, not a mapping.
    pub seq: bool,
}

/// A mapping key or list item in a block collection.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// Byte offset where the entry starts (its key or its `-`).
    pub at: usize,
    /// The collections it sits in, outermost first; the last one holds it.
    pub chain: Rc<[Block]>,
}

impl Entry {
    fn col(&self) -> usize {
        self.chain.last().map_or(0, |b| b.indent)
    }

    fn path(&self) -> Vec<String> {
        self.chain
            .last()
            .map(|b| b.path.clone())
            .unwrap_or_default()
    }
}

fn line_start(src: &str, pos: usize) -> usize {
    src[..pos].rfind('\n').map_or(0, |i| i + 1)
}

/// The line before the one starting at `start`, if any.
fn prev_line(src: &str, start: usize) -> Option<&str> {
    let end = start.checked_sub(1)?;
    Some(&src[line_start(src, end)..end])
}

/// Whether the run of comment lines at column `col` starting at `start` is followed by a blank
/// line (a foot run followed by one is not a foot of the entry above it).
fn run_ends_blank(src: &str, start: usize, col: usize) -> bool {
    for line in src[start..].split_inclusive('\n') {
        let text = line.trim_start_matches(' ');
        if text.starts_with('#') && line.len() - text.len() == col {
            continue;
        }
        // A blank line, not the end of the file.
        return text.trim().is_empty() && line.ends_with('\n');
    }
    false
}

/// Whether no comment line from `start` up to `end` sits left of column `col` (a first run of
/// comments at N's column is a head of N only when no comment to its left comes before N).
fn none_left_until(src: &str, start: usize, end: usize, col: usize) -> bool {
    src[start..end.max(start)].split('\n').all(|line| {
        let text = line.trim_start_matches(' ');
        !text.starts_with('#') || line.len() - text.len() >= col
    })
}

/// The state of the comment lines between two entries.
struct Gap {
    /// Index of N in the entries.
    next: usize,
    /// A comment at or left of N's column was seen: the rest are heads of N.
    heads: bool,
    /// The column of the run of comments directly under P, while it lasts.
    foot_run: Option<usize>,
    /// A blank line was seen since P.
    blank: bool,
    /// Where the previous comment line ended.
    last_end: usize,
}

/// Gives every comment outside flow collections the path sops gives it. `entries` are in
/// document order; comments inside the `flows` ranges keep the path they have.
pub(super) fn assign(src: &str, entries: &[Entry], flows: &[Range<usize>], leaves: &mut [Leaf]) {
    let mut gap: Option<Gap> = None;
    for leaf in leaves.iter_mut() {
        let Leaf::Comment { path, span, .. } = leaf else {
            continue;
        };
        if flows.iter().any(|f| f.contains(&span.start)) {
            continue;
        }
        let next = entries.partition_point(|e| e.at < span.start);
        let prev = next.checked_sub(1).map(|i| &entries[i]);
        let start = line_start(src, span.start);
        if !src[start..span.start].trim().is_empty() {
            *path = prev.map(Entry::path).unwrap_or_default();
            continue;
        }
        let col = span.start - start;
        let before = prev_line(src, start);
        let g = match gap.as_mut() {
            Some(g) if g.next == next => {
                let consecutive = g.last_end + 1 == start;
                g.blank |= !consecutive;
                if !consecutive || g.foot_run != Some(col) {
                    g.foot_run = None;
                }
                g
            }
            _ => {
                let blank = before.is_some_and(|l| l.trim().is_empty());
                let direct = before.is_some_and(|l| !l.trim().is_empty())
                    && prev.is_some()
                    && !run_ends_blank(src, start, col);
                gap.insert(Gap {
                    next,
                    heads: false,
                    foot_run: direct.then_some(col),
                    blank,
                    last_end: span.end,
                })
            }
        };
        g.last_end = span.end;
        let n = entries.get(next).map_or(0, Entry::col);
        let head_path = || entries.get(next).map(Entry::path).unwrap_or_default();
        let chain: &[Block] = prev.map_or(&[], |e| &e.chain);
        let ending = chain.iter().position(|b| b.indent > n);
        let Some(first_ending) = ending else {
            *path = head_path();
            continue;
        };
        let next_at = entries
            .get(next)
            .map_or(src.len(), |e| line_start(src, e.at));
        if g.foot_run == Some(n) && none_left_until(src, start, next_at, n) {
            g.foot_run = None;
        }
        let innermost = chain.last().map(|b| b.path.clone()).unwrap_or_default();
        *path = if g.heads {
            head_path()
        } else if g.foot_run.is_some() {
            innermost
        } else if col == n || (col < n && !g.blank) {
            g.heads = true;
            head_path()
        } else {
            match (first_ending..chain.len())
                .rev()
                .find(|&i| chain[i].indent <= col)
            {
                Some(i) if chain[i].seq && chain[i].indent == col && !g.blank => i
                    .checked_sub(1)
                    .map(|p| chain[p].path.clone())
                    .unwrap_or_default(),
                Some(i) => chain[i].path.clone(),
                None => innermost,
            }
        };
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::super::yaml::parse_full;
    use super::*;

    fn paths(src: &str) -> Vec<String> {
        parse_full(src)
            .unwrap()
            .leaves
            .iter()
            .filter_map(|l| match l {
                Leaf::Comment { path, .. } => Some(format!("{}:", path.join(":"))),
                _ => None,
            })
            .collect()
    }

    /// Each layout with the path sops 3.11 encrypted each of its comments under (found by
    /// decrypting what `sops encrypt` wrote under every candidate path).
    #[test]
    fn comments_land_where_sops_puts_them() {
        let cases: &[(&str, &[&str])] = &[
            (
                "app2:\n  db:\n    user: x\n    # trailing in db\n  # trailing in app2\n# trailing at top after app2\nother: y\n# end\n",
                &["app2:db:", "app2:", ":", ":"],
            ),
            (
                "a:\n  b:\n    c: 1\n      # deeper than c\nd: 2\n",
                &["a:b:"],
            ),
            (
                "a:\n  b:\n    c: 1\n   # col3\nd: 2\n",
                &["a:b:"],
            ),
            (
                "a:\n  b:\n    c: 1\n # col1\nd: 2\n",
                &["a:b:"],
            ),
            (
                "a:\n  b:\n    c: 1\n# col0 then nested\n    e: 2\n",
                &["a:b:"],
            ),
            (
                "a:\n  b:\n    c: 1\n  # col2 then nested\n    e: 2\n",
                &["a:b:"],
            ),
            (
                "a:\n  b:\n    c: 1\n    # at end of file\n",
                &["a:b:"],
            ),
            (
                "a:\n  b:\n    c: 1\n\n    # after blank\nd: 2\n",
                &["a:b:"],
            ),
            (
                "a:\n  b:\n    c: 1\n    # fc\n\n# head of d\nd: 2\n",
                &["a:b:", ":"],
            ),
            (
                "a:\n  b:\n    c: 1 # line comment\n    d: 2\n",
                &["a:b:"],
            ),
            (
                "a: # after a key\n  b: 1\n",
                &[":"],
            ),
            (
                "a:\n  # head of b\n  b: 1\n",
                &["a:"],
            ),
            (
                "a:\n  b:\n    c: 1\n# col0\nd: 2\n",
                &[":"],
            ),
            (
                "a:\n  b:\n    c: 1\n\n# col0 after blank\nd: 2\n",
                &[":"],
            ),
            (
                "a:\n  b:\n    c: 1\n  # col2\nd: 2\n",
                &["a:b:"],
            ),
            (
                "a:\n  b:\n    c: 1\n  # col2\n\nd: 2\n",
                &["a:"],
            ),
            (
                "a:\n  b:\n    c: 1\n  # col2\n  e: 3\n",
                &["a:"],
            ),
            (
                "a:\n  b:\n    c: 1\n    # col4\n  e: 3\n",
                &["a:b:"],
            ),
            (
                "a:\n  b:\n    c: 1\n    # col4\n\n  # col2 b\n  e: 3\n",
                &["a:b:", "a:"],
            ),
            (
                "a:\n  b:\n    c: 1\n    # col4\n  # col2 c\n  e: 3\n",
                &["a:b:", "a:"],
            ),
            (
                "a:\n  b:\n    c: 1\n    # col4\n  # col2 c\n# col0\ne: 3\n",
                &["a:b:", "a:", ":"],
            ),
            (
                "a:\n  b:\n    c: 1\n  # c2\n# c0\nd: 2\n",
                &["a:b:", ":"],
            ),
            (
                "a:\n  b:\n    c: 1\n  # c2\n  # c2b\nd: 2\n",
                &["a:b:", "a:b:"],
            ),
            (
                "a:\n  b:\n    c: 1\n  # c2\n    # c4\nd: 2\n",
                &["a:b:", "a:b:"],
            ),
            (
                "a:\n  b:\n    c: 1\n\n  # c2 after blank\n  e: 2\n",
                &["a:"],
            ),
            (
                "a:\n  b:\n    c: 1\n\n    # c4 after blank\n  e: 2\n",
                &["a:b:"],
            ),
            (
                "a:\n  b:\n    c: 1\n  # c2 then blank\n\n  e: 2\n",
                &["a:"],
            ),
            (
                "a:\n  b:\n    c: 1\n# c0\n    # c4\nd: 1\n",
                &[":", ":"],
            ),
            (
                "a:\n  b: 1\n  # c2 foot\nd: 2\n",
                &["a:"],
            ),
            (
                "a:\n  b:\n    c: 1\n   # c3 direct\n  # c2\nd: 2\n",
                &["a:b:", "a:"],
            ),
            (
                "a:\n  b:\n    c: 1\n # c1 direct\n    # c4\n  # c2\nd: 2\n",
                &["a:b:", "a:b:", "a:"],
            ),
            (
                "a:\n  b:\n    c: 1\n\n # c1 blank\nd: 2\n",
                &["a:b:"],
            ),
            (
                "a:\n  l:\n    - x\n    # in list c4\n  # c2\nd: 2\n",
                &["a:l:", "a:"],
            ),
            (
                "a:\n  l:\n  - x\n  # in list c2\nd: 2\n",
                &["a:l:"],
            ),
            (
                "a:\n  l:\n    - x\n    # c4 head of item\n    - y\n",
                &["a:l:"],
            ),
            (
                "l:\n  - a: 1\n    # c4 in item map\n  - b: 2\n",
                &["l:"],
            ),
            (
                "l:\n  - a: 1\n    b: 2\n    # c4 foot item map\n# c0\nd: 2\n",
                &["l:", ":"],
            ),
            (
                "l:\n  # c2 head of first\n  - x # inline item\n",
                &["l:", "l:"],
            ),
            (
                "a:\n  l:\n    - x\n    - y\n\n    # c4 blank\nd: 2\n",
                &["a:l:"],
            ),
            (
                "a:\n  l:\n    - x\n    - k: 1\n      # c6\n    # c4\n  # c2\nd: 2\n",
                &["a:l:", "a:", "a:"],
            ),
            (
                "a:\n  l:\n    - k: 1\n      # c6\n    # c4\n  e: 3\n",
                &["a:l:", "a:"],
            ),
            (
                "a:\n  l:\n  - x\n  - k: 1\n    # c4\n  # c2\nd: 2\n",
                &["a:l:", "a:"],
            ),
            (
                "l:\n  - - x\n    - y\n    # c4 inner\n  # c2 outer\nd: 1\n",
                &["l:", ":"],
            ),
            (
                "a:\n  b:\n    c: 1\n    # col4\n\nd: 2\n",
                &["a:b:"],
            ),
            (
                "a:\n  b:\n    c: 1\n  # col2\n  # col2 b\n\nd: 2\n",
                &["a:", "a:"],
            ),
            (
                "a:\n  b:\n    c: 1\n      # col6\n\nd: 2\n",
                &["a:b:"],
            ),
            (
                "a:\n  l:\n    - x\n  # col2\n\nd: 2\n",
                &["a:"],
            ),
            (
                "a:\n  b:\n    c: 1\n\n    # c4 blank\n  # c2\nd: 2\n",
                &["a:b:", "a:"],
            ),
            (
                "k85: v\nk829:\n  - x\n      # c157\n     # c158\nzzz: 1\n",
                &["k829:", "k829:"],
            ),
            (
                "k348:\n  # c85\n  - a: 1\n    k634:\n      k697: v\n# c86\n    k813: v\n    # c87\nk498: v\n",
                &["k348:", "k348:k634:", "k348:"],
            ),
            (
                "k424:\n    k4:\n      k927:\n        k312: v\n        k821: v\n# c187\n# c188\n# c189\n      k84: v\nzzz: 1\n",
                &["k424:k4:k927:", "k424:k4:k927:", "k424:k4:k927:"],
            ),
            (
                "a:\n  b:\n    c: 1\n    d: 2\n\n# c blank dedent\n  e: 3\n",
                &["a:b:"],
            ),
            (
                "a:\n  b:\n    c: 1\n\n# c blank dedent\n  e: 3\n",
                &["a:b:"],
            ),
            (
                "x:\n  l:\n    - y\n  # c2\n# c0\n  k: 1\n",
                &["x:l:", "x:"],
            ),
            (
                "x:\n  m:\n    n: 1\n  # c2\n# c0\n  k: 1\n",
                &["x:m:", "x:"],
            ),
            (
                "x:\n  m:\n    n: 1\n\n# c0 blank\n  k: 1\n",
                &["x:m:"],
            ),
            (
                "a:\n  b:\n# c0\n    c: 1\nz: 1\n",
                &["a:b:"],
            ),
            (
                "a:\n  l:\n  # c2\n    - x\nz: 1\n",
                &["a:l:"],
            ),
        ];
        for (src, want) in cases {
            assert_eq!(&paths(src), want, "{src:?}");
        }
    }
}
