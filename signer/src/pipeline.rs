//! The self-checks every certificate and CRL goes through, inside the ceremony pipeline
//! ([`crate::ceremony`]).
//!
//! 1. Build the artifact with a throwaway in-memory key of the root's algorithm and lint it,
//!    so linting never asks the root key (or its hardware) for anything.
//! 2. Build it again, signed through the root key backend: exactly one signature.
//! 3. Re-parse the result, verify its signature with root.pem's key, check that its TBS is
//!    byte-identical to the linted one, and lint it again.
//!
//! Only then may the caller record it; the ledger entry and the outputs are the ceremony's.

use std::path::Path;

use crate::algo::{KeyAlgorithm, PublicKey};
use crate::backend::soft::SoftKey;
use crate::backend::{KeyBackend, RcgenSigner};
use crate::error::{Error, Result};
use crate::x509;

/// What kind of artifact, for parsing and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An X.509 certificate.
    Certificate,
    /// A CRL.
    Crl,
}

impl Kind {
    /// The PEM label of the artifact.
    pub fn pem_tag(self) -> &'static str {
        match self {
            Kind::Certificate => "CERTIFICATE",
            Kind::Crl => "X509 CRL",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Certificate => "certificate",
            Kind::Crl => "CRL",
        }
    }

    fn tbs(self, der: &[u8]) -> std::result::Result<Vec<u8>, String> {
        Ok(match self {
            Kind::Certificate => x509::parse_cert(der)?.tbs_certificate.as_ref().to_vec(),
            Kind::Crl => x509::parse_crl(der)?.tbs_cert_list.as_ref().to_vec(),
        })
    }

    fn verify(self, der: &[u8], key: &PublicKey) -> std::result::Result<(), String> {
        match self {
            Kind::Certificate => x509::verify_cert(&x509::parse_cert(der)?, key),
            Kind::Crl => x509::verify_crl(&x509::parse_crl(der)?, key),
        }
        .map_err(|e| e.to_string())
    }
}

/// An output file's bytes: PEM unless the name ends in `.der`.
pub fn encode(path: &Path, kind: Kind, der: &[u8]) -> Vec<u8> {
    if path.extension().is_some_and(|e| e == "der") {
        der.to_vec()
    } else {
        pem::encode(&pem::Pem::new(kind.pem_tag(), der.to_vec())).into_bytes()
    }
}

/// Type of the closure that serializes an artifact signed by a given signer.
pub type Build<'b> = dyn Fn(&RcgenSigner<'_>) -> std::result::Result<Vec<u8>, rcgen::Error> + 'b;
/// Type of the closure that lints a DER artifact.
pub type Lint<'b> = dyn Fn(&[u8]) -> Vec<String> + 'b;

/// A linted TBS, waiting for the real signature.
pub struct DryRun {
    kind: Kind,
    tbs: Vec<u8>,
}

/// Step 1: builds the artifact with a throwaway key of `alg` and lints it.
pub(crate) fn dry_run(
    kind: Kind,
    alg: KeyAlgorithm,
    build: &Build<'_>,
    lint: &Lint<'_>,
) -> Result<DryRun> {
    let dry_key = SoftKey::generate(alg);
    let dry_signer = RcgenSigner::new(&dry_key);
    let dry = build(&dry_signer).map_err(|e| Error::Build {
        what: kind.name(),
        detail: e.to_string(),
    })?;
    let findings = lint(&dry);
    if !findings.is_empty() {
        return Err(Error::Lint {
            what: kind.name(),
            findings: findings.join("; "),
        });
    }
    Ok(DryRun {
        kind,
        tbs: kind.tbs(&dry).map_err(Error::SelfCheck)?,
    })
}

/// Steps 2 and 3: signs once through `backend`, verifies with `root_key` (root.pem's key),
/// checks the TBS equals the linted one, and lints again.
pub(crate) fn sign_real(
    dry: &DryRun,
    backend: &dyn KeyBackend,
    root_key: &PublicKey,
    build: &Build<'_>,
    lint: &Lint<'_>,
) -> Result<Vec<u8>> {
    let kind = dry.kind;
    let signer = RcgenSigner::new(backend);
    let real = match build(&signer) {
        Ok(der) => der,
        Err(e) => {
            return Err(match signer.take_error() {
                Some(be) => Error::Backend(be),
                None => Error::Build {
                    what: kind.name(),
                    detail: e.to_string(),
                },
            })
        }
    };
    if signer.signatures() != 1 {
        return Err(Error::SelfCheck(format!(
            "the root key was asked for {} signatures, expected exactly 1",
            signer.signatures()
        )));
    }
    kind.verify(&real, root_key).map_err(|e| {
        Error::SelfCheck(format!(
            "the signed {} does not verify with root.pem's key ({e}); the key backend is faulty",
            kind.name()
        ))
    })?;
    if kind.tbs(&real).map_err(Error::SelfCheck)? != dry.tbs {
        return Err(Error::SelfCheck(format!(
            "the signed {} differs from the linted one",
            kind.name()
        )));
    }
    let findings = lint(&real);
    if !findings.is_empty() {
        return Err(Error::SelfCheck(format!(
            "lint after signing: {}",
            findings.join("; ")
        )));
    }
    Ok(real)
}

/// The whole pipeline at once, for callers with nothing to ask between the steps.
pub(crate) fn sign_checked(
    kind: Kind,
    backend: &dyn KeyBackend,
    root_key: &PublicKey,
    build: &Build<'_>,
    lint: &Lint<'_>,
) -> Result<Vec<u8>> {
    let dry = dry_run(kind, backend.algorithm(), build, lint)?;
    sign_real(&dry, backend, root_key, build, lint)
}
