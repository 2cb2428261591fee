//! `init`: a new root CA in an absent or empty directory.
//!
//! There is no ledger to read yet, so the steps of the pipeline that apply are run here: pre
//! hooks, the checks, the air-gap preflight (before any PIN is asked; its failed checks go
//! into the first ledger entry), key generation on the backend, one signature checked against
//! the new key (built and linted first with a throwaway key), then everything is staged in a
//! sibling directory and renamed into place. Then the device's anchor, the head file and post
//! hooks.
//!
//! Crashes (tested by killing `init` at every file-changing system call, see
//! `tests/e2e/tests/signer_crash.rs`): every staged file is written whole and synced, with its
//! directory, before the rename ([`fsutil::write_new`]); the rename is the commit point and is
//! atomic, and the parent directory is synced after it. So a crash (SIGKILL or power loss)
//! leaves either no CA directory or a whole one whose ledger verifies, and at most a
//! `.NAME.init-PID` staging directory, which the next init of the same directory removes (a
//! running init holds an `flock` on its staging directory, so only a dead one's is removed)
//! before it starts, with no clean-up by hand. A key the backend generated for a CA that was
//! not created is removed again where the device allows it (PKCS#11). A YubiKey cannot delete
//! one PIV key through the yubikey crate: a failed init says so and how to clear the slot
//! (`ykman`), and after a crash the next init's refusal of the occupied slot says the same.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyIdMethod, SerialNumber};
use time::{Duration, OffsetDateTime};

use super::{add_file, add_results, head, Ceremony, Outcome, TOOL};
pub use crate::backend::BackendSpec;
use crate::backend::{Anchor, KeyRequest, NewKey};
use crate::ca::{files, CaConfig, CLOCK_SKEW, CONFIG_FORMAT, POLICIES};
use crate::error::{Error, Result};
use crate::fsutil::{self, DirLock, Mode};
use crate::hooks::{EventData, EventKind};
use crate::ledger::{self, Event};
use crate::lint::{self, CaExpectations};
use crate::pipeline::{self, Kind};
use crate::policy::{self, RootPolicy};
use crate::preflight::PreflightRecord;
use crate::slug::Tier;
use crate::words::Fingerprint;
use crate::x509::{self, dn_string, Serial};

/// Creates a new root CA in `dir` (which must be absent or empty) under the root policy
/// `policy_path` (the intermediate policies are read beside it).
pub fn init(
    dir: &Path,
    policy_path: &Path,
    backend: &BackendSpec,
    c: &Ceremony<'_>,
) -> Result<Outcome> {
    init_org(dir, policy_path, None, backend, c)
}

/// [`init`], with `org` for a customer-owned root (`kind: customer_root` policies, which take
/// their subject from it and read no intermediate policies); an MSP root policy refuses `org`.
pub fn init_org(
    dir: &Path,
    policy_path: &Path,
    org: Option<&str>,
    backend: &BackendSpec,
    c: &Ceremony<'_>,
) -> Result<Outcome> {
    let mut data = EventData::default();
    add_file(&mut data, "ca", dir);
    if let Some(hooks) = c.hooks {
        hooks.run_pre(TOOL, EventKind::RootCreated, &data)?;
    }
    let mut outcome = create(dir, policy_path, org, backend, c)?;
    if let Some(path) = &c.witness.head_file {
        if let Err(e) = head::write_head_file(path, &outcome.head) {
            outcome.warnings.push(format!(
                "the new head could not be written to --head-file ({e}); the witness writes it \
                 down by hand: {}",
                outcome.head.hex()
            ));
        }
    }
    if let Some(hooks) = c.hooks {
        if let Ok(bytes) = std::fs::read(dir.join(files::ROOT)) {
            data.sha256
                .insert("root".into(), Fingerprint::of(&bytes).hex());
        }
        add_results(&mut data, &outcome);
        for f in hooks.run_post(TOOL, EventKind::RootCreated, &data) {
            outcome.warnings.push(f.to_string());
        }
    }
    Ok(outcome)
}

fn create(
    dir: &Path,
    policy_path: &Path,
    org: Option<&str>,
    backend: &BackendSpec,
    c: &Ceremony<'_>,
) -> Result<Outcome> {
    let (cb, now) = (c.cb, c.now);
    let p = precheck(dir, policy_path, org)?;
    let air_gap = c.preflight(backend.kind() != crate::backend::BackendKind::Soft)?;
    remove_stale_staging(dir);
    let new_key = backend.create(&KeyRequest::from_policy(&p.pol), cb)?;
    let result = init_with_key(
        dir,
        &p.pol,
        p.subject,
        p.tiers,
        &p.policy_path,
        backend,
        new_key.as_ref(),
        now,
        &air_gap,
    );
    if result.is_err() {
        // A key generated on a device for a CA that was not created is removed again.
        new_key.abort();
    }
    result
}

