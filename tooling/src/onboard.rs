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
//! A Core cluster's shared sub-CA is a repo like these (`staterepo`, `shared: true`): the same
//! commands and files, with the shared policy (`policies/intermediate-core-shared.yaml`) and a
//! `values/smallstep.yaml` holding only the certificates (its configuration is `provisioner
//! gather`'s, see `stepca`).
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
use kiwi_signer::policy::IntermediatePolicy;
use kiwi_signer::slug::{Slug, Tier};
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
/// A renewal's new key, SOPS-encrypted, until `install --replace` puts it in [`KEY_FILE`].
pub const NEXT_KEY_FILE: &str = "secrets/intermediate.next.key.sops.yaml";

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
    /// `install --replace` with no intermediate installed.
    #[error("{0} is missing: no intermediate is installed to replace; install the first one without --replace; nothing was changed")]
    NothingToReplace(PathBuf),
    /// `install --replace` with the certificate already installed.
    #[error("serial {0} is the certificate installed already; install the renewed certificate; nothing was changed")]
    AlreadyInstalled(String),
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
    if info.tier == Tier::Core && !info.shared {
        return Err(OnboardError::CoreTier(
            repo.to_path_buf(),
            info.slug.clone(),
        ));
    }
    Ok(())
}

/// The policy the repo's intermediate is issued under: the tier's, or for a Core cluster's
/// shared sub-CA the shared policy (`kiwi-signer sign --shared` signs under the same file).
pub fn repo_policy(
    policies_dir: &Path,
    info: &RepoInfo,
) -> Result<IntermediatePolicy, IntermediateError> {
    if info.shared {
        Ok(kiwi_signer::policy::load_core_shared(policies_dir)?)
    } else {
        intermediate::tier_policy(policies_dir, info.tier)
    }
}

/// The `kiwi-signer sign` command line the ceremony runs for `csr` from this repo.
pub fn sign_command(info: &RepoInfo, csr: &Path) -> String {
    format!(
        "kiwi-signer sign --csr {} --slug {} --tier {}{} --out {}.crt",
        csr.file_name().unwrap_or(csr.as_os_str()).to_string_lossy(),
        info.slug,
        info.tier,
        if info.shared { " --shared" } else { "" },
        info.slug
    )
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
    if repo.join(KEY_FILE).exists() {
        return Err(OnboardError::Exists(
            repo.join(KEY_FILE),
            "This repo already has an intermediate key; renew it with `kiwictl intermediate renew --new-key`",
        ));
    }
    new_key(repo, info, policies_dir, KEY_FILE, csr_out)
}

/// Generates a key for the tier, seals it into `key_rel` in `repo` and writes its CSR: both
/// files or neither.
fn new_key(
    repo: &Path,
    info: RepoInfo,
    policies_dir: &Path,
    key_rel: &str,
    csr_out: &Path,
) -> Result<Requested, OnboardError> {
    let pol = repo_policy(policies_dir, &info)?;
    let key_file = repo.join(key_rel);
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

/// A renewal CSR for the repo's intermediate. By default for the key already in the repo (renewal
/// before expiry, or re-rooting under the customer's own root at churn: same key, new issuer;
/// needs `ids` to decrypt it). With `new_key`, a fresh key of the tier's algorithm is sealed
/// like `request` seals one, into [`NEXT_KEY_FILE`], where `install --replace` takes it from once
/// the certificate for it arrives (the current key keeps serving until then).
pub fn renew(
    repo: &Path,
    policies_dir: &Path,
    ids: &Identities,
    csr_out: &Path,
    new_key_wanted: bool,
) -> Result<Requested, OnboardError> {
    let info = staterepo::open(repo)?;
    if !repo.join(KEY_FILE).exists() {
        return Err(OnboardError::KeyFile(
            repo.join(KEY_FILE),
            "there is no intermediate to renew; run `kiwictl intermediate request` first".into(),
        ));
    }
    if new_key_wanted {
        if repo.join(NEXT_KEY_FILE).exists() {
            return Err(OnboardError::Exists(
                repo.join(NEXT_KEY_FILE),
                "A renewal with a new key is already pending: install its certificate with `intermediate install --replace`, or remove the file (and its CSR) to start again",
            ));
        }
        return new_key(repo, info, policies_dir, NEXT_KEY_FILE, csr_out);
    }
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
    load_key_from(&repo.join(KEY_FILE), ids)
}

fn load_key_from(
    key_file: &Path,
    ids: &Identities,
) -> Result<kiwi_signer::eckey::EcKey, OnboardError> {
    let parsed: KeyDoc = read_sops_yaml(key_file, ids, "run `kiwictl intermediate request` first")?;
    let pem = Zeroizing::new(parsed.key);
    intermediate::key_from_pem(&pem, &key_file.display().to_string())
        .map_err(|e| OnboardError::KeyFile(key_file.to_path_buf(), e))
}

/// Decrypts the SOPS YAML `file` with `ids` and reads it as a `T`; `missing` says what to do
/// when the file is absent.
fn read_sops_yaml<T: serde::de::DeserializeOwned>(
    file: &Path,
    ids: &Identities,
    missing: &str,
) -> Result<T, OnboardError> {
    let bad = |m: String| OnboardError::KeyFile(file.to_path_buf(), m);
    let bytes = std::fs::read(file).map_err(|e| bad(format!("{e}; {missing}")))?;
    let doc = engine::open(&bytes, FileFormat::Yaml, Unlock::Identities(ids))?;
    let plain = doc.plaintext()?;
    let text = std::str::from_utf8(&plain).map_err(|_| bad("not UTF-8".into()))?;
    serde_yaml_ng::from_str(text).map_err(|e| bad(format!("unexpected content ({e})")))
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
    /// With `replace`: the serial (hex) of the certificate it replaced, to be revoked as
    /// superseded at the next ceremony.
    pub replaced: Option<String>,
}

/// A PEM block with LF line endings.
pub fn pem_of(tag: &str, der: &[u8]) -> String {
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
    /// Replace the installed intermediate (renewal) instead of refusing when one is installed.
    pub replace: bool,
}

/// The installed certificate file's content ([`CERT_FILE`], decrypted).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstalledDoc {
    /// The customer.
    pub slug: String,
    /// The certificate's serial, lowercase hex.
    pub serial: String,
    /// Its notAfter, RFC 3339.
    pub not_after: String,
    /// The certificate, PEM.
    pub certificate: String,
    /// The root it chains to, PEM.
    pub root: String,
    /// After a hand-over: the serial of the MSP-issued certificate for the same key.
    #[serde(default)]
    pub previous_serial: Option<String>,
    /// After a hand-over: the MSP root, trusted beside `root` during the transition.
    #[serde(default)]
    pub previous_root: Option<String>,
}

