//! JSON with byte spans: a small recursive-descent parser, because edits must leave the rest of
//! the file untouched. Numbers are Go `float64`s, as sops' JSON store decodes them.

use std::ops::Range;

use super::{Ctx, Leaf, MetaBlock, Parsed};
use crate::sops::error::{Result, SopsError};
use crate::sops::metadata::MVal;
use crate::sops::path::Node;
use crate::sops::value::{go_format_float, go_format_float_json, Plain};

fn malformed(detail: impl Into<String>) -> SopsError {
    SopsError::Malformed {
        format: "json",
        detail: detail.into(),
    }
}

struct P<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    leaves: Vec<Leaf>,
}

enum J {
    Obj(Vec<(String, J)>),
    Arr(Vec<J>),
    Leaf(Plain),
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T> {
        Err(malformed(format!("{what} at byte {}", self.i)))
    }

    fn string(&mut self) -> Result<String> {
        let start = self.i;
        if self.b.get(self.i) != Some(&b'"') {
            return self.err("expected a string");
        }
        self.i += 1;
        while self.i < self.b.len() {
            match self.b[self.i] {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return serde_json::from_str(&self.s[start..self.i])
                        .map_err(|e| malformed(e.to_string()));
                }
                _ => self.i += 1,
            }
        }
        self.err("unterminated string")
    }

    /// Parses a value; records leaves when `path` is given.
    fn value(&mut self, path: Option<&[String]>) -> Result<J> {
        self.ws();
        let start = self.i;
        let leaf = |p: &mut Self, v: Plain| -> J {
            if let Some(path) = path {
                if !matches!(v, Plain::Null) {
                    p.leaves.push(Leaf::Value {
                        path: path.to_vec(),
                        span: start..p.i,
                        value: v.clone(),
                        ctx: Ctx::Json,
                    });
                }
            }
            J::Leaf(v)
        };
        match self.b.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut m: Vec<(String, J)> = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(J::Obj(m));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return self.err("expected `:`");
                    }
                    self.i += 1;
                    let child = path.map(|p| {
                        let mut c = p.to_vec();
                        c.push(k.clone());
                        c
                    });
                    let v = self.value(child.as_deref())?;
                    if m.iter().any(|(x, _)| *x == k) {
                        return Err(malformed(format!("duplicate key `{k}`")));
                    }
                    m.push((k, v));
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(J::Obj(m));
                        }
                        _ => return self.err("expected `,` or `}`"),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(J::Arr(a));
                }
                loop {
                    a.push(self.value(path)?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(J::Arr(a));
                        }
                        _ => return self.err("expected `,` or `]`"),
                    }
                }
            }
            Some(b'"') => {
                let s = self.string()?;
                Ok(leaf(self, Plain::str(s)))
            }
            Some(b't') if self.s[self.i..].starts_with("true") => {
                self.i += 4;
                Ok(leaf(self, Plain::Bool(true)))
            }
            Some(b'f') if self.s[self.i..].starts_with("false") => {
                self.i += 5;
                Ok(leaf(self, Plain::Bool(false)))
            }
            Some(b'n') if self.s[self.i..].starts_with("null") => {
                self.i += 4;
                Ok(leaf(self, Plain::Null))
            }
            Some(b'-' | b'0'..=b'9') => {
                while self.i < self.b.len()
                    && matches!(
                        self.b[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                let f: f64 = self.s[start..self.i]
                    .parse()
                    .map_err(|_| malformed(format!("bad number at byte {start}")))?;
                if !f.is_finite() {
                    return self.err("number out of range");
                }
                Ok(leaf(self, Plain::Float(f)))
            }
            _ => self.err("expected a value"),
        }
    }
}

fn to_mval(j: J) -> MVal {
    match j {
        J::Obj(m) => MVal::Map(m.into_iter().map(|(k, v)| (k, to_mval(v))).collect()),
        J::Arr(a) => MVal::List(a.into_iter().map(to_mval).collect()),
        J::Leaf(Plain::Str(s)) => MVal::Str(s.to_string()),
        J::Leaf(Plain::Bool(b)) => MVal::Bool(b),
        J::Leaf(Plain::Float(f)) if f.fract() == 0.0 && f.abs() < 1e15 => MVal::Int(f as i64),
        J::Leaf(Plain::Float(f)) => MVal::Str(go_format_float(f)),
        J::Leaf(_) => MVal::Str(String::new()),
    }
}

/// A plaintext JSON document as a tree (numbers are Go `float64`s, as sops reads them).
pub(crate) fn parse_tree(src: &[u8]) -> Result<Node> {
    fn node(j: J) -> Node {
        match j {
            J::Obj(m) => Node::Map(m.into_iter().map(|(k, v)| (k, node(v))).collect()),
            J::Arr(a) => Node::List(a.into_iter().map(node).collect()),
            J::Leaf(p) => Node::Scalar(p),
        }
    }
    let s = std::str::from_utf8(src).map_err(|_| malformed("not UTF-8"))?;
    let mut p = P {
        s,
        b: s.as_bytes(),
        i: 0,
        leaves: Vec::new(),
    };
    let v = p.value(None)?;
    p.ws();
    if p.i != p.b.len() {
        return p.err("trailing data");
    }
    Ok(node(v))
}

