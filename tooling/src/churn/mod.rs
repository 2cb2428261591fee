//! A churning customer's hand-over (Mesh and Fleet tiers, seed G9): the bundle the MSP gives
//! them ([`export`]) and the check the customer runs on it ([`verify`]).
//!
//! ```text
//! BUNDLE/repo/               the state repo: every SOPS file re-encrypted to the customer's
//!                            recipients only under a new data key, .sops.yaml and the marker
//!                            rewritten to them and their root, the re-rooted chain installed;
//!                            a fresh git history of one commit (unless --keep-history)
//! BUNDLE/customer-root.pem   the customer's root
//! BUNDLE/intermediate.pem    the intermediate re-signed under it (same key, subject, SKI)
//! BUNDLE/msp-root.pem        the MSP root (trusted beside the customer's during the transition)
//! BUNDLE/msp.crl             the MSP CRL that revokes the MSP-issued intermediate
//! BUNDLE/HANDOVER.md         for the customer: what they received, the order of steps, what to rotate
//! BUNDLE/MANIFEST            SHA-256 of every file above (`sha256sum -c MANIFEST` reads it);
//!                            repo/.git/ is left out: git changes it on every `git status`
//! ```

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

pub mod export;
pub mod verify;

pub use export::{export, ExportInput, Exported};
pub use verify::{verify, Finding, Verified};

/// The state repo inside the bundle.
pub const REPO: &str = "repo";
/// The customer's root.
pub const CUSTOMER_ROOT: &str = "customer-root.pem";
/// The re-rooted intermediate.
pub const INTERMEDIATE: &str = "intermediate.pem";
/// The MSP root.
pub const MSP_ROOT: &str = "msp-root.pem";
/// The MSP CRL.
pub const MSP_CRL: &str = "msp.crl";
/// The customer's instructions.
pub const HANDOVER: &str = "HANDOVER.md";
/// The checksums.
pub const MANIFEST: &str = "MANIFEST";

