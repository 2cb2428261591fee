//! What smallstep's step-certificates Helm chart needs to start a working step-ca from our
//! materials (its `inject:` layout), and the Core tier's per-tenant ACME provisioners.
//!
//! Targets: the chart's `inject.config.files` (`ca.json`, `defaults.json`) as current step-ca
//! reads them, kept to fields step-ca 0.19 (Debian's sources, which the tests build and run)
//! reads too; Go's JSON decoder ignores fields it does not know, so nothing here is refused by
//! either. Paths are where the chart mounts the files (`/home/step/...`).
//!
//! Names: a customer's CA answers as `ca.SLUG.od.kiwistack.io` and only there. The intermediate's
//! name constraints permit `SLUG.od.kiwistack.io` and exclude every IP address, and step-ca issues
//! its own TLS certificate for its `dnsNames` (recent versions refuse to start when a dnsName
//! falls outside the constraints), so the chart's defaults (`*.svc.cluster.local`, `127.0.0.1`)
//! are not listed: clients reach the CA by its DNS name.
//!
//! Core tier: one shared sub-CA per cluster, one ACME provisioner per tenant, named by the slug
//! (no MSP-held secret: ACME accounts authenticate with their own keys). step-ca has no
//! per-provisioner name policy (only `authority.policy` in `ca.json`, a `policy` key on a
//! provisioner is ignored), so each provisioner carries an X.509 template that `fail`s on any
//! name outside `SLUG.od.kiwistack.io`: that scopes issuance (step-ca 0.19 already reads
//! `options.x509.template` on ACME provisioners, and its template functions include `fail`).
//!
//! ```text
//! state repo (Core)   values/step-provisioner.yaml   `kiwictl provisioner add`
//! platform repo       core-shared/CLUSTER/smallstep.yaml   `kiwictl provisioner gather`:
//!                     inject.config.files.ca.json with every tenant's provisioner (Helm
//!                     replaces lists, so the whole list lives in one file)
//! ```
//!
//! Writes go through the PKI core's `fsutil` (create_new, or an atomic replace for the
//! gathered file, which survives a crash at any point as either the old or the new file).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use kiwi_signer::fsutil::{self, Mode};
use kiwi_signer::slug::{Slug, Tier};
use kiwi_signer::words::Fingerprint;

use crate::staterepo::{self, RepoError};

/// The DNS zone every customer's names live under.
pub const ZONE: &str = "od.kiwistack.io";
/// Where the chart mounts the root certificate.
pub const ROOT_PATH: &str = "/home/step/certs/root_ca.crt";
/// Where the chart mounts the intermediate certificate.
pub const CRT_PATH: &str = "/home/step/certs/intermediate_ca.crt";
/// Where the chart mounts the (encrypted) intermediate key.
pub const KEY_PATH: &str = "/home/step/secrets/intermediate_ca_key";
/// Where the chart mounts `ca.json`.
pub const CONFIG_PATH: &str = "/home/step/config/ca.json";
/// The chart's database directory.
pub const DB_PATH: &str = "/home/step/db";
/// The chart's listen address (its Service maps 443 to it).
pub const ADDRESS: &str = "0.0.0.0:9000";
/// A Core tenant's provisioner record in its state repo.
pub const PROVISIONER_FILE: &str = "values/step-provisioner.yaml";
/// Format of [`PROVISIONER_FILE`].
pub const PROVISIONER_FORMAT: u32 = 1;

/// The customer's domain: `SLUG.od.kiwistack.io`.
pub fn tenant_domain(slug: &Slug) -> String {
    format!("{slug}.{ZONE}")
}

/// The DNS name a customer's own step-ca answers at: `ca.SLUG.od.kiwistack.io`.
pub fn ca_dns_name(slug: &Slug) -> String {
    format!("ca.{}", tenant_domain(slug))
}

/// The DNS name of a Core cluster's shared step-ca: `ca.CLUSTER.od.kiwistack.io`.
pub fn shared_ca_dns_name(cluster: &Slug) -> String {
    ca_dns_name(cluster)
}

