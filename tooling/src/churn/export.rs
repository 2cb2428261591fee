//! `kiwictl churn export`: builds the hand-over bundle (layout in [`super`]).
//!
//! The MSP's operator age key decrypts the repo; in the bundle every SOPS file is encrypted
//! again under a new data key to the customer's recipients only, and the export checks that
//! the operator key opens none of them before it hands anything over. The re-rooted
//! certificate must certify the intermediate key the repo holds.
//!
//! All or nothing: the bundle is built in a staging directory beside `--out` (named with our
//! PID), every file flushed to disk, then renamed to `--out` in one step. A crash before the
//! rename leaves no `--out` (only the staging directory, which names the dead PID and can be
//! removed); after it, the whole bundle is on disk. A refusal removes the staging directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use time::OffsetDateTime;

use kiwi_signer::constraints::{NameConstraints, Subtree};
use kiwi_signer::fsutil::{self, Mode};
use kiwi_signer::slug::Tier;
use kiwi_signer::words::Fingerprint;
use kiwi_signer::x509;

use super::{
    chains_to, crl_lists, io, manifest, ChurnError, CUSTOMER_ROOT, HANDOVER, INTERMEDIATE,
    MANIFEST, MSP_CRL, MSP_ROOT, REPO,
};
use crate::intermediate::der_of;
use crate::onboard::{self, pem_of, InstalledDoc, CERT_FILE, STEP_VALUES};
use crate::seal;
use crate::sops::engine::{self, KeySpec, Unlock};
use crate::sops::tree::{self, TreeOptions};
use crate::sops::{AgeRecipient, FileFormat, Identities};
use crate::staterepo::{self, RepoInfo, SOPS_CONFIG};

/// What `export` is given.
pub struct ExportInput<'a> {
    /// The customer's state repo.
    pub repo: &'a Path,
    /// The customer's age recipients: the key their cluster (Argo CD) will hold, then
    /// optionally a recovery key.
    pub customer_age: &'a [String],
    /// The customer's root certificate (PEM or DER).
    pub root: &'a [u8],
    /// The intermediate re-signed under it (PEM or DER).
    pub cert: &'a [u8],
    /// The MSP CRL revoking the MSP-issued intermediate (PEM or DER).
    pub msp_crl: &'a [u8],
    /// The bundle directory (must not exist).
    pub out: &'a Path,
    /// Keep the repo's git history (old ciphertext the MSP can decrypt).
    pub keep_history: bool,
}

/// What `export` wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The customer.
    pub info: RepoInfo,
    /// The bundle.
    pub out: PathBuf,
    /// The MSP-issued intermediate's serial (revoked in the MSP CRL).
    pub old_serial: String,
    /// The re-rooted intermediate's serial.
    pub new_serial: String,
    /// SHA-256 of the customer root's DER (now pinned in the bundle's repo).
    pub customer_root_sha256: Fingerprint,
    /// SHA-256 of the MANIFEST file.
    pub manifest_sha256: Fingerprint,
    /// The SOPS files re-encrypted, relative to the repo.
    pub resealed: Vec<String>,
    /// Whether the old git history went along.
    pub history_kept: bool,
}

/// Why `--keep-history` is a risk (printed by the CLI, written into HANDOVER.md).
pub const HISTORY_RISK: &str = "the repo's git history holds every earlier version of every SOPS file, encrypted to the MSP's operator key under data keys the MSP knew: anyone with the MSP's key and a clone can read the secrets as they were at hand-over (rotating every value and the intermediate key, as HANDOVER.md lists, is what makes that history harmless)";