/// What the checks before any key exists found.
pub(crate) struct Prechecked {
    /// The root policy.
    pub pol: RootPolicy,
    /// Its canonical path.
    pub policy_path: PathBuf,
    /// The root's subject (from the policy, or from `--org` for a customer-owned root).
    pub subject: rcgen::DistinguishedName,
    /// The tiers whose intermediate policies go into the CA (none for a customer-owned root).
    pub tiers: &'static [Tier],
}

/// The checks before any key exists: `dir` absent or empty, the root policy (and `org`, for a
/// customer-owned root) and the intermediate policies beside it valid.
pub(crate) fn precheck(dir: &Path, policy_path: &Path, org: Option<&str>) -> Result<Prechecked> {
    if dir.join(files::CONFIG).exists()
        || dir.join(ledger::FILE).exists()
        || dir.join(files::ROOT).exists()
    {
        return Err(Error::CaExists {
            dir: dir.to_path_buf(),
        });
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e, ""))?
            .next()
            .is_some()
    {
        return Err(Error::DirNotEmpty {
            dir: dir.to_path_buf(),
        });
    }
    let policy_path = std::fs::canonicalize(policy_path).map_err(|e| {
        Error::io(
            policy_path,
            e,
            "pass the root policy, e.g. policies/root.yaml",
        )
    })?;
    let pol = policy::load_root(&policy_path)?;
    let policies_dir = policy_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let subject = match (&pol.subject, org) {
        (Some(t), None) => t.render(None),
        (None, Some(org)) => {
            policy::customer_subject(org).map_err(|detail| Error::BadOrg { detail })?
        }
        (Some(_), Some(_)) => {
            return Err(Error::BadOrg {
                detail: format!(
                    "--org is for a customer-owned root, and {} is not one (`kind: {}`)",
                    policy_path.display(),
                    policy::CUSTOMER_ROOT
                ),
            })
        }
        (None, None) => {
            return Err(Error::BadOrg {
                detail: format!(
                    "{} is a customer-owned root's policy: pass --org \"<the customer's organization>\"",
                    policy_path.display()
                ),
            })
        }
    };
    // A customer-owned root only re-roots: it signs under no KiwiStack tier policy.
    let tiers: &'static [Tier] = if pol.subject.is_some() {
        &Tier::ALL
    } else {
        &[]
    };
    for tier in tiers {
        policy::load_intermediate(&policies_dir, *tier)?;
    }
    if !tiers.is_empty() && policies_dir.join(policy::CORE_SHARED_FILE).exists() {
        policy::load_core_shared(&policies_dir)?;
    }
    Ok(Prechecked {
        pol,
        policy_path,
        subject,
        tiers,
    })
}