/// The chart's `ca.json` for a CA answering at `dns_names` with `provisioners`.
pub fn ca_json(dns_names: &[String], provisioners: Vec<Value>) -> Value {
    json!({
        "root": ROOT_PATH,
        "federatedRoots": [],
        "crt": CRT_PATH,
        "key": KEY_PATH,
        "address": ADDRESS,
        "dnsNames": dns_names,
        "logger": {"format": "json"},
        "db": {"type": "badgerv2", "dataSource": DB_PATH},
        "authority": {
            "claims": {
                "minTLSCertDuration": "5m",
                "maxTLSCertDuration": "2160h",
                "defaultTLSCertDuration": "24h",
                "disableRenewal": false
            },
            "provisioners": provisioners
        },
        "tls": {
            "cipherSuites": [
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_AES_128_GCM_SHA256"
            ],
            "minVersion": 1.2,
            "maxVersion": 1.3,
            "renegotiation": false
        }
    })
}

/// The chart's `defaults.json` (what `step` clients in the pod read).
pub fn defaults_json(ca_url: &str, root_sha256: &Fingerprint) -> Value {
    json!({
        "ca-url": ca_url,
        "ca-config": CONFIG_PATH,
        "fingerprint": root_sha256.hex(),
        "root": ROOT_PATH,
    })
}

/// A Mesh/Fleet customer's own CA: one ACME provisioner, `acme`. The intermediate's name
/// constraints already confine what relying parties accept to the customer's domain; the same
/// template as a Core tenant's makes the CA refuse the rest (IP addresses included) instead of
/// issuing certificates no client would accept.
pub fn own_ca_provisioners(slug: &Slug) -> Vec<Value> {
    vec![json!({
        "type": "ACME",
        "name": "acme",
        "forceCN": true,
        "claims": {},
        "options": {"x509": {"template": tenant_template(slug)}}
    })]
}

/// The X.509 template of a Core tenant's provisioner: fails on any SAN that is not a DNS name
/// in `SLUG.od.kiwistack.io` (the domain or below it) and on a subject common name outside it.
pub fn tenant_template(slug: &Slug) -> String {
    let domain = tenant_domain(slug);
    let inside = |v: &str| {
        format!("(or (eq (lower {v}) \"{domain}\") (hasSuffix \".{domain}\" (lower {v})))")
    };
    format!(
        "{{{{- range .SANs }}}}{{{{- if not (and (eq .Type \"dns\") {in_san}) }}}}\
         {{{{- fail (printf \"{slug}'s certificates carry only names under {domain}, not %s %s\" .Type .Value) }}}}\
         {{{{- end }}}}{{{{- end }}}}\n\
         {{{{- if and .Subject.CommonName (not {in_cn}) }}}}\
         {{{{- fail (printf \"{slug}'s certificates carry only names under {domain}, not the common name %s\" .Subject.CommonName) }}}}\
         {{{{- end }}}}\n\
         {{\n\
         \x20 \"subject\": {{{{ toJson .Subject }}}},\n\
         \x20 \"sans\": {{{{ toJson .SANs }}}},\n\
         {{{{- if typeIs \"*rsa.PublicKey\" .Insecure.CR.PublicKey }}}}\n\
         \x20 \"keyUsage\": [\"keyEncipherment\", \"digitalSignature\"],\n\
         {{{{- else }}}}\n\
         \x20 \"keyUsage\": [\"digitalSignature\"],\n\
         {{{{- end }}}}\n\
         \x20 \"extKeyUsage\": [\"serverAuth\", \"clientAuth\"]\n\
         }}\n",
        in_san = inside(".Value"),
        in_cn = inside(".Subject.CommonName"),
    )
}

/// A Core tenant's ACME provisioner: named by the slug, scoped by [`tenant_template`].
pub fn tenant_provisioner(slug: &Slug) -> Value {
    json!({
        "type": "ACME",
        "name": slug.as_str(),
        "forceCN": true,
        "claims": {},
        "options": {"x509": {"template": tenant_template(slug)}}
    })
}

