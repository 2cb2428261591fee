//! Reading comments back: the path an encrypted comment decrypts under (its own, or where sops
//! or an older kiwictl put it), and where a comment sops stored as a list item starts.

use super::cipher::{aad_for, decrypt_bytes, DataKey};
use super::format::Leaf;

/// Decrypts a comment under the path sops gives it where it now sits, else under its
/// ancestors, else under any other collection of the document: sops itself encrypts some
/// comments under a path it does not give them when it reads its own output, and older
/// kiwictl versions used the top level for comments at the end of a nested mapping. A
/// rotation re-encrypts every comment under the path it is read with here, and so does a
/// re-wrap of the data key for the comments found elsewhere. Returns the text and whether it
/// was found under another path than `path`.
pub(super) fn open_comment(
    key: &DataKey,
    text: &str,
    path: &[String],
    leaves: &[Leaf],
) -> Option<(String, bool)> {
    let try_path = |p: &[String]| -> Option<String> {
        let (bytes, ty) = decrypt_bytes(key, text, &aad_for(p)).ok()?;
        (ty == "comment")
            .then(|| String::from_utf8(bytes.to_vec()).ok())
            .flatten()
    };
    if let Some(t) = try_path(path) {
        return Some((t, false));
    }
    if let Some(t) = (0..path.len()).rev().find_map(|n| try_path(&path[..n])) {
        return Some((t, true));
    }
    let mut others: Vec<&[String]> = leaves
        .iter()
        .flat_map(|l| {
            let (Leaf::Value { path: p, .. } | Leaf::Comment { path: p, .. }) = l;
            (1..=p.len()).map(move |n| &p[..n])
        })
        .filter(|p| !path.starts_with(p))
        .collect();
    others.sort();
    others.dedup();
    others.into_iter().find_map(try_path).map(|t| (t, true))
}

/// The 1-based line of byte `at`.
pub(super) fn line_of(src: &[u8], at: usize) -> usize {
    1 + src[..at].iter().filter(|&&b| b == b'\n').count()
}

/// Where a list item that holds `span` starts (its `-`), when it is the first thing on its line.
pub(super) fn item_start(src: &[u8], span: &std::ops::Range<usize>) -> Option<usize> {
    let before = &src[..span.start];
    let dash = before.iter().rposition(|&b| b != b' ')?;
    let line = before[..dash]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    (before[dash] == b'-' && before[line..dash].iter().all(|&b| b == b' ')).then_some(dash)
}
