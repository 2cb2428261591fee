//! File formats sops supports (YAML, JSON, dotenv, INI, binary), reduced to one shape: the leaves of
//! the document in order, each with its key path and byte span, plus the metadata block.
//!
//! Edits are splices into the original bytes, so everything we do not touch (layout, comments,
//! key order, quoting) stays byte for byte as the user wrote it.

pub(crate) mod dotenv;
pub mod emit;
pub(crate) mod ini;
pub(crate) mod json;
pub(crate) mod yaml;
mod yaml_comments;
pub(crate) mod yaml_fast;
mod yaml_scalar;
mod yaml_write;

use std::ops::Range;
use std::path::Path;

use super::error::{Result, SopsError};
use super::metadata::MVal;
use super::value::Plain;

/// The format of a SOPS file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// YAML (one document, top-level mapping).
    Yaml,
    /// JSON (top-level object).
    Json,
    /// dotenv (`KEY=value` lines).
    Dotenv,
    /// INI (sections of string values; rewritten whole, as sops does).
    Ini,
    /// Any bytes; stored as JSON `{"data": …, "sops": …}`.
    Binary,
}

impl FileFormat {
    /// Picks the format from a file name, as sops does (`.yaml`/`.yml`, `.json`, `.env`, `.ini`,
    /// else binary).
    pub fn from_path(path: &Path) -> FileFormat {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        match ext {
            "yaml" | "yml" => FileFormat::Yaml,
            "json" => FileFormat::Json,
            "env" => FileFormat::Dotenv,
            "ini" => FileFormat::Ini,
            _ if name == ".env" => FileFormat::Dotenv,
            _ => FileFormat::Binary,
        }
    }

    /// Parses a `--input-type` value.
    pub fn from_name(s: &str) -> Option<FileFormat> {
        match s {
            "yaml" => Some(FileFormat::Yaml),
            "json" => Some(FileFormat::Json),
            "dotenv" => Some(FileFormat::Dotenv),
            "ini" => Some(FileFormat::Ini),
            "binary" => Some(FileFormat::Binary),
            _ => None,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Yaml => "yaml",
            FileFormat::Json => "json",
            FileFormat::Dotenv => "dotenv",
            FileFormat::Ini => "ini",
            FileFormat::Binary => "binary",
        }
    }
}

/// Format-specific facts about a value needed to write it back in place.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ctx {
    /// YAML scalar context.
    Yaml(yaml::YamlCtx),
    /// JSON value.
    Json,
    /// dotenv value (rest of the line after `=`).
    Dotenv,
    /// INI value (after ` = `, quotes included).
    Ini,
}

/// One leaf of the document, in document order.
#[derive(Debug, PartialEq)]
pub(crate) enum Leaf {
    /// A scalar value.
    Value {
        /// Key path (list items share their list's path, as in sops).
        path: Vec<String>,
        /// Bytes of the scalar in the source.
        span: Range<usize>,
        /// The value as sops types it.
        value: Plain,
        /// How to write it back.
        ctx: Ctx,
    },
    /// A comment (text after `#`).
    Comment {
        /// Path of the collection the comment belongs to.
        path: Vec<String>,
        /// Bytes from `#` to the end of the line.
        span: Range<usize>,
        /// Text after `#`.
        text: String,
    },
}

/// The metadata block as found in a file.
#[derive(Debug, PartialEq)]
pub(crate) struct MetaBlock {
    /// Its content.
    pub value: MVal,
    /// Spans to replace (first) and remove (rest) when rewriting the block.
    pub spans: Vec<Range<usize>>,
    /// Span to remove when decrypting (JSON also drops a comma).
    pub remove: Vec<Range<usize>>,
}

/// A parsed document.
#[derive(Debug, PartialEq)]
pub(crate) struct Parsed {
    /// Leaves in document order.
    pub leaves: Vec<Leaf>,
    /// The `sops` block, if present.
    pub meta: Option<MetaBlock>,
}

/// Applies non-overlapping splices to `src`.
pub(crate) fn splice(src: &[u8], mut edits: Vec<(Range<usize>, Vec<u8>)>) -> Result<Vec<u8>> {
    edits.sort_by_key(|(r, _)| (r.start, r.end));
    let mut out = Vec::with_capacity(src.len() + edits.iter().map(|e| e.1.len()).sum::<usize>());
    let mut pos = 0;
    for (r, text) in edits {
        if r.start < pos || r.end > src.len() {
            return Err(SopsError::SelfCheck("overlapping edits".into()));
        }
        out.extend_from_slice(&src[pos..r.start]);
        out.extend_from_slice(&text);
        pos = r.end;
    }
    out.extend_from_slice(&src[pos..]);
    Ok(out)
}