/// The chart values that configure step-ca (`inject.enabled`, `inject.config.files`), plus
/// `certificates` when given (root, intermediate PEM), as YAML text after `header` (comment
/// lines). `bootstrap.enabled: false`: the chart must not make a CA of its own.
pub fn values_yaml(
    header: &str,
    ca_json: Value,
    defaults_json: Value,
    certificates: Option<(&str, &str)>,
) -> Result<String, StepCaError> {
    let mut inject = json!({
        "enabled": true,
        "config": {"files": {"ca.json": ca_json, "defaults.json": defaults_json}},
    });
    if let Some((root, intermediate)) = certificates {
        inject["certificates"] = json!({"root_ca": root, "intermediate_ca": intermediate});
    }
    let doc = json!({"bootstrap": {"enabled": false}, "inject": inject});
    let body = serde_yaml_ng::to_string(&doc).map_err(|e| StepCaError::Yaml(e.to_string()))?;
    Ok(format!("{header}{body}"))
}

/// `ca.json` as the chart's pod sees it, for a step-ca run outside Kubernetes: the chart's mount
/// paths replaced by files in `dir` (`root_ca.crt`, `intermediate_ca.crt`, `intermediate_ca_key`,
/// `db/`) and the listen address by `address`.
pub fn localise(ca_json: &Value, dir: &Path, address: &str) -> Value {
    let mut c = ca_json.clone();
    for (field, name) in [
        ("root", "root_ca.crt"),
        ("crt", "intermediate_ca.crt"),
        ("key", "intermediate_ca_key"),
    ] {
        c[field] = Value::from(dir.join(name).display().to_string());
    }
    c["address"] = Value::from(address);
    c["db"]["dataSource"] = Value::from(dir.join("db").display().to_string());
    c
}

/// Reads `inject.config.files.ca.json` from chart values (`values/smallstep.yaml` or the
/// platform repo's shared file) and [`localise`]s it.
pub fn local_config(values_file: &Path, dir: &Path, address: &str) -> Result<Value, StepCaError> {
    let bad = |reason: String| StepCaError::BadRecord {
        path: values_file.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(values_file).map_err(|e| bad(e.to_string()))?;
    let values: Value = serde_yaml_ng::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let ca_json = &values["inject"]["config"]["files"]["ca.json"];
    if !ca_json.is_object() {
        return Err(bad(
            "inject.config.files.ca.json: missing (written by `kiwictl intermediate install` or `provisioner gather`)".into(),
        ));
    }
    Ok(localise(ca_json, dir, address))
}

/// Why a provisioner operation refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StepCaError {
    /// The state repo is missing or damaged.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The repo's tier has its own intermediate, not a provisioner.
    #[error("{repo} is the state repo of {slug}, a {tier} customer: {tier} customers run their own intermediate CA (`kiwictl intermediate request`); only Core tenants get a provisioner on the shared sub-CA")]
    NotCore {
        /// The repo.
        repo: PathBuf,
        /// Its customer.
        slug: Slug,
        /// Its tier.
        tier: Tier,
    },
    /// The provisioner is recorded already.
    #[error("{0} exists already; nothing was written (kiwictl never overwrites)")]
    Exists(PathBuf),
    /// A recorded provisioner is not what `provisioner add` writes for that repo's slug.
    #[error("{path}: {reason}; restore it from version control or remove it and run `kiwictl provisioner add --repo` again")]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Two repos are the same tenant.
    #[error(
        "the tenant `{0}` is given twice (two --repo of the same customer); nothing was written"
    )]
    Duplicate(Slug),
    /// Serialising failed.
    #[error("could not write YAML: {0}")]
    Yaml(String),
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] kiwi_signer::Error),
}

/// [`PROVISIONER_FILE`] as written and read.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvisionerRecord {
    format: u32,
    slug: Slug,
    provisioner: Value,
}

/// What `provisioner add` did.
#[derive(Debug, Clone)]
pub struct Added {
    /// The tenant.
    pub slug: Slug,
    /// The file written.
    pub file: PathBuf,
}

