//! `kiwictl churn verify`: the customer's check of a hand-over bundle, with their own age key
//! only (no key from the environment).
//!
//! Passes only when: the MANIFEST holds (every file listed with its SHA-256, nothing missing
//! or added); every SOPS file in the repo decrypts with the customer's key and names no
//! recipient other than those the repo records, nor does any `.sops.yaml` rule; the re-rooted
//! intermediate chains to the bundle's root, which the repo pins; its public key is the
//! intermediate key in the repo, and it is what the repo installs; the MSP CRL (verified
//! against the MSP root) lists the MSP-issued intermediate's serial. Every failure is reported,
//! not only the first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;

use kiwi_signer::words::Fingerprint;
use kiwi_signer::x509;

use super::{
    bundle_files, chains_to, crl_lists, sha256_file, CUSTOMER_ROOT, INTERMEDIATE, MANIFEST,
    MSP_CRL, MSP_ROOT, REPO,
};
use crate::intermediate::der_of;
use crate::onboard::{self, CERT_FILE, STEP_VALUES};
use crate::sops::config::SopsConfig;
use crate::sops::engine::{self, Unlock};
use crate::sops::files::{find_candidates, looks_like_sops};
use crate::sops::{FileFormat, Identities};
use crate::staterepo;

/// One failed condition.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `manifest`, `sops`, `chain`, `key` or `crl`.
    pub check: &'static str,
    /// The file concerned, relative to the bundle, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}: {file}: {}", self.check, self.message),
            None => write!(f, "{}: {}", self.check, self.message),
        }
    }
}

/// The verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// Every condition holds.
    pub ok: bool,
    /// The customer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    /// SOPS files checked (relative to the bundle).
    pub sops_files: Vec<String>,
    /// Every failure.
    pub failures: Vec<Finding>,
}

struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, check: &'static str, file: Option<&str>, message: impl Into<String>) {
        self.0.push(Finding {
            check,
            file: file.map(str::to_string),
            message: message.into(),
        });
    }
}

/// Checks the bundle at `dir` with the customer's identities `ids`.
pub fn verify(dir: &Path, ids: &Identities, now: OffsetDateTime) -> Verified {
    let mut f = Findings(Vec::new());
    check_manifest(dir, &mut f);
    let repo = dir.join(REPO);
    let info = match staterepo::open(&repo) {
        Ok(i) => Some(i),
        Err(e) => {
            f.add(
                "sops",
                Some(&format!("{REPO}/{}", staterepo::MARKER)),
                e.to_string(),
            );
            None
        }
    };
    let allowed: Vec<String> = info
        .as_ref()
        .map(|i| i.recipients.clone())
        .unwrap_or_default();
    if info.is_some() && !allowed.iter().any(|r| ids.holds(r)) {
        f.add(
            "sops",
            None,
            format!(
                "your identity ({}) is none of the repo's recipients ({}); pass the key the bundle was made for",
                ids.recipients().join(", "),
                allowed.join(", ")
            ),
        );
    }
    let sops_files = check_sops(dir, &repo, ids, &allowed, &mut f);

    // The chain and the key.
    let read =
        |name: &str, f: &mut Findings, check: &'static str| match std::fs::read(dir.join(name)) {
            Ok(b) => Some(b),
            Err(e) => {
                f.add(check, Some(name), e.to_string());
                None
            }
        };
    let root = read(CUSTOMER_ROOT, &mut f, "chain");
    let cert = read(INTERMEDIATE, &mut f, "chain");
    if let (Some(root), Some(cert)) = (&root, &cert) {
        let (root_der, cert_der) = (der_of(root), der_of(cert));
        if let Err(e) = chains_to(&cert_der, &root_der) {
            f.add("chain", Some(INTERMEDIATE), e);
        }
        if let Some(i) = &info {
            if Fingerprint::of(&root_der) != i.root_sha256 {
                f.add(
                    "chain",
                    Some(CUSTOMER_ROOT),
                    format!("the repo pins another root ({})", i.root_sha256.hex()),
                );
            }
        }
        check_key(&repo, &cert_der, ids, &mut f);
    }

    // The MSP CRL revokes the MSP-issued intermediate.
    match onboard::read_installed(&repo, ids) {
        Err(e) => f.add("crl", Some(&format!("{REPO}/{CERT_FILE}")), e.to_string()),
        Ok(doc) => match (
            &doc.previous_serial,
            read(MSP_CRL, &mut f, "crl"),
            read(MSP_ROOT, &mut f, "crl"),
        ) {
            (None, _, _) => f.add(
                "crl",
                Some(&format!("{REPO}/{CERT_FILE}")),
                "records no previous_serial (the MSP-issued intermediate): not a hand-over bundle",
            ),
            (Some(serial), Some(crl), Some(msp_root)) => {
                if let Err(e) = crl_lists(&crl, &der_of(&msp_root), serial, now) {
                    f.add("crl", Some(MSP_CRL), e);
                }
            }
            _ => {}
        },
    }
    Verified {
        ok: f.0.is_empty(),
        slug: info.map(|i| i.slug.to_string()),
        sops_files,
        failures: f.0,
    }
}

