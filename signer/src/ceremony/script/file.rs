//! Ceremony files (`ceremony/*.yaml`): one strict YAML file per ceremony, nothing implicit.
//!
//! The file is hostile input: it deserializes with `deny_unknown_fields` into the raw structs
//! below (an unknown key is an error naming its path, `steps[2].sign.csr`), then converts into
//! [`Script`], whose every field is checked: names present, paths relative to the file (never
//! absolute), slugs, tiers, serials, reasons and the head parsed, each kind
//! carrying exactly the fields it uses. Only a [`Script`] reaches the pipeline.
//!
//! A new step is one field of `RawStep`, one variant of [`ScriptStep`], and one arm in each
//! of its matches (`Fields::step`, [`ScriptStep::operation`]).

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::backend::pkcs11_config::Pkcs11Config;
use crate::backend::soft::SoftConfig;
use crate::backend::yubikey_config::{parse_slot, YubikeyConfig};
use crate::backend::{BackendConfig, BackendKind, BackendSpec};
use crate::ceremony::crl::Crl;
use crate::ceremony::handover::Handover;
use crate::ceremony::head::ExpectedHead;
use crate::ceremony::renew::Renew;
use crate::ceremony::reroot::Reroot;
use crate::ceremony::revoke::Revoke;
use crate::ceremony::sign::SignRequest;
use crate::ceremony::Operation;
use crate::error::{Error, Result};
use crate::ledger::Reason;
use crate::policy;
use crate::slug::{Slug, Tier};
use crate::words::Fingerprint;
use crate::x509::Serial;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    kind: String,
    operator: String,
    witnesses: Vec<String>,
    device: RawDevice,
    #[serde(default)]
    expect_head: Option<String>,
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    steps: Option<Vec<RawStep>>,
    #[serde(default)]
    crl: Option<RawCrl>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    backend: String,
    #[serde(default)]
    serial: Option<u32>,
    #[serde(default)]
    slot: Option<String>,
    #[serde(default)]
    import_to: Option<Vec<u32>>,
    #[serde(default)]
    module: Option<PathBuf>,
    #[serde(default)]
    token_label: Option<String>,
    #[serde(default)]
    key_label: Option<String>,
}