impl InstalledDoc {
    /// The document's YAML text (as `install` and `churn export` write it, before encryption).
    pub fn to_yaml(&self, written_by: &str) -> String {
        let mut s = format!(
            "# The {slug} intermediate CA certificate, installed by `{written_by}`.\n\
             slug: {slug}\nserial: \"{serial}\"\nnot_after: \"{na}\"\ncertificate: |\n{c}root: |\n{r}",
            slug = self.slug,
            serial = self.serial,
            na = self.not_after,
            c = block(&self.certificate, 4),
            r = block(&self.root, 4),
        );
        if let Some(p) = &self.previous_serial {
            s.push_str(&format!("previous_serial: \"{p}\"\n"));
        }
        if let Some(r) = &self.previous_root {
            s.push_str(&format!("previous_root: |\n{}", block(r, 4)));
        }
        s
    }
}

/// Decrypts and reads the repo's [`CERT_FILE`].
pub fn read_installed(repo: &Path, ids: &Identities) -> Result<InstalledDoc, OnboardError> {
    read_sops_yaml(
        &repo.join(CERT_FILE),
        ids,
        "no intermediate is installed (run `kiwictl intermediate install`)",
    )
}

/// step-ca's public values ([`STEP_VALUES`]): `roots` (one or more PEM certificates, all
/// trusted) and the intermediate, in the step-certificates chart's inject layout
/// ([`stepca::values_yaml`]; `root_sha256` is the first root's, for `defaults.json`); `note` is a
/// comment on why the roots are what they are.
pub fn values_doc(
    slug: &Slug,
    roots_pem: &str,
    cert_pem: &str,
    root_sha256: &Fingerprint,
    written_by: &str,
    note: &str,
) -> Result<String, IntermediateError> {
    let ca_dns = stepca::ca_dns_name(slug);
    stepca::values_yaml(
        &format!(
            "# step-certificates Helm values (public). Written by `{written_by}`.\n\
             # The matching key and password are in {STEP_SECRETS}. The CA answers at {ca_dns}.\n{note}"
        ),
        Some((
            stepca::ca_json(
                std::slice::from_ref(&ca_dns),
                stepca::own_ca_provisioners(slug),
            ),
            stepca::defaults_json(&format!("https://{ca_dns}"), root_sha256),
        )),
        Some((roots_pem, cert_pem)),
    )
    .map_err(|e| IntermediateError::Build {
        what: "step-ca values",
        detail: e.to_string(),
    })
}

