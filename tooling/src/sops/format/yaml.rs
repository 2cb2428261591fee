//! YAML through yaml-edit's lossless syntax tree: scalars are decoded as yaml.v3 decodes them
//! ([`super::yaml_scalar`]), comments get the key path sops gives them
//! ([`super::yaml_comments`]), and values are written back by [`super::yaml_write`].

use std::ops::Range;

use rowan::ast::AstNode;
use rowan::NodeOrToken;
use yaml_edit::{SyntaxKind as K, YamlFile};

use super::yaml_comments::{self, Block, Entry};
use super::{Ctx, Leaf, MetaBlock, Parsed};
use crate::sops::error::{Result, SopsError};
use crate::sops::metadata::MVal;
use crate::sops::value::{resolve_plain, Plain};

pub(super) use super::yaml_scalar::{decode_block, decode_double};
use super::yaml_scalar::{decode_single, fold_plain};
pub(crate) use super::yaml_write::{enc_text, flow_close, meta_flow_text, meta_text, plain_text};

type Node = rowan::SyntaxNode<yaml_edit::Lang>;

/// How a YAML scalar was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// Plain.
    Plain,
    /// `'single'`.
    Single,
    /// `"double"`.
    Double,
    /// `|` or `>` block.
    Block,
}

/// Where a YAML scalar sits.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct YamlCtx {
    pub(super) style: Style,
    /// Column of the entry (key or `-`) holding the scalar.
    pub(super) parent_col: usize,
    /// Content indentation of an existing block scalar; for other scalars, the one sops gives a
    /// block it writes there ([`sops_block_indent`]).
    pub(super) block_indent: usize,
    /// Inside `[...]` or `{...}`.
    pub(super) flow: bool,
    /// Something (a comment) follows the scalar on its line.
    pub(super) line_tail: bool,
    /// The span ends with a line break (block scalars).
    pub(super) ends_nl: bool,
}

/// The content indentation of a `|` block sops (yaml.v3 with 4-space indentation) writes for
/// the entry at column `entry_col`: 4 past a key, 2 past a list item's `-`.
pub(super) fn sops_block_indent(entry_col: usize, item: bool) -> usize {
    entry_col + if item { 2 } else { 4 }
}

pub(super) fn malformed(detail: impl Into<String>) -> SopsError {
    SopsError::Malformed {
        format: "yaml",
        detail: detail.into(),
    }
}

fn unsupported(detail: impl Into<String>) -> SopsError {
    SopsError::Unsupported {
        format: "yaml",
        detail: detail.into(),
    }
}

fn range(n: &Node) -> Range<usize> {
    let r = n.text_range();
    usize::from(r.start())..usize::from(r.end())
}

fn line_col(src: &str, pos: usize) -> usize {
    pos - src[..pos].rfind('\n').map(|i| i + 1).unwrap_or(0)
}

fn line_indent(src: &str, pos: usize) -> usize {
    let start = src[..pos].rfind('\n').map(|i| i + 1).unwrap_or(0);
    src[start..].bytes().take_while(|b| *b == b' ').count()
}

/// Refuses syntax errors and the YAML features sops files never use, anywhere in the tree.
///
/// Walks the immutable green tree, which borrows and allocates nothing, rather than the
/// cursor API, which allocates a node handle for every token visited. `start` is the byte
/// offset of `node`; returns it plus the node's length.
fn refuse_unsupported(node: &rowan::GreenNodeData, start: usize) -> Result<usize> {
    use rowan::Language as _;
    let mut at = start;
    for child in node.children() {
        let kind = yaml_edit::Lang::kind_from_raw(child.kind());
        match kind {
            K::ERROR => return Err(malformed(format!("syntax error near byte {at}"))),
            K::ANCHOR | K::REFERENCE | K::ALIAS => return Err(unsupported("anchors and aliases")),
            K::TAG | K::TAGGED_NODE => return Err(unsupported("tags (`!!…`)")),
            K::MERGE_KEY => return Err(unsupported("merge keys (`<<`)")),
            K::DIRECTIVE => return Err(unsupported("directives (`%…`)")),
            _ => {}
        }
        at = match child {
            NodeOrToken::Node(n) => refuse_unsupported(n, at)?,
            NodeOrToken::Token(t) => at + usize::from(t.text_len()),
        };
    }
    Ok(at)
}

