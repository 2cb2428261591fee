//! Certificate and CRL policies, read from `policies/*.yaml`.
//!
//! A policy file is deserialized strictly (unknown keys are errors naming their path) into raw
//! structs, then converted into the validated [`RootPolicy`] or [`IntermediatePolicy`]. The
//! issuance code accepts only the validated types, so an unchecked value cannot reach the key.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::algo::KeyAlgorithm;
use crate::certpolicy::{PolicyOid, KIWISTACK_ARC};
use crate::constraints::{DirAttr, NameConstraints, Subtree};
use crate::slug::{Slug, Tier};
use crate::words::Fingerprint;

/// Longest root validity a policy may state (25 years).
pub const MAX_ROOT_DAYS: u32 = 9132;
/// Longest intermediate validity a policy may state (10 years).
pub const MAX_INTERMEDIATE_DAYS: u32 = 3650;
/// Longest CRL validity a policy may state.
pub const MAX_CRL_DAYS: u32 = 400;
/// Most characters in a subject's commonName, organizationName or organizationalUnitName
/// (RFC 5280 ub-common-name, ub-organization-name, ub-organizational-unit-name).
pub const MAX_NAME_CHARS: usize = 64;

/// A policy file that is invalid, with the field path at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {field}: {message}")]
pub struct PolicyError {
    /// The policy file.
    pub file: String,
    /// Dotted path of the field (`.` for the whole file).
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

/// Where a policy came from, for the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    /// The file it was read from.
    pub path: PathBuf,
    /// SHA-256 of the file's bytes.
    pub sha256: Fingerprint,
}

/// A key usage bit a CA certificate may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyUsage {
    /// keyCertSign.
    KeyCertSign,
    /// cRLSign.
    CrlSign,
    /// digitalSignature (for a CA that signs OCSP responses).
    DigitalSignature,
}

impl KeyUsage {
    /// The rcgen equivalent.
    pub fn rcgen(self) -> rcgen::KeyUsagePurpose {
        match self {
            KeyUsage::KeyCertSign => rcgen::KeyUsagePurpose::KeyCertSign,
            KeyUsage::CrlSign => rcgen::KeyUsagePurpose::CrlSign,
            KeyUsage::DigitalSignature => rcgen::KeyUsagePurpose::DigitalSignature,
        }
    }
}

/// A string with `{slug}` placeholders (the only placeholder there is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(String);

impl Template {
    fn parse(s: &str) -> Result<Self, String> {
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("`{s}` has a `{{` without a closing `}}`"))?;
            let name = &after[..close];
            if name != "slug" {
                return Err(format!(
                    "`{s}` uses the placeholder `{{{name}}}`; the only placeholder is `{{slug}}`"
                ));
            }
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("`{s}` has a `}}` without an opening `{{`"));
        }
        Ok(Template(s.to_string()))
    }

    /// Substitutes the slug.
    pub fn render(&self, slug: &Slug) -> String {
        self.0.replace("{slug}", slug.as_str())
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Subject distinguished name, from templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectTemplate {
    /// commonName.
    pub common_name: Template,
    /// organizationName.
    pub organization: Option<Template>,
    /// organizationalUnitName.
    pub organizational_unit: Option<Template>,
    /// countryName (two letters).
    pub country: Option<String>,
}

impl SubjectTemplate {
    /// The distinguished name for a slug (or for the root, which has none).
    pub fn render(&self, slug: Option<&Slug>) -> rcgen::DistinguishedName {
        let r = |t: &Template| match slug {
            Some(s) => t.render(s),
            None => t.as_str().to_string(),
        };
        let mut dn = rcgen::DistinguishedName::new();
        if let Some(c) = &self.country {
            dn.push(
                rcgen::DnType::CountryName,
                rcgen::DnValue::PrintableString(
                    // Validated as two ASCII uppercase letters when the policy was loaded.
                    rcgen::string::PrintableString::try_from(c.as_str())
                        .unwrap_or_else(|_| unreachable!("country validated at load")),
                ),
            );
        }
        if let Some(o) = &self.organization {
            dn.push(rcgen::DnType::OrganizationName, r(o));
        }
        if let Some(ou) = &self.organizational_unit {
            dn.push(rcgen::DnType::OrganizationalUnitName, r(ou));
        }
        dn.push(rcgen::DnType::CommonName, r(&self.common_name));
        dn
    }
}

/// How a YubiKey slot guards the root key (used by the YubiKey backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinPolicy {
    /// PIN for every signature.
    Always,
    /// PIN once per session.
    Once,
}

/// Whether the YubiKey needs a touch for each signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TouchPolicy {
    /// Touch for every signature.
    Always,
    /// Touch cached for 15 seconds.
    Cached,
    /// No touch.
    Never,
}

/// The root's CRL schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlPolicy {
    /// nextUpdate = thisUpdate + this many days.
    pub validity_days: u32,
    /// The next ceremony is due this many days before nextUpdate.
    pub reissue_before_days: u32,
}

