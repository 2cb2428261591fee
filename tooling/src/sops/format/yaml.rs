//! YAML through yaml-edit's lossless syntax tree: scalars are decoded as yaml.v3 decodes them,
//! comments get the key path sops gives them, and edits keep each scalar's quoting style.

use std::ops::Range;

use rowan::ast::AstNode;
use rowan::NodeOrToken;
use yaml_edit::{SyntaxKind as K, YamlFile};

use super::yaml_comments::{self, Block, Entry};
use super::{Ctx, Leaf, MetaBlock, Parsed};
use crate::sops::error::{Result, SopsError};
use crate::sops::metadata::MVal;
use crate::sops::value::{go_format_float_g, resolve_plain, Plain};

pub(super) use super::yaml_scalar::{decode_block, decode_double};
use super::yaml_scalar::{decode_single, fold_plain};

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
    /// Content indentation of an existing block scalar.
    pub(super) block_indent: usize,
    /// Inside `[...]` or `{...}`.
    pub(super) flow: bool,
    /// Something (a comment) follows the scalar on its line.
    pub(super) line_tail: bool,
    /// The span ends with a line break (block scalars).
    pub(super) ends_nl: bool,
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
            0
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

/// The text that replaces a scalar with `enc`, keeping its quoting style.
pub(crate) fn enc_text(c: &YamlCtx, _src: &str, _span: &Range<usize>, enc: &str) -> String {
    if c.flow {
        return format!("\"{enc}\"");
    }
    match c.style {
        Style::Plain => enc.to_string(),
        Style::Single => format!("'{enc}'"),
        Style::Double => format!("\"{enc}\""),
        Style::Block => {
            let indent = if c.block_indent > c.parent_col {
                c.block_indent
            } else {
                c.parent_col + 2
            };
            format!(
                "|-\n{}{enc}{}",
                " ".repeat(indent),
                if c.ends_nl { "\n" } else { "" }
            )
        }
    }
}

const YAML11_BOOLS: [&str; 22] = [
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
    "OFF", "true", "false", "True", "False", "TRUE", "FALSE",
];

/// Whether `s` can be written as a plain scalar and read back as the same string.
fn plain_safe(s: &str, flow: bool) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s.trim() != s
        || "-?:,[]{}#&*!|>'\"%@`".contains(first)
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s.chars().any(|c| c.is_control())
        || (flow && s.contains([',', '[', ']', '{', '}']))
        || YAML11_BOOLS.contains(&s)
    {
        return false;
    }
    matches!(resolve_plain(s), Ok(Plain::Str(_)))
}

fn single_quoted(s: &str) -> Option<String> {
    if s.chars().any(|c| c.is_control() && c != '\t') {
        return None;
    }
    Some(format!("'{}'", s.replace('\'', "''")))
}

