//! Onboarding a customer's intermediate CA into their state repo: the request (key + CSR) and
//! the install of the signed certificate where step-ca's Helm chart reads it.
//!
//! Files in the state repo (paths relative to its root):
//!
//! ```text
//! secrets/intermediate.key.sops.yaml   request: the intermediate key (PKCS#8 PEM), SOPS-encrypted
//! secrets/intermediate.crt.sops.yaml   install: certificate + root, SOPS-encrypted (seed G8 step 3)
//! secrets/smallstep.sops.yaml          install: inject.secrets.ca_password (base64) and
//!                                       inject.secrets.x509.intermediate_ca_key (encrypted PEM)
//! values/smallstep.yaml                install: inject.enabled, inject.config.files (ca.json,
//!                                       defaults.json: see `stepca`), inject.certificates
//!                                       (root_ca, intermediate_ca), bootstrap.enabled: false
//! ```
//!
//! Both operations are all or nothing: every output is built and checked in memory (each SOPS
//! file is decrypted and MAC-checked by the engine before it is returned), then written with
//! create_new; if a write fails, the files already written are removed. The plaintext key
//! exists only in memory, zeroized on drop.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use kiwi_signer::fsutil::{self, Mode};
use kiwi_signer::slug::Tier;
use kiwi_signer::words::Fingerprint;

use crate::intermediate::{self, CheckedCert, Expected, IntermediateError};
use crate::seal::{self, SealError};
use crate::sops::agekeys::Identities;
use crate::sops::engine::{self, Unlock};
use crate::sops::error::SopsError;
use crate::sops::format::FileFormat;
use crate::staterepo::{self, RepoError, RepoInfo};
use crate::stepca;

/// The intermediate key, SOPS-encrypted.
pub const KEY_FILE: &str = "secrets/intermediate.key.sops.yaml";
/// The installed certificate and root, SOPS-encrypted.
pub const CERT_FILE: &str = "secrets/intermediate.crt.sops.yaml";
/// step-ca's secrets, SOPS-encrypted.
pub const STEP_SECRETS: &str = "secrets/smallstep.sops.yaml";
/// step-ca's public values.
pub const STEP_VALUES: &str = "values/smallstep.yaml";