/// Checks the certificate (chain to the root, policy, the repo's key, not revoked by the CRL)
/// and installs it with the key where step-ca reads them. With `replace`, an installed
/// intermediate must be there and is replaced (renewal): the certificate may certify the
/// current key or the pending one from `renew --new-key` ([`NEXT_KEY_FILE`], which then becomes
/// the key). Each file is replaced atomically (new file, fsync, rename); a crash between files
/// leaves some replaced and some not, and running the same `install --replace` again completes
/// it (the pending key file goes last).
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
        replace,
    } = *input;
    let info = staterepo::open(repo)?;
    let pol = repo_policy(policies_dir, &info)?;
    let outputs = [CERT_FILE, STEP_SECRETS, STEP_VALUES].map(|f| repo.join(f));
    if let Some(o) = outputs.iter().find(|o| o.exists() != replace) {
        return Err(if replace {
            OnboardError::NothingToReplace(o.clone())
        } else {
            OnboardError::Exists(
                o.clone(),
                "An intermediate is installed already; renew it with `kiwictl intermediate renew` and `install --replace`; nothing was changed",
            )
        });
    }
    let previous = replace.then(|| read_installed(repo, ids)).transpose()?;
    let next_file = repo.join(NEXT_KEY_FILE);
    let next = if replace && next_file.exists() {
        Some(load_key_from(&next_file, ids)?)
    } else {
        None
    };
    let certified = intermediate::public_key_of(cert);
    let (key, promote) = match next {
        Some(k) if certified.as_ref() == Some(k.public_key()) => (k, true),
        _ => (load_key(repo, ids)?, false),
    };
    // After a hand-over the repo pins the customer's own root and keeps the MSP root it was
    // onboarded with as previous_root: only then may the name constraints add DNS names of the
    // customer's own to the tier policy's (`intermediate` says why).
    let handed_over = previous
        .as_ref()
        .and_then(|p| p.previous_root.as_deref())
        .is_some_and(|r| Fingerprint::of(&intermediate::der_of(r.as_bytes())) != info.root_sha256);
    let check = if handed_over {
        intermediate::check_handed_over
    } else {
        intermediate::check_certificate
    };
    let checked = check(
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
    if let Some(p) = previous.as_ref().filter(|p| p.serial == checked.serial) {
        return Err(OnboardError::AlreadyInstalled(p.serial.clone()));
    }
    let cert_pem = pem_of("CERTIFICATE", &checked.der);
    let root_pem = pem_of("CERTIFICATE", &checked.root_der);
    let (enc_key, password) = intermediate::step_ca_key(&key)?;
    let password_b64 = Zeroizing::new(base64_std(password.as_bytes()));

    let written_by = "kiwictl intermediate install";
    // A renewal during a hand-over's transition keeps the MSP root trusted beside the
    // customer's (HANDOVER.md says when to remove it) and the record of the MSP's serial.
    let (previous_serial, previous_root) = previous
        .as_ref()
        .map(|p| (p.previous_serial.clone(), p.previous_root.clone()))
        .unwrap_or_default();
    let roots = format!("{root_pem}{}", previous_root.as_deref().unwrap_or_default());
    let cert_doc = InstalledDoc {
        slug: info.slug.to_string(),
        serial: checked.serial.clone(),
        not_after: checked.not_after.clone(),
        certificate: cert_pem.clone(),
        root: root_pem.clone(),
        previous_serial,
        previous_root,
    }
    .to_yaml(written_by);
    let secrets_doc = Zeroizing::new(format!(
        "# step-certificates Helm values (secrets). Written by `{written_by}`.\n\
         inject:\n  secrets:\n    ca_password: {password_b64}\n    x509:\n      intermediate_ca_key: |\n{}",
        block(&enc_key, 8),
        password_b64 = password_b64.as_str(),
    ));
    let values = if info.shared {
        stepca::shared_certificates_yaml(&info.slug, &roots, &cert_pem, written_by).map_err(
            |e| IntermediateError::Build {
                what: "step-ca values",
                detail: e.to_string(),
            },
        )?
    } else {
        values_doc(
            &info.slug,
            &roots,
            &cert_pem,
            &checked.root_sha256,
            written_by,
            "",
        )?
    };
    let cert_enc = encrypt_for(repo, &info, &outputs[0], cert_doc.as_bytes())?;
    let secrets_enc = encrypt_for(repo, &info, &outputs[1], secrets_doc.as_bytes())?;
    let files = [
        (outputs[0].clone(), cert_enc.as_slice()),
        (outputs[1].clone(), secrets_enc.as_slice()),
        (outputs[2].clone(), values.as_bytes()),
    ];
    if replace {
        for (path, bytes) in &files {
            fsutil::replace_atomically(path, bytes, Mode::Public)?;
        }
        if promote {
            let sealed = std::fs::read(&next_file)
                .map_err(|e| OnboardError::KeyFile(next_file.clone(), e.to_string()))?;
            fsutil::replace_atomically(&repo.join(KEY_FILE), &sealed, Mode::Public)?;
            std::fs::remove_file(&next_file)
                .map_err(|e| OnboardError::KeyFile(next_file.clone(), e.to_string()))?;
        }
    } else {
        write_all_or_nothing(&files)?;
    }
    let mut written = outputs.to_vec();
    if promote {
        written.push(repo.join(KEY_FILE));
        written.push(next_file);
    }
    Ok(Installed {
        info,
        cert: checked,
        written,
        replaced: previous.map(|p| p.serial),
    })
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
