//! The signer's error type.
//!
//! Every variant's message says what went wrong and what the operator can do about it: these
//! messages are read at a ceremony table, not in a debugger.

use std::path::PathBuf;

use crate::algo::KeyError;
use crate::backend::BackendError;
use crate::ledger::LedgerError;
use crate::policy::PolicyError;

/// Anything that stops a signer operation. Whatever the variant, the operation wrote nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {error}{}", hint_suffix(.hint))]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error (in the message, not chained, so it is printed once).
        error: std::io::Error,
        /// What to do about it ("" when nothing useful can be said).
        hint: &'static str,
    },
    /// A policy file is invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A certificate signing request was refused.
    #[error("the CSR {path} was refused: {reason}; ask the customer's operator for a new CSR")]
    Csr {
        /// Where the CSR came from.
        path: String,
        /// Why.
        reason: String,
    },
    /// A request that policy or safety rules refuse (bad slug, key reuse, validity too long...).
    #[error("{0}")]
    Refused(String),
    /// The root key backend failed or refused.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The ledger is damaged or could not be updated.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The system clock is earlier than the newest ledger entry.
    #[error(
        "the system clock ({now}) is earlier than the newest ledger entry ({newest}); the laptop's \
         clock has drifted or was reset. Set the clock to the correct UTC time (check it against a \
         trusted source with the witness) and run the command again"
    )]
    ClockBehindLedger {
        /// The clock now.
        now: String,
        /// The newest ledger entry's time.
        newest: String,
    },
    /// A public key is malformed or unsupported.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The operator declined at the confirmation prompt.
    #[error("not confirmed: nothing was signed and nothing was written")]
    NotConfirmed,
    /// The self-checks after building or signing failed (a bug or a faulty key backend).
    #[error(
        "internal check failed, nothing was written: {0}. Report this with the ledger and inputs"
    )]
    SelfCheck(String),
    /// The air-gap preflight failed before a hardware root key was used, and
    /// `--allow-network` was not given.
    #[error(
        "the air-gap preflight failed, so the root key was not used and nothing was written: {}. \
         Take the laptop off every network and run the command again (or, knowingly, pass \
         --allow-network: the ledger entry then records the failed checks)",
        crate::preflight::describe(.0)
    )]
    NotAirGapped(Vec<crate::preflight::Check>),
    /// Certificate or CRL building failed inside rcgen.
    #[error("could not build the {what}: {detail}")]
    Build {
        /// Certificate or CRL.
        what: &'static str,
        /// rcgen's message.
        detail: String,
    },
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!("; {hint}")
    }
}

impl Error {
    /// An I/O error on `path` with advice.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error, hint: &'static str) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
            hint,
        }
    }
}

/// Result with the signer's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