/// Records a Core tenant's ACME provisioner in its state repo ([`PROVISIONER_FILE`]). Refuses
/// a repo of another tier, and an existing record.
pub fn add_provisioner(repo: &Path) -> Result<Added, StepCaError> {
    let info = staterepo::open(repo)?;
    if info.tier != Tier::Core {
        return Err(StepCaError::NotCore {
            repo: repo.to_path_buf(),
            slug: info.slug,
            tier: info.tier,
        });
    }
    let file = repo.join(PROVISIONER_FILE);
    if file.exists() {
        return Err(StepCaError::Exists(file));
    }
    let record = RawProvisionerRecord {
        format: PROVISIONER_FORMAT,
        slug: info.slug.clone(),
        provisioner: tenant_provisioner(&info.slug),
    };
    let body = serde_yaml_ng::to_string(&record).map_err(|e| StepCaError::Yaml(e.to_string()))?;
    let text = format!(
        "# {slug}'s ACME provisioner on its cluster's shared step-ca. Written by `kiwictl provisioner add`;\n\
         # `kiwictl provisioner gather` copies it into the platform repo. The template refuses any\n\
         # name outside {domain}.\n{body}",
        slug = info.slug,
        domain = tenant_domain(&info.slug),
    );
    mkdirs(&file)?;
    fsutil::write_new(&file, text.as_bytes(), Mode::Public)?;
    Ok(Added {
        slug: info.slug,
        file,
    })
}

/// Reads a Core tenant's recorded provisioner, checked to be exactly what `provisioner add`
/// writes for the repo's slug (the file is hostile input: a widened template is refused).
pub fn read_provisioner(repo: &Path) -> Result<(Slug, Value), StepCaError> {
    let info = staterepo::open(repo)?;
    let file = repo.join(PROVISIONER_FILE);
    let bad = |reason: String| StepCaError::BadRecord {
        path: file.clone(),
        reason,
    };
    if info.tier != Tier::Core {
        return Err(StepCaError::NotCore {
            repo: repo.to_path_buf(),
            slug: info.slug,
            tier: info.tier,
        });
    }
    let text = std::fs::read_to_string(&file)
        .map_err(|e| bad(format!("{e}; run `kiwictl provisioner add --repo` first")))?;
    let raw: RawProvisionerRecord =
        kiwi_signer::policy::parse_strict(&file.display().to_string(), &text)
            .map_err(|e| bad(e.to_string()))?;
    if raw.format != PROVISIONER_FORMAT {
        return Err(bad(format!(
            "format: {} is not one this kiwictl reads ({PROVISIONER_FORMAT})",
            raw.format
        )));
    }
    if raw.slug != info.slug {
        return Err(bad(format!(
            "slug: `{}`, but the repo is {}'s",
            raw.slug, info.slug
        )));
    }
    if raw.provisioner != tenant_provisioner(&info.slug) {
        return Err(bad(format!(
            "provisioner: differs from the ACME provisioner `provisioner add` writes for {} (name, template or options changed)",
            info.slug
        )));
    }
    Ok((info.slug, raw.provisioner))
}

fn mkdirs(file: &Path) -> Result<(), StepCaError> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| kiwi_signer::Error::io(dir, e, "check the directory's permissions"))?;
    }
    Ok(())
}

/// The platform repo's file for a Core cluster's shared step-ca.
pub fn shared_values_file(platform: &Path, cluster: &Slug) -> PathBuf {
    platform
        .join("core-shared")
        .join(cluster.as_str())
        .join("smallstep.yaml")
}

/// What `gather` wrote.
#[derive(Debug, Clone)]
pub struct Gathered {
    /// The file.
    pub file: PathBuf,
    /// The tenants, sorted.
    pub tenants: Vec<Slug>,
}