/// Parses a document of a text format.
pub(crate) fn parse(format: FileFormat, src: &[u8]) -> Result<Parsed> {
    let text = std::str::from_utf8(src).map_err(|_| SopsError::Malformed {
        format: format.name(),
        detail: "not UTF-8".into(),
    })?;
    match format {
        FileFormat::Yaml => yaml::parse(text),
        FileFormat::Json | FileFormat::Binary => json::parse(text),
        FileFormat::Dotenv => dotenv::parse(text),
        FileFormat::Ini => ini::parse(text),
    }
}

/// How a comment with `text` is written back in `format`: `#text`, or go-ini's `; text` lines.
pub(crate) fn comment_text(format: FileFormat, text: &str) -> String {
    match format {
        FileFormat::Ini => ini::comment_lines(text),
        _ => format!("#{text}"),
    }
}

/// Text that replaces a value's span with an encrypted value.
pub(crate) fn enc_text(ctx: &Ctx, src: &str, span: &Range<usize>, enc: &str) -> String {
    match ctx {
        Ctx::Yaml(c) => yaml::enc_text(c, src, span, enc),
        Ctx::Json => format!("\"{enc}\""),
        Ctx::Dotenv | Ctx::Ini => enc.to_string(),
    }
}

/// Text that replaces a value's span with its plaintext.
pub(crate) fn plain_text(ctx: &Ctx, value: &Plain, path: &[String]) -> Result<String> {
    match ctx {
        Ctx::Yaml(c) => yaml::plain_text(c, value, path),
        Ctx::Json => json::plain_text(value, path),
        Ctx::Dotenv => dotenv::plain_text(value, path),
        Ctx::Ini => ini::plain_text(value, path),
    }
}

/// Edits that write `meta` into the document (replacing an existing block) or remove the block.
pub(crate) fn meta_edits(
    format: FileFormat,
    src: &str,
    parsed: &Parsed,
    meta: Option<&MVal>,
) -> Vec<(Range<usize>, Vec<u8>)> {
    match (meta, &parsed.meta) {
        (None, None) => vec![],
        (None, Some(b)) => b.remove.iter().map(|r| (r.clone(), Vec::new())).collect(),
        (Some(m), Some(b)) => {
            let in_flow = src[..b.spans[0].start].trim_end().ends_with([',', '{']);
            let text = match format {
                FileFormat::Yaml if in_flow => yaml::meta_flow_text(m),
                FileFormat::Yaml => yaml::meta_text(m),
                FileFormat::Json | FileFormat::Binary => {
                    json::meta_member(m, &json::indent_unit(src))
                }
                FileFormat::Dotenv => dotenv::meta_text(m),
                FileFormat::Ini => ini::meta_text(m),
            };
            let mut edits = vec![(b.spans[0].clone(), text.into_bytes())];
            edits.extend(b.spans[1..].iter().map(|r| (r.clone(), Vec::new())));
            edits
        }
        (Some(m), None) => match format {
            FileFormat::Yaml if yaml::flow_close(src).is_some() => {
                // A flow mapping at the top level takes the metadata as one more entry.
                let (close, empty) = yaml::flow_close(src).unwrap_or_default();
                let at = src[..close].trim_end().len();
                let sep = if empty { "" } else { ", " };
                let text = format!("{sep}{}", yaml::meta_flow_text(m));
                vec![(at..at, text.into_bytes())]
            }
            FileFormat::Yaml => {
                let mut t = String::new();
                if !src.is_empty() && !src.ends_with('\n') {
                    t.push('\n');
                }
                t.push_str(&yaml::meta_text(m));
                vec![(src.len()..src.len(), t.into_bytes())]
            }
            FileFormat::Json | FileFormat::Binary => json::meta_insert(src, m),
            FileFormat::Dotenv => {
                let mut t = String::new();
                if !src.is_empty() && !src.ends_with('\n') {
                    t.push('\n');
                }
                t.push_str(&dotenv::meta_text(m));
                vec![(src.len()..src.len(), t.into_bytes())]
            }
            FileFormat::Ini => {
                // `src` is in sops's layout ([`ini::canonical`]): a blank line between the
                // last section and the metadata's.
                let sep = if src.is_empty() { "" } else { "\n" };
                let t = format!("{sep}{}", ini::meta_text(m));
                vec![(src.len()..src.len(), t.into_bytes())]
            }
        },
    }
}
