//! Writing YAML as sops does: values back into the place of `ENC[...]` scalars, quoted the
//! way yaml.v3 quotes them (or as `|` blocks), and the `sops` metadata block or flow entry.

use std::ops::Range;

use super::yaml::{Style, YamlCtx};
use crate::sops::error::{Result, SopsError};
use crate::sops::metadata::MVal;
use crate::sops::value::{go_format_float_g, resolve_plain, Plain};

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
    // As yaml.v3 writes it: double quotes for a string that would read as another type or
    // holds control characters, else single quotes where plain text would not parse.
    let inline = if plain_safe(s, c.flow) {
        s.to_string()
    } else if s.contains(|ch: char| ch.is_control())
        || YAML11_BOOLS.contains(&s.as_ref())
        || !matches!(resolve_plain(s), Ok(Plain::Str(_)))
    {
        double_quoted(s)
    } else {
        single_quoted(s).unwrap_or_else(|| double_quoted(s))
    };
    Ok(format!("{inline}{nl}"))
}

/// A scalar as yaml.v3 (sops) writes it in a block document, a `|` block's content at
/// `block_indent`.
pub(crate) fn scalar(v: &Plain, block_indent: usize) -> Result<String> {
    let c = YamlCtx {
        style: Style::Plain,
        parent_col: 0,
        block_indent: block_indent.max(1),
        flow: false,
        line_tail: false,
        ends_nl: false,
    };
    plain_text(&c, v, &[])
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