/// Removes the staging directory unless the bundle was renamed into place.
struct Staging(Option<PathBuf>);

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// Builds the hand-over bundle of the state repo `input.repo` into `input.out`, decrypting with
/// the operator's `ids`.
pub fn export(
    input: &ExportInput<'_>,
    ids: &Identities,
    now: OffsetDateTime,
) -> Result<Exported, ChurnError> {
    let refused = |m: String| ChurnError::Refused(m);
    let repo = input.repo;
    let info = staterepo::open(repo)?;
    if info.shared {
        return Err(refused(format!(
            "{} is a Core cluster's shared sub-CA (its repo in the platform repo), not a customer's state repo: it stays with KiwiStack; hand over a Mesh or Fleet customer's repo; nothing was written",
            repo.display()
        )));
    }
    if info.tier == Tier::Core {
        return Err(ChurnError::CoreTier {
            repo: repo.to_path_buf(),
            slug: info.slug.to_string(),
            tier: info.tier.to_string(),
        });
    }
    if input.customer_age.is_empty() || input.customer_age.len() > 2 {
        return Err(refused(format!(
            "--customer-age was given {} times: give the key the customer's cluster will hold, and optionally their recovery key (one or two recipients)",
            input.customer_age.len()
        )));
    }
    let customer = input
        .customer_age
        .iter()
        .map(|r| AgeRecipient::parse(r).map_err(|_| refused(format!("--customer-age `{r}` is not an age recipient (age1...); pass the customer's public key"))))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(r) = input
        .customer_age
        .iter()
        .find(|r| info.recipients.contains(r))
    {
        return Err(refused(format!(
            "--customer-age {r} is one of the MSP's recipients of this repo; the customer's recipients must be keys only the customer holds"
        )));
    }
    if input.out.exists() {
        return Err(refused(format!(
            "{} exists already; --out must name a new directory",
            input.out.display()
        )));
    }

    // The chain: customer root -> re-rooted intermediate, for the key in the repo.
    let root_der = der_of(input.root);
    let cert_der = der_of(input.cert);
    let new_serial = chains_to(&cert_der, &root_der).map_err(|e| {
        refused(format!(
            "the re-rooted certificate does not chain to the customer root: {e}"
        ))
    })?;
    let key = onboard::load_key(repo, ids)?;
    let installed = onboard::read_installed(repo, ids)?;
    let parsed = x509::parse_cert(&cert_der).map_err(refused)?;
    let cert_key = x509::cert_key(&parsed).map_err(|e| refused(e.to_string()))?;
    if cert_key != *key.public_key() {
        return Err(refused(
            "the re-rooted certificate certifies a different public key from the intermediate key in the repo's secrets; re-root the certificate installed in this repo".into(),
        ));
    }
    let old_der = der_of(installed.certificate.as_bytes());
    let old = x509::parse_cert(&old_der)
        .map_err(|e| refused(format!("the installed certificate ({CERT_FILE}): {e}")))?;
    if old.tbs_certificate.subject.as_raw() != parsed.tbs_certificate.subject.as_raw() {
        return Err(refused(format!(
            "the re-rooted certificate's subject `{}` differs from the installed intermediate's `{}`; leaves it issued would stop chaining",
            parsed.tbs_certificate.subject, old.tbs_certificate.subject
        )));
    }
    if !keeps_constraints(
        NameConstraints::of_cert(&old),
        NameConstraints::of_cert(&parsed),
    ) {
        return Err(refused(format!(
            "the re-rooted certificate's name constraints are not the installed intermediate's ({CERT_FILE}) plus, at most, DNS names of the customer's own (as `kiwi-signer reroot --permit-dns` adds): re-root the installed certificate with `kiwi-signer reroot`"
        )));
    }
    let (nb, na) = (
        parsed.tbs_certificate.validity.not_before.to_datetime(),
        parsed.tbs_certificate.validity.not_after.to_datetime(),
    );
    if now < nb - time::Duration::minutes(5) || now > na {
        return Err(refused(format!(
            "the re-rooted certificate is not valid now (valid {nb} to {na})"
        )));
    }
    let msp_root_der = der_of(installed.root.as_bytes());
    if Fingerprint::of(&msp_root_der) != info.root_sha256 {
        return Err(refused(format!(
            "{CERT_FILE} holds a root other than the MSP root this repo pins"
        )));
    }
    let customer_root_sha256 = Fingerprint::of(&root_der);
    if customer_root_sha256 == info.root_sha256 {
        return Err(refused(
            "--root is the MSP root; pass the customer's own root".into(),
        ));
    }
    crl_lists(input.msp_crl, &msp_root_der, &installed.serial, now).map_err(refused)?;

    // Staging, beside --out.
    let parent = match input.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = input
        .out
        .file_name()
        .ok_or_else(|| refused(format!("--out {} names no directory", input.out.display())))?;
    let staging_dir = parent.join(format!(
        ".{}.kiwi-staging-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::create_dir(&staging_dir).map_err(io(&staging_dir))?;
    let mut staging = Staging(Some(staging_dir.clone()));
    let srepo = staging_dir.join(REPO);
    copy_tree(repo, &srepo, input.keep_history)?;

    // Every SOPS file: a new data key, the customer's recipients only.
    let spec = KeySpec::single(customer.clone());
    let opts = TreeOptions {
        plaintext_fails: true,
        ..TreeOptions::default()
    };
    let summary = tree::run_tree(std::slice::from_ref(&srepo), &opts, |p, b| {
        tree::reseal_to(p, b, ids, &spec)
    })?;
    let rel = |p: &Path| {
        p.strip_prefix(&srepo)
            .unwrap_or(p)
            .to_string_lossy()
            .to_string()
    };
    let failed: Vec<String> = summary
        .files
        .iter()
        .filter_map(|f| f.error.as_ref().map(|e| format!("{}: {e}", rel(&f.path))))
        .collect();
    if !failed.is_empty() {
        return Err(refused(format!(
            "{} file(s) could not be re-encrypted for the customer: {}",
            failed.len(),
            failed.join("; ")
        )));
    }
    let mut resealed = Vec::new();
    for f in &summary.files {
        // The MSP must read nothing in the bundle: the operator key opens no file, and no file
        // names a recipient other than the customer's.
        let bytes = std::fs::read(&f.path).map_err(io(&f.path))?;
        let fmt = FileFormat::from_path(&f.path);
        if engine::open(&bytes, fmt, Unlock::Identities(ids)).is_ok() {
            return Err(refused(format!(
                "{} still opens with the operator's key after re-encryption; please report this as a bug",
                rel(&f.path)
            )));
        }
        let shape = engine::inspect(&bytes, fmt)?;
        if let Some(r) = shape
            .meta
            .recipients()
            .into_iter()
            .find(|r| !input.customer_age.contains(r))
        {
            return Err(refused(format!(
                "{} is encrypted to {r} after re-encryption; please report this as a bug",
                rel(&f.path)
            )));
        }
        resealed.push(rel(&f.path));
    }

    // The repo now belongs to the customer: their recipients, their root.
    fsutil::replace_atomically(
        &srepo.join(SOPS_CONFIG),
        staterepo::sops_config(input.customer_age).as_bytes(),
        Mode::Public,
    )?;
    let new_info = RepoInfo {
        root_sha256: customer_root_sha256,
        recipients: input.customer_age.to_vec(),
        ..info.clone()
    };
    staterepo::write_marker(&srepo, &new_info)?;

    // The re-rooted chain, both roots trusted during the transition.
    let cert_pem = pem_of("CERTIFICATE", &cert_der);
    let root_pem = pem_of("CERTIFICATE", &root_der);
    let msp_root_pem = pem_of("CERTIFICATE", &msp_root_der);
    let written_by = "kiwictl churn export";
    let transition_end = old
        .tbs_certificate
        .validity
        .not_after
        .to_datetime()
        .date()
        .to_string();
    let cert_doc = InstalledDoc {
        slug: info.slug.to_string(),
        serial: new_serial.clone(),
        not_after: na
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        certificate: cert_pem.clone(),
        root: root_pem.clone(),
        previous_serial: Some(installed.serial.clone()),
        previous_root: Some(msp_root_pem.clone()),
    }
    .to_yaml(written_by);
    let cert_file = srepo.join(CERT_FILE);
    let sealed = seal::seal(&srepo, &new_info, &cert_file, cert_doc.as_bytes())?;
    fsutil::replace_atomically(&cert_file, &sealed, Mode::Public)?;
    let note = format!(
        "# Hand-over transition: root_ca holds the customer's root (first) and the MSP root\n\
         # (second) until every relying party trusts the customer's root, and at the latest\n\
         # until {transition_end} (the MSP-issued intermediate's notAfter); then remove the second\n\
         # certificate (HANDOVER.md, step 7).\n"
    );
    let values = onboard::values_doc(
        &info.slug,
        &format!("{root_pem}{msp_root_pem}"),
        &cert_pem,
        &customer_root_sha256,
        written_by,
        &note,
    )
    .map_err(onboard::OnboardError::from)?;
    fsutil::replace_atomically(&srepo.join(STEP_VALUES), values.as_bytes(), Mode::Public)?;

    // The bundle's own files, then the repo's fresh (or continued) history, then the MANIFEST.
    for (name, bytes) in [
        (CUSTOMER_ROOT, root_pem.as_bytes()),
        (INTERMEDIATE, cert_pem.as_bytes()),
        (MSP_ROOT, msp_root_pem.as_bytes()),
        (MSP_CRL, input.msp_crl),
    ] {
        fsutil::write_new(&staging_dir.join(name), bytes, Mode::Public)?;
    }
    let facts = Facts {
        info: &info,
        old_serial: &installed.serial,
        new_serial: &new_serial,
        customer_root: &customer_root_sha256,
        msp_root: &info.root_sha256,
        transition_end: &transition_end,
        intermediate_end: &na.date().to_string(),
        resealed: &resealed,
        keep_history: input.keep_history,
        date: &now.date().to_string(),
    };
    fsutil::write_new(
        &staging_dir.join(HANDOVER),
        handover_text(&facts).as_bytes(),
        Mode::Public,
    )?;
    commit(&srepo, input.keep_history, &info)?;
    let manifest_text = manifest(&staging_dir)?;
    fsutil::write_new(
        &staging_dir.join(MANIFEST),
        manifest_text.as_bytes(),
        Mode::Public,
    )?;
    sync_tree(&staging_dir)?;
    if input.out.exists() {
        return Err(refused(format!(
            "{} appeared while the bundle was built; --out must name a new directory",
            input.out.display()
        )));
    }
    std::fs::rename(&staging_dir, input.out).map_err(io(input.out))?;
    staging.0 = None;
    std::fs::File::open(&parent)
        .and_then(|d| d.sync_all())
        .map_err(io(&parent))?;
    Ok(Exported {
        info,
        out: input.out.to_path_buf(),
        old_serial: installed.serial,
        new_serial,
        customer_root_sha256,
        manifest_sha256: Fingerprint::of(manifest_text.as_bytes()),
        resealed,
        history_kept: input.keep_history,
    })
}

/// Copies the state repo (without `.git` unless `with_git`). Symbolic links are refused, and
/// so is a `.sops.yaml` other than `secrets/.sops.yaml` (its rules would still name the MSP).
fn copy_tree(src: &Path, dst: &Path, with_git: bool) -> Result<(), ChurnError> {
    fn walk(root: &Path, s: &Path, d: &Path, with_git: bool) -> Result<(), ChurnError> {
        std::fs::create_dir(d).map_err(io(d))?;
        for e in std::fs::read_dir(s).map_err(io(s))? {
            let e = e.map_err(io(s))?;
            let (from, to) = (e.path(), d.join(e.file_name()));
            let ft = e.file_type().map_err(io(&from))?;
            let rel = from.strip_prefix(root).unwrap_or(&from);
            if rel == Path::new(".git") && !with_git {
                continue;
            }
            if ft.is_symlink() {
                return Err(ChurnError::Refused(format!(
                    "{} is a symbolic link; replace it with the file it points to before the hand-over",
                    from.display()
                )));
            }
            if ft.is_dir() {
                walk(root, &from, &to, with_git)?;
            } else {
                if e.file_name() == ".sops.yaml"
                    && rel != Path::new(SOPS_CONFIG)
                    && !rel.starts_with(".git")
                {
                    return Err(ChurnError::Refused(format!(
                        "{} is a SOPS config besides {SOPS_CONFIG}; the hand-over rewrites only the config `kiwictl repo init` writes: merge its rules into {SOPS_CONFIG} first",
                        from.display()
                    )));
                }
                std::fs::copy(&from, &to).map_err(io(&from))?;
            }
        }
        Ok(())
    }
    walk(src, src, dst, with_git)
}

/// Flushes every file and directory under `dir` to disk.
fn sync_tree(dir: &Path) -> Result<(), ChurnError> {
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let p = e.map_err(io(dir))?.path();
        if p.is_dir() {
            sync_tree(&p)?;
        } else {
            std::fs::File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(io(&p))?;
        }
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Commits the bundle's repo: a new repository with one commit, or one more commit on the
/// copied history. Runs git with the repo's own hooks off.
fn commit(repo: &Path, keep_history: bool, info: &RepoInfo) -> Result<(), ChurnError> {
    let git = |args: &[&str]| -> Result<(), ChurnError> {
        let out = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args([
                "-c",
                "user.name=kiwictl churn export",
                "-c",
                "user.email=kiwictl@localhost",
                "-c",
                "commit.gpgsign=false",
                "-c",
                "core.hooksPath=/dev/null",
            ])
            .args(args)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .output()
            .map_err(|e| {
                ChurnError::Refused(format!("git {}: {e}; is git installed?", args.join(" ")))
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ChurnError::Refused(format!(
                "git {} in the bundle's repo failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    };
    if !(keep_history && repo.join(".git").exists()) {
        git(&["init", "-q"])?;
    }
    git(&["add", "-A"])?;
    git(&[
        "commit",
        "-q",
        "--no-verify",
        "-m",
        &format!(
            "Hand-over of {} from KiwiStack: secrets re-encrypted to the customer's keys, intermediate re-rooted",
            info.slug
        ),
    ])
}

/// Whether `new` (the re-rooted certificate's name constraints) keeps `old`'s (the installed
/// intermediate's): the same excluded subtrees, every permitted one, and beyond them only DNS
/// names (`reroot --permit-dns`). A re-root by `kiwi-signer reroot` always does; one made by
/// other means may not, and its leaves would then be bound by other names than the ones the
/// customer's relying parties were told.
fn keeps_constraints(
    old: Option<(NameConstraints, Vec<String>)>,
    new: Option<(NameConstraints, Vec<String>)>,
) -> bool {
    match (old, new) {
        (Some((o, o_other)), Some((n, n_other))) => {
            o_other == n_other
                && o.excluded == n.excluded
                && o.permitted.iter().all(|s| n.permitted.contains(s))
                && n.permitted
                    .iter()
                    .all(|s| o.permitted.contains(s) || matches!(s, Subtree::Dns(_)))
        }
        _ => false,
    }
}

/// What HANDOVER.md tells.
struct Facts<'a> {
    info: &'a RepoInfo,
    old_serial: &'a str,
    new_serial: &'a str,
    customer_root: &'a Fingerprint,
    msp_root: &'a Fingerprint,
    transition_end: &'a str,
    /// The re-rooted intermediate's notAfter (date).
    intermediate_end: &'a str,
    resealed: &'a [String],
    keep_history: bool,
    date: &'a str,
}

fn handover_text(f: &Facts<'_>) -> String {
    let files: String = f
        .resealed
        .iter()
        .map(|r| format!("- `repo/{r}`\n"))
        .collect();
    let history = if f.keep_history {
        format!("The repo keeps its git history (`--keep-history`). Beware: {HISTORY_RISK}.")
    } else {
        "The repo starts a fresh git history of one commit: older versions of the secrets (encrypted to the MSP's key) are not in it.".to_string()
    };
    format!(
        "# Hand-over of `{slug}` ({tier} tier) from KiwiStack, {date}\n\n\
## What you received\n\n\
- `repo/`: your state repo. Every SOPS file in it is encrypted again, under a new data key, to your age recipients only; `repo/secrets/.sops.yaml` and `repo/.kiwi/repo.yaml` name your recipients and pin your root. {history}\n\
- `intermediate.pem`: your intermediate CA (serial {new}), re-signed under your root with the same key, subject and key identifier as before: every certificate it already issued keeps chaining, now to your root. It is installed in `repo/secrets/intermediate.crt.sops.yaml` and `repo/values/smallstep.yaml`.\n\
- `customer-root.pem`: your root (SHA-256 {croot}).\n\
- `msp-root.pem`: KiwiStack's root (SHA-256 {mroot}), trusted beside yours during the transition.\n\
- `msp.crl`: KiwiStack's CRL, revoking the KiwiStack-issued intermediate (serial {old}).\n\
- `MANIFEST`: the SHA-256 of every file above (`repo/.git/` aside).\n\n\
## The transition\n\n\
`repo/values/smallstep.yaml` lists two roots in `root_ca`: yours first, KiwiStack's second. The transition starts when you deploy this repo and ends when every relying party (every workload trust store, every client that checks your services) has your root, and at the latest on {end}, the notAfter of the KiwiStack-issued intermediate (nothing chains to KiwiStack's root after that). With both roots in `root_ca`, the trust bundle step-ca hands out (`step ca roots`, its `/roots` endpoint) brings your root to the clients that still know only KiwiStack's: that is how most of them learn it. A later `kiwictl intermediate install --replace` keeps both roots until you end the transition. `root_ca` is then a bundle of two certificates: step-ca reads it as such from release 0.23 on (smallstep/certificates#1169), as the step-certificates chart's step-ca does; an older step-ca, or a tool that reads `root_ca.crt` as a single certificate, stops at the second one (\"more than one PEM encoded block\"): upgrade it, or give it each root as its own file for the transition.\n\n\
## Steps, in this order\n\n\
1. Check the bundle: `kiwictl churn verify BUNDLE --identity YOUR_AGE_KEY` (also `sha256sum -c MANIFEST` in the bundle).\n\
2. Give your cluster your age identity: replace the SOPS age key Argo CD holds (KiwiStack's operator key) with the identity of your first recipient. KiwiStack's key opens nothing in `repo/`.\n\
3. Push `repo/` to a git remote you own and point Argo CD at it; it keeps reconciling, and step-ca serves the re-rooted intermediate.\n\
4. Distribute `customer-root.pem` to every relying party's trust store.\n\
5. Rotate every secret KiwiStack could read (listed below).\n\
6. Replace the intermediate and its key. KiwiStack could read its key, and `intermediate.pem` expires on {int_end} (a re-root keeps the KiwiStack-issued certificate's notAfter, within your root's validity): every leaf it issued stops verifying then. Your root issues the replacement, for a new key, with the same subject and name constraints: (a) `kiwictl intermediate renew --repo repo --out new.csr --new-key` (the new key goes into the repo, encrypted to your recipients; run the `kiwictl` commands where kiwi-pki's `policies/` folder is, or add `--policies DIR`); (b) `kiwi-signer renew --ca YOUR_ROOT_CA --serial {new} --csr new.csr --out new.pem` (on the machine that holds your root: `{new}` is the re-rooted certificate's serial); (c) `kiwictl intermediate install --repo repo --cert new.pem --root customer-root.pem --replace` (it installs the new certificate and key and prints the serial it replaced); deploy the repo; (d) `kiwi-signer revoke --ca YOUR_ROOT_CA --serial {new} --reason superseded --out crl.pem`, and publish `crl.pem` where your relying parties fetch your CRL. Leaves issued with the old key stop verifying for a relying party that checks your CRL: reissue them from the new intermediate (step-ca does on renewal) before you publish it.\n\
7. End the transition: remove the second certificate (KiwiStack's root) from `root_ca` in `repo/values/smallstep.yaml`.\n\n\
## What KiwiStack could read, and you should rotate\n\n\
KiwiStack's operator key decrypted every file below before the hand-over, so KiwiStack could read every value in each of them: rotate them all. That includes the intermediate CA's private key (`repo/secrets/intermediate.key.sops.yaml`, step 6) and step-ca's key password (`repo/secrets/smallstep.sops.yaml`).\n\n\
{files}",
        slug = f.info.slug,
        tier = f.info.tier,
        date = f.date,
        new = f.new_serial,
        old = f.old_serial,
        croot = f.customer_root.hex(),
        mroot = f.msp_root.hex(),
        end = f.transition_end,
        int_end = f.intermediate_end,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nc(permitted: &[Subtree]) -> Option<(NameConstraints, Vec<String>)> {
        Some((
            NameConstraints {
                permitted: permitted.to_vec(),
                excluded: vec![Subtree::Ip("0.0.0.0".parse().expect("ip"), 0)],
            },
            Vec::new(),
        ))
    }

    #[test]
    fn a_reroot_keeps_the_constraints_and_may_add_dns_names_only() {
        let dns = |n: &str| Subtree::Dns(n.into());
        let old = [
            dns("acme.od.kiwistack.io"),
            Subtree::Uri(".acme.od.kiwistack.io".into()),
        ];
        assert!(keeps_constraints(nc(&old), nc(&old)));
        let plus_dns = [old[0].clone(), old[1].clone(), dns("acme.example")];
        assert!(keeps_constraints(nc(&old), nc(&plus_dns)));
        let plus_uri = [
            old[0].clone(),
            old[1].clone(),
            Subtree::Uri("evil.example".into()),
        ];
        assert!(
            !keeps_constraints(nc(&old), nc(&plus_uri)),
            "a URI subtree added"
        );
        assert!(
            !keeps_constraints(nc(&old), nc(&old[..1])),
            "a subtree dropped"
        );
        let mut no_exclusion = nc(&old);
        if let Some((n, _)) = no_exclusion.as_mut() {
            n.excluded.clear();
        }
        assert!(
            !keeps_constraints(nc(&old), no_exclusion),
            "IP exclusion dropped"
        );
        assert!(!keeps_constraints(nc(&old), None), "no constraints at all");
    }
}
