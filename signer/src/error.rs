//! The signer's error type.
//!
//! Every variant's message says what went wrong and what the operator can do about it: these
//! messages are read at a ceremony table, not in a debugger.

use std::path::PathBuf;

use crate::algo::{KeyAlgorithm, KeyError};
use crate::backend::BackendError;
use crate::hooks::HookError;
use crate::ledger::LedgerError;
use crate::policy::PolicyError;
use crate::slug::{Slug, Tier};
use crate::x509::Serial;

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
    /// `--shared` asked of a tier other than core.
    #[error("--shared signs a Core cluster's shared sub-CA; the {0} tier has none (pass --tier core, or drop --shared)")]
    SharedNotCore(Tier),
    /// A certificate signing request was refused.
    #[error("the CSR {path} was refused: {reason}; ask the customer's operator for a new CSR")]
    Csr {
        /// Where the CSR came from.
        path: String,
        /// Why.
        reason: String,
    },
    /// A CA file (`ca.toml`, `root.pem`) is damaged or incomplete.
    #[error("{path}: {detail}; restore it from the backup of the CA directory")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The dry run's artifact breaks RFC 5280 or the policy.
    #[error(
        "the {what} would break RFC 5280 or the policy: {findings}; fix the policy file, nothing was signed"
    )]
    Lint {
        /// Certificate or CRL.
        what: &'static str,
        /// The lint findings, joined.
        findings: String,
    },
    /// `--days` outside the tier policy's range.
    #[error("--days {days} is outside the {tier} policy (1 to {max} days)")]
    DaysOutsidePolicy {
        /// The days asked for.
        days: u32,
        /// The tier.
        tier: Tier,
        /// The policy's maximum.
        max: u32,
    },
    /// The certificate would outlive the root.
    #[error(
        "{days} days would end after the root expires ({left} days left); pass --days {left} or less"
    )]
    PastRootExpiry {
        /// The days asked for.
        days: u32,
        /// Whole days left before the root expires.
        left: i64,
    },
    /// The root has expired: it signs nothing more, not even a CRL.
    #[error(
        "the root expired at {not_after}; it signs nothing more, not even a CRL. Check the clock, \
         or create a new root with `kiwi-signer init`"
    )]
    RootExpired {
        /// The root's notAfter.
        not_after: String,
    },
    /// The CSR's key algorithm is not allowed by the tier policy.
    #[error(
        "the CSR's key is {alg}, which the {tier} policy does not allow ({allowed}); ask for a new CSR"
    )]
    KeyNotAllowed {
        /// The CSR's algorithm.
        alg: KeyAlgorithm,
        /// The tier.
        tier: Tier,
        /// The allowed algorithms, joined.
        allowed: String,
    },
    /// The CSR carries the root's own public key.
    #[error(
        "the CSR carries the root's own public key; an intermediate must have its own key. \
         Nothing was signed: find out how the root key reached the requester"
    )]
    RootKeyInCsr,
    /// The CSR's key was certified for another customer.
    #[error(
        "this key was already certified for customer `{slug}` (serial {serial}); a key belongs to one customer only"
    )]
    KeyOfAnotherCustomer {
        /// The customer it belongs to.
        slug: Slug,
        /// The certificate that certified it.
        serial: Serial,
    },
    /// The CSR's key was revoked for keyCompromise or cACompromise.
    #[error(
        "this key's certificate {serial} was revoked for {reason}; the key must never be certified again. \
         Ask the customer for a CSR with a new key"
    )]
    KeyCompromised {
        /// The revoked certificate.
        serial: Serial,
        /// Why it was revoked (RFC 5280 name).
        reason: &'static str,
    },
    /// `revoke --serial` names a serial this root never issued.
    #[error(
        "serial {serial} is not an intermediate this root issued; `kiwi-signer status --ca {}` lists them",
        dir.display()
    )]
    NotIssued {
        /// The serial.
        serial: Serial,
        /// The CA directory.
        dir: PathBuf,
    },
    /// `revoke --serial` names a serial that is already revoked, for a reason that cannot change
    /// to the one given.
    #[error(
        "serial {serial} was already revoked at {at} ({reason}); only a superseded, \
         cessationOfOperation or affiliationChanged revocation can be changed, and only to \
         keyCompromise. To publish a \
         fresh CRL run `kiwi-signer crl`"
    )]
    AlreadyRevoked {
        /// The serial.
        serial: Serial,
        /// When it was revoked.
        at: String,
        /// Why (RFC 5280 name).
        reason: &'static str,
    },
    /// `init` into a directory that already holds a CA.
    #[error("{} already holds a CA; a CA is created once. Use another --ca directory", dir.display())]
    CaExists {
        /// The directory.
        dir: PathBuf,
    },
    /// `init` into a directory that holds other files.
    #[error("{} is not empty; init needs an empty or new directory", dir.display())]
    DirNotEmpty {
        /// The directory.
        dir: PathBuf,
    },
    /// Another process holds the CA directory's lock.
    #[error(
        "another kiwi-signer is working on {}; wait for it to finish (its lock goes away when it \
         ends, even if it is killed), then run the command again",
        dir.display()
    )]
    Locked {
        /// The CA directory.
        dir: PathBuf,
    },
    /// An output path cannot be created; refused before the key is asked for anything.
    #[error("--out {}: {reason}; nothing was signed", path.display())]
    OutputUnusable {
        /// The output path.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// `--expect-head`/`--head-file` is not a ledger head.
    #[error(
        "`{given}` is not a ledger head: give the 64 hex digits or the first four PGP words the last command printed"
    )]
    BadHead {
        /// What was given.
        given: String,
    },
    /// The ledger's head is not the one the witness recorded.
    #[error(
        "the ledger's head is {ledger} but the witness recorded {expected}: entries were removed, or \
         this is not the ledger the witness saw. Restore the newest backup of the CA directory; \
         nothing was signed"
    )]
    HeadMismatch {
        /// The ledger's head (hex and words).
        ledger: String,
        /// What the witness recorded.
        expected: String,
    },
    /// The device last signed for a ledger head this ledger does not contain.
    #[error(
        "{device} last signed for ledger head {device_head}, which this ledger (head {ledger_head}) \
         does not contain: the ledger was rolled back or replaced. Restore the newest backup of the \
         CA directory; nothing was signed"
    )]
    LedgerBehindDevice {
        /// The device.
        device: String,
        /// The head the device remembers.
        device_head: String,
        /// The ledger's head.
        ledger_head: String,
    },
    /// The device has seen a higher CRL number than the ledger's highest.
    #[error(
        "{device} has issued CRL number {device_number} but the ledger's highest is {ledger_number}: \
         a CRL number would be issued twice. Restore the newest backup of the CA directory; nothing \
         was signed"
    )]
    CrlNumberBehindDevice {
        /// The device.
        device: String,
        /// The highest CRL number the device remembers.
        device_number: u64,
        /// The ledger's highest CRL number.
        ledger_number: u64,
    },
    /// `export` names a certificate or CRL the ledger does not hold.
    #[error("{what} is not in the ledger; `kiwi-signer status --ca {}` lists what it holds", dir.display())]
    NotRecorded {
        /// What was asked for.
        what: String,
        /// The CA directory.
        dir: PathBuf,
    },
    /// The operation is recorded in the ledger, but an output could not be written.
    #[error(
        "the operation is recorded in the ledger (new head {head}), but {} could not be written \
         ({detail}); write it with `kiwi-signer export --ca DIR {export} --out FILE`",
        path.display()
    )]
    NotWritten {
        /// The output.
        path: PathBuf,
        /// Why.
        detail: String,
        /// The ledger's new head.
        head: String,
        /// The `export` arguments naming the artifact.
        export: String,
    },
    /// A prompt could not be answered (no terminal, empty PIN file, passphrases differ).
    #[error("{0}")]
    Prompt(String),
    /// A secret file (--pin-file, --mgm-key-file) that group or others can read or change.
    #[error(
        "{path} has mode {mode:04o}: other users can read or change it, so it is not used; \
         run `chmod 600 {path}` and try again"
    )]
    SecretFileExposed {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A pre hook vetoed the operation, or a hooks file is invalid.
    #[error(transparent)]
    Hook(#[from] HookError),
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
    /// A ceremony file (or a transcript) is not what its format allows.
    #[error("{file}: {field}: {message}")]
    Script {
        /// The file.
        file: String,
        /// The field at fault, as a path (`steps[2].sign.csr`), or `(file)`.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A ceremony stopped at a step after earlier steps were recorded.
    #[error(
        "step {step} failed: {source}. Nothing of step {step} was written; the {done} step(s) \
         before it are in the ledger and in the transcript {}",
        transcript.display()
    )]
    CeremonyStopped {
        /// The failed step (1-based).
        step: usize,
        /// Steps completed before it.
        done: usize,
        /// The transcript written for the completed steps.
        transcript: PathBuf,
        /// Why the step failed.
        source: Box<Error>,
    },
    /// `init --org` is missing, given for an MSP root policy, or not a usable organization.
    #[error("{detail}")]
    BadOrg {
        /// What is wrong and what to pass.
        detail: String,
    },
    /// A certificate or CRL given to `reroot` or `handover` could not be read as one.
    #[error("{path}: {detail}; pass the file as the MSP delivered it (PEM or DER)")]
    BadInput {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// `--msp-root` or `--new-root` is not a self-signed CA certificate.
    #[error("{path} is not a root CA certificate: {detail}")]
    NotARoot {
        /// The file.
        path: PathBuf,
        /// Why not.
        detail: String,
    },
    /// `reroot --cert` was not issued by `--msp-root` (its signature or issuer name does not
    /// match).
    #[error(
        "{cert} was not issued by the MSP root {msp_root}: {detail}. Nothing was signed: re-root \
         only the intermediate the MSP issued you, with the MSP root that issued it"
    )]
    NotIssuedByMspRoot {
        /// The certificate.
        cert: PathBuf,
        /// The MSP root.
        msp_root: PathBuf,
        /// What did not match.
        detail: String,
    },
    /// `reroot --msp-crl` is not a current CRL signed by the MSP root.
    #[error(
        "{crl} is not a current CRL of the MSP root: {detail}. Ask the MSP for its newest CRL"
    )]
    BadMspCrl {
        /// The CRL.
        crl: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The MSP CRL lists the certificate as revoked for a compromise (or for no stated reason).
    #[error(
        "the MSP CRL lists certificate {serial} as revoked ({reason}): its key must never be \
         certified again, so it is not re-rooted. Generate a new intermediate key instead"
    )]
    RerootCompromised {
        /// The certificate's serial.
        serial: Serial,
        /// The CRL's reason.
        reason: String,
    },
    /// The certificate to re-root is not an intermediate CA with pathLenConstraint 0 (or
    /// cannot be re-rooted as it is).
    #[error(
        "{cert} cannot be re-rooted: {detail}. Only an intermediate CA (CA:TRUE, pathlen:0) \
         the MSP issued is re-rooted"
    )]
    NotReRootable {
        /// The certificate.
        cert: PathBuf,
        /// Why.
        detail: String,
    },
    /// `renew` on a KiwiStack root.
    #[error(
        "{} is a KiwiStack root: `renew` runs on a customer-owned root (`kiwi-signer init \
         --policy policies/customer-root.yaml --org ...`). A KiwiStack root renews an \
         intermediate with `kiwi-signer sign` for the new CSR",
        dir.display()
    )]
    NotCustomerRoot {
        /// The CA directory.
        dir: PathBuf,
    },
    /// `renew --serial` names a certificate this root cannot renew.
    #[error(
        "serial {serial} cannot be renewed: {detail}. Only an intermediate this customer-owned \
         root re-rooted or renewed, and has not revoked, is; `kiwi-signer status --ca {}` lists them",
        dir.display()
    )]
    NotRenewable {
        /// The serial.
        serial: Serial,
        /// The CA directory.
        dir: PathBuf,
        /// Why.
        detail: String,
    },
    /// `renew` with a CSR for the key of the certificate it replaces.
    #[error(
        "the CSR carries the key of {serial}, the certificate it would replace: a renewal \
         certifies a NEW key (KiwiStack could read the old one). Make a CSR for a new key with \
         `kiwictl intermediate renew --new-key`; nothing was signed"
    )]
    RenewSameKey {
        /// The certificate it would replace.
        serial: Serial,
    },
    /// `renew` with a CSR for a key this root already certified.
    #[error(
        "the CSR's key is already certified by this root (serial {serial}); a renewal needs a \
         key of its own: make a CSR with `kiwictl intermediate renew --new-key`"
    )]
    RenewKeyInUse {
        /// The certificate that certifies it.
        serial: Serial,
    },
    /// `renew` with a key type the tier policies do not allow.
    #[error(
        "the CSR's key is {alg}; a renewed intermediate's key is ecdsa-p256 or ecdsa-p384, as the \
         tier policies allow; ask for a new CSR"
    )]
    RenewKeyNotAllowed {
        /// The CSR's algorithm.
        alg: KeyAlgorithm,
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