/// Why onboarding refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnboardError {
    /// The state repo is missing or wrong.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The key, CSR or certificate was refused.
    #[error(transparent)]
    Intermediate(#[from] IntermediateError),
    /// SOPS encryption or decryption failed.
    #[error(transparent)]
    Sops(#[from] SopsError),
    /// An output exists already.
    #[error("{0} exists already; nothing was written. {1}")]
    Exists(PathBuf, &'static str),
    /// The key material could not be encrypted as the state repo requires.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The stored key file is not what `request` wrote.
    #[error("{0}: {1}")]
    KeyFile(PathBuf, String),
    /// A Core tenant asked for an intermediate.
    #[error("{0} is the state repo of {1}, a core tier tenant: core tenants have no intermediate of their own, they get an ACME provisioner on their cluster's shared sub-CA; run `kiwictl provisioner add --repo {0}` instead. Nothing was written")]
    CoreTier(PathBuf, kiwi_signer::slug::Slug),
    /// Writing failed (files already written were removed).
    #[error(transparent)]
    Write(#[from] kiwi_signer::Error),
}

/// What `request` produced.
#[derive(Debug, Clone)]
pub struct Requested {
    /// The state repo's customer.
    pub info: RepoInfo,
    /// The encrypted key file.
    pub key_file: PathBuf,
    /// The CSR.
    pub csr: PathBuf,
    /// SHA-256 of the CSR file (what the signer's summary shows, for the witness to compare).
    pub csr_sha256: Fingerprint,
    /// The key's algorithm.
    pub algorithm: String,
}

/// Encrypts for `repo_file` in `repo`: only under the repo's own config, only to its recorded
/// recipients, every value encrypted ([`seal`]).
fn encrypt_for(
    repo: &Path,
    info: &RepoInfo,
    repo_file: &Path,
    plaintext: &[u8],
) -> Result<Vec<u8>, OnboardError> {
    Ok(seal::seal(repo, info, repo_file, plaintext)?)
}

/// A YAML literal block scalar of `text`, indented by `indent` spaces.
fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// Writes every `(path, bytes)` with create_new, or none of them.
fn write_all_or_nothing(files: &[(PathBuf, &[u8])]) -> Result<(), OnboardError> {
    for (path, _) in files {
        if path.exists() {
            return Err(OnboardError::Exists(
                path.clone(),
                "Move it away first if it is stale; kiwictl never overwrites",
            ));
        }
    }
    let mut written: Vec<&Path> = Vec::new();
    for (path, bytes) in files {
        if let Err(e) = fsutil::write_new(path, bytes, Mode::Public) {
            for w in written {
                let _ = std::fs::remove_file(w);
            }
            return Err(e.into());
        }
        written.push(path);
    }
    Ok(())
}

/// Refuses a Core tenant's repo: Core tenants get a provisioner on their cluster's shared
/// sub-CA (`kiwictl provisioner add`), not an intermediate of their own.
pub fn refuse_core(repo: &Path, info: &RepoInfo) -> Result<(), OnboardError> {
    if info.tier == Tier::Core {
        return Err(OnboardError::CoreTier(
            repo.to_path_buf(),
            info.slug.clone(),
        ));
    }
    Ok(())
}

/// Generates the intermediate key (algorithm from the tier's policy in `policies_dir`), stores
/// it SOPS-encrypted in the state repo, and writes the CSR to `csr_out` (the transfer medium).
pub fn request(
    repo: &Path,
    policies_dir: &Path,
    csr_out: &Path,
) -> Result<Requested, OnboardError> {
    let info = staterepo::open(repo)?;
    refuse_core(repo, &info)?;
    let pol = intermediate::tier_policy(policies_dir, info.tier)?;
    let key_file = repo.join(KEY_FILE);
    if key_file.exists() {
        return Err(OnboardError::Exists(
            key_file,
            "This repo already has an intermediate key; a new one needs a new request after the old key is retired",
        ));
    }
    if csr_out.exists() {
        return Err(OnboardError::Exists(
            csr_out.to_path_buf(),
            "Choose another --out",
        ));
    }
    let key = intermediate::generate_key(&pol);
    let csr = intermediate::make_csr(&key, &info.slug)?;
    let pem = intermediate::key_pem(&key);
    let plaintext = Zeroizing::new(format!(
        "# The {} intermediate CA key ({}). Written by `kiwictl intermediate request`.\nkey: |\n{}",
        info.slug,
        key.algorithm(),
        block(&pem, 4)
    ));
    let encrypted = encrypt_for(repo, &info, &key_file, plaintext.as_bytes())?;
    write_all_or_nothing(&[
        (key_file.clone(), encrypted.as_slice()),
        (csr_out.to_path_buf(), csr.as_bytes()),
    ])?;
    Ok(Requested {
        csr_sha256: Fingerprint::of(csr.as_bytes()),
        algorithm: key.algorithm().to_string(),
        info,
        key_file,
        csr: csr_out.to_path_buf(),
    })
}

/// Writes a fresh CSR for the intermediate key already in the repo (renewal before expiry, or
/// re-rooting a churning customer's intermediate under their own root: same key, new issuer).
pub fn renew_csr(repo: &Path, ids: &Identities, csr_out: &Path) -> Result<Requested, OnboardError> {
    let info = staterepo::open(repo)?;
    if csr_out.exists() {
        return Err(OnboardError::Exists(
            csr_out.to_path_buf(),
            "Choose another --out",
        ));
    }
    let key = load_key(repo, ids)?;
    let csr = intermediate::make_csr(&key, &info.slug)?;
    fsutil::write_new(csr_out, csr.as_bytes(), Mode::Public)?;
    Ok(Requested {
        csr_sha256: Fingerprint::of(csr.as_bytes()),
        algorithm: key.algorithm().to_string(),
        key_file: repo.join(KEY_FILE),
        csr: csr_out.to_path_buf(),
        info,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyDoc {
    key: String,
}

/// Decrypts the repo's intermediate key with `ids`.
pub fn load_key(repo: &Path, ids: &Identities) -> Result<kiwi_signer::eckey::EcKey, OnboardError> {
    let key_file = repo.join(KEY_FILE);
    let bytes = std::fs::read(&key_file).map_err(|e| {
        OnboardError::KeyFile(
            key_file.clone(),
            format!("{e}; run `kiwictl intermediate request` first"),
        )
    })?;
    let doc = engine::open(&bytes, FileFormat::Yaml, Unlock::Identities(ids))?;
    let plain = doc.plaintext()?;
    let text = std::str::from_utf8(&plain)
        .map_err(|_| OnboardError::KeyFile(key_file.clone(), "not UTF-8".into()))?;
    let parsed: KeyDoc = serde_yaml_ng::from_str(text).map_err(|e| {
        OnboardError::KeyFile(key_file.clone(), format!("unexpected content ({e})"))
    })?;
    let pem = Zeroizing::new(parsed.key);
    intermediate::key_from_pem(&pem, &key_file.display().to_string())
        .map_err(|e| OnboardError::KeyFile(key_file, e))
}

/// What `install` wrote.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The customer.
    pub info: RepoInfo,
    /// The checked certificate.
    pub cert: CheckedCert,
    /// Files written.
    pub written: Vec<PathBuf>,
}

fn pem_of(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// What `install` is given.
pub struct InstallInput<'a> {
    /// The state repo.
    pub repo: &'a Path,
    /// The policies folder (for the tier's policy).
    pub policies_dir: &'a Path,
    /// The signed certificate (PEM or DER).
    pub cert: &'a [u8],
    /// Where it came from (for messages).
    pub cert_origin: &'a str,
    /// The MSP root certificate (PEM or DER).
    pub root: &'a [u8],
    /// The root's current CRL, if given.
    pub crl: Option<&'a [u8]>,
}

/// Checks the certificate (chain to the root, policy, the repo's key, not revoked by the CRL)
/// and installs it with the key where step-ca reads them.
pub fn install(
    input: &InstallInput<'_>,
    ids: &Identities,
    now: OffsetDateTime,
) -> Result<Installed, OnboardError> {
    let InstallInput {
        repo,
        policies_dir,
        cert,
        cert_origin,
        root,
        crl,
    } = *input;
    let info = staterepo::open(repo)?;
    let pol = intermediate::tier_policy(policies_dir, info.tier)?;
    let outputs = [CERT_FILE, STEP_SECRETS, STEP_VALUES].map(|f| repo.join(f));
    for o in &outputs {
        if o.exists() {
            return Err(OnboardError::Exists(
                o.clone(),
                "An intermediate is installed already; nothing was changed",
            ));
        }
    }
    let key = load_key(repo, ids)?;
    let checked = intermediate::check_certificate(
        cert_origin,
        cert,
        root,
        crl,
        &Expected {
            slug: &info.slug,
            policy: &pol,
            key: key.public_key(),
            root_sha256: &info.root_sha256,
        },
        now,
    )?;
    let cert_pem = pem_of("CERTIFICATE", &checked.der);
    let root_pem = pem_of("CERTIFICATE", &checked.root_der);
    let (enc_key, password) = intermediate::step_ca_key(&key)?;
    let password_b64 = Zeroizing::new(base64_std(password.as_bytes()));

    let cert_doc = format!(
        "# The {slug} intermediate CA certificate, installed by `kiwictl intermediate install`.\n\
         slug: {slug}\nserial: \"{serial}\"\nnot_after: \"{na}\"\ncertificate: |\n{c}root: |\n{r}",
        slug = info.slug,
        serial = checked.serial,
        na = checked.not_after,
        c = block(&cert_pem, 4),
        r = block(&root_pem, 4),
    );
    let secrets_doc = Zeroizing::new(format!(
        "# step-certificates Helm values (secrets). Written by `kiwictl intermediate install`.\n\
         inject:\n  secrets:\n    ca_password: {password_b64}\n    x509:\n      intermediate_ca_key: |\n{}",
        block(&enc_key, 8),
        password_b64 = password_b64.as_str(),
    ));
    let ca_dns = stepca::ca_dns_name(&info.slug);
    let values_doc = stepca::values_yaml(
        &format!(
            "# step-certificates Helm values (public). Written by `kiwictl intermediate install`.\n\
             # The matching key and password are in {STEP_SECRETS}. The CA answers at {ca_dns}.\n"
        ),
        stepca::ca_json(
            std::slice::from_ref(&ca_dns),
            stepca::own_ca_provisioners(&info.slug),
        ),
        stepca::defaults_json(&format!("https://{ca_dns}"), &checked.root_sha256),
        Some((&root_pem, &cert_pem)),
    )
    .map_err(|e| IntermediateError::Build {
        what: "step-ca values",
        detail: e.to_string(),
    })?;
    let cert_enc = encrypt_for(repo, &info, &outputs[0], cert_doc.as_bytes())?;
    let secrets_enc = encrypt_for(repo, &info, &outputs[1], secrets_doc.as_bytes())?;
    write_all_or_nothing(&[
        (outputs[0].clone(), cert_enc.as_slice()),
        (outputs[1].clone(), secrets_enc.as_slice()),
        (outputs[2].clone(), values_doc.as_bytes()),
    ])?;
    Ok(Installed {
        info,
        cert: checked,
        written: outputs.to_vec(),
    })
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