/// Parses a JSON document whose top level is an object.
#[allow(clippy::single_range_in_vec_init)] // `spans`/`remove` are lists of spans; JSON needs one
pub(crate) fn parse(src: &str) -> Result<Parsed> {
    let mut p = P {
        s: src,
        b: src.as_bytes(),
        i: 0,
        leaves: Vec::new(),
    };
    p.ws();
    if p.b.get(p.i) != Some(&b'{') {
        return Err(SopsError::Unsupported {
            format: "json",
            detail: "the top level must be an object".into(),
        });
    }
    p.i += 1;
    let mut meta = None;
    let mut prev_end: Option<usize> = None;
    let mut pending_remove: Option<(usize, MVal, Range<usize>)> = None;
    p.ws();
    if p.b.get(p.i) == Some(&b'}') {
        p.i += 1;
    } else {
        loop {
            p.ws();
            let key_start = p.i;
            let k = p.string()?;
            p.ws();
            if p.b.get(p.i) != Some(&b':') {
                return p.err("expected `:`");
            }
            p.i += 1;
            if let Some((start, mv, span)) = pending_remove.take() {
                // The sops member was first: remove it up to this key.
                meta = Some(MetaBlock {
                    value: mv,
                    spans: vec![span],
                    remove: vec![start..key_start],
                });
            }
            if k == "sops" {
                let v = p.value(None)?;
                let span = key_start..p.i;
                match prev_end {
                    Some(pe) => {
                        meta = Some(MetaBlock {
                            value: to_mval(v),
                            spans: vec![span.clone()],
                            remove: vec![pe..span.end],
                        })
                    }
                    None => pending_remove = Some((key_start, to_mval(v), span)),
                }
            } else {
                p.value(Some(&[k]))?;
            }
            prev_end = Some(p.i);
            p.ws();
            match p.b.get(p.i) {
                Some(b',') => p.i += 1,
                Some(b'}') => {
                    p.i += 1;
                    break;
                }
                _ => return p.err("expected `,` or `}`"),
            }
        }
    }
    if let Some((start, mv, span)) = pending_remove {
        meta = Some(MetaBlock {
            value: mv,
            spans: vec![span.clone()],
            remove: vec![start..span.end],
        });
    }
    p.ws();
    if p.i != p.b.len() {
        return p.err("trailing data");
    }
    Ok(Parsed {
        leaves: p.leaves,
        meta,
    })
}

/// JSON text for a decrypted value.
pub(crate) fn plain_text(v: &Plain, path: &[String]) -> Result<String> {
    Ok(match v {
        Plain::Null => "null".into(),
        Plain::Str(s) => serde_json::to_string(s.as_str()).unwrap_or_default(),
        Plain::Bytes(_) => {
            return Err(SopsError::BadValue {
                path: path.join(":"),
                detail: "value is not UTF-8 text".into(),
            })
        }
        Plain::Int(i) => i.to_string(),
        Plain::Float(f) if f.is_finite() => go_format_float_json(*f),
        Plain::Float(_) => {
            return Err(SopsError::BadValue {
                path: path.join(":"),
                detail: "NaN/Inf cannot be written as JSON".into(),
            })
        }
        Plain::Bool(b) => b.to_string(),
        Plain::Time(t) => format!("\"{t}\""),
    })
}

/// The indentation unit the file uses (tab by default, as sops writes).
pub(crate) fn indent_unit(src: &str) -> String {
    src.find('\n')
        .map(|i| &src[i + 1..])
        .map(|rest| rest[..rest.len() - rest.trim_start_matches([' ', '\t']).len()].to_string())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "\t".to_string())
}

fn emit(v: &MVal, unit: &str, depth: usize, out: &mut String) {
    let pad = unit.repeat(depth + 1);
    match v {
        MVal::Map(m) => {
            out.push_str("{\n");
            for (i, (k, v)) in m.iter().enumerate() {
                out.push_str(&pad);
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push_str(": ");
                emit(v, unit, depth + 1, out);
                out.push_str(if i + 1 < m.len() { ",\n" } else { "\n" });
            }
            out.push_str(&unit.repeat(depth));
            out.push('}');
        }
        MVal::List(l) => {
            out.push_str("[\n");
            for (i, v) in l.iter().enumerate() {
                out.push_str(&pad);
                emit(v, unit, depth + 1, out);
                out.push_str(if i + 1 < l.len() { ",\n" } else { "\n" });
            }
            out.push_str(&unit.repeat(depth));
            out.push(']');
        }
        MVal::Str(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
        MVal::Int(i) => out.push_str(&i.to_string()),
        MVal::Bool(b) => out.push_str(&b.to_string()),
    }
}

/// `"sops": {...}` as a member of the top-level object.
pub(crate) fn meta_member(m: &MVal, unit: &str) -> String {
    let mut out = String::from("\"sops\": ");
    emit(m, unit, 1, &mut out);
    out
}

/// Edits that add the `sops` member to an object that has none.
pub(crate) fn meta_insert(src: &str, m: &MVal) -> Vec<(Range<usize>, Vec<u8>)> {
    let unit = indent_unit(src);
    let member = meta_member(m, &unit);
    let close = src.rfind('}').unwrap_or(src.len());
    let before = src[..close].trim_end();
    let at = before.len();
    let text = if before.ends_with('{') {
        format!("\n{unit}{member}\n")
    } else {
        format!(",\n{unit}{member}\n")
    };
    vec![(at..close, text.into_bytes())]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn spans_and_meta() {
        let src = "{\"a\": [1, \"x\"], \"sops\": {\"version\": \"3\"}, \"b\": null}";
        let p = parse(src).unwrap();
        assert_eq!(p.leaves.len(), 2);
        let m = p.meta.unwrap();
        assert_eq!(
            &src[m.remove[0].clone()],
            ", \"sops\": {\"version\": \"3\"}"
        );
    }
}