fn check_manifest(dir: &Path, f: &mut Findings) {
    let text = match std::fs::read_to_string(dir.join(MANIFEST)) {
        Ok(t) => t,
        Err(e) => return f.add("manifest", Some(MANIFEST), e.to_string()),
    };
    let mut listed = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        match line.split_once("  ") {
            Some((hash, path)) if hash.len() == 64 => {
                listed.insert(path.to_string(), hash.to_string());
            }
            _ => f.add(
                "manifest",
                Some(MANIFEST),
                format!("line {}: not `SHA256  PATH`", n + 1),
            ),
        }
    }
    let present = match bundle_files(dir) {
        Ok(p) => p,
        Err(e) => return f.add("manifest", None, e.to_string()),
    };
    for p in &present {
        match listed.get(p) {
            None => f.add(
                "manifest",
                Some(p),
                "not listed in the MANIFEST (added after export)",
            ),
            Some(want) => match sha256_file(&dir.join(p)) {
                Ok(have) if &have == want => {}
                Ok(have) => f.add(
                    "manifest",
                    Some(p),
                    format!("SHA-256 {have}, but the MANIFEST says {want}: the file was changed"),
                ),
                Err(e) => f.add("manifest", Some(p), e.to_string()),
            },
        }
    }
    for p in listed.keys().filter(|p| !present.contains(p)) {
        f.add("manifest", Some(p), "listed in the MANIFEST but missing");
    }
}

/// Every SOPS file under the repo decrypts with `ids` and is encrypted to `allowed` only;
/// every `.sops.yaml` names only `allowed`. Returns the SOPS files checked.
fn check_sops(
    dir: &Path,
    repo: &Path,
    ids: &Identities,
    allowed: &[String],
    f: &mut Findings,
) -> Vec<String> {
    let rel = |p: &Path| {
        p.strip_prefix(dir)
            .unwrap_or(p)
            .to_string_lossy()
            .to_string()
    };
    let (candidates, _) = match find_candidates(&[repo.to_path_buf()]) {
        Ok(c) => c,
        Err(e) => {
            f.add("sops", Some(REPO), e.to_string());
            return vec![];
        }
    };
    let mut checked = Vec::new();
    for c in candidates {
        let Ok(bytes) = std::fs::read(&c.path) else {
            f.add("sops", Some(&rel(&c.path)), "unreadable");
            continue;
        };
        if !looks_like_sops(&c.path, &bytes) {
            continue;
        }
        let name = rel(&c.path);
        let fmt = FileFormat::from_path(&c.path);
        match engine::inspect(&bytes, fmt) {
            Ok(shape) => {
                let others: Vec<String> = shape
                    .meta
                    .recipients()
                    .into_iter()
                    .filter(|r| !allowed.contains(r))
                    .collect();
                if !others.is_empty() {
                    f.add(
                        "sops",
                        Some(&name),
                        format!(
                            "encrypted to recipients that are not yours: {}",
                            others.join(", ")
                        ),
                    );
                }
            }
            Err(e) => f.add("sops", Some(&name), e.to_string()),
        }
        if let Err(e) = engine::open(&bytes, fmt, Unlock::Identities(ids)) {
            f.add(
                "sops",
                Some(&name),
                format!("does not decrypt with your key: {e}"),
            );
        }
        checked.push(name);
    }
    if checked.is_empty() {
        f.add("sops", Some(REPO), "holds no SOPS file");
    }
    for cfg in sops_configs(repo) {
        let name = rel(&cfg);
        match SopsConfig::load(&cfg) {
            Ok(c) => {
                for r in c.rules().iter().flat_map(|r| r.keys.texts().concat()) {
                    if !allowed.contains(&r) {
                        f.add(
                            "sops",
                            Some(&name),
                            format!("a creation rule encrypts to {r}, which is not yours"),
                        );
                    }
                }
            }
            Err(e) => f.add("sops", Some(&name), e.to_string()),
        }
    }
    checked
}

/// Every `.sops.yaml` under `dir` (`.git` aside).
fn sops_configs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_name() == ".git" {
            continue;
        }
        if p.is_dir() {
            out.extend(sops_configs(&p));
        } else if e.file_name() == ".sops.yaml" {
            out.push(p);
        }
    }
    out
}

/// The re-rooted certificate certifies the repo's intermediate key and is what the repo installs.
fn check_key(repo: &Path, cert_der: &[u8], ids: &Identities, f: &mut Findings) {
    let cert_key = x509::parse_cert(cert_der)
        .ok()
        .and_then(|c| x509::cert_key(&c).ok());
    match onboard::load_key(repo, ids) {
        Err(e) => f.add(
            "key",
            Some(&format!("{REPO}/{}", onboard::KEY_FILE)),
            e.to_string(),
        ),
        Ok(k) if cert_key.as_ref() != Some(k.public_key()) => f.add(
            "key",
            Some(INTERMEDIATE),
            "its public key is not the intermediate key in the repo's secrets",
        ),
        Ok(_) => {}
    }
    if let Ok(doc) = onboard::read_installed(repo, ids) {
        if der_of(doc.certificate.as_bytes()) != cert_der {
            f.add(
                "key",
                Some(&format!("{REPO}/{CERT_FILE}")),
                "installs another certificate than intermediate.pem",
            );
        }
    }
    match crate::expiry::served(repo) {
        Ok(served) if served == cert_der => {}
        Ok(_) => f.add(
            "key",
            Some(&format!("{REPO}/{STEP_VALUES}")),
            "installs another certificate than intermediate.pem as intermediate_ca",
        ),
        Err(e) => f.add("key", Some(&format!("{REPO}/{STEP_VALUES}")), e),
    }
}
