//! The typed options behind both of kiwictl's SOPS command lines (`kiwictl secrets ...` and the
//! sops front, `kiwictl sops ...`): each front end turns its own argument syntax into these
//! requests and prints what they return, so an option means the same thing in both.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::agekeys::{AgeRecipient, Identities};
use super::config::rule_for_file_in;
use super::engine::{encrypt, open, open_ignoring_mac, KeySpec, OpenDoc, Unlock};
use super::error::{Result, SopsError};
use super::format::emit::{self, Comments};
use super::format::FileFormat;
use super::metadata::Rules;
use super::path::{Node, Step};

/// What `encrypt` does with one plaintext.
#[derive(Debug, Clone)]
pub struct EncryptRequest {
    /// The plaintext's format.
    pub input_format: FileFormat,
    /// The encrypted file's format (none: the input's); the plaintext is re-encoded as sops
    /// does when they differ.
    pub output_format: Option<FileFormat>,
    /// Recipients given on the command line; none: the creation rule's.
    pub age: Vec<AgeRecipient>,
    /// Partial-encryption flags given on the command line; the default: the rule's.
    pub rules: Rules,
    /// The `.sops.yaml` whose creation rules apply (none: only `age` can name recipients).
    pub config: Option<PathBuf>,
}

/// Encrypts `plaintext`, known by `name` (which picks the creation rule).
pub fn encrypt_named(plaintext: &[u8], name: &Path, req: &EncryptRequest) -> Result<Vec<u8>> {
    let (spec, rules) = if req.age.is_empty() {
        let rule = rule_for_file_in(req.config.as_deref(), name)?.ok_or(SopsError::NoRecipients)?;
        let flags_given = req.rules != Rules::default();
        (
            rule.keys,
            if flags_given {
                req.rules.clone()
            } else {
                rule.rules
            },
        )
    } else {
        (KeySpec::single(req.age.clone()), req.rules.clone())
    };
    let fmt = req.output_format.unwrap_or(req.input_format);
    if fmt == req.input_format {
        return encrypt(plaintext, fmt, &spec, rules);
    }
    let tree = Node::parse(plaintext, req.input_format)?;
    let comments = Comments::parse(plaintext, req.input_format, &tree);
    let converted = emit::document_with(&tree, fmt, &comments)?;
    encrypt(&converted, fmt, &spec, rules)
}

/// What `decrypt` prints of one SOPS file.
#[derive(Debug, Clone, Default)]
pub struct DecryptRequest {
    /// The SOPS file's format.
    pub input_format: Option<FileFormat>,
    /// The plaintext's format (none: the file's).
    pub output_format: Option<FileFormat>,
    /// Only this part (`--extract`).
    pub extract: Option<Vec<Step>>,
    /// Skip the MAC check (recovery only; every value must still decrypt).
    pub ignore_mac: bool,
}

impl DecryptRequest {
    /// Opens `src` (a file of format `fmt`) with `ids`, checking the MAC unless `ignore_mac`.
    pub fn open(&self, src: &[u8], fmt: FileFormat, ids: &Identities) -> Result<OpenDoc> {
        let opener = if self.ignore_mac {
            open_ignoring_mac
        } else {
            open
        };
        opener(src, fmt, Unlock::Identities(ids))
    }

    /// The plaintext to print for `doc`: the file's own bytes and layout unless a part or
    /// another format is asked.
    pub fn render(&self, doc: &OpenDoc) -> Result<Zeroizing<Vec<u8>>> {
        let plain = doc.plaintext()?;
        let out_fmt = self.output_format.unwrap_or(doc.format());
        if self.extract.is_none() && out_fmt == doc.format() {
            return Ok(plain);
        }
        let tree = Node::parse(&plain, doc.format())?;
        let mut comments = Comments::parse(&plain, doc.format(), &tree);
        if doc.format() == FileFormat::Ini {
            comments = comments.retext(&doc.comment_texts());
        }
        match &self.extract {
            Some(p) => emit::extracted_with(tree.get(p)?, out_fmt, &comments.under(p)),
            None => emit::document_with(&tree, out_fmt, &comments),
        }
    }
}

/// The format of the file named `name`: `given` (an `--input-type`) or its extension's.
pub fn format_of(name: &Path, given: Option<FileFormat>) -> FileFormat {
    given.unwrap_or_else(|| FileFormat::from_path(name))
}