/// The validated root policy.
#[derive(Debug, Clone)]
pub struct RootPolicy {
    /// Where it came from.
    pub source: PolicySource,
    /// Subject of the root certificate: None for a customer-owned root (`kind: customer_root`),
    /// whose subject comes from `init --org` ([`customer_subject`]).
    pub subject: Option<SubjectTemplate>,
    /// The root key's algorithm.
    pub key_algorithm: KeyAlgorithm,
    /// Root certificate validity.
    pub validity_days: u32,
    /// pathLenConstraint of the root (None: unconstrained).
    pub path_len: Option<u8>,
    /// Key usages of the root certificate.
    pub key_usages: Vec<KeyUsage>,
    /// The root CRL's schedule.
    pub crl: CrlPolicy,
    /// YubiKey PIN policy for the root key slot.
    pub pin_policy: PinPolicy,
    /// YubiKey touch policy for the root key slot.
    pub touch_policy: TouchPolicy,
}

/// The validated policy for one tier's intermediates.
#[derive(Debug, Clone)]
pub struct IntermediatePolicy {
    /// Where it came from.
    pub source: PolicySource,
    /// The tier it governs.
    pub tier: Tier,
    /// The certificate policy OID that marks the tier in every intermediate it issues.
    pub certificate_policy: PolicyOid,
    /// Key algorithms a CSR may carry.
    pub allowed_keys: Vec<KeyAlgorithm>,
    /// Longest validity.
    pub max_days: u32,
    /// Validity when the operator asks for none.
    pub default_days: u32,
    /// Subject from the slug.
    pub subject: SubjectTemplate,
    /// The nameConstraints every intermediate of this tier carries.
    pub name_constraints: NameConstraintsPolicy,
    /// Key usages.
    pub key_usages: Vec<KeyUsage>,
    /// pathLenConstraint.
    pub path_len: u8,
    /// CRL distribution point URL (the root's CRL).
    pub crl_distribution_point: Template,
}

/// The nameConstraints of a tier's intermediates, as templates: every name form a leaf can
/// carry is granted only under the customer's slug.
#[derive(Debug, Clone)]
pub struct NameConstraintsPolicy {
    /// Permitted DNS subtrees (no leading dot: domain and subdomains).
    pub permitted_dns: Vec<Template>,
    /// Permitted rfc822Name subtrees (a host's mailboxes; a leading dot: its subdomains').
    pub permitted_email: Vec<Template>,
    /// Permitted URI subtrees, by host (a leading dot: its subdomains).
    pub permitted_uri: Vec<Template>,
    /// The permitted directoryName subtree (subjects beginning with these RDNs), if any.
    pub permitted_subject: Vec<(DirAttr, Template)>,
    /// Excluded IP ranges (address, prefix length).
    pub excluded_ip: Vec<(IpAddr, u8)>,
}

impl NameConstraintsPolicy {
    /// The constraints of `slug`'s intermediate, in the order they are encoded.
    pub fn render(&self, slug: &Slug) -> NameConstraints {
        let hosts = |list: &[Template], form: fn(String) -> Subtree| {
            list.iter()
                .map(move |t| form(t.render(slug)))
                .collect::<Vec<_>>()
        };
        let mut permitted = hosts(&self.permitted_dns, Subtree::Dns);
        permitted.extend(hosts(&self.permitted_email, Subtree::Email));
        permitted.extend(hosts(&self.permitted_uri, Subtree::Uri));
        if !self.permitted_subject.is_empty() {
            permitted.push(Subtree::Directory(
                self.permitted_subject
                    .iter()
                    .map(|(a, t)| (*a, t.render(slug)))
                    .collect(),
            ));
        }
        NameConstraints {
            permitted,
            excluded: self
                .excluded_ip
                .iter()
                .map(|(ip, len)| Subtree::Ip(*ip, *len))
                .collect(),
        }
    }
}