#[allow(clippy::too_many_arguments)]
fn init_with_key(
    dir: &Path,
    pol: &RootPolicy,
    subject: rcgen::DistinguishedName,
    tiers: &[Tier],
    policy_path: &Path,
    backend: &BackendSpec,
    new_key: &dyn NewKey,
    now: OffsetDateTime,
    air_gap: &PreflightRecord,
) -> Result<Outcome> {
    let key = new_key.key();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let serial = Serial::random();
    let public = key.public_key().clone();
    let mut params = CertificateParams::default();
    params.serial_number = Some(SerialNumber::from_slice(serial.bytes()));
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + Duration::days(i64::from(pol.validity_days));
    params.distinguished_name = subject;
    params.is_ca = IsCa::Ca(match pol.path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = pol.key_usages.iter().map(|u| u.rcgen()).collect();
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::PreSpecified(public.key_id());
    let build = |signer: &crate::backend::RcgenSigner<'_>| {
        let issuer = Issuer::from_params(&params, signer);
        params.signed_by(&public, &issuer).map(|c| c.der().to_vec())
    };
    let key_id = public.key_id();
    let lint = |der: &[u8]| match x509::parse_cert(der) {
        Ok(c) => {
            let subject = c.tbs_certificate.subject.as_raw();
            let window = (
                c.tbs_certificate.validity.not_before.timestamp(),
                c.tbs_certificate.validity.not_after.timestamp(),
            );
            lint::lint_ca_cert(
                &c,
                &CaExpectations {
                    issuer_name: subject,
                    issuer_key_id: &key_id,
                    issuer_window: window,
                    subject_key: &public,
                    path_len: pol.path_len,
                    key_usages: &pol.key_usages,
                    name_constraints: None,
                    certificate_policy: None,
                },
            )
        }
        Err(e) => vec![e],
    };
    let der = pipeline::sign_checked(Kind::Certificate, key, &public, &build, &lint)?;
    // On a YubiKey the root certificate also goes into the slot's certificate object.
    key.store_certificate(&der)?;

    // Everything is staged in a sibling directory and renamed into place at the end. The
    // staging directory is locked while this init lives (the lock moves with the rename and is
    // dropped when init returns), so the next init can tell a killed one's leftovers.
    let (parent, prefix) = staging_names(dir);
    let staging = parent.join(format!("{prefix}{}", std::process::id()));
    std::fs::create_dir(&staging)
        .map_err(|e| Error::io(&staging, e, "check that the parent directory is writable"))?;
    let _lock = DirLock::acquire(&staging);
    let result = (|| -> Result<(Fingerprint, Vec<PathBuf>)> {
        let kept = new_key.persist(&staging)?;
        fsutil::write_new(
            &staging.join(files::ROOT),
            &pipeline::encode(Path::new("root.pem"), Kind::Certificate, &der),
            Mode::Public,
        )?;
        // The CA keeps its own copy of the policies it signs under (the ledger records each
        // one's SHA-256), so it does not depend on where a repository checkout happens to be.
        let staged_policies = staging.join(POLICIES);
        std::fs::create_dir(&staged_policies).map_err(|e| Error::io(&staged_policies, e, ""))?;
        let mut copies = vec![(policy_path.to_path_buf(), "root.yaml".to_string())];
        for tier in tiers {
            let file = policy::intermediate_file(*tier);
            // The intermediate policies sit beside the root policy (`create` loaded them there).
            let beside = policy_path.parent().unwrap_or(Path::new(""));
            copies.push((beside.join(&file), file));
        }
        // The Core tier's shared sub-CA policy, where the policies folder has one (not for a
        // customer-owned root, which signs under no tier policy).
        let beside = policy_path.parent().unwrap_or(Path::new(""));
        if !tiers.is_empty() && beside.join(policy::CORE_SHARED_FILE).exists() {
            let file = policy::CORE_SHARED_FILE.to_string();
            copies.push((beside.join(&file), file));
        }
        for (from, name) in copies {
            let bytes = std::fs::read(&from).map_err(|e| Error::io(&from, e, ""))?;
            fsutil::write_new(&staged_policies.join(name), &bytes, Mode::Public)?;
        }
        let config = CaConfig {
            format: CONFIG_FORMAT,
            policy: Path::new(POLICIES).join("root.yaml"),
            policies_dir: PathBuf::from(POLICIES),
            backend: backend.config.clone(),
        };
        let toml_text = toml::to_string(&config).map_err(|e| Error::SelfCheck(e.to_string()))?;
        fsutil::write_new(
            &staging.join(files::CONFIG),
            toml_text.as_bytes(),
            Mode::Public,
        )?;
        let (artifact_sha256, artifact) = ledger::encode_artifact(&der);
        let event = Event::RootCreated {
            serial: serial.clone(),
            subject: dn_string(&params.distinguished_name),
            not_after: ledger::fmt_time(params.not_after),
            key_id: hex::encode(public.key_id()),
            backend: key
                .describe()
                .replace(&staging.display().to_string(), &dir.display().to_string()),
            policy_sha256: pol.source.sha256.hex(),
            artifact_sha256,
            artifact,
            attestation: key.attestation().map(|der| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(der)
            }),
        };
        let (text, head) = ledger::genesis(event, now, Some(air_gap));
        ledger::verify_text(ledger::FILE, &text)?;
        fsutil::write_new(&staging.join(ledger::FILE), text.as_bytes(), Mode::Public)?;
        std::fs::rename(&staging, dir)
            .map_err(|e| Error::io(dir, e, "the directory must be empty or absent"))?;
        Ok((head, kept))
    })();
    match result {
        Ok((head, kept)) => {
            // The CA exists from here on: nothing is undone, failures are warnings.
            let mut warnings = Vec::new();
            if let Err(e) = fsutil::sync_parent(dir) {
                warnings.push(format!(
                    "the new CA directory could not be flushed to disk ({e}); run `sync` before \
                     removing the medium"
                ));
            }
            let mut written = vec![
                dir.join(files::ROOT),
                dir.join(files::CONFIG),
                dir.join(ledger::FILE),
            ];
            written.extend(kept.iter().map(|k| dir.join(k)));
            if key.remembers() {
                if let Err(e) = key.write_anchor(&Anchor {
                    head,
                    crl_number: 0,
                }) {
                    warnings.push(format!(
                        "the ledger head could not be stored on the device ({e}); the next \
                         command stores it"
                    ));
                }
            }
            Ok(Outcome {
                written,
                serial: Some(serial),
                crl_number: None,
                head,
                warnings,
            })
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// The directory `dir` is staged beside, and the name prefix of its staging directories
/// (`.NAME.init-PID`).
fn staging_names(dir: &Path) -> (PathBuf, String) {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ca".into());
    (parent.to_path_buf(), format!(".{name}.init-"))
}

/// Removes the staging directories of `dir` that a killed init left behind: those whose lock
/// nobody holds (a running init holds its own). Best effort: what cannot be removed stays,
/// and is never read.
fn remove_stale_staging(dir: &Path) {
    let (parent, prefix) = staging_names(dir);
    let Ok(entries) = std::fs::read_dir(&parent) else {
        return;
    };
    for e in entries.flatten() {
        let stale = e.file_name().to_string_lossy().starts_with(&prefix)
            && e.file_type().is_ok_and(|t| t.is_dir());
        if stale {
            if let Ok(_lock) = DirLock::acquire(&e.path()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}