/// Parses a YAML document into leaves and its metadata block: through the fast reader for the
/// layout sops writes ([`super::yaml_fast`]), else through yaml-edit's full syntax tree.
pub(crate) fn parse(src: &str) -> Result<Parsed> {
    match super::yaml_fast::parse(src) {
        Some(p) => Ok(p),
        None => parse_full(src),
    }
}

/// Parses a YAML document through yaml-edit's lossless syntax tree (any YAML sops accepts).
pub(crate) fn parse_full(src: &str) -> Result<Parsed> {
    let parse = YamlFile::parse(src);
    if parse.has_errors() {
        return Err(malformed(
            parse.errors().first().cloned().unwrap_or_default(),
        ));
    }
    let file: YamlFile = parse.tree();
    let root = file.syntax().clone();
    refuse_unsupported(&root.green(), 0)?;
    let docs: Vec<Node> = root
        .children()
        .filter(|n| n.kind() == K::DOCUMENT)
        .collect();
    if docs.len() > 1 {
        return Err(unsupported("more than one document"));
    }
    let mut w = Walker {
        src,
        leaves: Vec::new(),
        meta: None,
        chain: Vec::new(),
        entries: Vec::new(),
        flows: Vec::new(),
    };
    if let Some(doc) = docs.first() {
        for el in doc.children_with_tokens() {
            match el {
                NodeOrToken::Token(t) if t.kind() == K::COMMENT => w.comment(&t, &[]),
                NodeOrToken::Token(_) => {}
                NodeOrToken::Node(n) => match n.kind() {
                    K::MAPPING => w.mapping(&n, &[], true, false)?,
                    K::SCALAR if matches!(w.scalar(&n)?.0, Plain::Null) => {}
                    _ => return Err(unsupported("the top level must be a mapping")),
                },
            }
        }
    }
    // Comments outside the document (after it) belong to the top level.
    for t in root.children_with_tokens().filter_map(|e| e.into_token()) {
        if t.kind() == K::COMMENT {
            w.comment(&t, &[]);
        }
    }
    let mut leaves = std::mem::take(&mut w.leaves);
    leaves.sort_by_key(|l| match l {
        Leaf::Value { span, .. } | Leaf::Comment { span, .. } => span.start,
    });
    w.entries.sort_by_key(|e| e.at);
    yaml_comments::assign(src, &w.entries, &w.flows, &mut leaves);
    Ok(Parsed {
        leaves,
        meta: w.meta,
    })
}

struct Walker<'a> {
    src: &'a str,
    leaves: Vec<Leaf>,
    meta: Option<MetaBlock>,
    /// The block collections around the node being walked, outermost first.
    chain: Vec<Block>,
    /// Every entry of a block collection, in document order.
    entries: Vec<Entry>,
    /// The outermost flow collections.
    flows: Vec<Range<usize>>,
}

/// Where an entry's content starts (its key or `-`), past any whitespace or comment before it.
fn entry_start(e: &Node) -> usize {
    e.descendants_with_tokens()
        .filter_map(|x| x.into_token())
        .find(|t| {
            !matches!(
                t.kind(),
                K::WHITESPACE | K::NEWLINE | K::INDENT | K::COMMENT
            )
        })
        .map_or_else(|| range(e).start, |t| usize::from(t.text_range().start()))
}

fn is_flow(n: &Node) -> bool {
    n.children_with_tokens()
        .any(|e| matches!(e.kind(), K::LEFT_BRACE | K::LEFT_BRACKET))
}