// ---- raw file shapes ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubject {
    common_name: String,
    organization: Option<String>,
    organizational_unit: Option<String>,
    country: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRootKey {
    algorithm: String,
    #[serde(default)]
    yubikey: Option<RawYubikey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawYubikey {
    pin_policy: PinPolicy,
    touch_policy: TouchPolicy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRootValidity {
    days: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCrl {
    validity_days: u32,
    reissue_before_days: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoot {
    kind: String,
    #[serde(default)]
    subject: Option<RawSubject>,
    key: RawRootKey,
    validity: RawRootValidity,
    #[serde(default)]
    path_len: Option<u8>,
    key_usage: Vec<KeyUsage>,
    crl: RawCrl,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    allowed: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntValidity {
    max_days: u32,
    #[serde(default)]
    default_days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNameConstraints {
    permitted_dns: Vec<String>,
    permitted_email: Vec<String>,
    permitted_uri: Vec<String>,
    #[serde(default)]
    permitted_subject: Option<RawSubjectPrefix>,
    #[serde(default)]
    excluded_ip: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubjectPrefix {
    organization: String,
    organizational_unit: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntermediate {
    kind: String,
    tier: String,
    certificate_policy: String,
    keys: RawKeys,
    validity: RawIntValidity,
    subject: RawSubject,
    name_constraints: RawNameConstraints,
    key_usage: Vec<KeyUsage>,
    path_len: u8,
    crl_distribution_point: String,
}

// ---- loading ----

struct Ctx {
    file: String,
}

impl Ctx {
    fn err(&self, field: &str, message: impl Into<String>) -> PolicyError {
        PolicyError {
            file: self.file.clone(),
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Deserializes YAML `text` (from `file`) into `T`, reporting the failing field's dotted path.
/// With `#[serde(deny_unknown_fields)]` on `T`, unknown keys are errors naming their path. Used
/// for every strict YAML file: policies, hooks files, registry entries.
pub fn parse_strict<T: for<'de> Deserialize<'de>>(
    file: &str,
    text: &str,
) -> Result<T, PolicyError> {
    let ctx = Ctx {
        file: file.to_string(),
    };
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let msg = e.inner().to_string();
        // serde_yaml_ng prefixes the parent path itself ("validity: unknown field ..."): drop it.
        let msg = match msg.split_once(": ") {
            Some((prefix, rest)) if !prefix.contains(' ') && field.starts_with(prefix) => {
                rest.to_string()
            }
            _ => msg,
        };
        ctx.err(&field, msg)
    })
}

fn read_strict<T: for<'de> Deserialize<'de>>(
    path: &Path,
) -> Result<(T, PolicySource, Ctx), PolicyError> {
    let ctx = Ctx {
        file: path.display().to_string(),
    };
    let bytes = std::fs::read(path).map_err(|e| {
        ctx.err(
            ".",
            format!("cannot read the policy file ({e}); check the path"),
        )
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|_| ctx.err(".", "not UTF-8 text"))?;
    let raw: T = parse_strict(&ctx.file, text)?;
    let source = PolicySource {
        path: path.to_path_buf(),
        sha256: Fingerprint::of(&bytes),
    };
    Ok((raw, source, ctx))
}

/// Checks a subject field (or a directoryName constraint's attribute) against its upper bound
/// as it will be issued: rendered with the longest slug there can be, so no customer's
/// certificate can exceed it.
fn name_template(ctx: &Ctx, field: &str, s: &str, slugged: bool) -> Result<Template, PolicyError> {
    let t = Template::parse(s).map_err(|m| ctx.err(field, m))?;
    if !slugged && t.as_str().contains("{slug}") {
        return Err(ctx.err(field, "the root has no slug; remove `{slug}`"));
    }
    if s.trim().is_empty() {
        return Err(ctx.err(field, "must not be empty"));
    }
    let chars = t.render(&Slug::longest()).chars().count();
    if chars > MAX_NAME_CHARS {
        let with = if t.as_str().contains("{slug}") {
            format!(
                "with the longest slug ({} characters) it is {chars} characters",
                crate::slug::MAX_LEN
            )
        } else {
            format!("it is {chars} characters")
        };
        return Err(ctx.err(
            field,
            format!(
                "`{s}`: {with}, and RFC 5280 allows at most {MAX_NAME_CHARS}; shorten it{}",
                if t.as_str().contains("{slug}") {
                    " (`{slug}` alone always fits)"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(t)
}

fn subject(ctx: &Ctx, raw: RawSubject, slugged: bool) -> Result<SubjectTemplate, PolicyError> {
    let t = |field: &str, s: &str| name_template(ctx, field, s, slugged);
    let country = match raw.country {
        Some(c) if c.len() == 2 && c.chars().all(|ch| ch.is_ascii_uppercase()) => Some(c),
        Some(c) => {
            return Err(ctx.err(
                "subject.country",
                format!("`{c}` is not an ISO 3166-1 alpha-2 code (two uppercase letters)"),
            ))
        }
        None => None,
    };
    Ok(SubjectTemplate {
        common_name: t("subject.common_name", &raw.common_name)?,
        organization: raw
            .organization
            .as_deref()
            .map(|o| t("subject.organization", o))
            .transpose()?,
        organizational_unit: raw
            .organizational_unit
            .as_deref()
            .map(|o| t("subject.organizational_unit", o))
            .transpose()?,
        country,
    })
}

fn ca_key_usages(ctx: &Ctx, usages: Vec<KeyUsage>) -> Result<Vec<KeyUsage>, PolicyError> {
    for need in [KeyUsage::KeyCertSign, KeyUsage::CrlSign] {
        if !usages.contains(&need) {
            return Err(ctx.err(
                "key_usage",
                "a CA certificate needs key_cert_sign and crl_sign",
            ));
        }
    }
    let mut seen = Vec::new();
    for u in usages {
        if seen.contains(&u) {
            return Err(ctx.err("key_usage", format!("{u:?} is listed twice")));
        }
        seen.push(u);
    }
    Ok(seen)
}

fn kind(ctx: &Ctx, got: &str, want: &str) -> Result<(), PolicyError> {
    if got == want {
        Ok(())
    } else {
        Err(ctx.err(
            "kind",
            format!("is `{got}`, this file must be a `{want}` policy"),
        ))
    }
}

/// Loads and validates the root policy.
pub fn load_root(path: &Path) -> Result<RootPolicy, PolicyError> {
    let (raw, source, ctx) = read_strict::<RawRoot>(path)?;
    let customer = raw.kind == CUSTOMER_ROOT;
    if !customer {
        kind(&ctx, &raw.kind, "root")?;
    }
    let subject = match (customer, raw.subject) {
        (false, Some(s)) => Some(subject(&ctx, s, false)?),
        (false, None) => return Err(ctx.err("subject", "missing field `subject`")),
        (true, None) => None,
        (true, Some(_)) => {
            return Err(ctx.err(
                "subject",
                "a customer root's subject comes from `init --org`; remove `subject`",
            ))
        }
    };
    let key_algorithm =
        KeyAlgorithm::parse(&raw.key.algorithm).map_err(|m| ctx.err("key.algorithm", m))?;
    if raw.validity.days == 0 || raw.validity.days > MAX_ROOT_DAYS {
        return Err(ctx.err("validity.days", format!("must be 1 to {MAX_ROOT_DAYS}")));
    }
    let crl = crl_policy(&ctx, raw.crl)?;
    let (pin_policy, touch_policy) = match raw.key.yubikey {
        Some(y) => (y.pin_policy, y.touch_policy),
        None => (PinPolicy::Always, TouchPolicy::Always),
    };
    Ok(RootPolicy {
        source,
        subject,
        key_algorithm,
        validity_days: raw.validity.days,
        path_len: raw.path_len,
        key_usages: ca_key_usages(&ctx, raw.key_usage)?,
        crl,
        pin_policy,
        touch_policy,
    })
}

/// The `kind` of a customer-owned root's policy (`policies/customer-root.yaml`).
pub const CUSTOMER_ROOT: &str = "customer_root";

/// The subject of a customer-owned root: `O=<org>, CN=<org> Root CA`, both UTF8String. The
/// organization is the customer's legal name as given to `init --org`; it must fit RFC 5280's
/// 64 characters in the CN too.
pub fn customer_subject(org: &str) -> Result<rcgen::DistinguishedName, String> {
    let org = org.trim();
    let cn = format!("{org} Root CA");
    if org.is_empty() {
        return Err("--org is empty; give the customer's organization, e.g. \"Acme GmbH\"".into());
    }
    if org.chars().any(char::is_control) {
        return Err("--org holds control characters".into());
    }
    if cn.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "--org `{org}` is {} characters; the CN `{org} Root CA` must fit RFC 5280's \
             {MAX_NAME_CHARS}, so --org may have at most {}",
            org.chars().count(),
            MAX_NAME_CHARS - " Root CA".len()
        ));
    }
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, org);
    dn.push(rcgen::DnType::CommonName, cn);
    Ok(dn)
}

fn crl_policy(ctx: &Ctx, raw: RawCrl) -> Result<CrlPolicy, PolicyError> {
    if raw.validity_days == 0 || raw.validity_days > MAX_CRL_DAYS {
        return Err(ctx.err("crl.validity_days", format!("must be 1 to {MAX_CRL_DAYS}")));
    }
    if raw.reissue_before_days >= raw.validity_days {
        return Err(ctx.err(
            "crl.reissue_before_days",
            format!(
                "must be less than crl.validity_days ({})",
                raw.validity_days
            ),
        ));
    }
    Ok(CrlPolicy {
        validity_days: raw.validity_days,
        reissue_before_days: raw.reissue_before_days,
    })
}

/// The file name of a tier's intermediate policy.
pub fn intermediate_file(tier: Tier) -> String {
    format!("intermediate-{tier}.yaml")
}

/// The file name of the Core tier's shared sub-CA policy (one sub-CA per Core cluster, named
/// by the cluster's slug, whose name constraints cover every tenant of the cluster).
pub const CORE_SHARED_FILE: &str = "intermediate-core-shared.yaml";

/// Loads and validates `DIR/intermediate-<tier>.yaml`.
pub fn load_intermediate(dir: &Path, tier: Tier) -> Result<IntermediatePolicy, PolicyError> {
    load_intermediate_file(&dir.join(intermediate_file(tier)), tier, false)
}

/// Loads and validates `DIR/intermediate-core-shared.yaml`: an intermediate policy of tier core
/// (`kind: intermediate-shared`) whose permitted DNS subtrees must not contain `{slug}`: the
/// slug names the cluster, and the subtrees cover every tenant's `SLUG.od.kiwistack.io`.
pub fn load_core_shared(dir: &Path) -> Result<IntermediatePolicy, PolicyError> {
    load_intermediate_file(&dir.join(CORE_SHARED_FILE), Tier::Core, true)
}

fn load_intermediate_file(
    path: &Path,
    tier: Tier,
    shared: bool,
) -> Result<IntermediatePolicy, PolicyError> {
    let (raw, source, ctx) = read_strict::<RawIntermediate>(path)?;
    kind(
        &ctx,
        &raw.kind,
        if shared {
            "intermediate-shared"
        } else {
            "intermediate"
        },
    )?;
    if raw.tier != tier.as_str() {
        return Err(ctx.err(
            "tier",
            format!("is `{}` but the file is for tier {tier}", raw.tier),
        ));
    }
    let certificate_policy = tier_marker(&ctx, tier, &raw.certificate_policy)?;
    let mut allowed_keys = Vec::new();
    for (i, a) in raw.keys.allowed.iter().enumerate() {
        let k = KeyAlgorithm::parse(a).map_err(|m| ctx.err(&format!("keys.allowed[{i}]"), m))?;
        if !allowed_keys.contains(&k) {
            allowed_keys.push(k);
        }
    }
    if allowed_keys.is_empty() {
        return Err(ctx.err("keys.allowed", "must list at least one key algorithm"));
    }
    let v = raw.validity;
    if v.max_days == 0 || v.max_days > MAX_INTERMEDIATE_DAYS {
        return Err(ctx.err(
            "validity.max_days",
            format!("must be 1 to {MAX_INTERMEDIATE_DAYS}"),
        ));
    }
    let default_days = v.default_days.unwrap_or(v.max_days);
    if default_days == 0 || default_days > v.max_days {
        return Err(ctx.err(
            "validity.default_days",
            format!("must be 1 to validity.max_days ({})", v.max_days),
        ));
    }
    // Every template must fit the longest slug there can be.
    let probe = Slug::longest();
    let name_constraints = name_constraints(&ctx, raw.name_constraints, shared)?;
    if raw.path_len != 0 {
        return Err(ctx.err(
            "path_len",
            "intermediates issue leaves only: path_len must be 0",
        ));
    }
    let cdp = Template::parse(&raw.crl_distribution_point)
        .map_err(|m| ctx.err("crl_distribution_point", m))?;
    let rendered = cdp.render(&probe);
    if !(rendered.starts_with("http://") || rendered.starts_with("https://"))
        || rendered.contains(' ')
    {
        return Err(ctx.err(
            "crl_distribution_point",
            "must be an http:// URL (CRLs are fetched over plain HTTP)",
        ));
    }
    Ok(IntermediatePolicy {
        source,
        tier,
        certificate_policy,
        allowed_keys,
        max_days: v.max_days,
        default_days,
        subject: subject(&ctx, raw.subject, true)?,
        name_constraints,
        key_usages: ca_key_usages(&ctx, raw.key_usage)?,
        path_len: raw.path_len,
        crl_distribution_point: cdp,
    })
}

/// The tier's certificate policy OID: an OID under KiwiStack's arc, and the one that marks
/// this tier (so each tier's is its own, and `ledger verify` reads the tier back from it).
fn tier_marker(ctx: &Ctx, tier: Tier, s: &str) -> Result<PolicyOid, PolicyError> {
    let field = "certificate_policy";
    let oid = PolicyOid::parse(s).map_err(|m| ctx.err(field, m))?;
    if !oid.is_under(KIWISTACK_ARC) {
        return Err(ctx.err(
            field,
            format!("`{oid}` is not under KiwiStack's arc {KIWISTACK_ARC} (policies/README.md)"),
        ));
    }
    let want = PolicyOid::tier(tier);
    if oid != want {
        let whose = oid
            .marked_tier()
            .map(|t| format!("the marker of tier {t}"))
            .unwrap_or_else(|| "no tier's marker".into());
        return Err(ctx.err(
            field,
            format!("`{oid}` is {whose}; tier {tier}'s is `{want}`"),
        ));
    }
    Ok(oid)
}

fn name_constraints(
    ctx: &Ctx,
    raw: RawNameConstraints,
    shared: bool,
) -> Result<NameConstraintsPolicy, PolicyError> {
    let permitted_subject = match raw.permitted_subject {
        None => Vec::new(),
        Some(p) => {
            let field = "name_constraints.permitted_subject";
            let o = name_template(ctx, &format!("{field}.organization"), &p.organization, true)?;
            let ou_field = format!("{field}.organizational_unit");
            let ou = name_template(ctx, &ou_field, &p.organizational_unit, true)?;
            if !shared && !ou.as_str().contains("{slug}") {
                return Err(ctx.err(
                    &ou_field,
                    "must contain `{slug}`: each customer gets its own directory subtree",
                ));
            }
            vec![
                (DirAttr::Organization, o),
                (DirAttr::OrganizationalUnit, ou),
            ]
        }
    };
    let mut excluded_ip = Vec::new();
    for (i, c) in raw.excluded_ip.iter().enumerate() {
        excluded_ip.push(
            parse_cidr(c).map_err(|m| ctx.err(&format!("name_constraints.excluded_ip[{i}]"), m))?,
        );
    }
    Ok(NameConstraintsPolicy {
        permitted_dns: host_templates(ctx, "permitted_dns", &raw.permitted_dns, false, shared)?,
        permitted_email: host_templates(
            ctx,
            "permitted_email",
            &raw.permitted_email,
            true,
            shared,
        )?,
        permitted_uri: host_templates(ctx, "permitted_uri", &raw.permitted_uri, true, shared)?,
        permitted_subject,
        excluded_ip,
    })
}

/// Validates the host templates of one name form: at least one, each a DNS name with the
/// longest slug and with `{slug}` as a whole label (so `ledger verify` finds the slug there).
/// `leading_dot`: the form reads `.host` as "subdomains of host" (rfc822Name, URI); in dNSName
/// a plain name already covers its subdomains, so a dot is refused. A shared sub-CA's subtrees
/// (`shared`) are the opposite: they must not contain `{slug}`, which names the cluster there.
fn host_templates(
    ctx: &Ctx,
    form: &str,
    list: &[String],
    leading_dot: bool,
    shared: bool,
) -> Result<Vec<Template>, PolicyError> {
    let probe = Slug::longest();
    let mut out = Vec::new();
    for (i, d) in list.iter().enumerate() {
        let field = format!("name_constraints.{form}[{i}]");
        let t = Template::parse(d).map_err(|m| ctx.err(&field, m))?;
        let host = match d.strip_prefix('.') {
            Some(_) if !leading_dot => {
                return Err(ctx.err(
                    &field,
                    "no leading dot: `example.com` already covers its subdomains",
                ))
            }
            Some(rest) => rest,
            None => d.as_str(),
        };
        let rendered = t.render(&probe);
        if let Err(why) = check_dns_name(rendered.strip_prefix('.').unwrap_or(&rendered)) {
            return Err(ctx.err(
                &field,
                format!(
                    "`{d}` with the longest slug ({} characters) is not a DNS name: {why}",
                    crate::slug::MAX_LEN
                ),
            ));
        }
        if shared && d.contains("{slug}") {
            return Err(ctx.err(
                &field,
                "a shared sub-CA's subtree must not contain `{slug}` (the slug names the cluster): it covers every tenant's domain",
            ));
        }
        if !shared && !host.split('.').any(|l| l == "{slug}") {
            return Err(ctx.err(
                &field,
                "must contain `{slug}` as a whole label (`{slug}.example.com`): each customer gets its own subtree, and `ledger verify` finds the slug there",
            ));
        }
        out.push(t);
    }
    if out.is_empty() {
        return Err(ctx.err(
            &format!("name_constraints.{form}"),
            "must list the customer's subtree: a name form left out is unconstrained",
        ));
    }
    Ok(out)
}

/// Why `s` is not a DNS name we issue under: labels of lowercase letters, digits and inner
/// hyphens, at most 63 characters each and 253 in all, none reserved (`xn--` and any other `--`
/// in positions 3 and 4).
pub fn check_dns_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err(format!("{} characters; a DNS name has 1 to 253", s.len()));
    }
    for l in s.split('.') {
        if l.is_empty() || l.len() > 63 {
            return Err(format!(
                "the label `{l}` has {} characters; a label has 1 to 63",
                l.len()
            ));
        }
        if l.starts_with('-')
            || l.ends_with('-')
            || !l
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(format!(
                "the label `{l}` is not lowercase letters, digits and inner hyphens"
            ));
        }
        if crate::slug::is_reserved_label(l) {
            return Err(format!(
                "the label `{l}` has `--` in positions 3 and 4 (IDNA `xn--` or reserved)"
            ));
        }
    }
    Ok(())
}

fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` is not a CIDR range like 10.0.0.0/8"))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IP address"))?;
    let len: u8 = len
        .parse()
        .map_err(|_| format!("`{len}` is not a prefix length"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(format!("prefix /{len} is longer than {max}"));
    }
    Ok((addr, len))
}

impl fmt::Display for KeyUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyUsage::KeyCertSign => "keyCertSign",
            KeyUsage::CrlSign => "cRLSign",
            KeyUsage::DigitalSignature => "digitalSignature",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
    }

    #[test]
    fn shipped_policies_load() {
        let root = load_root(&policies_dir().join("root.yaml")).expect("root policy");
        assert!(root.key_usages.contains(&KeyUsage::KeyCertSign));
        for tier in Tier::ALL {
            let p = load_intermediate(&policies_dir(), tier).expect("intermediate policy");
            assert_eq!(p.tier, tier);
            assert_eq!(p.certificate_policy.marked_tier(), Some(tier));
            let slug = Slug::parse("acme").expect("slug");
            assert_eq!(
                p.name_constraints.render(&slug).to_string(),
                "permitted DNS:acme.od.kiwistack.io, email:acme.od.kiwistack.io, \
                 email:.acme.od.kiwistack.io, URI:acme.od.kiwistack.io, \
                 URI:.acme.od.kiwistack.io; excluded IP:0.0.0.0/0, IP:::/0"
            );
        }
    }

    #[test]
    fn the_core_shared_policy_covers_the_zone_and_names_no_tenant() {
        let p = load_core_shared(&policies_dir()).expect("shared policy");
        assert_eq!(p.tier, Tier::Core);
        let cluster = Slug::parse("core-eu1").expect("slug");
        assert_eq!(
            p.name_constraints.permitted_dns[0].render(&cluster),
            "od.kiwistack.io"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let base = std::fs::read_to_string(policies_dir().join(CORE_SHARED_FILE)).expect("read");
        for (from, to, field) in [
            (
                "- \"od.kiwistack.io\"",
                "- \"{slug}.od.kiwistack.io\"",
                "name_constraints.permitted_dns[0]",
            ),
            ("kind: intermediate-shared", "kind: intermediate", "kind"),
            ("tier: core", "tier: mesh", "tier"),
        ] {
            assert!(base.contains(from), "fixture lacks {from}");
            write(dir.path(), CORE_SHARED_FILE, &base.replace(from, to));
            let e = load_core_shared(dir.path()).expect_err(to);
            assert_eq!(e.field, field, "{e}");
        }
        // A per-customer policy is not a shared one, and the other way round.
        write(dir.path(), "intermediate-core.yaml", &base);
        let e = load_intermediate(dir.path(), Tier::Core).expect_err("shared as per-customer");
        assert_eq!(e.field, "kind", "{e}");
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn unknown_key_names_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = std::fs::read_to_string(policies_dir().join("intermediate-mesh.yaml"))
            .expect("read")
            .replace("max_days:", "maxdays_typo: 1\n  max_days:");
        write(dir.path(), "intermediate-mesh.yaml", &text);
        let e = load_intermediate(dir.path(), Tier::Mesh).expect_err("must refuse");
        assert_eq!(e.field, "validity.maxdays_typo");
        assert!(e.message.contains("maxdays_typo"), "{e}");
        assert!(
            e.to_string()
                .contains("intermediate-mesh.yaml: validity.maxdays_typo: unknown field"),
            "{e}"
        );
    }

    #[test]
    fn limits_are_enforced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base =
            std::fs::read_to_string(policies_dir().join("intermediate-core.yaml")).expect("read");
        let cases = [
            ("max_days: 1826", "max_days: 9999", "validity.max_days"),
            ("- ecdsa-p256", "- rsa-2048", "keys.allowed[0]"),
            (
                "\"{slug}.od.kiwistack.io\"",
                "\".{slug}.od.kiwistack.io\"",
                "name_constraints.permitted_dns[0]",
            ),
            ("path_len: 0", "path_len: 2", "path_len"),
            ("tier: core", "tier: mesh", "tier"),
            (".1.1\"", ".1.2\"", "certificate_policy"),
            (".1.1\"", ".1.1.1\"", "certificate_policy"),
            (
                "certificate_policy: \"1.2.840.113556.1.8000.2554.",
                "certificate_policy: \"1.2.840.113556.1.8000.2555.",
                "certificate_policy",
            ),
            (
                "certificate_policy: \"1.2.840.113556.1.8000.2554.",
                "certificate_policy: \"1.2..",
                "certificate_policy",
            ),
            (
                "certificate_policy: \"1.2.840.113556.1.8000.2554.51417.8491.7273.17270.45367.12609703.14420564.1.1\"",
                // The same UUID in the X.667 form: not the arc the signer uses.
                "certificate_policy: \"2.25.266973000310405976868740274316944083540.1.1\"",
                "certificate_policy",
            ),
            ("certificate_policy: ", "certificate_policy_typo: ", "certificate_policy_typo"),
            (
                "    - \".{slug}.od.kiwistack.io\"\n  # No directoryName",
                "    - \".od.kiwistack.io\"\n  # No directoryName",
                "name_constraints.permitted_uri[1]",
            ),
            (
                "  permitted_email:\n    - \"{slug}.od.kiwistack.io\"\n    - \".{slug}.od.kiwistack.io\"\n",
                "  permitted_email: []\n",
                "name_constraints.permitted_email",
            ),
            (
                "  excluded_ip:",
                "  permitted_subject:\n    organization: KiwiStack\n    organizational_unit: Customers\n  excluded_ip:",
                "name_constraints.permitted_subject.organizational_unit",
            ),
            (
                "  excluded_ip:",
                "  permitted_subject:\n    organization: KiwiStack\n    organizational_unit: \"{slug}{slug}\"\n  excluded_ip:",
                "name_constraints.permitted_subject.organizational_unit",
            ),
        ];
        for (from, to, field) in cases {
            assert!(base.contains(from), "fixture lacks {from}");
            write(
                dir.path(),
                "intermediate-core.yaml",
                &base.replace(from, to),
            );
            let e = load_intermediate(dir.path(), Tier::Core).expect_err(to);
            assert_eq!(e.field, field, "{e}");
        }
    }

    #[test]
    fn a_directory_subtree_renders_under_the_slug() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = std::fs::read_to_string(policies_dir().join("intermediate-fleet.yaml"))
            .expect("read")
            .replace(
                "  excluded_ip:",
                "  permitted_subject:\n    organization: KiwiStack\n    organizational_unit: \"{slug}\"\n  excluded_ip:",
            );
        write(dir.path(), "intermediate-fleet.yaml", &text);
        let p = load_intermediate(dir.path(), Tier::Fleet).expect("policy");
        let nc = p
            .name_constraints
            .render(&Slug::parse("acme").expect("slug"));
        assert_eq!(
            nc.permitted.last().map(|s| s.to_string()).as_deref(),
            Some("DirName:O=KiwiStack, OU=acme")
        );
    }

    #[test]
    fn templates_must_fit_the_longest_slug() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base =
            std::fs::read_to_string(policies_dir().join("intermediate-core.yaml")).expect("read");
        let cases = [
            (
                "common_name: \"{slug}\"",
                "common_name: \"KiwiStack {slug} Intermediate CA\"",
                "subject.common_name",
                "with the longest slug (63 characters) it is 89 characters, and RFC 5280 allows at most 64",
            ),
            (
                "organizational_unit: \"{slug}\"",
                "organizational_unit: \"{slug}-ou\"",
                "subject.organizational_unit",
                "66 characters",
            ),
            (
                "organization: KiwiStack",
                "organization: KiwiStack Managed Services Provider of Cloud Native Infrastructure Ltd",
                "subject.organization",
                "it is 70 characters",
            ),
            (
                "\"{slug}.od.kiwistack.io\"",
                "\"{slug}.xn--80ak6aa92e.io\"",
                "name_constraints.permitted_dns[0]",
                "`xn--80ak6aa92e`",
            ),
            (
                "\"{slug}.od.kiwistack.io\"",
                "\"{slug}{slug}.io\"",
                "name_constraints.permitted_dns[0]",
                "126 characters",
            ),
        ];
        for (from, to, field, message) in cases {
            assert!(base.contains(from), "fixture lacks {from}");
            write(
                dir.path(),
                "intermediate-core.yaml",
                &base.replace(from, to),
            );
            let e = load_intermediate(dir.path(), Tier::Core).expect_err(to);
            assert_eq!(e.field, field, "{e}");
            assert!(
                e.to_string().contains("intermediate-core.yaml: subject.")
                    || e.to_string()
                        .contains("intermediate-core.yaml: name_constraints."),
                "{e}"
            );
            assert!(e.message.contains(message), "{e}");
        }
        // The shipped templates fit a 63-character slug.
        for tier in Tier::ALL {
            let p = load_intermediate(&policies_dir(), tier).expect("shipped policy");
            let dn = p.subject.render(Some(&Slug::longest()));
            let mut checked = 0;
            for (_, v) in dn.iter() {
                match v {
                    rcgen::DnValue::Utf8String(v) => {
                        assert!(v.chars().count() <= MAX_NAME_CHARS, "{v}");
                        checked += 1;
                    }
                    other => panic!("unexpected subject value {other:?}"),
                }
            }
            assert_eq!(checked, 3, "CN, O and OU");
        }
    }

    #[test]
    fn a_customer_root_takes_its_subject_from_org_only() {
        let shipped = load_root(&policies_dir().join("customer-root.yaml")).expect("customer");
        assert!(shipped.subject.is_none());
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::read_to_string(policies_dir().join("root.yaml")).expect("read");
        let customer =
            std::fs::read_to_string(policies_dir().join("customer-root.yaml")).expect("read");
        let cases = [
            (root.replace("kind: root", "kind: customer_root"), "subject"),
            (root.replace("subject:", "subject_typo:"), "subject_typo"),
            (
                customer.replace("kind: customer_root", "kind: root"),
                "subject",
            ),
            (
                customer.replace("path_len: 1", "path_len: 1\norg: x"),
                "org",
            ),
        ];
        for (text, field) in cases {
            let e = load_root(&write(dir.path(), "r.yaml", &text)).expect_err(field);
            assert_eq!(e.field, field, "{e}");
        }
        let dn = customer_subject(" Acme GmbH ").expect("org");
        assert_eq!(
            crate::x509::dn_string(&dn),
            "O=Acme GmbH, CN=Acme GmbH Root CA"
        );
        assert!(customer_subject("").is_err());
        assert!(customer_subject("a\nb").is_err());
        assert!(customer_subject(&"x".repeat(56)).is_ok());
        assert!(customer_subject(&"x".repeat(57)).is_err());
    }

    #[test]
    fn templates_allow_only_slug() {
        assert!(Template::parse("{slug}.x").is_ok());
        assert!(Template::parse("{tenant}.x").is_err());
        assert!(Template::parse("{slug").is_err());
        assert!(Template::parse("slug}").is_err());
    }
}
