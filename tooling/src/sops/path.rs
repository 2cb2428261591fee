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
                let mut tree = match Node::from_yaml(v) {
                    Node::Scalar(Plain::Null) => Node::Map(vec![]),
                    n => n,
                };
                tree.type_timestamps(plain);
                Ok(tree)
            }
            FileFormat::Json => format::json::parse_tree(plain),
            FileFormat::Dotenv => format::dotenv::parse_tree(plain),
            FileFormat::Ini => format::ini::parse_tree(plain),
            FileFormat::Binary => Err(SopsError::UnsupportedFormat {
                format: "binary",
                detail: "a binary file has no keys to address; use --input-type".into(),
            }),
        }
    }

    /// Gives the unquoted timestamps of a YAML document their type, as sops's YAML reader does
    /// (the YAML parser here reads them as strings): the engine's reader types each scalar of
    /// a mapping, and a string there that it reads as a timestamp becomes one. (List items,
    /// which share their list's path there, stay strings.)
    fn type_timestamps(&mut self, plain: &[u8]) {
        let Ok(parsed) = std::str::from_utf8(plain)
            .map_err(|_| ())
            .and_then(|t| format::yaml::parse(t).map_err(|_| ()))
        else {
            return;
        };
        for leaf in parsed.leaves {
            if let format::Leaf::Value {
                path,
                value: Plain::Time(t),
                ..
            } = leaf
            {
                let steps: Vec<Step> = path.into_iter().map(Step::Key).collect();
                if let Ok(Node::Scalar(s @ Plain::Str(_))) = self.get_mut(&steps) {
                    *s = Plain::Time(t);
                }
            }
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

    /// Sets the part at `path` to `value` as `sops set` does: missing mapping keys are created,
    /// a scalar on the way becomes a mapping, an index past a list's end appends.
    pub fn set(&mut self, path: &[Step], value: Node) -> Result<()> {
        let Some((first, rest)) = path.split_first() else {
            *self = value;
            return Ok(());
        };
        match (self, first) {
            (Node::Map(m), Step::Key(k)) => {
                let at = match m.iter().position(|(x, _)| x == k) {
                    Some(i) => i,
                    None => {
                        let empty = match rest.first() {
                            Some(Step::Index(_)) => Node::List(vec![]),
                            _ => Node::Map(vec![]),
                        };
                        m.push((k.clone(), empty));
                        m.len() - 1
                    }
                };
                m[at].1.set(rest, value)
            }
            (Node::List(l), Step::Index(i)) => {
                if *i >= l.len() {
                    l.push(match rest.first() {
                        Some(Step::Index(_)) => Node::List(vec![]),
                        _ => Node::Map(vec![]),
                    });
                    let last = l.len() - 1;
                    return l[last].set(rest, value);
                }
                l[*i].set(rest, value)
            }
            (n @ Node::Scalar(_), step) => {
                *n = match step {
                    Step::Key(_) => Node::Map(vec![]),
                    Step::Index(_) => Node::List(vec![]),
                };
                n.set(path, value)
            }
            (_, step) => Err(bad_path(format!(
                "component {}: the document has a {} here",
                step_text(step),
                if matches!(step, Step::Index(_)) {
                    "mapping or scalar"
                } else {
                    "list"
                }
            ))),
        }
    }

    /// Removes the part at `path`; a missing key or index is an error, as in `sops unset`.
    pub fn unset(&mut self, path: &[Step]) -> Result<()> {
        let Some((last, parents)) = path.split_last() else {
            return Err(bad_path(
                "unset needs a path: the whole document cannot be removed",
            ));
        };
        let parent = self.get_mut(parents)?;
        match (parent, last) {
            (Node::Map(m), Step::Key(k)) => {
                let i = m
                    .iter()
                    .position(|(x, _)| x == k)
                    .ok_or_else(|| bad_path(format!("component [\"{k}\"] not found")))?;
                m.remove(i);
                Ok(())
            }
            (Node::List(l), Step::Index(i)) if *i < l.len() => {
                l.remove(*i);
                Ok(())
            }
            (_, step) => Err(bad_path(format!("component {} not found", step_text(step)))),
        }
    }

    fn get_mut(&mut self, path: &[Step]) -> Result<&mut Node> {
        let mut n = self;
        for step in path {
            n = match (n, step) {
                (Node::Map(m), Step::Key(k)) => m
                    .iter_mut()
                    .find(|(x, _)| x == k)
                    .map(|(_, v)| v)
                    .ok_or_else(|| bad_path(format!("component [\"{k}\"] not found")))?,
                (Node::List(l), Step::Index(i)) => l
                    .get_mut(*i)
                    .ok_or_else(|| bad_path(format!("component [{i}] accesses out of bounds")))?,
                (_, step) => {
                    return Err(bad_path(format!("component {} not found", step_text(step))))
                }
            };
        }
        Ok(n)
    }
}

fn step_text(s: &Step) -> String {
    match s {
        Step::Key(k) => format!("[\"{k}\"]"),
        Step::Index(i) => format!("[{i}]"),
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

    #[test]
    fn set_creates_and_unset_removes() {
        let mut n = Node::parse(b"a:\n  l: [x]\ns: v\n", FileFormat::Yaml).unwrap();
        let one = Node::Scalar(Plain::Int(1));
        n.set(&parse_path(r#"["s"]["x"]"#).unwrap(), one.clone())
            .unwrap();
        n.set(&parse_path(r#"["a"]["l"][7]"#).unwrap(), one.clone())
            .unwrap();
        n.set(&parse_path(r#"["b"]["c"]"#).unwrap(), one.clone())
            .unwrap();
        let want =
            Node::parse(b"a: {l: [x, 1]}\ns: {x: 1}\nb: {c: 1}\n", FileFormat::Yaml).unwrap();
        assert_eq!(n, want);
        n.unset(&parse_path(r#"["a"]["l"][0]"#).unwrap()).unwrap();
        n.unset(&parse_path(r#"["b"]"#).unwrap()).unwrap();
        assert!(n.unset(&parse_path(r#"["b"]"#).unwrap()).is_err());
        assert!(n.unset(&parse_path(r#"["a"]["l"][1]"#).unwrap()).is_err());
        let want = Node::parse(b"a: {l: [1]}\ns: {x: 1}\n", FileFormat::Yaml).unwrap();
        assert_eq!(n, want);
    }
}
