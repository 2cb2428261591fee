//! sops's `--extract` index syntax (`["a"]["b"][0]`) and the plaintext tree it indexes.
//!
//! A decrypted document is read into a [`Node`] tree (leaves are [`Plain`], so strings are
//! zeroized on drop) for the commands that address one part of it or print it in another
//! format; the layout-preserving path stays with [`crate::sops::engine`].

use super::error::{Result, SopsError};
use super::format::{self, FileFormat};
use super::value::Plain;

/// One step of a path: a mapping key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `["key"]`.
    Key(String),
    /// `[0]`.
    Index(usize),
}

/// A plaintext document as a tree, mapping order kept.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A scalar.
    Scalar(Plain),
    /// A list.
    List(Vec<Node>),
    /// A mapping, in order.
    Map(Vec<(String, Node)>),
}

fn bad_path(detail: impl Into<String>) -> SopsError {
    SopsError::BadPath(detail.into())
}

/// Parses sops's index syntax: `["key"]` (double or single quotes) and `[N]`, one after another.
/// An empty string is the whole document.
pub fn parse_path(s: &str) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let Some(body) = rest.strip_prefix('[') else {
            return Err(bad_path(format!(
                "`{s}`: expected `[` at `{rest}`; write keys as [\"key\"] and indexes as [0]"
            )));
        };
        let (step, after) = match body.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let end = body[1..]
                    .find(q)
                    .ok_or_else(|| bad_path(format!("`{s}`: unterminated key at `{rest}`")))?
                    + 1;
                (Step::Key(body[1..end].to_string()), &body[end + 1..])
            }
            _ => {
                let end = body.find(']').ok_or_else(|| {
                    bad_path(format!("`{s}`: component `{rest}` doesn't end with ]"))
                })?;
                let n = body[..end].trim().parse::<usize>().map_err(|_| {
                    bad_path(format!(
                        "`{s}`: `{}` is neither a quoted key nor a list index",
                        &body[..end]
                    ))
                })?;
                (Step::Index(n), &body[end..])
            }
        };
        rest = after
            .strip_prefix(']')
            .ok_or_else(|| bad_path(format!("`{s}`: component `{after}` doesn't start with ]")))?;
        steps.push(step);
    }
    Ok(steps)
}

impl Node {
    /// Reads a plaintext document of `fmt` into a tree.
    pub fn parse(plain: &[u8], fmt: FileFormat) -> Result<Node> {
        match fmt {
            FileFormat::Yaml => {
                let v: serde_yaml_ng::Value =
                    serde_yaml_ng::from_slice(plain).map_err(|e| SopsError::Malformed {
                        format: "yaml",
                        detail: e.to_string(),
                    })?;
                Ok(match Node::from_yaml(v) {
                    Node::Scalar(Plain::Null) => Node::Map(vec![]),
                    n => n,
                })
            }
            FileFormat::Json => format::json::parse_tree(plain),
            FileFormat::Dotenv => format::dotenv::parse_tree(plain),
            FileFormat::Binary => Err(SopsError::UnsupportedFormat {
                format: "binary",
                detail: "a binary file has no keys to address; use --input-type".into(),
            }),
        }
    }

    fn from_yaml(v: serde_yaml_ng::Value) -> Node {
        use serde_yaml_ng::Value as V;
        match v {
            V::Null => Node::Scalar(Plain::Null),
            V::Bool(b) => Node::Scalar(Plain::Bool(b)),
            V::Number(n) => Node::Scalar(match n.as_i64() {
                Some(i) => Plain::Int(i),
                None => Plain::Float(n.as_f64().unwrap_or(f64::NAN)),
            }),
            V::String(s) => Node::Scalar(Plain::str(s)),
            V::Sequence(l) => Node::List(l.into_iter().map(Node::from_yaml).collect()),
            V::Mapping(m) => Node::Map(
                m.into_iter()
                    .map(|(k, v)| {
                        let key = match k {
                            V::String(s) => s,
                            other => serde_yaml_ng::to_string(&other)
                                .unwrap_or_default()
                                .trim_end()
                                .to_string(),
                        };
                        (key, Node::from_yaml(v))
                    })
                    .collect(),
            ),
            V::Tagged(t) => Node::from_yaml(t.value),
        }
    }

    /// The part of the tree at `path`, with sops's errors for a missing key or index.
    pub fn get(&self, path: &[Step]) -> Result<&Node> {
        let mut n = self;
        for step in path {
            n = match (n, step) {
                (Node::Map(m), Step::Key(k)) => m
                    .iter()
                    .find(|(x, _)| x == k)
                    .map(|(_, v)| v)
                    .ok_or_else(|| bad_path(format!("component [\"{k}\"] not found")))?,
                (Node::List(l), Step::Index(i)) => l.get(*i).ok_or_else(|| {
                    bad_path(format!(
                        "component [{i}] accesses out of bounds (the list has {} items)",
                        l.len()
                    ))
                })?,
                (_, Step::Key(k)) => {
                    return Err(bad_path(format!("component [\"{k}\"]: not a mapping here")))
                }
                (_, Step::Index(i)) => {
                    return Err(bad_path(format!("component [{i}]: not a list here")))
                }
            };
        }
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn paths_parse_like_sops() {
        assert_eq!(
            parse_path(r#"["a"][0]['b c']"#).unwrap(),
            vec![
                Step::Key("a".into()),
                Step::Index(0),
                Step::Key("b c".into())
            ]
        );
        assert_eq!(parse_path("").unwrap(), vec![]);
        for bad in ["a", r#"["a""#, "[x]", r#"["a"]b"#, "[-1]"] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn get_walks_keys_and_indexes() {
        let n = Node::parse(b"a:\n  l: [x, {k: 2}]\n", FileFormat::Yaml).unwrap();
        let p = parse_path(r#"["a"]["l"][1]["k"]"#).unwrap();
        assert_eq!(n.get(&p).unwrap(), &Node::Scalar(Plain::Int(2)));
        assert!(n.get(&parse_path(r#"["a"]["zz"]"#).unwrap()).is_err());
        assert!(n.get(&parse_path(r#"["a"]["l"][5]"#).unwrap()).is_err());
        assert!(n.get(&parse_path(r#"["a"][0]"#).unwrap()).is_err());
    }
}
