//! The witness's ledger head: what `--expect-head` and `--head-file` hold.
//!
//! After every command that changes the CA, the witness writes the new ledger head down (or the
//! signer writes it to `--head-file` on the transfer medium). The next command is given that
//! head back and refuses a ledger whose head differs: cutting entries off the end of the ledger,
//! or restoring an older backup, is then caught before anything is signed. On the soft backend
//! this is the only protection against a rolled-back ledger; hardware backends also remember the
//! head on the device ([`crate::backend::Anchor`]).
//!
//! A head is given as its 64 hex digits (spaces allowed, as the signer prints them in groups)
//! or as the first four (or more) of its PGP words, which are easier to read aloud.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil::{self, Mode};
use crate::words::Fingerprint;

/// The fewest PGP words that identify a head (32 bits).
pub const MIN_WORDS: usize = 4;

/// A head the witness recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedHead {
    /// The whole head.
    Hex(Fingerprint),
    /// The first PGP words of the head (at least [`MIN_WORDS`]), lowercase.
    Words(Vec<String>),
}

impl ExpectedHead {
    /// Parses 64 hex digits (spaces allowed) or at least four PGP words.
    pub fn parse(given: &str) -> Result<Self> {
        let squeezed: String = given.split_whitespace().collect();
        if let Some(f) = Fingerprint::from_hex(&squeezed) {
            return Ok(ExpectedHead::Hex(f));
        }
        let words: Vec<String> = given
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
        let all_hex = words
            .iter()
            .all(|w| w.chars().all(|c| c.is_ascii_hexdigit()));
        if words.len() < MIN_WORDS || words.len() > 32 || all_hex {
            return Err(Error::BadHead {
                given: given.trim().to_string(),
            });
        }
        Ok(ExpectedHead::Words(words))
    }

    /// Whether `head` is this head.
    pub fn matches(&self, head: &Fingerprint) -> bool {
        match self {
            ExpectedHead::Hex(f) => f == head,
            ExpectedHead::Words(w) => head
                .words()
                .split(' ')
                .take(w.len())
                .eq(w.iter().map(String::as_str)),
        }
    }

    /// Refuses `head` unless it matches, naming both.
    pub fn check(&self, head: &Fingerprint) -> Result<()> {
        if self.matches(head) {
            return Ok(());
        }
        Err(Error::HeadMismatch {
            ledger: format!("{} ({})", head.hex(), first_words(head)),
            expected: self.to_string(),
        })
    }
}

impl std::fmt::Display for ExpectedHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedHead::Hex(h) => write!(f, "{} ({})", h.hex(), first_words(h)),
            ExpectedHead::Words(w) => f.write_str(&w.join(" ")),
        }
    }
}

/// The first [`MIN_WORDS`] PGP words of `head`.
pub fn first_words(head: &Fingerprint) -> String {
    head.words()
        .split(' ')
        .take(MIN_WORDS)
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the witness brings to a command: a head to expect, a head file, both or neither.
#[derive(Debug, Clone, Default)]
pub struct Witness {
    /// `--expect-head`.
    pub expect: Option<ExpectedHead>,
    /// `--head-file`: read before, rewritten with the new head after success.
    pub head_file: Option<PathBuf>,
}

impl Witness {
    /// Refuses `head` unless it is what `--expect-head` and `--head-file` say.
    pub fn check(&self, head: &Fingerprint) -> Result<()> {
        if let Some(e) = &self.expect {
            e.check(head)?;
        }
        if let Some(path) = &self.head_file {
            read_head_file(path)?.check(head)?;
        }
        Ok(())
    }

    /// Whether the witness gave a head to check against.
    pub fn checks(&self) -> bool {
        self.expect.is_some() || self.head_file.is_some()
    }
}

/// Reads the head recorded in `path` (its first line).
pub fn read_head_file(path: &Path) -> Result<ExpectedHead> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::io(
            path,
            e,
            "--head-file must be the file the previous command wrote on the transfer medium",
        )
    })?;
    ExpectedHead::parse(text.lines().next().unwrap_or(""))
}

/// Writes `head` to `path` (hex on the first line, the PGP words on the second), replacing it.
pub fn write_head_file(path: &Path, head: &Fingerprint) -> Result<()> {
    let text = format!("{}\n{}\n", head.hex(), head.words());
    fsutil::replace_atomically(path, text.as_bytes(), Mode::Public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_as_hex_or_words_and_compare() {
        let head = Fingerprint::of(b"a ledger");
        let grouped = crate::words::grouped_hex(&head.0);
        for given in [head.hex(), grouped, head.hex().to_uppercase()] {
            let e = ExpectedHead::parse(&given).expect("hex");
            assert!(e.matches(&head));
            assert!(!e.matches(&Fingerprint::of(b"another")));
        }
        let words = first_words(&head);
        let e = ExpectedHead::parse(&words.to_uppercase()).expect("words");
        assert!(e.matches(&head));
        e.check(&head).expect("the same head");
        let err = e
            .check(&Fingerprint::of(b"other"))
            .expect_err("another head");
        assert!(matches!(err, Error::HeadMismatch { .. }), "{err}");
        assert!(err.to_string().contains(&words), "{err}");
        let all = ExpectedHead::parse(&head.words()).expect("all 32 words");
        assert!(all.matches(&head));
        for bad in ["", "abcd", "three words only", "abcd ef01 2345 6789"] {
            let err = ExpectedHead::parse(bad).expect_err(bad);
            assert!(matches!(err, Error::BadHead { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn head_files_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("head.txt");
        let head = Fingerprint::of(b"x");
        write_head_file(&p, &head).expect("write");
        assert!(read_head_file(&p).expect("read").matches(&head));
        let next = Fingerprint::of(b"y");
        write_head_file(&p, &next).expect("replace");
        let w = Witness {
            expect: None,
            head_file: Some(p.clone()),
        };
        w.check(&next).expect("the new head");
        assert!(matches!(w.check(&head), Err(Error::HeadMismatch { .. })));
        let missing = Witness {
            expect: None,
            head_file: Some(dir.path().join("missing")),
        };
        assert!(matches!(missing.check(&head), Err(Error::Io { .. })));
    }
}