/// Writes the shared sub-CA's chart values for `cluster` into the platform repo with every
/// tenant's provisioner from `repos` (sorted by slug; replaced atomically: the file is derived
/// from the state repos, so it is regenerated rather than merged). `root_sha256` is the MSP root.
pub fn gather(
    platform: &Path,
    cluster: &Slug,
    repos: &[PathBuf],
    root_sha256: &Fingerprint,
) -> Result<Gathered, StepCaError> {
    let mut tenants: Vec<(Slug, Value)> = Vec::new();
    for repo in repos {
        let (slug, p) = read_provisioner(repo)?;
        if tenants.iter().any(|(s, _)| *s == slug) {
            return Err(StepCaError::Duplicate(slug));
        }
        tenants.push((slug, p));
    }
    tenants.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    let dns = shared_ca_dns_name(cluster);
    let header = format!(
        "# The {cluster} cluster's shared step-ca (Core tier). Written by `kiwictl provisioner gather`\n\
         # from the tenants' state repos: regenerate it, do not edit it. The sub-CA's certificates\n\
         # and key are injected separately (inject.certificates / inject.secrets).\n"
    );
    let text = values_yaml(
        &header,
        ca_json(
            std::slice::from_ref(&dns),
            tenants.iter().map(|(_, p)| p.clone()).collect(),
        ),
        defaults_json(&format!("https://{dns}"), root_sha256),
        None,
    )?;
    let file = shared_values_file(platform, cluster);
    mkdirs(&file)?;
    fsutil::replace_atomically(&file, text.as_bytes(), Mode::Public)?;
    Ok(Gathered {
        file,
        tenants: tenants.into_iter().map(|(s, _)| s).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OP: &str = "age1mqjwg52nzvxdkml0k3908q8fcqwqrv5h2gh8y45dkjqaalaqzv8snne4qv";

    fn slug(s: &str) -> Slug {
        Slug::parse(s).expect("slug")
    }

    #[test]
    fn add_then_gather_round_trips_and_refuses_others() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = Fingerprint::of(b"root");
        let mk = |s: &str, tier: Tier| {
            let d = tmp.path().join(s);
            staterepo::init(&d, &slug(s), tier, OP, None, &root).expect("init");
            d
        };
        let (acme, globex, mesh) = (
            mk("acme", Tier::Core),
            mk("globex", Tier::Core),
            mk("initech", Tier::Mesh),
        );
        let e = add_provisioner(&mesh).expect_err("mesh");
        assert!(e.to_string().contains("mesh customer"), "{e}");
        assert!(!mesh.join(PROVISIONER_FILE).exists());
        for r in [&globex, &acme] {
            add_provisioner(r).expect("add");
        }
        assert!(matches!(
            add_provisioner(&acme),
            Err(StepCaError::Exists(_))
        ));
        let platform = tmp.path().join("platform");
        let cluster = slug("core-eu1");
        let g =
            gather(&platform, &cluster, &[acme.clone(), globex.clone()], &root).expect("gather");
        assert_eq!(g.tenants, vec![slug("acme"), slug("globex")]);
        let v: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&g.file).expect("read"))
            .expect("yaml");
        let files = &v["inject"]["config"]["files"];
        let names: Vec<&str> = files["ca.json"]["authority"]["provisioners"]
            .as_array()
            .expect("list")
            .iter()
            .map(|p| p["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["acme", "globex"]);
        assert_eq!(files["defaults.json"]["fingerprint"], root.hex());
        assert_eq!(v["inject"]["enabled"], true);
        assert!(matches!(
            gather(&platform, &cluster, &[acme.clone(), acme.clone()], &root),
            Err(StepCaError::Duplicate(_))
        ));
        // A widened template is refused at gather.
        let f = acme.join(PROVISIONER_FILE);
        let text = std::fs::read_to_string(&f).expect("read");
        std::fs::write(&f, text.replace("acme.od.kiwistack.io", "od.kiwistack.io")).expect("w");
        let e = gather(&platform, &cluster, &[acme], &root).expect_err("tampered");
        assert!(e.to_string().contains("differs"), "{e}");
    }

    #[test]
    fn the_template_names_only_the_tenants_domain() {
        let t = tenant_template(&slug("acme"));
        assert!(t.contains("\"acme.od.kiwistack.io\"") && t.contains("\".acme.od.kiwistack.io\""));
        assert!(t.contains("fail"));
        assert_eq!(ca_dns_name(&slug("acme")), "ca.acme.od.kiwistack.io");
    }
}