/// One step of a signing ceremony, as written: a map with exactly one key naming the step.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default)]
    sign: Option<RawSign>,
    #[serde(default)]
    revoke: Option<RawRevoke>,
    #[serde(default)]
    reroot: Option<RawReroot>,
    #[serde(default)]
    handover: Option<RawHandover>,
    #[serde(default)]
    renew: Option<RawRenew>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSign {
    csr: String,
    slug: String,
    tier: String,
    #[serde(default)]
    days: Option<u32>,
    #[serde(default)]
    shared: bool,
    out: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRevoke {
    serial: String,
    reason: String,
    crl_out: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReroot {
    cert: String,
    msp_root: String,
    msp_crl: String,
    #[serde(default)]
    permit_dns: Vec<String>,
    out: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHandover {
    serial: String,
    new_root: String,
    crl_out: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRenew {
    serial: String,
    csr: String,
    #[serde(default)]
    days: Option<u32>,
    out: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCrl {
    out: String,
}

/// The ceremony types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptKind {
    /// A new root CA, its key generated on the device.
    RootInit,
    /// Sign, revoke, reroot, handover and renew steps, then a CRL.
    Signing,
    /// The CRL again (the scheduled ceremony).
    CrlReissue,
    /// A new root CA whose key is generated in memory and imported into two or more YubiKeys.
    BackupImport,
}

impl ScriptKind {
    const ALL: [(ScriptKind, &'static str); 4] = [
        (ScriptKind::RootInit, "root-init"),
        (ScriptKind::Signing, "signing"),
        (ScriptKind::CrlReissue, "crl-reissue"),
        (ScriptKind::BackupImport, "backup-import"),
    ];

    /// The name the file uses.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("?", |(_, n)| n)
    }
}

/// The device the ceremony uses, as the file names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The backend settings (for a new CA, where the key goes; otherwise what `ca.toml` must say).
    pub config: BackendConfig,
    /// Whether the key is generated in memory and imported (`backup-import`).
    pub import: bool,
}

impl Device {
    /// The device serial(s) or token, for the transcript.
    pub fn serial(&self) -> String {
        match &self.config {
            BackendConfig::Soft(_) => "soft (software key file)".into(),
            BackendConfig::Yubikey(y) => std::iter::once(y.serial)
                .chain(y.backups.iter().copied())
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            BackendConfig::Pkcs11(p) => format!("token {} key {}", p.token_label, p.key_label),
        }
    }

    /// The backend spec `init` creates the key with.
    pub fn spec(&self) -> BackendSpec {
        if self.import {
            BackendSpec::import(self.config.clone())
        } else {
            BackendSpec::generate(self.config.clone())
        }
    }

    /// Refuses a CA whose `ca.toml` names another device than the file.
    pub fn check(&self, file: &str, ca: &BackendConfig) -> Result<()> {
        let same = match (&self.config, ca) {
            (BackendConfig::Soft(_), BackendConfig::Soft(_)) => true,
            (BackendConfig::Yubikey(a), BackendConfig::Yubikey(b)) => {
                a.serial == b.serial || b.backups.contains(&a.serial)
            }
            (BackendConfig::Pkcs11(a), BackendConfig::Pkcs11(b)) => {
                a.token_label == b.token_label && a.key_label == b.key_label
            }
            _ => false,
        };
        if same {
            return Ok(());
        }
        Err(err(
            file,
            "device",
            format!(
                "the file names {} ({}), but the CA's ca.toml names {} ({}); bring the right \
                 device or fix the ceremony file",
                self.config.kind().as_str(),
                self.serial(),
                ca.kind().as_str(),
                Device {
                    config: ca.clone(),
                    import: false
                }
                .serial()
            ),
        ))
    }
}

/// A validated ceremony file.
#[derive(Debug, Clone)]
pub struct Script {
    /// The file, as given.
    pub path: PathBuf,
    /// The directory every path in the file is relative to (absolute).
    pub base: PathBuf,
    /// SHA-256 of the file's bytes.
    pub sha256: Fingerprint,
    /// Which ceremony.
    pub kind: ScriptKind,
    /// Who operates.
    pub operator: String,
    /// Who witnesses (one or more).
    pub witnesses: Vec<String>,
    /// The device.
    pub device: Device,
    /// The ledger head the witness recorded after the previous ceremony.
    pub expect_head: Option<ExpectedHead>,
    /// What the ceremony does.
    pub body: Body,
}

/// What a ceremony does, by kind.
#[derive(Debug, Clone)]
pub enum Body {
    /// `root-init` and `backup-import`: a new CA under this root policy (intermediate
    /// policies beside it).
    Init {
        /// The root policy.
        policy: Input,
        /// A customer-owned root's organization (required exactly with a customer-root
        /// policy; `init::precheck` checks it against the policy).
        org: Option<String>,
    },
    /// `signing`: steps in order, then a CRL.
    Signing {
        /// The steps.
        steps: Vec<ScriptStep>,
        /// Where the closing CRL goes.
        crl: Output,
    },
    /// `crl-reissue`: one CRL.
    CrlReissue {
        /// Where it goes.
        crl: Output,
    },
}

/// A file the ceremony reads: as written in the ceremony file, and resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// As written (relative to the ceremony file).
    pub rel: String,
    /// Resolved against the file's directory.
    pub path: PathBuf,
}

/// A file the ceremony writes (never overwritten).
pub type Output = Input;

/// One step of a signing ceremony.
#[derive(Debug, Clone)]
pub enum ScriptStep {
    /// Issue an intermediate for a CSR.
    Sign {
        /// The CSR.
        csr: Input,
        /// Customer slug.
        slug: Slug,
        /// Customer tier.
        tier: Tier,
        /// Validity in days (None: the policy's default).
        days: Option<u32>,
        /// A Core cluster's shared sub-CA (`slug` names the cluster; `sign --shared`).
        shared: bool,
        /// The certificate.
        out: Output,
    },
    /// Revoke an intermediate (a CRL listing it is issued).
    Revoke {
        /// The intermediate's serial.
        serial: Serial,
        /// Why.
        reason: Reason,
        /// The CRL issued with it.
        crl_out: Output,
    },
    /// Re-sign an MSP-issued intermediate under this (customer-owned) root.
    Reroot {
        /// The MSP-issued intermediate.
        cert: Input,
        /// The MSP root that issued it.
        msp_root: Input,
        /// The MSP root's current CRL.
        msp_crl: Input,
        /// DNS names of the customer's own added to the permitted subtrees.
        permit_dns: Vec<String>,
        /// The re-rooted certificate.
        out: Output,
    },
    /// Hand an intermediate over to the customer's root: revoked as affiliationChanged, the
    /// new root recorded, a CRL issued.
    Handover {
        /// The intermediate's serial.
        serial: Serial,
        /// The customer's new root certificate.
        new_root: Input,
        /// The CRL issued with it.
        crl_out: Output,
    },
    /// Issue, under this (customer-owned) root, a replacement for an intermediate it
    /// re-rooted or renewed, certifying a new key.
    Renew {
        /// The serial of the certificate replaced.
        serial: Serial,
        /// The CSR for the new key.
        csr: Input,
        /// Validity in days (None: as long as the replaced certificate's).
        days: Option<u32>,
        /// The new certificate.
        out: Output,
    },
}

impl ScriptStep {
    /// The step's name, as the file writes it.
    pub fn name(&self) -> &'static str {
        match self {
            ScriptStep::Sign { .. } => "sign",
            ScriptStep::Revoke { .. } => "revoke",
            ScriptStep::Reroot { .. } => "reroot",
            ScriptStep::Handover { .. } => "handover",
            ScriptStep::Renew { .. } => "renew",
        }
    }

    /// The files it reads.
    pub fn inputs(&self) -> Vec<&Input> {
        match self {
            ScriptStep::Sign { csr, .. } | ScriptStep::Renew { csr, .. } => vec![csr],
            ScriptStep::Revoke { .. } => vec![],
            ScriptStep::Reroot {
                cert,
                msp_root,
                msp_crl,
                ..
            } => vec![cert, msp_root, msp_crl],
            ScriptStep::Handover { new_root, .. } => vec![new_root],
        }
    }

    /// The files it writes.
    pub fn outputs(&self) -> Vec<&Output> {
        match self {
            ScriptStep::Sign { out, .. }
            | ScriptStep::Reroot { out, .. }
            | ScriptStep::Renew { out, .. } => vec![out],
            ScriptStep::Revoke { crl_out, .. } | ScriptStep::Handover { crl_out, .. } => {
                vec![crl_out]
            }
        }
    }

    /// Whether its output is a certificate (otherwise a CRL).
    pub fn issues_certificate(&self) -> bool {
        matches!(
            self,
            ScriptStep::Sign { .. } | ScriptStep::Reroot { .. } | ScriptStep::Renew { .. }
        )
    }

    /// The engine operation that performs it (its input files are read now).
    pub fn operation(&self) -> Result<Box<dyn Operation>> {
        Ok(match self {
            ScriptStep::Sign {
                csr,
                slug,
                tier,
                days,
                shared,
                out,
            } => Box::new(SignRequest {
                csr: std::fs::read(&csr.path).map_err(|e| {
                    Error::io(&csr.path, e, "check the csr path in the ceremony file")
                })?,
                csr_origin: csr.path.display().to_string(),
                slug: slug.clone(),
                tier: *tier,
                days: *days,
                out: out.path.clone(),
                shared: *shared,
            }),
            ScriptStep::Revoke {
                serial,
                reason,
                crl_out,
            } => Box::new(Revoke {
                serial: serial.clone(),
                reason: *reason,
                out: crl_out.path.clone(),
            }),
            ScriptStep::Reroot {
                cert,
                msp_root,
                msp_crl,
                permit_dns,
                out,
            } => Box::new(Reroot::read(
                &cert.path,
                &msp_root.path,
                &msp_crl.path,
                permit_dns.clone(),
                out.path.clone(),
            )?),
            ScriptStep::Handover {
                serial,
                new_root,
                crl_out,
            } => Box::new(Handover::read(
                serial.clone(),
                &new_root.path,
                crl_out.path.clone(),
            )?),
            ScriptStep::Renew {
                serial,
                csr,
                days,
                out,
            } => Box::new(Renew {
                serial: serial.clone(),
                csr: std::fs::read(&csr.path).map_err(|e| {
                    Error::io(&csr.path, e, "check the csr path in the ceremony file")
                })?,
                csr_origin: csr.path.display().to_string(),
                days: *days,
                out: out.path.clone(),
            }),
        })
    }
}

/// A ceremony's operations in order, each with its name (the closing CRL is `crl`).
pub type Operations = Vec<(&'static str, Box<dyn Operation>)>;

impl Script {
    /// Reads and validates the ceremony file at `path`.
    pub fn load(path: &Path) -> Result<Script> {
        let bytes = std::fs::read(path).map_err(|e| {
            Error::io(
                path,
                e,
                "pass the ceremony file, e.g. ceremony/signing.yaml",
            )
        })?;
        let abs = std::path::absolute(path).map_err(|e| Error::io(path, e, ""))?;
        let base = abs.parent().map(Path::to_path_buf).unwrap_or_default();
        Script::parse(path, &base, &bytes)
    }

    /// Validates `bytes` as the ceremony file `path` whose relative paths start at `base`.
    pub fn parse(path: &Path, base: &Path, bytes: &[u8]) -> Result<Script> {
        let file = path.display().to_string();
        let text =
            std::str::from_utf8(bytes).map_err(|_| err(&file, "(file)", "not UTF-8 text"))?;
        let raw: RawFile = crate::policy::parse_strict(&file, text).map_err(|e| Error::Script {
            file: e.file,
            field: e.field,
            message: e.message,
        })?;
        let f = Fields { file: &file, base };
        let kind = ScriptKind::ALL
            .iter()
            .find(|(_, n)| *n == raw.kind)
            .map(|(k, _)| *k)
            .ok_or_else(|| {
                let names: Vec<&str> = ScriptKind::ALL.iter().map(|(_, n)| *n).collect();
                err(
                    &file,
                    "kind",
                    format!(
                        "unknown kind `{}`; use one of {}",
                        raw.kind,
                        names.join(", ")
                    ),
                )
            })?;
        let operator = f.name("operator", &raw.operator)?;
        if raw.witnesses.is_empty() {
            return Err(err(&file, "witnesses", "name at least one witness"));
        }
        let witnesses = raw
            .witnesses
            .iter()
            .enumerate()
            .map(|(i, w)| f.name(&format!("witnesses[{i}]"), w))
            .collect::<Result<Vec<_>>>()?;
        if witnesses.contains(&operator) {
            return Err(err(
                &file,
                "witnesses",
                "the operator cannot witness their own ceremony",
            ));
        }
        let device = f.device(kind, raw.device)?;
        let expect_head = raw
            .expect_head
            .as_deref()
            .map(|h| ExpectedHead::parse(h).map_err(|e| err(&file, "expect_head", e.to_string())))
            .transpose()?;
        let init = matches!(kind, ScriptKind::RootInit | ScriptKind::BackupImport);
        f.only(init, "policy", raw.policy.is_some())?;
        f.only(init, "org", raw.org.is_some())?;
        f.only(kind == ScriptKind::Signing, "steps", raw.steps.is_some())?;
        f.only(!init, "crl", raw.crl.is_some())?;
        if init && expect_head.is_some() {
            return Err(err(
                &file,
                "expect_head",
                "a new CA has no ledger yet; remove expect_head",
            ));
        }
        let crl = |raw: Option<RawCrl>| -> Result<Output> {
            let c = raw.ok_or_else(|| {
                err(
                    &file,
                    "crl",
                    format!("a {} ceremony needs crl.out", kind.name()),
                )
            })?;
            f.path("crl.out", &c.out)
        };
        let body = match kind {
            ScriptKind::RootInit | ScriptKind::BackupImport => Body::Init {
                policy: f.path(
                    "policy",
                    raw.policy.as_deref().ok_or_else(|| {
                        err(
                            &file,
                            "policy",
                            "name the root policy, e.g. ../policies/root.yaml",
                        )
                    })?,
                )?,
                org: raw.org,
            },
            ScriptKind::Signing => {
                let raw_steps = raw.steps.unwrap_or_default();
                let steps = raw_steps
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| f.step(i, s))
                    .collect::<Result<Vec<_>>>()?;
                Body::Signing {
                    steps,
                    crl: crl(raw.crl)?,
                }
            }
            ScriptKind::CrlReissue => Body::CrlReissue { crl: crl(raw.crl)? },
        };
        let script = Script {
            path: path.to_path_buf(),
            base: base.to_path_buf(),
            sha256: Fingerprint::of(bytes),
            kind,
            operator,
            witnesses,
            device,
            expect_head,
            body,
        };
        script.check_distinct_outputs()?;
        Ok(script)
    }

    /// Every file the ceremony reads, in order.
    pub fn inputs(&self) -> Vec<&Input> {
        match &self.body {
            Body::Init { policy, .. } => vec![policy],
            Body::Signing { steps, .. } => steps.iter().flat_map(ScriptStep::inputs).collect(),
            Body::CrlReissue { .. } => vec![],
        }
    }

    /// Every file the ceremony writes outside the CA directory, in order.
    pub fn outputs(&self) -> Vec<&Output> {
        match &self.body {
            Body::Init { .. } => vec![],
            Body::Signing { steps, crl } => steps
                .iter()
                .flat_map(ScriptStep::outputs)
                .chain(std::iter::once(crl))
                .collect(),
            Body::CrlReissue { crl } => vec![crl],
        }
    }

    /// The engine operations of a signing or CRL ceremony, in order (empty for a new CA).
    pub fn operations(&self) -> Result<Operations> {
        let crl = |out: &Output| -> (&'static str, Box<dyn Operation>) {
            (
                "crl",
                Box::new(Crl {
                    out: out.path.clone(),
                }),
            )
        };
        Ok(match &self.body {
            Body::Init { .. } => Vec::new(),
            Body::Signing { steps, crl: out } => {
                let mut ops = steps
                    .iter()
                    .map(|s| Ok((s.name(), s.operation()?)))
                    .collect::<Result<Operations>>()?;
                ops.push(crl(out));
                ops
            }
            Body::CrlReissue { crl: out } => vec![crl(out)],
        })
    }

    fn check_distinct_outputs(&self) -> Result<()> {
        let outs = self.outputs();
        for (i, o) in outs.iter().enumerate() {
            if outs[..i].iter().any(|p| p.path == o.path) {
                return Err(err(
                    &self.path.display().to_string(),
                    "(file)",
                    format!("two steps write {}; give each output its own path", o.rel),
                ));
            }
        }
        Ok(())
    }
}

fn err(file: &str, field: &str, message: impl Into<String>) -> Error {
    Error::Script {
        file: file.to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

/// The checks on single fields, with the file they are in.
struct Fields<'a> {
    file: &'a str,
    base: &'a Path,
}

impl Fields<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> Error {
        err(self.file, field, message)
    }

    fn name(&self, field: &str, value: &str) -> Result<String> {
        let v = value.trim();
        if v.is_empty() || v.chars().any(char::is_control) {
            return Err(self.err(field, "must be a person's name (not empty, one line)"));
        }
        Ok(v.to_string())
    }

    /// A relative path, resolved against the ceremony file's directory (`..` is allowed: the
    /// examples name `../../policies/root.yaml`); absolute paths are refused.
    fn path(&self, field: &str, rel: &str) -> Result<Input> {
        let p = Path::new(rel);
        let plain = !rel.is_empty()
            && p.components().all(|c| {
                matches!(
                    c,
                    Component::Normal(_) | Component::CurDir | Component::ParentDir
                )
            });
        if !plain {
            return Err(self.err(
                field,
                format!("`{rel}` must be a path relative to the ceremony file's directory"),
            ));
        }
        Ok(Input {
            rel: rel.to_string(),
            path: self.base.join(p),
        })
    }

    /// `field` may be present only when `allowed`.
    fn only(&self, allowed: bool, field: &str, present: bool) -> Result<()> {
        if present && !allowed {
            return Err(self.err(field, "not used by this kind of ceremony; remove it"));
        }
        Ok(())
    }

    fn device(&self, kind: ScriptKind, raw: RawDevice) -> Result<Device> {
        let backend: BackendKind = raw
            .backend
            .parse()
            .map_err(|e: String| self.err("device.backend", e))?;
        let new_ca = matches!(kind, ScriptKind::RootInit | ScriptKind::BackupImport);
        let given = |name: &str, present: bool, ok: bool| -> Result<()> {
            if present && !ok {
                return Err(self.err(
                    &format!("device.{name}"),
                    format!(
                        "not used with backend {} in a {} ceremony",
                        backend.as_str(),
                        kind.name()
                    ),
                ));
            }
            Ok(())
        };
        let yk = backend == BackendKind::Yubikey;
        let p11 = backend == BackendKind::Pkcs11;
        given(
            "serial",
            raw.serial.is_some(),
            yk && kind != ScriptKind::BackupImport,
        )?;
        given("slot", raw.slot.is_some(), yk && new_ca)?;
        given(
            "import_to",
            raw.import_to.is_some(),
            yk && kind == ScriptKind::BackupImport,
        )?;
        given("module", raw.module.is_some(), p11 && new_ca)?;
        given("token_label", raw.token_label.is_some(), p11)?;
        given("key_label", raw.key_label.is_some(), p11)?;
        if kind == ScriptKind::BackupImport && !yk {
            return Err(self.err(
                "device.backend",
                "a backup-import ceremony imports into YubiKeys: use backend yubikey with import_to",
            ));
        }
        let need = |name: &str| self.err(&format!("device.{name}"), "missing");
        let config = match backend {
            BackendKind::Soft => BackendConfig::Soft(SoftConfig::default()),
            BackendKind::Yubikey => {
                let slot = parse_slot(raw.slot.as_deref().unwrap_or("9c"))
                    .map_err(|m| self.err("device.slot", m))?;
                let (serial, backups) = match raw.import_to {
                    Some(list) => {
                        if list.len() < 2 {
                            return Err(self.err(
                                "device.import_to",
                                "name two or more YubiKey serials (the key and its backups)",
                            ));
                        }
                        (list[0], list[1..].to_vec())
                    }
                    None => (raw.serial.ok_or_else(|| need("serial"))?, Vec::new()),
                };
                BackendConfig::Yubikey(YubikeyConfig {
                    serial,
                    slot: format!("{slot:02x}"),
                    backups,
                })
            }
            BackendKind::Pkcs11 => BackendConfig::Pkcs11(Pkcs11Config {
                module: match raw.module {
                    Some(m) => m,
                    None if new_ca => return Err(need("module")),
                    None => PathBuf::new(),
                },
                token_label: raw.token_label.ok_or_else(|| need("token_label"))?,
                key_label: raw.key_label.ok_or_else(|| need("key_label"))?,
            }),
        };
        Ok(Device {
            config,
            import: kind == ScriptKind::BackupImport,
        })
    }

    fn step(&self, i: usize, raw: RawStep) -> Result<ScriptStep> {
        let at = |step: &str, f: &str| format!("steps[{i}].{step}.{f}");
        let serial =
            |field: &str, hex: &str| Serial::parse_hex(hex).map_err(|m| self.err(field, m));
        Ok(
            match (raw.sign, raw.revoke, raw.reroot, raw.handover, raw.renew) {
                (Some(s), None, None, None, None) => {
                    let at = |f: &str| at("sign", f);
                    ScriptStep::Sign {
                        csr: self.path(&at("csr"), &s.csr)?,
                        slug: Slug::parse(&s.slug)
                            .map_err(|e| self.err(&at("slug"), e.to_string()))?,
                        tier: s.tier.parse().map_err(|e: crate::slug::TierError| {
                            self.err(&at("tier"), e.to_string())
                        })?,
                        days: s.days,
                        shared: s.shared,
                        out: self.path(&at("out"), &s.out)?,
                    }
                }
                (None, Some(r), None, None, None) => {
                    let at = |f: &str| at("revoke", f);
                    ScriptStep::Revoke {
                        serial: serial(&at("serial"), &r.serial)?,
                        reason: r
                            .reason
                            .parse()
                            .map_err(|m: String| self.err(&at("reason"), m))?,
                        crl_out: self.path(&at("crl_out"), &r.crl_out)?,
                    }
                }
                (None, None, Some(r), None, None) => {
                    let at = |f: &str| at("reroot", f);
                    for (j, name) in r.permit_dns.iter().enumerate() {
                        policy::check_dns_name(name)
                            .map_err(|m| self.err(&at(&format!("permit_dns[{j}]")), m))?;
                    }
                    ScriptStep::Reroot {
                        cert: self.path(&at("cert"), &r.cert)?,
                        msp_root: self.path(&at("msp_root"), &r.msp_root)?,
                        msp_crl: self.path(&at("msp_crl"), &r.msp_crl)?,
                        permit_dns: r.permit_dns,
                        out: self.path(&at("out"), &r.out)?,
                    }
                }
                (None, None, None, Some(h), None) => {
                    let at = |f: &str| at("handover", f);
                    ScriptStep::Handover {
                        serial: serial(&at("serial"), &h.serial)?,
                        new_root: self.path(&at("new_root"), &h.new_root)?,
                        crl_out: self.path(&at("crl_out"), &h.crl_out)?,
                    }
                }
                (None, None, None, None, Some(r)) => {
                    let at = |f: &str| at("renew", f);
                    ScriptStep::Renew {
                        serial: serial(&at("serial"), &r.serial)?,
                        csr: self.path(&at("csr"), &r.csr)?,
                        days: r.days,
                        out: self.path(&at("out"), &r.out)?,
                    }
                }
                _ => return Err(self.err(
                    &format!("steps[{i}]"),
                    "each step is exactly one of `sign:`, `revoke:`, `reroot:`, `handover:` or \
                     `renew:`",
                )),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Script> {
        Script::parse(Path::new("c.yaml"), Path::new("/m"), text.as_bytes())
    }

    const SIGNING: &str =
        "kind: signing\noperator: Ana\nwitnesses: [Ben]\ndevice: {backend: soft}\n\
        steps:\n  - sign: {csr: r/a.csr, slug: acme, tier: core, out: o/a.pem}\n  \
        - revoke: {serial: 0a1b, reason: superseded, crl_out: o/r.crl}\ncrl: {out: o/crl.pem}\n";

    #[test]
    fn a_signing_file_parses_into_steps_with_resolved_paths() {
        let s = parse(SIGNING).expect("valid");
        assert_eq!(s.kind, ScriptKind::Signing);
        let outs: Vec<_> = s.outputs().iter().map(|o| o.path.clone()).collect();
        assert_eq!(
            outs,
            ["/m/o/a.pem", "/m/o/r.crl", "/m/o/crl.pem"].map(PathBuf::from)
        );
        assert_eq!(s.inputs()[0].path, PathBuf::from("/m/r/a.csr"));
    }

    #[test]
    fn a_sign_step_is_for_a_shared_sub_ca_only_when_it_says_so() {
        let shared = |text: &str| {
            let s = parse(text).expect("valid");
            let Body::Signing { steps, .. } = &s.body else {
                panic!("signing");
            };
            match &steps[0] {
                ScriptStep::Sign { shared, .. } => *shared,
                _ => panic!("sign first"),
            }
        };
        assert!(!shared(SIGNING));
        assert!(shared(
            &SIGNING.replace("tier: core,", "tier: core, shared: true,")
        ));
        let e = parse(&SIGNING.replace("tier: core,", "tier: core, shared: yes please,"))
            .expect_err("not a bool")
            .to_string();
        assert!(e.contains("steps[0].sign") || e.contains("steps"), "{e}");
    }

    #[test]
    fn bad_files_are_refused_naming_the_field() {
        let cases = [
            (
                SIGNING.replace("slug: acme", "slug: acme, cert: x"),
                "steps[0].sign",
            ),
            (SIGNING.replace("- revoke", "- reroot"), "steps[1]"),
            (
                SIGNING.replace("slug: acme", "slug: Acme!"),
                "steps[0].sign.slug",
            ),
            (
                SIGNING.replace("r/a.csr", "/etc/a.csr"),
                "steps[0].sign.csr",
            ),
            (SIGNING.replace("0a1b", "zz"), "steps[1].revoke.serial"),
            (
                SIGNING.replace("superseded", "bored"),
                "steps[1].revoke.reason",
            ),
            (SIGNING.replace("Ben", "Ana"), "witnesses"),
            (SIGNING.replace("o/r.crl", "o/a.pem"), "two steps write"),
            (SIGNING.replace("crl: {out: o/crl.pem}\n", ""), "crl"),
            (
                SIGNING.replace("backend: soft", "backend: soft, serial: 3"),
                "device.serial",
            ),
            (format!("{SIGNING}policy: p.yaml\n"), "policy"),
            (format!("{SIGNING}expect_head: nope\n"), "expect_head"),
            (SIGNING.replace("kind: signing", "kind: party"), "kind"),
        ];
        for (text, needle) in cases {
            let e = parse(&text).expect_err(&text).to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    const CHURN: &str =
        "kind: signing\noperator: Ana\nwitnesses: [Ben]\ndevice: {backend: soft}\nsteps:\n  \
        - reroot: {cert: i/a.pem, msp_root: i/r.pem, msp_crl: i/r.crl, permit_dns: [a.example], out: o/x.pem}\n  \
        - handover: {serial: 0a1b, new_root: i/c.pem, crl_out: o/h.crl}\ncrl: {out: o/crl.pem}\n";

    #[test]
    fn reroot_and_handover_steps_parse_strictly() {
        let s = parse(CHURN).expect("valid");
        let ins: Vec<_> = s.inputs().iter().map(|i| i.rel.clone()).collect();
        assert_eq!(ins, ["i/a.pem", "i/r.pem", "i/r.crl", "i/c.pem"]);
        let Body::Signing { steps, .. } = &s.body else {
            panic!("not a signing body")
        };
        assert!(steps[0].issues_certificate() && !steps[1].issues_certificate());
        assert_eq!(s.outputs()[1].path, PathBuf::from("/m/o/h.crl"));
        let cases = [
            (
                CHURN.replace("out: o/x.pem", "out: o/x.pem, days: 3"),
                "steps[0].reroot",
            ),
            (CHURN.replace("msp_crl: i/r.crl, ", ""), "steps[0].reroot"),
            (
                CHURN.replace("[a.example]", "[\"a b\"]"),
                "steps[0].reroot.permit_dns[0]",
            ),
            (
                CHURN.replace("i/r.pem", "/i/r.pem"),
                "steps[0].reroot.msp_root",
            ),
            (CHURN.replace("0a1b", "zz"), "steps[1].handover.serial"),
            (CHURN.replace("i/c.pem", ""), "steps[1].handover.new_root"),
            (CHURN.replace("o/h.crl", "o/x.pem"), "two steps write"),
            (
                CHURN.replace("- handover: {", "- handover: {reason: superseded, "),
                "steps[1].handover",
            ),
        ];
        for (text, needle) in cases {
            let e = parse(&text).expect_err(&text).to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    const RENEW: &str =
        "kind: signing\noperator: Ana\nwitnesses: [Ben]\ndevice: {backend: soft}\nsteps:\n  \
        - renew: {serial: 0a1b, csr: i/n.csr, days: 30, out: o/n.pem}\n  \
        - revoke: {serial: 0a1b, reason: superseded, crl_out: o/r.crl}\ncrl: {out: o/crl.pem}\n";

    #[test]
    fn renew_steps_parse_strictly() {
        let s = parse(RENEW).expect("valid");
        let Body::Signing { steps, .. } = &s.body else {
            panic!("not a signing body")
        };
        let ScriptStep::Renew {
            serial, days, csr, ..
        } = &steps[0]
        else {
            panic!("not a renew step: {:?}", steps[0])
        };
        assert_eq!((serial.hex().as_str(), *days), ("0a1b", Some(30)));
        assert_eq!(csr.path, PathBuf::from("/m/i/n.csr"));
        assert_eq!(steps[0].name(), "renew");
        assert!(steps[0].issues_certificate());
        assert_eq!(s.outputs()[0].path, PathBuf::from("/m/o/n.pem"));
        let no_days = parse(&RENEW.replace("days: 30, ", "")).expect("days is optional");
        assert!(matches!(
            &no_days.body,
            Body::Signing { steps, .. } if matches!(steps[0], ScriptStep::Renew { days: None, .. })
        ));
        let cases = [
            (
                RENEW.replace("serial: 0a1b, csr", "serial: zz, csr"),
                "steps[0].renew.serial",
            ),
            (RENEW.replace("i/n.csr", "/i/n.csr"), "steps[0].renew.csr"),
            (RENEW.replace("o/n.pem", ""), "steps[0].renew.out"),
            (RENEW.replace("csr: i/n.csr, ", ""), "steps[0].renew"),
            (RENEW.replace("days: 30", "days: -1"), "steps[0].renew"),
            (
                RENEW.replace("days: 30", "days: 30, reason: superseded"),
                "steps[0].renew",
            ),
            (
                RENEW.replace("- renew: {", "- renew: {slug: acme, "),
                "steps[0].renew",
            ),
            (RENEW.replace("o/r.crl", "o/n.pem"), "two steps write"),
            (
                RENEW.replace(
                    "  - revoke",
                    "    sign: {csr: a, slug: a, tier: core, out: b}\n  - revoke",
                ),
                "steps[0]",
            ),
        ];
        for (text, needle) in cases {
            let e = parse(&text).expect_err(&text).to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn org_belongs_to_a_new_root_only() {
        let init = "kind: root-init\noperator: Ana\nwitnesses: [Ben]\ndevice: {backend: soft}\n\
            policy: p/customer-root.yaml\norg: Acme GmbH\n";
        let s = parse(init).expect("valid");
        assert!(matches!(&s.body, Body::Init { org: Some(o), .. } if o == "Acme GmbH"));
        let e = parse(&format!("{SIGNING}org: Acme\n")).expect_err("org in signing");
        assert!(e.to_string().contains("org"), "{e}");
    }

    #[test]
    fn backup_import_needs_two_yubikeys() {
        let base = "kind: backup-import\noperator: Ana\nwitnesses: [Ben]\npolicy: p/root.yaml\n";
        let ok = parse(&format!(
            "{base}device: {{backend: yubikey, import_to: [1, 2]}}\n"
        ))
        .expect("valid");
        assert!(ok.device.import);
        assert_eq!(ok.device.serial(), "1, 2");
        for bad in [
            "device: {backend: yubikey, import_to: [1]}\n",
            "device: {backend: yubikey, serial: 1}\n",
            "device: {backend: soft}\n",
        ] {
            assert!(parse(&format!("{base}{bad}")).is_err(), "{bad}");
        }
    }
}