/// A double-quoted YAML string.
pub(crate) fn double_quoted(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if c.is_control() => o.push_str(&format!("\\u{:04X}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A literal block (`|`, `|-`, `|+`) for `s` with content at `indent`, if `s` fits one.
fn literal(s: &str, indent: usize, ends_nl: bool) -> Option<String> {
    let body = s.strip_suffix('\n').unwrap_or(s);
    let chomp = if !s.ends_with('\n') {
        "-"
    } else if body.ends_with('\n') || body.is_empty() {
        "+"
    } else {
        ""
    };
    let lines: Vec<&str> = body.split('\n').collect();
    let bad = s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
        || lines
            .first()
            .is_none_or(|l| l.starts_with([' ', '\t']) || l.is_empty())
        || lines.iter().any(|l| !l.is_empty() && l.trim().is_empty());
    if bad {
        return None;
    }
    let pad = " ".repeat(indent);
    let mut out = format!("|{chomp}");
    for l in lines {
        out.push('\n');
        if !l.is_empty() {
            out.push_str(&pad);
            out.push_str(l);
        }
    }
    if ends_nl {
        out.push('\n');
    }
    Some(out)
}

/// A string as an inline scalar (plain when safe, else double-quoted).
pub(crate) fn inline_str(s: &str) -> String {
    if plain_safe(s, false) {
        s.to_string()
    } else {
        double_quoted(s)
    }
}

/// The text that replaces an encrypted scalar with its plaintext.
pub(crate) fn plain_text(c: &YamlCtx, v: &Plain, path: &[String]) -> Result<String> {
    let s = match v {
        Plain::Null => return Ok("null".into()),
        Plain::Int(i) => return Ok(i.to_string()),
        Plain::Bool(b) => return Ok(b.to_string()),
        Plain::Time(t) => return Ok(t.clone()),
        Plain::Float(f) => {
            return Ok(match go_format_float_g(*f).as_str() {
                "NaN" => ".nan".into(),
                "+Inf" => ".inf".into(),
                "-Inf" => "-.inf".into(),
                t => t.to_string(),
            })
        }
        Plain::Bytes(_) => {
            return Err(SopsError::BadValue {
                path: path.join(":"),
                detail: "value is not UTF-8 text".into(),
            })
        }
        Plain::Str(s) => s,
    };
    let block_ok = !c.flow && !c.line_tail;
    let literal_indent = if c.block_indent > c.parent_col {
        c.block_indent
    } else {
        c.parent_col + 2
    };
    let text = match c.style {
        Style::Block if block_ok => literal(s, literal_indent, c.ends_nl),
        Style::Single => single_quoted(s).filter(|_| !s.contains('\n')),
        Style::Double => Some(double_quoted(s)),
        _ => None,
    };
    if let Some(t) = text {
        return Ok(t);
    }
    let nl = if c.ends_nl { "\n" } else { "" };
    if s.contains('\n') && block_ok {
        if let Some(t) = literal(s, literal_indent, c.ends_nl) {
            return Ok(t);
        }
    }
    let inline = if plain_safe(s, c.flow) {
        s.to_string()
    } else if !s.contains('\n') {
        single_quoted(s).unwrap_or_else(|| double_quoted(s))
    } else {
        double_quoted(s)
    };
    Ok(format!("{inline}{nl}"))
}

fn emit(v: &MVal, indent: usize, out: &mut String) {
    match v {
        MVal::Map(entries) => {
            for (k, v) in entries {
                out.push_str(&" ".repeat(indent));
                out.push_str(&inline_str(k));
                out.push(':');
                match v {
                    MVal::Map(_) => {
                        out.push('\n');
                        emit(v, indent + 4, out);
                    }
                    MVal::List(items) => {
                        out.push('\n');
                        for item in items {
                            let mut sub = String::new();
                            match item {
                                MVal::Map(_) => emit(item, indent + 6, &mut sub),
                                other => {
                                    sub.push_str(&" ".repeat(indent + 6));
                                    sub.push_str(&scalar_text(other, indent + 8));
                                    sub.push('\n');
                                }
                            }
                            out.push_str(&" ".repeat(indent + 4));
                            out.push_str("- ");
                            out.push_str(&sub[indent + 6..]);
                        }
                    }
                    other => {
                        out.push(' ');
                        out.push_str(&scalar_text(other, indent + 2));
                        out.push('\n');
                    }
                }
            }
        }
        other => {
            out.push_str(&scalar_text(other, indent));
            out.push('\n');
        }
    }
}

fn scalar_text(v: &MVal, block_indent: usize) -> String {
    match v {
        MVal::Str(s) if s.contains('\n') => {
            literal(s, block_indent, false).unwrap_or_else(|| double_quoted(s))
        }
        MVal::Str(s) => inline_str(s),
        MVal::Int(i) => i.to_string(),
        MVal::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// Where a document whose top level is a flow mapping (`{...}`) closes it, and whether the
/// mapping is empty; `None` for a block mapping.
pub(crate) fn flow_close(src: &str) -> Option<(usize, bool)> {
    let content = |l: &&str| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#') && t != "---"
    };
    let first = src.lines().find(content)?;
    if !first.trim_start().starts_with('{') {
        return None;
    }
    let last = src.lines().rev().find(content)?;
    let line_at = last.as_ptr() as usize - src.as_ptr() as usize;
    let close = line_at + last.rfind('}')?;
    let empty = src[..close].trim_end().ends_with('{');
    Some((close, empty))
}

/// The `sops` entry of a flow mapping: `"sops": {...}` on one line.
pub(crate) fn meta_flow_text(m: &MVal) -> String {
    fn flow(v: &MVal, out: &mut String) {
        match v {
            MVal::Map(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&double_quoted(k));
                    out.push_str(": ");
                    flow(v, out);
                }
                out.push('}');
            }
            MVal::List(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    flow(v, out);
                }
                out.push(']');
            }
            MVal::Str(s) => out.push_str(&double_quoted(s)),
            MVal::Int(i) => out.push_str(&i.to_string()),
            MVal::Bool(b) => out.push_str(&b.to_string()),
        }
    }
    let mut out = String::from("\"sops\": ");
    flow(m, &mut out);
    out
}

/// The `sops:` block as sops writes it (4-space indentation).
pub(crate) fn meta_text(m: &MVal) -> String {
    let mut out = String::from("sops:\n");
    emit(m, 4, &mut out);
    out
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
            block_indent: 0,
            flow: false,
            line_tail: false,
            ends_nl: false,
        };
        assert_eq!(
            plain_text(&c, &Plain::str("l1\nl2\n"), &[]).unwrap(),
            "|\n  l1\n  l2"
        );
        assert_eq!(plain_text(&c, &Plain::str("yes"), &[]).unwrap(), "'yes'");
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
