//! Errors of the SOPS engine: each says what went wrong and what the user can do about it.

use std::path::PathBuf;

/// Everything that can go wrong while reading, decrypting or writing a SOPS file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SopsError {
    /// The file could not be parsed in its format.
    #[error("malformed {format} input: {detail}; fix the syntax (or pass the right --input-type) and retry")]
    Malformed {
        /// Format name (yaml, json, dotenv, binary).
        format: &'static str,
        /// What the parser complained about.
        detail: String,
    },
    /// The document uses a construct that SOPS cannot encrypt faithfully.
    #[error("unsupported {format} construct: {detail}; rewrite that part of the file as plain mappings, lists and scalars")]
    Unsupported {
        /// Format name.
        format: &'static str,
        /// The construct.
        detail: String,
    },
    /// The operation needs keys to address, and a file of this format has none (binary).
    #[error("{format} input cannot be used here ({detail}); nothing was written")]
    UnsupportedFormat {
        /// Format name.
        format: &'static str,
        /// Why the file was taken for one.
        detail: String,
    },
    /// The file has no `sops` metadata block.
    #[error(
        "not a SOPS file (no `sops` metadata); encrypt it first with `kiwictl secrets encrypt`"
    )]
    NotEncrypted,
    /// A file that must be encrypted has no `sops` metadata.
    #[error("not encrypted: {0}, but it has no SOPS metadata; encrypt it with `kiwictl secrets encrypt --in-place FILE`, and if it was ever committed or pushed, rotate every secret it holds")]
    Plaintext(String),
    /// The file already has a `sops` metadata block.
    #[error("already a SOPS file (it has `sops` metadata); use `rotate` or `updatekeys` instead of encrypting again")]
    AlreadyEncrypted,
    /// The metadata block is incomplete or inconsistent.
    #[error("invalid SOPS metadata: {0}; the file was damaged or not written by sops 3.x, restore it from version control")]
    Metadata(String),
    /// No identity could unwrap the data key.
    #[error("no identity can decrypt the data key ({0}); set SOPS_AGE_KEY_FILE/SOPS_AGE_KEY or pass --identity with a key that is a recipient of this file")]
    NoIdentity(String),
    /// A value failed authentication.
    #[error("value at `{path}` failed to decrypt (wrong key or tampered ciphertext); restore the file from version control")]
    ValueTampered {
        /// The key path (colon-separated, as SOPS uses it for the AAD).
        path: String,
    },
    /// An `ENC[...]` string is not well formed.
    #[error(
        "malformed encrypted value at `{path}`: {detail}; restore the file from version control"
    )]
    BadEncValue {
        /// Key path.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// An encrypted comment does not decrypt with the file's data key.
    #[error("the encrypted comment on line {line} does not decrypt with this file's data key (it was left under an old data key, or moved); restore the file from version control, or delete that comment line and run `kiwictl secrets rotate`")]
    CommentUnreadable {
        /// 1-based line number of the comment.
        line: usize,
    },
    /// The MAC over the decrypted values does not match the stored MAC.
    #[error("MAC mismatch: the values were changed, removed or swapped after encryption; restore the file from version control")]
    MacMismatch,
    /// The metadata has no MAC.
    #[error("the file has no MAC, so nothing proves its values are the ones encrypted; restore it from version control, or read it once with --ignore-mac to recover it and encrypt it again")]
    MacMissing,
    /// The plaintext holds a value SOPS cannot represent.
    #[error("cannot encrypt value at `{path}`: {detail}")]
    BadValue {
        /// Key path.
        path: String,
        /// Why.
        detail: String,
    },
    /// An `--extract`/`set`/`unset` path is malformed or names nothing in the document.
    #[error("path: {0}")]
    BadPath(String),
    /// The document cannot be written in the requested output format.
    #[error("cannot write this document as {format}: {detail}")]
    CannotEmit {
        /// The output format.
        format: &'static str,
        /// Why.
        detail: String,
    },
    /// `secrets edit` stopped; the file is as it was.
    #[error("edit: {0}")]
    Edit(String),
    /// A recipient string is not an age X25519 recipient.
    #[error("invalid age recipient `{0}`: expected an `age1...` X25519 recipient")]
    BadRecipient(String),
    /// `SOPS_AGE_KEY_CMD` could not be split or run, or failed.
    #[error("SOPS_AGE_KEY_CMD `{command}`: {detail}; fix the command (it must print AGE-SECRET-KEY-1 lines on stdout and exit 0) or unset SOPS_AGE_KEY_CMD")]
    KeyCommand {
        /// The command as given.
        command: String,
        /// What went wrong.
        detail: String,
    },
    /// An identity could not be parsed.
    #[error("invalid age identity in {source_name}: {detail}; expected lines starting with AGE-SECRET-KEY-1")]
    BadIdentity {
        /// Where the identity came from.
        source_name: String,
        /// What is wrong.
        detail: String,
    },
    /// Nothing says who the recipients are.
    #[error("no recipients: pass --age, or add a creation rule for this path to .sops.yaml")]
    NoRecipients,
    /// A `.sops.yaml` problem.
    #[error("{path}: {detail}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong, and what to do.
        detail: String,
    },
    /// A regex in the metadata or the options is invalid.
    #[error("invalid regex `{regex}`: {detail}")]
    BadRegex {
        /// The pattern.
        regex: String,
        /// Compiler message.
        detail: String,
    },
    /// The data key uses key types this tool does not handle.
    #[error(
        "the file also has {0} master keys; kiwictl only manages age keys, use sops for this file"
    )]
    ForeignKeys(String),
    /// Shamir secret sharing failed.
    #[error("Shamir key groups: {0}")]
    Shamir(String),
    /// Encryption with age failed.
    #[error("age encryption failed: {0}")]
    Age(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A rewrite could not be put in place (disk full, I/O error); the file is as it was and its
    /// temporary file is gone.
    #[error("{path}: the new content could not be written ({source}); the file was left as it was: free some space or fix the disk, then run the command again")]
    NotReplaced {
        /// The file that was to be rewritten.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Output file already exists.
    #[error("{0} already exists; choose another --out path or remove it first (kiwictl never overwrites plaintext files)")]
    OutputExists(PathBuf),
    /// The file was changed by someone else while a tree run was rewriting it.
    #[error("{0} changed on disk while it was being rewritten; the other change was kept and this file was left as it is: run the command again")]
    ChangedUnderneath(PathBuf),
    /// The rewritten file did not pass the in-memory check; nothing was replaced.
    #[error(
        "internal check failed, the file was left untouched: {0}; please report this as a bug"
    )]
    SelfCheck(String),
}

/// Result alias for the SOPS engine.
pub type Result<T, E = SopsError> = std::result::Result<T, E>;