impl Walker<'_> {
    /// Enters collection `n` (entries of kind `kind`): for a block collection, records its
    /// entries and returns true (the caller then calls [`Walker::close`]); a flow collection
    /// is remembered as a whole.
    fn open(&mut self, n: &Node, kind: K, path: &[String], flow_before: bool) -> bool {
        if flow_before {
            return false;
        }
        if is_flow(n) {
            self.flows.push(range(n));
            return false;
        }
        let starts: Vec<usize> = n
            .children()
            .filter(|c| c.kind() == kind)
            .map(|c| entry_start(&c))
            .collect();
        self.chain.push(Block {
            indent: starts.first().map_or(0, |&at| line_col(self.src, at)),
            path: path.to_vec(),
            seq: kind == K::SEQUENCE_ENTRY,
        });
        let chain: std::rc::Rc<[Block]> = self.chain.iter().cloned().collect();
        self.entries.extend(starts.into_iter().map(|at| Entry {
            at,
            chain: chain.clone(),
        }));
        true
    }

    fn comment(&mut self, t: &rowan::SyntaxToken<yaml_edit::Lang>, path: &[String]) {
        let r = t.text_range();
        let text = t.text();
        self.leaves.push(Leaf::Comment {
            path: path.to_vec(),
            span: usize::from(r.start())..usize::from(r.end()),
            text: text.strip_prefix('#').unwrap_or(text).to_string(),
        });
    }

    fn mapping(&mut self, n: &Node, path: &[String], top: bool, flow: bool) -> Result<()> {
        let block = self.open(n, K::MAPPING_ENTRY, path, flow);
        let flow = !block;
        let mut seen: Vec<String> = Vec::new();
        for el in n.children_with_tokens() {
            match el {
                NodeOrToken::Token(t) if t.kind() == K::COMMENT => self.comment(&t, path),
                NodeOrToken::Token(_) => {}
                NodeOrToken::Node(e) if e.kind() == K::MAPPING_ENTRY => {
                    let key = self.entry(&e, path, top, flow)?;
                    if seen.contains(&key) {
                        return Err(malformed(format!("duplicate key `{key}`")));
                    }
                    seen.push(key);
                }
                NodeOrToken::Node(e) => {
                    return Err(malformed(format!("unexpected {:?} in a mapping", e.kind())))
                }
            }
        }
        if block {
            self.chain.pop();
        }
        Ok(())
    }

    fn entry(&mut self, e: &Node, path: &[String], top: bool, flow: bool) -> Result<String> {
        let key_node = e
            .children()
            .find(|c| c.kind() == K::KEY)
            .and_then(|k| k.children().find(|c| c.kind() == K::SCALAR))
            .ok_or_else(|| unsupported("complex or missing mapping key"))?;
        let key = match self.scalar(&key_node)? {
            (Plain::Str(s), _) => s.to_string(),
            _ => {
                return Err(unsupported(format!(
                    "non-string key `{}`",
                    &self.src[range(&key_node)]
                )))
            }
        };
        let value = e.children().find(|c| c.kind() == K::VALUE);
        if top && key == "sops" {
            let mv = match &value {
                Some(v) => self.mval_value(v)?,
                None => MVal::Str(String::new()),
            };
            let mut r = range(e);
            let mut remove = r.clone();
            if flow {
                // `, "sops": {...}` goes with the comma before it (or the one after it when
                // it comes first), so removing it leaves the mapping as it was.
                let before = self.src[..r.start].trim_end();
                let after = &self.src[r.end..];
                if before.ends_with(',') {
                    remove.start = before.len() - 1;
                } else if after.trim_start().starts_with(',') {
                    let comma = r.end + after.find(',').unwrap_or(0) + 1;
                    remove.end =
                        comma + (self.src[comma..].len() - self.src[comma..].trim_start().len());
                }
            } else if self.src[r.end..].starts_with('\n') {
                // Take the line break that ends the block with it.
                r.end += 1;
                remove = r.clone();
            }
            self.meta = Some(MetaBlock {
                value: mv,
                spans: vec![r],
                remove: vec![remove],
            });
            return Ok(key);
        }
        for el in e.children_with_tokens() {
            if let NodeOrToken::Token(t) = el {
                if t.kind() == K::COMMENT {
                    self.comment(&t, path);
                }
            }
        }
        let mut child = path.to_vec();
        child.push(key.clone());
        let Some(v) = value else { return Ok(key) };
        let content = v
            .children()
            .find(|c| matches!(c.kind(), K::SCALAR | K::MAPPING | K::SEQUENCE));
        let collection = content.as_ref().is_some_and(|c| c.kind() != K::SCALAR);
        for el in v.children_with_tokens() {
            if let NodeOrToken::Token(t) = el {
                if t.kind() == K::COMMENT {
                    self.comment(&t, if collection { &child } else { path });
                }
            }
        }
        match content {
            Some(c) if c.kind() == K::SCALAR => self.leaf(&c, child, e, flow)?,
            Some(c) if c.kind() == K::MAPPING => self.mapping(&c, &child, false, flow)?,
            Some(c) => self.sequence(&c, &child, flow)?,
            None => {}
        }
        Ok(key)
    }

    fn sequence(&mut self, n: &Node, path: &[String], flow: bool) -> Result<()> {
        let block = self.open(n, K::SEQUENCE_ENTRY, path, flow);
        let flow = !block;
        for el in n.children_with_tokens() {
            match el {
                NodeOrToken::Token(t) if t.kind() == K::COMMENT => self.comment(&t, path),
                NodeOrToken::Token(_) => {}
                NodeOrToken::Node(e) if e.kind() == K::SEQUENCE_ENTRY => {
                    for el in e.children_with_tokens() {
                        match el {
                            NodeOrToken::Token(t) if t.kind() == K::COMMENT => {
                                self.comment(&t, path)
                            }
                            NodeOrToken::Token(_) => {}
                            NodeOrToken::Node(c) => match c.kind() {
                                K::SCALAR => self.leaf(&c, path.to_vec(), &e, flow)?,
                                K::MAPPING => self.mapping(&c, path, false, flow)?,
                                K::SEQUENCE => self.sequence(&c, path, flow)?,
                                k => return Err(malformed(format!("unexpected {k:?} in a list"))),
                            },
                        }
                    }
                }
                NodeOrToken::Node(e) => {
                    return Err(malformed(format!("unexpected {:?} in a list", e.kind())))
                }
            }
        }
        if block {
            self.chain.pop();
        }
        Ok(())
    }

    fn leaf(&mut self, n: &Node, path: Vec<String>, entry: &Node, flow: bool) -> Result<()> {
        let (value, style) = self.scalar(n)?;
        if matches!(value, Plain::Null) {
            return Ok(());
        }
        let span = range(n);
        let raw = &self.src[span.clone()];
        let rest = &self.src[span.end..];
        let line_rest = &rest[..rest.find('\n').unwrap_or(rest.len())];
        let block_indent = if style == Style::Block {
            raw.lines()
                .skip(1)
                .find(|l| !l.trim().is_empty())
                .map(|l| l.len() - l.trim_start().len())
                .unwrap_or(0)
        } else {
            sops_block_indent(
                line_col(self.src, usize::from(entry.text_range().start())),
                entry.kind() == K::SEQUENCE_ENTRY,
            )
        };
        // Inside `[...]`/`{...}` an encrypted value is always double-quoted, so its own style
        // is lost: take the style of the nearest key (double quotes in JSON-like documents).
        let style = if flow && style != Style::Block {
            let key_quoted = n
                .ancestors()
                .find(|a| a.kind() == K::MAPPING_ENTRY)
                .and_then(|e| e.children().find(|c| c.kind() == K::KEY))
                .is_some_and(|k| k.text().to_string().trim_start().starts_with('"'));
            if key_quoted {
                Style::Double
            } else {
                Style::Plain
            }
        } else {
            style
        };
        let ctx = YamlCtx {
            style,
            parent_col: line_col(self.src, usize::from(entry.text_range().start())),
            block_indent,
            flow,
            line_tail: !raw.ends_with('\n') && !line_rest.trim().is_empty(),
            ends_nl: raw.ends_with('\n'),
        };
        self.leaves.push(Leaf::Value {
            path,
            span,
            value,
            ctx: Ctx::Yaml(ctx),
        });
        Ok(())
    }

    fn scalar(&self, n: &Node) -> Result<(Plain, Style)> {
        let r = range(n);
        let raw = &self.src[r.clone()];
        let trimmed = raw.trim_end_matches(['\n', '\r']);
        Ok(match raw.as_bytes().first() {
            Some(b'"') => (Plain::str(decode_double(trimmed)?), Style::Double),
            Some(b'\'') => (Plain::str(decode_single(trimmed)?), Style::Single),
            Some(b'|') | Some(b'>') => {
                // The line break that ends the block belongs to it (it keeps a clipped `|`).
                let end = r.end
                    + usize::from(!raw.ends_with('\n') && self.src[r.end..].starts_with('\n'));
                (
                    Plain::str(decode_block(
                        &self.src[r.start..end],
                        line_indent(self.src, r.start),
                    )?),
                    Style::Block,
                )
            }
            _ => (
                resolve_plain(&fold_plain(trimmed)).map_err(unsupported)?,
                Style::Plain,
            ),
        })
    }

    fn mval_value(&self, v: &Node) -> Result<MVal> {
        match v
            .children()
            .find(|c| matches!(c.kind(), K::SCALAR | K::MAPPING | K::SEQUENCE))
        {
            Some(c) => self.mval(&c),
            None => Ok(MVal::Str(String::new())),
        }
    }

    fn mval(&self, n: &Node) -> Result<MVal> {
        match n.kind() {
            K::SCALAR => {
                let (p, style) = self.scalar(n)?;
                let raw = self.src[range(n)].trim().to_string();
                Ok(match p {
                    Plain::Str(s) => MVal::Str(s.to_string()),
                    Plain::Int(i) if style == Style::Plain => MVal::Int(i),
                    Plain::Bool(b) => MVal::Bool(b),
                    Plain::Null => MVal::Str(String::new()),
                    _ => MVal::Str(raw),
                })
            }
            K::MAPPING => {
                let mut m = Vec::new();
                for e in n.children().filter(|c| c.kind() == K::MAPPING_ENTRY) {
                    let key = e
                        .children()
                        .find(|c| c.kind() == K::KEY)
                        .and_then(|k| k.children().find(|c| c.kind() == K::SCALAR))
                        .ok_or_else(|| malformed("metadata key"))?;
                    let key = match self.scalar(&key)?.0 {
                        Plain::Str(s) => s.to_string(),
                        _ => self.src[range(&key)].trim().to_string(),
                    };
                    let v = match e.children().find(|c| c.kind() == K::VALUE) {
                        Some(v) => self.mval_value(&v)?,
                        None => MVal::Str(String::new()),
                    };
                    m.push((key, v));
                }
                Ok(MVal::Map(m))
            }
            K::SEQUENCE => {
                let mut l = Vec::new();
                for e in n.children().filter(|c| c.kind() == K::SEQUENCE_ENTRY) {
                    if let Some(c) = e
                        .children()
                        .find(|c| matches!(c.kind(), K::SCALAR | K::MAPPING | K::SEQUENCE))
                    {
                        l.push(self.mval(&c)?);
                    }
                }
                Ok(MVal::List(l))
            }
            k => Err(malformed(format!("unexpected {k:?} in metadata"))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn values(src: &str) -> Vec<(String, Plain)> {
        parse(src)
            .unwrap()
            .leaves
            .into_iter()
            .filter_map(|l| match l {
                Leaf::Value { path, value, .. } => Some((path.join(":"), value)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn scalar_styles_decode() {
        let v = values("a: \"x\\ty\n  z\"\nb: >-\n  f1\n  f2\n\n  f3\nc: plain\n  cont\nd: |\n  l1\n  l2\ne: 'it''s'\n");
        assert_eq!(v[0].1, Plain::str("x\ty z"));
        assert_eq!(v[1].1, Plain::str("f1 f2\nf3"));
        assert_eq!(v[2].1, Plain::str("plain cont"));
        assert_eq!(v[3].1, Plain::str("l1\nl2\n"));
        assert_eq!(v[4].1, Plain::str("it's"));
    }

    #[test]
    fn a_block_scalar_at_the_end_of_the_file_keeps_only_the_breaks_it_has() {
        for (src, want) in [
            ("key: |\n  multi\n  line", "multi\nline"),
            ("key: |\n  multi\n  line\n", "multi\nline\n"),
            ("key: |+\n  multi\n  line", "multi\nline"),
            ("key: |+\n  multi\n\n", "multi\n\n"),
            ("key: >\n  folded\n  text", "folded text"),
            ("key: |\n  multi\n  line\nnext: x\n", "multi\nline\n"),
        ] {
            assert_eq!(values(src)[0].1, Plain::str(want), "{src:?}");
        }
    }

    #[test]
    fn paths_and_comments() {
        let p = parse("# top\na:\n  # in a\n  b: [1, {c: d}]\nl:\n  - x # tail\n").unwrap();
        let got: Vec<String> = p
            .leaves
            .iter()
            .map(|l| match l {
                Leaf::Value { path, .. } => format!("v {}", path.join(":")),
                Leaf::Comment { path, text, .. } => format!("c {} {}", path.join(":"), text),
            })
            .collect();
        assert_eq!(
            got,
            [
                "c   top",
                "c a  in a",
                "v a:b",
                "v a:b:c",
                "v l",
                "c l  tail"
            ]
        );
    }

    #[test]
    fn literal_round_trip() {
        let c = YamlCtx {
            style: Style::Plain,
            parent_col: 0,
            block_indent: sops_block_indent(0, false),
            flow: false,
            line_tail: false,
            ends_nl: false,
        };
        assert_eq!(
            plain_text(&c, &Plain::str("l1\nl2\n"), &[]).unwrap(),
            "|\n    l1\n    l2"
        );
        // As yaml.v3: double quotes for what would read as another type, single quotes for
        // what would not parse as plain text.
        assert_eq!(plain_text(&c, &Plain::str("yes"), &[]).unwrap(), "\"yes\"");
        assert_eq!(plain_text(&c, &Plain::str("1.5"), &[]).unwrap(), "\"1.5\"");
        assert_eq!(
            plain_text(&c, &Plain::str("a\tb"), &[]).unwrap(),
            "\"a\\tb\""
        );
        assert_eq!(plain_text(&c, &Plain::str("a: b"), &[]).unwrap(), "'a: b'");
        assert_eq!(plain_text(&c, &Plain::str("hello"), &[]).unwrap(), "hello");
    }

    #[test]
    fn unsupported_features_are_refused_wherever_they_sit() {
        for (src, what) in [
            ("a:\n  b: &x 1\n  c: *x\n", "anchors"),
            ("a:\n  - b: !!str 1\n", "tags"),
            ("base: {x: 1}\nd:\n  e:\n    <<: {y: 2}\n", "merge keys"),
            ("%YAML 1.2\n---\na: 1\n", "directives"),
        ] {
            match parse(src) {
                Err(SopsError::Unsupported { detail, .. }) => {
                    assert!(detail.contains(what), "{src:?}: {detail}")
                }
                other => panic!("{src:?} was not refused as {what}: {other:?}"),
            }
        }
        assert!(parse("a:\n  b: 1\n  c: [x, y\n").is_err());
        assert!(parse("a:\n  b: 1\n").is_ok());
    }
}