/// Why a hand-over refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChurnError {
    /// Core-tier customers do not take their PKI with them.
    #[error("{repo} is the state repo of {slug}, a {tier}-tier customer: the hand-over (re-rooted intermediate, repo and keys) is offered to the Mesh and Fleet tiers only (seed G9); a Core-tier customer's intermediate is revoked at churn instead; nothing was written")]
    CoreTier {
        /// The repo.
        repo: PathBuf,
        /// The customer.
        slug: String,
        /// Their tier.
        tier: String,
    },
    /// An input was refused.
    #[error("{0}; nothing was written")]
    Refused(String),
    /// The state repo is missing or wrong.
    #[error(transparent)]
    Repo(#[from] crate::staterepo::RepoError),
    /// The repo's key or installed certificate could not be read.
    #[error(transparent)]
    Onboard(#[from] crate::onboard::OnboardError),
    /// SOPS failed.
    #[error(transparent)]
    Sops(#[from] crate::sops::SopsError),
    /// Encrypting for the bundle's repo failed.
    #[error(transparent)]
    Seal(#[from] crate::seal::SealError),
    /// Reading or writing failed.
    #[error("{path}: {error}; nothing was written")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// Writing failed in the PKI core's safe writer.
    #[error(transparent)]
    Write(#[from] kiwi_signer::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ChurnError + '_ {
    move |error| ChurnError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Every file under `dir` (relative, `/`-separated, sorted), leaving out `repo/.git/` and the
/// MANIFEST itself. A symbolic link is refused: the bundle holds plain files only.
fn bundle_files(dir: &Path) -> Result<Vec<String>, ChurnError> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) -> Result<(), ChurnError> {
        for e in std::fs::read_dir(d).map_err(io(d))? {
            let e = e.map_err(io(d))?;
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .map_err(|_| ChurnError::Refused(format!("{} escapes the bundle", p.display())))?
                .to_string_lossy()
                .replace('\\', "/");
            let ft = e.file_type().map_err(io(&p))?;
            if rel == format!("{REPO}/.git") || rel == MANIFEST {
                continue;
            }
            if ft.is_symlink() {
                return Err(ChurnError::Refused(format!(
                    "{} is a symbolic link; the bundle holds plain files only",
                    p.display()
                )));
            }
            if ft.is_dir() {
                walk(root, &p, out)?;
            } else {
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// SHA-256 of a file, lowercase hex.
fn sha256_file(path: &Path) -> Result<String, ChurnError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// The MANIFEST text for `dir`: `HASH  PATH` lines as `sha256sum` writes them.
fn manifest(dir: &Path) -> Result<String, ChurnError> {
    let mut s = String::new();
    for rel in bundle_files(dir)? {
        s.push_str(&format!("{}  {rel}\n", sha256_file(&dir.join(&rel))?));
    }
    Ok(s)
}

/// Checks that `cert` (DER) is issued by the self-signed `root` (DER): issuer name and
/// signature. Returns the certificate's serial (hex).
fn chains_to(cert: &[u8], root: &[u8]) -> Result<String, String> {
    use kiwi_signer::x509;
    let root_cert = x509::parse_cert(root).map_err(|e| format!("the root: {e}"))?;
    let root_key = x509::cert_key(&root_cert).map_err(|e| format!("the root's key: {e}"))?;
    x509::verify_cert(&root_cert, &root_key)
        .map_err(|e| format!("the root is not self-signed ({e})"))?;
    let c = x509::parse_cert(cert).map_err(|e| format!("the intermediate: {e}"))?;
    if c.tbs_certificate.issuer.as_raw() != root_cert.tbs_certificate.subject.as_raw() {
        return Err(format!(
            "the intermediate was issued by `{}`, not by the root `{}`",
            c.tbs_certificate.issuer, root_cert.tbs_certificate.subject
        ));
    }
    x509::verify_cert(&c, &root_key).map_err(|e| {
        format!("the intermediate's signature does not verify with the root's key ({e})")
    })?;
    Ok(x509::Serial::from_der_integer(c.tbs_certificate.raw_serial()).hex())
}

/// Checks that `crl` (PEM or DER) is the MSP root's (signature and issuer) and lists `serial`.
fn crl_lists(
    crl: &[u8],
    msp_root: &[u8],
    serial: &str,
    now: time::OffsetDateTime,
) -> Result<(), String> {
    use kiwi_signer::x509;
    let report = crate::crl::check(crl, msp_root, 0, now);
    if report.verdict == crate::crl::Verdict::Invalid {
        return Err(format!("the MSP CRL: {}", report.message));
    }
    let der = crate::intermediate::der_of(crl);
    let parsed = x509::parse_crl(&der).map_err(|e| format!("the MSP CRL: {e}"))?;
    if parsed
        .iter_revoked_certificates()
        .any(|r| x509::Serial::from_der_integer(r.raw_serial()).hex() == serial)
    {
        Ok(())
    } else {
        Err(format!(
            "the MSP CRL does not list the MSP-issued intermediate {serial} as revoked; the MSP revokes it with `kiwi-signer handover` once the customer trusts their root"
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn the_manifest_lists_every_file_but_git_and_itself_and_refuses_links() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("repo/.git")).unwrap();
        std::fs::create_dir_all(p.join("repo/secrets")).unwrap();
        std::fs::write(p.join("repo/.git/HEAD"), "ref").unwrap();
        std::fs::write(p.join("repo/secrets/a.sops.yaml"), "a").unwrap();
        std::fs::write(p.join(HANDOVER), "").unwrap();
        std::fs::write(p.join(MANIFEST), "old").unwrap();
        assert_eq!(
            manifest(p).unwrap(),
            format!(
                "{}  HANDOVER.md\n{}  repo/secrets/a.sops.yaml\n",
                hex::encode(Sha256::digest(b"")),
                hex::encode(Sha256::digest(b"a"))
            )
        );
        std::os::unix::fs::symlink("/etc/passwd", p.join("repo/link")).unwrap();
        let e = manifest(p).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }
}
