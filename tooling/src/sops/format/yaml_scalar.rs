//! Decoding YAML scalars as yaml.v3 does: plain and quoted scalars folded across lines,
//! escapes in double quotes, and block scalars (`|`, `>`) with their chomping indicators.

use super::yaml::malformed;
use crate::sops::error::Result;

/// Folds the lines of a multi-line flow scalar (plain or quoted body): a single line break
/// becomes a space, `n` empty lines become `n` line feeds.
fn fold_lines(body: &str, trim_first: bool, trim_last: bool) -> String {
    let lines: Vec<&str> = body.split('\n').collect();
    let last = lines.len() - 1;
    let mut out = String::new();
    let mut empties = 0usize;
    let mut started = false;
    for (i, l) in lines.iter().enumerate() {
        let mut l = l.trim_end_matches('\r');
        if i > 0 || trim_first {
            l = l.trim_start_matches([' ', '\t']);
        }
        if i < last || trim_last {
            l = l.trim_end_matches([' ', '\t']);
        }
        if i > 0 && l.is_empty() && i < last {
            empties += 1;
            continue;
        }
        if i > 0 {
            if empties > 0 {
                out.push_str(&"\n".repeat(empties));
            } else if started || i > 0 {
                out.push(' ');
            }
        }
        empties = 0;
        out.push_str(l);
        started = true;
    }
    out
}

pub(super) fn fold_plain(raw: &str) -> String {
    if raw.contains('\n') {
        fold_lines(raw.trim(), true, true)
    } else {
        raw.trim().to_string()
    }
}

pub(super) fn decode_single(raw: &str) -> Result<String> {
    let body = raw
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .ok_or_else(|| malformed("unterminated '"))?;
    let body = if body.contains('\n') {
        fold_lines(body, false, false)
    } else {
        body.to_string()
    };
    Ok(body.replace("''", "'"))
}

pub(super) fn decode_double(raw: &str) -> Result<String> {
    let body = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or_else(|| malformed("unterminated \""))?;
    // Escaped line breaks join lines without a space; mark them before folding.
    let mut joined = String::new();
    if body.contains('\n') {
        let lines: Vec<&str> = body.split('\n').collect();
        let mut acc: Vec<String> = Vec::new();
        let mut cont = false;
        for l in lines {
            let l2 = if cont {
                l.trim_start_matches([' ', '\t'])
            } else {
                l
            };
            let bs = l2.len() - l2.trim_end_matches('\\').len();
            if cont {
                if let Some(last) = acc.last_mut() {
                    last.push_str(l2);
                }
            } else {
                acc.push(l2.to_string());
            }
            cont = bs % 2 == 1;
            if cont {
                if let Some(last) = acc.last_mut() {
                    last.pop();
                }
            }
        }
        joined = fold_lines(&acc.join("\n"), false, false);
    } else {
        joined.push_str(body);
    }
    let mut out = String::new();
    let mut it = joined.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = it
            .next()
            .ok_or_else(|| malformed("dangling \\ in a double-quoted string"))?;
        let hex = |it: &mut std::str::Chars, n: usize| -> Result<char> {
            let h: String = it.take(n).collect();
            u32::from_str_radix(&h, 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| malformed("bad escape"))
        };
        match e {
            '0' => out.push('\0'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            't' | '\t' => out.push('\t'),
            'n' => out.push('\n'),
            'v' => out.push('\x0b'),
            'f' => out.push('\x0c'),
            'r' => out.push('\r'),
            'e' => out.push('\x1b'),
            ' ' => out.push(' '),
            '"' => out.push('"'),
            '/' => out.push('/'),
            '\\' => out.push('\\'),
            'N' => out.push('\u{85}'),
            '_' => out.push('\u{a0}'),
            'L' => out.push('\u{2028}'),
            'P' => out.push('\u{2029}'),
            'x' => out.push(hex(&mut it, 2)?),
            'u' => out.push(hex(&mut it, 4)?),
            'U' => out.push(hex(&mut it, 8)?),
            other => return Err(malformed(format!("unknown escape \\{other}"))),
        }
    }
    Ok(out)
}

/// A block scalar's value; `raw` runs from its `|` or `>` header through the line break that
/// ends its last line (absent at the end of a file without a final newline).
pub(super) fn decode_block(raw: &str, parent_indent: usize) -> Result<String> {
    let mut lines = raw.split('\n');
    let header = lines.next().unwrap_or_default();
    let header = header.split(" #").next().unwrap_or_default().trim();
    let folded = header.starts_with('>');
    let chomp = if header.contains('-') {
        '-'
    } else if header.contains('+') {
        '+'
    } else {
        ' '
    };
    let explicit = header
        .chars()
        .find(|c| c.is_ascii_digit())
        .and_then(|c| c.to_digit(10));
    let mut body: Vec<&str> = lines.collect();
    if raw.ends_with('\n') {
        body.pop();
    }
    let indent = match explicit {
        Some(d) => parent_indent + d as usize,
        None => body
            .iter()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start_matches(' ').len())
            .unwrap_or(0),
    };
    let content: Vec<&str> = body
        .iter()
        .map(|l| if l.len() >= indent { &l[indent..] } else { "" })
        .collect();
    let mut out = String::new();
    let mut pending = 0usize;
    let mut prev_normal = false;
    let mut first = true;
    for l in &content {
        if l.is_empty() {
            pending += 1;
            continue;
        }
        let more = l.starts_with([' ', '\t']);
        if first {
            out.push_str(&"\n".repeat(pending));
        } else if folded && prev_normal && !more {
            if pending == 0 {
                out.push(' ');
            } else {
                out.push_str(&"\n".repeat(pending));
            }
        } else {
            out.push_str(&"\n".repeat(pending + 1));
        }
        out.push_str(l);
        first = false;
        prev_normal = !more;
        pending = 0;
    }
    // Line breaks after the last content line: one per empty line that follows it, plus the
    // break that ends the block, which a block at the end of the file may not have.
    let breaks = pending + usize::from(raw.ends_with('\n'));
    match chomp {
        '-' => {}
        '+' if first => out.push_str(&"\n".repeat(pending)),
        '+' => out.push_str(&"\n".repeat(breaks)),
        _ => {
            if !first && breaks > 0 {
                out.push('\n');
            }
        }
    }
    Ok(out)
}
